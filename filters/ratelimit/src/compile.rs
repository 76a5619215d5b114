//! The configuration compiled into what requests are checked against: each rule's matcher on
//! the canonical request view, its key parts and its bucket, and the checked client-address and
//! table settings. Everything is checked once, when the configuration loads; every error names
//! its field.

use crate::bucket::TokenBucket;
use crate::config::{
    check_header_name, check_name, parse_duration_ms, ClientIpConfig, KeyPart, MatchConfig,
    OnMissingKey, RateLimitConfig, RuleConfig, TableConfig, MAX_FILL_INTERVAL_MS, MAX_SHARDS,
    MAX_SLOTS_PER_SHARD, MAX_TOTAL_SLOTS, MIN_FILL_INTERVAL_MS,
};
use meshwall_core::metrics::{Counter, Label, Registry};
use meshwall_core::{CanonConfig, ConfigError, Host, MethodSet, PathMatch};
use siphasher::sip128::{Hasher128, SipHasher13};
use std::hash::Hasher;

/// Which requests a rule applies to. Paths and methods are compared on the canonical view
/// (core's [`PathMatch`] and [`MethodSet`]); see `RateLimitPolicy::applies`.
pub(crate) struct Matcher {
    pub(crate) path: PathMatch,
    pub(crate) methods: MethodSet,
    /// Header presence conditions: (lower-case name, must be present).
    pub(crate) headers: Vec<(String, bool)>,
}

impl Matcher {
    pub(crate) fn build(
        m: &MatchConfig,
        field: &str,
        canon: &CanonConfig,
    ) -> Result<Self, ConfigError> {
        let given = [m.path.is_some(), m.prefix.is_some(), m.regex.is_some()];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err(ConfigError::new(
                field,
                "give at most one of `path`, `prefix`, `regex`",
            ));
        }
        let path = if let Some(p) = &m.path {
            PathMatch::exact(&format!("{field}.path"), p, canon)?
        } else if let Some(p) = &m.prefix {
            PathMatch::prefix(&format!("{field}.prefix"), p, canon)?
        } else if let Some(r) = &m.regex {
            PathMatch::regex(&format!("{field}.regex"), r, canon)?
        } else {
            PathMatch::Any
        };
        let methods = MethodSet::parse(&format!("{field}.methods"), &m.methods)?;
        let mut headers = Vec::new();
        for (i, h) in m.headers.iter().enumerate() {
            headers.push((
                check_header_name(&format!("{field}.headers[{i}].name"), &h.name)?,
                h.present,
            ));
        }
        Ok(Matcher {
            path,
            methods,
            headers,
        })
    }
}

/// One part of a bucket key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Part {
    RemoteAddress,
    /// A request header (lower-case name) that must have one value.
    Header(String),
    Path,
    Method,
    Constant(String),
}

/// A rule, ready to be matched.
pub(crate) struct Rule {
    pub(crate) name: String,
    pub(crate) matcher: Matcher,
    pub(crate) key: Vec<Part>,
    pub(crate) bucket: TokenBucket,
    pub(crate) shadow: bool,
    pub(crate) on_missing: OnMissingKey,
    /// Marks this rule's slots in the table (hash of the name).
    pub(crate) tag: u32,
    /// `"name";q=…;w=…` (local rules)
    pub(crate) policy_item: String,
    /// Decided by the rate limit service; `bucket` and `tag` are then unused.
    pub(crate) global: bool,
    /// The descriptor entry key of each part of `key` (global rules).
    pub(crate) entry_keys: Vec<String>,
    /// `meshwall.ratelimit.{allowed,limited,shadow_limited}.rule.<name>`.
    pub(crate) m_allowed: Counter,
    pub(crate) m_limited: Counter,
    pub(crate) m_shadow_limited: Counter,
}

/// The table's counters (`meshwall.ratelimit.table_<what>`).
pub(crate) struct TableMetrics {
    pub(crate) evictions: Counter,
    pub(crate) reclaims: Counter,
    pub(crate) cas_retries: Counter,
    pub(crate) cas_exhausted: Counter,
    pub(crate) errors: Counter,
    pub(crate) refunds_lost: Counter,
}

impl TableMetrics {
    pub(crate) fn define(host: &dyn Host) -> Result<Self, ConfigError> {
        let m = metrics(host);
        Ok(TableMetrics {
            evictions: m.counter("table_evictions", &[])?,
            reclaims: m.counter("table_reclaims", &[])?,
            cas_retries: m.counter("table_cas_retries", &[])?,
            cas_exhausted: m.counter("table_cas_exhausted", &[])?,
            errors: m.counter("table_errors", &[])?,
            refunds_lost: m.counter("table_refunds_lost", &[])?,
        })
    }
}

