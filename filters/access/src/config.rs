//! Configuration of the `access` filter (JSON). See `docs/access.md` for the reference.
//!
//! Address lists are arrays of strings in CIDR notation (`"10.0.0.0/8"`, `"2001:db8::/32"`, or
//! one address); route matches have the shape of the `jwt` filter's rules (Envoy's route match:
//! `path`, `prefix` or `safe_regex.regex`, plus `methods`); `client_ip.xff_num_trusted_hops`
//! is the `ratelimit` filter's.

use meshwall_core::{CanonConfig, RouteMatchConfig};
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessConfig {
    /// Addresses allowed where no rule gives its own `allow` (empty: any address not denied).
    #[serde(default)]
    pub allow: Vec<String>,
    /// Addresses denied on every request, whatever rule matches.
    #[serde(default)]
    pub deny: Vec<String>,
    /// Per-route lists; the first rule whose match applies decides with them.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    #[serde(default)]
    pub client_ip: ClientIpConfig,
    /// How request paths and methods are read (meshwall-core's canonical request view): every
    /// rule matches on it.
    #[serde(default)]
    pub canonical: CanonConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    #[serde(rename = "match")]
    pub route: RouteMatchConfig,
    /// Absent: the global `allow` applies on this route. Given: it replaces the global `allow`
    /// here (an empty list: any address not denied).
    #[serde(default)]
    pub allow: Option<Vec<String>>,
    /// Denied on this route, besides the global `deny`.
    #[serde(default)]
    pub deny: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientIpConfig {
    /// Number of trusted proxies that append to `x-forwarded-for` in front of the filter
    /// (Envoy itself counts when `use_remote_address: true`). 0 = never read the header: the
    /// client is the downstream address Envoy gives the filter (`source.address`).
    #[serde(default)]
    pub xff_num_trusted_hops: u32,
}

/// The largest `xff_num_trusted_hops` (as in `ratelimit`).
pub const MAX_TRUSTED_HOPS: u32 = 16;
