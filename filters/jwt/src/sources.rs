//! Where tokens come from (headers with a prefix, query parameters, cookies), and how a
//! token is removed from the request before it goes upstream.

use crate::token::Failure;
use meshwall_core::{HeaderOp, Request};
use percent_encoding::percent_decode_str;

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

fn strip_prefix_ci<'a>(value: &'a str, prefix: &str) -> Option<&'a str> {
    let head = value.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        value.get(prefix.len()..)
    } else {
        None
    }
}

/// `name=value` pairs of a query string, percent-decoded (a value that does not decode to
/// UTF-8 is kept raw; it will fail token decoding).
fn query_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let dec = |s: &str| {
            percent_decode_str(s)
                .decode_utf8()
                .map(|c| c.into_owned())
                .unwrap_or_else(|_| s.to_string())
        };
        (dec(k), dec(v))
    })
}

/// `name=value` pairs of every `Cookie` header.
fn cookie_pairs(req: &Request) -> impl Iterator<Item = (&str, &str)> {
    req.headers.get_all("cookie").flat_map(|h| {
        h.split(';').filter_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|x| x.strip_suffix('"'))
                .unwrap_or(v);
            Some((k.trim(), v))
        })
    })
}

/// Finds the token. Several different tokens (in one source or across sources) are refused;
/// the same token in two places is one token. A token longer than `max_bytes` is refused
/// before anything else is done with it.
pub fn extract(
    req: &Request,
    table: &[Source],
    max_bytes: usize,
) -> Result<Option<Found>, Failure> {
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
                // Envoy joins repeated headers with `,` (and a JWT never contains one), so
                // each comma-separated part is a value of its own.
                for value in req
                    .headers
                    .get_all(name)
                    .flat_map(|v| v.split(','))
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                {
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
                if let Some(q) = req.query() {
                    for (k, v) in query_pairs(q) {
                        if &k == name {
                            add(&v, idx)?;
                        }
                    }
                }
            }
            Source::Cookie(name) => {
                for (k, v) in cookie_pairs(req) {
                    if k == name {
                        add(v, idx)?;
                    }
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
                    let k = percent_decode_str(k)
                        .decode_utf8()
                        .map(|c| c.into_owned())
                        .unwrap_or_default();
                    !pair.is_empty() && !params.contains(&k.as_str())
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
        ];
        for r in cases {
            assert_eq!(extract(&r, &t, 100), Err(Failure::MultipleTokens), "{r:?}");
        }
    }

    #[test]
    fn oversized_refused() {
        let big = format!("Bearer {}", "a".repeat(101));
        assert_eq!(
            extract(&req("/", &[("authorization", &big)]), &table(), 100),
            Err(Failure::TooLarge)
        );
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
