//! One compact JWS: strict decoding, claim checks and signature verification.
//!
//! Everything cheap is checked before any cryptography: shape, base64url (canonical, unpadded),
//! header (strict JSON, supported `alg`, no `crit`), payload (strict JSON object, claim types,
//! times, issuer, audience, subject). Keys named by a token header (`jwk`, `jku`, `x5u`,
//! `x5c`) are never used: keys come only from the configured JWKS.

use crate::json;
use crate::jwks::Alg;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{Map, Value};

pub use crate::claims::{
    check_claims, claim, claim_header_value, ClaimRules, SubjectMatch, MAX_NUMERIC_DATE,
};
pub use crate::verify::{candidate_keys, verify_with};

/// Why a request was refused. Each has a counter (`meshwall.jwt.denied.reason.<metric>`) and a fixed
/// description for the reply (never request data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Missing,
    TooLarge,
    MultipleTokens,
    Malformed,
    UnsupportedAlg,
    BadHeader,
    UnknownKid,
    NoFittingKey,
    BadSignature,
    MissingExp,
    Expired,
    NotYetValid,
    IssuedInFuture,
    LifetimeTooLong,
    Issuer,
    Audience,
    Subject,
    BadClaims,
    JwksUnavailable,
    Forbidden,
}

impl Failure {
    pub const ALL: [Failure; 20] = [
        Failure::Missing,
        Failure::TooLarge,
        Failure::MultipleTokens,
        Failure::Malformed,
        Failure::UnsupportedAlg,
        Failure::BadHeader,
        Failure::UnknownKid,
        Failure::NoFittingKey,
        Failure::BadSignature,
        Failure::MissingExp,
        Failure::Expired,
        Failure::NotYetValid,
        Failure::IssuedInFuture,
        Failure::LifetimeTooLong,
        Failure::Issuer,
        Failure::Audience,
        Failure::Subject,
        Failure::BadClaims,
        Failure::JwksUnavailable,
        Failure::Forbidden,
    ];

    pub fn metric(self) -> &'static str {
        match self {
            Failure::Missing => "missing",
            Failure::TooLarge => "too_large",
            Failure::MultipleTokens => "multiple_tokens",
            Failure::Malformed => "malformed",
            Failure::UnsupportedAlg => "unsupported_alg",
            Failure::BadHeader => "bad_header",
            Failure::UnknownKid => "unknown_kid",
            Failure::NoFittingKey => "no_fitting_key",
            Failure::BadSignature => "bad_signature",
            Failure::MissingExp => "missing_exp",
            Failure::Expired => "expired",
            Failure::NotYetValid => "not_yet_valid",
            Failure::IssuedInFuture => "issued_in_future",
            Failure::LifetimeTooLong => "lifetime_too_long",
            Failure::Issuer => "issuer",
            Failure::Audience => "audience",
            Failure::Subject => "subject",
            Failure::BadClaims => "bad_claims",
            Failure::JwksUnavailable => "jwks_unavailable",
            Failure::Forbidden => "forbidden",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Failure::Missing => "Jwt is missing",
            Failure::TooLarge => "Jwt is too large",
            Failure::MultipleTokens => "more than one Jwt in the request",
            Failure::Malformed => "Jwt is not a well-formed compact JWS",
            Failure::UnsupportedAlg => "Jwt algorithm is not allowed",
            Failure::BadHeader => "Jwt header is not acceptable",
            Failure::UnknownKid => "Jwt key id is unknown",
            Failure::NoFittingKey => "no key fits the Jwt algorithm",
            Failure::BadSignature => "Jwt verification fails",
            Failure::MissingExp => "Jwt has no expiration",
            Failure::Expired => "Jwt is expired",
            Failure::NotYetValid => "Jwt not yet valid",
            Failure::IssuedInFuture => "Jwt issued in the future",
            Failure::LifetimeTooLong => "Jwt lifetime is too long",
            Failure::Issuer => "Jwt issuer is not configured",
            Failure::Audience => "Audiences in Jwt are not allowed",
            Failure::Subject => "Jwt subject is not allowed",
            Failure::BadClaims => "Jwt claims are malformed",
            Failure::JwksUnavailable => "Jwks not available",
            Failure::Forbidden => "Jwt claims do not grant access",
        }
    }

    /// Precedence when several providers refuse one token: the most informative reason wins
    /// (a provider that recognised the token says more than one whose issuer differs). A
    /// provider whose sources do not hold the token says `Missing`, which must never hide
    /// another provider's verdict on the token (the reply would lack `invalid_token`).
    pub fn rank(self) -> u8 {
        match self {
            Failure::Missing => 0,
            Failure::Issuer => 1,
            Failure::UnknownKid | Failure::NoFittingKey | Failure::JwksUnavailable => 2,
            _ => 3,
        }
    }
}

