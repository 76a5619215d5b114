//! Policy tests: table-driven, in-memory host (several "workers" share one store).

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
            "rules[0].match",
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

// ---------------------------------------------------------------- algorithms

#[test]
fn every_algorithm_verifies() {
    let h = MemHost::new();
    let p = policy(&h);
    for alg in ALGS {
        let tok = sign(alg, Some(kid_for(alg)), &good_claims());
        assert_allowed(&get(&p, &h, "/api", &tok));
        // Without kid: the key is chosen by type.
        let tok = sign(alg, None, &good_claims());
        assert_allowed(&get(&p, &h, "/api", &tok));
    }
    assert_eq!(h.metric("meshwall.jwt.allowed"), 24);
}

#[test]
fn key_alg_must_equal_token_alg() {
    let k = keys();
    let cfg = json!({"providers": {"m": {"local_jwks": {"inline_jwks": {"keys": [rsa_jwk(&k.rsa_der, "r", Some("RS256"))]}}}}});
    let h = MemHost::new();
    let p = policy_with(&cfg, &h).unwrap();
    assert_allowed(&get(&p, &h, "/", &sign("RS256", Some("r"), &good_claims())));
    assert_denied(
        &get(&p, &h, "/", &sign("PS256", Some("r"), &good_claims())),
        401,
        "no key fits the Jwt algorithm",
    );
    assert_denied(
        &get(&p, &h, "/", &sign("RS512", None, &good_claims())),
        401,
        "no key fits the Jwt algorithm",
    );
}

// ---------------------------------------------------------------- attacks (RFC 8725, CVEs)

fn header_payload(tok: &str) -> (String, String) {
    let mut it = tok.split('.');
    (
        it.next().unwrap().to_string(),
        it.next().unwrap().to_string(),
    )
}

