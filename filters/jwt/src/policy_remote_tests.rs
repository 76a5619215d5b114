//! Remote JWKS: one fetch per Envoy, refetch on unknown kid, outages, size and age limits.
use super::*;

// ---------------------------------------------------------------- remote JWKS

fn remote_config() -> Value {
    json!({
        "providers": {"idp": {
            "issuer": "https://issuer.example",
            "remote_jwks": {
                "http_uri": {"uri": "http://jwks.example/.well-known/jwks.json", "cluster": "jwks", "timeout": "2s"},
                "cache_duration": "300s",
                "failed_refetch_duration": "5s",
                "refetch_min_interval": "10s"
            },
            "claim_to_headers": [{"header_name": "x-user-id", "claim_name": "sub"}]
        }}
    })
}

fn ok_response(doc: &Value) -> CalloutResponse {
    CalloutResponse::new(200, vec![], serde_json::to_vec(doc).unwrap())
}

fn jwks_with(kids: &[&str]) -> Value {
    let k = keys();
    let raw = k.es256.public_key().public_key().to_bytes_uncompressed();
    json!({"keys": kids.iter().map(|kid| ec_jwk(&raw, "P-256", 32, kid)).collect::<Vec<_>>()})
}

#[test]
fn remote_jwks_one_fetch_shared_by_workers() {
    let h1 = MemHost::new();
    let h2 = h1.clone();
    let w1 = policy_with(&remote_config(), &h1).unwrap();
    let w2 = policy_with(&remote_config(), &h2).unwrap();
    assert_eq!(w1.tick_period(), Some(TICK));
    let tok = sign("ES256", Some("k1"), &good_claims());

    // Nothing fetched yet: fail closed.
    assert_denied(&get(&w1, &h1, "/api", &tok), 401, "Jwks not available");
    assert_eq!(h1.metric("meshwall.jwt.denied.reason.jwks_unavailable"), 1);

    // Both workers tick: only one fetch.
    w1.on_tick(&h1);
    w2.on_tick(&h2);
    let calls = h1.calls();
    assert_eq!(calls.len(), 1, "one fetch per Envoy, not per worker");
    let call = &calls[0];
    assert_eq!(call.cluster, "jwks");
    let hv = |n: &str| {
        call.headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(hv(":path").as_deref(), Some("/.well-known/jwks.json"));
    assert_eq!(hv(":authority").as_deref(), Some("jwks.example"));
    assert_eq!(hv(":method").as_deref(), Some("GET"));
    assert_eq!(call.timeout, std::time::Duration::from_secs(2));

    w1.on_http_call_response(call.token, ok_response(&jwks_with(&["k1"])), &h1);
    assert_eq!(h1.metric("meshwall.jwt.jwks_fetch_ok"), 1);
    assert_allowed(&get(&w1, &h1, "/api", &tok));
    // The other worker picks the keys up from shared data on its first request.
    let req = request("GET", "/api", &[("authorization", &bearer(&tok))]);
    assert_eq!(
        upstream_headers(&req, &run(&w2, &h2, &req)).get("x-user-id"),
        Some("alice")
    );

    // Ticks within cache_duration: no fetch.
    for _ in 0..5 {
        h1.advance(std::time::Duration::from_secs(10));
        w1.on_tick(&h1);
        w2.on_tick(&h2);
    }
    assert_eq!(h1.calls().len(), 1);
    // After cache_duration: one refresh.
    h1.advance(std::time::Duration::from_secs(300));
    w2.on_tick(&h2);
    w1.on_tick(&h1);
    let calls = h1.calls();
    assert_eq!(calls.len(), 2);
    // The same document again keeps the version: cached tokens stay valid.
    let version = w1.remote("idp").unwrap().shared_state(&h1).version;
    w2.on_http_call_response(calls[1].token, ok_response(&jwks_with(&["k1"])), &h2);
    assert_eq!(w1.remote("idp").unwrap().shared_state(&h1).version, version);
    // Only the worker that made the call handles its answer.
    w1.on_http_call_response(calls[1].token, ok_response(&jwks_with(&["zzz"])), &h1);
    assert_eq!(h1.metric("meshwall.jwt.jwks_fetch_ok"), 2);
    // Shared data stays bounded: two keys per remote provider, and the one slot of the shared
    // verified-token table that holds the one token verified.
    assert_eq!(h1.shared_key_count(), 2 + 1);
}

#[test]
fn remote_unknown_kid_triggers_one_rate_limited_refetch() {
    let h1 = MemHost::new();
    let h2 = h1.clone();
    let w1 = policy_with(&remote_config(), &h1).unwrap();
    let w2 = policy_with(&remote_config(), &h2).unwrap();
    w1.on_tick(&h1);
    w1.on_http_call_response(h1.calls()[0].token, ok_response(&jwks_with(&["k1"])), &h1);
    w2.on_tick(&h2);

    let rotated = sign("ES256", Some("k2"), &good_claims());
    // A burst of unknown-kid tokens on both workers → one refetch request.
    for _ in 0..20 {
        assert_denied(
            &get(&w1, &h1, "/api", &rotated),
            401,
            "Jwt key id is unknown",
        );
        assert_denied(
            &get(&w2, &h2, "/api", &rotated),
            401,
            "Jwt key id is unknown",
        );
    }
    assert!(
        w1.remote("idp")
            .unwrap()
            .shared_state(&h1)
            .refetch_requested
    );
    h1.advance(std::time::Duration::from_millis(500));
    w2.on_tick(&h2);
    w1.on_tick(&h1);
    let calls = h1.calls();
    assert_eq!(calls.len(), 2, "one refetch for the whole burst");
    w2.on_http_call_response(calls[1].token, ok_response(&jwks_with(&["k1", "k2"])), &h2);
    assert_allowed(&get(&w2, &h2, "/api", &rotated));
    // w1 sees the new version on its next tick.
    assert_denied(
        &get(&w1, &h1, "/api", &rotated),
        401,
        "Jwt key id is unknown",
    );
    w1.on_tick(&h1);
    assert_allowed(&get(&w1, &h1, "/api", &rotated));

    // Another unknown kid right away: refused, and no new fetch inside refetch_min_interval.
    let unknown = sign("ES256", Some("k3"), &good_claims());
    for _ in 0..5 {
        assert_denied(
            &get(&w1, &h1, "/api", &unknown),
            401,
            "Jwt key id is unknown",
        );
        h1.advance(std::time::Duration::from_secs(1));
        w1.on_tick(&h1);
        w2.on_tick(&h2);
    }
    assert_eq!(h1.calls().len(), 2);
    // After the interval, a new request may ask again.
    h1.advance(std::time::Duration::from_secs(10));
    assert_denied(
        &get(&w1, &h1, "/api", &unknown),
        401,
        "Jwt key id is unknown",
    );
    w1.on_tick(&h1);
    assert_eq!(h1.calls().len(), 3);
}

#[test]
fn remote_server_down_fails_closed_then_recovers() {
    let h = MemHost::new();
    let w = policy_with(&remote_config(), &h).unwrap();
    let tok = sign("ES256", Some("k1"), &good_claims());
    w.on_tick(&h);
    w.on_http_call_response(
        h.calls()[0].token,
        CalloutResponse {
            status: 0,
            ..Default::default()
        },
        &h,
    );
    assert_eq!(h.metric("meshwall.jwt.jwks_fetch_failed"), 1);
    assert_denied(&get(&w, &h, "/api", &tok), 401, "Jwks not available");
    // Retried after failed_refetch_duration, not before.
    h.advance(std::time::Duration::from_secs(2));
    w.on_tick(&h);
    assert_eq!(h.calls().len(), 1);
    h.advance(std::time::Duration::from_secs(4));
    w.on_tick(&h);
    assert_eq!(h.calls().len(), 2);
    // A broken document is a failed fetch as well.
    w.on_http_call_response(
        h.calls()[1].token,
        CalloutResponse::new(
            200,
            vec![],
            b"{\"keys\":[{\"kty\":\"oct\",\"k\":\"AA\"}]}".to_vec(),
        ),
        &h,
    );
    assert_eq!(h.metric("meshwall.jwt.jwks_fetch_failed"), 2);
    h.advance(std::time::Duration::from_secs(6));
    w.on_tick(&h);
    w.on_http_call_response(
        h.calls()[2].token,
        CalloutResponse {
            status: 503,
            ..Default::default()
        },
        &h,
    );
    assert_eq!(h.metric("meshwall.jwt.jwks_fetch_failed"), 3);
    h.advance(std::time::Duration::from_secs(6));
    w.on_tick(&h);
    w.on_http_call_response(h.calls()[3].token, ok_response(&jwks_with(&["k1"])), &h);
    assert_allowed(&get(&w, &h, "/api", &tok));
    // Later failures keep the last good keys.
    h.advance(std::time::Duration::from_secs(301));
    w.on_tick(&h);
    w.on_http_call_response(
        h.calls()[4].token,
        CalloutResponse {
            status: 500,
            ..Default::default()
        },
        &h,
    );
    assert_allowed(&get(
        &w,
        &h,
        "/api",
        &sign(
            "ES256",
            Some("k1"),
            &with(&good_claims(), "jti", json!("n")),
        ),
    ));
}

#[test]
fn remote_lease_survives_cas_races_and_lost_answers() {
    let h1 = MemHost::new();
    let h2 = h1.clone();
    let w1 = policy_with(&remote_config(), &h1).unwrap();
    let w2 = policy_with(&remote_config(), &h2).unwrap();
    // w1 loses the CAS race: no call from it; w2 then takes the lease.
    h1.fail_next_cas(1);
    w1.on_tick(&h1);
    assert_eq!(h1.calls().len(), 0);
    w2.on_tick(&h2);
    assert_eq!(h1.calls().len(), 1);
    // The answer never comes (worker gone): after timeout + 1s the lease expires.
    h1.advance(std::time::Duration::from_secs(2));
    w1.on_tick(&h1);
    assert_eq!(h1.calls().len(), 1, "lease still held");
    h1.advance(std::time::Duration::from_millis(1500));
    w1.on_tick(&h1);
    assert_eq!(h1.calls().len(), 2);
}

#[test]
fn remote_tokens_cached_until_keys_change() {
    let h = MemHost::new();
    let w = policy_with(&remote_config(), &h).unwrap();
    w.on_tick(&h);
    w.on_http_call_response(h.calls()[0].token, ok_response(&jwks_with(&["k1"])), &h);
    let tok = sign("ES256", Some("k1"), &good_claims());
    assert_allowed(&get(&w, &h, "/api", &tok));
    assert_allowed(&get(&w, &h, "/api", &tok));
    assert_eq!(h.metric("meshwall.jwt.cache_hit"), 1);
    // The IdP removes k1: the cached verification does not outlive it.
    h.advance(std::time::Duration::from_secs(301));
    w.on_tick(&h);
    w.on_http_call_response(h.calls()[1].token, ok_response(&jwks_with(&["k9"])), &h);
    assert_denied(&get(&w, &h, "/api", &tok), 401, "Jwt key id is unknown");
}

/// Answers the fetch a tick starts (if it starts one) with `resp`; true when there was one.
fn tick_and_answer(w: &JwtPolicy, h: &MemHost, resp: CalloutResponse) -> bool {
    let before = h.calls().len();
    w.on_tick(h);
    let calls = h.calls();
    if calls.len() == before {
        return false;
    }
    w.on_http_call_response(calls[calls.len() - 1].token, resp, h);
    true
}

fn failed(status: u16) -> CalloutResponse {
    CalloutResponse {
        status,
        ..Default::default()
    }
}

/// A JWKS document of exactly `size` bytes (padded with JSON whitespace).
fn jwks_of_size(size: usize) -> Vec<u8> {
    let mut doc = serde_json::to_vec(&jwks_with(&["k1"])).unwrap();
    let close = doc.pop().unwrap();
    doc.resize(size - 1, b' ');
    doc.push(close);
    doc
}

#[test]
fn remote_jwks_over_256_kib_is_refused_by_its_size() {
    let h = MemHost::new();
    let w = policy_with(&remote_config(), &h).unwrap();
    assert_eq!(w.max_callout_body(), 256 * 1024);
    let tok = sign("ES256", Some("k1"), &good_claims());
    // Over the limit: the host hands over no body, only its size; the fetch fails.
    for size in [256 * 1024 + 1, 50 << 20] {
        h.advance(std::time::Duration::from_secs(6));
        let resp = CalloutResponse {
            status: 200,
            headers: vec![],
            body: vec![],
            body_size: size,
        };
        assert!(tick_and_answer(&w, &h, resp));
        assert_denied(&get(&w, &h, "/api", &tok), 401, "Jwks not available");
    }
    assert_eq!(h.metric("meshwall.jwt.jwks_fetch_failed"), 2);
    // A body that claims more than it holds is refused the same way.
    h.advance(std::time::Duration::from_secs(6));
    let doc = jwks_of_size(1000);
    let resp = CalloutResponse {
        status: 200,
        headers: vec![],
        body: doc,
        body_size: 300_000,
    };
    assert!(tick_and_answer(&w, &h, resp));
    assert_eq!(h.metric("meshwall.jwt.jwks_fetch_failed"), 3);
    // Exactly at the limit: accepted.
    h.advance(std::time::Duration::from_secs(6));
    let doc = jwks_of_size(256 * 1024);
    assert_eq!(doc.len(), 262_144);
    assert!(tick_and_answer(
        &w,
        &h,
        CalloutResponse::new(200, vec![], doc)
    ));
    assert_eq!(h.metric("meshwall.jwt.jwks_fetch_ok"), 1);
    assert_allowed(&get(&w, &h, "/api", &tok));
}

#[test]
fn remote_keys_are_dropped_after_max_stale_then_come_back() {
    let h1 = MemHost::new();
    let h2 = h1.clone();
    let w1 = policy_with(&remote_config(), &h1).unwrap();
    let w2 = policy_with(&remote_config(), &h2).unwrap();
    let secs = std::time::Duration::from_secs;
    let long = |jti: &str| {
        let c = with(&good_claims(), "exp", json!(NOW + 100_000));
        sign("ES256", Some("k1"), &with(&c, "jti", json!(jti)))
    };
    let tok = long("a");
    assert!(tick_and_answer(&w1, &h1, ok_response(&jwks_with(&["k1"]))));
    assert_allowed(&get(&w1, &h1, "/api", &tok));
    assert_allowed(&get(&w2, &h2, "/api", &tok));
    // From now on every fetch fails. cache_duration is 300s, max_stale defaults to 1h: the
    // keys serve until 300s + 3600s after the last good fetch.
    h1.advance(secs(300 + 3600 - 10));
    assert!(tick_and_answer(&w1, &h1, failed(503)));
    assert_allowed(&get(&w1, &h1, "/api", &tok));
    assert_allowed(&get(&w2, &h2, "/api", &long("b")));
    h1.advance(secs(11));
    // No tick has run: each worker sees the age itself, the cached verification included.
    for (w, h) in [(&w1, &h1), (&w2, &h2)] {
        assert_denied(&get(w, h, "/api", &tok), 401, "Jwks not available");
        assert_denied(&get(w, h, "/api", &long("c")), 401, "Jwks not available");
    }
    assert_eq!(h1.metric("meshwall.jwt.denied.reason.jwks_unavailable"), 4);
    // Still failing: still refused (ticks keep the keys out).
    h1.advance(secs(6));
    assert!(tick_and_answer(&w2, &h2, failed(0)));
    w1.on_tick(&h1);
    assert_denied(&get(&w1, &h1, "/api", &tok), 401, "Jwks not available");
    // The endpoint answers again (the same document: the version does not change): both
    // workers use the keys again, for a new cache_duration + max_stale.
    h1.advance(secs(6));
    assert!(tick_and_answer(&w1, &h1, ok_response(&jwks_with(&["k1"]))));
    assert_allowed(&get(&w1, &h1, "/api", &tok));
    assert_allowed(&get(&w2, &h2, "/api", &tok));
    // A refresh of the same document also restarts the window.
    h1.advance(secs(301));
    assert!(tick_and_answer(&w2, &h2, ok_response(&jwks_with(&["k1"]))));
    h1.advance(secs(3700));
    w1.on_tick(&h1);
    assert!(h1.calls().len() > 4, "the refresh after that fails");
    let last = h1.calls().last().unwrap().token;
    w1.on_http_call_response(last, failed(500), &h1);
    assert_allowed(&get(&w1, &h1, "/api", &long("d")));
    assert_allowed(&get(&w2, &h2, "/api", &long("e")));
    h1.advance(secs(300));
    assert_denied(&get(&w2, &h2, "/api", &tok), 401, "Jwks not available");
}

#[test]
fn max_stale_is_configurable() {
    let mut cfg = remote_config();
    cfg["providers"]["idp"]["remote_jwks"]["max_stale"] = json!("10m");
    let h = MemHost::new();
    let w = policy_with(&cfg, &h).unwrap();
    let tok = sign(
        "ES256",
        Some("k1"),
        &with(&good_claims(), "exp", json!(NOW + 100_000)),
    );
    assert!(tick_and_answer(&w, &h, ok_response(&jwks_with(&["k1"]))));
    h.advance(std::time::Duration::from_secs(300 + 600));
    assert_allowed(&get(&w, &h, "/api", &tok));
    h.advance(std::time::Duration::from_secs(1));
    assert_denied(&get(&w, &h, "/api", &tok), 401, "Jwks not available");
    for (v, ok) in [("2s", true), ("1999ms", false), ("1d", false), ("", false)] {
        cfg["providers"]["idp"]["remote_jwks"]["max_stale"] = json!(v);
        let r = policy_with(&cfg, &MemHost::new());
        match r {
            Ok(_) => assert!(ok, "{v} accepted"),
            Err(e) => {
                assert!(!ok, "{v}: {e}");
                assert_eq!(e.field, "providers.idp.remote_jwks.max_stale");
            }
        }
    }
}
