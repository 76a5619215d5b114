//! JSON Web Key Sets: parsed once per change into ready-to-use verification keys.
//!
//! Key rules: RSA keys need 2048..=4096 bits (exponent 65537, jwt-simple's limit), HMAC
//! secrets at least 32 bytes, EC keys P-256 or P-384 (points checked on the curve), OKP keys
//! Ed25519. Anything else is refused: for an inline JWKS that is a configuration error; a
//! fetched JWKS drops the key (and is refused when no key is left).

use crate::hostcrypto::HostKey;
use crate::json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jwt_simple::prelude::*;
use serde_json::{Map, Value};

/// Most keys accepted in one JWKS.
pub const MAX_KEYS: usize = 64;
/// Largest JWKS document accepted, in bytes.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
pub const MIN_HMAC_BYTES: usize = 32;

/// The signature algorithms meshwall verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
    HS256,
    HS384,
    HS512,
}

pub const ALL_ALGS: [Alg; 12] = [
    Alg::RS256,
    Alg::RS384,
    Alg::RS512,
    Alg::PS256,
    Alg::PS384,
    Alg::PS512,
    Alg::ES256,
    Alg::ES384,
    Alg::EdDSA,
    Alg::HS256,
    Alg::HS384,
    Alg::HS512,
];

impl Alg {
    /// Exact (case-sensitive) JOSE names. `none` in any spelling is not among them.
    pub fn from_name(s: &str) -> Option<Alg> {
        Some(match s {
            "RS256" => Alg::RS256,
            "RS384" => Alg::RS384,
            "RS512" => Alg::RS512,
            "PS256" => Alg::PS256,
            "PS384" => Alg::PS384,
            "PS512" => Alg::PS512,
            "ES256" => Alg::ES256,
            "ES384" => Alg::ES384,
            // RFC 9864 fully-specified name for the same algorithm.
            "EdDSA" | "Ed25519" => Alg::EdDSA,
            "HS256" => Alg::HS256,
            "HS384" => Alg::HS384,
            "HS512" => Alg::HS512,
            _ => return None,
        })
    }

    /// Exact signature length in bytes, when fixed by the algorithm.
    pub fn signature_len(self) -> Option<usize> {
        match self {
            Alg::ES256 | Alg::EdDSA | Alg::HS512 => Some(64),
            Alg::ES384 => Some(96),
            Alg::HS256 => Some(32),
            Alg::HS384 => Some(48),
            _ => None,
        }
    }
}

/// The algorithms one RSA key verifies.
const RSA_ALGS: [Alg; 6] = [
    Alg::RS256,
    Alg::RS384,
    Alg::RS512,
    Alg::PS256,
    Alg::PS384,
    Alg::PS512,
];
const HMAC_ALGS: [Alg; 3] = [Alg::HS256, Alg::HS384, Alg::HS512];

/// Verification key material, one variant per key family.
#[derive(Debug)]
pub enum Material {
    Rsa(Box<RsaKeys>),
    P256(ES256PublicKey),
    P384(ES384PublicKey),
    Ed25519(Ed25519PublicKey),
    Hmac(Vec<u8>),
}

/// One RSA key, ready for each algorithm it may verify (only the JWK's `alg` when it has one).
#[derive(Debug, Default)]
pub struct RsaKeys {
    pub rs256: Option<RS256PublicKey>,
    pub rs384: Option<RS384PublicKey>,
    pub rs512: Option<RS512PublicKey>,
    pub ps256: Option<PS256PublicKey>,
    pub ps384: Option<PS384PublicKey>,
    pub ps512: Option<PS512PublicKey>,
}

#[derive(Debug)]
pub struct Key {
    pub kid: Option<String>,
    /// The JWK's `alg`, when present: the only algorithm this key verifies.
    pub alg: Option<Alg>,
    pub material: Material,
    /// DER public key (and RSA modulus) for the host's `verify_signature`, made once here
    /// (RSA and EC keys only).
    pub host: Option<HostKey>,
}

