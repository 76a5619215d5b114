//! The host path: message encoding, the R‖S → DER conversion and its range checks, the
//! self-test, and a scripted `verify_signature` for the policy tests (jwt-simple behind the
//! foreign-function interface, so the module's own checks before the call are what is tested).
use super::*;
use crate::jwks::parse_key;
use crate::verify::{verify as check_sig, Check, Path};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jwt_simple::prelude::*;
use meshwall_core::MemHost;
use serde_json::json;

/// Reads a DER `ECDSA-Sig-Value` back into `R‖S` of `size`-byte halves (strictly: what
/// [`ecdsa_der`] writes).
fn der_to_raw(der: &[u8], size: usize) -> Option<Vec<u8>> {
    let body = der.strip_prefix(&[0x30])?;
    let (&len, mut rest) = body.split_first()?;
    if usize::from(len) != rest.len() {
        return None;
    }
    let mut out = Vec::new();
    for _ in 0..2 {
        let (&tag, r) = rest.split_first()?;
        let (&l, r) = r.split_first()?;
        if tag != 2 || r.len() < usize::from(l) {
            return None;
        }
        let (int, r) = r.split_at(usize::from(l));
        let int = if int.len() > 1 && int[0] == 0 {
            &int[1..]
        } else {
            int
        };
        if int.len() > size {
            return None;
        }
        out.extend(std::iter::repeat_n(0u8, size - int.len()));
        out.extend_from_slice(int);
        rest = r;
    }
    rest.is_empty().then_some(out)
}

/// A `verify_signature` that answers like Envoy's for the algorithms it has, checking with
/// jwt-simple: RSA PKCS#1 v1.5 and ECDSA with a DER signature; anything else "not supported".
pub(crate) fn fake_verify_signature(arg: &[u8]) -> Result<Option<Vec<u8>>, HostError> {
    let a = VerifySignatureArguments::decode(arg)
        .map_err(|_| HostError::Failed("BadArgument".into()))?;
    let text = std::str::from_utf8(&a.text).map_err(|_| HostError::Failed("BadArgument".into()))?;
    let opts = || {
        Some(VerificationOptions {
            // Time 0 with no tolerance: `exp` always holds (only the signature is judged).
            accept_future: true,
            artificial_time: Some(UnixTimeStamp::from_secs(0)),
            time_tolerance: Some(Duration::from_secs(0)),
            ..Default::default()
        })
    };
    let tok = |sig: &[u8]| format!("{text}.{}", URL_SAFE_NO_PAD.encode(sig));
    let ok = match a.hash_function.as_str() {
        h @ ("sha256" | "sha384" | "sha512") if RS256PublicKey::from_der(&a.public_key).is_ok() => {
            let t = tok(&a.signature);
            match h {
                "sha256" => RS256PublicKey::from_der(&a.public_key)
                    .ok()
                    .map(|k| k.verify_token::<NoCustomClaims>(&t, opts()).is_ok()),
                "sha384" => RS384PublicKey::from_der(&a.public_key)
                    .ok()
                    .map(|k| k.verify_token::<NoCustomClaims>(&t, opts()).is_ok()),
                _ => RS512PublicKey::from_der(&a.public_key)
                    .ok()
                    .map(|k| k.verify_token::<NoCustomClaims>(&t, opts()).is_ok()),
            }
        }
        "sha256" => ES256PublicKey::from_der(&a.public_key).ok().map(|k| {
            der_to_raw(&a.signature, 32)
                .is_some_and(|raw| k.verify_token::<NoCustomClaims>(&tok(&raw), opts()).is_ok())
        }),
        "sha384" => ES384PublicKey::from_der(&a.public_key).ok().map(|k| {
            der_to_raw(&a.signature, 48)
                .is_some_and(|raw| k.verify_token::<NoCustomClaims>(&tok(&raw), opts()).is_ok())
        }),
        _ => None,
    };
    let Some(ok) = ok else {
        return Err(HostError::Failed("BadArgument".into()));
    };
    let res = VerifySignatureResult {
        result: ok,
        error: if ok {
            String::new()
        } else {
            "Failed to verify digest".into()
        },
    };
    Ok(Some(res.encode_to_vec()))
}

