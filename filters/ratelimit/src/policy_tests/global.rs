//! Global rules: what is sent to the rate limit service, and what its answers do. A small
//! in-memory service (all or nothing, like meshwall-rls) answers the calls of a `MemHost`.

use super::*;
use crate::rls::{
    self, Code, DescriptorStatus, HeaderValue, RateLimit, RateLimitRequest, RateLimitResponse, Unit,
};
use meshwall_core::{send_with, GrpcResponse, RecordedGrpcCall, Sent};
use prost::Message;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// A rate limit service: a limit per descriptor by its first entry's key (`limits`), no refill;
/// a request is admitted only if every descriptor has room, then all are charged.
#[derive(Default)]
pub(super) struct FakeRls {
    pub(super) limits: Vec<(&'static str, u32)>,
    pub(super) used: RefCell<HashMap<Vec<(String, String)>, u32>>,
    pub(super) requests: RefCell<Vec<RateLimitRequest>>,
    pub(super) response_headers: Vec<(&'static str, &'static str)>,
    pub(super) request_headers: Vec<(&'static str, &'static str)>,
}

fn headers(list: &[(&str, &str)]) -> Vec<HeaderValue> {
    list.iter()
        .map(|(k, v)| HeaderValue {
            key: k.to_string(),
            value: v.to_string(),
            raw_value: Vec::new(),
        })
        .collect()
}

impl FakeRls {
    pub(super) fn with_limits(limits: &[(&'static str, u32)]) -> Rc<Self> {
        Rc::new(FakeRls {
            limits: limits.to_vec(),
            ..FakeRls::default()
        })
    }

    pub(super) fn answer(&self, call: &RecordedGrpcCall) -> GrpcResponse {
        let req = RateLimitRequest::decode(call.message.as_slice()).unwrap();
        let keys = req.entry_pairs();
        let limit_of = |k: &Vec<(String, String)>| {
            let first = k.first().map(|(key, _)| key.as_str()).unwrap_or("");
            self.limits
                .iter()
                .find(|(l, _)| *l == first)
                .map(|(_, n)| *n)
        };
        let mut used = self.used.borrow_mut();
        let over: Vec<bool> = keys
            .iter()
            .map(|k| limit_of(k).is_some_and(|n| used.get(k).copied().unwrap_or(0) >= n))
            .collect();
        let admitted = !over.contains(&true);
        let statuses = keys
            .iter()
            .zip(&over)
            .map(|(k, over)| {
                let limit = limit_of(k);
                let count = used.entry(k.clone()).or_default();
                if admitted && limit.is_some() {
                    *count += 1;
                }
                DescriptorStatus {
                    code: if *over { Code::OverLimit } else { Code::Ok } as i32,
                    current_limit: limit.map(|n| RateLimit {
                        name: String::new(),
                        requests_per_unit: n,
                        unit: Unit::Minute as i32,
                    }),
                    limit_remaining: limit.map_or(0, |n| n.saturating_sub(*count)),
                    duration_until_reset: limit.map(|_| rls::Duration {
                        seconds: 29,
                        nanos: 1,
                    }),
                }
            })
            .collect();
        drop(used);
        self.requests.borrow_mut().push(req);
        GrpcResponse::ok(
            RateLimitResponse {
                overall_code: if admitted { Code::Ok } else { Code::OverLimit } as i32,
                statuses,
                response_headers_to_add: headers(&self.response_headers),
                request_headers_to_add: headers(&self.request_headers),
            }
            .encode_to_vec(),
        )
    }
}

/// A host whose gRPC calls `fake` answers.
pub(super) fn host_for(fake: &Rc<FakeRls>) -> MemHost {
    let host = MemHost::new();
    let f = fake.clone();
    host.answer_grpc_with(move |c| f.answer(c));
    host
}

/// A configuration with these rules (JSON objects) and `rate_limit_service` (cluster `rls`,
/// domain `edge`, plus `service_extra`).
pub(super) fn global_cfg(rules: &[&str], service_extra: &str) -> String {
    format!(
        r#"{{"rules":[{}],"rate_limit_service":{{"cluster":"rls","domain":"edge"{service_extra}}}}}"#,
        rules.join(",")
    )
}

/// One request through the driver, the host answering the calls it waits for.
pub(super) fn go(p: &RateLimitPolicy, host: &MemHost, r: &Request) -> Sent {
    let upstream = Response {
        status: 200,
        headers: Headers::from_pairs([("content-type", "text/plain")]),
    };
    send_with(p, host, r, None, None, &upstream, &mut || {
        host.next_grpc_answer()
    })
}

pub(super) const USER: &str = r#"{"name":"per-user","global":true,"on_missing_key":"skip","key":[{"request_headers":{"header_name":"x-user-id","descriptor_key":"user"}}]}"#;

fn sent_descriptors(fake: &FakeRls) -> Vec<Vec<Vec<(String, String)>>> {
    fake.requests
        .borrow()
        .iter()
        .map(RateLimitRequest::entry_pairs)
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn descriptors_are_the_rule_keys_in_order() {
    let fake = FakeRls::with_limits(&[]);
    let host = host_for(&fake);
    let rules = [
        r#"{"name":"ip","global":true,"key":[{"remote_address":{}}]}"#,
        USER,
        r#"{"name":"route","global":true,"key":[{"generic_key":{"descriptor_value":"api"}},{"method":{}},{"path":{}}]}"#,
        r#"{"name":"named","global":true,"key":[{"generic_key":{"descriptor_value":"v","descriptor_key":"tier"}}]}"#,
        r#"{"name":"login","global":true,"match":{"path":"/login"},"key":[{"remote_address":{}}]}"#,
    ];
    let p = policy(&host, &global_cfg(&rules, r#","timeout":"250ms""#));
    let r = req(
        "get",
        "/api//v1/./x/?q=1",
        "10.1.2.3",
        &[("x-user-id", " alice ")],
    );
    assert_eq!(go(&p, &host, &r).status, 200);
    let calls = host.grpc_calls();
    assert_eq!(calls.len(), 1, "one call for all the global rules");
    let c = &calls[0];
    assert_eq!(
        (c.cluster.as_str(), c.service.as_str(), c.method.as_str()),
        (
            "rls",
            "envoy.service.ratelimit.v3.RateLimitService",
            "ShouldRateLimit"
        )
    );
    assert_eq!(c.timeout, Duration::from_millis(250));
    assert_eq!(fake.requests.borrow()[0].domain, "edge");
    assert_eq!(
        sent_descriptors(&fake)[0],
        [
            pairs(&[("remote_address", "10.1.2.3")]),
            pairs(&[("user", "alice")]),
            pairs(&[
                ("generic_key", "api"),
                ("method", "GET"),
                ("path", "/api/v1/x")
            ]),
            pairs(&[("tier", "v")]),
        ],
        "the canonical view; `login` does not apply"
    );
    // The default timeout is Envoy's (20 ms); a missing key part skips the rule, or with
    // `anonymous` every such request shares one descriptor (all values empty).
    let fake = FakeRls::with_limits(&[]);
    let host = host_for(&fake);
    let anon = r#"{"name":"anon","global":true,"on_missing_key":"anonymous","key":[{"remote_address":{}},{"request_headers":{"header_name":"x-api-key"}}]}"#;
    let p = policy(&host, &global_cfg(&[USER, anon], ""));
    assert_eq!(go(&p, &host, &req("GET", "/", "10.0.0.1", &[])).status, 200);
    assert_eq!(host.grpc_calls()[0].timeout, Duration::from_millis(20));
    assert_eq!(
        sent_descriptors(&fake)[0],
        [pairs(&[("remote_address", ""), ("x-api-key", "")])]
    );
}

#[test]
fn client_addresses_are_sent_whole_or_masked_as_envoy_does() {
    let cases = [
        ("{}", "10.1.2.3", ("remote_address", "10.1.2.3")),
        (
            "{}",
            "2001:db8::1:2",
            ("masked_remote_address", "2001:db8::/64"),
        ),
        (
            r#"{"ipv6_prefix_length":128}"#,
            "2001:db8::1:2",
            ("remote_address", "2001:db8::1:2"),
        ),
        (
            r#"{"ipv4_prefix_length":24}"#,
            "10.1.2.3",
            ("masked_remote_address", "10.1.2.0/24"),
        ),
    ];
    for (client_ip, ip, want) in cases {
        let fake = FakeRls::with_limits(&[]);
        let host = host_for(&fake);
        let cfg = format!(
            r#"{{"rules":[{{"name":"ip","global":true,"key":[{{"remote_address":{{}}}}]}}],"client_ip":{client_ip},"rate_limit_service":{{"cluster":"rls","domain":"d"}}}}"#
        );
        let p = policy(&host, &cfg);
        assert_eq!(go(&p, &host, &req("GET", "/", ip, &[])).status, 200);
        assert_eq!(
            sent_descriptors(&fake)[0],
            [pairs(&[want])],
            "{client_ip} {ip}"
        );
    }
}

#[test]
fn over_limit_is_a_429_with_retry_after_and_the_headers_of_the_statuses() {
    let fake = Rc::new(FakeRls {
        limits: vec![("user", 2)],
        response_headers: vec![
            ("x-rls", "1"),
            ("content-type", "text/html"),
            ("retry-after", "0"),
        ],
        request_headers: vec![("x-user-tier", "checked")],
        ..FakeRls::default()
    });
    let host = host_for(&fake);
    let p = policy(&host, &global_cfg(&[USER], ""));
    // The client's own `x-user-tier` is replaced by the service's, never kept beside it.
    let r = req(
        "GET",
        "/",
        "10.0.0.1",
        &[("x-user-id", "alice"), ("x-user-tier", "gold")],
    );
    let first = go(&p, &host, &r);
    assert_eq!(first.status, 200);
    let up = first.upstream.clone().unwrap();
    assert_eq!(
        up.headers.get_all("x-user-tier").collect::<Vec<_>>(),
        ["checked"]
    );
    assert_eq!(first.header("x-rls"), Some("1"), "response_headers_to_add");
    assert_eq!(
        first.header("ratelimit-policy"),
        Some(r#""per-user";q=2;w=60"#)
    );
    assert_eq!(first.header("ratelimit"), Some(r#""per-user";r=1;t=30"#));
    assert_eq!(go(&p, &host, &r).status, 200);
    let third = go(&p, &host, &r);
    assert_eq!(third.status, 429);
    assert!(third.upstream.is_none(), "nothing reached the upstream");
    assert_eq!(
        third.header("retry-after"),
        Some("30"),
        "29.000000001 s, rounded up"
    );
    assert_eq!(third.header("ratelimit"), Some(r#""per-user";r=0;t=30"#));
    assert_eq!(third.header("x-rls"), Some("1"), "on the 429 too");
    // ... but never over the reply's own headers, nor the upstream's content-type.
    assert_eq!(
        third.headers.get_all("content-type").collect::<Vec<_>>(),
        ["application/problem+json"]
    );
    assert_eq!(
        third.headers.get_all("retry-after").collect::<Vec<_>>(),
        ["30"]
    );
    assert_eq!(first.header("content-type"), Some("text/plain"));
    assert_eq!(
        third.problem()["violated_policies"],
        serde_json::json!(["per-user"])
    );
    // Another user has their own counter; a request without the header is not limited.
    let bob = req("GET", "/", "10.0.0.1", &[("x-user-id", "bob")]);
    assert_eq!(go(&p, &host, &bob).status, 200);
    assert_eq!(go(&p, &host, &req("GET", "/", "10.0.0.1", &[])).status, 200);
    assert_eq!(host.grpc_calls().len(), 4, "no call without a descriptor");
    assert_eq!(host.metric("meshwall.ratelimit.allowed.rule.per-user"), 3);
    assert_eq!(host.metric("meshwall.ratelimit.limited.rule.per-user"), 1);
    assert_eq!(host.metric("meshwall.ratelimit.global_ok"), 3);
    assert_eq!(host.metric("meshwall.ratelimit.global_over_limit"), 1);
}

const LOCAL_IP: &str = r#"{"name":"local","key":[{"remote_address":{}}],"token_bucket":{"max_tokens":3,"fill_interval":"1h"}}"#;

#[test]
fn local_rules_run_first_and_a_flood_they_limit_never_reaches_the_service() {
    let fake = FakeRls::with_limits(&[]);
    let host = host_for(&fake);
    let p = policy(&host, &global_cfg(&[LOCAL_IP, USER], ""));
    let r = req("GET", "/", "10.0.0.1", &[("x-user-id", "alice")]);
    let got: Vec<u16> = (0..10).map(|_| go(&p, &host, &r).status).collect();
    assert_eq!(got, [200, 200, 200, 429, 429, 429, 429, 429, 429, 429]);
    assert_eq!(
        host.grpc_calls().len(),
        3,
        "only what the local rule admitted was asked"
    );
    // Both kinds of rule are listed in the headers, in rule order.
    let s = go(
        &p,
        &host,
        &req("GET", "/", "10.0.0.2", &[("x-user-id", "bob")]),
    );
    assert_eq!(s.header("ratelimit-policy"), Some(r#""local";q=3;w=10800"#));
}

#[test]
fn a_request_the_service_rejects_takes_no_local_token() {
    let fake = FakeRls::with_limits(&[("user", 1)]);
    let host = host_for(&fake);
    let p = policy(&host, &global_cfg(&[LOCAL_IP, USER], ""));
    let alice = req("GET", "/", "10.0.0.1", &[("x-user-id", "alice")]);
    assert_eq!(go(&p, &host, &alice).status, 200);
    for _ in 0..5 {
        let s = go(&p, &host, &alice);
        assert_eq!(s.status, 429);
        assert_eq!(
            s.problem()["violated_policies"],
            serde_json::json!(["per-user"])
        );
        assert_eq!(
            s.header("ratelimit"),
            Some(r#""local";r=2;t=3600, "per-user";r=0;t=30"#),
            "the local bucket as it stands, the global status"
        );
    }
    // The local bucket still has its 2 tokens for another user from the same address.
    let bob = req("GET", "/", "10.0.0.1", &[("x-user-id", "bob")]);
    assert_eq!(go(&p, &host, &bob).status, 200);
    let carol = req("GET", "/", "10.0.0.1", &[("x-user-id", "carol")]);
    assert_eq!(go(&p, &host, &carol).status, 200);
    assert_eq!(
        go(
            &p,
            &host,
            &req("GET", "/", "10.0.0.1", &[("x-user-id", "dan")])
        )
        .status,
        429
    );
    assert_eq!(host.metric("meshwall.ratelimit.allowed.rule.local"), 3);
    assert_eq!(host.metric("meshwall.ratelimit.limited.rule.local"), 1);
}

#[test]
fn shadow_global_rules_never_reject_and_are_asked_apart() {
    let fake = FakeRls::with_limits(&[("user", 5), ("trial", 1)]);
    let host = host_for(&fake);
    let trial = r#"{"name":"trial","global":true,"shadow":true,"key":[{"generic_key":{"descriptor_value":"all","descriptor_key":"trial"}}]}"#;
    let p = policy(&host, &global_cfg(&[trial, USER], ""));
    let r = req("GET", "/", "10.0.0.1", &[("x-user-id", "alice")]);
    for _ in 0..5 {
        let s = go(&p, &host, &r);
        assert_eq!(s.status, 200);
        assert!(
            !s.header("ratelimit").unwrap().contains("trial"),
            "not advertised"
        );
    }
    assert_eq!(
        go(&p, &host, &r).status,
        429,
        "the enforced rule was charged all along"
    );
    assert_eq!(host.grpc_calls().len(), 12, "two calls per request");
    let sent = sent_descriptors(&fake);
    assert_eq!(sent[0], [pairs(&[("user", "alice")])]);
    assert_eq!(sent[1], [pairs(&[("trial", "all")])]);
    assert_eq!(host.metric("meshwall.ratelimit.allowed.rule.trial"), 1);
    assert_eq!(
        host.metric("meshwall.ratelimit.shadow_limited.rule.trial"),
        5
    );
    assert_eq!(host.metric("meshwall.ratelimit.limited.rule.trial"), 0);
    assert_eq!(host.metric("meshwall.ratelimit.allowed.rule.per-user"), 5);
}

#[test]
fn ambiguous_requests_are_refused_before_any_call() {
    let fake = FakeRls::with_limits(&[]);
    let host = host_for(&fake);
    let p = policy(&host, &global_cfg(&[USER], ""));
    for (path, headers, reason) in [
        (
            "/",
            vec![("x-user-id", "a"), ("x-user-id", "b")],
            "repeated_header",
        ),
        (
            "/",
            vec![("x-user-id", "a"), ("x_user_id", "b")],
            "header_spelling",
        ),
        ("/a;x=1", vec![("x-user-id", "a")], "path_params"),
    ] {
        let s = go(&p, &host, &req("GET", path, "10.0.0.1", &headers));
        assert_eq!(
            (s.status, s.problem()["reason"].as_str()),
            (400, Some(reason))
        );
    }
    assert!(host.grpc_calls().is_empty());
}

#[test]
fn the_service_headers_are_checked_before_they_are_written() {
    let fake = Rc::new(FakeRls {
        response_headers: vec![
            ("X-Ok", "1"),
            ("x-ok", "2"),
            ("bad name", "x"),
            ("x-split", "a\r\nx-injected: 1"),
            ("content-length", "0"),
            (":status", "200"),
        ],
        request_headers: vec![("host", "evil.example"), ("x-fine", "yes")],
        ..FakeRls::default()
    });
    let host = host_for(&fake);
    let p = policy(&host, &global_cfg(&[USER], ""));
    let s = go(
        &p,
        &host,
        &req("GET", "/", "10.0.0.1", &[("x-user-id", "a")]),
    );
    assert_eq!(s.status, 200);
    assert_eq!(s.headers.get_all("x-ok").collect::<Vec<_>>(), ["1", "2"]);
    for gone in [
        "bad name",
        "x-split",
        "x-injected",
        "content-length",
        ":status",
    ] {
        assert!(!s.headers.contains(gone), "{gone}");
    }
    let up = s.upstream.unwrap();
    assert_eq!(up.headers.get("x-fine"), Some("yes"));
    assert_eq!(up.headers.get("host"), None);
}

#[test]
fn the_authority_of_the_calls_is_configurable_for_istio_cluster_names() {
    // Istio names a service's cluster `outbound|<port>||<host>`; sent as `:authority`, the `|`
    // makes an HTTP/2 server reset the call, so the service's host goes as the authority.
    let fake = FakeRls::with_limits(&[]);
    let host = host_for(&fake);
    let cfg = format!(
        r#"{{"rules":[{USER}],"rate_limit_service":{{"cluster":"outbound|8081||rls.ns.svc.cluster.local","authority":"rls.ns.svc.cluster.local","domain":"edge"}}}}"#
    );
    let p = policy(&host, &cfg);
    let r = req("GET", "/", "10.0.0.1", &[("x-user-id", "alice")]);
    assert_eq!(go(&p, &host, &r).status, 200);
    let calls = host.grpc_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].cluster, "outbound|8081||rls.ns.svc.cluster.local");
    assert_eq!(
        calls[0].authority.as_deref(),
        Some("rls.ns.svc.cluster.local")
    );
    // Without `authority`, Envoy's default (the cluster name).
    let host = host_for(&fake);
    let p = policy(&host, &global_cfg(&[USER], ""));
    assert_eq!(go(&p, &host, &r).status, 200);
    assert_eq!(host.grpc_calls()[0].authority, None);
}