impl Key {
    /// True when this key may verify a token signed with `alg`: same family, and the key's
    /// own `alg` (if any) equal to it. An RSA or EC key never verifies an HMAC token.
    pub fn fits(&self, alg: Alg) -> bool {
        if self.alg.is_some_and(|a| a != alg) {
            return false;
        }
        match &self.material {
            Material::Rsa(_) => RSA_ALGS.contains(&alg),
            Material::P256(_) => alg == Alg::ES256,
            Material::P384(_) => alg == Alg::ES384,
            Material::Ed25519(_) => alg == Alg::EdDSA,
            Material::Hmac(_) => HMAC_ALGS.contains(&alg),
        }
    }
}

/// A parsed JWKS.
#[derive(Debug, Default)]
pub struct KeySet {
    pub keys: Vec<Key>,
    /// Changes whenever the key set changes (for cache invalidation).
    pub version: u64,
}

impl KeySet {
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }
}

/// A key the JWKS had but meshwall refuses, with the member path (`keys[2].n`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    pub field: String,
    pub reason: String,
}

fn kerr(field: impl Into<String>, reason: impl Into<String>) -> KeyError {
    KeyError {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Parses a JWKS document. `strict`: any refused key is an error (inline JWKS); otherwise
/// refused keys are skipped and reported in the second value (fetched JWKS).
pub fn parse_jwks(bytes: &[u8], strict: bool) -> Result<(KeySet, Vec<KeyError>), KeyError> {
    if bytes.len() > MAX_JWKS_BYTES {
        return Err(kerr("", format!("JWKS larger than {MAX_JWKS_BYTES} bytes")));
    }
    let doc = json::parse_object(bytes, json::MAX_DEPTH)
        .map_err(|e| kerr("", format!("invalid JWKS JSON: {e}")))?;
    parse_jwks_value(&doc, strict)
}

pub fn parse_jwks_value(
    doc: &Map<String, Value>,
    strict: bool,
) -> Result<(KeySet, Vec<KeyError>), KeyError> {
    let Some(Value::Array(keys)) = doc.get("keys") else {
        return Err(kerr("keys", "a JWKS needs a `keys` array"));
    };
    if keys.len() > MAX_KEYS {
        return Err(kerr("keys", format!("more than {MAX_KEYS} keys")));
    }
    let mut set = KeySet::default();
    let mut skipped = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let field = format!("keys[{i}]");
        match parse_key(k) {
            Ok(key) => {
                if let Some(kid) = &key.kid {
                    // Two keys with one kid and overlapping algorithms would make the choice
                    // ambiguous.
                    let clash = set.keys.iter().any(|o| {
                        o.kid.as_deref() == Some(kid.as_str())
                            && ALL_ALGS.iter().any(|a| o.fits(*a) && key.fits(*a))
                    });
                    if clash {
                        let e = kerr(
                            format!("{field}.kid"),
                            "another key has the same kid for the same algorithm",
                        );
                        if strict {
                            return Err(e);
                        }
                        skipped.push(e);
                        continue;
                    }
                }
                set.keys.push(key);
            }
            Err(e) => {
                let e = KeyError {
                    field: join(&field, &e.field),
                    reason: e.reason,
                };
                if strict {
                    return Err(e);
                }
                skipped.push(e);
            }
        }
    }
    if set.keys.is_empty() {
        return Err(kerr("keys", "no usable key"));
    }
    Ok((set, skipped))
}

fn join(parent: &str, child: &str) -> String {
    if child.is_empty() {
        parent.to_string()
    } else {
        format!("{parent}.{child}")
    }
}

fn str_member<'a>(o: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, KeyError> {
    match o.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(kerr(name, "must be a string")),
    }
}

fn b64_member(o: &Map<String, Value>, name: &str) -> Result<Vec<u8>, KeyError> {
    let s = str_member(o, name)?.ok_or_else(|| kerr(name, "missing"))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(s.as_bytes())
        .map_err(|_| kerr(name, "not unpadded base64url"))?;
    if bytes.is_empty() {
        return Err(kerr(name, "empty"));
    }
    Ok(bytes)
}

