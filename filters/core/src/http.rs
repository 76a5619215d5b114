//! Views of a request and a response as a policy sees them, and the header changes it asks for.

/// Header list as Envoy hands it over: lower-case names, repeated names kept in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<(String, String)>);

impl Headers {
    pub fn new() -> Self {
        Headers(Vec::new())
    }

    /// Builds a list from pairs; names are lower-cased.
    pub fn from_pairs<K: AsRef<str>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Headers(
            pairs
                .into_iter()
                .map(|(k, v)| (k.as_ref().to_ascii_lowercase(), v.into()))
                .collect(),
        )
    }

    /// First value of `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name` (case-insensitive), in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Applies header operations in order, as the adaptor does on the real header map.
    pub fn apply(&mut self, ops: &[HeaderOp]) {
        for op in ops {
            match op {
                HeaderOp::Set(name, value) => {
                    self.0.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
                    self.0.push((name.to_ascii_lowercase(), value.clone()));
                }
                HeaderOp::Append(name, value) => {
                    self.0.push((name.to_ascii_lowercase(), value.clone()))
                }
                HeaderOp::Remove(name) => self.0.retain(|(k, _)| !k.eq_ignore_ascii_case(name)),
            }
        }
    }
}

/// A change to a header map. Operations apply in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderOp {
    /// Replace every value of the header with this one (adds it when absent).
    Set(String, String),
    /// Add one more value, keeping existing ones.
    Append(String, String),
    /// Remove every value of the header.
    Remove(String),
}

/// What a policy sees of a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// `:method`
    pub method: String,
    /// `:path`, including the query string, exactly as received.
    pub path: String,
    /// `:authority`
    pub authority: String,
    /// `:scheme`
    pub scheme: String,
    /// Regular headers (no pseudo-headers).
    pub headers: Headers,
    /// Downstream peer IP address (no port), when the host knows it.
    pub client_ip: Option<String>,
    /// False when the request ended with its headers (no body follows).
    pub has_body: bool,
}

impl Request {
    /// A request with this method, path and headers (scheme `http`, no body, no client IP);
    /// set the other fields with struct update syntax. For tests and tools.
    pub fn new(method: &str, path: &str, headers: &[(&str, &str)]) -> Self {
        Request {
            method: method.to_string(),
            path: path.to_string(),
            authority: "api.example".to_string(),
            scheme: "http".to_string(),
            headers: Headers::from_pairs(headers.iter().copied()),
            client_ip: None,
            has_body: false,
        }
    }

    /// The path without the query string.
    pub fn path_only(&self) -> &str {
        match self.path.find('?') {
            Some(i) => &self.path[..i],
            None => &self.path,
        }
    }

    /// The raw query string (without `?`), if any.
    pub fn query(&self) -> Option<&str> {
        self.path.find('?').map(|i| &self.path[i + 1..])
    }
}

/// What a policy sees of a response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    /// `:status`, 0 when absent or not a number.
    pub status: u16,
    /// Regular headers (no pseudo-headers).
    pub headers: Headers,
}

/// Splits a raw header list from the host into pseudo-headers and regular headers.
pub fn split_pseudo(raw: Vec<(String, String)>) -> (Vec<(String, String)>, Headers) {
    let (pseudo, regular): (Vec<_>, Vec<_>) =
        raw.into_iter().partition(|(k, _)| k.starts_with(':'));
    (pseudo, Headers(regular))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_are_case_insensitive_and_keep_repeats() {
        let h = Headers::from_pairs([("X-A", "1"), ("x-a", "2"), ("b", "3")]);
        assert_eq!(h.get("x-A"), Some("1"));
        assert_eq!(h.get_all("X-a").collect::<Vec<_>>(), vec!["1", "2"]);
        assert!(!h.contains("c"));
    }

    #[test]
    fn ops_apply_in_order() {
        let mut h = Headers::from_pairs([("a", "1"), ("a", "2"), ("b", "3")]);
        h.apply(&[
            HeaderOp::Set("a".into(), "9".into()),
            HeaderOp::Append("b".into(), "4".into()),
            HeaderOp::Remove("c".into()),
        ]);
        assert_eq!(h.get_all("a").collect::<Vec<_>>(), vec!["9"]);
        assert_eq!(h.get_all("b").collect::<Vec<_>>(), vec!["3", "4"]);
        h.apply(&[HeaderOp::Remove("B".into())]);
        assert!(!h.contains("b"));
    }

    #[test]
    fn new_builds_a_plain_request() {
        let r = Request::new("POST", "/a?b=1", &[("X-A", "1")]);
        assert_eq!(
            (r.method.as_str(), r.path_only(), r.query()),
            ("POST", "/a", Some("b=1"))
        );
        assert_eq!(r.headers.get("x-a"), Some("1"));
        assert!(!r.has_body && r.client_ip.is_none());
    }

    #[test]
    fn path_and_query_split() {
        let r = Request {
            path: "/a/b?x=1&y".into(),
            ..Default::default()
        };
        assert_eq!(r.path_only(), "/a/b");
        assert_eq!(r.query(), Some("x=1&y"));
        let r = Request {
            path: "/a".into(),
            ..Default::default()
        };
        assert_eq!((r.path_only(), r.query()), ("/a", None));
    }

    #[test]
    fn pseudo_headers_are_split_off() {
        let (p, h) = split_pseudo(vec![(":path".into(), "/".into()), ("a".into(), "1".into())]);
        assert_eq!(p, vec![(":path".to_string(), "/".to_string())]);
        assert_eq!(h.get("a"), Some("1"));
    }
}

