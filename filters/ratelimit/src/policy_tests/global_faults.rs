//! Global rules when the rate limit service fails, and their configuration.

use super::global::{global_cfg, go, host_for, FakeRls, USER};
use super::*;
use crate::rls::{Code, DescriptorStatus, RateLimitResponse};
use meshwall_core::{Exchange as Driver, GrpcResponse, Step};
use prost::Message;

const ONE_TOKEN: &str = r#"{"name":"local","key":[{"remote_address":{}}],"token_bucket":{"max_tokens":1,"fill_interval":"1h"}}"#;

fn answer(overall: i32, statuses: usize) -> GrpcResponse {
    GrpcResponse::ok(
        RateLimitResponse {
            overall_code: overall,
            statuses: (0..statuses)
                .map(|_| DescriptorStatus {
                    code: Code::Ok as i32,
                    ..DescriptorStatus::default()
                })
                .collect(),
            ..RateLimitResponse::default()
        }
        .encode_to_vec(),
    )
}

/// How the service fails, and the reason it is counted under.
type Fault = (&'static str, &'static str, fn(&MemHost));

fn faults() -> Vec<Fault> {
    vec![
        ("cannot start", "dispatch", |h| h.fail_next_grpc_calls(1)),
        ("UNAVAILABLE", "grpc_status", |h| {
            h.answer_grpc_with(|_| GrpcResponse::failed(14))
        }),
        ("DEADLINE_EXCEEDED", "timeout", |h| {
            h.answer_grpc_with(|_| GrpcResponse::failed(4))
        }),
        // Envoy ends a call at its timeout with UNAVAILABLE: an error that comes past 80 % of
        // the timeout (20 ms; Envoy's timer runs on the event loop's cached clock) is one.
        ("UNAVAILABLE at the timeout", "timeout", |h| {
            let clock = h.clone();
            h.answer_grpc_with(move |_| {
                clock.advance(Duration::from_millis(17));
                GrpcResponse::failed(14)
            })
        }),
        ("UNAVAILABLE before the timeout", "grpc_status", |h| {
            let clock = h.clone();
            h.answer_grpc_with(move |_| {
                clock.advance(Duration::from_millis(10));
                GrpcResponse::failed(14)
            })
        }),
        ("not protobuf", "bad_response", |h| {
            h.answer_grpc_with(|_| GrpcResponse::ok(b"\xff\xff\xff".to_vec()))
        }),
        ("too large to read", "bad_response", |h| {
            h.answer_grpc_with(|_| GrpcResponse {
                status_code: 0,
                message: Vec::new(),
                message_size: 1 << 20,
            })
        }),
        (
            "larger than the policy reads, though read",
            "bad_response",
            |h| {
                h.answer_grpc_with(|_| {
                    // An OK answer with a 70,000-byte raw_body (field 5): in a chain the host may
                    // copy it for another policy's larger limit; this one refuses it all the same.
                    let mut big = answer(Code::Ok as i32, 1).message;
                    big.extend([0x2a, 0xf0, 0xa2, 0x04]);
                    big.extend(vec![b'x'; 70_000]);
                    GrpcResponse::ok(big)
                })
            },
        ),
        (
            "a status per descriptor that does not match",
            "bad_response",
            |h| h.answer_grpc_with(|_| answer(Code::Ok as i32, 2)),
        ),
        ("UNKNOWN", "unknown_code", |h| {
            h.answer_grpc_with(|_| answer(Code::Unknown as i32, 1))
        }),
        ("an empty message (UNKNOWN)", "unknown_code", |h| {
            h.answer_grpc_with(|_| GrpcResponse::ok(Vec::new()))
        }),
        ("a code from the future", "unknown_code", |h| {
            h.answer_grpc_with(|_| answer(7, 1))
        }),
    ]
}