/// The policy's metrics: `meshwall.ratelimit.…`.
pub(crate) fn metrics(host: &dyn Host) -> Registry<'_> {
    Registry::of::<crate::policy::RateLimitPolicy>(host)
}

fn rule_tag(name: &str) -> u32 {
    let mut h = SipHasher13::new_with_keys(0x6d65_7368_7761_6c6c, 0x7261_7465_6c69_6d69);
    h.write(name.as_bytes());
    let v = h.finish128();
    // Truncation intended: 32 bits tell a handful of rules apart (collisions are refused).
    (v.h1 & 0xffff_ffff) as u32
}

/// Every rule of the configuration, in order; names (and their tags) are unique.
pub(crate) fn rules(cfg: &RateLimitConfig, host: &dyn Host) -> Result<Vec<Rule>, ConfigError> {
    if cfg.rules.is_empty() {
        return Err(ConfigError::new("rules", "give at least one rule"));
    }
    let mut rules: Vec<Rule> = Vec::new();
    for (i, rc) in cfg.rules.iter().enumerate() {
        if rc.global && cfg.rate_limit_service.is_none() {
            return Err(ConfigError::new(
                format!("rules[{i}].global"),
                "a global rule needs `rate_limit_service`",
            ));
        }
        let rule = rule(i, rc, &cfg.canonical, host)?;
        if let Some(prev) = rules
            .iter()
            .find(|r| r.name == rule.name || r.tag == rule.tag)
        {
            return Err(ConfigError::new(
                format!("rules[{i}].name"),
                format!(
                    "`{}` is used by another rule (or collides with `{}`)",
                    rule.name, prev.name
                ),
            ));
        }
        rules.push(rule);
    }
    Ok(rules)
}

/// A key part, and its descriptor entry key (`global`: the rule is global).
fn key_part(f: &str, part: &KeyPart, global: bool) -> Result<(Part, String), ConfigError> {
    let entry_key = |field: &str, given: &Option<String>, default: &str| match given {
        None => Ok(default.to_string()),
        Some(_) if !global => Err(ConfigError::new(
            format!("{f}.{field}.descriptor_key"),
            "only for a `global` rule (the key of its descriptor entry)",
        )),
        Some(k) if k.is_empty() || k.len() > 128 || k.chars().any(char::is_control) => {
            Err(ConfigError::new(
                format!("{f}.{field}.descriptor_key"),
                "must be 1 to 128 characters, none a control character",
            ))
        }
        Some(k) => Ok(k.clone()),
    };
    Ok(match part {
        KeyPart::RemoteAddress {} => (Part::RemoteAddress, "remote_address".into()),
        KeyPart::RequestHeaders {
            header_name,
            descriptor_key,
        } => {
            let name = check_header_name(&format!("{f}.request_headers.header_name"), header_name)?;
            let key = entry_key("request_headers", descriptor_key, &name)?;
            (Part::Header(name), key)
        }
        KeyPart::Path {} => (Part::Path, "path".into()),
        KeyPart::Method {} => (Part::Method, "method".into()),
        KeyPart::GenericKey {
            descriptor_value,
            descriptor_key,
        } => {
            if descriptor_value.is_empty() {
                return Err(ConfigError::new(
                    format!("{f}.generic_key.descriptor_value"),
                    "must not be empty",
                ));
            }
            let key = entry_key("generic_key", descriptor_key, "generic_key")?;
            (Part::Constant(descriptor_value.clone()), key)
        }
    })
}

fn token_bucket(field: &str, rc: &RuleConfig) -> Result<TokenBucket, ConfigError> {
    let tb = match (&rc.token_bucket, rc.global) {
        (Some(tb), false) => tb,
        (None, false) => {
            return Err(ConfigError::new(
                field,
                "required (or make the rule `global`: decided by the rate limit service)",
            ))
        }
        (Some(_), true) => {
            return Err(ConfigError::new(
                field,
                "a `global` rule has no bucket here: its limit is in the rate limit service's configuration",
            ))
        }
        // Never used: a global rule takes no token from the table.
        (None, true) => {
            return Ok(TokenBucket {
                max_tokens: 1,
                tokens_per_fill: 1,
                fill_interval_ms: MAX_FILL_INTERVAL_MS,
            })
        }
    };
    if tb.max_tokens == 0 {
        return Err(ConfigError::new(
            format!("{field}.max_tokens"),
            "must be at least 1",
        ));
    }
    if tb.tokens_per_fill == 0 {
        return Err(ConfigError::new(
            format!("{field}.tokens_per_fill"),
            "must be at least 1",
        ));
    }
    let interval = parse_duration_ms(&format!("{field}.fill_interval"), &tb.fill_interval)?;
    if !(MIN_FILL_INTERVAL_MS..=MAX_FILL_INTERVAL_MS).contains(&interval) {
        return Err(ConfigError::new(
            format!("{field}.fill_interval"),
            "must be between 50ms and 24h",
        ));
    }
    Ok(TokenBucket {
        max_tokens: tb.max_tokens,
        tokens_per_fill: tb.tokens_per_fill,
        fill_interval_ms: interval,
    })
}

