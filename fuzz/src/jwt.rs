//! JWT: token parsing and verification through `JwtPolicy` (header, payload, signature), and
//! JWKS documents through `meshwall_jwt::jwks::parse_jwks`.

use crate::{admitted, build, send_checked};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jwt_simple::prelude::*;
use meshwall_core::{MemHost, Request};
use meshwall_jwt::JwtPolicy;
use serde_json::{json, Value};
use std::sync::OnceLock;

pub const HS_SECRET: &[u8] = b"fuzz-secret-0123456789abcdef-0123456789";
pub const ISSUER: &str = "https://issuer.example";

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

/// The ES256 key of the fuzz configuration (generated once per process).
pub fn es256() -> &'static ES256KeyPair {
    static K: OnceLock<ES256KeyPair> = OnceLock::new();
    K.get_or_init(ES256KeyPair::generate)
}

/// A configuration like the tests' (`policy_tests.rs`): one provider with an HMAC key and an
/// ES256 key, claim headers, and rules with claim requirements.
pub fn config() -> Value {
    let raw = es256().public_key().public_key().to_bytes_uncompressed();
    let ec = json!({"kty":"EC","crv":"P-256","x":b64(&raw[1..33]),"y":b64(&raw[33..]),"kid":"es256"});
    json!({
        "providers": {"main": {
            "issuer": ISSUER,
            "audiences": ["api"],
            "local_jwks": {"inline_jwks": {"keys": [{"kty":"oct","k":b64(HS_SECRET),"kid":"hs"}, ec]}},
            "from_params": ["access_token"],
            "from_cookies": ["jwt"],
            "claim_to_headers": [
                {"header_name": "x-user-id", "claim_name": "sub"},
                {"header_name": "x-user-roles", "claim_name": "roles"},
                {"header_name": "x-org-id", "claim_name": "org.id"}
            ],
            "forward_payload_header": "x-jwt-payload"
        }},
        "rules": [
            {"match": {"path": "/healthz"}},
            {"match": {"prefix": "/public/"}, "requires": {"provider_name": "main"}, "allow_missing": true},
            {"match": {"prefix": "/admin/"}, "requires": {"provider_name": "main"},
             "claims": [{"name": "roles", "contains": "admin"}]},
            {"match": {"prefix": "/"}, "requires": {"provider_name": "main"}}
        ]
    })
}

fn policy(host: &MemHost) -> JwtPolicy {
    crate::must_build::<JwtPolicy>(config().to_string().as_bytes(), host)
}

/// `header.payload` signed with the HMAC key (HS256).
pub fn sign_hs256(header: &[u8], payload: &[u8]) -> String {
    let input = format!("{}.{}", b64(header), b64(payload));
    let mac = hmac_sha256::HMAC::mac(input.as_bytes(), HS_SECRET);
    format!("{input}.{}", b64(&mac))
}

/// Independent check of a token the policy admitted: its signature must verify with one of
/// the configured keys (HS256 recomputed here; HS384/HS512 and ES256 through jwt-simple, with
/// every time check relaxed: only the signature counts).
fn signature_verifies(token: &str) -> bool {
    let mut parts = token.rsplitn(2, '.');
    let (Some(sig), Some(input)) = (parts.next(), parts.next()) else {
        return false;
    };
    if URL_SAFE_NO_PAD.decode(sig).ok() == Some(hmac_sha256::HMAC::mac(input.as_bytes(), HS_SECRET).to_vec()) {
        return true;
    }
    let opts = || {
        Some(VerificationOptions {
            time_tolerance: Some(jwt_simple::prelude::Duration::from_days(36_500)),
            accept_future: true,
            ..Default::default()
        })
    };
    HS384Key::from_bytes(HS_SECRET).verify_token::<Value>(token, opts()).is_ok()
        || HS512Key::from_bytes(HS_SECRET).verify_token::<Value>(token, opts()).is_ok()
        || es256().public_key().verify_token::<Value>(token, opts()).is_ok()
}

