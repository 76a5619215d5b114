//! Configuration: what loads, every refusal naming its field, and 100,000 entries loading fast.

use super::*;
use std::time::Instant;

#[test]
fn bad_configs_name_the_field() {
    let m = r#""match": {"prefix": "/"}"#;
    let cases: Vec<(String, &str, &str)> = vec![
        ("{}".into(), ".", "at least one of `allow`, `deny`, `rules`"),
        (
            r#"{"allow": [], "deny": []}"#.into(),
            ".",
            "at least one of",
        ),
        (
            r#"{"deny": ["10.0.0.0/8"], "bogus": 1}"#.into(),
            "bogus",
            "unknown field",
        ),
        (r#"{"allow": "10.0.0.0/8"}"#.into(), "allow", "invalid type"),
        (r#"{"allow": [10]}"#.into(), "allow[0]", "invalid type"),
        (
            r#"{"allow": ["10.0.0.0/8", "10.0.0.1/8"]}"#.into(),
            "allow[1]",
            "host bits set",
        ),
        (
            r#"{"deny": ["10.0.0.0/33"]}"#.into(),
            "deny[0]",
            "larger than 32",
        ),
        (
            r#"{"deny": ["2001:db8::/129"]}"#.into(),
            "deny[0]",
            "larger than 128",
        ),
        (
            r#"{"deny": ["::1", "garbage"]}"#.into(),
            "deny[1]",
            "not an IPv4 or IPv6 address",
        ),
        (
            r#"{"deny": [" 10.0.0.1"]}"#.into(),
            "deny[0]",
            "not an IPv4 or IPv6 address",
        ),
        (
            r#"{"deny": ["10.0.0.0/08"]}"#.into(),
            "deny[0]",
            "not a decimal number",
        ),
        (
            r#"{"deny": ["1"], "client_ip": {"xff_num_trusted_hops": 17}}"#.into(),
            "client_ip.xff_num_trusted_hops",
            "at most 16",
        ),
        (
            r#"{"deny": ["1.1.1.1"], "client_ip": {"hops": 1}}"#.into(),
            "client_ip.hops",
            "unknown field",
        ),
        (
            r#"{"deny": ["1.1.1.1"], "canonical": {"x": true}}"#.into(),
            "canonical.x",
            "unknown field",
        ),
        (
            r#"{"rules": [{"allow": []}]}"#.into(),
            "rules[0]",
            "missing field `match`",
        ),
        (
            r#"{"rules": [{"match": {}}]}"#.into(),
            "rules[0].match",
            "exactly one of `path`, `prefix`, `safe_regex`",
        ),
        (
            r#"{"rules": [{"match": {"path": "/a", "prefix": "/b"}}]}"#.into(),
            "rules[0].match",
            "exactly one of",
        ),
        (
            format!(
                r#"{{"rules": [{{{m}, "allow": ["10.0.0.0/8"]}}, {{{m}, "allow": ["10.0.0.0/8", "1.2.3.4", "5.6.7.8", "9.9.9.9/33"]}}]}}"#
            ),
            "rules[1].allow[3]",
            "larger than 32",
        ),
        (
            format!(r#"{{"rules": [{{{m}, "deny": ["fe80::1%eth0"]}}]}}"#),
            "rules[0].deny[0]",
            "not an IPv4 or IPv6 address",
        ),
        (
            format!(r#"{{"rules": [{{{m}, "deny": ["10.1.1.1/16"]}}]}}"#),
            "rules[0].deny[0]",
            "write `10.1.0.0/16` for the network, or `10.1.1.1/32`",
        ),
        (
            format!(r#"{{"rules": [{{{m}, "allow": null, "x": 1}}]}}"#),
            "rules[0].x",
            "unknown field",
        ),
        (
            r#"{"rules": [{"match": {"path": "a"}}]}"#.into(),
            "rules[0].match.path",
            "must start with `/`",
        ),
        (
            r#"{"rules": [{"match": {"prefix": "/a;b"}}]}"#.into(),
            "rules[0].match.prefix",
            "ambiguous path",
        ),
        (
            r#"{"rules": [{"match": {"safe_regex": {"regex": "("}}}]}"#.into(),
            "rules[0].match.safe_regex.regex",
            "invalid regular expression",
        ),
        (
            r#"{"rules": [{"match": {"safe_regex": {"regex": "(a{1000}){1000}"}}}]}"#.into(),
            "rules[0].match.safe_regex.regex",
            "invalid regular expression",
        ),
        (
            r#"{"rules": [{"match": {"safe_regex": "/a"}}]}"#.into(),
            "rules[0].match.safe_regex",
            "invalid type",
        ),
        (
            r#"{"rules": [{"match": {"prefix": "/", "methods": ["GET", "BAD METHOD"]}}]}"#.into(),
            "rules[0].match.methods[1]",
            "not an HTTP method",
        ),
        (
            r#"{"rules": [{"match": {"prefix": "/", "headers": []}}]}"#.into(),
            "rules[0].match.headers",
            "unknown field",
        ),
    ];
    for (json, field, why) in cases {
        let e = match build(&MemHost::new(), &json) {
            Ok(_) => panic!("accepted: {json}"),
            Err(e) => e,
        };
        assert_eq!(e.field, field, "{json}: {e}");
        assert!(e.reason.contains(why), "{json}: {e}");
    }
}

#[test]
fn good_configs_load() {
    for json in [
        r#"{"allow": ["10.0.0.0/8"]}"#,
        r#"{"deny": ["::/0"]}"#,
        r#"{"rules": [{"match": {"path": "/healthz"}}]}"#,
        r#"{"rules": [{"match": {"prefix": "/", "methods": ["get"]}, "allow": null}]}"#,
        r#"{"allow": ["0.0.0.0/0", "::/0"], "deny": ["10.0.0.0/8", "10.0.0.0/8"], "client_ip": {"xff_num_trusted_hops": 16}}"#,
    ] {
        policy(json);
    }
}

/// `n` distinct blocks, IPv4 /32s and IPv6 /64s alternating.
fn many(n: u32) -> Vec<String> {
    (0..n)
        .map(|i| {
            if i % 2 == 0 {
                std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string()
            } else {
                format!("2001:db8:{:x}:{:x}::/64", i >> 16, i & 0xffff)
            }
        })
        .collect()
}

#[test]
fn a_hundred_thousand_entries_configure_well_under_a_second() {
    let deny = many(100_000);
    let json = serde_json::json!({
        "deny": deny,
        "rules": [{"match": {"prefix": "/admin/"}, "allow": many(100_000)}]
    })
    .to_string();
    let t = Instant::now();
    let (p, host) = policy(&json);
    let took = t.elapsed();
    println!(
        "200000 entries ({} bytes of JSON) configured in {took:?}",
        json.len()
    );
    assert_eq!(status_of(&p, &host, "GET", "/x", "10.0.0.0"), 403);
    assert_eq!(
        status_of(&p, &host, "GET", "/x", "10.0.0.1"),
        200,
        "odd: not in the list"
    );
    assert_eq!(
        status_of(&p, &host, "GET", "/x", "10.1.134.158"),
        403,
        "the last IPv4 entry"
    );
    assert_eq!(
        status_of(&p, &host, "GET", "/x", "10.1.134.160"),
        200,
        "past the list"
    );
    assert_eq!(status_of(&p, &host, "GET", "/x", "2001:db8:1:869f::1"), 403);
    assert_eq!(status_of(&p, &host, "GET", "/x", "2001:db8:1:86a1::1"), 200);
}