pub(crate) fn crypto_host() -> MemHost {
    MemHost::new().with_foreign(FOREIGN_FUNCTION, fake_verify_signature)
}

#[test]
fn messages_use_the_proto_field_numbers() {
    let m = VerifySignatureArguments {
        hash_function: "sha256".into(),
        public_key: vec![1],
        signature: vec![2],
        text: vec![3],
    };
    assert_eq!(
        m.encode_to_vec(),
        b"\x0a\x06sha256\x12\x01\x01\x1a\x01\x02\x22\x01\x03"
    );
    let r = VerifySignatureResult::decode(&b"\x08\x01"[..]).unwrap();
    assert!(r.result);
    // An empty answer is `result: false`.
    assert!(!VerifySignatureResult::decode(&b""[..]).unwrap().result);
}

#[test]
fn der_conversion_and_ranges() {
    let n = P256_N;
    let mut raw = vec![0u8; 64];
    raw[31] = 1;
    raw[32] = 0x80; // s with the high bit set gets a 0x00 pad
    let der = ecdsa_der(&raw, &n).unwrap();
    assert_eq!(&der[..5], &[0x30, 3 + 35, 0x02, 0x01, 0x01]);
    assert_eq!(&der[5..8], &[0x02, 0x21, 0x00]);
    assert_eq!(der_to_raw(&der, 32).unwrap(), raw);
    // r = 0, s = 0, r = n, s = n, s = n + 1 (as bytes), wrong lengths: refused.
    let mut cases = vec![
        vec![0u8; 64],
        raw[..63].to_vec(),
        [raw.clone(), vec![0]].concat(),
    ];
    cases.push([vec![0u8; 32], raw[32..].to_vec()].concat());
    cases.push([raw[..32].to_vec(), vec![0u8; 32]].concat());
    cases.push([n.to_vec(), raw[32..].to_vec()].concat());
    cases.push([raw[..32].to_vec(), n.to_vec()].concat());
    cases.push([raw[..32].to_vec(), vec![0xff; 32]].concat());
    for c in cases {
        assert_eq!(ecdsa_der(&c, &n), None, "{c:?}");
    }
    let mut n_minus_1 = n;
    n_minus_1[31] -= 1;
    assert!(ecdsa_der(&[n_minus_1.to_vec(), n_minus_1.to_vec()].concat(), &n).is_some());
    assert_eq!(P384_N[..4], [0xff; 4]);
    assert_eq!(P384_N[47], 0x73);
}

#[test]
fn self_test_vectors_verify_with_jwt_simple() {
    let rsa = URL_SAFE_NO_PAD.decode(RSA_SPKI).unwrap();
    let p256 = ES256PublicKey::from_der(&URL_SAFE_NO_PAD.decode(P256_SPKI).unwrap()).unwrap();
    let p384 = ES384PublicKey::from_der(&URL_SAFE_NO_PAD.decode(P384_SPKI).unwrap()).unwrap();
    let o = || {
        Some(VerificationOptions {
            time_tolerance: Some(Duration::from_days(1)),
            ..Default::default()
        })
    };
    for (alg, t) in SELF_TEST {
        let ok = match alg {
            "RS256" => RS256PublicKey::from_der(&rsa)
                .unwrap()
                .verify_token::<NoCustomClaims>(t, o())
                .is_ok(),
            "RS384" => RS384PublicKey::from_der(&rsa)
                .unwrap()
                .verify_token::<NoCustomClaims>(t, o())
                .is_ok(),
            "RS512" => RS512PublicKey::from_der(&rsa)
                .unwrap()
                .verify_token::<NoCustomClaims>(t, o())
                .is_ok(),
            "ES256" => p256.verify_token::<NoCustomClaims>(t, o()).is_ok(),
            _ => p384.verify_token::<NoCustomClaims>(t, o()).is_ok(),
        };
        assert!(ok, "{alg}");
    }
}

