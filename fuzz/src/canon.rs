//! The canonical request view (meshwall-core `canon.rs`, `http.rs`, `client.rs`): paths,
//! header names, cookies, queries and the client address.

use crate::parse_request;
use meshwall_core::canon::{fold_header_name, same_header};
use meshwall_core::client::{canonical_ip, client_ip, parse_ip};
use meshwall_core::http::{cookie_pairs, lenient_name, other_spelling, query_pairs};
use meshwall_core::{canonical_path, canonical_request_path, CanonConfig, MethodSet, PathMatch};

/// The `canonical` options from the bits of `flags`, read as configuration JSON (so options
/// added to `CanonConfig` later are picked up by name; an older core without them gets the
/// six original ones).
fn cfg(flags: u8) -> CanonConfig {
    let bit = |n: u8| flags & (1 << n) != 0;
    let all = serde_json::json!({
        "allow_path_params": bit(0), "allow_encoded_slashes": bit(1), "allow_backslashes": bit(2),
        "trailing_slash_insensitive": bit(3), "case_insensitive_paths": bit(4),
        "head_matches_get": bit(5), "allow_method_override": bit(6), "allow_trailing_dots": bit(7),
    });
    serde_json::from_value(all).unwrap_or_else(|_| CanonConfig {
        allow_path_params: bit(0),
        allow_encoded_slashes: bit(1),
        allow_backslashes: bit(2),
        trailing_slash_insensitive: bit(3),
        case_insensitive_paths: bit(4),
        head_matches_get: bit(5),
        ..CanonConfig::default()
    })
}

/// `canon_request`: the first byte picks the `canonical` options, the rest is a request as
/// text (`crate::parse_request`).
///
/// Invariants: a canonical path is absolute, has no empty or dot segment and no query, and is
/// its own canonical form (canonicalising twice changes nothing: a policy and a backend that
/// canonicalise again agree); the header-name folds agree with each other; an address read
/// from `x-forwarded-for` or the peer is canonical.
pub fn request(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let cfg = cfg(flags);
    let (req, _body) = parse_request(rest);
    // The request's path with the URL override check: the same path or refusal as the target
    // alone, or a refusal for the override (never another path).
    match (
        canonical_path(&req.path, &cfg),
        canonical_request_path(&req, &cfg),
    ) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "{:?}", req.path),
        (Err(a), Err(b)) => assert_eq!(a, b, "{:?}", req.path),
        (Ok(_), Err(e)) => assert_eq!(e.reason(), "url_override", "{:?}", req.path),
        (Err(e), Ok(p)) => panic!("{p:?} accepted, the target alone refused: {e:?}"),
    }
    if let Ok(c) = canonical_path(&req.path, &cfg) {
        // `*` (asterisk-form, `OPTIONS *`) is the one canonical path that is not absolute;
        // it comes only from a path that is exactly `*` (before any query).
        if c == "*" {
            assert_eq!(req.path.split('?').next(), Some("*"), "{:?}", req.path);
            return;
        }
        assert!(
            c.starts_with('/'),
            "not absolute: {c:?} from {:?}",
            req.path
        );
        assert!(
            !c.contains('?') && !c.contains('#'),
            "query or fragment kept: {c:?}"
        );
        for seg in c.split('/').skip(1) {
            assert!(
                seg != "." && seg != "..",
                "dot segment kept: {c:?} from {:?}",
                req.path
            );
        }
        let inner = c.strip_suffix('/').unwrap_or(&c);
        assert!(
            !inner.get(1..).unwrap_or("").contains("//"),
            "empty segment kept: {c:?}"
        );
        // A raw `\` kept as data (`allow_backslashes`) is written `%5C`, which reads back as an
        // encoded slash: refused again unless `allow_encoded_slashes` (by design; the
        // canonical form is compared, never fed back).
        let backslash_data = c.to_ascii_uppercase().contains("%5C") && !cfg.allow_encoded_slashes;
        if !backslash_data {
            assert_eq!(
                canonical_path(&c, &cfg).as_deref(),
                Ok(c.as_str()),
                "not idempotent, from {:?}",
                req.path
            );
        }
        if cfg.case_insensitive_paths {
            assert!(!upper_outside_escapes(&c), "upper case kept: {c:?}");
        }
        // Matchers built from the canonical path match it.
        if let Ok(m) = PathMatch::exact("f", &c, &cfg) {
            assert!(m.matches(&c, &cfg), "exact {c:?} does not match itself");
        }
        if let Ok(m) = PathMatch::prefix("f", &c, &cfg) {
            assert!(m.matches(&c, &cfg), "prefix {c:?} does not match itself");
        }
    }
    if let Ok(ms) = MethodSet::parse("m", std::slice::from_ref(&req.method)) {
        let _ = ms.matches(&req.method, &cfg);
    }
    let _ = req.path_only();
    if let Some(q) = req.query() {
        for (k, _v) in query_pairs(q) {
            let l = lenient_name(&k);
            assert_eq!(lenient_name(&l), l, "lenient_name not idempotent for {k:?}");
            let _ = other_spelling(&k, "access_token");
        }
    }
    for (k, _v) in cookie_pairs(&req.headers) {
        let _ = other_spelling(k, "session");
    }
    let names: Vec<&str> = req.headers.names().collect();
    for (i, a) in names.iter().enumerate() {
        let f = fold_header_name(a);
        if a.is_ascii() {
            // (Bytes map to chars one by one: a non-ASCII name folds to its Latin-1 reading,
            // consistently on both sides of a comparison, but not idempotently. Envoy refuses
            // such names before any filter sees them.)
            assert_eq!(fold_header_name(&f), f, "fold not idempotent for {a:?}");
        }
        if let Some(b) = names.get(i + 1) {
            assert_eq!(
                same_header(a, b),
                f == fold_header_name(b),
                "folds disagree on {a:?} / {b:?}"
            );
        }
        let _ = req.headers.single(a);
        let _ = req
            .headers
            .check_spellings([*a, "x-forwarded-for", "authorization"]);
        let _ = req.headers.get_all_folded(a).count();
    }
    for hops in [0, 1, 2, 7, u32::MAX] {
        if let Ok(Some(ip)) = client_ip(&req, hops) {
            assert_eq!(canonical_ip(ip), ip, "client address not canonical");
        }
    }
    if let Some(peer) = &req.client_ip {
        if let Some(ip) = parse_ip(peer) {
            assert_eq!(
                parse_ip(&ip.to_string()),
                Some(ip),
                "address does not read back: {peer:?}"
            );
        }
    }
}

/// Whether `c` has an upper-case ASCII letter that is not a hex digit of a `%XX` escape.
fn upper_outside_escapes(c: &str) -> bool {
    let b = c.as_bytes();
    let mut i = 0;
    while let Some(&x) = b.get(i) {
        if x == b'%' {
            i += 3;
            continue;
        }
        if x.is_ascii_uppercase() {
            return true;
        }
        i += 1;
    }
    false
}
