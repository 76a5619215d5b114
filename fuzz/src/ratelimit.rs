//! ratelimit: the shared bucket table under arbitrary interleavings of workers (policies on
//! clones of one `MemHost`, a competing request run in the middle of another's
//! compare-and-swap), and the RLS messages (prost) and stored shards.

use arbitrary::Unstructured;
use meshwall_core::host::grpc_status;
use meshwall_core::{
    send_with, GrpcResponse, Headers, Host, HostError, MemHost, MetricId, MetricKind, Request,
};
use meshwall_ratelimit::rls::{ceil_secs, unit_secs, RateLimitRequest, RateLimitResponse};
use meshwall_ratelimit::table::Shard;
use meshwall_ratelimit::RateLimitPolicy;
use prost::Message;
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// One request of the plan: which worker sends it, with which client address and user.
#[derive(Debug, Clone, Copy)]
struct Send {
    worker: usize,
    ip: u8,
    user: Option<u8>,
    login: bool,
}

/// A worker's host: the shared store, and before a write, maybe a request of another worker
/// (taken from `races`), as happens when two workers race on one shard.
struct RaceHost<'a> {
    inner: MemHost,
    world: &'a World,
    nested: bool,
}

struct World {
    store: MemHost,
    workers: Vec<RateLimitPolicy>,
    races: RefCell<VecDeque<Send>>,
    /// Admissions per (rule, key): times (ms of forward clock movement so far).
    admitted: RefCell<HashMap<(u8, u8), Vec<u64>>>,
    /// First time a request touched each (rule, key), on the same scale.
    first: RefCell<HashMap<(u8, u8), u64>>,
    /// Milliseconds the clock has moved forward in all (steps back not subtracted).
    forward_ms: std::cell::Cell<u64>,
}