#[test]
fn choice_follows_the_self_test() {
    let all = HOST_ALGS
        .iter()
        .fold(HostAlgs::default(), |a, x| a.with(*x));
    assert_eq!(choose(VerifierMode::Auto, &crypto_host()), Ok(all));
    assert_eq!(choose(VerifierMode::Host, &crypto_host()), Ok(all));
    assert_eq!(
        choose(VerifierMode::Wasm, &crypto_host()),
        Ok(HostAlgs::default())
    );
    // No such function: the module verifies; `host` is a configuration error.
    assert_eq!(
        choose(VerifierMode::Auto, &MemHost::new()),
        Ok(HostAlgs::default())
    );
    assert!(choose(VerifierMode::Host, &MemHost::new())
        .unwrap_err()
        .contains("RS256"));
    // A host that says yes (or no) to everything fails the self-test.
    let yes = MemHost::new().with_foreign(FOREIGN_FUNCTION, |_| Ok(Some(b"\x08\x01".to_vec())));
    assert_eq!(choose(VerifierMode::Auto, &yes), Ok(HostAlgs::default()));
    let no = MemHost::new().with_foreign(FOREIGN_FUNCTION, |_| Ok(None));
    assert_eq!(choose(VerifierMode::Auto, &no), Ok(HostAlgs::default()));
    // Only ECDSA broken (e.g. a host that wants raw R‖S): RSA still goes to the host.
    let rsa_only = MemHost::new().with_foreign(FOREIGN_FUNCTION, |a| {
        let m = VerifySignatureArguments::decode(a).unwrap();
        if m.public_key.len() < 200 {
            Err(HostError::Failed("BadArgument".into()))
        } else {
            fake_verify_signature(a)
        }
    });
    let got = choose(VerifierMode::Auto, &rsa_only).unwrap();
    assert!(
        got.uses(Alg::RS256)
            && got.uses(Alg::RS512)
            && !got.uses(Alg::ES256)
            && !got.uses(Alg::ES384)
    );
    for a in [Alg::PS256, Alg::EdDSA, Alg::HS256] {
        assert!(!all.uses(a));
    }
}

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

fn resign(tok: &str, sig: &[u8]) -> String {
    let i = tok.rfind('.').unwrap();
    format!("{}.{}", &tok[..i], b64(sig))
}

fn with_header(tok: &str, header: &serde_json::Value) -> String {
    let i = tok.find('.').unwrap();
    format!("{}{}", b64(&serde_json::to_vec(header).unwrap()), &tok[i..])
}

