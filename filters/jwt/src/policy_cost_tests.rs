//! What a cached request costs: the host calls (each one leaves the VM) and the module's own
//! work, counted on the benchmark's configuration (`scripts/bench jwt-cached`: one provider,
//! local JWKS, `sub` → `x-user-id`, the token removed, the same ES256 token every request).
use super::*;
use meshwall_core::{GrpcUpstream, HostError, MetricId, MetricKind};
use std::cell::Cell;
use std::time::SystemTime;

/// A [`MemHost`] that counts the host calls a request makes.
#[derive(Default)]
struct Counting {
    inner: MemHost,
    clock: Cell<u32>,
    shared_reads: Cell<u32>,
    shared_writes: Cell<u32>,
    increments: Cell<u32>,
    other: Cell<u32>,
}

impl Counting {
    fn total(&self) -> u32 {
        self.clock.get()
            + self.shared_reads.get()
            + self.shared_writes.get()
            + self.increments.get()
            + self.other.get()
    }

    fn reset(&self) {
        for c in [
            &self.clock,
            &self.shared_reads,
            &self.shared_writes,
            &self.increments,
            &self.other,
        ] {
            c.set(0);
        }
    }
}

fn bump(c: &Cell<u32>) {
    c.set(c.get() + 1);
}

impl Host for Counting {
    fn now(&self) -> SystemTime {
        bump(&self.clock);
        self.inner.now()
    }
    fn shared_get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
        bump(&self.shared_reads);
        self.inner.shared_get(key)
    }
    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        bump(&self.shared_writes);
        self.inner.shared_set(key, value, cas)
    }
    fn define_metric(&self, kind: MetricKind, name: &str) -> Result<MetricId, HostError> {
        bump(&self.other);
        self.inner.define_metric(kind, name)
    }
    fn increment_metric(&self, id: MetricId, delta: i64) {
        bump(&self.increments);
        self.inner.increment_metric(id, delta)
    }
    fn record_metric(&self, id: MetricId, value: u64) {
        bump(&self.other);
        self.inner.record_metric(id, value)
    }
    fn http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout: std::time::Duration,
    ) -> Result<u32, HostError> {
        bump(&self.other);
        self.inner.http_call(cluster, headers, body, timeout)
    }
    fn grpc_call(
        &self,
        upstream: GrpcUpstream<'_>,
        service: &str,
        method: &str,
        initial_metadata: &[(&str, &[u8])],
        message: &[u8],
        timeout: std::time::Duration,
    ) -> Result<u32, HostError> {
        bump(&self.other);
        self.inner.grpc_call(
            upstream,
            service,
            method,
            initial_metadata,
            message,
            timeout,
        )
    }
    fn call_foreign_function(&self, name: &str, arg: &[u8]) -> Result<Option<Vec<u8>>, HostError> {
        bump(&self.other);
        self.inner.call_foreign_function(name, arg)
    }
}

/// The benchmark's configuration (scripts/bench_scenarios.py `jwt_setup`).
fn bench_config() -> Value {
    json!({
        "providers": {"bench": {
            "issuer": "https://issuer.example",
            "audiences": ["api"],
            "local_jwks": {"inline_jwks": jwks()},
            "claim_to_headers": [{"header_name": "x-user-id", "claim_name": "sub"}]
        }},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "bench"}}],
        "jwt_cache_size": 1000
    })
}

/// The request as Envoy hands it to the filter in the benchmark (wrk's `Host`, the headers
/// Envoy adds).
fn bench_request(tok: &str) -> Request {
    let auth = bearer(tok);
    request(
        "GET",
        "/bench",
        &[
            ("authorization", auth.as_str()),
            ("x-forwarded-proto", "http"),
            ("x-request-id", "5b0a1c5e-4f0e-4d43-9c7a-2f6f0d7f4c11"),
        ],
    )
}

fn policy_on(cfg: &Value, h: &dyn Host) -> JwtPolicy {
    let c: JwtConfig = parse_config(&serde_json::to_vec(cfg).unwrap()).unwrap();
    JwtPolicy::new(c, h).unwrap()
}

/// A cached request: one clock read, the two counters (cache hit, allowed), nothing from
/// shared data; the header operations are the claim header and the token's removal.
#[test]
fn a_cached_request_makes_few_host_calls() {
    let h = Counting::default();
    let p = policy_on(&bench_config(), &h);
    let tok = sign("ES256", Some("es256"), &good_claims());
    let req = bench_request(&tok);
    assert_allowed(&p.on_request_headers(&mut (), &req, &h));
    h.reset();
    let action = p.on_request_headers(&mut (), &req, &h);
    assert_eq!(
        action,
        Action::Continue(vec![
            HeaderOp::Set("x-user-id".into(), "alice".into()),
            HeaderOp::Remove("authorization".into()),
        ])
    );
    assert_eq!(h.clock.get(), 1, "clock reads");
    assert_eq!(h.shared_reads.get(), 0, "shared-data reads");
    assert_eq!(h.shared_writes.get(), 0, "shared-data writes");
    assert_eq!(h.increments.get(), 2, "metric increments");
    assert_eq!(h.total(), 3);
    assert_eq!(h.inner.metric("meshwall.jwt.cache_hit"), 1);
    assert_eq!(h.inner.metric("meshwall.jwt.allowed"), 2);
}

/// For profiling the module's own work on the cached path natively:
/// `cargo test --release -p meshwall-jwt cached_request_loop -- --ignored` under
/// `valgrind --tool=callgrind`. `JWT_LOOP` requests (default 20,000).
#[test]
#[ignore]
fn cached_request_loop() {
    let h = MemHost::new();
    let p = policy_on(&bench_config(), &h);
    let tok = sign("ES256", Some("es256"), &good_claims());
    let req = bench_request(&tok);
    let n: u32 = std::env::var("JWT_LOOP")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    for _ in 0..n {
        let a = p.on_request_headers(&mut (), &req, &h);
        assert!(matches!(a, Action::Continue(_)));
    }
}

/// The hash of the last token is reused only for the very same bytes: a token of the same
/// length that differs in one byte (here: the signature) is hashed anew and not taken for the
/// cached one.
#[test]
fn the_last_hash_serves_only_the_same_token() {
    let h = MemHost::new();
    let p = policy_on(&bench_config(), &h);
    let tok = sign("ES256", Some("es256"), &good_claims());
    let last = tok.chars().last().unwrap();
    let forged = format!(
        "{}{}",
        &tok[..tok.len() - 1],
        if last == 'A' { 'Q' } else { 'A' }
    );
    assert_eq!(forged.len(), tok.len());
    for _ in 0..2 {
        assert_allowed(&p.on_request_headers(&mut (), &bench_request(&tok), &h));
        let a = p.on_request_headers(&mut (), &bench_request(&forged), &h);
        assert!(
            matches!(a, Action::Reply(ref r) if r.status == 401),
            "{a:?}"
        );
    }
    assert_eq!(h.metric("meshwall.jwt.allowed"), 2);
    assert_eq!(h.metric("meshwall.jwt.cache_hit"), 1);
    assert!(super::super::same_bytes(b"abc", b"abc"));
    assert!(!super::super::same_bytes(b"abc", b"abd"));
    assert!(!super::super::same_bytes(b"abc", b"ab"));
    assert!(super::super::same_bytes(b"", b""));
}
