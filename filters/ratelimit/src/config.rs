//! Configuration of the `ratelimit` filter (JSON). See `docs/ratelimit.md` for the reference.
//!
//! Field names follow Envoy's `local_ratelimit` and rate-limit actions where the concept is
//! the same (`token_bucket`, `max_tokens`, `tokens_per_fill`, `fill_interval`,
//! `remote_address`, `request_headers.header_name`, `generic_key.descriptor_value`,
//! `xff_num_trusted_hops`, `enable_x_ratelimit_headers: DRAFT_VERSION_03`).

use meshwall_core::{CanonConfig, ConfigError};
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// The rules; every rule whose match applies to a request must have a token for it.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    #[serde(default)]
    pub client_ip: ClientIpConfig,
    #[serde(default)]
    pub table: TableConfig,
    /// `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers) on responses.
    #[serde(default = "default_true")]
    pub enable_ratelimit_headers: bool,
    /// Envoy's legacy `X-RateLimit-Limit/Remaining/Reset`.
    #[serde(default)]
    pub enable_x_ratelimit_headers: XRateLimitHeaders,
    /// What to do when the table cannot be updated (compare-and-swap retries exhausted, or a
    /// shared-data error): `deny` (503) or `allow`. Either way it is counted and logged.
    #[serde(default)]
    pub on_table_error: TableErrorMode,
    /// How request paths, methods and header names are read (meshwall-core's canonical
    /// request view): every rule matches, and every key is built, on it.
    #[serde(default)]
    pub canonical: CanonConfig,
    /// The Envoy Rate Limit Service (v3) that decides the `global` rules.
    #[serde(default)]
    pub rate_limit_service: Option<RateLimitServiceConfig>,
}

/// Where `global` rules are decided: an Envoy Rate Limit Service v3 server
/// (`envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`: envoyproxy/ratelimit,
/// Limitador, meshwall-rls) behind an Envoy cluster speaking HTTP/2.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitServiceConfig {
    /// The Envoy cluster of the service (HTTP/2).
    pub cluster: String,
    /// The calls' `:authority` (default: the cluster name). Required when the cluster name is
    /// no valid authority, as Istio's `outbound|<port>||<host>`: then the service's host.
    #[serde(default)]
    pub authority: Option<String>,
    /// The `domain` of every request (the service's configuration for it).
    pub domain: String,
    /// How long a request waits for the answer (Envoy's native filter: 20 ms); then
    /// `failure_mode` applies.
    #[serde(default = "default_rls_timeout")]
    pub timeout: String,
    /// When the service cannot answer (an error, the timeout, an answer that cannot be read, or
    /// `UNKNOWN`): `deny` (503) or `allow`. Either way it is counted.
    #[serde(default)]
    pub failure_mode: FailureMode,
}

impl RateLimitServiceConfig {
    /// `authority`, checked (`f`: the field path of this section).
    pub(crate) fn checked_authority(&self, f: &str) -> Result<Option<String>, ConfigError> {
        Ok(match &self.authority {
            Some(a) if a.is_empty() || !a.chars().all(authority_char) => {
                return Err(ConfigError::new(
                    format!("{f}.authority"),
                    "must be a host or host:port (letters, digits, `-._~:[]`)",
                ));
            }
            Some(a) if a.len() + self.cluster.len() > 123 => {
                return Err(ConfigError::new(
                    format!("{f}.authority"),
                    "cluster and authority must be at most 123 characters together",
                ));
            }
            Some(a) => Some(a.clone()),
            // Envoy would send the cluster name as `:authority`, and an HTTP/2 server resets
            // every call whose authority is invalid: refused here instead of a 503 per request.
            None if !self.cluster.chars().all(authority_char) => {
                return Err(ConfigError::new(
                    format!("{f}.authority"),
                    "required: the cluster name is no valid :authority (with Istio's \
                     `outbound|<port>||<host>`, set it to <host>)",
                ));
            }
            None => None,
        })
    }
}

/// A character of an HTTP/2 `:authority` (RFC 3986 host and port, without user info).
fn authority_char(ch: char) -> bool {
    ch.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:[]".contains(ch)
}

