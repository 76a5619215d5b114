//! Configuration of the `apikey` filter (JSON). The full reference is `docs/apikey.md`; every
//! check lives in `compile.rs`, which names the field at fault.
//!
//! Key sources follow the `jwt` filter (`from_headers [{name, value_prefix}]`, `from_params`,
//! `from_cookies`), rules follow its `rules [{match, requires, allow_missing, …}]`; consumers
//! follow Kong (`consumers [{name, keys, groups}]`, `acl` groups) and Apigee (one key per app
//! or several, verified at the gateway, the app's name passed on).

use meshwall_core::{CanonConfig, RouteMatchConfig};
use serde::Deserialize;

pub const DEFAULT_HEADER: &str = "x-api-key";
pub const DEFAULT_CONSUMER_HEADER: &str = "x-consumer-name";
pub const DEFAULT_GROUPS_HEADER: &str = "x-consumer-groups";
pub const DEFAULT_REALM: &str = "meshwall";

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// Who may call: each consumer has a name, its keys and its groups.
    pub consumers: Vec<ConsumerConfig>,
    /// Headers carrying the key. Default (when no source at all is given): `x-api-key`.
    #[serde(default)]
    pub from_headers: Vec<FromHeader>,
    /// Query parameters carrying the key.
    #[serde(default)]
    pub from_params: Vec<String>,
    /// Cookies carrying the key.
    #[serde(default)]
    pub from_cookies: Vec<String>,
    /// Keep the key in the request to the upstream (default: removed).
    #[serde(default)]
    pub forward: bool,
    /// Request header receiving the consumer's name.
    #[serde(default = "default_consumer_header")]
    pub consumer_header: String,
    /// Request header receiving the consumer's groups, `, `-joined; `null`: not written.
    #[serde(default = "default_groups_header")]
    pub groups_header: Option<String>,
    /// Route rules, first match wins; a request no rule matches gets `default`.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// What a request no rule matches needs (default: a valid key).
    #[serde(default, rename = "default")]
    pub default_rule: DefaultRule,
    /// Let CORS preflight requests (OPTIONS with `Origin` and `Access-Control-Request-Method`)
    /// through without a key.
    #[serde(default)]
    pub bypass_cors_preflight: bool,
    /// `realm` of the `WWW-Authenticate: APIKey` challenge.
    #[serde(default = "default_realm")]
    pub realm: String,
    /// How request paths are read for the rules, and which ambiguous forms are accepted.
    #[serde(default)]
    pub canonical: CanonConfig,
}

fn default_consumer_header() -> String {
    DEFAULT_CONSUMER_HEADER.to_string()
}
fn default_groups_header() -> Option<String> {
    Some(DEFAULT_GROUPS_HEADER.to_string())
}
fn default_realm() -> String {
    DEFAULT_REALM.to_string()
}
fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerConfig {
    /// Unique; written to `consumer_header` (the per-consumer key of a rate limit).
    pub name: String,
    /// `sha256:<64 hex digits>` (the SHA-256 of the key: the configuration holds no secret),
    /// or the key itself (accepted, and counted in a warning at configure time).
    pub keys: Vec<String>,
    /// Groups the consumer is in (Kong's ACL groups): rules allow groups.
    #[serde(default)]
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FromHeader {
    pub name: String,
    /// Text before the key (`ApiKey `), matched without regard to case.
    #[serde(default)]
    pub value_prefix: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    #[serde(rename = "match")]
    pub route: RouteMatchConfig,
    /// A valid key is needed (`false`: the key is not looked at).
    #[serde(default = "default_true")]
    pub requires: bool,
    /// With `requires`: a request without any key passes (an invalid key still fails).
    #[serde(default)]
    pub allow_missing: bool,
    /// The consumer must be in one of these groups (else 403). Empty: any consumer.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// What a request that no rule matches needs: a rule without `match`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultRule {
    #[serde(default = "default_true")]
    pub requires: bool,
    #[serde(default)]
    pub allow_missing: bool,
    #[serde(default)]
    pub groups: Vec<String>,
}

impl Default for DefaultRule {
    fn default() -> Self {
        DefaultRule {
            requires: true,
            allow_missing: false,
            groups: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshwall_core::parse_config;

    #[test]
    fn defaults() {
        let c: ApiKeyConfig =
            parse_config(br#"{"consumers":[{"name":"a","keys":["k"]}]}"#).unwrap();
        assert!(c.from_headers.is_empty() && c.from_params.is_empty() && c.from_cookies.is_empty());
        assert!(!c.forward);
        assert_eq!(c.consumer_header, "x-consumer-name");
        assert_eq!(c.groups_header.as_deref(), Some("x-consumer-groups"));
        assert_eq!(c.default_rule, DefaultRule::default());
        assert!(
            c.default_rule.requires,
            "secure by default: a key is needed"
        );
        assert!(!c.bypass_cors_preflight);
        assert_eq!(c.realm, "meshwall");
        assert_eq!(c.canonical, CanonConfig::default());
        assert!(c.consumers[0].groups.is_empty());
        let c: ApiKeyConfig = parse_config(
            br#"{"consumers":[],"groups_header":null,"rules":[{"match":{"prefix":"/"}}]}"#,
        )
        .unwrap();
        assert_eq!(c.groups_header, None);
        assert!(
            c.rules[0].requires,
            "a rule needs a key unless it says otherwise"
        );
    }

    #[test]
    fn unknown_fields_are_named() {
        for (json, field) in [
            (
                r#"{"consumers":[{"name":"a","keys":[],"group":[]}]}"#,
                "consumers[0].group",
            ),
            (
                r#"{"consumers":[],"rules":[{"match":{"prefix":"/","method":"GET"}}]}"#,
                "rules[0].match.method",
            ),
            (
                r#"{"consumers":[],"default":{"require":true}}"#,
                "default.require",
            ),
            (
                r#"{"consumers":[],"from_headers":[{"name":"a","prefix":"x"}]}"#,
                "from_headers[0].prefix",
            ),
            (
                r#"{"consumers":[],"canonical":{"allow_path_param":true}}"#,
                "canonical.allow_path_param",
            ),
            (r#"{"consumer":[]}"#, "consumer"),
        ] {
            let e = parse_config::<ApiKeyConfig>(json.as_bytes()).unwrap_err();
            assert_eq!(e.field, field, "{json}: {e}");
        }
        let e = parse_config::<ApiKeyConfig>(b"{}").unwrap_err();
        assert!(e.reason.contains("missing field `consumers`"), "{e}");
    }
}