fn rule(
    i: usize,
    rc: &RuleConfig,
    canon: &CanonConfig,
    host: &dyn Host,
) -> Result<Rule, ConfigError> {
    let field = format!("rules[{i}]");
    check_name(&format!("{field}.name"), &rc.name)?;
    let matcher = Matcher::build(&rc.matcher, &format!("{field}.match"), canon)?;
    if rc.key.is_empty() {
        return Err(ConfigError::new(
            format!("{field}.key"),
            "give at least one key part",
        ));
    }
    let (key, entry_keys): (Vec<Part>, Vec<String>) = rc
        .key
        .iter()
        .enumerate()
        .map(|(k, part)| key_part(&format!("{field}.key[{k}]"), part, rc.global))
        .collect::<Result<Vec<(Part, String)>, ConfigError>>()?
        .into_iter()
        .unzip();
    let uses_header = key.iter().any(|p| matches!(p, Part::Header(_)));
    let on_missing = match rc.on_missing_key {
        Some(m) => m,
        None if uses_header => {
            return Err(ConfigError::new(
                format!("{field}.on_missing_key"),
                "required when the key uses request_headers: `skip` or `anonymous`",
            ))
        }
        None => OnMissingKey::Anonymous,
    };
    let bucket = token_bucket(&format!("{field}.token_bucket"), rc)?;
    let m = metrics(host);
    let by_rule = [(Label::Rule, rc.name.as_str())];
    Ok(Rule {
        name: rc.name.clone(),
        matcher,
        key,
        bucket,
        shadow: rc.shadow,
        on_missing,
        tag: rule_tag(&rc.name),
        policy_item: format!(
            "\"{}\";q={};w={}",
            rc.name,
            bucket.max_tokens,
            bucket.window_secs()
        ),
        global: rc.global,
        entry_keys,
        m_allowed: m.counter("allowed", &by_rule)?,
        m_limited: m.counter("limited", &by_rule)?,
        m_shadow_limited: m.counter("shadow_limited", &by_rule)?,
    })
}

pub(crate) fn check_client_ip(ip: &ClientIpConfig) -> Result<(), ConfigError> {
    if ip.xff_num_trusted_hops > 16 {
        return Err(ConfigError::new(
            "client_ip.xff_num_trusted_hops",
            "must be at most 16",
        ));
    }
    if !(1..=32).contains(&ip.ipv4_prefix_length) {
        return Err(ConfigError::new(
            "client_ip.ipv4_prefix_length",
            "must be between 1 and 32",
        ));
    }
    if !(1..=128).contains(&ip.ipv6_prefix_length) {
        return Err(ConfigError::new(
            "client_ip.ipv6_prefix_length",
            "must be between 1 and 128",
        ));
    }
    Ok(())
}

/// `rules`: the number of rules (one request may need a slot of each in one shard).
pub(crate) fn check_table(t: &TableConfig, rules: usize) -> Result<(), ConfigError> {
    check_name("table.name", &t.name)?;
    if !(1..=MAX_SHARDS).contains(&t.shards) {
        return Err(ConfigError::new(
            "table.shards",
            format!("must be between 1 and {MAX_SHARDS}"),
        ));
    }
    if !(1..=MAX_SLOTS_PER_SHARD).contains(&t.slots_per_shard) {
        return Err(ConfigError::new(
            "table.slots_per_shard",
            format!("must be between 1 and {MAX_SLOTS_PER_SHARD}"),
        ));
    }
    if u64::from(t.shards) * u64::from(t.slots_per_shard) > MAX_TOTAL_SLOTS {
        return Err(ConfigError::new(
            "table",
            format!("shards × slots_per_shard must be at most {MAX_TOTAL_SLOTS} (32 MiB)"),
        ));
    }
    if (t.slots_per_shard as usize) < rules {
        return Err(ConfigError::new(
            "table.slots_per_shard",
            format!("must be at least the number of rules ({rules}): one request may need a bucket of each rule in one shard"),
        ));
    }
    if !(1..=1000).contains(&t.max_cas_attempts) {
        return Err(ConfigError::new(
            "table.max_cas_attempts",
            "must be between 1 and 1000",
        ));
    }
    Ok(())
}