/// Parses one JWK (public keys and symmetric secrets only).
pub fn parse_key(v: &Value) -> Result<Key, KeyError> {
    let Value::Object(o) = v else {
        return Err(kerr("", "a JWK must be a JSON object"));
    };
    let kty = str_member(o, "kty")?.ok_or_else(|| kerr("kty", "missing"))?;
    let kid = str_member(o, "kid")?.map(str::to_string);
    if kid.as_deref() == Some("") {
        return Err(kerr("kid", "must not be empty"));
    }
    if let Some(u) = str_member(o, "use")? {
        if u != "sig" {
            return Err(kerr(
                "use",
                format!("`{u}` keys do not verify signatures (expected `sig`)"),
            ));
        }
    }
    match o.get("key_ops") {
        None => {}
        Some(Value::Array(ops)) if ops.iter().any(|op| op.as_str() == Some("verify")) => {}
        Some(Value::Array(_)) => return Err(kerr("key_ops", "does not include `verify`")),
        Some(_) => return Err(kerr("key_ops", "must be an array")),
    }
    let alg = match str_member(o, "alg")? {
        None => None,
        Some(a) => Some(
            Alg::from_name(a).ok_or_else(|| kerr("alg", format!("unsupported algorithm `{a}`")))?,
        ),
    };
    let material = match kty {
        "RSA" => {
            for private in ["d", "p", "q", "dp", "dq", "qi", "oth"] {
                if o.contains_key(private) {
                    return Err(kerr(
                        private,
                        "private key material does not belong in a JWKS",
                    ));
                }
            }
            let n = b64_member(o, "n")?;
            let e = b64_member(o, "e")?;
            // Some issuers pad the modulus with a zero byte: ignore leading zeros.
            let first = n.iter().position(|b| *b != 0).unwrap_or(n.len());
            let n = n.get(first..).unwrap_or_default().to_vec();
            let bits = (n.len() * 8)
                .saturating_sub(n.first().map(|b| b.leading_zeros() as usize).unwrap_or(0));
            if bits < 2048 {
                return Err(kerr(
                    "n",
                    format!("RSA key of {bits} bits is too weak (minimum 2048)"),
                ));
            }
            let algs: Vec<Alg> = match alg {
                Some(a) if RSA_ALGS.contains(&a) => vec![a],
                Some(_) => return Err(kerr("alg", "does not fit an RSA key")),
                None => RSA_ALGS.to_vec(),
            };
            let mut keys = RsaKeys::default();
            let bad = |err: jwt_simple::Error| kerr("n", format!("invalid RSA key: {err}"));
            for a in algs {
                match a {
                    Alg::RS256 => {
                        keys.rs256 = Some(RS256PublicKey::from_components(&n, &e).map_err(bad)?)
                    }
                    Alg::RS384 => {
                        keys.rs384 = Some(RS384PublicKey::from_components(&n, &e).map_err(bad)?)
                    }
                    Alg::RS512 => {
                        keys.rs512 = Some(RS512PublicKey::from_components(&n, &e).map_err(bad)?)
                    }
                    Alg::PS256 => {
                        keys.ps256 = Some(PS256PublicKey::from_components(&n, &e).map_err(bad)?)
                    }
                    Alg::PS384 => {
                        keys.ps384 = Some(PS384PublicKey::from_components(&n, &e).map_err(bad)?)
                    }
                    Alg::PS512 => {
                        keys.ps512 = Some(PS512PublicKey::from_components(&n, &e).map_err(bad)?)
                    }
                    _ => {}
                }
            }
            Material::Rsa(Box::new(keys))
        }
        "EC" => {
            if o.contains_key("d") {
                return Err(kerr("d", "private key material does not belong in a JWKS"));
            }
            let crv = str_member(o, "crv")?.ok_or_else(|| kerr("crv", "missing"))?;
            let x = b64_member(o, "x")?;
            let y = b64_member(o, "y")?;
            let (size, want) = match crv {
                "P-256" => (32, Alg::ES256),
                "P-384" => (48, Alg::ES384),
                other => return Err(kerr("crv", format!("unsupported curve `{other}`"))),
            };
            if alg.is_some_and(|a| a != want) {
                return Err(kerr("alg", format!("does not fit curve {crv}")));
            }
            if x.len() != size || y.len() != size {
                return Err(kerr("x", format!("coordinates must be {size} bytes")));
            }
            let mut point = Vec::with_capacity(1 + 2 * size);
            point.push(4u8);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            let bad = |_| kerr("x", "not a point on the curve");
            if size == 32 {
                Material::P256(ES256PublicKey::from_bytes(&point).map_err(bad)?)
            } else {
                Material::P384(ES384PublicKey::from_bytes(&point).map_err(bad)?)
            }
        }
        "OKP" => {
            if o.contains_key("d") {
                return Err(kerr("d", "private key material does not belong in a JWKS"));
            }
            let crv = str_member(o, "crv")?.ok_or_else(|| kerr("crv", "missing"))?;
            if crv != "Ed25519" {
                return Err(kerr("crv", format!("unsupported curve `{crv}`")));
            }
            if alg.is_some_and(|a| a != Alg::EdDSA) {
                return Err(kerr("alg", "does not fit an Ed25519 key"));
            }
            let x = b64_member(o, "x")?;
            if x.len() != 32 {
                return Err(kerr("x", "Ed25519 public keys are 32 bytes"));
            }
            Material::Ed25519(
                Ed25519PublicKey::from_bytes(&x).map_err(|_| kerr("x", "invalid Ed25519 key"))?,
            )
        }
        "oct" => {
            let k = b64_member(o, "k")?;
            if k.len() < MIN_HMAC_BYTES {
                return Err(kerr(
                    "k",
                    format!(
                        "HMAC secret of {} bytes is too weak (minimum {MIN_HMAC_BYTES})",
                        k.len()
                    ),
                ));
            }
            if alg.is_some_and(|a| !HMAC_ALGS.contains(&a)) {
                return Err(kerr("alg", "does not fit a symmetric key"));
            }
            Material::Hmac(k)
        }
        other => return Err(kerr("kty", format!("unsupported key type `{other}`"))),
    };
    let host = host_key(&material);
    Ok(Key {
        kid,
        alg,
        material,
        host,
    })
}

