//! Where tokens come from (headers with a prefix, query parameters, cookies), and how a
//! token is removed from the request before it goes upstream.
//!
//! Query strings and cookies are read with core's one parser (`meshwall_core::http`). A token
//! source the backend could read differently from the filter is ambiguous and refused:
//! - a source header in another spelling (`x_api_token` for `x-api-token`: CGI-style servers
//!   read both as `HTTP_X_API_TOKEN`);
//! - a token cookie given twice (Django and Rack read the last, most others the first);
//! - a query parameter or cookie whose name a framework reads as the source's name: another
//!   case (ASP.NET), `.` or space for `_` (PHP), a bracket form (`access_token[]`,
//!   `access_token[0]`: qs, Rails and PHP build arrays from it), percent-escapes in a
//!   cookie name (PHP decodes them).
//!
//! The same token in two places is one token; two different tokens are refused as invalid.

use crate::token::Failure;
use meshwall_core::http::{
    cookie_pairs, form_decode, lenient_name, other_spelling, query_pairs, single_cookie,
    strip_prefix_ci,
};
use meshwall_core::{Ambiguity, HeaderOp, Request};

/// One place a token may be found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Header (lower-case name) and the value prefix, matched case-insensitively
    /// (`Bearer ` matches `bearer `).
    Header {
        name: String,
        prefix: Option<String>,
    },
    Param(String),
    Cookie(String),
}

/// The token a request carries and the sources (indexes into the source table) it was in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub token: String,
    pub sources: Vec<usize>,
}

/// Why no token could be taken from the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Answered 401 (two different tokens, a token over the size limit).
    Invalid(Failure),
    /// Answered 400: the backend may read another token than the filter.
    Ambiguous(Ambiguity),
}

impl From<Failure> for Refused {
    fn from(f: Failure) -> Self {
        Refused::Invalid(f)
    }
}

/// Finds the token. Several different tokens (in one source or across sources) are refused;
/// the same token in two places is one token. A token longer than `max_bytes` is refused
/// before anything else is done with it. Ambiguous sources (see the module docs) are refused
/// whatever they hold.
pub fn extract(
    req: &Request,
    table: &[Source],
    max_bytes: usize,
) -> Result<Option<Found>, Refused> {
    let mut found: Option<Found> = None;
    let mut add = |token: &str, idx: usize| -> Result<(), Failure> {
        let token = token.trim();
        if token.len() > max_bytes {
            return Err(Failure::TooLarge);
        }
        match &mut found {
            None => {
                found = Some(Found {
                    token: token.to_string(),
                    sources: vec![idx],
                })
            }
            Some(f) if f.token == token => {
                if !f.sources.contains(&idx) {
                    f.sources.push(idx);
                }
            }
            Some(_) => return Err(Failure::MultipleTokens),
        }
        Ok(())
    };
    for (idx, src) in table.iter().enumerate() {
        match src {
            Source::Header { name, prefix } => {
                req.headers
                    .check_spellings([name.as_str()])
                    .map_err(Refused::Ambiguous)?;
                // Envoy joins repeated headers with `,` (and a JWT never contains one), so
                // each comma-separated part is a value of its own. (Walked twice rather than
                // collected: no allocation per request.)
                let values = || {
                    req.headers
                        .get_all(name)
                        .flat_map(|v| v.split(','))
                        .map(str::trim)
                        .filter(|v| !v.is_empty())
                };
                // A token beside another credential in the same header (`Bearer …` and
                // `Basic …`): a backend that reads the other one authenticates with
                // something this filter never saw. (The same token twice is one token.)
                if let Some(p) = prefix {
                    let (mut all, mut tokens) = (0usize, 0usize);
                    for v in values() {
                        all = all.saturating_add(1);
                        tokens =
                            tokens.saturating_add(usize::from(strip_prefix_ci(v, p).is_some()));
                    }
                    if tokens > 0 && tokens < all {
                        return Err(Refused::Invalid(Failure::MultipleTokens));
                    }
                }
                for value in values() {
                    match prefix {
                        Some(p) => {
                            if let Some(rest) = strip_prefix_ci(value, p) {
                                add(rest, idx)?;
                            } else if p.trim_end().len() < p.len()
                                && value.trim().eq_ignore_ascii_case(p.trim_end())
                            {
                                // `Authorization: Bearer` with nothing after it.
                                add("", idx)?;
                            }
                        }
                        None => add(value, idx)?,
                    }
                }
            }
            Source::Param(name) => {
                for (k, v) in req.query().map(query_pairs).unwrap_or_default() {
                    if other_spelling(&k, name) {
                        return Err(Refused::Ambiguous(Ambiguity::RepeatedParam(name.clone())));
                    }
                    if &k == name {
                        add(&v, idx)?;
                    }
                }
            }
            Source::Cookie(name) => {
                if cookie_pairs(&req.headers)
                    .iter()
                    .any(|(k, _)| *k != name && lenient_name(&form_decode(k)) == lenient_name(name))
                {
                    return Err(Refused::Ambiguous(Ambiguity::RepeatedCookie(name.clone())));
                }
                if let Some(v) = single_cookie(&req.headers, name).map_err(Refused::Ambiguous)? {
                    add(v, idx)?;
                }
            }
        }
    }
    Ok(found)
}

