//! The suite as a spec: the four policies in one pass, in their documented order.

use super::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use meshwall_core::{parse_config, send, MemHost, Sent};
use serde_json::{json, Value};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-suite";
const NOW: u64 = 1_767_225_600; // MemHost's clock

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

/// An HS256 token for `sub`, valid for an hour.
fn token(sub: &str) -> String {
    let head = b64(br#"{"alg":"HS256","typ":"JWT","kid":"k"}"#);
    let body = b64(
        json!({"iss":"https://idp.example","sub":sub,"exp":NOW + 3600})
            .to_string()
            .as_bytes(),
    );
    let input = format!("{head}.{body}");
    let sig = hmac_sha256::HMAC::mac(input.as_bytes(), SECRET);
    format!("{input}.{}", b64(&sig))
}

fn config() -> Value {
    json!({
        "headers": {"request_headers_to_remove": ["x-internal-debug"]},
        "jwt": {
            "providers": {"idp": {
                "issuer": "https://idp.example",
                "local_jwks": {"inline_jwks": {"keys": [{"kty": "oct", "kid": "k", "k": b64(SECRET)}]}},
                "claim_to_headers": [{"header_name": "x-user-id", "claim_name": "sub"}]
            }},
            "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "idp"}}]
        },
        "ratelimit": {"rules": [{
            "name": "per-user",
            "key": [{"request_headers": {"header_name": "x-user-id"}}],
            "token_bucket": {"max_tokens": 2, "tokens_per_fill": 1, "fill_interval": "1h"},
            "on_missing_key": "skip"
        }]},
        "validate": {"spec": {
            "openapi": "3.1.0", "info": {"title": "t", "version": "1"},
            "paths": {"/pets": {"post": {
                "requestBody": {"required": true, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}
                }}}},
                "responses": {"201": {"description": "ok"}}
            }, "get": {"responses": {"200": {"description": "ok"}}}}}
        }}
    })
}

fn suite(cfg: &Value) -> (SuitePolicy, MemHost) {
    let host = MemHost::new();
    let c: SuiteConfig = parse_config(cfg.to_string().as_bytes()).unwrap();
    (SuitePolicy::new(c, &host).unwrap(), host)
}

fn ok() -> Response {
    Response {
        status: 200,
        headers: Headers::from_pairs([
            ("server", "gunicorn"),
            ("content-type", "application/json"),
        ]),
    }
}

fn get(p: &SuitePolicy, host: &MemHost, headers: &[(&str, &str)]) -> Sent {
    send(
        p,
        host,
        &Request::new("GET", "/pets", headers),
        None,
        None,
        &ok(),
    )
}

#[test]
fn every_policy_runs_in_one_pass() {
    let (p, host) = suite(&config());
    assert_eq!(p.enabled(), ["headers", "jwt", "ratelimit", "validate"]);
    let auth = format!("Bearer {}", token("alice"));
    let s = get(
        &p,
        &host,
        &[("authorization", &auth), ("x-internal-debug", "1")],
    );
    assert_eq!(s.status, 200);
    let up = s.upstream.clone().unwrap();
    assert_eq!(
        up.headers.get("x-user-id"),
        Some("alice"),
        "jwt's claim header"
    );
    assert!(
        !up.headers.contains("x-internal-debug"),
        "headers' request cleanup"
    );
    assert!(
        !up.headers.contains("authorization"),
        "jwt removes the token"
    );
    assert_eq!(s.header("server"), None, "headers' response cleanup");
    assert_eq!(s.header("x-content-type-options"), Some("nosniff"));
    assert!(
        s.header("ratelimit").is_some(),
        "ratelimit's headers on the response"
    );
}

#[test]
fn ratelimit_keys_on_the_identity_jwt_wrote() {
    let (p, host) = suite(&config());
    let alice = format!("Bearer {}", token("alice"));
    let bob = format!("Bearer {}", token("bob"));
    let statuses: Vec<u16> = (0..3)
        .map(|_| get(&p, &host, &[("authorization", &alice)]).status)
        .collect();
    assert_eq!(statuses, [200, 200, 429]);
    assert_eq!(
        get(&p, &host, &[("authorization", &bob)]).status,
        200,
        "bob has his own bucket"
    );
    // A client cannot pick its bucket: its own x-user-id is replaced by the verified one.
    let spoof = get(
        &p,
        &host,
        &[("authorization", &alice), ("x-user-id", "carol")],
    );
    assert_eq!(spoof.status, 429);
}

#[test]
fn local_replies_end_the_request_and_are_cleaned_by_headers() {
    let (p, host) = suite(&config());
    let s = get(&p, &host, &[]);
    assert_eq!(s.status, 401);
    assert!(s.upstream.is_none());
    assert_eq!(
        s.header("x-content-type-options"),
        Some("nosniff"),
        "headers cleans jwt's reply"
    );
    assert!(s.header("www-authenticate").is_some());
}