fn default_rls_timeout() -> String {
    "20ms".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    #[default]
    Deny,
    Allow,
}

pub const MIN_RLS_TIMEOUT_MS: u64 = 1;
pub const MAX_RLS_TIMEOUT_MS: u64 = 60_000;

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum XRateLimitHeaders {
    #[default]
    Off,
    #[serde(rename = "DRAFT_VERSION_03")]
    DraftVersion03,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TableErrorMode {
    #[default]
    Deny,
    Allow,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Unique name: used in metric names and as the policy name in the `RateLimit` headers.
    pub name: String,
    /// Which requests the rule applies to (default: all).
    #[serde(default, rename = "match")]
    pub matcher: MatchConfig,
    /// What identifies a bucket: the parts are combined (composite key). For a `global`
    /// rule, the entries of its descriptor, in order.
    pub key: Vec<KeyPart>,
    /// The bucket of a local rule (required); a `global` rule has none (the service's
    /// configuration holds its limit).
    #[serde(default)]
    pub token_bucket: Option<TokenBucketConfig>,
    /// Decided by the `rate_limit_service` (fleet-wide), after the local rules admitted the
    /// request.
    #[serde(default)]
    pub global: bool,
    /// Count and report, never reject.
    #[serde(default)]
    pub shadow: bool,
    /// What to do when a key part is missing (e.g. the header is absent). Required when the
    /// key uses `request_headers`; otherwise defaults to `anonymous`.
    #[serde(default)]
    pub on_missing_key: Option<OnMissingKey>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnMissingKey {
    /// The rule does not apply to the request.
    Skip,
    /// Every such request shares one bucket of the rule.
    Anonymous,
}

/// Which requests a rule applies to, on the canonical request view.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    /// Exact canonical path (without the query string).
    #[serde(default)]
    pub path: Option<String>,
    /// Canonical path prefix.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Regular expression that must match the whole canonical path (bounded size).
    #[serde(default)]
    pub regex: Option<String>,
    /// Methods (any of them, compared without regard to case); empty = all.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Header presence conditions (all must hold; a name in another spelling is refused).
    #[serde(default)]
    pub headers: Vec<HeaderPresence>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderPresence {
    pub name: String,
    /// `true`: the header must be present; `false`: it must be absent.
    #[serde(default = "default_true")]
    pub present: bool,
}

/// One part of a bucket key.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum KeyPart {
    /// The client IP: the downstream address, or an `x-forwarded-for` entry when
    /// `client_ip.xff_num_trusted_hops` > 0.
    RemoteAddress {},
    /// The one value of a request header (given twice or in another spelling: refused).
    /// `descriptor_key` (global rules): the entry's key, default the header name.
    RequestHeaders {
        header_name: String,
        #[serde(default)]
        descriptor_key: Option<String>,
    },
    /// The canonical path (without the query string).
    Path {},
    /// The method, upper-cased.
    Method {},
    /// A constant: one bucket shared by every request the rule applies to.
    /// `descriptor_key` (global rules): the entry's key, default `generic_key` (as Envoy).
    GenericKey {
        descriptor_value: String,
        #[serde(default)]
        descriptor_key: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenBucketConfig {
    pub max_tokens: u32,
    #[serde(default = "default_one")]
    pub tokens_per_fill: u32,
    /// Duration: `"60s"`, `"0.5s"`, `"500ms"`, `"1m"`, `"1h"`; at least 50 ms, at most 24 h.
    pub fill_interval: String,
}

fn default_one() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientIpConfig {
    /// Number of trusted proxies that append to `x-forwarded-for` in front of the filter
    /// (Envoy itself counts when `use_remote_address: true`). 0 = never read the header.
    #[serde(default)]
    pub xff_num_trusted_hops: u32,
    /// IPv4 addresses are grouped by this prefix length (32 = one bucket per address).
    #[serde(default = "default_v4_prefix")]
    pub ipv4_prefix_length: u8,
    /// IPv6 addresses are grouped by this prefix length (64 = one bucket per /64, what a
    /// single subscriber usually gets).
    #[serde(default = "default_v6_prefix")]
    pub ipv6_prefix_length: u8,
}

impl Default for ClientIpConfig {
    fn default() -> Self {
        ClientIpConfig {
            xff_num_trusted_hops: 0,
            ipv4_prefix_length: default_v4_prefix(),
            ipv6_prefix_length: default_v6_prefix(),
        }
    }
}

fn default_v4_prefix() -> u8 {
    32
}

fn default_v6_prefix() -> u8 {
    64
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    /// Namespace of the table's shared-data keys (two filters with the same `vm_id` and the
    /// same name share buckets).
    #[serde(default = "default_table_name")]
    pub name: String,
    /// Number of shared-data keys.
    #[serde(default = "default_shards")]
    pub shards: u32,
    /// Buckets per key.
    #[serde(default = "default_slots")]
    pub slots_per_shard: u32,
    /// Reads and compare-and-swap writes tried per request before giving up.
    #[serde(default = "default_attempts")]
    pub max_cas_attempts: u32,
}

impl Default for TableConfig {
    fn default() -> Self {
        TableConfig {
            name: default_table_name(),
            shards: default_shards(),
            slots_per_shard: default_slots(),
            max_cas_attempts: default_attempts(),
        }
    }
}

fn default_table_name() -> String {
    "default".into()
}

fn default_shards() -> u32 {
    1024
}

fn default_slots() -> u32 {
    16
}

fn default_attempts() -> u32 {
    16
}

pub const MAX_SHARDS: u32 = 65_536;
pub const MAX_SLOTS_PER_SHARD: u32 = 64;
/// 1 Mi buckets × 32 B = 32 MiB of values at most.
pub const MAX_TOTAL_SLOTS: u64 = 1 << 20;
pub const MIN_FILL_INTERVAL_MS: u64 = 50;
pub const MAX_FILL_INTERVAL_MS: u64 = 86_400_000;

/// A duration in the one syntax of every policy (`meshwall_core::parse_duration`: `"60s"`,
/// `"0.5s"`, `"500ms"`; whole milliseconds, fractions refused), in milliseconds.
pub fn parse_duration_ms(field: &str, s: &str) -> Result<u64, ConfigError> {
    let d = meshwall_core::parse_duration(field, s)?;
    u64::try_from(d.as_millis()).map_err(|_| ConfigError::new(field, "duration too long"))
}

/// Rule and table names: used in metric names, shared-data keys and header strings.
pub fn check_name(field: &str, name: &str) -> Result<(), ConfigError> {
    if name.is_empty() || name.len() > 64 {
        return Err(ConfigError::new(field, "must be 1 to 64 characters"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(ConfigError::new(
            field,
            format!("`{name}` may only contain letters, digits, `_` and `-`"),
        ));
    }
    Ok(())
}

/// A header name the filter reads: RFC 9110 token, lower-cased; no pseudo-headers.
pub fn check_header_name(field: &str, name: &str) -> Result<String, ConfigError> {
    meshwall_core::config::header_name(field, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ok = [
            ("60s", 60_000),
            ("0.5s", 500),
            ("500ms", 500),
            ("1m", 60_000),
            ("1.5m", 90_000),
            ("1h", 3_600_000),
            ("0.05s", 50),
            ("50ms", 50),
        ];
        for (s, ms) in ok {
            assert_eq!(parse_duration_ms("f", s).unwrap(), ms, "{s}");
        }
        for s in [
            "",
            "60",
            "s",
            "1.s",
            ".5s",
            "1d",
            "-1s",
            "1 s",
            "0.0005s",
            "1e3ms",
            "99999999999999999999s",
            "1.2.3s",
        ] {
            assert!(parse_duration_ms("f", s).is_err(), "{s} must be refused");
        }
        assert_eq!(parse_duration_ms("a.b", "x").unwrap_err().field, "a.b");
    }

    #[test]
    fn names() {
        assert!(check_name("n", "login_post-1").is_ok());
        for bad in ["", "a.b", "a b", "a\"b", &"x".repeat(65)] {
            assert!(check_name("n", bad).is_err(), "{bad}");
        }
        assert_eq!(check_header_name("h", "X-User-Id").unwrap(), "x-user-id");
        assert!(check_header_name("h", ":path").is_err());
        assert!(check_header_name("h", "a b").is_err());
    }
}
