//! Policy tests: table-driven, in-memory host (several "workers" share one store). The
//! shared helpers and the configuration tests live here; each class of behaviour has its own
//! sibling file.

use super::*;
use crate::config::JwtConfig;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jwt_simple::prelude::*;
use meshwall_core::{parse_config, Headers, MemHost};
use serde_json::json;
use std::sync::OnceLock;

const NOW: u64 = 1_767_225_600; // MemHost's clock
const HS_SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-hs";

struct TestKeys {
    rsa_der: Vec<u8>,
    rsa2_der: Vec<u8>,
    es256: ES256KeyPair,
    es384: ES384KeyPair,
    ed: Ed25519KeyPair,
}

fn keys() -> &'static TestKeys {
    static K: OnceLock<TestKeys> = OnceLock::new();
    K.get_or_init(|| TestKeys {
        rsa_der: RS256KeyPair::generate(2048).unwrap().to_der().unwrap(),
        rsa2_der: RS256KeyPair::generate(2048).unwrap().to_der().unwrap(),
        es256: ES256KeyPair::generate(),
        es384: ES384KeyPair::generate(),
        ed: Ed25519KeyPair::generate(),
    })
}

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

fn rsa_jwk(der: &[u8], kid: &str, alg: Option<&str>) -> Value {
    let c = RS256KeyPair::from_der(der)
        .unwrap()
        .public_key()
        .to_components();
    let mut v = json!({"kty":"RSA","n":b64(&c.n),"e":b64(&c.e),"kid":kid,"use":"sig"});
    if let Some(a) = alg {
        v["alg"] = json!(a);
    }
    v
}

fn ec_jwk(raw: &[u8], crv: &str, size: usize, kid: &str) -> Value {
    json!({"kty":"EC","crv":crv,"x":b64(&raw[1..1 + size]),"y":b64(&raw[1 + size..]),"kid":kid})
}

/// A JWKS with one key per family: `rsa` (no alg: RS*/PS*), `es256`, `es384`, `ed`, `hs`.
fn jwks() -> Value {
    let k = keys();
    json!({"keys":[
        rsa_jwk(&k.rsa_der, "rsa", None),
        ec_jwk(&k.es256.public_key().public_key().to_bytes_uncompressed(), "P-256", 32, "es256"),
        ec_jwk(&k.es384.public_key().public_key().to_bytes_uncompressed(), "P-384", 48, "es384"),
        {"kty":"OKP","crv":"Ed25519","x":b64(&k.ed.public_key().to_bytes()),"kid":"ed","alg":"EdDSA"},
        {"kty":"oct","k":b64(HS_SECRET),"kid":"hs"},
    ]})
}

fn good_claims() -> Value {
    json!({"iss":"https://issuer.example","aud":"api","sub":"alice","exp":NOW + 600,"iat":NOW,
           "roles":["admin","dev"],"scope":"orders:read orders:write","org":{"id":"acme","tier":3}})
}

fn claims_of(payload: &Value) -> JWTClaims<Value> {
    let mut c =
        Claims::with_custom_claims(payload.clone(), jwt_simple::prelude::Duration::from_secs(0));
    c.issued_at = None;
    c.expires_at = None;
    c.invalid_before = None;
    c
}