#[test]
fn the_body_is_checked_before_anything_reaches_the_upstream() {
    let (p, host) = suite(&config());
    let auth = format!("Bearer {}", token("alice"));
    let req = Request::new(
        "POST",
        "/pets",
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
    );
    let s = send(&p, &host, &req, Some(br#"{"name": 5}"#), None, &ok());
    assert_eq!(s.status, 400);
    assert!(
        s.upstream.is_none(),
        "held headers: the upstream saw nothing"
    );
    assert_eq!(s.header("x-frame-options"), Some("DENY"));
    let s = send(&p, &host, &req, Some(br#"{"name": "rex"}"#), None, &ok());
    assert_eq!(s.status, 200);
    assert_eq!(s.upstream.unwrap().headers.get("x-user-id"), Some("alice"));
}

#[test]
fn sections_are_optional_and_errors_name_the_section() {
    let (p, _) = suite(&json!({"headers": {}}));
    assert_eq!(p.enabled(), ["headers"]);
    assert!(!p.uses_request(), "headers alone never reads requests");
    let (p, _) = suite(&json!({}));
    assert!(p.enabled().is_empty());
    for (cfg, field) in [
        (json!({"jwt": {"bogus": 1}}), "jwt.bogus"),
        (
            json!({"ratelimit": {"rules": [{"name": "x"}]}}),
            "ratelimit.rules[0]",
        ),
        (json!({"firewall": {}}), "firewall"),
        (
            json!({"validate": {"max_errors": "ten"}}),
            "validate.max_errors",
        ),
    ] {
        let e = parse_config::<SuiteConfig>(cfg.to_string().as_bytes())
            .err()
            .unwrap();
        assert!(
            e.field.starts_with(field) || e.to_string().contains(field),
            "{cfg}: {e}"
        );
    }
    // Two sections that do not go together.
    let both = json!({"cors": {"default": {"allow_origin_string_match": [{"exact": "https://app.example"}]}},
        "jwt": {"providers": {}, "bypass_cors_preflight": true}});
    let c: SuiteConfig = parse_config(both.to_string().as_bytes()).unwrap();
    let e = SuitePolicy::new(c, &MemHost::new()).err().unwrap();
    assert_eq!(e.field, "jwt.bypass_cors_preflight");
    // Errors from a policy's own checks name its section too.
    let bad = json!({"ratelimit": {"rules": [{"name": "x", "key": [{"generic_key": {"descriptor_value": "a"}}],
        "token_bucket": {"max_tokens": 0, "fill_interval": "1s"}}]}});
    let c: SuiteConfig = parse_config(bad.to_string().as_bytes()).unwrap();
    let e = SuitePolicy::new(c, &MemHost::new()).err().unwrap();
    assert!(e.field.starts_with("ratelimit.rules[0]"), "{e}");
}

#[test]
fn access_and_cors_decide_before_any_token_is_checked() {
    let mut cfg = config();
    cfg["access"] = json!({"deny": ["203.0.113.0/24"]});
    cfg["cors"] = json!({"default": {"allow_origin_string_match": [{"exact": "https://app.example"}],
        "allow_methods": "GET,POST", "allow_headers": "authorization,content-type"}});
    let (p, host) = suite(&cfg);
    assert_eq!(
        p.enabled(),
        ["headers", "access", "cors", "jwt", "ratelimit", "validate"]
    );
    let from = |ip: &str, method: &str, headers: &[(&str, &str)]| {
        let req = Request {
            client_ip: Some(ip.into()),
            ..Request::new(method, "/pets", headers)
        };
        send(&p, &host, &req, None, None, &ok())
    };
    let denied = from("203.0.113.9", "GET", &[]);
    assert_eq!(
        denied.status, 403,
        "access turns the address away before jwt asks for a token"
    );
    assert_eq!(denied.header("x-content-type-options"), Some("nosniff"));
    let preflight = [
        ("origin", "https://app.example"),
        ("access-control-request-method", "POST"),
    ];
    let s = from("198.51.100.1", "OPTIONS", &preflight);
    assert_eq!(
        s.status, 204,
        "cors answers an allowed preflight without a token"
    );
    assert_eq!(
        s.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert!(s.upstream.is_none());
    let other = [
        ("origin", "https://evil.example"),
        ("access-control-request-method", "POST"),
    ];
    assert_eq!(
        from("198.51.100.1", "OPTIONS", &other).status,
        401,
        "a disallowed preflight needs a token"
    );
    let auth = format!("Bearer {}", token("alice"));
    let s = from(
        "198.51.100.1",
        "GET",
        &[("authorization", &auth), ("origin", "https://app.example")],
    );
    assert_eq!(s.status, 200);
    assert_eq!(
        s.header("access-control-allow-origin"),
        Some("https://app.example")
    );
}

#[test]
fn apikey_consumers_get_their_own_quota() {
    let digest = |k: &str| {
        let h = hmac_sha256::Hash::hash(k.as_bytes());
        format!(
            "sha256:{}",
            h.iter().map(|b| format!("{b:02x}")).collect::<String>()
        )
    };
    let cfg = json!({
        "apikey": {"consumers": [
            {"name": "mobile", "keys": [digest("k-mobile-0123456789")]},
            {"name": "batch", "keys": [digest("k-batch-0123456789")]}
        ]},
        "ratelimit": {"rules": [{
            "name": "per-consumer",
            "key": [{"request_headers": {"header_name": "x-consumer-name"}}],
            "token_bucket": {"max_tokens": 2, "tokens_per_fill": 2, "fill_interval": "24h"},
            "on_missing_key": "skip"
        }]}
    });
    let (p, host) = suite(&cfg);
    assert_eq!(p.enabled(), ["apikey", "ratelimit"]);
    let key = |k: &str, spoof: &str| {
        get(&p, &host, &[("x-api-key", k), ("x-consumer-name", spoof)]).status
    };
    assert_eq!(key("k-mobile-0123456789", "batch"), 200);
    assert_eq!(key("k-mobile-0123456789", "batch"), 200);
    assert_eq!(
        key("k-mobile-0123456789", "batch"),
        429,
        "mobile's quota, whatever it claims"
    );
    assert_eq!(
        key("k-batch-0123456789", "mobile"),
        200,
        "batch has its own"
    );
    assert_eq!(key("nope", "batch"), 401);
}