#[test]
fn failures_follow_failure_mode_and_are_counted() {
    for (what, reason, fault) in faults() {
        for mode in ["deny", "allow"] {
            let host = MemHost::new();
            let cfg = global_cfg(&[ONE_TOKEN, USER], &format!(r#","failure_mode":"{mode}""#));
            let p = policy(&host, &cfg);
            fault(&host);
            let s = go(
                &p,
                &host,
                &req("GET", "/", "10.0.0.1", &[("x-user-id", "a")]),
            );
            let metric = |m: &str| host.metric(&format!("meshwall.ratelimit.{m}"));
            assert_eq!(
                metric(&format!("global_errors.reason.{reason}")),
                1,
                "{what}"
            );
            if mode == "deny" {
                assert_eq!(s.status, 503, "{what}: never 200");
                assert!(s.upstream.is_none(), "{what}");
                assert_eq!(s.header("retry-after"), Some("1"));
                assert_eq!(s.header("content-type"), Some("application/problem+json"));
                assert_eq!(metric("global_failure_mode_denied"), 1);
                // The local token went back: the address still has it.
                let again = go(&p, &host, &req("GET", "/", "10.0.0.1", &[]));
                assert_eq!(again.status, 200, "{what}: the local token was given back");
            } else {
                assert_eq!(s.status, 200, "{what}");
                assert!(s.upstream.is_some());
                assert_eq!(metric("global_failure_mode_allowed"), 1);
                assert_eq!(
                    metric("allowed.rule.local"),
                    1,
                    "the local rule admitted it"
                );
                let again = go(&p, &host, &req("GET", "/", "10.0.0.1", &[]));
                assert_eq!(again.status, 429, "{what}: the local token was spent");
            }
            assert_eq!(metric("allowed.rule.per-user"), 0, "{what}: undecided");
        }
    }
}

#[test]
fn failure_mode_is_deny_by_default_and_a_failed_shadow_call_changes_nothing() {
    let host = MemHost::new();
    let p = policy(&host, &global_cfg(&[USER], ""));
    host.answer_grpc_with(|_| GrpcResponse::failed(14));
    let r = req("GET", "/", "10.0.0.1", &[("x-user-id", "a")]);
    assert_eq!(go(&p, &host, &r).status, 503);
    // Only a shadow rule: its failure lets the request go (shadow never rejects).
    let host = MemHost::new();
    let shadow = USER.replace(r#""global":true"#, r#""global":true,"shadow":true"#);
    let p = policy(&host, &global_cfg(&[&shadow], ""));
    host.answer_grpc_with(|_| GrpcResponse::failed(14));
    assert_eq!(go(&p, &host, &r).status, 200);
    assert_eq!(
        host.metric("meshwall.ratelimit.global_errors.reason.grpc_status"),
        1
    );
    assert_eq!(
        host.metric("meshwall.ratelimit.global_failure_mode_denied"),
        0
    );
}

#[test]
fn only_the_answers_to_its_own_calls_end_the_wait() {
    let fake = FakeRls::with_limits(&[]);
    let host = host_for(&fake);
    let p = policy(&host, &global_cfg(&[USER], ""));
    let mut x = Driver::<RateLimitPolicy>::new();
    let r = req("GET", "/", "10.0.0.1", &[("x-user-id", "a")]);
    assert_eq!(x.request_headers(&p, r, true, &host), Step::Pause(vec![]));
    let mut read = |_: usize| Vec::new();
    let token = host.grpc_calls()[0].token;
    let stray = x.callout_response(&p, token + 100, GrpcResponse::failed(14), &mut read, &host);
    assert_eq!(stray, Step::Pause(vec![]), "still waiting");
    assert!(x.waiting());
    let (t, a) = host.next_grpc_answer().unwrap();
    assert_eq!(t, token);
    assert!(matches!(
        x.callout_response(&p, t, a, &mut read, &host),
        Step::Continue(_)
    ));
    assert_eq!(
        host.metric("meshwall.ratelimit.global_errors.reason.grpc_status"),
        0
    );
}

#[test]
fn global_metrics_exist_only_with_a_service() {
    let host = MemHost::new();
    policy(&host, &global_cfg(&[USER], ""));
    let names = host.metric_names();
    for m in [
        "global_ok",
        "global_over_limit",
        "global_failure_mode_allowed",
        "global_failure_mode_denied",
        "global_errors.reason.dispatch",
        "global_errors.reason.timeout",
        "global_errors.reason.grpc_status",
        "global_errors.reason.bad_response",
        "global_errors.reason.unknown_code",
        "allowed.rule.per-user",
    ] {
        assert!(names.contains(&format!("meshwall.ratelimit.{m}")), "{m}");
    }
    let host = MemHost::new();
    policy(&host, DEMO);
    assert!(!host.metric_names().iter().any(|n| n.contains("global")));
}

#[test]
fn configuration_errors_name_the_field() {
    let local = r#"{"name":"l","key":[{"remote_address":{}}],"token_bucket":{"max_tokens":1,"fill_interval":"1s"}}"#;
    let svc = |extra: &str| global_cfg(&[USER], extra);
    let cases: Vec<(String, &str, &str)> = vec![
        (
            format!(r#"{{"rules":[{USER}]}}"#),
            "rules[0].global",
            "needs `rate_limit_service`",
        ),
        (global_cfg(&[local], ""), "rate_limit_service", "no rule is `global`"),
        (
            global_cfg(
                &[r#"{"name":"g","global":true,"key":[{"remote_address":{}}],"token_bucket":{"max_tokens":1,"fill_interval":"1s"}}"#],
                "",
            ),
            "rules[0].token_bucket",
            "no bucket here",
        ),
        (
            r#"{"rules":[{"name":"l","key":[{"remote_address":{}}]}]}"#.to_string(),
            "rules[0].token_bucket",
            "required",
        ),
        (
            r#"{"rules":[{"name":"l","on_missing_key":"skip","key":[{"request_headers":{"header_name":"x-a","descriptor_key":"a"}}],"token_bucket":{"max_tokens":1,"fill_interval":"1s"}}]}"#.to_string(),
            "rules[0].key[0].request_headers.descriptor_key",
            "only for a `global` rule",
        ),
        (
            global_cfg(&[r#"{"name":"g","global":true,"key":[{"generic_key":{"descriptor_value":"v","descriptor_key":""}}]}"#], ""),
            "rules[0].key[0].generic_key.descriptor_key",
            "1 to 128 characters",
        ),
        (
            r#"{"rules":[{"name":"g","global":true,"key":[{"remote_address":{}}]}],"rate_limit_service":{"cluster":"","domain":"d"}}"#.to_string(),
            "rate_limit_service.cluster",
            "cluster name",
        ),
        (
            r#"{"rules":[{"name":"g","global":true,"key":[{"remote_address":{}}]}],"rate_limit_service":{"cluster":"a b","domain":"d"}}"#.to_string(),
            "rate_limit_service.cluster",
            "cluster name",
        ),
        (
            r#"{"rules":[{"name":"g","global":true,"key":[{"remote_address":{}}]}],"rate_limit_service":{"cluster":"c","domain":""}}"#.to_string(),
            "rate_limit_service.domain",
            "1 to 256",
        ),
        (
            r#"{"rules":[{"name":"g","global":true,"key":[{"remote_address":{}}]}],"rate_limit_service":{"cluster":"outbound|8081||rls.ns.svc.cluster.local","domain":"d"}}"#.to_string(),
            "rate_limit_service.authority",
            "required: the cluster name is no valid :authority",
        ),
        (svc(r#","authority":"a|b""#), "rate_limit_service.authority", "host or host:port"),
        (svc(r#","authority":"""#), "rate_limit_service.authority", "host or host:port"),
        (
            svc(&format!(r#","authority":"{}""#, "a".repeat(121))),
            "rate_limit_service.authority",
            "at most 123 characters together",
        ),
        (svc(r#","timeout":"0ms""#), "rate_limit_service.timeout", "between 1ms and 60s"),
        (svc(r#","timeout":"61s""#), "rate_limit_service.timeout", "between 1ms and 60s"),
        (svc(r#","timeout":"soon""#), "rate_limit_service.timeout", "not a duration"),
        (svc(r#","failure_mode":"maybe""#), "rate_limit_service.failure_mode", "unknown variant"),
        (svc(r#","retries":3"#), "rate_limit_service.retries", "unknown field"),
        (
            r#"{"rules":[{"name":"g","global":true,"key":[{"remote_address":{}}]}],"rate_limit_service":{"domain":"d"}}"#.to_string(),
            "rate_limit_service",
            "missing field `cluster`",
        ),
    ];
    for (json, field, says) in cases {
        let e = build(&MemHost::new(), &json)
            .err()
            .unwrap_or_else(|| panic!("accepted: {json}"));
        assert_eq!(e.field, field, "{json}: {e}");
        assert!(e.to_string().contains(says), "{json}: {e}");
    }
    // A table as small as the local rules need: global rules take no slot.
    let two_global = global_cfg(&[USER, &USER.replace("per-user", "other")], r#""#);
    let small = two_global.replacen('{', r#"{"table":{"shards":1,"slots_per_shard":1},"#, 1);
    assert!(build(&MemHost::new(), &small).is_ok());
}
