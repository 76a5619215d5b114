//! One compact JWS: strict decoding, claim checks and signature verification.
//!
//! Everything cheap is checked before any cryptography: shape, base64url (canonical, unpadded),
//! header (strict JSON, supported `alg`, no `crit`), payload (strict JSON object, claim types,
//! times, issuer, audience, subject). Keys named by a token header (`jwk`, `jku`, `x5u`,
//! `x5c`) are never used: keys come only from the configured JWKS.

use crate::json;
use crate::jwks::{Alg, Key, KeySet, Material};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jwt_simple::prelude::*;
use serde_json::{Map, Value};

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
    })
}

/// What a provider demands of the claims.
#[derive(Debug, Clone, Default)]
pub struct ClaimRules {
    pub issuer: Option<String>,
    pub audiences: Vec<String>,
    pub subjects: Vec<SubjectMatch>,
    pub require_expiration: bool,
    pub max_lifetime_seconds: Option<u64>,
    pub clock_skew_seconds: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectMatch {
    Exact(String),
    Prefix(String),
}

/// Largest NumericDate accepted: 9999-12-31T23:59:59Z. Beyond it, `exp` would only mean
/// "never expires" (jwt-simple saturates such values), defeating `require_expiration`.
pub const MAX_NUMERIC_DATE: u64 = 253_402_300_799;

/// A NumericDate: a non-negative JSON number of seconds (fractions truncated), at most
/// [`MAX_NUMERIC_DATE`] whether written as an integer or not.
fn numeric_date(v: Option<&Value>) -> Result<Option<u64>, Failure> {
    match v {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(u) = n.as_u64() {
                if u > MAX_NUMERIC_DATE {
                    return Err(Failure::BadClaims);
                }
                Ok(Some(u))
            } else if n.is_i64() {
                Err(Failure::BadClaims)
            } else {
                match n.as_f64() {
                    Some(f) if (0.0..=MAX_NUMERIC_DATE as f64).contains(&f) => Ok(Some(f as u64)),
                    _ => Err(Failure::BadClaims),
                }
            }
        }
        Some(_) => Err(Failure::BadClaims),
    }
}

fn opt_str<'a>(payload: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, Failure> {
    match payload.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Failure::BadClaims),
    }
}

/// Checks registered claims against `rules` at `now` (seconds). Returns the latest second
/// at which the token is still accepted (for the cache), `u64::MAX` without `exp`.
pub fn check_claims(
    payload: &Map<String, Value>,
    rules: &ClaimRules,
    now: u64,
) -> Result<u64, Failure> {
    let skew = rules.clock_skew_seconds;
    let exp = numeric_date(payload.get("exp"))?;
    let nbf = numeric_date(payload.get("nbf"))?;
    let iat = numeric_date(payload.get("iat"))?;
    let iss = opt_str(payload, "iss")?;
    let sub = opt_str(payload, "sub")?;
    opt_str(payload, "jti")?;
    let aud: Option<Vec<&str>> = match payload.get("aud") {
        None => None,
        Some(Value::String(s)) => Some(vec![s.as_str()]),
        Some(Value::Array(a)) => {
            let mut out = Vec::with_capacity(a.len());
            for v in a {
                out.push(v.as_str().ok_or(Failure::BadClaims)?);
            }
            Some(out)
        }
        Some(_) => return Err(Failure::BadClaims),
    };
    if let Some(want) = &rules.issuer {
        if iss != Some(want.as_str()) {
            return Err(Failure::Issuer);
        }
    }
    if exp.is_none() && (rules.require_expiration || rules.max_lifetime_seconds.is_some()) {
        return Err(Failure::MissingExp);
    }
    if let Some(exp) = exp {
        if now > exp.saturating_add(skew) {
            return Err(Failure::Expired);
        }
    }
    if let Some(nbf) = nbf {
        if nbf > now.saturating_add(skew) {
            return Err(Failure::NotYetValid);
        }
    }
    if let Some(iat) = iat {
        if iat > now.saturating_add(skew) {
            return Err(Failure::IssuedInFuture);
        }
    }
    if let (Some(max), Some(exp)) = (rules.max_lifetime_seconds, exp) {
        let start = iat.or(nbf).unwrap_or(now);
        if exp.saturating_sub(start) > max {
            return Err(Failure::LifetimeTooLong);
        }
    }
    if !rules.audiences.is_empty() {
        let ok =
            aud.is_some_and(|list| list.iter().any(|a| rules.audiences.iter().any(|w| w == a)));
        if !ok {
            return Err(Failure::Audience);
        }
    }
    if !rules.subjects.is_empty() {
        let ok = sub.is_some_and(|s| {
            rules.subjects.iter().any(|m| match m {
                SubjectMatch::Exact(e) => s == e,
                SubjectMatch::Prefix(p) => s.starts_with(p.as_str()),
            })
        });
        if !ok {
            return Err(Failure::Subject);
        }
    }
    Ok(exp.map(|e| e.saturating_add(skew)).unwrap_or(u64::MAX))
}

