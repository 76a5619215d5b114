//! Signature verification: which keys may verify a token, and the check itself.

use crate::hostcrypto::{self, HostAlgs};
use crate::jwks::{Alg, Key, KeySet, Material};
use crate::token::{Decoded, Failure};
use jwt_simple::prelude::*;
use meshwall_core::Host;

/// Which path checked a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// The host's `verify_signature` (BoringSSL).
    Host,
    /// jwt-simple, in the module.
    Wasm,
}

/// What a signature check needs besides the key and the token.
#[derive(Debug, Clone, Copy)]
pub struct Check {
    pub now: u64,
    pub skew: u64,
    pub max_bytes: usize,
    pub host_algs: HostAlgs,
}

/// Verifies `tok` with `key`: by the host when it verifies `tok.alg` (and the key has a host
/// form), else by jwt-simple. Same verdict either way: on the host path, whatever jwt-simple
/// checks besides the signature is checked here first ([`rest_accepted`]); a token it cannot
/// judge that way (a `salt` header), or a host that fails to answer, goes to jwt-simple.
pub fn verify(key: &Key, tok: &Decoded<'_>, c: &Check, host: &dyn Host) -> (bool, Path) {
    if let (true, Some(hk)) = (c.host_algs.uses(tok.alg), &key.host) {
        if !tok.salt {
            if !rest_accepted(tok, c) {
                return (false, Path::Host);
            }
            match hostcrypto::verify(hk, tok.alg, tok.signed.as_bytes(), &tok.signature, host) {
                Ok(ok) => return (ok, Path::Host),
                Err(e) => {
                    meshwall_core::policy_log!(
                        warn,
                        crate::policy::JwtPolicy,
                        "host signature check failed, using the module: {e}"
                    )
                }
            }
        }
    }
    (
        verify_with(key, tok, c.now, c.skew, c.max_bytes),
        Path::Wasm,
    )
}

/// Everything but the signature that jwt-simple's `verify_token` refuses, with the options of
/// [`verify_with`]: the token length, its header (`Token::decode_metadata` reads it as
/// `verify_token` does: e.g. a non-string `jwk` or `x5u` fails), its claims as
/// `JWTClaims` (e.g. a non-string `nonce`, a negative `exp`), and `exp` with the same clock
/// and tolerance arithmetic. `crit`, `typ` and the algorithm name were checked by `decode`
/// exactly as jwt-simple checks them.
pub fn rest_accepted(tok: &Decoded<'_>, c: &Check) -> bool {
    if tok.token.len() > c.max_bytes || Token::decode_metadata(tok.token).is_err() {
        return false;
    }
    let Ok(claims) = serde_json::from_slice::<JWTClaims<NoCustomClaims>>(&tok.payload_json) else {
        return false;
    };
    let now = UnixTimeStamp::from_secs(c.now);
    let tolerance = jwt_simple::prelude::Duration::from_secs(c.skew);
    match claims.expires_at {
        Some(exp) => now >= tolerance && now - tolerance <= exp,
        None => true,
    }
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