/// A decoded (not yet verified) token.
#[derive(Debug, Clone)]
pub struct Decoded<'a> {
    pub token: &'a str,
    pub alg: Alg,
    pub kid: Option<String>,
    pub payload: Map<String, Value>,
    /// The payload segment as received (base64url), for `forward_payload_header`.
    pub payload_b64: &'a str,
    /// The signing input (`header.payload`, as received).
    pub signed: &'a str,
    /// The decoded signature.
    pub signature: Vec<u8>,
    /// The decoded payload (JSON text).
    pub payload_json: Vec<u8>,
    /// The header has a `salt` member (a jwt-simple extension its verifier decodes).
    pub salt: bool,
}

fn is_b64url(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Strict base64url: alphabet `A-Za-z0-9-_`, no padding, canonical trailing bits.
fn b64_decode(s: &str) -> Result<Vec<u8>, Failure> {
    if !is_b64url(s) {
        return Err(Failure::Malformed);
    }
    URL_SAFE_NO_PAD
        .decode(s.as_bytes())
        .map_err(|_| Failure::Malformed)
}

/// Members a JWS header may not carry: `crit` (no extension is understood, RFC 7515
/// §4.1.11), `b64` (RFC 7797 unencoded payloads), and JWE members.
const REFUSED_HEADER_MEMBERS: [&str; 5] = ["crit", "b64", "enc", "zip", "epk"];

/// Decodes a compact JWS: three segments, strict base64url, strict JSON header and payload.
pub fn decode(token: &str, max_bytes: usize) -> Result<Decoded<'_>, Failure> {
    if token.len() > max_bytes {
        return Err(Failure::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Failure::Malformed);
    };
    if !(is_b64url(h) && is_b64url(p) && is_b64url(s)) {
        return Err(Failure::Malformed);
    }
    let header_bytes = b64_decode(h)?;
    let header = json::parse_object(&header_bytes, 4).map_err(|_| Failure::BadHeader)?;
    let alg = match header.get("alg") {
        Some(Value::String(a)) => Alg::from_name(a).ok_or(Failure::UnsupportedAlg)?,
        _ => return Err(Failure::BadHeader),
    };
    for name in REFUSED_HEADER_MEMBERS {
        if header.contains_key(name) {
            return Err(Failure::BadHeader);
        }
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(Failure::BadHeader),
    };
    match header.get("typ") {
        None => {}
        Some(Value::String(t)) => {
            let t = t.to_ascii_uppercase();
            if t != "JWT" && !t.ends_with("+JWT") {
                return Err(Failure::BadHeader);
            }
        }
        Some(_) => return Err(Failure::BadHeader),
    }
    if let Some(cty) = header.get("cty") {
        // Nested tokens are not supported; a string `cty` other than JWT is harmless.
        if !matches!(cty, Value::String(c) if !c.eq_ignore_ascii_case("JWT")) {
            return Err(Failure::BadHeader);
        }
    }
    let payload_bytes = b64_decode(p)?;
    let payload =
        json::parse_object(&payload_bytes, json::MAX_DEPTH).map_err(|_| Failure::BadClaims)?;
    let sig = b64_decode(s)?;
    if let Some(len) = alg.signature_len() {
        // ECDSA must be raw R||S (a DER signature has another length); HMAC tags and
        // Ed25519 signatures are fixed too.
        if sig.len() != len {
            return Err(Failure::BadSignature);
        }
    }
    Ok(Decoded {
        token,
        alg,
        kid,
        payload,
        payload_b64: p,
        signed: token.get(..h.len() + 1 + p.len()).unwrap_or_default(),
        signature: sig,
        payload_json: payload_bytes,
        salt: header.contains_key("salt"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn seg(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    }

    fn raw(header: &str, payload: &str, sig: &[u8]) -> String {
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(sig)
        )
    }

    #[test]
    fn decode_accepts_a_plain_token() {
        let t = format!(
            "{}.{}.{}",
            seg(&json!({"alg":"HS256","kid":"k","typ":"JWT"})),
            seg(&json!({"sub":"a"})),
            URL_SAFE_NO_PAD.encode([1u8; 32])
        );
        let d = decode(&t, 8192).unwrap();
        assert_eq!(d.alg, Alg::HS256);
        assert_eq!(d.kid.as_deref(), Some("k"));
        assert_eq!(d.payload["sub"], "a");
    }

    #[test]
    fn decode_refusals() {
        let sig32 = [1u8; 32];
        let cases: Vec<(String, Failure)> = vec![
            (raw(r#"{"alg":"none"}"#, "{}", b""), Failure::Malformed),
            (
                raw(r#"{"alg":"none"}"#, "{}", &sig32),
                Failure::UnsupportedAlg,
            ),
            (
                raw(r#"{"alg":"NoNe"}"#, "{}", &sig32),
                Failure::UnsupportedAlg,
            ),
            (
                raw(r#"{"alg":"hs256"}"#, "{}", &sig32),
                Failure::UnsupportedAlg,
            ),
            (
                raw(r#"{"alg":"ES512"}"#, "{}", &sig32),
                Failure::UnsupportedAlg,
            ),
            (raw(r#"{"typ":"JWT"}"#, "{}", &sig32), Failure::BadHeader),
            (
                raw(r#"{"alg":["HS256"]}"#, "{}", &sig32),
                Failure::BadHeader,
            ),
            (
                raw(r#"{"alg":"HS256","crit":["exp"],"exp":1}"#, "{}", &sig32),
                Failure::BadHeader,
            ),
            (
                raw(r#"{"alg":"HS256","crit":[]}"#, "{}", &sig32),
                Failure::BadHeader,
            ),
            (
                raw(r#"{"alg":"HS256","b64":false}"#, "{}", &sig32),
                Failure::BadHeader,
            ),
            (
                raw(r#"{"alg":"HS256","enc":"A128GCM"}"#, "{}", &sig32),
                Failure::BadHeader,
            ),
            (
                raw(r#"{"alg":"HS256","kid":7}"#, "{}", &sig32),
                Failure::BadHeader,
            ),
            (
                raw(r#"{"alg":"HS256","typ":"JOSE+JSON"}"#, "{}", &sig32),
                Failure::BadHeader,
            ),
            (
                raw(r#"{"alg":"HS256","cty":"JWT"}"#, "{}", &sig32),
                Failure::BadHeader,
            ),
            (
                raw(r#"{"alg":"HS256","alg":"none"}"#, "{}", &sig32),
                Failure::BadHeader,
            ),
            (raw(r#"["HS256"]"#, "{}", &sig32), Failure::BadHeader),
            (
                raw(r#"{"alg":"HS256"}"#, r#"{"sub":"a","sub":"b"}"#, &sig32),
                Failure::BadClaims,
            ),
            (
                raw(r#"{"alg":"HS256"}"#, r#"[1]"#, &sig32),
                Failure::BadClaims,
            ),
            (
                raw(r#"{"alg":"HS256"}"#, r#""text""#, &sig32),
                Failure::BadClaims,
            ),
            (
                raw(r#"{"alg":"HS256"}"#, "not json", &sig32),
                Failure::BadClaims,
            ),
            (
                raw(
                    r#"{"alg":"HS256"}"#,
                    &("{\"a\":".repeat(40) + "1" + &"}".repeat(40)),
                    &sig32,
                ),
                Failure::BadClaims,
            ),
            (
                raw(r#"{"alg":"HS256"}"#, "{}", &[1u8; 31]),
                Failure::BadSignature,
            ),
            (
                raw(r#"{"alg":"ES256"}"#, "{}", &[1u8; 72]),
                Failure::BadSignature,
            ),
            (
                raw(r#"{"alg":"HS256"}"#, "{}", &sig32) + ".x",
                Failure::Malformed,
            ),
            ("a.b".to_string(), Failure::Malformed),
            ("".to_string(), Failure::Malformed),
        ];
        for (t, want) in cases {
            assert_eq!(decode(&t, 8192).unwrap_err(), want, "{t}");
        }
        // invalid UTF-8 in the payload
        let t = format!(
            "{}.{}.{}",
            seg(&json!({"alg":"HS256"})),
            URL_SAFE_NO_PAD.encode(b"{\"a\":\"\xff\"}"),
            URL_SAFE_NO_PAD.encode(sig32)
        );
        assert_eq!(decode(&t, 8192).unwrap_err(), Failure::BadClaims);
    }

    #[test]
    fn base64_must_be_strict() {
        let h = seg(&json!({"alg":"HS256"}));
        let p = seg(&json!({"a":1}));
        let s = URL_SAFE_NO_PAD.encode([1u8; 32]);
        assert!(decode(&format!("{h}.{p}.{s}"), 8192).is_ok());
        assert_eq!(
            decode(&format!("{h}=.{p}.{s}"), 8192).unwrap_err(),
            Failure::Malformed
        );
        assert_eq!(
            decode(&format!("{h}.{p}.{s}="), 8192).unwrap_err(),
            Failure::Malformed
        );
        let std_alpha = s.replace('_', "/").replace('-', "+");
        let s2 = URL_SAFE_NO_PAD.encode([0xfbu8; 32]);
        assert!(s2.contains('-') || s2.contains('_'));
        assert_eq!(
            decode(
                &format!("{h}.{p}.{}", s2.replace('-', "+").replace('_', "/")),
                8192
            )
            .unwrap_err(),
            Failure::Malformed
        );
        let _ = std_alpha;
        // Non-canonical trailing bits in the last character (re-encoded signature).
        let mut chars: Vec<char> = s.chars().collect();
        let last = chars.pop().unwrap();
        let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let idx = alphabet.find(last).unwrap();
        let bumped = alphabet.chars().nth(idx ^ 1).unwrap();
        let noncanon: String = chars.into_iter().chain(std::iter::once(bumped)).collect();
        assert_eq!(
            decode(&format!("{h}.{p}.{noncanon}"), 8192).unwrap_err(),
            Failure::Malformed
        );
        assert_eq!(
            decode(&format!("{h} .{p}.{s}"), 8192).unwrap_err(),
            Failure::Malformed
        );
        assert_eq!(
            decode(&format!("{h}.{p}.{s}"), 20).unwrap_err(),
            Failure::TooLarge
        );
    }

    #[test]
    fn missing_never_outranks_a_verdict_on_the_token() {
        for f in Failure::ALL {
            if f != Failure::Missing {
                assert!(f.rank() > Failure::Missing.rank(), "{f:?}");
            }
        }
    }
}