/// Signs `payload` with the test key for `alg` (header `{"alg","typ":"JWT","kid"}`).
fn sign(alg: &str, kid: Option<&str>, payload: &Value) -> String {
    let k = keys();
    let c = claims_of(payload);
    macro_rules! rsa {
        ($t:ty) => {{
            let mut kp = <$t>::from_der(&k.rsa_der).unwrap();
            if let Some(kid) = kid {
                kp = kp.with_key_id(kid);
            }
            kp.sign(c).unwrap()
        }};
    }
    macro_rules! with_kid {
        ($kp:expr) => {{
            let kp = $kp;
            match kid {
                Some(kid) => kp.with_key_id(kid).sign(c).unwrap(),
                None => kp.sign(c).unwrap(),
            }
        }};
    }
    macro_rules! hmac {
        ($t:ty) => {{
            let kp = <$t>::from_bytes(HS_SECRET);
            match kid {
                Some(kid) => kp.with_key_id(kid).authenticate(c).unwrap(),
                None => kp.authenticate(c).unwrap(),
            }
        }};
    }
    match alg {
        "RS256" => rsa!(RS256KeyPair),
        "RS384" => rsa!(RS384KeyPair),
        "RS512" => rsa!(RS512KeyPair),
        "PS256" => rsa!(PS256KeyPair),
        "PS384" => rsa!(PS384KeyPair),
        "PS512" => rsa!(PS512KeyPair),
        "ES256" => with_kid!(ES256KeyPair::from_bytes(&k.es256.to_bytes()).unwrap()),
        "ES384" => with_kid!(ES384KeyPair::from_bytes(&k.es384.to_bytes()).unwrap()),
        "EdDSA" => with_kid!(Ed25519KeyPair::from_bytes(&k.ed.to_bytes()).unwrap()),
        "HS256" => hmac!(HS256Key),
        "HS384" => hmac!(HS384Key),
        "HS512" => hmac!(HS512Key),
        other => panic!("no key for {other}"),
    }
}

/// An HS256 token with an arbitrary header and payload text, signed with `secret`.
fn raw_hs256(header: &str, payload: &str, secret: &[u8]) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let mac = hmac_sha256::HMAC::mac(input.as_bytes(), secret);
    format!("{input}.{}", b64(&mac))
}

fn kid_for(alg: &str) -> &'static str {
    match alg {
        "ES256" => "es256",
        "ES384" => "es384",
        "EdDSA" => "ed",
        a if a.starts_with("HS") => "hs",
        _ => "rsa",
    }
}

const ALGS: [&str; 12] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA", "HS256",
    "HS384", "HS512",
];

fn base_config() -> Value {
    json!({
        "providers": {"main": {
            "issuer": "https://issuer.example",
            "audiences": ["api", "other-api"],
            "local_jwks": {"inline_jwks": jwks()},
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
            {"match": {"prefix": "/orders/", "methods": ["POST", "DELETE"]}, "requires": {"provider_name": "main"},
             "claims": [{"name": "scope", "contains": "orders:write"}]},
            {"match": {"safe_regex": {"regex": "/tenants/[a-z]+/billing"}}, "requires": {"provider_name": "main"},
             "claims": [{"name": "org.tier", "equals": 3}, {"name": "roles", "contains_any": ["billing", "admin"]}]}
        ],
        "bypass_cors_preflight": true
    })
}

fn policy_with(cfg: &Value, host: &MemHost) -> Result<JwtPolicy, ConfigError> {
    let c: JwtConfig = parse_config(&serde_json::to_vec(cfg).unwrap())?;
    JwtPolicy::new(c, host)
}

fn policy(host: &MemHost) -> JwtPolicy {
    policy_with(&base_config(), host).unwrap()
}

fn request(method: &str, path: &str, headers: &[(&str, &str)]) -> Request {
    Request::new(method, path, headers)
}

fn bearer(tok: &str) -> String {
    format!("Bearer {tok}")
}

fn run(p: &JwtPolicy, h: &MemHost, req: &Request) -> Action {
    p.on_request_headers(&mut (), req, h)
}

fn get(p: &JwtPolicy, h: &MemHost, path: &str, tok: &str) -> Action {
    let auth = bearer(tok);
    run(
        p,
        h,
        &request("GET", path, &[("authorization", auth.as_str())]),
    )
}

/// The request headers the upstream would see.
fn upstream_headers(req: &Request, action: &Action) -> Headers {
    match action {
        Action::Continue(ops) => {
            let mut h = req.headers.clone();
            h.apply(ops);
            h
        }
        other => panic!("expected Continue, got {other:?}"),
    }
}

#[track_caller]
fn assert_denied(action: &Action, status: u16, detail: &str) {
    match action {
        Action::Reply(r) => {
            assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&r.body));
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(body["detail"], detail);
            assert_eq!(r.header("content-type"), Some("application/problem+json"));
        }
        other => panic!("expected a {status} reply, got {other:?}"),
    }
}