/// Both paths judge every token alike: valid ones, forged ones, and those jwt-simple refuses
/// for a reason other than the signature.
#[test]
fn host_and_module_verdicts_are_identical() {
    let now = 1_767_225_600u64;
    let rsa = RS256KeyPair::generate(2048).unwrap();
    let c = rsa.public_key().to_components();
    let es = ES256KeyPair::generate();
    let es384 = ES384KeyPair::generate();
    let pt = es.public_key().public_key().to_bytes_uncompressed();
    let pt384 = es384.public_key().public_key().to_bytes_uncompressed();
    let keys = [
        parse_key(&json!({"kty":"RSA","n":b64(&c.n),"e":b64(&c.e)})).unwrap(),
        parse_key(&json!({"kty":"EC","crv":"P-256","x":b64(&pt[1..33]),"y":b64(&pt[33..])}))
            .unwrap(),
        parse_key(&json!({"kty":"EC","crv":"P-384","x":b64(&pt384[1..49]),"y":b64(&pt384[49..])}))
            .unwrap(),
    ];
    let claims =
        |exp: u64| Claims::create(Duration::from_secs(exp.saturating_sub(now))).with_subject("a");
    let mut toks: Vec<String> = Vec::new();
    let base = [
        rsa.sign(claims(now + 600)).unwrap(),
        RS384KeyPair::from_der(&rsa.to_der().unwrap())
            .unwrap()
            .sign(claims(now + 600))
            .unwrap(),
        RS512KeyPair::from_der(&rsa.to_der().unwrap())
            .unwrap()
            .sign(claims(now + 600))
            .unwrap(),
        es.sign(claims(now + 600)).unwrap(),
        es384.sign(claims(now + 600)).unwrap(),
    ];
    for t in &base {
        toks.push(t.clone());
        let sig = URL_SAFE_NO_PAD
            .decode(t.rsplit('.').next().unwrap())
            .unwrap();
        let half = sig.len() / 2;
        let mut flipped = sig.clone();
        flipped[3] ^= 1;
        toks.push(resign(t, &flipped));
        toks.push(resign(t, &sig[..sig.len() - 1]));
        toks.push(resign(t, &[sig.clone(), vec![0]].concat()));
        toks.push(resign(t, &vec![0u8; sig.len()]));
        toks.push(resign(t, &vec![0xffu8; sig.len()]));
        if sig.len() <= 96 {
            let n: &[u8] = if half == 32 { &P256_N } else { &P384_N };
            // r = 0, s = 0, s = n, r = n, high-s twin (accepted by both)
            toks.push(resign(t, &[vec![0u8; half], sig[half..].to_vec()].concat()));
            toks.push(resign(t, &[sig[..half].to_vec(), vec![0u8; half]].concat()));
            toks.push(resign(t, &[sig[..half].to_vec(), n.to_vec()].concat()));
            toks.push(resign(t, &[n.to_vec(), sig[half..].to_vec()].concat()));
            let mut high = n.to_vec();
            let mut borrow = 0i16;
            for i in (0..half).rev() {
                let d = i16::from(n[i]) - i16::from(sig[half + i]) - borrow;
                borrow = i16::from(d < 0);
                high[i] = (d + 256 * borrow) as u8;
            }
            toks.push(resign(t, &[sig[..half].to_vec(), high].concat()));
            // DER where raw R‖S is required
            toks.push(resign(t, &ecdsa_der(&sig, n).unwrap()));
        }
        let (h, _) = t.split_once('.').unwrap();
        let mut header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap();
        for (k, v) in [
            ("jwk", json!({"kty":"RSA"})),
            ("x5u", json!(5)),
            ("salt", json!("!!")),
            ("salt", json!("AAAA")),
            ("x5c", json!("a")),
        ] {
            header[k] = v;
            toks.push(with_header(t, &header));
            header.as_object_mut().unwrap().remove(k);
        }
    }
    // ECDSA halves with a leading zero byte (valid: the DER drops it), coordinates ≥ n in
    // place of a scalar (r or s = p), RSA values at the modulus, its leading byte dropped.
    let p256_p = hex32(*b"FFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF");
    let p384_p = hex48(*b"FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFFFF0000000000000000FFFFFFFF");
    type Signer<'a> = Box<dyn Fn(u64) -> String + 'a>;
    let signers: [(usize, Signer); 2] = [
        (
            32,
            Box::new(|i| {
                es.sign(claims(now + 600).with_jwt_id(i.to_string()))
                    .unwrap()
            }),
        ),
        (
            48,
            Box::new(|i| {
                es384
                    .sign(claims(now + 600).with_jwt_id(i.to_string()))
                    .unwrap()
            }),
        ),
    ];
    for half in [0usize, 1] {
        for (size, sign) in &signers {
            let lead = (0..20_000u64).map(sign).find(|t| {
                let sig = URL_SAFE_NO_PAD
                    .decode(t.rsplit('.').next().unwrap())
                    .unwrap();
                sig[half * size] == 0
            });
            toks.push(lead.unwrap());
        }
    }
    for (t, p) in [(&base[3], &p256_p[..]), (&base[4], &p384_p[..])] {
        let sig = URL_SAFE_NO_PAD
            .decode(t.rsplit('.').next().unwrap())
            .unwrap();
        let half = sig.len() / 2;
        toks.push(resign(t, &[p, &sig[half..]].concat()));
        toks.push(resign(t, &[&sig[..half], p].concat()));
    }
    for t in &base[..3] {
        let sig = URL_SAFE_NO_PAD
            .decode(t.rsplit('.').next().unwrap())
            .unwrap();
        toks.push(resign(t, &c.n));
        toks.push(resign(t, &sig[1..]));
        toks.push(resign(t, &[&[0u8][..], &sig[1..]].concat()));
    }
    // Claims jwt-simple refuses, with good signatures; and a fractional `exp` it accepts.
    let es_kp = ES256KeyPair::from_bytes(&es.to_bytes()).unwrap();
    for (custom, exp) in [
        (json!({"nonce": 5}), Some(now + 600)),
        (json!({"x": 1}), Some(now - 1000)),
        (json!({"x": 1}), Some(now - 61)),
        (json!({"x": 1}), Some(now - 59)),
        (json!({"aud": 5}), Some(now + 600)),
        (json!({"jti": ["x"]}), Some(now + 600)),
        (json!({"x": 1}), None),
    ] {
        let mut cl = Claims::with_custom_claims(custom, Duration::from_secs(600));
        cl.expires_at = exp.map(UnixTimeStamp::from_secs);
        toks.push(rsa.sign(cl.clone()).unwrap());
        toks.push(es_kp.sign(cl).unwrap());
    }
    let host = crypto_host();
    let all = HOST_ALGS
        .iter()
        .fold(HostAlgs::default(), |a, x| a.with(*x));
    let on_host = Check {
        now,
        skew: 60,
        max_bytes: 8192,
        host_algs: all,
    };
    let in_module = Check {
        host_algs: HostAlgs::default(),
        ..on_host
    };
    let mut host_calls = 0;
    let mut accepted = 0;
    for t in &toks {
        let Ok(d) = crate::token::decode(t, 8192) else {
            continue;
        };
        for k in keys.iter().filter(|k| k.fits(d.alg)) {
            let (a, pa) = check_sig(k, &d, &on_host, &host);
            let (b, pb) = check_sig(k, &d, &in_module, &host);
            assert_eq!(a, b, "verdicts differ for {t}");
            assert_eq!(pb, Path::Wasm);
            host_calls += usize::from(pa == Path::Host);
            accepted += usize::from(a);
        }
    }
    assert!(accepted >= 14, "{accepted}");
    assert!(host_calls >= 40, "{host_calls}");
    assert!(host.foreign_calls(FOREIGN_FUNCTION) > 0);
}