/// Picks the keys that may verify `tok` from `set`: by `kid` when the token names one (an
/// unknown `kid` never falls back to other keys), otherwise every key whose type fits.
pub fn candidate_keys<'k>(set: &'k KeySet, tok: &Decoded<'_>) -> Result<Vec<&'k Key>, Failure> {
    let keys: Vec<&Key> = match &tok.kid {
        Some(kid) => {
            let named: Vec<&Key> = set
                .keys
                .iter()
                .filter(|k| k.kid.as_deref() == Some(kid.as_str()))
                .collect();
            if named.is_empty() {
                return Err(Failure::UnknownKid);
            }
            named.into_iter().filter(|k| k.fits(tok.alg)).collect()
        }
        None => set.keys.iter().filter(|k| k.fits(tok.alg)).collect(),
    };
    if keys.is_empty() {
        return Err(Failure::NoFittingKey);
    }
    Ok(keys)
}

/// Verifies the signature of `tok` with `key` through jwt-simple. The claims were checked
/// already; jwt-simple re-checks `exp`/`nbf`/`iat` with the same clock and skew.
/// ECDSA: `r`/`s` of zero or ≥ n fail; the high-s twin `(r, n − s)` of a valid signature
/// verifies too (RFC 7518 does not require low-s), so nothing may key on signature bytes.
pub fn verify_with(key: &Key, tok: &Decoded<'_>, now: u64, skew: u64, max_bytes: usize) -> bool {
    let opts = || {
        Some(VerificationOptions {
            accept_future: true,
            time_tolerance: Some(jwt_simple::prelude::Duration::from_secs(skew)),
            artificial_time: Some(UnixTimeStamp::from_secs(now)),
            max_token_length: Some(max_bytes),
            ..Default::default()
        })
    };
    let t = tok.token;
    match (&key.material, tok.alg) {
        (Material::Rsa(k), Alg::RS256) => k
            .rs256
            .as_ref()
            .is_some_and(|k| k.verify_token::<NoCustomClaims>(t, opts()).is_ok()),
        (Material::Rsa(k), Alg::RS384) => k
            .rs384
            .as_ref()
            .is_some_and(|k| k.verify_token::<NoCustomClaims>(t, opts()).is_ok()),
        (Material::Rsa(k), Alg::RS512) => k
            .rs512
            .as_ref()
            .is_some_and(|k| k.verify_token::<NoCustomClaims>(t, opts()).is_ok()),
        (Material::Rsa(k), Alg::PS256) => k
            .ps256
            .as_ref()
            .is_some_and(|k| k.verify_token::<NoCustomClaims>(t, opts()).is_ok()),
        (Material::Rsa(k), Alg::PS384) => k
            .ps384
            .as_ref()
            .is_some_and(|k| k.verify_token::<NoCustomClaims>(t, opts()).is_ok()),
        (Material::Rsa(k), Alg::PS512) => k
            .ps512
            .as_ref()
            .is_some_and(|k| k.verify_token::<NoCustomClaims>(t, opts()).is_ok()),
        (Material::P256(k), Alg::ES256) => k.verify_token::<NoCustomClaims>(t, opts()).is_ok(),
        (Material::P384(k), Alg::ES384) => k.verify_token::<NoCustomClaims>(t, opts()).is_ok(),
        (Material::Ed25519(k), Alg::EdDSA) => k.verify_token::<NoCustomClaims>(t, opts()).is_ok(),
        (Material::Hmac(s), Alg::HS256) => HS256Key::from_bytes(s)
            .verify_token::<NoCustomClaims>(t, opts())
            .is_ok(),
        (Material::Hmac(s), Alg::HS384) => HS384Key::from_bytes(s)
            .verify_token::<NoCustomClaims>(t, opts())
            .is_ok(),
        (Material::Hmac(s), Alg::HS512) => HS512Key::from_bytes(s)
            .verify_token::<NoCustomClaims>(t, opts())
            .is_ok(),
        _ => false,
    }
}

