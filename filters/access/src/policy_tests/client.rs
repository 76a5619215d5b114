//! Which address the lists are checked against: the downstream address, or `x-forwarded-for`
//! with trusted hops; headers a client can set are never trusted otherwise.

use super::*;
use crate::DenyReason::NoClientAddress;

/// `/admin` only from 10.0.0.1 (or 2001:db8::1), with `hops` trusted proxies.
fn admin_only(hops: u32) -> (AccessPolicy, MemHost) {
    policy(&format!(
        r#"{{"rules": [{{"match": {{"prefix": "/admin"}}, "allow": ["10.0.0.1", "2001:db8::1"]}}],
            "client_ip": {{"xff_num_trusted_hops": {hops}}}}}"#
    ))
}

fn get(p: &AccessPolicy, host: &MemHost, peer: Option<&str>, headers: &[(&str, &str)]) -> u16 {
    exchange(p, host, &req("GET", "/admin", peer, headers)).status
}

#[test]
fn without_trusted_hops_only_the_downstream_address_counts() {
    let (p, host) = admin_only(0);
    let spoofs: &[&[(&str, &str)]] = &[
        &[("x-forwarded-for", "10.0.0.1")],
        &[("x-forwarded-for", "10.0.0.2, 10.0.0.1")],
        &[("x_forwarded_for", "10.0.0.1")],
        &[("x-real-ip", "10.0.0.1")],
        &[("true-client-ip", "10.0.0.1")],
        &[("forwarded", "for=10.0.0.1")],
        &[("x-envoy-external-address", "10.0.0.1")],
        &[
            ("x-client-ip", "10.0.0.1"),
            ("cf-connecting-ip", "10.0.0.1"),
        ],
    ];
    for headers in spoofs {
        assert_eq!(
            get(&p, &host, Some("10.0.0.2"), headers),
            403,
            "{headers:?}"
        );
        assert_eq!(
            get(&p, &host, Some("10.0.0.1"), headers),
            200,
            "{headers:?}"
        );
    }
    assert_eq!(
        get(&p, &host, None, &[("x-forwarded-for", "10.0.0.1")]),
        403
    );
}

#[test]
fn trusted_hops_count_from_the_right_of_x_forwarded_for() {
    let cases: &[(u32, &str, &[&str], u16, &str)] = &[
        (1, "10.9.9.9", &["10.0.0.1"], 200, "one hop: the last entry"),
        (
            1,
            "10.9.9.9",
            &["10.0.0.1, 10.0.0.2"],
            403,
            "the client's own entries are on the left",
        ),
        (
            1,
            "10.9.9.9",
            &["10.0.0.2", "10.0.0.1"],
            200,
            "every header, in order",
        ),
        (
            2,
            "10.9.9.9",
            &["10.0.0.2, 10.0.0.1, 10.9.9.9"],
            200,
            "two hops",
        ),
        (
            2,
            "10.9.9.9",
            &["10.0.0.1, 10.0.0.2, 10.9.9.9"],
            403,
            "two hops",
        ),
        (
            2,
            "10.9.9.9",
            &["10.0.0.1", "10.0.0.2, 10.9.9.9"],
            403,
            "two hops across headers",
        ),
        (1, "10.9.9.9", &["::ffff:10.0.0.1"], 200, "IPv4-mapped"),
        (1, "10.9.9.9", &["10.0.0.1:4711"], 200, "with a port"),
        (
            1,
            "10.9.9.9",
            &["[2001:db8::1]:443"],
            200,
            "IPv6 with a port",
        ),
        (1, "10.9.9.9", &[" 2001:db8::1 "], 200, "spaces around"),
        (1, "10.9.9.9", &["2001:db8::2"], 403, "IPv6 not allowed"),
        (
            3,
            "10.0.0.1",
            &["10.0.0.2, 10.0.0.3"],
            200,
            "too few entries: the downstream address",
        ),
        (1, "10.0.0.1", &[], 200, "no header: the downstream address"),
        (1, "10.0.0.2", &[], 403, "no header: the downstream address"),
    ];
    for (hops, peer, xff, want, why) in cases {
        let (p, host) = admin_only(*hops);
        let headers: Vec<(&str, &str)> = xff.iter().map(|v| ("x-forwarded-for", *v)).collect();
        assert_eq!(
            get(&p, &host, Some(peer), &headers),
            *want,
            "{why}: {hops} {xff:?}"
        );
    }
}

#[test]
fn a_trusted_entry_that_is_not_an_address_is_an_unknown_client() {
    // The peer is then a proxy (here an allowed address): it must not stand in for the client.
    let (p, host) = admin_only(1);
    for xff in [
        "unknown",
        "10.0.0.2, ",
        "10.0.0.1, garbage",
        "10.0.0.1,",
        "010.0.0.1",
        "10.0.0.1/32",
    ] {
        let r = req(
            "GET",
            "/admin",
            Some("10.0.0.1"),
            &[("x-forwarded-for", xff)],
        );
        assert_eq!(p.decide(&r), Ok(Verdict::Deny(NoClientAddress)), "{xff:?}");
        assert_eq!(exchange(&p, &host, &r).status, 403);
    }
    assert_eq!(
        host.metric("meshwall.access.denied.reason.no_client_address"),
        6
    );
    // Too few entries and no usable downstream address: unknown as well.
    let r = req("GET", "/admin", None, &[("x-forwarded-for", "10.0.0.1")]);
    let (p2, _) = admin_only(2);
    assert_eq!(p2.decide(&r), Ok(Verdict::Deny(NoClientAddress)));
}

#[test]
fn with_trusted_hops_another_spelling_of_x_forwarded_for_is_refused() {
    // A CGI-style backend reads `x_forwarded_for` as X-Forwarded-For: which list it would use
    // is not the filter's to guess.
    let (p, host) = admin_only(1);
    for headers in [
        vec![("x_forwarded_for", "10.0.0.1")],
        vec![
            ("x-forwarded-for", "10.0.0.1"),
            ("x_forwarded_for", "10.0.0.2"),
        ],
        vec![("X_Forwarded-For", "10.0.0.1")],
    ] {
        let s = exchange(&p, &host, &req("GET", "/admin", Some("10.0.0.1"), &headers));
        assert_eq!(s.status, 400, "{headers:?}");
        assert_eq!(s.problem()["reason"], "header_spelling");
        assert!(s.upstream.is_none());
    }
    assert_eq!(
        host.metric("meshwall.access.ambiguous.reason.header_spelling"),
        3
    );
    // Upper case is the same header (Envoy hands names over lower-cased anyway).
    assert_eq!(
        get(
            &p,
            &host,
            Some("10.9.9.9"),
            &[("X-Forwarded-For", "10.0.0.1")]
        ),
        200
    );
}

#[test]
fn downstream_addresses_as_envoy_writes_them() {
    let (p, host) = admin_only(0);
    for (peer, want) in [
        ("10.0.0.1", 200),
        ("10.0.0.1:34567", 200),
        ("::ffff:10.0.0.1", 200),
        ("[::ffff:10.0.0.1]:34567", 200),
        ("2001:db8::1", 200),
        ("[2001:db8::1]:443", 200),
        ("2001:DB8:0::1", 200),
        ("10.0.0.2", 403),
        ("::ffff:10.0.0.2", 403),
        ("::10.0.0.1", 403),
    ] {
        assert_eq!(get(&p, &host, Some(peer), &[]), want, "{peer}");
    }
}
