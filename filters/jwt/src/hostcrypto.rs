//! Signature checks by the host's crypto: Envoy's `verify_signature` foreign function
//! (BoringSSL), for the algorithms it verifies correctly: RS256, RS384, RS512 (PKCS#1 v1.5),
//! ES256 and ES384 (with the JWS `R‖S` signature converted to DER). It has no RSA-PSS and no
//! Ed25519, and HMAC stays in the module.
//!
//! Which algorithms go to the host is decided once per configuration by a self-test
//! ([`choose`]): a known-good and a known-bad signature per algorithm, so a host without the
//! function, or one that answers wrongly, keeps the pure-Rust path. Before the host is asked,
//! everything the pure-Rust path (jwt-simple) refuses whatever the signature is refused here
//! too (see `verify.rs`), and so are signatures it would never accept: ECDSA `r` or `s` of
//! zero or ≥ n, an RSA signature of another length than the modulus or ≥ n. Both paths give
//! the same verdict on every token.

use crate::jwks::Alg;
use meshwall_core::{Host, HostError};
use prost::Message;

/// The Envoy foreign function (`source/extensions/common/wasm/foreign.cc`).
pub const FOREIGN_FUNCTION: &str = "verify_signature";

/// `envoy.source.extensions.common.wasm.VerifySignatureArguments` (verify_signature.proto);
/// `public_key_pem` (5) is never sent.
#[derive(Clone, PartialEq, Message)]
pub struct VerifySignatureArguments {
    #[prost(string, tag = "1")]
    pub hash_function: String,
    /// DER SubjectPublicKeyInfo.
    #[prost(bytes = "vec", tag = "2")]
    pub public_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub signature: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    pub text: Vec<u8>,
}

/// `VerifySignatureResult`.
#[derive(Clone, PartialEq, Message)]
pub struct VerifySignatureResult {
    #[prost(bool, tag = "1")]
    pub result: bool,
    #[prost(string, tag = "2")]
    pub error: String,
}

/// How signatures are checked (`verifier` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerifierMode {
    /// The host for each algorithm that passes the self-test, the module for the rest.
    #[default]
    Auto,
    /// The host for every algorithm it has (RS256/384/512, ES256/384): a configuration error
    /// when one fails the self-test.
    Host,
    /// The module (jwt-simple) for every algorithm.
    Wasm,
}

/// Algorithms the host may verify.
pub const HOST_ALGS: [Alg; 5] = [Alg::RS256, Alg::RS384, Alg::RS512, Alg::ES256, Alg::ES384];

/// The set of algorithms verified by the host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostAlgs(u16);

impl HostAlgs {
    fn bit(alg: Alg) -> u16 {
        let i = crate::jwks::ALL_ALGS
            .iter()
            .position(|a| *a == alg)
            .unwrap_or(15);
        1u16 << i
    }
    pub fn with(self, alg: Alg) -> Self {
        HostAlgs(self.0 | Self::bit(alg))
    }
    pub fn uses(self, alg: Alg) -> bool {
        self.0 & Self::bit(alg) != 0
    }
}

/// What the host needs of one key, made once when the JWKS is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostKey {
    /// DER SubjectPublicKeyInfo.
    pub spki: Vec<u8>,
    /// RSA: the modulus, big-endian without leading zeros (empty for EC keys).
    pub modulus: Vec<u8>,
}

const P256_N: [u8; 32] =
    hex32(*b"FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551");
const P384_N: [u8; 48] = hex48(
    *b"FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973",
);

const fn nibble(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'A'..=b'F' => c - b'A' + 10,
        _ => 0,
    }
}
// Evaluated at compile time only (the self-test vectors): an index out of range is a build error.
#[allow(clippy::indexing_slicing)]
const fn hex32(h: [u8; 64]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = nibble(h[2 * i]) << 4 | nibble(h[2 * i + 1]);
        i += 1;
    }
    out
}
// Evaluated at compile time only (the self-test vectors): an index out of range is a build error.
#[allow(clippy::indexing_slicing)]
const fn hex48(h: [u8; 96]) -> [u8; 48] {
    let mut out = [0u8; 48];
    let mut i = 0;
    while i < 48 {
        out[i] = nibble(h[2 * i]) << 4 | nibble(h[2 * i + 1]);
        i += 1;
    }
    out
}