/// Looks a claim up by exact name first (names may contain dots, e.g. URLs), then as a
/// dotted path through nested objects.
pub fn claim<'a>(payload: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(v) = payload.get(name) {
        return Some(v);
    }
    let mut parts = name.split('.');
    let mut cur = payload.get(parts.next()?)?;
    for part in parts {
        cur = cur.as_object()?.get(part)?;
    }
    Some(cur)
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => None,
        other => serde_json::to_string(other).ok(),
    }
}

/// A claim rendered as a header value: strings as-is, numbers and booleans as JSON text,
/// arrays joined with commas, objects as compact JSON. `None` when absent, null, or when the
/// result would not be a safe header value (control characters).
pub fn claim_header_value(v: &Value) -> Option<String> {
    let text = match v {
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().filter_map(scalar_text).collect();
            parts.join(",")
        }
        other => scalar_text(other)?,
    };
    if text.chars().any(|c| c.is_control() && c != '\t') || text.len() > 8192 {
        return None;
    }
    Some(text.trim().to_string())
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

    fn rules() -> ClaimRules {
        ClaimRules {
            issuer: Some("https://iss".into()),
            audiences: vec!["api".into(), "web".into()],
            subjects: vec![],
            require_expiration: true,
            max_lifetime_seconds: None,
            clock_skew_seconds: 60,
        }
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn claim_checks() {
        let now = 1_000_000;
        let ok = json!({"iss":"https://iss","aud":"api","exp":now + 10,"iat":now,"nbf":now});
        assert_eq!(check_claims(&obj(ok), &rules(), now), Ok(now + 70));
        let cases = [
            (
                json!({"iss":"https://iss","aud":"api"}),
                Failure::MissingExp,
            ),
            (
                json!({"iss":"https://iss","aud":"api","exp":now - 61}),
                Failure::Expired,
            ),
            (
                json!({"iss":"https://iss","aud":"api","exp":now + 10,"nbf":now + 61}),
                Failure::NotYetValid,
            ),
            (
                json!({"iss":"https://iss","aud":"api","exp":now + 10,"iat":now + 61}),
                Failure::IssuedInFuture,
            ),
            (
                json!({"iss":"https://other","aud":"api","exp":now + 10}),
                Failure::Issuer,
            ),
            (json!({"aud":"api","exp":now + 10}), Failure::Issuer),
            (
                json!({"iss":"https://iss","aud":"other","exp":now + 10}),
                Failure::Audience,
            ),
            (
                json!({"iss":"https://iss","aud":[],"exp":now + 10}),
                Failure::Audience,
            ),
            (
                json!({"iss":"https://iss","exp":now + 10}),
                Failure::Audience,
            ),
            (
                json!({"iss":"https://iss","aud":[1],"exp":now + 10}),
                Failure::BadClaims,
            ),
            (
                json!({"iss":"https://iss","aud":{"a":1},"exp":now + 10}),
                Failure::BadClaims,
            ),
            (
                json!({"iss":"https://iss","aud":"api","exp":"soon"}),
                Failure::BadClaims,
            ),
            (
                json!({"iss":"https://iss","aud":"api","exp":-5}),
                Failure::BadClaims,
            ),
            (
                json!({"iss":"https://iss","aud":"api","exp":now + 10,"nbf":true}),
                Failure::BadClaims,
            ),
            (
                json!({"iss":"https://iss","aud":"api","exp":now + 10,"sub":5}),
                Failure::BadClaims,
            ),
            (
                json!({"iss":["https://iss"],"aud":"api","exp":now + 10}),
                Failure::BadClaims,
            ),
            (
                json!({"iss":"https://iss","aud":"api","exp":now + 10,"jti":{}}),
                Failure::BadClaims,
            ),
        ];
        for (p, want) in cases {
            assert_eq!(
                check_claims(&obj(p.clone()), &rules(), now),
                Err(want),
                "{p}"
            );
        }
        // Skew: just inside.
        let edge = json!({"iss":"https://iss","aud":["x","web"],"exp":now - 60,"nbf":now + 60,"iat":now + 60});
        assert!(check_claims(&obj(edge), &rules(), now).is_ok());
        // Fractional NumericDate.
        let frac = json!({"iss":"https://iss","aud":"api","exp":(now as f64) + 0.5});
        assert!(check_claims(&obj(frac), &rules(), now).is_ok());
    }

    #[test]
    fn huge_numeric_dates_are_malformed_not_never_expiring() {
        let now = 1_000_000;
        let with_exp = |exp: Value| obj(json!({"iss":"https://iss","aud":"api","exp":exp}));
        let last = MAX_NUMERIC_DATE;
        assert_eq!(
            check_claims(&with_exp(json!(last)), &rules(), now),
            Ok(last + 60)
        );
        assert!(check_claims(&with_exp(json!(last as f64)), &rules(), now).is_ok());
        for exp in [
            json!(last + 1),
            json!(1u64 << 63),
            json!(u64::MAX),
            json!(1.0e20),
            json!((last + 10) as f64),
        ] {
            assert_eq!(
                check_claims(&with_exp(exp.clone()), &rules(), now),
                Err(Failure::BadClaims),
                "{exp}"
            );
        }
        // nbf and iat follow the same rule.
        for name in ["nbf", "iat"] {
            let mut p = with_exp(json!(now + 10));
            p.insert(name.into(), json!(u64::MAX));
            assert_eq!(
                check_claims(&p, &rules(), now),
                Err(Failure::BadClaims),
                "{name}"
            );
        }
    }

    #[test]
    fn missing_never_outranks_a_verdict_on_the_token() {
        for f in Failure::ALL {
            if f != Failure::Missing {
                assert!(f.rank() > Failure::Missing.rank(), "{f:?}");
            }
        }
    }

    #[test]
    fn lifetime_and_subjects() {
        let now = 1_000_000;
        let mut r = rules();
        r.max_lifetime_seconds = Some(3600);
        r.subjects = vec![
            SubjectMatch::Exact("alice".into()),
            SubjectMatch::Prefix("svc:".into()),
        ];
        let base = |extra: Value| {
            let mut m = obj(json!({"iss":"https://iss","aud":"api"}));
            m.extend(obj(extra));
            m
        };
        assert!(check_claims(
            &base(json!({"exp":now + 3600,"iat":now,"sub":"alice"})),
            &r,
            now
        )
        .is_ok());
        assert!(check_claims(&base(json!({"exp":now + 100,"sub":"svc:billing"})), &r, now).is_ok());
        assert_eq!(
            check_claims(
                &base(json!({"exp":now + 3601,"iat":now,"sub":"alice"})),
                &r,
                now
            ),
            Err(Failure::LifetimeTooLong)
        );
        assert_eq!(
            check_claims(&base(json!({"exp":now + 7200,"sub":"alice"})), &r, now),
            Err(Failure::LifetimeTooLong)
        );
        assert_eq!(
            check_claims(&base(json!({"exp":now + 10,"sub":"bob"})), &r, now),
            Err(Failure::Subject)
        );
        assert_eq!(
            check_claims(&base(json!({"exp":now + 10})), &r, now),
            Err(Failure::Subject)
        );
        r.require_expiration = false;
        r.max_lifetime_seconds = None;
        assert_eq!(
            check_claims(&base(json!({"sub":"alice"})), &r, now),
            Ok(u64::MAX)
        );
    }

    #[test]
    fn claims_by_name_and_path() {
        let p = obj(json!({"a":{"b":{"c":"deep"}},"https://x.io/roles":["r1"],"n":5}));
        assert_eq!(claim(&p, "a.b.c"), Some(&json!("deep")));
        assert_eq!(claim(&p, "https://x.io/roles"), Some(&json!(["r1"])));
        assert_eq!(claim(&p, "a.x"), None);
        assert_eq!(claim(&p, "n.x"), None);
        assert_eq!(
            claim_header_value(&json!(["a", "b", 3, true])).as_deref(),
            Some("a,b,3,true")
        );
        assert_eq!(claim_header_value(&json!(42)).as_deref(), Some("42"));
        assert_eq!(
            claim_header_value(&json!({"k":"v"})).as_deref(),
            Some("{\"k\":\"v\"}")
        );
        assert_eq!(claim_header_value(&json!("a\r\nx-admin: 1")), None);
        assert_eq!(claim_header_value(&json!(null)), None);
    }
}
