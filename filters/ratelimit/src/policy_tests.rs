use super::*;
use meshwall_core::{parse_config, Headers, MemHost};
use std::time::Duration;

const DEMO: &str = r#"{
  "rules": [
    {"name": "per-ip", "key": [{"remote_address": {}}],
     "token_bucket": {"max_tokens": 100, "tokens_per_fill": 100, "fill_interval": "60s"}},
    {"name": "login", "match": {"path": "/login", "methods": ["POST"]}, "key": [{"remote_address": {}}],
     "token_bucket": {"max_tokens": 5, "tokens_per_fill": 5, "fill_interval": "60s"}}
  ]
}"#;

fn build(host: &MemHost, json: &str) -> Result<RateLimitPolicy, ConfigError> {
    let cfg: RateLimitConfig = parse_config(json.as_bytes())?;
    RateLimitPolicy::new(cfg, host)
}

fn policy(host: &MemHost, json: &str) -> RateLimitPolicy {
    build(host, json).unwrap()
}

/// One rule `r` with the given key parts (JSON) and bucket.
fn one_rule(key: &str, max: u32, per: u32, interval: &str, extra: &str) -> String {
    format!(
        r#"{{"rules":[{{"name":"r","key":{key},"token_bucket":{{"max_tokens":{max},"tokens_per_fill":{per},"fill_interval":"{interval}"}}{extra}}}]}}"#
    )
}

fn req(method: &str, path: &str, ip: &str, headers: &[(&str, &str)]) -> Request {
    Request {
        client_ip: Some(ip.into()),
        ..Request::new(method, path, headers)
    }
}

/// Status (200 when the request goes on) and the rate-limit headers the client sees.
fn send(p: &RateLimitPolicy, host: &MemHost, r: &Request) -> (u16, Headers) {
    let mut ex = Exchange::default();
    match p.on_request_headers(&mut ex, r, host) {
        Action::Continue(ops) => {
            assert!(ops.is_empty(), "the filter never changes request headers");
            let resp = Response {
                status: 200,
                headers: Headers::from_pairs([("content-type", "application/json")]),
            };
            let mut h = resp.headers.clone();
            h.apply(&p.on_response_headers(&mut ex, &resp, host));
            (200, h)
        }
        Action::Reply(reply) => {
            let mut h = Headers(reply.headers.clone());
            // Envoy runs the response phase on local replies too: it must not duplicate anything.
            let resp = Response {
                status: reply.status,
                headers: h.clone(),
            };
            h.apply(&p.on_response_headers(&mut ex, &resp, host));
            assert_eq!(
                h,
                Headers(reply.headers.clone()),
                "response phase must agree with the reply"
            );
            (reply.status, h)
        }
        Action::ReadBody { .. } => panic!("never reads the body"),
    }
}

fn status(p: &RateLimitPolicy, host: &MemHost, r: &Request) -> u16 {
    send(p, host, r).0
}

fn count_ok(p: &RateLimitPolicy, host: &MemHost, r: &Request, n: usize) -> usize {
    (0..n).filter(|_| status(p, host, r) == 200).count()
}

// ---------------------------------------------------------------- configuration

#[test]
fn client_ip_is_read_only_when_a_key_uses_it() {
    assert!(policy(&MemHost::new(), DEMO).uses_client_ip());
    let by_header = one_rule(
        r#"[{"request_headers":{"header_name":"x-k"}}]"#,
        1,
        1,
        "1s",
        r#","on_missing_key":"skip""#,
    );
    assert!(!policy(&MemHost::new(), &by_header).uses_client_ip());
}

#[test]
fn demo_config_builds() {
    let host = MemHost::new();
    let p = policy(&host, DEMO);
    assert_eq!(p.rules.len(), 2);
    assert_eq!(
        p.rules[1].bucket,
        TokenBucket {
            max_tokens: 5,
            tokens_per_fill: 5,
            fill_interval_ms: 60_000
        }
    );
    assert_eq!(host.shared_key_count() as u64, p.table_keys());
}

