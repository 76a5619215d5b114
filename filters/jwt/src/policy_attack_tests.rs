//! Algorithms and attacks (RFC 8725, known CVEs): every forgery is refused. This file runs
//! twice: as `attacks` (jwt-simple in the module checks signatures) and as `attacks_host` (the
//! host's `verify_signature`, scripted, checks RS* and ES*).
use super::*;

fn on_host() -> bool {
    module_path!().ends_with("_host")
}

fn new_host() -> MemHost {
    if on_host() {
        crate::hostcrypto::tests::crypto_host()
    } else {
        MemHost::new()
    }
}

// ---------------------------------------------------------------- algorithms

#[test]
fn every_algorithm_verifies() {
    let h = new_host();
    let p = policy(&h);
    for alg in ALGS {
        let tok = sign(alg, Some(kid_for(alg)), &good_claims());
        assert_allowed(&get(&p, &h, "/api", &tok));
        // Without kid: the key is chosen by type.
        let tok = sign(alg, None, &good_claims());
        assert_allowed(&get(&p, &h, "/api", &tok));
    }
    assert_eq!(h.metric("meshwall.jwt.allowed"), 24);
    // RS256/384/512 and ES256/384, with and without kid: 10 by the host on that path.
    let by_host = h.metric("meshwall.jwt.signature_checks_host");
    assert_eq!(by_host, if on_host() { 10 } else { 0 });
    assert_eq!(
        h.metric("meshwall.jwt.verifier_host_es256"),
        i64::from(on_host())
    );
    assert_eq!(h.metric("meshwall.jwt.verifier_host_ps256"), 0);
}

#[test]
fn key_alg_must_equal_token_alg() {
    let k = keys();
    let cfg = json!({"providers": {"m": {"local_jwks": {"inline_jwks": {"keys": [rsa_jwk(&k.rsa_der, "r", Some("RS256"))]}}}}});
    let h = new_host();
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

#[test]
fn attacks_are_refused() {
    let h = new_host();
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
    assert!(h.metric("meshwall.jwt.denied.reason.bad_signature") >= 8);
    assert!(h.metric("meshwall.jwt.denied.reason.unsupported_alg") >= 3);
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
    let h = new_host();
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

/// Signature values at the edges, through the whole policy (this file runs on each path): the
/// high-s twin is accepted, coordinates (p) in place of scalars, r = s = n, an RSA signature
/// equal to the modulus, one byte short or with a zero byte prepended are refused, all with
/// the same reason.
#[test]
fn edge_signatures_same_verdict_on_both_paths() {
    let h = new_host();
    let p = policy(&h);
    let n = hex_bytes("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551");
    let pp = hex_bytes("FFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF");
    let sig = |t: &str| {
        URL_SAFE_NO_PAD
            .decode(t.rsplit('.').next().unwrap())
            .unwrap()
    };
    let with_sig = |t: &str, s: &[u8]| format!("{}.{}", &t[..t.rfind('.').unwrap()], b64(s));
    let es = sign("ES256", Some("es256"), &good_claims());
    let rs = sign("RS256", Some("rsa"), &good_claims());
    let es_sig = sig(&es);
    let (r, s) = es_sig.split_at(32);
    let mut high = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let d = i16::from(n[i]) - i16::from(s[i]) - borrow;
        borrow = i16::from(d < 0);
        high[i] = (d + 256 * borrow) as u8;
    }
    assert_allowed(&get(
        &p,
        &h,
        "/api",
        &with_sig(&es, &[r, &high[..]].concat()),
    ));
    let modulus = RS256KeyPair::from_der(&keys().rsa_der)
        .unwrap()
        .public_key()
        .to_components()
        .n;
    for forged in [
        with_sig(&es, &[&pp[..], s].concat()),
        with_sig(&es, &[r, &pp[..]].concat()),
        with_sig(&es, &[&n[..], &n].concat()),
        with_sig(&rs, &modulus),
        with_sig(&rs, &sig(&rs)[1..]),
        with_sig(&rs, &[vec![0u8], sig(&rs)].concat()),
    ] {
        assert_denied(&get(&p, &h, "/api", &forged), 401, "Jwt verification fails");
    }
    let by_host = h.metric("meshwall.jwt.signature_checks_host");
    assert_eq!(by_host > 0, on_host(), "{by_host}");
}
