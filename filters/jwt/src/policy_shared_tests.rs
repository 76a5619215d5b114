//! The verified-token table shared by all workers (`shared_cache_size`), behind each worker's
//! LRU: one worker's verification serves the others, for the same token, provider
//! configuration and keys only, never past `exp`; forged tokens are never stored; the table
//! has a fixed set of keys whatever is sent.
use super::*;

fn shared_config(slots: usize) -> Value {
    with(&base_config(), "shared_cache_size", json!(slots))
}

fn checks(h: &MemHost) -> i64 {
    h.metric("meshwall.jwt.signature_checks_host") + h.metric("meshwall.jwt.signature_checks_wasm")
}

#[test]
fn one_verification_serves_every_worker() {
    let h1 = MemHost::new();
    let h2 = h1.clone();
    let w1 = policy_with(&shared_config(64), &h1).unwrap();
    let w2 = policy_with(&shared_config(64), &h2).unwrap();
    let tok = sign("ES256", Some("es256"), &good_claims());
    let req = request("GET", "/admin/x", &[("authorization", &bearer(&tok))]);
    let first = upstream_headers(&req, &run(&w1, &h1, &req));
    assert_eq!(checks(&h1), 1);
    assert_eq!(h1.metric("meshwall.jwt.shared_cache_miss"), 1);
    // The other worker: no signature check, the same claim headers, the same rule verdict.
    let second = upstream_headers(&req, &run(&w2, &h2, &req));
    assert_eq!(checks(&h1), 1);
    assert_eq!(h1.metric("meshwall.jwt.shared_cache_hit"), 1);
    for name in ["x-user-id", "x-user-roles", "x-org-id", "x-jwt-payload"] {
        assert!(first.get(name).is_some(), "{name}");
        assert_eq!(first.get(name), second.get(name), "{name}");
    }
    // Then from its own LRU (no shared-data read).
    assert_allowed(&run(&w2, &h2, &req));
    assert_eq!(h1.metric("meshwall.jwt.shared_cache_hit"), 1);
    assert_eq!(h1.metric("meshwall.jwt.cache_hit"), 1);
    // Rule claims still decided from the shared entry.
    let reader = sign(
        "ES256",
        Some("es256"),
        &with(&good_claims(), "roles", json!(["dev"])),
    );
    assert_denied(
        &get(&w1, &h1, "/admin/x", &reader),
        403,
        "Jwt claims do not grant access",
    );
    assert_denied(
        &get(&w2, &h2, "/admin/x", &reader),
        403,
        "Jwt claims do not grant access",
    );
    assert_eq!(h1.metric("meshwall.jwt.shared_cache_hit"), 2);
}

#[test]
fn entries_expire_with_exp() {
    let h1 = MemHost::new();
    let h2 = h1.clone();
    let w1 = policy_with(&shared_config(64), &h1).unwrap();
    let w2 = policy_with(&shared_config(64), &h2).unwrap();
    let tok = sign(
        "RS256",
        Some("rsa"),
        &with(&good_claims(), "exp", json!(NOW + 10)),
    );
    assert_allowed(&get(&w1, &h1, "/api", &tok));
    h1.advance(std::time::Duration::from_secs(71)); // past exp + 60 s skew
    assert_denied(&get(&w2, &h2, "/api", &tok), 401, "Jwt is expired");
    assert_eq!(h1.metric("meshwall.jwt.shared_cache_hit"), 0);
}

#[test]
fn another_configuration_or_token_never_reads_the_entry() {
    let h1 = MemHost::new();
    let h2 = h1.clone();
    let w1 = policy_with(&shared_config(64), &h1).unwrap();
    let tok = sign("ES256", Some("es256"), &good_claims());
    assert_allowed(&get(&w1, &h1, "/api", &tok));
    // Same VM, same provider name, other keys (a reconfiguration): verified again, refused.
    let mut other = shared_config(64);
    other["providers"]["main"]["local_jwks"] =
        json!({"inline_jwks": {"keys": [rsa_jwk(&keys().rsa2_der, "rsa", None)]}});
    let w2 = policy_with(&other, &h2).unwrap();
    assert_denied(&get(&w2, &h2, "/api", &tok), 401, "Jwt key id is unknown");
    assert_eq!(h1.metric("meshwall.jwt.shared_cache_hit"), 0);
    // A token differing in one signature character is not the cached one.
    let forged = format!("{}A", &tok[..tok.len() - 1]);
    if forged != tok {
        let w3 = policy_with(&shared_config(64), &h2).unwrap();
        assert!(matches!(get(&w3, &h2, "/api", &forged), Action::Reply(_)));
        assert_eq!(h1.metric("meshwall.jwt.shared_cache_hit"), 0);
    }
}

#[test]
fn forged_tokens_never_write_and_the_table_stays_fixed() {
    let h = MemHost::new();
    let w = policy_with(&shared_config(16), &h).unwrap();
    let base = h.shared_key_count();
    let tok = sign("ES256", Some("es256"), &good_claims());
    let (hd, pl) = header_payload(&tok);
    for i in 0..50u8 {
        let forged = format!("{hd}.{pl}.{}", b64(&[i.max(1); 64]));
        assert!(matches!(get(&w, &h, "/api", &forged), Action::Reply(_)));
    }
    assert_eq!(
        h.shared_key_count(),
        base,
        "a refused token is never stored"
    );
    for i in 0..200 {
        let t = sign(
            "ES256",
            Some("es256"),
            &with(&good_claims(), "sub", json!(format!("u{i}"))),
        );
        assert_allowed(&get(&w, &h, "/api", &t));
    }
    assert!(
        h.shared_key_count() <= base + 16,
        "fixed slots, never one key per token"
    );
}

#[test]
fn shared_cache_size_is_bounded() {
    let e = policy_with(&shared_config(65_537), &MemHost::new())
        .err()
        .unwrap();
    assert_eq!(e.field, "shared_cache_size");
}

#[test]
fn verifier_and_table_settings_are_checked_at_configure_time() {
    let field = |cfg: Value, h: &MemHost| policy_with(&cfg, h).err().map(|e| e.field);
    let h = MemHost::new();
    assert_eq!(
        field(with(&base_config(), "verifier", json!("boringssl")), &h).as_deref(),
        Some("verifier")
    );
    assert_eq!(
        field(with(&base_config(), "shared_cache_size", json!(-1)), &h).as_deref(),
        Some("shared_cache_size")
    );
    // `host` on a host without `verify_signature`: refused, never a silent fallback.
    assert_eq!(
        field(with(&base_config(), "verifier", json!("host")), &h).as_deref(),
        Some("verifier")
    );
    let crypto = crate::hostcrypto::tests::crypto_host();
    assert!(policy_with(&with(&base_config(), "verifier", json!("host")), &crypto).is_ok());
    assert!(policy_with(&with(&base_config(), "shared_cache_size", json!(0)), &h).is_ok());
}