#[test]
fn bad_configs_name_the_field() {
    let tb = r#""token_bucket":{"max_tokens":1,"fill_interval":"1s"}"#;
    let ip = r#""key":[{"remote_address":{}}]"#;
    let cases: Vec<(String, &str, &str)> = vec![
        (r#"{}"#.into(), "rules", "at least one rule"),
        (r#"{"rules":[]}"#.into(), "rules", "at least one rule"),
        (
            format!(r#"{{"rules":[{{"name":"a",{ip},{tb}}}],"bogus":1}}"#),
            "bogus",
            "unknown field",
        ),
        (
            format!(r#"{{"rules":[{{"name":"a",{ip},{tb},"x":1}}]}}"#),
            "rules[0].x",
            "unknown field",
        ),
        (
            format!(r#"{{"rules":[{{"name":"a b",{ip},{tb}}}]}}"#),
            "rules[0].name",
            "letters, digits",
        ),
        (
            format!(r#"{{"rules":[{{"name":"a",{ip},{tb}}},{{"name":"a",{ip},{tb}}}]}}"#),
            "rules[1].name",
            "another rule",
        ),
        (
            format!(r#"{{"rules":[{{"name":"a","key":[],{tb}}}]}}"#),
            "rules[0].key",
            "at least one",
        ),
        (
            format!(r#"{{"rules":[{{"name":"a","key":[{{"cookie":{{}}}}],{tb}}}]}}"#),
            "rules[0].key[0]",
            "unknown variant",
        ),
        (
            format!(r#"{{"rules":[{{"name":"a","key":[{{"remote_address":{{"x":1}}}}],{tb}}}]}}"#),
            "rules[0].key[0].remote_address.x",
            "unknown field",
        ),
        (
            format!(
                r#"{{"rules":[{{"name":"a","key":[{{"request_headers":{{"header_name":"x-user-id"}}}}],{tb}}}]}}"#
            ),
            "rules[0].on_missing_key",
            "required",
        ),
        (
            format!(
                r#"{{"rules":[{{"name":"a","key":[{{"request_headers":{{"header_name":"bad name"}}}}],"on_missing_key":"skip",{tb}}}]}}"#
            ),
            "rules[0].key[0].request_headers.header_name",
            "not a valid header name",
        ),
        (
            format!(
                r#"{{"rules":[{{"name":"a","key":[{{"generic_key":{{"descriptor_value":""}}}}],{tb}}}]}}"#
            ),
            "rules[0].key[0].generic_key.descriptor_value",
            "must not be empty",
        ),
        (
            format!(r#"{{"rules":[{{"name":"a",{ip},{tb},"on_missing_key":"deny"}}]}}"#),
            "rules[0].on_missing_key",
            "unknown variant",
        ),
        (
            format!(
                r#"{{"rules":[{{"name":"a",{ip},"token_bucket":{{"max_tokens":0,"fill_interval":"1s"}}}}]}}"#
            ),
            "rules[0].token_bucket.max_tokens",
            "at least 1",
        ),
        (
            format!(
                r#"{{"rules":[{{"name":"a",{ip},"token_bucket":{{"max_tokens":1,"tokens_per_fill":0,"fill_interval":"1s"}}}}]}}"#
            ),
            "rules[0].token_bucket.tokens_per_fill",
            "at least 1",
        ),
        (
            format!(
                r#"{{"rules":[{{"name":"a",{ip},"token_bucket":{{"max_tokens":1,"fill_interval":"49ms"}}}}]}}"#
            ),
            "rules[0].token_bucket.fill_interval",
            "between 50ms and 24h",
        ),
        (
            format!(
                r#"{{"rules":[{{"name":"a",{ip},"token_bucket":{{"max_tokens":1,"fill_interval":"25h"}}}}]}}"#
            ),
            "rules[0].token_bucket.fill_interval",
            "between 50ms and 24h",
        ),
        (
            format!(
                r#"{{"rules":[{{"name":"a",{ip},"token_bucket":{{"max_tokens":1,"fill_interval":60}}}}]}}"#
            ),
            "rules[0].token_bucket.fill_interval",
            "invalid type",
        ),
        (
            format!(
                r#"{{"rules":[{{"name":"a",{ip},"token_bucket":{{"max_tokens":1,"fill_interval":"1 minute"}}}}]}}"#
            ),
            "rules[0].token_bucket.fill_interval",
            "not a duration",
        ),
        (
            format!(r#"{{"rules":[{{"name":"a",{ip},"token_bucket":{{"max_tokens":1}}}}]}}"#),
            "rules[0].token_bucket",
            "missing field `fill_interval`",
        ),
        (
            format!(
                r#"{{"rules":[{{"name":"a",{ip},{tb},"match":{{"path":"/a","prefix":"/b"}}}}]}}"#
            ),
            "rules[0].match",
            "at most one",
        ),
        (
            format!(r#"{{"rules":[{{"name":"a",{ip},{tb},"match":{{"prefix":"api"}}}}]}}"#),
            "rules[0].match.prefix",
            "start with",
        ),
        (
            format!(r#"{{"rules":[{{"name":"a",{ip},{tb},"match":{{"regex":"(/a"}}}}]}}"#),
            "rules[0].match.regex",
            "invalid regular",
        ),
        (
            format!(
                r#"{{"rules":[{{"name":"a",{ip},{tb},"match":{{"methods":["GET","P OST"]}}}}]}}"#
            ),
            "rules[0].match.methods[1]",
            "not an HTTP method",
        ),
        (
            format!(
                r#"{{"rules":[{{"name":"a",{ip},{tb},"match":{{"headers":[{{"name":":path"}}]}}}}]}}"#
            ),
            "rules[0].match.headers[0].name",
            "pseudo-header",
        ),
        (
            format!(
                r#"{{"rules":[{{"name":"a",{ip},{tb}}}],"client_ip":{{"xff_num_trusted_hops":17}}}}"#
            ),
            "client_ip.xff_num_trusted_hops",
            "at most 16",
        ),
        (
            format!(
                r#"{{"rules":[{{"name":"a",{ip},{tb}}}],"client_ip":{{"ipv6_prefix_length":0}}}}"#
            ),
            "client_ip.ipv6_prefix_length",
            "between",
        ),
        (
            format!(
                r#"{{"rules":[{{"name":"a",{ip},{tb}}}],"client_ip":{{"ipv4_prefix_length":33}}}}"#
            ),
            "client_ip.ipv4_prefix_length",
            "between",
        ),
        (
            format!(r#"{{"rules":[{{"name":"a",{ip},{tb}}}],"table":{{"shards":0}}}}"#),
            "table.shards",
            "between",
        ),
        (
            format!(r#"{{"rules":[{{"name":"a",{ip},{tb}}}],"table":{{"slots_per_shard":65}}}}"#),
            "table.slots_per_shard",
            "between",
        ),
        (
            format!(
                r#"{{"rules":[{{"name":"a",{ip},{tb}}}],"table":{{"shards":65536,"slots_per_shard":64}}}}"#
            ),
            "table",
            "at most",
        ),
        (
            format!(
                r#"{{"rules":[{{"name":"a",{ip},{tb}}},{{"name":"b",{ip},{tb}}}],"table":{{"slots_per_shard":1}}}}"#
            ),
            "table.slots_per_shard",
            "number of rules",
        ),
        (
            format!(r#"{{"rules":[{{"name":"a",{ip},{tb}}}],"table":{{"max_cas_attempts":0}}}}"#),
            "table.max_cas_attempts",
            "between",
        ),
        (
            format!(r#"{{"rules":[{{"name":"a",{ip},{tb}}}],"table":{{"name":"a/b"}}}}"#),
            "table.name",
            "letters",
        ),
        (
            format!(r#"{{"rules":[{{"name":"a",{ip},{tb}}}],"enable_x_ratelimit_headers":"ON"}}"#),
            "enable_x_ratelimit_headers",
            "unknown variant",
        ),
        (
            format!(r#"{{"rules":[{{"name":"a",{ip},{tb}}}],"on_table_error":"open"}}"#),
            "on_table_error",
            "unknown variant",
        ),
    ];
    for (json, field, reason) in cases {
        let e = build(&MemHost::new(), &json)
            .err()
            .unwrap_or_else(|| panic!("must be refused: {json}"));
        assert_eq!(e.field, field, "{json}: {e}");
        assert!(e.reason.contains(reason), "{json}: {e}");
    }
}

// ---------------------------------------------------------------- the demo rules

#[test]
fn login_limit_is_separate_from_the_global_one() {
    let host = MemHost::new();
    let p = policy(&host, DEMO);
    let login = req("POST", "/login", "10.0.0.1", &[]);
    assert_eq!(count_ok(&p, &host, &login, 8), 5);
    let (st, h) = send(&p, &host, &login);
    assert_eq!(st, 429);
    assert_eq!(h.get("retry-after"), Some("60"));
    // GET /login and POST elsewhere are not the login rule: only the global bucket, which
    // lost 5 tokens (the rejected logins took none).
    let (st, h) = send(&p, &host, &req("GET", "/login", "10.0.0.1", &[]));
    assert_eq!(st, 200);
    assert_eq!(h.get("ratelimit"), Some(r#""per-ip";r=94;t=60"#));
    assert_eq!(
        status(&p, &host, &req("POST", "/login/other", "10.0.0.1", &[])),
        200
    );
    assert_eq!(
        status(&p, &host, &req("POST", "/login?next=/", "10.0.0.1", &[])),
        429,
        "query string is not part of the path"
    );
    // Another client has its own buckets.
    assert_eq!(
        status(&p, &host, &req("POST", "/login", "10.0.0.2", &[])),
        200
    );
    assert_eq!(host.metric("meshwall.ratelimit.rule.login.allowed"), 6);
    assert_eq!(host.metric("meshwall.ratelimit.rule.login.limited"), 5);
    assert_eq!(host.metric("meshwall.ratelimit.rule.per-ip.limited"), 0);
}

#[test]
fn global_limit_then_refill_after_the_interval() {
    let host = MemHost::new();
    let p = policy(&host, DEMO);
    let r = req("GET", "/", "192.0.2.7", &[]);
    assert_eq!(count_ok(&p, &host, &r, 150), 100);
    host.advance(Duration::from_millis(59_999));
    assert_eq!(status(&p, &host, &r), 429);
    host.advance(Duration::from_millis(1));
    assert_eq!(count_ok(&p, &host, &r, 150), 100);
}

#[test]
fn tokens_are_taken_all_or_nothing() {
    let host = MemHost::new();
    let p = policy(
        &host,
        r#"{"rules":[
          {"name":"global","key":[{"remote_address":{}}],"token_bucket":{"max_tokens":3,"fill_interval":"1h"}},
          {"name":"login","match":{"path":"/login"},"key":[{"remote_address":{}}],"token_bucket":{"max_tokens":1,"fill_interval":"1h"}}]}"#,
    );
    let login = req("POST", "/login", "10.1.1.1", &[]);
    let other = req("GET", "/x", "10.1.1.1", &[]);
    assert_eq!(status(&p, &host, &login), 200); // global 2, login 0
    for _ in 0..5 {
        let (st, h) = send(&p, &host, &login);
        assert_eq!(st, 429);
        assert_eq!(
            h.get("ratelimit"),
            Some(r#""global";r=2;t=3600, "login";r=0;t=3600"#)
        );
    }
    // The rejected logins took nothing from the global bucket.
    assert_eq!(count_ok(&p, &host, &other, 5), 2);
}

#[test]
fn rejected_by_two_rules_retry_after_is_the_later_one() {
    let host = MemHost::new();
    let p = policy(
        &host,
        r#"{"rules":[
          {"name":"a","key":[{"generic_key":{"descriptor_value":"x"}}],"token_bucket":{"max_tokens":1,"fill_interval":"10s"}},
          {"name":"b","key":[{"generic_key":{"descriptor_value":"x"}}],"token_bucket":{"max_tokens":1,"fill_interval":"30s"}}]}"#,
    );
    let r = req("GET", "/", "10.0.0.1", &[]);
    assert_eq!(status(&p, &host, &r), 200);
    host.advance(Duration::from_secs(2));
    let (st, h) = send(&p, &host, &r);
    assert_eq!(st, 429);
    assert_eq!(h.get("retry-after"), Some("28"));
    assert_eq!(host.metric("meshwall.ratelimit.rule.a.limited"), 1);
    assert_eq!(host.metric("meshwall.ratelimit.rule.b.limited"), 1);
}

// ---------------------------------------------------------------- replies and headers

#[test]
fn reject_reply_is_problem_json_with_honest_retry_after() {
    let host = MemHost::new();
    let p = policy(
        &host,
        &one_rule(r#"[{"remote_address":{}}]"#, 2, 1, "7s", ""),
    );
    let r = req("GET", "/a", "10.0.0.1", &[]);
    assert_eq!(count_ok(&p, &host, &r, 2), 2);
    host.advance(Duration::from_millis(2500));
    let mut ex = Exchange::default();
    let Action::Reply(reply) = p.on_request_headers(&mut ex, &r, &host) else {
        panic!("must reject")
    };
    assert_eq!(reply.status, 429);
    assert_eq!(
        reply.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(
        reply.header("retry-after"),
        Some("5"),
        "next fill at 7 s, now 2.5 s → 4.5 s → 5"
    );
    let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(body["status"], 429);
    assert_eq!(body["title"], "Too Many Requests");
    assert_eq!(body["violated_policies"], serde_json::json!(["r"]));
    // Retrying after exactly Retry-After succeeds.
    host.advance(Duration::from_secs(5));
    assert_eq!(status(&p, &host, &r), 200);
}

#[test]
fn draft_headers_on_allowed_and_rejected_responses() {
    let host = MemHost::new();
    let p = policy(
        &host,
        &one_rule(r#"[{"remote_address":{}}]"#, 3, 1, "20s", ""),
    );
    let r = req("GET", "/", "10.0.0.1", &[]);
    let (_, h) = send(&p, &host, &r);
    assert_eq!(h.get("ratelimit-policy"), Some(r#""r";q=3;w=60"#));
    assert_eq!(h.get("ratelimit"), Some(r#""r";r=2;t=20"#));
    assert!(
        !h.contains("x-ratelimit-limit"),
        "legacy headers are off by default"
    );
    host.advance(Duration::from_millis(4_200));
    send(&p, &host, &r);
    let (_, h) = send(&p, &host, &r);
    assert_eq!(h.get("ratelimit"), Some(r#""r";r=0;t=16"#));
    let (st, h) = send(&p, &host, &r);
    assert_eq!(st, 429);
    assert_eq!(h.get("ratelimit"), Some(r#""r";r=0;t=16"#));
    assert_eq!(h.get("ratelimit-policy"), Some(r#""r";q=3;w=60"#));
}

#[test]
fn legacy_headers_and_switching_draft_headers_off() {
    let host = MemHost::new();
    let p = policy(
        &host,
        r#"{"rules":[
          {"name":"big","key":[{"remote_address":{}}],"token_bucket":{"max_tokens":10,"fill_interval":"1s"}},
          {"name":"small","key":[{"remote_address":{}}],"token_bucket":{"max_tokens":2,"fill_interval":"1m"}}],
          "enable_ratelimit_headers":false,"enable_x_ratelimit_headers":"DRAFT_VERSION_03"}"#,
    );
    let (_, h) = send(&p, &host, &req("GET", "/", "10.0.0.1", &[]));
    assert!(!h.contains("ratelimit") && !h.contains("ratelimit-policy"));
    assert_eq!(
        h.get("x-ratelimit-limit"),
        Some("2"),
        "the most restrictive rule"
    );
    assert_eq!(h.get("x-ratelimit-remaining"), Some("1"));
    assert_eq!(h.get("x-ratelimit-reset"), Some("60"));
}

#[test]
fn no_headers_when_no_rule_applies() {
    let host = MemHost::new();
    let p = policy(
        &host,
        &one_rule(
            r#"[{"remote_address":{}}]"#,
            1,
            1,
            "1m",
            r#","match":{"prefix":"/api/"}"#,
        ),
    );
    for _ in 0..3 {
        let (st, h) = send(&p, &host, &req("GET", "/health", "10.0.0.1", &[]));
        assert_eq!(st, 200);
        assert!(!h.contains("ratelimit"));
    }
}

// ---------------------------------------------------------------- matching

#[test]
fn matchers() {
    let host = MemHost::new();
    let p = policy(
        &host,
        r#"{"rules":[
          {"name":"exact","match":{"path":"/a"},"key":[{"generic_key":{"descriptor_value":"1"}}],"token_bucket":{"max_tokens":1,"fill_interval":"1h"}},
          {"name":"prefix","match":{"prefix":"/p/"},"key":[{"generic_key":{"descriptor_value":"1"}}],"token_bucket":{"max_tokens":1,"fill_interval":"1h"}},
          {"name":"regex","match":{"regex":"/users/[0-9]+"},"key":[{"generic_key":{"descriptor_value":"1"}}],"token_bucket":{"max_tokens":1,"fill_interval":"1h"}},
          {"name":"methods","match":{"methods":["put","DELETE"]},"key":[{"generic_key":{"descriptor_value":"1"}}],"token_bucket":{"max_tokens":1,"fill_interval":"1h"}},
          {"name":"header","match":{"headers":[{"name":"X-Api-Key"},{"name":"x-debug","present":false}]},"key":[{"generic_key":{"descriptor_value":"1"}}],"token_bucket":{"max_tokens":1,"fill_interval":"1h"}}
        ]}"#,
    );
    let names = |r: &Request| -> Vec<&str> {
        p.rules
            .iter()
            .filter(|rule| rule.matcher.matches(r))
            .map(|rule| rule.name.as_str())
            .collect()
    };
    assert_eq!(names(&req("GET", "/a", "1.1.1.1", &[])), vec!["exact"]);
    assert_eq!(names(&req("GET", "/a?x", "1.1.1.1", &[])), vec!["exact"]);
    assert!(names(&req("GET", "/a/", "1.1.1.1", &[])).is_empty());
    assert_eq!(names(&req("GET", "/p/x", "1.1.1.1", &[])), vec!["prefix"]);
    assert!(names(&req("GET", "/p", "1.1.1.1", &[])).is_empty());
    assert_eq!(
        names(&req("GET", "/users/42", "1.1.1.1", &[])),
        vec!["regex"]
    );
    assert!(
        names(&req("GET", "/users/42/x", "1.1.1.1", &[])).is_empty(),
        "regex must match the whole path"
    );
    assert!(names(&req("GET", "/x/users/42", "1.1.1.1", &[])).is_empty());
    assert_eq!(names(&req("PUT", "/z", "1.1.1.1", &[])), vec!["methods"]);
    assert!(
        names(&req("put", "/z", "1.1.1.1", &[])).is_empty(),
        "methods are case-sensitive on the wire"
    );
    assert_eq!(
        names(&req("GET", "/z", "1.1.1.1", &[("x-api-key", "k")])),
        vec!["header"]
    );
    assert!(names(&req(
        "GET",
        "/z",
        "1.1.1.1",
        &[("x-api-key", "k"), ("x-debug", "1")]
    ))
    .is_empty());
    assert_eq!(
        names(&req("DELETE", "/a", "1.1.1.1", &[("x-api-key", "")])),
        vec!["exact", "methods", "header"]
    );
}

// ---------------------------------------------------------------- keys

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
    // Too short or garbage at the trusted position: the peer address is the key.
    assert_eq!(status(&p, &host, &via("10.9.9.9")), 200);
    assert_eq!(
        status(&p, &host, &via("garbage, 10.9.9.9")),
        429,
        "same bucket as the LB's own address"
    );
    assert_eq!(status(&p, &host, &req("GET", "/", lb, &[])), 429);
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

// ---------------------------------------------------------------- shadow mode

#[test]
fn shadow_never_rejects_but_counts() {
    let host = MemHost::new();
    let p = policy(
        &host,
        &one_rule(
            r#"[{"remote_address":{}}]"#,
            2,
            1,
            "1h",
            r#","shadow":true"#,
        ),
    );
    let r = req("GET", "/", "10.0.0.1", &[]);
    for _ in 0..10 {
        let (st, h) = send(&p, &host, &r);
        assert_eq!(st, 200);
        assert!(!h.contains("ratelimit"), "a shadow rule is not advertised");
    }
    assert_eq!(host.metric("meshwall.ratelimit.rule.r.allowed"), 2);
    assert_eq!(host.metric("meshwall.ratelimit.rule.r.shadow_limited"), 8);
    assert_eq!(host.metric("meshwall.ratelimit.rule.r.limited"), 0);
}

#[test]
fn shadow_rule_next_to_an_enforced_one() {
    let host = MemHost::new();
    let p = policy(
        &host,
        r#"{"rules":[
          {"name":"enforced","key":[{"remote_address":{}}],"token_bucket":{"max_tokens":3,"fill_interval":"1h"}},
          {"name":"trial","shadow":true,"key":[{"remote_address":{}}],"token_bucket":{"max_tokens":1,"fill_interval":"1h"}}]}"#,
    );
    let r = req("GET", "/", "10.0.0.1", &[]);
    assert_eq!(count_ok(&p, &host, &r, 5), 3);
    assert_eq!(host.metric("meshwall.ratelimit.rule.trial.allowed"), 1);
    assert_eq!(
        host.metric("meshwall.ratelimit.rule.trial.shadow_limited"),
        4
    );
    assert_eq!(host.metric("meshwall.ratelimit.rule.enforced.limited"), 2);
}

// ---------------------------------------------------------------- workers and CAS

#[test]
fn several_workers_share_buckets_exactly() {
    let store = MemHost::new();
    let workers: Vec<(MemHost, RateLimitPolicy)> = (0..4)
        .map(|_| {
            let h = store.clone();
            let p = policy(&h, DEMO);
            (h, p)
        })
        .collect();
    assert_eq!(
        store.shared_key_count() as u64,
        workers[0].1.table_keys(),
        "later workers reuse the table"
    );
    let r = req("GET", "/", "10.0.0.1", &[]);
    let mut admitted = 0;
    for i in 0..1000 {
        let (h, p) = &workers[i % 4];
        if status(p, h, &r) == 200 {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 100);
    assert_eq!(store.metric("meshwall.ratelimit.rule.per-ip.allowed"), 100);
    assert_eq!(store.metric("meshwall.ratelimit.rule.per-ip.limited"), 900);
}

#[test]
fn cas_conflicts_are_retried_and_stay_exact() {
    let store = MemHost::new();
    let p = policy(
        &store,
        &one_rule(r#"[{"remote_address":{}}]"#, 10, 1, "1h", ""),
    );
    let r = req("GET", "/", "10.0.0.1", &[]);
    let mut admitted = 0;
    for i in 0..30 {
        store.fail_next_cas(i % 4);
        if status(&p, &store, &r) == 200 {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 10);
    // Requests 0..10 were admitted (and hit conflicts); rejections write nothing.
    let expected_retries: i64 = (0..10).map(|i| i64::from(i % 4)).sum();
    assert_eq!(
        store.metric("meshwall.ratelimit.table.cas_retries"),
        expected_retries
    );
    assert_eq!(store.metric("meshwall.ratelimit.table.cas_exhausted"), 0);
}

#[test]
fn exhausted_cas_retries_deny_by_default_and_charge_nothing() {
    let store = MemHost::new();
    let json = one_rule(r#"[{"remote_address":{}}]"#, 2, 1, "1h", "")
        .replace("]}", r#"],"table":{"max_cas_attempts":3}}"#);
    let p = policy(&store, &json);
    let r = req("GET", "/", "10.0.0.1", &[]);
    store.fail_next_cas(3);
    let mut ex = Exchange::default();
    let Action::Reply(reply) = p.on_request_headers(&mut ex, &r, &store) else {
        panic!("must not pass")
    };
    assert_eq!(reply.status, 503);
    assert_eq!(reply.header("retry-after"), Some("1"));
    assert_eq!(store.metric("meshwall.ratelimit.table.cas_exhausted"), 1);
    assert_eq!(store.metric("meshwall.ratelimit.table.cas_retries"), 3);
    assert_eq!(store.metric("meshwall.ratelimit.rule.r.allowed"), 0);
    assert_eq!(
        count_ok(&p, &store, &r, 5),
        2,
        "the failed request took no token"
    );
}

#[test]
fn exhausted_cas_retries_can_be_set_to_allow_and_are_still_counted() {
    let store = MemHost::new();
    let json = one_rule(r#"[{"remote_address":{}}]"#, 1, 1, "1h", "").replace(
        "]}",
        r#"],"table":{"max_cas_attempts":1},"on_table_error":"allow"}"#,
    );
    let p = policy(&store, &json);
    let r = req("GET", "/", "10.0.0.1", &[]);
    store.fail_next_cas(1);
    assert_eq!(status(&p, &store, &r), 200);
    assert_eq!(store.metric("meshwall.ratelimit.table.cas_exhausted"), 1);
    assert_eq!(count_ok(&p, &store, &r, 3), 1);
}

type RaceHook = Box<dyn FnOnce(&MemHost)>;

/// A host that lets a test act as a competing worker right before a given shard is written.
struct RaceHost {
    inner: MemHost,
    key: String,
    hook: std::cell::RefCell<Option<RaceHook>>,
}

impl Host for RaceHost {
    fn now(&self) -> std::time::SystemTime {
        self.inner.now()
    }
    fn shared_get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
        self.inner.shared_get(key)
    }
    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        if key == self.key {
            if let Some(hook) = self.hook.borrow_mut().take() {
                hook(&self.inner);
            }
        }
        self.inner.shared_set(key, value, cas)
    }
    fn define_metric(&self, kind: MetricKind, name: &str) -> Result<MetricId, HostError> {
        self.inner.define_metric(kind, name)
    }
    fn increment_metric(&self, id: MetricId, delta: i64) {
        self.inner.increment_metric(id, delta)
    }
    fn record_metric(&self, id: MetricId, value: u64) {
        self.inner.record_metric(id, value)
    }
    fn http_call(
        &self,
        c: &str,
        h: &[(&str, &str)],
        b: Option<&[u8]>,
        t: Duration,
    ) -> Result<u32, HostError> {
        self.inner.http_call(c, h, b, t)
    }
}

#[test]
fn rule_rejected_after_another_was_committed_gets_its_token_back() {
    // Rule `a` (constant key) and rule `b` (per user) in different shards, `a`'s first.
    let json = r#"{"rules":[
      {"name":"a","key":[{"request_headers":{"header_name":"x-group"}}],"on_missing_key":"skip","token_bucket":{"max_tokens":5,"fill_interval":"1h"}},
      {"name":"b","key":[{"request_headers":{"header_name":"x-user"}}],"on_missing_key":"skip","token_bucket":{"max_tokens":1,"fill_interval":"1h"}}],
      "table":{"shards":2,"slots_per_shard":4}}"#;
    let store = MemHost::new();
    let p = policy(&store, json);
    let worker2 = policy(&store.clone(), json);
    let seed = p.load_seed(&store).unwrap();
    let shard_of = |rule: usize, name: &str, value: &str| {
        let m = p
            .key_material(
                &p.rules[rule],
                &req("GET", "/", "1.1.1.1", &[(name, value)]),
            )
            .unwrap();
        p.target(seed, rule, &m).unwrap().shard
    };
    let group = (0..100)
        .map(|i| format!("g{i}"))
        .find(|g| shard_of(0, "x-group", g) == 0)
        .unwrap();
    let user = (0..100)
        .map(|i| format!("u{i}"))
        .find(|u| shard_of(1, "x-user", u) == 1)
        .unwrap();
    let r = req(
        "GET",
        "/",
        "1.1.1.1",
        &[("x-group", &group), ("x-user", &user)],
    );
    let race = RaceHost {
        inner: store.clone(),
        key: p.shard_key(1),
        hook: std::cell::RefCell::new(None),
    };
    // Another worker takes `b`'s only token between our write of the first shard and the second.
    let r2 = r.clone();
    *race.hook.borrow_mut() = Some(Box::new(move |h: &MemHost| {
        let mut ex = Exchange::default();
        assert!(matches!(
            worker2.on_request_headers(&mut ex, &r2, h),
            Action::Continue(_)
        ));
    }));
    let mut ex = Exchange::default();
    let out = p.on_request_headers(&mut ex, &r, &race);
    let Action::Reply(reply) = out else {
        panic!("b is empty after the race: must reject")
    };
    assert_eq!(reply.status, 429);
    assert_eq!(store.metric("meshwall.ratelimit.table.cas_retries"), 1);
    // `a` lost exactly one token: the competing worker's. Ours was given back.
    let (_, h) = send(
        &p,
        &store,
        &req("GET", "/", "1.1.1.1", &[("x-group", &group)]),
    );
    assert_eq!(h.get("ratelimit"), Some(r#""a";r=3;t=3600"#));
    assert_eq!(store.metric("meshwall.ratelimit.table.refunds_lost"), 0);
}

// ---------------------------------------------------------------- table: memory and eviction

#[test]
fn memory_is_bounded_by_the_table() {
    let store = MemHost::new();
    let json = one_rule(
        r#"[{"request_headers":{"header_name":"x-k"}}]"#,
        5,
        1,
        "1m",
        r#","on_missing_key":"skip""#,
    )
    .replace("]}", r#"],"table":{"shards":8,"slots_per_shard":4}}"#);
    let p = policy(&store, &json);
    let keys_before = store.shared_key_count();
    let bytes_before = store.shared_bytes();
    assert_eq!(keys_before, 9);
    assert_eq!(bytes_before as u64, p.table_bytes());
    assert_eq!(
        store.metric("meshwall.ratelimit.table.bytes") as u64,
        p.table_bytes()
    );
    for i in 0..5000 {
        assert_eq!(
            status(
                &p,
                &store,
                &req("GET", "/", "10.0.0.1", &[("x-k", &format!("key-{i}"))])
            ),
            200
        );
    }
    assert_eq!(store.shared_key_count(), keys_before);
    assert_eq!(store.shared_bytes(), bytes_before);
    let churn = store.metric("meshwall.ratelimit.table.evictions")
        + store.metric("meshwall.ratelimit.table.reclaims");
    assert_eq!(
        churn,
        5000 - 32,
        "every key beyond the 32 slots took over an occupied slot"
    );
}

fn single_shard(max: u32, slots: u32) -> String {
    one_rule(
        r#"[{"request_headers":{"header_name":"x-k"}}]"#,
        max,
        1,
        "1s",
        r#","on_missing_key":"skip""#,
    )
    .replace(
        "]}",
        &format!(r#"],"table":{{"shards":1,"slots_per_shard":{slots}}}}}"#),
    )
}

fn k(key: &str) -> Request {
    req("GET", "/", "10.0.0.1", &[("x-k", key)])
}

#[test]
fn full_table_reclaims_refilled_buckets_first() {
    let store = MemHost::new();
    let p = policy(&store, &single_shard(4, 2));
    assert_eq!(count_ok(&p, &store, &k("a"), 4), 4); // a: 0/4
    store.advance(Duration::from_millis(100));
    assert_eq!(status(&p, &store, &k("b")), 200); // b: 3/4, newer
    store.advance(Duration::from_millis(1000)); // a refilled to 1/4, b to 4/4 (full)
    assert_eq!(status(&p, &store, &k("c")), 200); // takes b's slot: nothing lost
    assert_eq!(store.metric("meshwall.ratelimit.table.reclaims"), 1);
    assert_eq!(store.metric("meshwall.ratelimit.table.evictions"), 0);
    // a kept its state: 1 token.
    assert_eq!(count_ok(&p, &store, &k("a"), 3), 1);
}

#[test]
fn under_pressure_the_least_used_bucket_is_evicted_and_its_owner_starts_afresh() {
    let store = MemHost::new();
    let p = policy(&store, &single_shard(10, 3));
    assert_eq!(count_ok(&p, &store, &k("heavy"), 10), 10); // 0/10
    assert_eq!(count_ok(&p, &store, &k("mid"), 5), 5); // 5/10
    assert_eq!(count_ok(&p, &store, &k("light"), 1), 1); // 9/10
    assert_eq!(status(&p, &store, &k("new")), 200);
    assert_eq!(store.metric("meshwall.ratelimit.table.evictions"), 1);
    // `light` was the victim: it comes back with a fresh bucket (and evicts `new`, 9/10, newer
    // than nobody else with that deficit).
    assert_eq!(count_ok(&p, &store, &k("light"), 12), 10);
    assert_eq!(
        status(&p, &store, &k("heavy")),
        429,
        "the depleted bucket survived"
    );
}

#[test]
fn cycling_keys_cannot_reset_a_depleted_bucket() {
    let store = MemHost::new();
    let p = policy(&store, &single_shard(50, 8));
    let victim = k("abuser");
    assert_eq!(count_ok(&p, &store, &victim, 60), 50);
    for i in 0..10_000 {
        assert_eq!(status(&p, &store, &k(&format!("junk-{i}"))), 200);
        if i % 1000 == 0 {
            assert_eq!(status(&p, &store, &victim), 429, "after {i} junk keys");
        }
    }
    assert_eq!(status(&p, &store, &victim), 429);
    assert!(store.metric("meshwall.ratelimit.table.evictions") >= 10_000 - 8);
}

#[test]
fn tied_deficits_evict_the_least_recently_used() {
    let store = MemHost::new();
    let p = policy(&store, &single_shard(10, 3));
    for key in ["a", "b", "c"] {
        assert_eq!(status(&p, &store, &k(key)), 200);
        store.advance(Duration::from_millis(10));
    }
    assert_eq!(status(&p, &store, &k("a")), 200); // a: 8/10 now; b and c 9/10, b older
    assert_eq!(status(&p, &store, &k("d")), 200); // evicts b
    assert_eq!(count_ok(&p, &store, &k("c"), 20), 9, "c kept its state");
    assert_eq!(count_ok(&p, &store, &k("a"), 20), 8, "a kept its state");
}

#[test]
fn removed_rules_free_their_slots_and_kept_rules_keep_state_across_reconfiguration() {
    let store = MemHost::new();
    let two = r#"{"rules":[
      {"name":"keep","key":[{"remote_address":{}}],"token_bucket":{"max_tokens":5,"fill_interval":"1h"}},
      {"name":"gone","key":[{"remote_address":{}}],"token_bucket":{"max_tokens":5,"fill_interval":"1h"}}],
      "table":{"shards":1,"slots_per_shard":2}}"#;
    let p = policy(&store, two);
    assert_eq!(
        count_ok(&p, &store, &req("GET", "/", "10.0.0.1", &[]), 3),
        3
    );
    let one = r#"{"rules":[
      {"name":"keep","key":[{"remote_address":{}}],"token_bucket":{"max_tokens":5,"fill_interval":"1h"}}],
      "table":{"shards":1,"slots_per_shard":2}}"#;
    let p2 = policy(&store, one);
    assert_eq!(
        count_ok(&p2, &store, &req("GET", "/", "10.0.0.1", &[]), 5),
        2,
        "state kept across the reload"
    );
    assert_eq!(status(&p2, &store, &req("GET", "/", "10.0.0.2", &[])), 200);
    assert_eq!(status(&p2, &store, &req("GET", "/", "10.0.0.3", &[])), 200);
    assert_eq!(
        store.metric("meshwall.ratelimit.table.evictions"),
        1,
        "only the third key needed a victim"
    );
}

// ---------------------------------------------------------------- seed

#[test]
fn workers_share_one_seed_and_adopt_a_rewritten_one() {
    let store = MemHost::new();
    let p1 = policy(&store, DEMO);
    let p2 = policy(&store.clone(), DEMO);
    assert_eq!(p1.load_seed(&store).unwrap(), p2.load_seed(&store).unwrap());
    // Two workers started at once and the other's seed won: everyone adopts it.
    let mut v = SEED_MAGIC.to_vec();
    v.extend_from_slice(&[7u8; 16]);
    store
        .shared_set("meshwall.ratelimit/default/seed", &v, None)
        .unwrap();
    let w = u64::from_le_bytes([7; 8]);
    assert_eq!(p1.load_seed(&store).unwrap(), (w, w));
    assert_eq!(p2.load_seed(&store).unwrap(), (w, w));
}

#[test]
fn seeds_differ_between_processes() {
    let a = policy(&MemHost::new(), DEMO);
    let b = policy(&MemHost::new(), DEMO);
    assert_ne!(a.seed.get().1, b.seed.get().1, "the hash seed is random");
}

#[test]
fn damaged_seed_fails_closed_and_is_counted() {
    let store = MemHost::new();
    let p = policy(&store, DEMO);
    store
        .shared_set("meshwall.ratelimit/default/seed", b"junk", None)
        .unwrap();
    let (st, _) = send(&p, &store, &req("GET", "/", "10.0.0.1", &[]));
    assert_eq!(st, 503);
    assert_eq!(store.metric("meshwall.ratelimit.table.errors"), 1);
}

#[test]
fn damaged_shard_reads_as_empty() {
    let store = MemHost::new();
    let p = policy(&store, &single_shard(1, 2));
    assert_eq!(status(&p, &store, &k("a")), 200);
    assert_eq!(status(&p, &store, &k("a")), 429);
    store.shared_set(&p.shard_key(0), b"garbage", None).unwrap();
    assert_eq!(status(&p, &store, &k("a")), 200);
    assert_eq!(status(&p, &store, &k("a")), 429);
}
