//! Configuration of the `jwt` filter (JSON). Field names follow Envoy's `jwt_authn` where the
//! concept is the same. The full reference is `docs/jwt.md`; every check lives in
//! `JwtPolicy::new` (policy.rs), which names the field at fault.

use meshwall_core::{CanonConfig, ConfigError, RouteMatchConfig};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

pub const DEFAULT_REALM: &str = "meshwall";
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8192;
pub const DEFAULT_CACHE_SIZE: usize = 1000;
/// Slots of the shared verified-token table: on by default, measured to pay (docs/jwt.md,
/// `make bench` scenario `jwt-shared`).
pub const DEFAULT_SHARED_CACHE_SIZE: usize = 4096;
pub const DEFAULT_CLOCK_SKEW_SECONDS: u64 = 60;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// Named token issuers and how to verify their tokens.
    pub providers: BTreeMap<String, ProviderConfig>,
    /// Route rules, first match wins. A request no rule matches needs a valid token from any
    /// provider (secure by default); add a last rule without `requires` to let it pass.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// Let CORS preflight requests (OPTIONS with `Origin` and `Access-Control-Request-Method`)
    /// through without a token.
    #[serde(default)]
    pub bypass_cors_preflight: bool,
    /// `realm` of the `WWW-Authenticate` challenge.
    #[serde(default = "default_realm")]
    pub realm: String,
    /// Longest token accepted, in bytes.
    #[serde(default = "default_max_token_bytes")]
    pub max_token_bytes: usize,
    /// Verified tokens remembered per worker (0 disables the cache).
    #[serde(default = "default_cache_size")]
    pub jwt_cache_size: usize,
    /// How request paths are read for the rules, and which ambiguous forms are accepted
    /// (`allow_path_params`, `allow_encoded_slashes`, `allow_backslashes`,
    /// `trailing_slash_insensitive`, `case_insensitive_paths`, `head_matches_get`).
    #[serde(default)]
    pub canonical: CanonConfig,
    /// Who checks signatures: `auto` (the host's crypto for the algorithms that pass its
    /// self-test, the module for the rest), `host` (the host for RS256/384/512 and ES256/384,
    /// a configuration error when it cannot), `wasm` (the module only).
    #[serde(default)]
    pub verifier: crate::hostcrypto::VerifierMode,
    /// Slots of the verified-token table shared by all workers (behind each worker's
    /// `jwt_cache_size` LRU; 0: none), at most 65,536.
    #[serde(default = "default_shared_cache_size")]
    pub shared_cache_size: usize,
}

