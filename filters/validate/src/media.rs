//! Media types: the request's `Content-Type` against the ranges an operation declares.

use crate::spec::{self, RequestBody};

/// `type/subtype` (lower case) and the charset parameter of a Content-Type value.
pub fn media_type(ct: &str) -> (String, Option<String>) {
    let mut parts = ct.split(';');
    let essence = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
    let charset = parts.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| v.trim().trim_matches('"').to_ascii_lowercase())
    });
    (essence, charset)
}

/// Whether a media type is JSON (`application/json`, `*/*+json`).
pub fn is_json(essence: &str) -> bool {
    let sub = essence.split_once('/').map(|(_, s)| s).unwrap_or_default();
    sub == "json" || sub.ends_with("+json")
}

/// Matches `type/subtype` against a declared range (`*/*`, `type/*`, `application/*+json`).
pub fn range_matches(range: &str, essence: &str) -> bool {
    let (Some((rt, rs)), Some((t, s))) = (range.split_once('/'), essence.split_once('/')) else {
        return false;
    };
    let type_ok = rt == "*" || rt == t;
    let sub_ok = rs == "*"
        || rs == s
        || match rs.split_once('*') {
            Some((pre, post)) => {
                s.len() >= pre.len() + post.len() && s.starts_with(pre) && s.ends_with(post)
            }
            None => false,
        };
    type_ok && sub_ok
}

/// The declared media type for a request content type: exact first, then the most specific range.
pub fn select_media<'a>(body: &'a RequestBody, essence: &str) -> Option<&'a spec::MediaType> {
    let specificity = |r: &str| -> u8 {
        if r == essence {
            3
        } else if r.starts_with("*/") {
            0
        } else if r.ends_with("/*") {
            1
        } else {
            2
        }
    };
    body.content
        .iter()
        .filter(|m| range_matches(&m.range, essence))
        .max_by_key(|m| specificity(&m.range))
}