/// A big-endian scalar in `[1, n − 1]` (same length as `n`).
fn in_range(x: &[u8], n: &[u8]) -> bool {
    x.len() == n.len() && x.iter().any(|b| *b != 0) && x < n
}

/// One DER INTEGER (non-negative, minimal) appended to `out`.
fn der_uint(out: &mut Vec<u8>, x: &[u8]) {
    let first = x.iter().position(|b| *b != 0).unwrap_or(x.len());
    let x = x.get(first..).unwrap_or_default();
    let pad = x.first().is_some_and(|b| b & 0x80 != 0);
    out.push(0x02);
    out.push((x.len() + usize::from(pad)) as u8);
    if pad {
        out.push(0);
    }
    out.extend_from_slice(x);
}

/// The DER `ECDSA-Sig-Value` of a raw `R‖S` signature, when both are in `[1, n − 1]`
/// (jwt-simple refuses anything else). At most 2 × 49 + 6 bytes: short-form lengths only.
pub fn ecdsa_der(raw: &[u8], n: &[u8]) -> Option<Vec<u8>> {
    let size = n.len();
    if raw.len() != 2 * size {
        return None;
    }
    let (r, s) = raw.split_at(size);
    if !in_range(r, n) || !in_range(s, n) {
        return None;
    }
    let mut body = Vec::with_capacity(2 * size + 6);
    der_uint(&mut body, r);
    der_uint(&mut body, s);
    let mut out = Vec::with_capacity(body.len() + 2);
    out.push(0x30);
    out.push(body.len() as u8);
    out.extend_from_slice(&body);
    Some(out)
}

/// Asks the host whether `sig` over `text` verifies with `key` for `alg`. `Ok(false)`
/// without asking for a signature jwt-simple would refuse whatever the key (see the module
/// documentation); `Err` when the host could not answer (the caller then uses the module).
pub fn verify(
    key: &HostKey,
    alg: Alg,
    text: &[u8],
    sig: &[u8],
    host: &dyn Host,
) -> Result<bool, HostError> {
    let (hash, signature) = match alg {
        Alg::RS256 | Alg::RS384 | Alg::RS512 => {
            if key.modulus.is_empty()
                || sig.len() != key.modulus.len()
                || sig >= key.modulus.as_slice()
            {
                return Ok(false);
            }
            let hash = match alg {
                Alg::RS256 => "sha256",
                Alg::RS384 => "sha384",
                _ => "sha512",
            };
            (hash, sig.to_vec())
        }
        Alg::ES256 | Alg::ES384 => {
            if !key.modulus.is_empty() {
                return Ok(false);
            }
            let (hash, n): (&str, &[u8]) = if alg == Alg::ES256 {
                ("sha256", &P256_N)
            } else {
                ("sha384", &P384_N)
            };
            match ecdsa_der(sig, n) {
                Some(der) => (hash, der),
                None => return Ok(false),
            }
        }
        _ => {
            return Err(HostError::Failed(format!(
                "{alg:?} is not verified by the host"
            )))
        }
    };
    let arg = VerifySignatureArguments {
        hash_function: hash.to_string(),
        public_key: key.spki.clone(),
        signature,
        text: text.to_vec(),
    }
    .encode_to_vec();
    let answer = host.call_foreign_function(FOREIGN_FUNCTION, &arg)?;
    // An empty message is `result: false` (proto3 leaves default fields out).
    let res = VerifySignatureResult::decode(answer.as_deref().unwrap_or_default())
        .map_err(|e| HostError::Failed(format!("unreadable verify_signature result: {e}")))?;
    Ok(res.result)
}