/// What the pure-Rust path refuses whatever the key never reaches the host: the answer is
/// `Ok(false)` without a `verify_signature` call. Only a signature of the modulus length below
/// the modulus, or an `R‖S` with both halves in `[1, n − 1]`, is sent.
#[test]
fn out_of_range_signatures_never_reach_the_host() {
    let host = crypto_host();
    let calls = || host.foreign_calls(FOREIGN_FUNCTION);
    // A 2050-bit modulus (257 bytes, top byte 0x03): s + n still fits its length.
    let mut n = vec![0x03u8];
    n.extend(std::iter::repeat_n(0xa5u8, 256));
    let rsa = HostKey {
        spki: vec![0x30],
        modulus: n.clone(),
    };
    let mut n_plus_1 = n.clone();
    *n_plus_1.last_mut().unwrap() += 1;
    let mut n_minus_1 = n.clone();
    *n_minus_1.last_mut().unwrap() -= 1;
    let refused_rsa: Vec<Vec<u8>> = vec![
        n.clone(),
        n_plus_1,
        vec![0xff; 257],
        n[1..].to_vec(),                         // leading byte dropped: 256 bytes
        vec![0x00; 256],                         // zero with a stripped leading zero
        [vec![0u8], n_minus_1.clone()].concat(), // 258 bytes
        Vec::new(),
    ];
    for alg in [Alg::RS256, Alg::RS384, Alg::RS512] {
        for sig in &refused_rsa {
            assert!(
                !verify(&rsa, alg, b"h.p", sig, &host).unwrap(),
                "{alg:?} {sig:02x?}"
            );
        }
        // an RSA key never answers for ECDSA, whatever the signature
        assert!(!verify(&rsa, Alg::ES256, b"h.p", &[1u8; 64], &host).unwrap());
    }
    assert_eq!(calls(), 0);
    // n − 1 and 0 (of the modulus length) are sent: the host judges them
    let _ = verify(&rsa, Alg::RS256, b"h.p", &n_minus_1, &host);
    let _ = verify(&rsa, Alg::RS256, b"h.p", &[0u8; 257], &host);
    assert_eq!(calls(), 2);

    let ec = HostKey {
        spki: vec![0x30],
        modulus: Vec::new(),
    };
    let p256_p = hex32(*b"FFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF");
    let one = {
        let mut x = [0u8; 32];
        x[31] = 1;
        x
    };
    let mut n_plus_1 = P256_N;
    n_plus_1[31] += 1;
    let refused_ec: Vec<Vec<u8>> = vec![
        [[0u8; 32], one].concat(),
        [one, [0u8; 32]].concat(),
        [P256_N, one].concat(),
        [one, P256_N].concat(),
        [n_plus_1, one].concat(),
        [one, p256_p].concat(),
        [p256_p, p256_p].concat(),
        vec![0xff; 64],
        vec![1u8; 63],
        vec![1u8; 65],
        vec![1u8; 96], // a P-384 length under ES256
        ecdsa_der(&[[1u8; 32], [1u8; 32]].concat(), &P256_N).unwrap(), // DER, 70 bytes
        Vec::new(),
    ];
    for sig in &refused_ec {
        assert!(
            !verify(&ec, Alg::ES256, b"h.p", sig, &host).unwrap(),
            "{sig:02x?}"
        );
    }
    let mut n384_plus_1 = P384_N;
    n384_plus_1[47] += 1;
    for sig in [
        [P384_N.to_vec(), vec![1u8; 48]].concat(),
        [vec![1u8; 48], n384_plus_1.to_vec()].concat(),
        vec![0u8; 96],
        vec![1u8; 64],
    ] {
        assert!(
            !verify(&ec, Alg::ES384, b"h.p", &sig, &host).unwrap(),
            "{sig:02x?}"
        );
    }
    // an EC key never answers for RSA
    assert!(!verify(&ec, Alg::RS256, b"h.p", &[1u8; 256], &host).unwrap());
    assert_eq!(calls(), 2);
    // r = 1, s = n − 1 (both in range) is sent
    let mut n_minus_1 = P256_N;
    n_minus_1[31] -= 1;
    let _ = verify(&ec, Alg::ES256, b"h.p", &[one, n_minus_1].concat(), &host);
    assert_eq!(calls(), 3);
}

/// `R‖S` halves with leading zero bytes (about 1 signature in 128) become minimal DER
/// INTEGERs, with the 0x00 sign byte when the first significant byte has its high bit set.
#[test]
fn der_of_halves_with_leading_zeros_is_minimal() {
    let mut r = [0u8; 32];
    r[2] = 0x80;
    r[31] = 7;
    let mut s = [0u8; 32];
    s[1] = 0x7f;
    let der = ecdsa_der(&[r, s].concat(), &P256_N).unwrap();
    assert_eq!(der[..4], [0x30, (der.len() - 2) as u8, 0x02, 31]);
    assert_eq!(der[4..6], [0x00, 0x80]);
    assert_eq!(der_to_raw(&der, 32).unwrap(), [r, s].concat());
    let s_at = 4 + 31;
    assert_eq!(der[s_at..s_at + 3], [0x02, 31, 0x7f]);
}
