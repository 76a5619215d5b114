//! Limits and replies: the demo rules, all-or-nothing tokens, the 429 and the rate-limit headers, shadow rules.

use super::*;

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
    assert_eq!(host.metric("meshwall.ratelimit.allowed.rule.login"), 6);
    assert_eq!(host.metric("meshwall.ratelimit.limited.rule.login"), 5);
    assert_eq!(host.metric("meshwall.ratelimit.limited.rule.per-ip"), 0);
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
    assert_eq!(host.metric("meshwall.ratelimit.limited.rule.a"), 1);
    assert_eq!(host.metric("meshwall.ratelimit.limited.rule.b"), 1);
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
    assert_eq!(host.metric("meshwall.ratelimit.allowed.rule.r"), 2);
    assert_eq!(host.metric("meshwall.ratelimit.shadow_limited.rule.r"), 8);
    assert_eq!(host.metric("meshwall.ratelimit.limited.rule.r"), 0);
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
    assert_eq!(host.metric("meshwall.ratelimit.allowed.rule.trial"), 1);
    assert_eq!(
        host.metric("meshwall.ratelimit.shadow_limited.rule.trial"),
        4
    );
    assert_eq!(host.metric("meshwall.ratelimit.limited.rule.enforced"), 2);
}

#[test]
fn metric_names_carry_the_rule_as_a_label() {
    // One counter per decision and rule (`meshwall_ratelimit_limited{rule="login"}` in
    // Prometheus), the table's counters and gauge, one refusal counter per reason: all
    // defined at configure time, none per client.
    let host = MemHost::new();
    let p = policy(&host, DEMO);
    let mut want: Vec<String> = Vec::new();
    for rule in ["per-ip", "login"] {
        for m in ["allowed", "limited", "shadow_limited"] {
            want.push(format!("meshwall.ratelimit.{m}.rule.{rule}"));
        }
    }
    for m in [
        "evictions",
        "reclaims",
        "cas_retries",
        "cas_exhausted",
        "errors",
        "refunds_lost",
        "bytes",
    ] {
        want.push(format!("meshwall.ratelimit.table_{m}"));
    }
    for r in Ambiguity::REASONS {
        want.push(format!("meshwall.ratelimit.ambiguous.reason.{r}"));
    }
    let mut names = host.metric_names();
    names.sort();
    want.sort();
    assert_eq!(names, want);
    // Many requests from many clients add no metric.
    for i in 0..50 {
        status(
            &p,
            &host,
            &req("POST", "/login", &format!("10.1.0.{i}"), &[]),
        );
    }
    assert_eq!(host.metric_names().len(), want.len());
}