/// The IP part of an Envoy address property (`1.2.3.4:5678`, `[::1]:5678`, or a bare IP).
pub fn client_ip_from_address(address: &str) -> &str {
    if let Some(rest) = address.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match (address.find(':'), address.rfind(':')) {
        // Exactly one colon: IPv4 with port.
        (Some(a), Some(b)) if a == b => &address[..a],
        _ => address,
    }
}

#[cfg(test)]
mod address_tests {
    use super::client_ip_from_address as ip;

    #[test]
    fn ports_are_stripped() {
        assert_eq!(ip("10.1.2.3:4567"), "10.1.2.3");
        assert_eq!(ip("[::1]:80"), "::1");
        assert_eq!(ip("[2001:db8::7]:443"), "2001:db8::7");
        assert_eq!(ip("2001:db8::7"), "2001:db8::7");
        assert_eq!(ip("10.1.2.3"), "10.1.2.3");
    }
}

/// Decodes one `application/x-www-form-urlencoded` component (`+` is a space); invalid UTF-8
/// is replaced, so the result never matches a configured value by accident.
pub fn form_decode(s: &str) -> String {
    let plus = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus)
        .decode_utf8_lossy()
        .into_owned()
}

/// `(name, value)` pairs of a query string, form-decoded, in order (repeats kept).
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (form_decode(k), form_decode(v)),
            None => (form_decode(p), String::new()),
        })
        .collect()
}

/// `(name, value)` pairs of every `Cookie` header, in order (repeats kept); a value in
/// double quotes loses them (RFC 6265 `cookie-value`).
pub fn cookie_pairs(headers: &Headers) -> Vec<(&str, &str)> {
    headers
        .get_all("cookie")
        .flat_map(|h| h.split(';'))
        .filter_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|x| x.strip_suffix('"'))
                .unwrap_or(v);
            Some((k.trim(), v))
        })
        .collect()
}

/// `value` without `prefix`, compared without regard to ASCII case (`Bearer ` matches `bearer `).
pub fn strip_prefix_ci<'a>(value: &'a str, prefix: &str) -> Option<&'a str> {
    let head = value.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        value.get(prefix.len()..)
    } else {
        None
    }
}

/// A parameter or cookie name as the most lenient framework reads it: lower case, `.` and
/// space as `_` (PHP), without a bracket suffix (`a[]`, `a[0]`, `a[b][c]` are `a` for qs,
/// Rails and PHP; an unclosed `[` is `_` in PHP).
pub fn lenient_name(name: &str) -> String {
    let base = match name.find('[') {
        Some(i) if name.get(i..).is_some_and(|rest| rest.contains(']')) => name.get(..i),
        _ => Some(name),
    };
    base.unwrap_or(name)
        .chars()
        .map(|c| match c {
            '.' | ' ' | '[' => '_',
            other => other.to_ascii_lowercase(),
        })
        .collect()
}

/// Whether the parameter or cookie name `found` is not exactly `wanted` but some backend reads
/// it as `wanted` ([`lenient_name`]).
pub fn other_spelling(found: &str, wanted: &str) -> bool {
    found != wanted && lenient_name(found) == lenient_name(wanted)
}