/// Header operations that take the token out of the request (`forward: false`).
pub fn removal_ops(req: &Request, table: &[Source], found: &Found) -> Vec<HeaderOp> {
    let mut ops = Vec::new();
    let mut params: Vec<&str> = Vec::new();
    let mut cookies: Vec<&str> = Vec::new();
    for idx in &found.sources {
        match table.get(*idx) {
            Some(Source::Header { name, .. })
                if !ops
                    .iter()
                    .any(|o| matches!(o, HeaderOp::Remove(n) if n == name)) =>
            {
                ops.push(HeaderOp::Remove(name.clone()));
            }
            Some(Source::Header { .. }) => {}
            Some(Source::Param(p)) => params.push(p),
            Some(Source::Cookie(c)) => cookies.push(c),
            None => {}
        }
    }
    if !params.is_empty() {
        if let Some(q) = req.query() {
            let kept: Vec<&str> = q
                .split('&')
                .filter(|pair| {
                    let k = pair.split_once('=').map(|(k, _)| k).unwrap_or(pair);
                    !pair.is_empty() && !params.contains(&form_decode(k).as_str())
                })
                .collect();
            let mut path = req.path_only().to_string();
            if !kept.is_empty() {
                path.push('?');
                path.push_str(&kept.join("&"));
            }
            ops.push(HeaderOp::Set(":path".into(), path));
        }
    }
    if !cookies.is_empty() {
        let kept: Vec<String> = req
            .headers
            .get_all("cookie")
            .flat_map(|h| h.split(';'))
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .filter(|c| {
                let k = c.split_once('=').map(|(k, _)| k.trim()).unwrap_or(c);
                !cookies.contains(&k)
            })
            .map(str::to_string)
            .collect();
        if kept.is_empty() {
            ops.push(HeaderOp::Remove("cookie".into()));
        } else {
            ops.push(HeaderOp::Set("cookie".into(), kept.join("; ")));
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(path: &str, headers: &[(&str, &str)]) -> Request {
        Request::new("GET", path, headers)
    }

    fn table() -> Vec<Source> {
        vec![
            Source::Header {
                name: "authorization".into(),
                prefix: Some("Bearer ".into()),
            },
            Source::Header {
                name: "x-jwt".into(),
                prefix: None,
            },
            Source::Param("access_token".into()),
            Source::Cookie("session".into()),
        ]
    }

    #[test]
    fn finds_tokens_everywhere() {
        let t = table();
        type Case<'a> = (Request, Option<(&'a str, Vec<usize>)>);
        let cases: Vec<Case> = vec![
            (
                req("/", &[("authorization", "Bearer a.b.c")]),
                Some(("a.b.c", vec![0])),
            ),
            (
                req("/", &[("authorization", "bearer a.b.c")]),
                Some(("a.b.c", vec![0])),
            ),
            (req("/", &[("authorization", "Basic dXNlcjpwdw==")]), None),
            (
                req("/", &[("authorization", "Bearer")]),
                Some(("", vec![0])),
            ),
            (req("/", &[("x-jwt", " a.b.c ")]), Some(("a.b.c", vec![1]))),
            (
                req("/p?x=1&access_token=a.b.c", &[]),
                Some(("a.b.c", vec![2])),
            ),
            (
                req("/p?access_token=a%2Eb.c", &[]),
                Some(("a.b.c", vec![2])),
            ),
            (
                req("/", &[("cookie", "x=1; session=a.b.c; y=2")]),
                Some(("a.b.c", vec![3])),
            ),
            (
                req("/", &[("cookie", "session=\"a.b.c\"")]),
                Some(("a.b.c", vec![3])),
            ),
            (
                req("/?access_token=a.b.c", &[("authorization", "Bearer a.b.c")]),
                Some(("a.b.c", vec![0, 2])),
            ),
            (req("/", &[]), None),
        ];
        for (r, want) in cases {
            let got = extract(&r, &t, 100).unwrap();
            let want = want.map(|(tok, s)| Found {
                token: tok.into(),
                sources: s,
            });
            assert_eq!(got, want, "{r:?}");
        }
    }

    #[test]
    fn two_different_tokens_refused() {
        let t = table();
        let cases = [
            req(
                "/",
                &[
                    ("authorization", "Bearer a.b.c"),
                    ("authorization", "Bearer d.e.f"),
                ],
            ),
            req("/?access_token=d.e.f", &[("authorization", "Bearer a.b.c")]),
            req("/", &[("authorization", "Bearer a.b.c,Bearer d.e.f")]),
            req("/", &[("authorization", "Bearer a.b.c, Bearer d.e.f")]),
            req("/?access_token=a.b.c&access_token=x.y.z", &[]),
            req("/", &[("cookie", "session=a.b.c"), ("x-jwt", "q.r.s")]),
            // A token beside another credential in the same header, in either order: a
            // backend reading the other one would authenticate with what jwt never saw.
            req(
                "/",
                &[
                    ("authorization", "Bearer a.b.c"),
                    ("authorization", "Basic dTpw"),
                ],
            ),
            req("/", &[("authorization", "Basic dTpw, Bearer a.b.c")]),
        ];
        for r in cases {
            assert_eq!(
                extract(&r, &t, 100),
                Err(Refused::Invalid(Failure::MultipleTokens)),
                "{r:?}"
            );
        }
    }

    #[test]
    fn oversized_refused() {
        let big = format!("Bearer {}", "a".repeat(101));
        assert_eq!(
            extract(&req("/", &[("authorization", &big)]), &table(), 100),
            Err(Refused::Invalid(Failure::TooLarge))
        );
    }

    /// A source the backend could read differently is refused, whatever it holds; the
    /// exact spelling (and percent-escapes in a parameter name, which every parser decodes)
    /// is the token.
    #[test]
    fn ambiguous_sources_refused() {
        use Ambiguity::*;
        let t = table();
        let cookie = |c: &str| req("/", &[("cookie", c)]);
        let cases: Vec<(Request, Ambiguity)> = vec![
            (
                req("/", &[("x_jwt", "a.b.c")]),
                HeaderSpelling("x-jwt".into()),
            ),
            (
                req("/", &[("x-jwt", "a.b.c"), ("X_Jwt", "d.e.f")]),
                HeaderSpelling("x-jwt".into()),
            ),
            (
                cookie("session=a.b.c; session=a.b.c"),
                RepeatedCookie("session".into()),
            ),
            (
                req(
                    "/",
                    &[("cookie", "session=a.b.c"), ("cookie", "session=d.e.f")],
                ),
                RepeatedCookie("session".into()),
            ),
            (cookie("Session=a.b.c"), RepeatedCookie("session".into())),
            (cookie("sess%69on=a.b.c"), RepeatedCookie("session".into())),
            (cookie("session[]=a.b.c"), RepeatedCookie("session".into())),
            (
                req("/?access.token=a.b.c", &[]),
                RepeatedParam("access_token".into()),
            ),
            (
                req("/?access+token=a.b.c", &[]),
                RepeatedParam("access_token".into()),
            ),
            (
                req("/?access_token[]=a.b.c", &[]),
                RepeatedParam("access_token".into()),
            ),
            (
                req("/?access_token%5B0%5D=a.b.c", &[]),
                RepeatedParam("access_token".into()),
            ),
            (
                req("/?access_token=a.b.c&access_token[x]=d", &[]),
                RepeatedParam("access_token".into()),
            ),
            (
                req("/?ACCESS_TOKEN=a.b.c", &[]),
                RepeatedParam("access_token".into()),
            ),
        ];
        for (r, why) in cases {
            assert_eq!(extract(&r, &t, 100), Err(Refused::Ambiguous(why)), "{r:?}");
        }
        // Not ambiguous: other names, and escapes every parser decodes the same way.
        for (r, want) in [
            (req("/?access_token2=x&token=y", &[]), None),
            (req("/?access%5Ftoken=a.b.c", &[]), Some(("a.b.c", vec![2]))),
            (cookie("sessions=x; my_session=y"), None),
            (req("/", &[("x-jwt2", "a.b.c")]), None),
        ] {
            let want = want.map(|(tok, s)| Found {
                token: tok.to_string(),
                sources: s,
            });
            assert_eq!(extract(&r, &t, 100), Ok(want), "{r:?}");
        }
    }

    #[test]
    fn removal() {
        let t = table();
        let r = req(
            "/p?a=1&access_token=t.t.t&b=2",
            &[
                ("authorization", "Bearer t.t.t"),
                ("cookie", "x=1; session=t.t.t"),
            ],
        );
        let f = Found {
            token: "t.t.t".into(),
            sources: vec![0, 2, 3],
        };
        let ops = removal_ops(&r, &t, &f);
        assert_eq!(
            ops,
            vec![
                HeaderOp::Remove("authorization".into()),
                HeaderOp::Set(":path".into(), "/p?a=1&b=2".into()),
                HeaderOp::Set("cookie".into(), "x=1".into()),
            ]
        );
        let r = req("/p?access_token=t.t.t", &[("cookie", "session=t.t.t")]);
        let f = Found {
            token: "t.t.t".into(),
            sources: vec![2, 3],
        };
        assert_eq!(
            removal_ops(&r, &t, &f),
            vec![
                HeaderOp::Set(":path".into(), "/p".into()),
                HeaderOp::Remove("cookie".into())
            ]
        );
    }
}
