//! Bucket keys: client addresses, headers, paths, methods, constants.

use super::*;

/// Request headers, as pairs.
type Pairs<'a> = &'a [(&'a str, &'a str)];

#[test]
fn per_ip_buckets_are_independent() {
    let host = MemHost::new();
    let p = policy(
        &host,
        &one_rule(r#"[{"remote_address":{}}]"#, 2, 1, "1h", ""),
    );
    for ip in ["10.0.0.1", "10.0.0.2", "2001:db8::1", "[2001:db8:1::1]:443"] {
        assert_eq!(count_ok(&p, &host, &req("GET", "/", ip, &[]), 3), 2, "{ip}");
    }
    assert_eq!(
        status(&p, &host, &req("GET", "/", "10.0.0.1:5555", &[])),
        429,
        "port is ignored"
    );
    assert_eq!(
        status(&p, &host, &req("GET", "/", "::ffff:10.0.0.2", &[])),
        429,
        "IPv4-mapped IPv6 is the IPv4 client"
    );
    assert_eq!(
        status(&p, &host, &req("GET", "/", "2001:db8::ffff", &[])),
        429,
        "same /64"
    );
}

#[test]
fn prefix_lengths_group_addresses() {
    let host = MemHost::new();
    let p = policy(
        &host,
        &one_rule(r#"[{"remote_address":{}}]"#, 1, 1, "1h", "").replace(
            "]}",
            r#"],"client_ip":{"ipv4_prefix_length":24,"ipv6_prefix_length":128}}"#,
        ),
    );
    assert_eq!(status(&p, &host, &req("GET", "/", "10.0.0.1", &[])), 200);
    assert_eq!(status(&p, &host, &req("GET", "/", "10.0.0.200", &[])), 429);
    assert_eq!(status(&p, &host, &req("GET", "/", "10.0.1.1", &[])), 200);
    assert_eq!(status(&p, &host, &req("GET", "/", "2001:db8::1", &[])), 200);
    assert_eq!(status(&p, &host, &req("GET", "/", "2001:db8::2", &[])), 200);
}

#[test]
fn x_forwarded_for_is_ignored_unless_trusted() {
    let host = MemHost::new();
    let p = policy(
        &host,
        &one_rule(r#"[{"remote_address":{}}]"#, 1, 1, "1h", ""),
    );
    assert_eq!(
        status(
            &p,
            &host,
            &req("GET", "/", "10.0.0.1", &[("x-forwarded-for", "1.1.1.1")])
        ),
        200
    );
    assert_eq!(
        status(
            &p,
            &host,
            &req("GET", "/", "10.0.0.1", &[("x-forwarded-for", "2.2.2.2")])
        ),
        429,
        "spoofed XFF must not give a new bucket"
    );
}

#[test]
fn x_forwarded_for_with_trusted_hops() {
    let host = MemHost::new();
    let json = one_rule(r#"[{"remote_address":{}}]"#, 1, 1, "1h", "")
        .replace("]}", r#"],"client_ip":{"xff_num_trusted_hops":2}}"#);
    let p = policy(&host, &json);
    let lb = "10.9.9.9";
    let via = |xff: &str| req("GET", "/", lb, &[("x-forwarded-for", xff)]);
    // Client 203.0.113.5 → trusted LB (appends the client) → Envoy (appends the LB).
    assert_eq!(status(&p, &host, &via("203.0.113.5, 10.9.9.9")), 200);
    assert_eq!(status(&p, &host, &via("203.0.113.5,10.9.9.9")), 429);
    // What the client writes itself is to the left and changes nothing.
    assert_eq!(
        status(&p, &host, &via("6.6.6.6, 203.0.113.5, 10.9.9.9")),
        429
    );
    // Repeated headers count as one list.
    let split = req(
        "GET",
        "/",
        lb,
        &[
            ("x-forwarded-for", "7.7.7.7, 203.0.113.5"),
            ("x-forwarded-for", "10.9.9.9"),
        ],
    );
    assert_eq!(status(&p, &host, &split), 429);
    assert_eq!(
        status(&p, &host, &via("203.0.113.6, 10.9.9.9")),
        200,
        "another client"
    );
    // Too short at the trusted position: the peer address is the key.
    assert_eq!(status(&p, &host, &via("10.9.9.9")), 200);
    assert_eq!(status(&p, &host, &req("GET", "/", lb, &[])), 429);
    // Garbage at the trusted position: the client is unknown (never the LB's address), and the
    // rule's `on_missing_key` decides: here one shared anonymous bucket.
    assert_eq!(status(&p, &host, &via("garbage, 10.9.9.9")), 200);
    assert_eq!(
        status(&p, &host, &via("junk, 10.9.9.9")),
        429,
        "the same anonymous bucket"
    );
    // The trusted list in another spelling is refused: a CGI-style backend reads both as one.
    let respelled = req(
        "GET",
        "/",
        lb,
        &[
            ("x-forwarded-for", "203.0.113.7, 10.9.9.9"),
            ("x_forwarded_for", "198.51.100.1"),
        ],
    );
    assert_eq!(status(&p, &host, &respelled), 400);
    assert_eq!(
        host.metric("meshwall.ratelimit.ambiguous.reason.header_spelling"),
        1
    );
    // Without trusted hops the header is never read, so its spelling is none of our business.
    let h2 = MemHost::new();
    let direct = policy(&h2, &one_rule(r#"[{"remote_address":{}}]"#, 1, 1, "1h", ""));
    let r = req("GET", "/", lb, &[("x_forwarded_for", "198.51.100.1")]);
    assert_eq!(status(&direct, &h2, &r), 200);
}

#[test]
fn header_keys_and_missing_key_handling() {
    let host = MemHost::new();
    let p = policy(
        &host,
        r#"{"rules":[
          {"name":"user","key":[{"request_headers":{"header_name":"X-User-Id"}}],"on_missing_key":"skip","token_bucket":{"max_tokens":2,"fill_interval":"1h"}},
          {"name":"tenant","key":[{"request_headers":{"header_name":"x-tenant"}}],"on_missing_key":"anonymous","token_bucket":{"max_tokens":3,"fill_interval":"1h"}}]}"#,
    );
    let alice = req(
        "GET",
        "/",
        "10.0.0.1",
        &[("x-user-id", "alice"), ("x-tenant", "t1")],
    );
    let bob = req(
        "GET",
        "/",
        "10.0.0.1",
        &[("x-user-id", "bob"), ("x-tenant", "t2")],
    );
    assert_eq!(count_ok(&p, &host, &alice, 3), 2);
    assert_eq!(
        count_ok(&p, &host, &bob, 3),
        2,
        "same IP, other user: own bucket"
    );
    // No user id: the user rule is skipped; no tenant: all such requests share one bucket.
    let anon = req("GET", "/", "10.0.0.3", &[]);
    assert_eq!(count_ok(&p, &host, &anon, 5), 3);
    let anon2 = req("GET", "/", "10.0.0.4", &[("x-tenant", "  ")]);
    assert_eq!(
        status(&p, &host, &anon2),
        429,
        "blank counts as missing: the shared anonymous bucket"
    );
    let (_, h) = send(
        &p,
        &host,
        &req("GET", "/", "10.0.0.5", &[("x-tenant", "t9")]),
    );
    assert_eq!(
        h.get("ratelimit"),
        Some(r#""tenant";r=2;t=3600"#),
        "only the rules that applied"
    );
}

#[test]
fn composite_keys() {
    let host = MemHost::new();
    let p = policy(
        &host,
        &one_rule(
            r#"[{"remote_address":{}},{"method":{}},{"path":{}}]"#,
            1,
            1,
            "1h",
            "",
        ),
    );
    assert_eq!(status(&p, &host, &req("GET", "/a", "10.0.0.1", &[])), 200);
    assert_eq!(
        status(&p, &host, &req("GET", "/a?q=1", "10.0.0.1", &[])),
        429
    );
    assert_eq!(status(&p, &host, &req("POST", "/a", "10.0.0.1", &[])), 200);
    assert_eq!(status(&p, &host, &req("GET", "/b", "10.0.0.1", &[])), 200);
    assert_eq!(status(&p, &host, &req("GET", "/a", "10.0.0.2", &[])), 200);
    // Parts are length-prefixed: ("ab","c") and ("a","bc") differ.
    let h2 = MemHost::new();
    let p2b = policy(
        &h2,
        &one_rule(
            r#"[{"request_headers":{"header_name":"a"}},{"request_headers":{"header_name":"b"}}]"#,
            1,
            1,
            "1h",
            r#","on_missing_key":"skip""#,
        ),
    );
    assert_eq!(
        status(
            &p2b,
            &h2,
            &req("GET", "/", "1.1.1.1", &[("a", "ab"), ("b", "c")])
        ),
        200
    );
    assert_eq!(
        status(
            &p2b,
            &h2,
            &req("GET", "/", "1.1.1.1", &[("a", "a"), ("b", "bc")])
        ),
        200
    );
    assert_eq!(
        status(&p2b, &h2, &req("GET", "/", "1.1.1.1", &[("a", "a")])),
        200,
        "b missing: skipped"
    );
}

#[test]
fn constant_key_is_one_global_bucket() {
    let host = MemHost::new();
    let p = policy(
        &host,
        &one_rule(
            r#"[{"generic_key":{"descriptor_value":"all"}}]"#,
            3,
            1,
            "1h",
            "",
        ),
    );
    let ok: usize = (0..10)
        .filter(|i| {
            status(
                &p,
                &host,
                &req("GET", &format!("/{i}"), &format!("10.0.0.{i}"), &[]),
            ) == 200
        })
        .count();
    assert_eq!(ok, 3);
}

// ---------------------------------------------------------------- keys on the canonical view

#[test]
fn key_headers_have_one_value_in_one_spelling() {
    let host = MemHost::new();
    let p = policy(
        &host,
        &one_rule(
            r#"[{"request_headers":{"header_name":"x-api-key"}}]"#,
            2,
            1,
            "1h",
            r#","on_missing_key":"skip","match":{"prefix":"/api/"}"#,
        ),
    );
    let k1 = req("GET", "/api/x", "10.0.0.1", &[("x-api-key", "K1")]);
    assert_eq!(count_ok(&p, &host, &k1, 3), 2);
    // (headers, status, refusal reason): 429 = K1's own (empty) bucket.
    let cases: &[(Pairs, u16, &str)] = &[
        (&[("x-api-key", "K1")], 429, ""),
        (&[("X-API-KEY", "K1")], 429, ""),
        (&[("x-api-key", " K1 ")], 429, ""),
        (
            &[("x-api-key", "K1"), ("x-api-key", "K1")],
            400,
            "repeated_header",
        ),
        (
            &[("x-api-key", "K1"), ("x-api-key", "K2")],
            400,
            "repeated_header",
        ),
        (
            &[("x-api-key", "K2"), ("X-Api-Key", "K1")],
            400,
            "repeated_header",
        ),
        (&[("x_api_key", "K1")], 400, "header_spelling"),
        (&[("x_api_key", "K2")], 400, "header_spelling"),
        (
            &[("x-api-key", "K1"), ("x_api_key", "K2")],
            400,
            "header_spelling",
        ),
        (&[("X_API-KEY", "K3")], 400, "header_spelling"),
    ];
    for (headers, want, reason) in cases {
        let r = req("GET", "/api/x", "10.0.0.1", headers);
        let mut ex = Exchange::default();
        let got = match p.on_request_headers(&mut ex, &r, &host) {
            Action::Reply(reply) => {
                let body: serde_json::Value =
                    serde_json::from_slice(&reply.body).unwrap_or_default();
                (
                    reply.status,
                    body["reason"].as_str().unwrap_or("").to_string(),
                )
            }
            other => panic!("{headers:?}: {other:?}"),
        };
        assert_eq!(got, (*want, reason.to_string()), "{headers:?}");
    }
    assert_eq!(
        host.metric("meshwall.ratelimit.ambiguous.reason.repeated_header"),
        3
    );
    assert_eq!(
        host.metric("meshwall.ratelimit.ambiguous.reason.header_spelling"),
        4
    );
    assert_eq!(
        host.metric("meshwall.ratelimit.allowed.rule.r"),
        2,
        "refusals took no token"
    );
    let k2 = req("GET", "/api/x", "10.0.0.1", &[("x-api-key", "K2")]);
    assert_eq!(count_ok(&p, &host, &k2, 3), 2, "K2's bucket is untouched");
    // Where the rule does not apply, the header is none of its business.
    let elsewhere = req(
        "GET",
        "/health",
        "10.0.0.1",
        &[
            ("x-api-key", "K1"),
            ("x-api-key", "K1"),
            ("x_api_key", "K1"),
        ],
    );
    assert_eq!(status(&p, &host, &elsewhere), 200);
}

#[test]
fn every_key_header_is_checked_even_when_another_part_is_missing() {
    let host = MemHost::new();
    let p = policy(
        &host,
        &one_rule(
            r#"[{"request_headers":{"header_name":"a"}},{"request_headers":{"header_name":"b"}}]"#,
            1,
            1,
            "1h",
            r#","on_missing_key":"anonymous""#,
        ),
    );
    let r = req("GET", "/", "10.0.0.1", &[("b", "1"), ("b", "2")]);
    assert_eq!(status(&p, &host, &r), 400);
}

#[test]
fn path_and_method_keys_are_canonical() {
    let key = r#"[{"method":{}},{"path":{}}]"#;
    // (canonical section, first request, probe, probe's status: 429 = the same bucket).
    let cases = [
        ("{}", "GET /a", "GET /a", 429),
        ("{}", "GET /a", "GET /a/", 429),
        ("{}", "GET /a/", "GET /a", 429),
        ("{}", "GET /a", "GET //a", 429),
        ("{}", "GET /a", "GET /./a", 429),
        ("{}", "GET /a", "GET /b/../a", 429),
        ("{}", "GET /a", "GET /%61", 429),
        ("{}", "GET /a", "GET /a?x=1", 429),
        ("{}", "GET /a", "get /a", 429),
        ("{}", "GET /a", "HEAD /a", 429),
        ("{}", "GET /", "GET //", 429),
        ("{}", "GET /a%3a", "GET /a%3A", 429),
        ("{}", "GET /a", "GET /b", 200),
        ("{}", "GET /a", "POST /a", 200),
        ("{}", "GET /a", "GET /A", 200),
        ("{}", "GET /a", "GET /a/b", 200),
        ("{}", "GET /a", "GET /a;x", 400),
        (
            r#"{"case_insensitive_paths":true}"#,
            "GET /a",
            "GET /A",
            429,
        ),
        (
            r#"{"trailing_slash_insensitive":false}"#,
            "GET /a",
            "GET /a/",
            200,
        ),
        (r#"{"head_matches_get":false}"#, "GET /a", "HEAD /a", 200),
        (r#"{"head_matches_get":false}"#, "HEAD /a", "head /a", 429),
        (r#"{"allow_path_params":true}"#, "GET /a", "GET /a;x", 429),
    ];
    for (canonical, first, probe, want) in cases {
        let host = MemHost::new();
        let p = policy(&host, &canon_rule(key, 1, "{}", canonical));
        let r = |line: &str| {
            let (m, path) = line.split_once(' ').unwrap();
            req(m, path, "10.0.0.1", &[])
        };
        assert_eq!(status(&p, &host, &r(first)), 200, "{canonical} {first}");
        assert_eq!(
            status(&p, &host, &r(probe)),
            want,
            "{canonical}: {first} then {probe}"
        );
    }
}