impl Host for RaceHost<'_> {
    fn now(&self) -> std::time::SystemTime {
        self.inner.now()
    }
    fn shared_get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
        self.inner.shared_get(key)
    }
    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        if !self.nested {
            let next = self.world.races.borrow_mut().pop_front();
            if let Some(s) = next {
                self.world.send(s, true);
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
    fn http_call(&self, c: &str, h: &[(&str, &str)], b: Option<&[u8]>, t: Duration) -> Result<u32, HostError> {
        self.inner.http_call(c, h, b, t)
    }
    fn grpc_call(&self, c: &str, s: &str, m: &str, md: &[(&str, &[u8])], msg: &[u8], t: Duration) -> Result<u32, HostError> {
        self.inner.grpc_call(c, s, m, md, msg, t)
    }
}

/// Bucket parameters of rule `a` (per address) and `b` (per user on `/login`).
#[derive(Debug, Clone, Copy)]
struct Bucket {
    max: u64,
    per: u64,
    interval_ms: u64,
}

impl World {
    fn send(&self, s: Send, nested: bool) {
        let Some(p) = self.workers.get(s.worker) else {
            return;
        };
        let host = RaceHost { inner: self.store.clone(), world: self, nested };
        let user = s.user.map(|u| format!("u{u}"));
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if let Some(u) = &user {
            headers.push(("x-user", u));
        }
        let path = if s.login { "/login" } else { "/x" };
        let r = Request {
            client_ip: Some(format!("10.0.0.{}", s.ip)),
            ..Request::new("POST", path, &headers)
        };
        // The bound is on the clock's forward movement only: a bucket refills on the real
        // clock, and a clock that went back then forward again has moved forward by that much
        // (a bucket never moves its last fill back, so it cannot gain more than that).
        let high = self.forward_ms.get();
        let touched: Vec<(u8, u8)> = std::iter::once((0, s.ip))
            .chain(s.user.filter(|_| s.login).map(|u| (1, u)))
            .collect();
        for t in &touched {
            self.first.borrow_mut().entry(*t).or_insert(high);
        }
        let upstream = crate::upstream();
        let sent = send_with(p, &host, &r, None, None, &upstream, &mut || None);
        assert!(matches!(sent.status, 200 | 429 | 503), "status {}", sent.status);
        if sent.status == 200 {
            for t in touched {
                self.admitted.borrow_mut().entry(t).or_default().push(high);
            }
        }
    }
}

/// `ratelimit_table`: the input drives the configuration (tiny tables, so slots are
/// contended and reclaimed), the workers, the clock (forward and a little back), forced CAS
/// conflicts and races. Invariants: no panic; shared-data keys never grow after
/// configuration; and, unless a bucket that was not full was evicted (counted by
/// `table_evictions`, a documented loss), every bucket admits at most `max_tokens` plus
/// `tokens_per_fill` per whole fill interval since it was first touched.
pub fn table(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let mut bucket = || -> arbitrary::Result<Bucket> {
        let max = u.int_in_range(1..=8u64)?;
        let per = u.int_in_range(1..=max)?;
        let interval_ms = *u.choose(&[50u64, 1000, 60_000])?;
        Ok(Bucket { max, per, interval_ms })
    };
    let (Ok(a), Ok(b)) = (bucket(), bucket()) else {
        return;
    };
    let Ok(shards) = u.int_in_range(1..=4u32) else { return };
    let Ok(slots) = u.int_in_range(2..=6u32) else { return };
    let Ok(attempts) = u.int_in_range(1..=4u32) else { return };
    let Ok(nworkers) = u.int_in_range(1..=4usize) else { return };
    let rule = |name: &str, key: &str, m: &str, bk: Bucket| {
        format!(
            r#"{{"name":"{name}","key":[{key}]{m},"on_missing_key":"skip","token_bucket":{{"max_tokens":{},"tokens_per_fill":{},"fill_interval":"{}ms"}}}}"#,
            bk.max, bk.per, bk.interval_ms
        )
    };
    let json = format!(
        r#"{{"rules":[{},{}],"table":{{"shards":{shards},"slots_per_shard":{slots},"max_cas_attempts":{attempts}}}}}"#,
        rule("a", r#"{"remote_address":{}}"#, "", a),
        rule("b", r#"{"request_headers":{"header_name":"x-user"}}"#, r#","match":{"prefix":"/login"}"#, b),
    );
    let store = MemHost::new();
    let mut workers = Vec::new();
    for _ in 0..nworkers {
        workers.push(crate::must_build::<RateLimitPolicy>(json.as_bytes(), &store.clone()));
    }
    let keys = store.shared_key_count();
    let world = World {
        store: store.clone(),
        workers,
        races: RefCell::new(VecDeque::new()),
        admitted: RefCell::new(HashMap::new()),
        first: RefCell::new(HashMap::new()),
        forward_ms: std::cell::Cell::new(0),
    };
    let pick_send = |u: &mut Unstructured| -> arbitrary::Result<Send> {
        Ok(Send {
            worker: u.int_in_range(0..=nworkers - 1)?,
            ip: u.int_in_range(0..=3u8)?,
            user: if u.arbitrary()? { Some(u.int_in_range(0..=3u8)?) } else { None },
            login: u.arbitrary()?,
        })
    };
    for _ in 0..200 {
        let Ok(op) = u.int_in_range(0..=9u8) else { break };
        let step = match op {
            0..=4 => pick_send(&mut u).map(|s| world.send(s, false)),
            5 => pick_send(&mut u).map(|s| world.races.borrow_mut().push_back(s)),
            6 | 7 => u.int_in_range(1..=70_000u64).map(|ms| {
                store.advance(Duration::from_millis(ms));
                world.forward_ms.set(world.forward_ms.get() + ms);
            }),
            8 => u.int_in_range(1..=2_000u64).map(|ms| {
                store.set_now(store.now() - Duration::from_millis(ms));
            }),
            _ => u.int_in_range(0..=5u32).map(|n| store.fail_next_cas(n)),
        };
        if step.is_err() {
            break;
        }
    }
    store.fail_next_cas(0);
    assert_eq!(store.shared_key_count(), keys, "requests created shared-data keys");
    if store.metric("meshwall.ratelimit.table_evictions") > 0 {
        return;
    }
    for ((rule, key), times) in world.admitted.borrow().iter() {
        let bk = if *rule == 0 { a } else { b };
        let first = world.first.borrow().get(&(*rule, *key)).copied().unwrap_or(0);
        for (n, t) in times.iter().enumerate() {
            let fills = t.saturating_sub(first) / bk.interval_ms;
            let bound = bk.max + bk.per * fills;
            assert!(
                (n as u64) < bound,
                "rule {rule} key {key}: {} admissions by t+{}ms, bound {bound} ({bk:?}, {json})",
                n + 1,
                t - first
            );
        }
    }
}

/// `ratelimit_rls`: the first byte picks what the rest is read as:
/// 0: a `RateLimitResponse` (round trip through prost; units and durations read);
/// 1: a `RateLimitRequest` (round trip);
/// 2: a stored table shard (`Shard::decode`: what decodes encodes back to the same bytes);
/// 3..: the answer of the rate limit service to a request with one global rule, through the
///    policy: admitted only on an `OK` answer, and every header the server adds is valid.
pub fn rls_messages(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode {
        0 => {
            if let Ok(r) = RateLimitResponse::decode(rest) {
                let back = RateLimitResponse::decode(r.encode_to_vec().as_slice());
                assert_eq!(back.as_ref().ok(), Some(&r), "response does not round-trip");
                for s in &r.statuses {
                    if let Some(l) = &s.current_limit {
                        let _ = unit_secs(l.unit);
                    }
                    if let Some(d) = &s.duration_until_reset {
                        let _ = ceil_secs(d);
                    }
                }
            }
        }
        1 => {
            if let Ok(r) = RateLimitRequest::decode(rest) {
                let back = RateLimitRequest::decode(r.encode_to_vec().as_slice());
                assert_eq!(back.as_ref().ok(), Some(&r), "request does not round-trip");
            }
        }
        2 => {
            for slots in [1usize, 2, 16, 64] {
                if let Some(s) = Shard::decode(rest, slots) {
                    assert_eq!(s.encode(), rest, "shard of {slots} slots does not round-trip");
                }
            }
        }
        _ => global_answer(mode, rest),
    }
}

fn global_answer(mode: u8, message: &[u8]) {
    thread_local! {
        static P: (MemHost, RateLimitPolicy) = {
            let h = MemHost::new();
            let cfg = r#"{"rules":[{"name":"u","global":true,"key":[{"request_headers":{"header_name":"x-user","descriptor_key":"user"}}],"on_missing_key":"skip"}],
                          "rate_limit_service":{"cluster":"rls","domain":"edge"}}"#;
            let p = crate::must_build::<RateLimitPolicy>(cfg.as_bytes(), &h);
            (h, p)
        };
    }
    P.with(|(host, p)| {
        let msg = message.to_vec();
        let status = if mode == 255 { grpc_status::UNAVAILABLE } else { grpc_status::OK };
        host.answer_grpc_with(move |_| GrpcResponse { status_code: status, ..GrpcResponse::ok(msg.clone()) });
        let r = Request::new("GET", "/x", &[("x-user", "alice")]);
        let s = send_with(p, host, &r, None, None, &crate::upstream(), &mut || host.next_grpc_answer());
        assert!(matches!(s.status, 200 | 429 | 503), "status {}", s.status);
        let decoded = RateLimitResponse::decode(message);
        if s.status == 200 {
            let ok = status == grpc_status::OK
                && decoded.as_ref().is_ok_and(|d| {
                    d.overall_code == 1 && d.statuses.len() <= 1 && d.statuses.iter().all(|x| x.code != 2)
                });
            assert!(ok, "admitted on answer {decoded:?}");
        }
        let check = |h: &Headers| {
            for (n, v) in h.iter() {
                assert!(!n.is_empty() && n.bytes().all(|b| meshwall_core::config::is_tchar(char::from(b))), "bad header name {n:?}");
                assert!(!v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0), "bad header value {v:?}");
            }
        };
        check(&s.headers);
        if let Some(up) = &s.upstream {
            check(&up.headers);
        }
    });
}