#[track_caller]
fn assert_allowed(action: &Action) {
    assert!(
        matches!(action, Action::Continue(_)),
        "expected Continue, got {action:?}"
    );
}

fn header_payload(tok: &str) -> (String, String) {
    let mut it = tok.split('.');
    (
        it.next().unwrap().to_string(),
        it.next().unwrap().to_string(),
    )
}

fn with(v: &Value, k: &str, x: Value) -> Value {
    let mut v = v.clone();
    v[k] = x;
    v
}

fn without(v: &Value, k: &str) -> Value {
    let mut v = v.clone();
    v.as_object_mut().unwrap().remove(k);
    v
}

// ---------------------------------------------------------------- configuration

#[test]
fn config_errors_name_the_field() {
    let jw = jwks();
    let cases: Vec<(Value, &str)> = vec![
        (json!({"providers": {}}), "providers"),
        (json!({"providers": {"m": {}}}), "providers.m.local_jwks"),
        (
            json!({"providers": {"m": {"local_jwks": {"inline_jwks": jw}, "remote_jwks": {"http_uri": {"uri": "http://h/j", "cluster": "c"}}}}}),
            "providers.m.local_jwks",
        ),
        (
            json!({"providers": {"m": {"local_jwks": {"inline_string": "{\"keys\":[{\"kty\":\"oct\",\"k\":\"c2hvcnQ\"}]}"}}}}),
            "providers.m.local_jwks.inline_string",
        ),
        (
            json!({"providers": {"m": {"local_jwks": {"inline_jwks": {"keys": [{"kty":"RSA","n":b64(&[0xc1; 200]),"e":"AQAB"}]}}}}}),
            "providers.m.local_jwks.inline_jwks.keys[0].n",
        ),
        (
            json!({"providers": {"m": {"local_jwks": {"inline_jwks": {"keys": [{"kty":"EC","crv":"P-521","x":"AA","y":"AA"}]}}}}}),
            "providers.m.local_jwks.inline_jwks.keys[0].crv",
        ),
        (
            json!({"providers": {"m": {"local_jwks": {"inline_jwks": {"keys": [{"kty":"XYZ"}]}}}}}),
            "providers.m.local_jwks.inline_jwks.keys[0].kty",
        ),
        (
            json!({"providers": {"m": {"local_jwks": {"inline_jwks": {"keys": []}}}}}),
            "providers.m.local_jwks.inline_jwks.keys",
        ),
        (
            json!({"providers": {"m": {"local_jwks": {"inline_jwks": []}}}}),
            "providers.m.local_jwks.inline_jwks",
        ),
        (
            json!({"providers": {"bad name": {"local_jwks": {"inline_jwks": jw}}}}),
            "providers.bad name",
        ),
        (
            json!({"providers": {"m": {"local_jwks": {"inline_jwks": jw}, "issuer": ""}}}),
            "providers.m.issuer",
        ),
        (
            json!({"providers": {"m": {"local_jwks": {"inline_jwks": jw}, "claim_to_headers": [{"header_name": "bad header", "claim_name": "sub"}]}}}),
            "providers.m.claim_to_headers[0].header_name",
        ),
        (
            json!({"providers": {"m": {"local_jwks": {"inline_jwks": jw}, "claim_to_headers": [{"header_name": "host", "claim_name": "sub"}]}}}),
            "providers.m.claim_to_headers[0].header_name",
        ),
        (
            json!({"providers": {"m": {"local_jwks": {"inline_jwks": jw}, "claim_to_headers": [{"header_name": "authorization", "claim_name": "sub"}]}}}),
            "providers.m.claim_to_headers[0].header_name",
        ),
        (
            json!({"providers": {"m": {"local_jwks": {"inline_jwks": jw}, "claim_to_headers": [{"header_name": "x-a", "claim_name": "a..b"}]}}}),
            "providers.m.claim_to_headers[0].claim_name",
        ),
        (
            json!({"providers": {"m": {"local_jwks": {"inline_jwks": jw}, "from_headers": [{"name": "x-tok"}], "forward_payload_header": "X-Tok"}}}),
            "providers.m.forward_payload_header",
        ),
        (
            json!({"providers": {"m": {"local_jwks": {"inline_jwks": jw}, "clock_skew_seconds": 100000}}}),
            "providers.m.clock_skew_seconds",
        ),
        (
            json!({"providers": {"m": {"local_jwks": {"inline_jwks": jw}, "subjects": [{"exact": "a", "prefix": "b"}]}}}),
            "providers.m.subjects[0]",
        ),
        (
            json!({"providers": {"m": {"remote_jwks": {"http_uri": {"uri": "ftp://h/j", "cluster": "c"}}}}}),
            "providers.m.remote_jwks.http_uri.uri",
        ),
        (
            json!({"providers": {"m": {"remote_jwks": {"http_uri": {"uri": "http://h/j", "cluster": "c", "timeout": "5"}}}}}),
            "providers.m.remote_jwks.http_uri.timeout",
        ),
        (
            json!({"providers": {"m": {"remote_jwks": {"http_uri": {"uri": "http://h/j", "cluster": "c"}, "cache_duration": "10ms"}}}}),
            "providers.m.remote_jwks.cache_duration",
        ),
        (
            json!({"providers": {"m": {"remote_jwks": {"http_uri": {"uri": "http://h/j", "cluster": "c"}, "refetch_min_interval": "1ms"}}}}),
            "providers.m.remote_jwks.refetch_min_interval",
        ),
        (
            json!({"providers": {"m": {"local_jwks": {"inline_jwks": jw}}}, "rules": [{"match": {"prefix": "x"}}]}),
            "rules[0].match.prefix",
        ),
        (
            json!({"providers": {"m": {"local_jwks": {"inline_jwks": jw}}}, "rules": [{"match": {"prefix": "/", "path": "/"}}]}),
            "rules[0].match",
        ),
        (
            json!({"providers": {"m": {"local_jwks": {"inline_jwks": jw}}}, "rules": [{"match": {"safe_regex": {"regex": "("}}}]}),
            "rules[0].match.safe_regex.regex",
        ),
        (
            json!({"providers": {"m": {"local_jwks": {"inline_jwks": jw}}}, "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "nope"}}]}),
            "rules[0].requires.provider_name",
        ),
        (
            json!({"providers": {"m": {"local_jwks": {"inline_jwks": jw}}}, "rules": [{"match": {"prefix": "/"}, "requires": {"requires_any": ["m", "x"]}}]}),
            "rules[0].requires.requires_any[1]",
        ),
        (
            json!({"providers": {"m": {"local_jwks": {"inline_jwks": jw}}}, "rules": [{"match": {"prefix": "/"}, "requires": {}}]}),
            "rules[0].requires",
        ),
        (
            json!({"providers": {"m": {"local_jwks": {"inline_jwks": jw}}}, "rules": [{"match": {"prefix": "/"}, "allow_missing": true}]}),
            "rules[0].allow_missing",
        ),
        (
            json!({"providers": {"m": {"local_jwks": {"inline_jwks": jw}}}, "rules": [{"match": {"prefix": "/"}, "claims": [{"name": "a", "contains": "b"}]}]}),
            "rules[0].claims[0]",
        ),
        (
            json!({"providers": {"m": {"local_jwks": {"inline_jwks": jw}}}, "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "m"}, "allow_missing": true, "claims": [{"name": "a", "contains": "b"}]}]}),
            "rules[0].claims[0]",
        ),
        (
            json!({"providers": {"m": {"local_jwks": {"inline_jwks": jw}}}, "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "m"}, "claims": [{"name": "a", "equals": {"x": 1}}]}]}),
            "rules[0].claims[0]",
        ),
        (
            json!({"providers": {"m": {"local_jwks": {"inline_jwks": jw}}}, "max_token_bytes": 0}),
            "max_token_bytes",
        ),
        (
            json!({"providers": {"m": {"local_jwks": {"inline_jwks": jw}}}, "realm": "a\"b"}),
            "realm",
        ),
        (
            json!({"providers": {"m": {"local_jwks": {"inline_jwks": jw}}}, "jwt_cache_size": 10000000}),
            "jwt_cache_size",
        ),
    ];
    for (cfg, field) in cases {
        let e = policy_with(&cfg, &MemHost::new())
            .err()
            .unwrap_or_else(|| panic!("accepted: {cfg}"));
        assert_eq!(e.field, field, "{cfg}: {e}");
    }
}

#[test]
fn inline_string_jwks_works() {
    let cfg = json!({"providers": {"m": {"local_jwks": {"inline_string": jwks().to_string()}}}});
    let h = MemHost::new();
    let p = policy_with(&cfg, &h).unwrap();
    assert_allowed(&get(
        &p,
        &h,
        "/",
        &sign("ES256", Some("es256"), &good_claims()),
    ));
    assert_eq!(p.tick_period(), None, "no remote JWKS: no tick");
}

#[test]
fn metric_names() {
    // One counter per decision, the reason as a label (`meshwall.jwt.denied.reason.expired`
    // is `meshwall_jwt_denied{reason="expired"}` in Prometheus), all defined at configure time.
    let h = MemHost::new();
    let _p = policy(&h);
    let mut want: Vec<String> = [
        "allowed",
        "cache_hit",
        "cache_miss",
        "jwks_fetch_ok",
        "jwks_fetch_failed",
        "signature_checks_host",
        "signature_checks_wasm",
        "shared_cache_hit",
        "shared_cache_miss",
    ]
    .iter()
    .map(|m| format!("meshwall.jwt.{m}"))
    .collect();
    // A gauge per algorithm: 1 when the host's crypto checks its signatures.
    want.extend(crate::jwks::ALL_ALGS.iter().map(|a| {
        format!(
            "meshwall.jwt.verifier_host_{}",
            format!("{a:?}").to_ascii_lowercase()
        )
    }));
    want.extend(
        Failure::ALL
            .iter()
            .map(|f| format!("meshwall.jwt.denied.reason.{}", f.metric())),
    );
    want.extend(
        meshwall_core::Ambiguity::REASONS
            .iter()
            .map(|r| format!("meshwall.jwt.ambiguous.reason.{r}")),
    );
    let mut names = h.metric_names();
    names.sort();
    want.sort();
    assert_eq!(names, want);
    for n in [
        "meshwall.jwt.denied.reason.missing",
        "meshwall.jwt.denied.reason.expired",
        "meshwall.jwt.denied.reason.jwks_unavailable",
        "meshwall.jwt.denied.reason.forbidden",
    ] {
        assert!(names.iter().any(|x| x == n), "{n}");
    }
}

#[path = "policy_attack_tests.rs"]
mod attacks;
// The same attack suite again, with the host's crypto checking signatures.
#[allow(clippy::duplicate_mod)]
#[path = "policy_attack_tests.rs"]
mod attacks_host;
#[path = "policy_canon_tests.rs"]
mod canon;
#[path = "policy_cost_tests.rs"]
mod cost;
#[path = "policy_remote_tests.rs"]
mod remote;
#[path = "policy_route_tests.rs"]
mod routes;
#[path = "policy_shared_tests.rs"]
mod shared;
