//! Parameter forms that backends read differently, refused before anything is validated.
//!
//! A value the filter validates must be the value the backend acts on. Frameworks disagree on
//! repeated names (first, last, or a list), build arrays and objects from brackets (qs, Rails,
//! PHP: `a[]`, `a[0]`, `a[b][c]`), split the query on `;` as well as `&` (Python before 3.9.2,
//! Bottle, Perl CGI), read names without regard to case (ASP.NET) or with `.` and spaces
//! turned into `_` (PHP), and fold `_` into `-` in header names (Rack, WSGI, PHP). Each of
//! those, for a declared parameter, is an [`Ambiguity`].

use crate::spec::{Location, Param, Shape, Style};
use meshwall_core::http::{query_pairs, single_cookie};
use meshwall_core::{Ambiguity, Request};
use std::collections::HashSet;

/// How often a declared query name may appear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Once (scalars, unexploded arrays and objects, JSON content, exploded object properties).
    Once,
    /// Any number of times (exploded arrays: `id=1&id=2`).
    Repeated,
    /// `name[prop]=v`, each property once (deepObject).
    Deep,
}

/// A query name the operation declares.
struct Declared<'p> {
    name: &'p str,
    kind: Kind,
    /// deepObject: the schema's property names.
    props: Vec<&'p str>,
}

fn declared(params: &[Param]) -> Vec<Declared<'_>> {
    let mut out = Vec::new();
    for p in params.iter().filter(|p| p.location == Location::Query) {
        match (&p.shape, p.style, p.explode) {
            (Shape::Object(props), Style::DeepObject, _) => out.push(Declared {
                name: &p.name,
                kind: Kind::Deep,
                props: props.iter().map(|(n, _)| n.as_str()).collect(),
            }),
            (Shape::Object(props), Style::Form, true) => {
                // Each property is its own query parameter.
                out.extend(props.iter().map(|(n, _)| Declared {
                    name: n,
                    kind: Kind::Once,
                    props: Vec::new(),
                }));
            }
            (_, Style::DeepObject, _) => out.push(Declared {
                name: &p.name,
                kind: Kind::Deep,
                props: Vec::new(),
            }),
            (Shape::Array(_), _, true) => out.push(Declared {
                name: &p.name,
                kind: Kind::Repeated,
                props: Vec::new(),
            }),
            _ => out.push(Declared {
                name: &p.name,
                kind: Kind::Once,
                props: Vec::new(),
            }),
        }
    }
    out
}

/// A name as the most lenient readers see it: ASCII case ignored (ASP.NET), leading spaces
/// dropped and `.` or space read as `_` (PHP).
fn fold(name: &str) -> String {
    name.trim_start_matches(' ')
        .bytes()
        .map(|b| match b {
            b'.' | b' ' => '_',
            other => char::from(other.to_ascii_lowercase()),
        })
        .collect()
}

/// The part of a query name before its first `[`.
fn base(name: &str) -> &str {
    name.split('[').next().unwrap_or(name)
}

/// How a query name reaches a declared one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// The declared name itself.
    Exact,
    /// The declared name with brackets after it (`limit[]`, `filter[a][b]`), or the bare
    /// prefix of a declared bracket name (`page` for `page[size]`).
    Bracket,
    /// Another spelling of it for a lenient reader (`Limit`, `dry.run` for `dry_run`).
    Folded,
}

/// The declared parameter a query name reaches in some framework's reading, if any.
fn reached<'a, 'p>(decl: &'a [Declared<'p>], name: &str) -> Option<(&'a Declared<'p>, Reach)> {
    if let Some(d) = decl.iter().find(|d| d.name == name) {
        return Some((d, Reach::Exact));
    }
    let bracketed = |d: &Declared<'_>| {
        name.strip_prefix(d.name)
            .is_some_and(|r| r.starts_with('['))
            || (d.name.contains('[') && base(d.name) == name)
    };
    if let Some(d) = decl.iter().find(|d| bracketed(d)) {
        return Some((d, Reach::Bracket));
    }
    let f = fold(base(name));
    decl.iter()
        .find(|d| fold(base(d.name)) == f)
        .map(|d| (d, Reach::Folded))
}

/// The one property of a deepObject name (`filter[age]`): no further brackets, not empty,
/// and not an index (`filter[0]`: qs reads an array) unless the schema declares it.
fn deep_property<'n>(d: &Declared<'_>, name: &'n str) -> Option<&'n str> {
    let inner = name
        .strip_prefix(d.name)?
        .strip_prefix('[')?
        .strip_suffix(']')?;
    if inner.is_empty() || inner.contains(['[', ']']) {
        return None;
    }
    let index = inner.bytes().all(|b| b.is_ascii_digit());
    (!index || d.props.contains(&inner)).then_some(inner)
}

/// The query string's first ambiguity for the declared query parameters. `query` is the
/// standard reading of `raw` (`&`-separated, form-decoded).
pub fn query(params: &[Param], raw: &str, query: &[(String, String)]) -> Result<(), Ambiguity> {
    let decl = declared(params);
    if decl.is_empty() {
        return Ok(());
    }
    let refuse = |d: &Declared<'_>| Err(Ambiguity::RepeatedParam(d.name.to_string()));
    let mut seen: HashSet<(&str, &str)> = HashSet::new();
    for (k, _) in query {
        let Some((d, reach)) = reached(&decl, k) else {
            continue;
        };
        let key: (&str, &str) = match (reach, d.kind) {
            (Reach::Folded, _) => return refuse(d),
            (_, Kind::Deep) => match deep_property(d, k) {
                Some(prop) => (d.name, prop),
                // `filter=x`, `filter[]`, `filter[a][b]`, `filter[0]`.
                None => return refuse(d),
            },
            (Reach::Bracket, _) => return refuse(d),
            (Reach::Exact, Kind::Repeated) => continue,
            (Reach::Exact, Kind::Once) => (d.name, ""),
        };
        if !seen.insert(key) {
            return refuse(d);
        }
    }
    if raw.contains(';') {
        // Readers that also split on `;` see these pairs; the standard reading does not.
        let standard: HashSet<(&str, &str)> = query
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        for (k, v) in query_pairs(&raw.replace(';', "&")) {
            if let Some((d, _)) = reached(&decl, &k) {
                if !standard.contains(&(k.as_str(), v.as_str())) {
                    return refuse(d);
                }
            }
        }
    }
    Ok(())
}

/// The first ambiguity among an operation's declared parameters: query forms, a declared
/// header in another spelling or (unless an array) given twice, a declared cookie given twice.
pub fn check(params: &[Param], req: &Request, pairs: &[(String, String)]) -> Result<(), Ambiguity> {
    query(params, req.query().unwrap_or_default(), pairs)?;
    for p in params {
        match p.location {
            Location::Header => {
                if matches!(p.shape, Shape::Array(_)) {
                    // A list header may be repeated (RFC 9110 §5.3), never respelled.
                    req.headers.check_spellings([p.name.as_str()])?;
                } else {
                    req.headers.single(&p.name)?;
                }
            }
            Location::Cookie => {
                single_cookie(&req.headers, &p.name)?;
            }
            Location::Path | Location::Query => {}
        }
    }
    Ok(())
}