/// The host's form of an RSA or EC key (`None` when it cannot be made: the module verifies).
fn host_key(m: &Material) -> Option<HostKey> {
    match m {
        Material::Rsa(k) => {
            let (spki, n) = if let Some(k) = &k.rs256 {
                (k.to_der().ok()?, k.to_components().n)
            } else if let Some(k) = &k.rs384 {
                (k.to_der().ok()?, k.to_components().n)
            } else if let Some(k) = &k.rs512 {
                (k.to_der().ok()?, k.to_components().n)
            } else {
                return None;
            };
            let first = n.iter().position(|b| *b != 0).unwrap_or(n.len());
            Some(HostKey {
                spki,
                modulus: n.get(first..).unwrap_or_default().to_vec(),
            })
        }
        Material::P256(k) => Some(HostKey {
            spki: k.to_der().ok()?,
            modulus: Vec::new(),
        }),
        Material::P384(k) => Some(HostKey {
            spki: k.to_der().ok()?,
            modulus: Vec::new(),
        }),
        Material::Ed25519(_) | Material::Hmac(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b64(b: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(b)
    }

    fn ec_jwk() -> Value {
        let kp = ES256KeyPair::generate();
        let raw = kp.public_key().public_key().to_bytes_uncompressed();
        json!({"kty":"EC","crv":"P-256","x":b64(&raw[1..33]),"y":b64(&raw[33..65]),"kid":"e1"})
    }

    #[test]
    fn names_are_exact() {
        assert_eq!(Alg::from_name("RS256"), Some(Alg::RS256));
        assert_eq!(Alg::from_name("Ed25519"), Some(Alg::EdDSA));
        for bad in [
            "none", "None", "NONE", "nOnE", "rs256", "HS256 ", "ES512", "ES256K", "",
        ] {
            assert_eq!(Alg::from_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn families_never_cross() {
        let hmac = Key {
            kid: None,
            alg: None,
            material: Material::Hmac(vec![1; 32]),
            host: None,
        };
        assert!(hmac.fits(Alg::HS384));
        assert!(!hmac.fits(Alg::RS256));
        let ec = parse_key(&ec_jwk()).unwrap();
        assert!(ec.fits(Alg::ES256));
        for a in ALL_ALGS.iter().filter(|a| **a != Alg::ES256) {
            assert!(!ec.fits(*a), "{a:?}");
        }
        let pinned = Key {
            kid: None,
            alg: Some(Alg::HS256),
            material: Material::Hmac(vec![1; 32]),
            host: None,
        };
        assert!(pinned.fits(Alg::HS256));
        assert!(
            !pinned.fits(Alg::HS512),
            "the key's alg must equal the token's"
        );
    }

    #[test]
    fn weak_and_unknown_keys_refused() {
        let cases = [
            (json!({"kty":"oct","k":b64(&[7; 31])}), "k"),
            (json!({"kty":"RSA","n":b64(&[0xc5; 128]),"e":"AQAB"}), "n"),
            (json!({"kty":"EC","crv":"P-521","x":"AA","y":"AA"}), "crv"),
            (
                json!({"kty":"EC","crv":"secp256k1","x":"AA","y":"AA"}),
                "crv",
            ),
            (json!({"kty":"OKP","crv":"X25519","x":b64(&[1; 32])}), "crv"),
            (json!({"kty":"AKP","pub":"AA"}), "kty"),
            (json!({"kty":"oct","k":b64(&[7; 32]),"use":"enc"}), "use"),
            (json!({"kty":"oct","k":b64(&[7; 32]),"alg":"RS256"}), "alg"),
            (json!({"kty":"oct","k":b64(&[7; 32]),"alg":"none"}), "alg"),
            (
                json!({"kty":"oct","k":b64(&[7; 32]),"key_ops":["sign"]}),
                "key_ops",
            ),
            (
                json!({"kty":"oct","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0=="}),
                "k",
            ),
            (
                json!({"kty":"EC","crv":"P-256","x":b64(&[1; 32]),"y":b64(&[2; 32])}),
                "x",
            ),
            (json!({"kty":"OKP","crv":"Ed25519","x":b64(&[1; 31])}), "x"),
            (json!({"kid":"a"}), "kty"),
            (json!({"kty":"RSA","n":b64(&[0; 300]),"e":"AQAB"}), "n"),
            (json!("x"), ""),
        ];
        for (jwk, field) in cases {
            let e = parse_key(&jwk).unwrap_err();
            assert_eq!(e.field, field, "{jwk}: {e:?}");
        }
    }

    #[test]
    fn rsa_modulus_with_leading_zero_accepted() {
        let kp = RS256KeyPair::generate(2048).unwrap();
        let c = kp.public_key().to_components();
        let mut n = vec![0u8];
        n.extend_from_slice(&c.n);
        let key = parse_key(&json!({"kty":"RSA","n":b64(&n),"e":b64(&c.e),"alg":"RS256"})).unwrap();
        assert!(key.fits(Alg::RS256));
        assert!(!key.fits(Alg::PS256));
    }

    #[test]
    fn strict_set_names_the_key() {
        let doc = json!({"keys":[ec_jwk(), {"kty":"oct","k":b64(&[1; 8])}]});
        let bytes = serde_json::to_vec(&doc).unwrap();
        let e = parse_jwks(&bytes, true).unwrap_err();
        assert_eq!(e.field, "keys[1].k");
        let (set, skipped) = parse_jwks(&bytes, false).unwrap();
        assert_eq!(set.keys.len(), 1);
        assert_eq!(skipped.len(), 1);
        assert!(set.has_kid("e1"));
    }

    #[test]
    fn documents_without_usable_keys_refused() {
        assert!(parse_jwks(br#"{"keys":[]}"#, false).is_err());
        assert!(parse_jwks(br#"{"keys":{}}"#, false).is_err());
        assert!(parse_jwks(br#"{"keys":[{"kty":"oct","k":"AA"}]}"#, false).is_err());
        assert!(parse_jwks(br#"[]"#, false).is_err());
        assert!(parse_jwks(br#"{"keys":[],"keys":[]}"#, false).is_err());
    }

    #[test]
    fn duplicate_kid_for_same_alg_refused() {
        let k = json!({"kty":"oct","k":b64(&[1; 32]),"kid":"a"});
        let doc = serde_json::to_vec(&json!({"keys":[k.clone(), k]})).unwrap();
        assert_eq!(parse_jwks(&doc, true).unwrap_err().field, "keys[1].kid");
    }
}