/// The claims of a payload the policy admitted on `/admin/`: issuer, audience and the admin
/// role as configured.
fn claims_hold(payload: &Value) -> bool {
    let iss_ok = payload.get("iss") == Some(&json!(ISSUER));
    let aud_ok = match payload.get("aud") {
        Some(Value::String(a)) => a == "api",
        Some(Value::Array(a)) => a.iter().any(|x| x == "api"),
        _ => false,
    };
    let roles_ok = match payload.get("roles") {
        Some(Value::String(r)) => r.split(' ').any(|x| x == "admin"),
        Some(Value::Array(a)) => a.iter().any(|x| x == "admin"),
        _ => false,
    };
    iss_ok && aud_ok && roles_ok
}

/// `jwt_token`: the first byte picks the mode.
/// - 0..=127: the rest is a raw token, presented as a bearer token, a query parameter or a
///   cookie on a protected path. Admitted ⇒ its signature verifies independently.
/// - 128..: the rest is `header JSON` 0x00 `payload JSON`, signed here with the HMAC key, so
///   the claim checks run. Admitted on `/admin/` ⇒ issuer, audience and role hold.
pub fn token(data: &[u8]) {
    thread_local! {
        static P: (MemHost, JwtPolicy) = { let h = MemHost::new(); let p = policy(&h); (h, p) };
    }
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    P.with(|(host, p)| {
        if mode < 128 {
            let tok = String::from_utf8_lossy(rest);
            let tok = tok.as_ref();
            let r = match mode % 4 {
                0 => Request::new("GET", "/orders/1", &[("authorization", &format!("Bearer {tok}"))]),
                1 => Request::new("GET", &format!("/orders/1?access_token={tok}"), &[]),
                2 => Request::new("GET", "/orders/1", &[("cookie", &format!("jwt={tok}"))]),
                _ => Request::new("GET", "/public/x", &[("Authorization", tok)]),
            };
            let s = send_checked(p, host, &r, None);
            if admitted(&s) && mode % 4 != 3 {
                assert!(signature_verifies(tok), "admitted a token whose signature does not verify: {tok:?}");
            }
        } else {
            let (header, payload) = match rest.iter().position(|&b| b == 0) {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, &b"{}"[..]),
            };
            let tok = sign_hs256(header, payload);
            let r = Request::new("GET", "/admin/x", &[("authorization", &format!("Bearer {tok}"))]);
            let s = send_checked(p, host, &r, None);
            if admitted(&s) {
                let v: Value = serde_json::from_slice(payload).unwrap_or(Value::Null);
                assert!(claims_hold(&v), "admitted /admin/ with claims {v}");
                let up = s.upstream.as_ref().map(|u| &u.headers);
                assert!(up.is_some_and(|h| h.get("x-jwt-payload").is_some()), "payload header missing");
            }
        }
    });
}

/// `jwt_jwks`: the input is a JWKS document; parsed strictly and leniently, then as the inline
/// JWKS of a provider (the policy refuses or builds, never panics); every key parsed is tried
/// against a fixed HS256 token.
pub fn jwks(data: &[u8]) {
    let tok = sign_hs256(br#"{"alg":"HS256","typ":"JWT"}"#, br#"{"sub":"a"}"#);
    for strict in [true, false] {
        if let Ok((set, _errors)) = meshwall_jwt::jwks::parse_jwks(data, strict) {
            if let Ok(d) = meshwall_jwt::token::decode(&tok, 8192) {
                if let Ok(keys) = meshwall_jwt::token::candidate_keys(&set, &d) {
                    for k in keys {
                        let _ = meshwall_jwt::token::verify_with(k, &d, 0, 0, 8192);
                    }
                }
            }
        }
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let cfg = json!({"providers": {"m": {"local_jwks": {"inline_string": text}}},
                     "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "m"}}]});
    let host = MemHost::new();
    if let Some(p) = build::<JwtPolicy>(cfg.to_string().as_bytes(), &host) {
        let r = Request::new("GET", "/x", &[("authorization", &format!("Bearer {tok}"))]);
        let s = send_checked(&p, &host, &r, None);
        if admitted(&s) {
            // Only a document holding the fuzz secret as an oct key can admit this token.
            let holds_secret = meshwall_jwt::jwks::parse_jwks(data, false).is_ok_and(|(set, _)| {
                set.keys.iter().any(|k| {
                    matches!(&k.material, meshwall_jwt::jwks::Material::Hmac(s) if s == HS_SECRET)
                })
            });
            assert!(holds_secret, "admitted with a JWKS without the key: {text}");
        }
    }
}