// Self-test vectors: a throw-away RSA-2048, P-256 and P-384 key (the private halves were
// discarded), and one JWS per algorithm signed with them (made once with Python's
// `cryptography`).
const RSA_SPKI: &str = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAtoLSEdR3-qMpvb7gvacEhJb9CKXMALMlmTJkGhoQ3Zpirh6g4ykxV3XlIDXQeMM2UeJBkcjwOeUci2c-Cc22YsB4QdGMAfCeD0BWM-fzLQQt4nCih02aiHx7o_sWeZYxF4ddeddnnz7EcakNwYf0-97jP4Khx0gAJyYk-1OiQPCf_kp47qad8EFz-Rkqimek86_46g5tWSluqK-Mueh8BepppaW5dNLFpFb-JgLdoc_1_qOcmmWwEGllq4MplD3anhS7HqbxYuoAC1iohOvb8SJQDtf5b5RuAAKlM2vmmMwQx0s4Bm1-icyYAJwJB2BLduhcE97hs8gBUTviNEMwAQIDAQAB";
const P256_SPKI: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEoWXr1_f4yfRH1rcipc6M4FE4uRuSru0O0Rc6L3rEDr2t190WvvvHR0Cp3ZVxOWUEg7DH0JIGXzchzZIPUEsmdQ";
const P384_SPKI: &str = "MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAEMBwLZHLYhdoiCb7Xb7uepwgbw4KyMPo1_Bpys2iGEGID1Oe6oP0nSB6HG7vJfIh8bfXnHuHq5nFLn-kSCe54K5wLMmTIdbDFUVlDu3OIGW8uqiN8ZNnpDXlTrg0HBE8o";
const SELF_TEST: [(&str, &str); 5] = [
    ("RS256", "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJtZXNod2FsbCBzZWxmLXRlc3QifQ.sBg65P482ec8TiQJusilw4WUOW2z6uaIgrxOPqb826KIz7vCbDSX_hAQHYD82EFo8_X_xXGCqq6YI6FlAvedxb2lKAsXF7DkD8EOKy9yMQ8PDEFa0-Nq4OEloz5KhtNNzInaPnQ04pLe8XbJWRJLAKp0IGOjOyVeVTcOURD6zIE8X3sbWqTWsC459KnsWBvpj_cJ8Mj1bQ7NrIuWcIdS-WSicNwu1CyE1oN6GhE-udJzw_sPqXC5F63EpOiz4LxlXzdhCfOkffOsJitKXdgnc89RiP6ShSHV742GaQcitDDgu0UGvFowGLrOZ84QzTBn8xQvnN7dVAcWJzbp8YQzdA"),
    ("RS384", "eyJhbGciOiJSUzM4NCJ9.eyJzdWIiOiJtZXNod2FsbCBzZWxmLXRlc3QifQ.AZj0RXcNexSff-RV-UMH9wXVgumYGiNBanBwkGrnzaMiutSOWj_EBwxUTRDE3PM6wz9AvOW5RjjboVicwcE9wbgsz2zM7fCn2llSeOHwMlPYy197L_G9UxKs53rdSAxe-Fif8KTfM69-EOpmxokFHy_z93_jLzQ4eiN8uWcXZ-BqGEC-E_1ZAw34YOyzVel6wPPHnExsbA31-tX_m0hD5kIaUPh3stUb-FHuW01db-xhIgKlszUMLcMZi8mROcjtApmsy_vvCTAWoEKKDHurtruTXR8gGiY7yWzJqYDvSlz-TYl3OPcnZoStww0lOWjw9KPvfyUGkfnfSmn01xSQnA"),
    ("RS512", "eyJhbGciOiJSUzUxMiJ9.eyJzdWIiOiJtZXNod2FsbCBzZWxmLXRlc3QifQ.amU120uhQMGE9Y9ZhPDunDEZuQs5rxzmxYP9FDZAi4pfWq0ISiCrnrR1dflRgjhLcHwoKyZ6eA_tJjz6QEqEF02kqlhB2YkM1fHa0Zrz0p3a9vC5JDBfdm7v_imidGFJVO76_mbcNyVuaDXpSBA2GtO64YDuK--ChlSOd51pSo2rKP1ZNjfWHU3qYDIq_Ql0vzW46bukhjytaI2T_mNOta0eURJq-5Ex3EvvmvAiXxs9EvKzL5C6SKLUNnJyHE6obFoIls1Mhnrdz5Aag4MQuUiXZiZkqtI-FNCB32yjh3MDuwgg0feDNYT-O3zhXGqTqs_OZ15Bx3lxlVxNc7mjqg"),
    ("ES256", "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJtZXNod2FsbCBzZWxmLXRlc3QifQ.sxjBYAvOPjgM7az5WfYzP9r8KWURzLECVdCF7qzFvHPvakfZhK_Ez_EeQGOLYoTQWsSy9HXnIb2UYV3udjLHFQ"),
    ("ES384", "eyJhbGciOiJFUzM4NCJ9.eyJzdWIiOiJtZXNod2FsbCBzZWxmLXRlc3QifQ.YZVuV04rn4QkAhKzohk1P11Pw-x1dL_73VqcHKpkTL9jNsSZig0bSapdw3IpjcVhdA_pGHeHsuX2wIoHRRg8xUL0WMygzukfrtq876mSDS1MF5nJReBF07sW4RJV_wlc"),
];

