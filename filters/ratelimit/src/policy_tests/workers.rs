//! Several workers on one table: exact counts, compare-and-swap retries, refunds.

use super::*;
use meshwall_core::{MetricId, MetricKind};

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
    assert_eq!(store.metric("meshwall.ratelimit.allowed.rule.per-ip"), 100);
    assert_eq!(store.metric("meshwall.ratelimit.limited.rule.per-ip"), 900);
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
        store.metric("meshwall.ratelimit.table_cas_retries"),
        expected_retries
    );
    assert_eq!(store.metric("meshwall.ratelimit.table_cas_exhausted"), 0);
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
    assert_eq!(store.metric("meshwall.ratelimit.table_cas_exhausted"), 1);
    assert_eq!(store.metric("meshwall.ratelimit.table_cas_retries"), 3);
    assert_eq!(store.metric("meshwall.ratelimit.allowed.rule.r"), 0);
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
    assert_eq!(store.metric("meshwall.ratelimit.table_cas_exhausted"), 1);
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
    fn grpc_call(
        &self,
        c: meshwall_core::host::GrpcUpstream<'_>,
        s: &str,
        m: &str,
        md: &[(&str, &[u8])],
        msg: &[u8],
        t: Duration,
    ) -> Result<u32, HostError> {
        self.inner.grpc_call(c, s, m, md, msg, t)
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
        let r = req("GET", "/", "1.1.1.1", &[(name, value)]);
        let view = View::new(&r, &CanonConfig::default()).unwrap();
        let m = p.key_material(&p.rules[rule], &view).unwrap().unwrap();
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
    assert_eq!(store.metric("meshwall.ratelimit.table_cas_retries"), 1);
    // `a` lost exactly one token: the competing worker's. Ours was given back.
    let (_, h) = send(
        &p,
        &store,
        &req("GET", "/", "1.1.1.1", &[("x-group", &group)]),
    );
    assert_eq!(h.get("ratelimit"), Some(r#""a";r=3;t=3600"#));
    assert_eq!(store.metric("meshwall.ratelimit.table_refunds_lost"), 0);
}
