//! Where keys come from (headers, optionally after a value prefix; query parameters; cookies),
//! and how the key is taken out of the request before it goes upstream.
//!
//! Query strings and cookies are read with core's one parser (`meshwall_core::http`). A request
//! carries one key or none:
//! - two occurrences of a key source are **several keys** (401), whatever they hold, even the same
//!   key twice: a header given twice or with a comma-separated list, a parameter or a cookie given
//!   twice, a key in two sources. Backends disagree on which of two values counts (Go and Java
//!   read the first header, Django and Rack the last cookie, PHP the last parameter);
//! - a source the backend could read under another name is **ambiguous** (400, core's
//!   `Refusals`): a key header in another spelling (`x_api_key` for `x-api-key`: CGI-style servers
//!   read both as `HTTP_X_API_KEY`), a parameter or cookie whose name a framework reads as the
//!   source's (another case for ASP.NET; `.` or space for `_` for PHP; `api_key[]`, `api_key[0]`,
//!   `api_key[a]` for qs, Rails and PHP; a `;`-separated pair for Rack 2 and old Python; an escaped
//!   cookie name for PHP).

use meshwall_core::http::{
    cookie_pairs, form_decode, lenient_name, other_spelling, query_pairs, strip_prefix_ci,
};
use meshwall_core::{Ambiguity, HeaderOp, Request};

/// One place a key may be found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Header (lower-case name) and the value prefix, matched without regard to case.
    Header {
        name: String,
        prefix: Option<String>,
    },
    Param(String),
    Cookie(String),
}

/// The one key a request carries, and the source (index into the table) it was in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub key: String,
    pub source: usize,
}

/// Why no key can be taken from the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// More than one key (401).
    Multiple,
    /// The backend may read another key than the filter (400).
    Ambiguous(Ambiguity),
}

/// Whether a (trimmed) header value part carries the prefix, or is the prefix alone
/// (`ApiKey` with nothing after it).
fn has_prefix(part: &str, prefix: &str) -> bool {
    strip_prefix_ci(part, prefix).is_some() || part.eq_ignore_ascii_case(prefix.trim_end())
}

fn name_of(pair: &str) -> String {
    form_decode(pair.split_once('=').map(|(k, _)| k).unwrap_or(pair))
}

/// The key occurrences seen so far.
#[derive(Default)]
struct Tally {
    first: Option<Found>,
    count: usize,
}

impl Tally {
    fn add(&mut self, key: &str, source: usize) {
        self.count = self.count.saturating_add(1);
        if self.first.is_none() {
            self.first = Some(Found {
                key: key.trim().to_string(),
                source,
            });
        }
    }

    /// A list of credentials in one value: several keys, whatever they are.
    fn several(&mut self) {
        self.count = self.count.saturating_add(2);
    }
}

/// Finds the key: `Ok(None)` when the request has none (see the module docs for what is
/// refused). Every source is read, so an ambiguous source is refused even when another
/// source holds a key.
pub fn extract(req: &Request, table: &[Source]) -> Result<Option<Found>, Refused> {
    let mut tally = Tally::default();
    for (idx, src) in table.iter().enumerate() {
        match src {
            Source::Header { name, prefix } => {
                req.headers
                    .check_spellings([name.as_str()])
                    .map_err(Refused::Ambiguous)?;
                for value in req.headers.get_all(name).map(str::trim) {
                    let carries = match prefix {
                        None => true,
                        Some(p) => value.split(',').map(str::trim).any(|x| has_prefix(x, p)),
                    };
                    if !carries {
                        continue;
                    }
                    if value.contains(',') {
                        tally.several();
                        continue;
                    }
                    tally.add(
                        match prefix {
                            None => value,
                            Some(p) => strip_prefix_ci(value, p).unwrap_or(""),
                        },
                        idx,
                    );
                }
            }
            Source::Param(name) => {
                let Some(query) = req.query() else { continue };
                // `a=1;api_key=K` is two pairs for Rack 2 and Python before 3.9.2.
                for segment in query.split('&') {
                    if segment.split(';').skip(1).any(|sub| {
                        let n = name_of(sub);
                        n == *name || other_spelling(&n, name)
                    }) {
                        return Err(Refused::Ambiguous(Ambiguity::RepeatedParam(name.clone())));
                    }
                }
                for (k, v) in query_pairs(query) {
                    if k == *name {
                        tally.add(&v, idx);
                    } else if other_spelling(&k, name) {
                        return Err(Refused::Ambiguous(Ambiguity::RepeatedParam(name.clone())));
                    }
                }
            }
            Source::Cookie(name) => {
                for (k, v) in cookie_pairs(&req.headers) {
                    if k == name {
                        tally.add(v, idx);
                    } else if lenient_name(&form_decode(k)) == lenient_name(name) {
                        return Err(Refused::Ambiguous(Ambiguity::RepeatedCookie(name.clone())));
                    }
                }
            }
        }
    }
    if tally.count > 1 {
        return Err(Refused::Multiple);
    }
    Ok(tally.first)
}

/// Header operations that take the key out of the request: the header removed, the `:path`
/// rewritten without the parameter (the rest of it byte for byte), or the cookie left out.
pub fn removal_ops(req: &Request, table: &[Source], found: &Found) -> Vec<HeaderOp> {
    match table.get(found.source) {
        Some(Source::Header { name, .. }) => vec![HeaderOp::Remove(name.clone())],
        Some(Source::Param(param)) => {
            let Some(query) = req.query() else {
                return Vec::new();
            };
            let kept: Vec<&str> = query
                .split('&')
                .filter(|segment| name_of(segment) != *param)
                .collect();
            let mut path = req.path_only().to_string();
            if kept.iter().any(|s| !s.is_empty()) {
                path.push('?');
                path.push_str(&kept.join("&"));
            }
            vec![HeaderOp::Set(":path".into(), path)]
        }
        Some(Source::Cookie(cookie)) => {
            let kept: Vec<&str> = req
                .headers
                .get_all("cookie")
                .flat_map(|h| h.split(';'))
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .filter(|c| c.split_once('=').map(|(k, _)| k.trim()) != Some(cookie.as_str()))
                .collect();
            if kept.is_empty() {
                vec![HeaderOp::Remove("cookie".into())]
            } else {
                vec![HeaderOp::Set("cookie".into(), kept.join("; "))]
            }
        }
        None => Vec::new(),
    }
}

#[cfg(test)]
#[path = "sources_tests.rs"]
mod tests;