fn default_realm() -> String {
    DEFAULT_REALM.to_string()
}
fn default_max_token_bytes() -> usize {
    DEFAULT_MAX_TOKEN_BYTES
}
fn default_shared_cache_size() -> usize {
    DEFAULT_SHARED_CACHE_SIZE
}
fn default_cache_size() -> usize {
    DEFAULT_CACHE_SIZE
}
fn default_true() -> bool {
    true
}
fn default_skew() -> u64 {
    DEFAULT_CLOCK_SKEW_SECONDS
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Required `iss` (exact match). Unset: any issuer.
    #[serde(default)]
    pub issuer: Option<String>,
    /// `aud` must contain at least one of these. Empty: `aud` not checked.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// `sub` must match one of these. Empty: `sub` not checked.
    #[serde(default)]
    pub subjects: Vec<StringMatcher>,
    /// Reject tokens without `exp`.
    #[serde(default = "default_true")]
    pub require_expiration: bool,
    /// Longest accepted lifetime (`exp` minus `iat`, or `nbf`, or now).
    #[serde(default)]
    pub max_lifetime_seconds: Option<u64>,
    /// Tolerance for `exp`, `nbf`, `iat`.
    #[serde(default = "default_skew")]
    pub clock_skew_seconds: u64,
    #[serde(default)]
    pub local_jwks: Option<LocalJwks>,
    #[serde(default)]
    pub remote_jwks: Option<RemoteJwks>,
    /// Headers carrying the token. Default (when no source at all is configured):
    /// `Authorization` with prefix `Bearer `.
    #[serde(default)]
    pub from_headers: Vec<FromHeader>,
    /// Query parameters carrying the token.
    #[serde(default)]
    pub from_params: Vec<String>,
    /// Cookies carrying the token.
    #[serde(default)]
    pub from_cookies: Vec<String>,
    /// Keep the token in the request to the upstream (default: removed).
    #[serde(default)]
    pub forward: bool,
    /// Header receiving the verified payload (base64url, as in the token).
    #[serde(default)]
    pub forward_payload_header: Option<String>,
    /// Claims copied into request headers.
    #[serde(default)]
    pub claim_to_headers: Vec<ClaimToHeader>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StringMatcher {
    #[serde(default)]
    pub exact: Option<String>,
    #[serde(default)]
    pub prefix: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalJwks {
    /// The JWKS as a JSON string (Envoy's `DataSource.inline_string`).
    #[serde(default)]
    pub inline_string: Option<String>,
    /// The JWKS as a JSON object.
    #[serde(default)]
    pub inline_jwks: Option<Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteJwks {
    pub http_uri: HttpUri,
    /// How long a fetched JWKS is used before it is fetched again.
    #[serde(default = "default_cache_duration")]
    pub cache_duration: String,
    /// Wait after a failed fetch before trying again.
    #[serde(default = "default_failed_refetch")]
    pub failed_refetch_duration: String,
    /// A token with an unknown `kid` triggers a refetch at most this often.
    #[serde(default = "default_refetch_min")]
    pub refetch_min_interval: String,
    /// Refetch when a token names a `kid` the JWKS lacks (key rotation without restart).
    #[serde(default = "default_true")]
    pub refetch_on_unknown_kid: bool,
    /// How long past `cache_duration` the last good keys are still used while every fetch
    /// fails; after that they are dropped (requests for the provider: 401 `Jwks not available`)
    /// until a fetch succeeds.
    #[serde(default = "default_max_stale")]
    pub max_stale: String,
}

fn default_cache_duration() -> String {
    "600s".into()
}
fn default_failed_refetch() -> String {
    "5s".into()
}
fn default_refetch_min() -> String {
    "30s".into()
}
fn default_max_stale() -> String {
    "1h".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpUri {
    /// `http(s)://authority/path`: gives `:authority` and `:path` of the fetch.
    pub uri: String,
    /// Envoy cluster the fetch goes to.
    pub cluster: String,
    #[serde(default = "default_timeout")]
    pub timeout: String,
}

fn default_timeout() -> String {
    "5s".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FromHeader {
    pub name: String,
    #[serde(default)]
    pub value_prefix: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimToHeader {
    pub header_name: String,
    /// Claim name, or a dotted path into nested objects (`realm_access.roles`).
    pub claim_name: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    #[serde(rename = "match")]
    pub route: RouteMatchConfig,
    /// Token requirement; absent: no token needed on this route.
    #[serde(default)]
    pub requires: Option<Requirement>,
    /// With `requires`: a request without any token passes (an invalid token still fails).
    #[serde(default)]
    pub allow_missing: bool,
    /// Claim conditions (all must hold) checked after verification; failing → 403.
    #[serde(default)]
    pub claims: Vec<ClaimRequirement>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requirement {
    #[serde(default)]
    pub provider_name: Option<String>,
    #[serde(default)]
    pub requires_any: Option<Vec<String>>,
    #[serde(default)]
    pub requires_all: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimRequirement {
    /// Claim name or dotted path.
    pub name: String,
    /// The claim (array, or space-delimited string such as `scope`) contains this value.
    #[serde(default)]
    pub contains: Option<String>,
    /// The claim contains at least one of these values.
    #[serde(default)]
    pub contains_any: Option<Vec<String>>,
    /// The claim equals this value (string, number or boolean).
    #[serde(default)]
    pub equals: Option<Value>,
}

/// A duration in the one syntax of every policy (`meshwall_core::parse_duration`: `"5s"`,
/// `"1.5s"`, `"300ms"`, `"10m"`, `"1h"`; whole milliseconds, never rounded).
pub fn parse_duration(field: &str, s: &str) -> Result<Duration, ConfigError> {
    meshwall_core::parse_duration(field, s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshwall_core::parse_config;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("f", "5s").unwrap(), Duration::from_secs(5));
        assert_eq!(
            parse_duration("f", "1.5s").unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(
            parse_duration("f", "300ms").unwrap(),
            Duration::from_millis(300)
        );
        assert_eq!(
            parse_duration("f", "10m").unwrap(),
            Duration::from_secs(600)
        );
        assert_eq!(
            parse_duration("f", "1h").unwrap(),
            Duration::from_secs(3600)
        );
        for bad in ["", "5", "s", "-1s", "1e3s", "abc", "5 s", "1.2.3s"] {
            let e = parse_duration("x.y", bad).unwrap_err();
            assert_eq!(e.field, "x.y", "{bad}");
        }
    }

    #[test]
    fn defaults() {
        let c: JwtConfig =
            parse_config(br#"{"providers":{"p":{"local_jwks":{"inline_string":"{}"}}}}"#).unwrap();
        assert_eq!(c.realm, "meshwall");
        assert_eq!(c.max_token_bytes, 8192);
        assert_eq!(c.jwt_cache_size, 1000);
        assert!(!c.bypass_cors_preflight);
        let p = &c.providers["p"];
        assert!(p.require_expiration);
        assert_eq!(p.clock_skew_seconds, 60);
        assert!(!p.forward);
        assert_eq!(c.canonical, CanonConfig::default());
        let c: JwtConfig = parse_config(
            br#"{"providers":{"p":{"remote_jwks":{"http_uri":{"uri":"http://h/j","cluster":"c"}}}}}"#,
        )
        .unwrap();
        let r = c.providers["p"].remote_jwks.as_ref().unwrap();
        assert_eq!(
            parse_duration("f", &r.max_stale).unwrap(),
            Duration::from_secs(3600)
        );
    }

    #[test]
    fn unknown_fields_are_named() {
        let e = parse_config::<JwtConfig>(br#"{"providers":{"p":{"isuer":"x"}}}"#).unwrap_err();
        assert_eq!(e.field, "providers.p.isuer");
        let e = parse_config::<JwtConfig>(
            br#"{"providers":{},"rules":[{"match":{"prefix":"/","method":"GET"}}]}"#,
        )
        .unwrap_err();
        assert_eq!(e.field, "rules[0].match.method");
    }
}