/// The key of a self-test vector.
fn self_test_key(alg: Alg) -> Option<HostKey> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use jwt_simple::prelude::RS256PublicKey;
    let spki_b64 = match alg {
        Alg::RS256 | Alg::RS384 | Alg::RS512 => RSA_SPKI,
        Alg::ES256 => P256_SPKI,
        _ => P384_SPKI,
    };
    let spki = URL_SAFE_NO_PAD.decode(spki_b64).ok()?;
    let modulus = match alg {
        Alg::RS256 | Alg::RS384 | Alg::RS512 => {
            RS256PublicKey::from_der(&spki).ok()?.to_components().n
        }
        _ => Vec::new(),
    };
    Some(HostKey { spki, modulus })
}

/// Whether the host verifies `alg` correctly: its vector accepted, the same signature over
/// other text refused, the vector with a flipped signature bit refused.
pub fn self_test(alg: Alg, host: &dyn Host) -> Result<(), String> {
    let (_, tok) = SELF_TEST
        .iter()
        .find(|(name, _)| Alg::from_name(name) == Some(alg))
        .ok_or("no self-test vector")?;
    let key = self_test_key(alg).ok_or("unreadable self-test key")?;
    let d = crate::token::decode(tok, 8192).map_err(|f| format!("self-test token: {f:?}"))?;
    let err = |e: HostError| e.to_string();
    if !verify(&key, alg, d.signed.as_bytes(), &d.signature, host).map_err(err)? {
        return Err("refuses a valid signature".into());
    }
    let mut other = d.signed.as_bytes().to_vec();
    if let Some(last) = other.last_mut() {
        *last ^= 1;
    }
    if verify(&key, alg, &other, &d.signature, host).map_err(err)? {
        return Err("accepts a signature over other text".into());
    }
    let mut flipped = d.signature.clone();
    if let Some(b) = flipped.get_mut(7) {
        *b ^= 0x10;
    }
    if verify(&key, alg, d.signed.as_bytes(), &flipped, host).map_err(err)? {
        return Err("accepts a corrupted signature".into());
    }
    Ok(())
}

/// Decides, once per configuration, which algorithms the host verifies, and logs it.
/// `Host` mode: every algorithm of [`HOST_ALGS`] must pass the self-test.
pub fn choose(mode: VerifierMode, host: &dyn Host) -> Result<HostAlgs, String> {
    let mut algs = HostAlgs::default();
    if mode == VerifierMode::Wasm {
        meshwall_core::policy_log!(
            info,
            crate::policy::JwtPolicy,
            "signatures verified in the module (verifier: wasm)"
        );
        return Ok(algs);
    }
    let mut refused = Vec::new();
    for alg in HOST_ALGS {
        match self_test(alg, host) {
            Ok(()) => algs = algs.with(alg),
            Err(e) => {
                if mode == VerifierMode::Host {
                    return Err(format!("the host cannot verify {alg:?} signatures: {e}"));
                }
                refused.push(format!("{alg:?} ({e})"));
            }
        }
    }
    let by_host: Vec<String> = HOST_ALGS
        .iter()
        .filter(|a| algs.uses(**a))
        .map(|a| format!("{a:?}"))
        .collect();
    meshwall_core::policy_log!(
        info,
        crate::policy::JwtPolicy,
        "signatures verified by the host: [{}]; in the module: the rest{}",
        by_host.join(", "),
        if refused.is_empty() {
            String::new()
        } else {
            format!(" (self-test failed: {})", refused.join("; "))
        }
    );
    Ok(algs)
}

#[cfg(test)]
#[path = "hostcrypto_tests.rs"]
pub(crate) mod tests;
