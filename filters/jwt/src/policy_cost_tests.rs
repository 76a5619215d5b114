//! What a cached request costs: the host calls (each one leaves the VM) and the module's own
//! work, counted on the benchmark's configuration (`scripts/bench jwt-cached`: one provider,
//! local JWKS, `sub` → `x-user-id`, the token removed, the same ES256 token every request).
use super::*;
use std::collections::BTreeMap;

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
    let h = MemHost::new();
    let p = policy_on(&bench_config(), &h);
    let tok = sign("ES256", Some("es256"), &good_claims());
    let req = bench_request(&tok);
    assert_allowed(&p.on_request_headers(&mut (), &req, &h));
    h.reset_host_calls();
    let action = p.on_request_headers(&mut (), &req, &h);
    assert_eq!(
        action,
        Action::Continue(vec![
            HeaderOp::Set("x-user-id".into(), "alice".into()),
            HeaderOp::Remove("authorization".into()),
        ])
    );
    // Every host call, by kind: one clock read and two increments, nothing else.
    let calls: BTreeMap<&str, u32> = [("now", 1), ("increment_metric", 2)].into_iter().collect();
    assert_eq!(h.host_calls(), calls);
    assert_eq!(h.metric("meshwall.jwt.cache_hit"), 1);
    assert_eq!(h.metric("meshwall.jwt.allowed"), 2);
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
}