/// The one value of cookie `name`; a cookie given twice is ambiguous (Django and Rack read
/// the last, most others the first).
pub fn single_cookie<'a>(
    headers: &'a Headers,
    name: &str,
) -> Result<Option<&'a str>, crate::canon::Ambiguity> {
    let mut found = None;
    for (k, v) in cookie_pairs(headers) {
        if k == name {
            if found.is_some() {
                return Err(crate::canon::Ambiguity::RepeatedCookie(name.to_string()));
            }
            found = Some(v);
        }
    }
    Ok(found)
}

impl Headers {
    /// Every value of `name` in any spelling a CGI-style backend folds into it (`_` for `-`,
    /// any case), in order.
    pub fn get_all_folded<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| crate::canon::same_header(k, name))
            .map(|(_, v)| v.as_str())
    }

    /// The names present that fold into `name` but are spelled differently (`x_user_id` for
    /// `x-user-id`), in order.
    pub fn other_spellings<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| {
                !k.eq_ignore_ascii_case(name) && crate::canon::same_header(k, name)
            })
            .map(|(k, _)| k.as_str())
    }

    /// Refuses a request that carries any of `names` in another spelling: a filter that
    /// trusts, writes or validates `x-user-id` cannot let `x_user_id` through to a backend
    /// that reads both as `HTTP_X_USER_ID`.
    pub fn check_spellings<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), crate::canon::Ambiguity> {
        for name in names {
            if self.other_spellings(name).next().is_some() {
                return Err(crate::canon::Ambiguity::HeaderSpelling(name.to_string()));
            }
        }
        Ok(())
    }

    /// The one value of `name`: given twice (Go and Java read the first, others join or take
    /// the last) or in another spelling, the header is ambiguous.
    pub fn single(&self, name: &str) -> Result<Option<&str>, crate::canon::Ambiguity> {
        self.check_spellings([name])?;
        let mut values = self
            .0
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str());
        let first = values.next();
        if values.next().is_some() {
            return Err(crate::canon::Ambiguity::RepeatedHeader(name.to_string()));
        }
        Ok(first)
    }
}

#[cfg(test)]
mod canonical_lookup_tests {
    use super::*;
    use crate::canon::Ambiguity;

    #[test]
    fn folded_lookups_see_every_spelling() {
        let h = Headers::from_pairs([("x-user-id", "1"), ("X_User_Id", "2"), ("x-other", "3")]);
        assert_eq!(
            h.get_all_folded("x-user-id").collect::<Vec<_>>(),
            ["1", "2"]
        );
        assert_eq!(
            h.other_spellings("x-user-id").collect::<Vec<_>>(),
            ["x_user_id"]
        );
        assert_eq!(
            h.check_spellings(["x-other", "x-user-id"]),
            Err(Ambiguity::HeaderSpelling("x-user-id".into()))
        );
        assert!(h.check_spellings(["x-other"]).is_ok());
    }

    #[test]
    fn single_values() {
        let h = Headers::from_pairs([("x-api-key", "k1"), ("x-api-key", "k1"), ("a", "1")]);
        assert_eq!(
            h.single("x-api-key"),
            Err(Ambiguity::RepeatedHeader("x-api-key".into()))
        );
        assert_eq!(h.single("a"), Ok(Some("1")));
        assert_eq!(h.single("b"), Ok(None));
        let h = Headers::from_pairs([("x_api_key", "k1")]);
        assert_eq!(
            h.single("x-api-key"),
            Err(Ambiguity::HeaderSpelling("x-api-key".into()))
        );
    }

    #[test]
    fn cookies_and_queries() {
        let h = Headers::from_pairs([("cookie", "a=1; b=\"two\""), ("cookie", "c=3; a=9")]);
        assert_eq!(
            cookie_pairs(&h),
            [("a", "1"), ("b", "two"), ("c", "3"), ("a", "9")]
        );
        assert_eq!(single_cookie(&h, "b"), Ok(Some("two")));
        assert_eq!(
            single_cookie(&h, "a"),
            Err(Ambiguity::RepeatedCookie("a".into()))
        );
        assert_eq!(single_cookie(&h, "z"), Ok(None));
        assert_eq!(
            query_pairs("a=1&b=x+y%21&&c&a=%ff"),
            [
                ("a".to_string(), "1".to_string()),
                ("b".into(), "x y!".into()),
                ("c".into(), "".into()),
                ("a".into(), "\u{fffd}".into())
            ]
        );
    }
}