#[test]
fn attacks_are_refused() {
    let h = MemHost::new();
    let p = policy(&h);
    let claims = good_claims();
    let cl = claims.to_string();
    let es = sign("ES256", Some("es256"), &claims);
    let (es_h, es_p) = header_payload(&es);
    let es_sig = URL_SAFE_NO_PAD
        .decode(es.split('.').nth(2).unwrap())
        .unwrap();
    let rs = sign("RS256", Some("rsa"), &claims);
    let rsa_pem = RS256KeyPair::from_der(&keys().rsa_der)
        .unwrap()
        .public_key()
        .to_pem()
        .unwrap();
    let rsa_der_pub = RS256KeyPair::from_der(&keys().rsa_der)
        .unwrap()
        .public_key()
        .to_der()
        .unwrap();
    let other_rsa = {
        let kp = RS256KeyPair::from_der(&keys().rsa2_der)
            .unwrap()
            .with_key_id("rsa");
        kp.sign(claims_of(&claims)).unwrap()
    };
    let n256 = hex_bytes("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551");
    let der_sig = {
        let (r, s) = es_sig.split_at(32);
        der_ecdsa(r, s)
    };
    let mut deep = String::from(
        "{\"iss\":\"https://issuer.example\",\"aud\":\"api\",\"exp\":9999999999,\"x\":",
    );
    deep.push_str(&"[".repeat(100));
    deep.push_str(&"]".repeat(100));
    deep.push('}');
    let mut tampered_payload = claims.clone();
    tampered_payload["sub"] = json!("mallory");
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "alg none, empty signature",
            format!(
                "{}.{}.",
                b64(br#"{"alg":"none","typ":"JWT"}"#),
                b64(cl.as_bytes())
            ),
            "Jwt is not a well-formed compact JWS",
        ),
        (
            "alg None",
            format!(
                "{}.{}.{}",
                b64(br#"{"alg":"None"}"#),
                b64(cl.as_bytes()),
                b64(&[0; 32])
            ),
            "Jwt algorithm is not allowed",
        ),
        (
            "alg NONE",
            format!(
                "{}.{}.{}",
                b64(br#"{"alg":"NONE","kid":"hs"}"#),
                b64(cl.as_bytes()),
                b64(&[0; 32])
            ),
            "Jwt algorithm is not allowed",
        ),
        (
            "alg nOnE",
            raw_hs256(r#"{"alg":"nOnE"}"#, &cl, HS_SECRET),
            "Jwt algorithm is not allowed",
        ),
        (
            "HS/RS confusion: PEM public key as secret",
            raw_hs256(r#"{"alg":"HS256","kid":"rsa"}"#, &cl, rsa_pem.as_bytes()),
            "no key fits the Jwt algorithm",
        ),
        (
            "HS/RS confusion: DER public key as secret",
            raw_hs256(r#"{"alg":"HS256","kid":"rsa"}"#, &cl, &rsa_der_pub),
            "no key fits the Jwt algorithm",
        ),
        (
            "HS token naming the EC key",
            raw_hs256(r#"{"alg":"HS256","kid":"es256"}"#, &cl, HS_SECRET),
            "no key fits the Jwt algorithm",
        ),
        (
            "unknown kid, valid HS secret",
            raw_hs256(r#"{"alg":"HS256","kid":"nope"}"#, &cl, HS_SECRET),
            "Jwt key id is unknown",
        ),
        (
            "kid path traversal",
            raw_hs256(r#"{"alg":"HS256","kid":"../../../../dev/null"}"#, &cl, b""),
            "Jwt key id is unknown",
        ),
        (
            "kid SQL injection",
            raw_hs256(
                r#"{"alg":"HS256","kid":"x' UNION SELECT 'key"}"#,
                &cl,
                b"key",
            ),
            "Jwt key id is unknown",
        ),
        (
            "kid empty",
            raw_hs256(r#"{"alg":"HS256","kid":""}"#, &cl, HS_SECRET),
            "Jwt key id is unknown",
        ),
        (
            "embedded jwk",
            raw_hs256(
                &format!(
                    r#"{{"alg":"HS256","jwk":{{"kty":"oct","k":"{}"}}}}"#,
                    b64(b"attacker-secret-attacker-secret!!")
                ),
                &cl,
                b"attacker-secret-attacker-secret!!",
            ),
            "Jwt verification fails",
        ),
        (
            "jku",
            raw_hs256(
                r#"{"alg":"HS256","jku":"https://evil.example/jwks"}"#,
                &cl,
                b"attacker-secret-attacker-secret!!",
            ),
            "Jwt verification fails",
        ),
        (
            "x5u",
            raw_hs256(
                r#"{"alg":"HS256","x5u":"https://evil.example/cert"}"#,
                &cl,
                b"attacker-secret-attacker-secret!!",
            ),
            "Jwt verification fails",
        ),
        (
            "crit unknown",
            raw_hs256(
                r#"{"alg":"HS256","kid":"hs","crit":["exp"],"exp":1}"#,
                &cl,
                HS_SECRET,
            ),
            "Jwt header is not acceptable",
        ),
        (
            "b64 false",
            raw_hs256(
                r#"{"alg":"HS256","kid":"hs","b64":false,"crit":["b64"]}"#,
                &cl,
                HS_SECRET,
            ),
            "Jwt header is not acceptable",
        ),
        (
            "duplicate alg in header",
            raw_hs256(
                r#"{"alg":"HS256","kid":"hs","alg":"HS256"}"#,
                &cl,
                HS_SECRET,
            ),
            "Jwt header is not acceptable",
        ),
        (
            "duplicate claim",
            raw_hs256(
                r#"{"alg":"HS256","kid":"hs"}"#,
                &format!(
                    r#"{{"iss":"https://issuer.example","aud":"api","exp":{},"sub":"alice","sub":"admin"}}"#,
                    NOW + 60
                ),
                HS_SECRET,
            ),
            "Jwt claims are malformed",
        ),
        (
            "payload array",
            raw_hs256(r#"{"alg":"HS256","kid":"hs"}"#, "[1,2]", HS_SECRET),
            "Jwt claims are malformed",
        ),
        (
            "payload not JSON",
            raw_hs256(r#"{"alg":"HS256","kid":"hs"}"#, "hello", HS_SECRET),
            "Jwt claims are malformed",
        ),
        (
            "header not an object",
            raw_hs256(r#""HS256""#, &cl, HS_SECRET),
            "Jwt header is not acceptable",
        ),
        (
            "deeply nested",
            raw_hs256(r#"{"alg":"HS256","kid":"hs"}"#, &deep, HS_SECRET),
            "Jwt claims are malformed",
        ),
        (
            "expired",
            sign(
                "ES256",
                Some("es256"),
                &with(&claims, "exp", json!(NOW - 61)),
            ),
            "Jwt is expired",
        ),
        (
            "nbf in future",
            sign(
                "ES256",
                Some("es256"),
                &with(&claims, "nbf", json!(NOW + 120)),
            ),
            "Jwt not yet valid",
        ),
        (
            "iat in future",
            sign(
                "ES256",
                Some("es256"),
                &with(&claims, "iat", json!(NOW + 120)),
            ),
            "Jwt issued in the future",
        ),
        (
            "missing exp",
            sign("ES256", Some("es256"), &without(&claims, "exp")),
            "Jwt has no expiration",
        ),
        (
            "wrong iss",
            sign(
                "ES256",
                Some("es256"),
                &with(&claims, "iss", json!("https://evil.example")),
            ),
            "Jwt issuer is not configured",
        ),
        (
            "wrong aud",
            sign(
                "ES256",
                Some("es256"),
                &with(&claims, "aud", json!("other")),
            ),
            "Audiences in Jwt are not allowed",
        ),
        (
            "empty aud array",
            sign("ES256", Some("es256"), &with(&claims, "aud", json!([]))),
            "Audiences in Jwt are not allowed",
        ),
        (
            "exp as string",
            sign(
                "ES256",
                Some("es256"),
                &with(&claims, "exp", json!("9999999999")),
            ),
            "Jwt claims are malformed",
        ),
        (
            "aud as number",
            sign("ES256", Some("es256"), &with(&claims, "aud", json!(5))),
            "Jwt claims are malformed",
        ),
        (
            "sub as object",
            sign(
                "ES256",
                Some("es256"),
                &with(&claims, "sub", json!({"id": 1})),
            ),
            "Jwt claims are malformed",
        ),
        (
            "stripped signature",
            format!("{es_h}.{es_p}."),
            "Jwt is not a well-formed compact JWS",
        ),
        (
            "no signature segment",
            format!("{es_h}.{es_p}"),
            "Jwt is not a well-formed compact JWS",
        ),
        (
            "appended segment",
            format!("{es}.{}", b64(b"x")),
            "Jwt is not a well-formed compact JWS",
        ),
        (
            "appended signature bytes",
            format!("{es_h}.{es_p}.{}", b64(&[es_sig.as_slice(), &[0]].concat())),
            "Jwt verification fails",
        ),
        (
            "truncated signature",
            format!("{es_h}.{es_p}.{}", b64(&es_sig[..63])),
            "Jwt verification fails",
        ),
        (
            "padded base64",
            format!("{es_h}.{es_p}.{}=", es.split('.').nth(2).unwrap()),
            "Jwt is not a well-formed compact JWS",
        ),
        (
            "padded header",
            format!("{}=.{es_p}.{}", es_h, b64(&es_sig)),
            "Jwt is not a well-formed compact JWS",
        ),
        (
            "standard base64 alphabet",
            format!(
                "{es_h}.{es_p}.{}",
                base64::engine::general_purpose::STANDARD_NO_PAD
                    .encode(&es_sig)
                    .replace('-', "+")
            ),
            if base64::engine::general_purpose::STANDARD_NO_PAD
                .encode(&es_sig)
                .contains(['+', '/'])
            {
                "Jwt is not a well-formed compact JWS"
            } else {
                ""
            },
        ),
        (
            "re-encoded signature (non-canonical trailing bits)",
            noncanonical(&es),
            "Jwt is not a well-formed compact JWS",
        ),
        (
            "ECDSA all-zero signature (CVE-2022-21449)",
            format!("{es_h}.{es_p}.{}", b64(&[0; 64])),
            "Jwt verification fails",
        ),
        (
            "ECDSA r=s=n (CVE-2022-21449)",
            format!(
                "{es_h}.{es_p}.{}",
                b64(&[n256.as_slice(), n256.as_slice()].concat())
            ),
            "Jwt verification fails",
        ),
        (
            "ECDSA DER signature",
            format!("{es_h}.{es_p}.{}", b64(&der_sig)),
            "Jwt verification fails",
        ),
        (
            "payload swapped under a valid signature",
            format!(
                "{es_h}.{}.{}",
                b64(tampered_payload.to_string().as_bytes()),
                b64(&es_sig)
            ),
            "Jwt verification fails",
        ),
        (
            "signed by another RSA key with our kid",
            other_rsa,
            "Jwt verification fails",
        ),
        (
            "RS token with ES signature",
            format!(
                "{}.{}.{}",
                header_payload(&rs).0,
                header_payload(&rs).1,
                b64(&es_sig)
            ),
            "Jwt verification fails",
        ),
        (
            "JWE (5 segments)",
            format!("{}.a.b.c.d", b64(br#"{"alg":"RSA-OAEP","enc":"A256GCM"}"#)),
            "Jwt is not a well-formed compact JWS",
        ),
        (
            "oversized",
            format!("{}.{}.{}", es_h, "A".repeat(9000), b64(&es_sig)),
            "Jwt is too large",
        ),
        (
            "garbage",
            "not-a-jwt".to_string(),
            "Jwt is not a well-formed compact JWS",
        ),
        (
            "empty bearer",
            "".to_string(),
            "Jwt is not a well-formed compact JWS",
        ),
    ];
    for (name, tok, detail) in cases {
        if detail.is_empty() {
            continue;
        }
        let a = get(&p, &h, "/api", &tok);
        match &a {
            Action::Reply(r) => {
                assert_eq!(r.status, 401, "{name}");
                let body: Value = serde_json::from_slice(&r.body).unwrap();
                assert_eq!(body["detail"], detail, "{name}");
                let www = r.header("www-authenticate").unwrap();
                assert!(
                    www.starts_with("Bearer realm=\"meshwall\", error=\"invalid_token\""),
                    "{name}: {www}"
                );
                if !tok.is_empty() {
                    let all = format!("{}{:?}", String::from_utf8_lossy(&r.body), r.headers);
                    assert!(!all.contains(&tok), "{name}: token echoed");
                }
            }
            other => panic!("{name}: accepted: {other:?}"),
        }
    }
    assert_eq!(h.metric("meshwall.jwt.allowed"), 0);
    assert!(h.metric("meshwall.jwt.denied.bad_signature") >= 8);
    assert!(h.metric("meshwall.jwt.denied.unsupported_alg") >= 3);
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

fn hex_bytes(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn der_ecdsa(r: &[u8], s: &[u8]) -> Vec<u8> {
    let int = |x: &[u8]| {
        let mut v = x.to_vec();
        while v.len() > 1 && v[0] == 0 {
            v.remove(0);
        }
        if v[0] & 0x80 != 0 {
            v.insert(0, 0);
        }
        let mut out = vec![0x02, v.len() as u8];
        out.extend(v);
        out
    };
    let body = [int(r), int(s)].concat();
    let mut out = vec![0x30, body.len() as u8];
    out.extend(body);
    out
}

/// The token with its signature's last character changed so that it decodes to the same
/// bytes through a lenient decoder (non-zero trailing bits).
fn noncanonical(tok: &str) -> String {
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let (rest, last) = tok.split_at(tok.len() - 1);
    let idx = alphabet.find(last).unwrap();
    format!("{rest}{}", alphabet.chars().nth(idx ^ 1).unwrap())
}

#[test]
fn signature_for_one_family_never_verifies_another() {
    // A valid token for each algorithm, its alg header rewritten to every other algorithm
    // (signature kept): all refused.
    let h = MemHost::new();
    let p = policy(&h);
    for alg in ALGS {
        let tok = sign(alg, None, &good_claims());
        let (_, payload) = header_payload(&tok);
        let sig = tok.split('.').nth(2).unwrap();
        for other in ALGS.iter().filter(|a| **a != alg) {
            let header = b64(format!(r#"{{"alg":"{other}","typ":"JWT"}}"#).as_bytes());
            let forged = format!("{header}.{payload}.{sig}");
            assert!(
                matches!(get(&p, &h, "/api", &forged), Action::Reply(_)),
                "{alg} → {other}"
            );
        }
    }
}

// ---------------------------------------------------------------- outputs

#[test]
fn claims_reach_the_upstream_and_spoofs_never_do() {
    let h = MemHost::new();
    let p = policy(&h);
    let tok = sign("ES256", Some("es256"), &good_claims());
    let auth = bearer(&tok);
    let req = request(
        "GET",
        "/api",
        &[
            ("authorization", auth.as_str()),
            ("x-user-id", "root"),
            ("x-user-roles", "superuser"),
            ("x-jwt-payload", "forged"),
            ("x-org-id", "evil"),
        ],
    );
    let up = upstream_headers(&req, &run(&p, &h, &req));
    assert_eq!(up.get_all("x-user-id").collect::<Vec<_>>(), vec!["alice"]);
    assert_eq!(
        up.get_all("x-user-roles").collect::<Vec<_>>(),
        vec!["admin,dev"]
    );
    assert_eq!(up.get_all("x-org-id").collect::<Vec<_>>(), vec!["acme"]);
    assert_eq!(
        up.get("x-jwt-payload"),
        Some(tok.split('.').nth(1).unwrap())
    );
    assert_eq!(up.get("authorization"), None, "forward defaults to false");

    // A token without those claims: spoofed headers are removed, nothing set.
    let tok = sign(
        "ES256",
        Some("es256"),
        &without(&without(&good_claims(), "roles"), "org"),
    );
    let auth = bearer(&tok);
    let req = request(
        "GET",
        "/api",
        &[
            ("authorization", auth.as_str()),
            ("x-user-roles", "superuser"),
            ("x-org-id", "evil"),
        ],
    );
    let up = upstream_headers(&req, &run(&p, &h, &req));
    assert_eq!(up.get("x-user-roles"), None);
    assert_eq!(up.get("x-org-id"), None);
    assert_eq!(up.get("x-user-id"), Some("alice"));

    // Routes without a token (no-JWT rule, allow_missing, CORS preflight): spoofs removed too.
    let spoof = [
        ("x-user-id", "root"),
        ("x-user-roles", "admin"),
        ("x-jwt-payload", "e30"),
    ];
    for (m, path, extra) in [
        ("GET", "/healthz", vec![]),
        ("GET", "/public/x", vec![]),
        (
            "OPTIONS",
            "/admin/x",
            vec![
                ("origin", "https://app.example"),
                ("access-control-request-method", "POST"),
            ],
        ),
    ] {
        let mut hs: Vec<(&str, &str)> = spoof.to_vec();
        hs.extend(extra);
        let req = request(m, path, &hs);
        let up = upstream_headers(&req, &run(&p, &h, &req));
        for (name, _) in spoof {
            assert_eq!(up.get(name), None, "{m} {path}: {name} spoofed");
        }
    }
}

#[test]
fn forward_keeps_the_token() {
    let mut cfg = base_config();
    cfg["providers"]["main"]["forward"] = json!(true);
    let h = MemHost::new();
    let p = policy_with(&cfg, &h).unwrap();
    let tok = sign("HS256", Some("hs"), &good_claims());
    let auth = bearer(&tok);
    let req = request("GET", "/api", &[("authorization", auth.as_str())]);
    let up = upstream_headers(&req, &run(&p, &h, &req));
    assert_eq!(up.get("authorization"), Some(auth.as_str()));
}

#[test]
fn token_sources_params_cookies_and_custom_headers() {
    let cfg = json!({"providers": {"m": {
        "local_jwks": {"inline_jwks": jwks()},
        "from_headers": [{"name": "x-api-token", "value_prefix": "JWT "}],
        "from_params": ["access_token"],
        "from_cookies": ["session"],
        "claim_to_headers": [{"header_name": "x-sub", "claim_name": "sub"}]
    }}});
    let h = MemHost::new();
    let p = policy_with(&cfg, &h).unwrap();
    let tok = sign("HS512", Some("hs"), &good_claims());
    let other = sign(
        "HS512",
        Some("hs"),
        &with(&good_claims(), "sub", json!("bob")),
    );
    let jwt_h = format!("JWT {tok}");
    let cookie = format!("a=1; session={tok}; b=2");
    let q = format!("/x?a=1&access_token={tok}");

    let req = request("GET", "/x", &[("x-api-token", jwt_h.as_str())]);
    let up = upstream_headers(&req, &run(&p, &h, &req));
    assert_eq!(up.get("x-sub"), Some("alice"));
    assert_eq!(up.get("x-api-token"), None);

    let req = request("GET", &q, &[]);
    let a = run(&p, &h, &req);
    assert!(
        matches!(&a, Action::Continue(ops) if ops.contains(&HeaderOp::Set(":path".into(), "/x?a=1".into()))),
        "{a:?}"
    );

    let req = request("GET", "/x", &[("cookie", cookie.as_str())]);
    let up = upstream_headers(&req, &run(&p, &h, &req));
    assert_eq!(up.get("cookie"), Some("a=1; b=2"));

    // Authorization: Bearer is not a source of this provider.
    let auth = bearer(&tok);
    assert_denied(
        &run(
            &p,
            &h,
            &request("GET", "/x", &[("authorization", auth.as_str())]),
        ),
        401,
        "Jwt is missing",
    );

    // Two different tokens → 401, the same token twice is fine.
    let q2 = format!("/x?access_token={other}");
    assert_denied(
        &run(
            &p,
            &h,
            &request("GET", &q2, &[("x-api-token", jwt_h.as_str())]),
        ),
        401,
        "more than one Jwt in the request",
    );
    let q3 = format!("/x?access_token={tok}");
    assert_allowed(&run(
        &p,
        &h,
        &request("GET", &q3, &[("x-api-token", jwt_h.as_str())]),
    ));
    assert_eq!(h.metric("meshwall.jwt.denied.multiple_tokens"), 1);
}

#[test]
fn two_authorization_headers_with_different_tokens_refused() {
    let h = MemHost::new();
    let p = policy(&h);
    let a = bearer(&sign("HS256", Some("hs"), &good_claims()));
    let b = bearer(&sign(
        "HS256",
        Some("hs"),
        &with(&good_claims(), "sub", json!("bob")),
    ));
    let req = request(
        "GET",
        "/api",
        &[("authorization", a.as_str()), ("authorization", b.as_str())],
    );
    assert_denied(&run(&p, &h, &req), 401, "more than one Jwt in the request");
}

// ---------------------------------------------------------------- rules and replies

#[test]
fn replies_follow_rfc6750() {
    let h = MemHost::new();
    let p = policy(&h);
    let a = run(&p, &h, &request("GET", "/api", &[]));
    assert_denied(&a, 401, "Jwt is missing");
    let Action::Reply(r) = a else { unreachable!() };
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"meshwall\"")
    );
    assert_eq!(r.header("cache-control"), Some("no-store"));

    let tok = sign(
        "HS256",
        Some("hs"),
        &with(&good_claims(), "roles", json!(["dev"])),
    );
    let a = get(&p, &h, "/admin/users", &tok);
    assert_denied(&a, 403, "Jwt claims do not grant access");
    let Action::Reply(r) = a else { unreachable!() };
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"meshwall\", error=\"insufficient_scope\", error_description=\"Jwt claims do not grant access\"")
    );
    assert_eq!(h.metric("meshwall.jwt.denied.missing"), 1);
    assert_eq!(h.metric("meshwall.jwt.denied.forbidden"), 1);
}

#[test]
fn rules_table() {
    let h = MemHost::new();
    let p = policy(&h);
    let admin = sign("ES384", Some("es384"), &good_claims());
    let reader = sign(
        "ES384",
        Some("es384"),
        &with(
            &with(&good_claims(), "roles", json!(["dev"])),
            "scope",
            json!("orders:read"),
        ),
    );
    let billing = sign(
        "ES384",
        Some("es384"),
        &with(&good_claims(), "roles", json!(["billing"])),
    );
    let tier2 = sign(
        "ES384",
        Some("es384"),
        &with(&good_claims(), "org", json!({"id": "acme", "tier": 2})),
    );
    let expired = sign(
        "ES384",
        Some("es384"),
        &with(&good_claims(), "exp", json!(NOW - 1000)),
    );
    let cases: Vec<(&str, &str, Option<&str>, u16)> = vec![
        ("GET", "/healthz", None, 200),
        ("GET", "/healthz", Some("garbage"), 200),
        ("GET", "/healthz/x", None, 401), // exact match only; default requires a token
        ("GET", "/public/a", None, 200),
        ("GET", "/public/a", Some(&admin), 200),
        ("GET", "/public/a", Some(&expired), 401), // allow_missing, not allow_failed
        ("GET", "/public/a", Some("garbage"), 401),
        ("GET", "/admin/x", None, 401),
        ("GET", "/admin/x", Some(&admin), 200),
        ("GET", "/admin/x", Some(&reader), 403),
        ("GET", "/admin/x?role=admin", Some(&reader), 403),
        ("POST", "/orders/1", Some(&admin), 200),
        ("POST", "/orders/1", Some(&reader), 403),
        ("DELETE", "/orders/1", Some(&reader), 403),
        ("GET", "/orders/1", Some(&reader), 200), // method not in the rule: default (token only)
        ("GET", "/tenants/acme/billing", Some(&admin), 200),
        ("GET", "/tenants/acme/billing", Some(&billing), 200),
        ("GET", "/tenants/acme/billing", Some(&reader), 403),
        ("GET", "/tenants/acme/billing", Some(&tier2), 403),
        ("GET", "/tenants/acme/billing/x", Some(&reader), 200), // regex anchored: default rule
        ("GET", "/anything", None, 401),
        ("GET", "/anything", Some(&reader), 200),
        ("OPTIONS", "/admin/x", None, 401), // not a preflight without the CORS headers
    ];
    for (m, path, tok, want) in cases {
        let auth = tok.map(bearer);
        let hs: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| vec![("authorization", a)])
            .unwrap_or_default();
        let a = run(&p, &h, &request(m, path, &hs));
        let got = match &a {
            Action::Continue(_) => 200,
            Action::Reply(r) => r.status,
            Action::ReadBody { .. } => 0,
        };
        assert_eq!(got, want, "{m} {path} {tok:?}");
    }
    let pre = request(
        "OPTIONS",
        "/admin/x",
        &[
            ("origin", "https://a.example"),
            ("access-control-request-method", "DELETE"),
        ],
    );
    assert_allowed(&run(&p, &h, &pre));
}

#[test]
fn requires_any_and_all() {
    let k = keys();
    let cfg = json!({
        "providers": {
            "ec": {"issuer": "https://ec", "local_jwks": {"inline_jwks": {"keys": [ec_jwk(&k.es256.public_key().public_key().to_bytes_uncompressed(), "P-256", 32, "e")]}},
                   "claim_to_headers": [{"header_name": "x-ec-sub", "claim_name": "sub"}]},
            "hs": {"issuer": "https://hs", "local_jwks": {"inline_jwks": {"keys": [{"kty":"oct","k":b64(HS_SECRET),"kid":"h"}]}},
                   "claim_to_headers": [{"header_name": "x-hs-sub", "claim_name": "sub"}]},
            "any-iss": {"local_jwks": {"inline_jwks": {"keys": [ec_jwk(&k.es256.public_key().public_key().to_bytes_uncompressed(), "P-256", 32, "e")]}}}
        },
        "rules": [
            {"match": {"prefix": "/any"}, "requires": {"requires_any": ["ec", "hs"]}},
            {"match": {"prefix": "/all"}, "requires": {"requires_all": ["ec", "any-iss"]}},
            {"match": {"prefix": "/hs"}, "requires": {"provider_name": "hs"}}
        ]
    });
    let h = MemHost::new();
    let p = policy_with(&cfg, &h).unwrap();
    let ec = sign(
        "ES256",
        Some("e"),
        &with(&good_claims(), "iss", json!("https://ec")),
    );
    let hs = sign(
        "HS256",
        Some("h"),
        &with(&good_claims(), "iss", json!("https://hs")),
    );
    let ec_wrong_iss = sign("ES256", Some("e"), &good_claims());
    assert_allowed(&get(&p, &h, "/any", &ec));
    let req = request("GET", "/any", &[("authorization", &bearer(&hs))]);
    let up = upstream_headers(&req, &run(&p, &h, &req));
    assert_eq!(up.get("x-hs-sub"), Some("alice"));
    assert_eq!(up.get("x-ec-sub"), None);
    // The failure of the provider that knew the token is reported, not "issuer".
    let bad_hs = raw_hs256(
        r#"{"alg":"HS256","kid":"h"}"#,
        &with(&good_claims(), "iss", json!("https://hs")).to_string(),
        b"wrong-secret-wrong-secret-wrong!!",
    );
    assert_denied(&get(&p, &h, "/any", &bad_hs), 401, "Jwt verification fails");
    assert_denied(
        &get(&p, &h, "/any", &ec_wrong_iss),
        401,
        "Jwt issuer is not configured",
    );
    let req = request("GET", "/all", &[("authorization", &bearer(&ec))]);
    let up = upstream_headers(&req, &run(&p, &h, &req));
    assert_eq!(up.get("x-ec-sub"), Some("alice"));
    assert_denied(
        &get(&p, &h, "/all", &ec_wrong_iss),
        401,
        "Jwt issuer is not configured",
    );
    assert_denied(
        &get(&p, &h, "/hs", &ec),
        401,
        "Jwt issuer is not configured",
    );
    // Default (no rule matched): any provider.
    assert_allowed(&get(&p, &h, "/other", &hs));
    assert_allowed(&get(&p, &h, "/other", &ec_wrong_iss));
}

#[test]
fn invalid_token_in_one_providers_source_is_invalid_not_missing() {
    // `a-header` (first in order) reads only `Authorization`; `b-query` only `?access_token`.
    // A bad token in the query is not "missing" because `a-header` could not see it.
    let cfg = json!({
        "providers": {
            "a-header": {"issuer": "https://issuer.example", "local_jwks": {"inline_jwks": jwks()}},
            "b-query": {"issuer": "https://issuer.example", "local_jwks": {"inline_jwks": jwks()},
                        "from_params": ["access_token"]}
        }
    });
    let h = MemHost::new();
    let p = policy_with(&cfg, &h).unwrap();
    let good = sign("ES256", Some("es256"), &good_claims());
    let (head, payload) = header_payload(&good);
    let forged = format!("{head}.{payload}.{}", b64(&[7u8; 64]));
    let expired = sign(
        "ES256",
        Some("es256"),
        &with(&good_claims(), "exp", json!(NOW - 3600)),
    );
    for (tok, detail) in [
        (forged.as_str(), "Jwt verification fails"),
        (expired.as_str(), "Jwt is expired"),
    ] {
        let a = run(
            &p,
            &h,
            &request("GET", &format!("/x?access_token={tok}"), &[]),
        );
        assert_denied(&a, 401, detail);
        let Action::Reply(r) = a else { unreachable!() };
        assert!(r
            .header("www-authenticate")
            .is_some_and(|w| w.contains("error=\"invalid_token\"")));
    }
    assert_allowed(&run(
        &p,
        &h,
        &request("GET", &format!("/x?access_token={good}"), &[]),
    ));
    assert_eq!(h.metric("meshwall.jwt.denied.missing"), 0);
}

#[test]
fn exp_beyond_year_9999_is_refused_end_to_end() {
    let h = MemHost::new();
    let p = policy(&h);
    // A correctly signed token whose exp means "never": jwt-simple alone would accept it.
    for exp in [json!(1u64 << 63), json!(u64::MAX)] {
        let tok = sign("HS256", Some("hs"), &with(&good_claims(), "exp", exp));
        assert_denied(&get(&p, &h, "/api", &tok), 401, "Jwt claims are malformed");
    }
}

// ---------------------------------------------------------------- cache

#[test]
fn cache_hits_and_expiry() {
    let h = MemHost::new();
    let p = policy(&h);
    let tok = sign(
        "RS256",
        Some("rsa"),
        &with(&good_claims(), "exp", json!(NOW + 100)),
    );
    assert_allowed(&get(&p, &h, "/api", &tok));
    assert_allowed(&get(&p, &h, "/api", &tok));
    assert_allowed(&get(&p, &h, "/api", &tok));
    assert_eq!(h.metric("meshwall.jwt.cache.miss"), 1);
    assert_eq!(h.metric("meshwall.jwt.cache.hit"), 2);
    // Claim headers come from the cache too.
    let req = request(
        "GET",
        "/api",
        &[("authorization", &bearer(&tok)), ("x-user-id", "x")],
    );
    assert_eq!(
        upstream_headers(&req, &run(&p, &h, &req)).get("x-user-id"),
        Some("alice")
    );
    // Rule claims use the cached payload.
    assert_allowed(&get(&p, &h, "/admin/x", &tok));
    // exp + skew passes: the cached entry is gone, the token refused.
    h.advance(std::time::Duration::from_secs(161));
    assert_denied(&get(&p, &h, "/api", &tok), 401, "Jwt is expired");
    // Failures are not cached.
    let bad = raw_hs256(
        r#"{"alg":"HS256","kid":"hs"}"#,
        &good_claims().to_string(),
        b"wrong-secret-wrong-secret-wrong!!",
    );
    let misses = h.metric("meshwall.jwt.cache.miss");
    assert!(matches!(get(&p, &h, "/api", &bad), Action::Reply(_)));
    assert!(matches!(get(&p, &h, "/api", &bad), Action::Reply(_)));
    assert_eq!(h.metric("meshwall.jwt.cache.miss"), misses + 2);
    assert_eq!(h.metric("meshwall.jwt.denied.bad_signature"), 2);
}

#[test]
fn cache_is_bounded_and_can_be_disabled() {
    let mut cfg = base_config();
    cfg["jwt_cache_size"] = json!(2);
    let h = MemHost::new();
    let p = policy_with(&cfg, &h).unwrap();
    let toks: Vec<String> = (0..3)
        .map(|i| {
            sign(
                "HS256",
                Some("hs"),
                &with(&good_claims(), "jti", json!(format!("t{i}"))),
            )
        })
        .collect();
    for t in &toks {
        assert_allowed(&get(&p, &h, "/api", t));
    }
    assert_eq!(p.cache.as_ref().unwrap().borrow().len(), 2);
    assert_allowed(&get(&p, &h, "/api", &toks[0])); // evicted: miss
    assert_eq!(h.metric("meshwall.jwt.cache.miss"), 4);

    cfg["jwt_cache_size"] = json!(0);
    let h = MemHost::new();
    let p = policy_with(&cfg, &h).unwrap();
    assert_allowed(&get(&p, &h, "/api", &toks[0]));
    assert_allowed(&get(&p, &h, "/api", &toks[0]));
    assert_eq!(
        h.metric("meshwall.jwt.cache.hit") + h.metric("meshwall.jwt.cache.miss"),
        0
    );
}

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
    assert_eq!(h1.metric("meshwall.jwt.denied.jwks_unavailable"), 1);

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
    assert_eq!(h1.metric("meshwall.jwt.jwks_fetch.ok"), 1);
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
    assert_eq!(h1.metric("meshwall.jwt.jwks_fetch.ok"), 2);
    // Shared data stays bounded: two keys per remote provider.
    assert_eq!(h1.shared_key_count(), 2);
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
    assert_eq!(h.metric("meshwall.jwt.jwks_fetch.failed"), 1);
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
    assert_eq!(h.metric("meshwall.jwt.jwks_fetch.failed"), 2);
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
    assert_eq!(h.metric("meshwall.jwt.jwks_fetch.failed"), 3);
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
    assert_eq!(h.metric("meshwall.jwt.cache.hit"), 1);
    // The IdP removes k1: the cached verification does not outlive it.
    h.advance(std::time::Duration::from_secs(301));
    w.on_tick(&h);
    w.on_http_call_response(h.calls()[1].token, ok_response(&jwks_with(&["k9"])), &h);
    assert_denied(&get(&w, &h, "/api", &tok), 401, "Jwt key id is unknown");
}

#[test]
fn metric_names() {
    let h = MemHost::new();
    let _p = policy(&h);
    let names = h.metric_names();
    for n in [
        "meshwall.jwt.allowed",
        "meshwall.jwt.denied.missing",
        "meshwall.jwt.denied.bad_signature",
        "meshwall.jwt.denied.jwks_unavailable",
        "meshwall.jwt.denied.forbidden",
        "meshwall.jwt.cache.hit",
        "meshwall.jwt.cache.miss",
        "meshwall.jwt.jwks_fetch.ok",
        "meshwall.jwt.jwks_fetch.failed",
    ] {
        assert!(names.iter().any(|x| x == n), "{n}");
    }
}
