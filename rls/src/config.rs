//! The limits: envoyproxy/ratelimit's YAML configuration format, plus one meshwall extension
//! (`rate_limit.token_bucket`).
//!
//! A file holds one or more YAML documents, each one domain:
//!
//! ```yaml
//! domain: edge
//! descriptors:
//!   - key: remote_address          # a default: any value of the key, one counter per value
//!     rate_limit: {unit: minute, requests_per_unit: 100}
//!   - key: path
//!     value: /login                 # an exact value; `value: /api/*` is a wildcard
//!     shadow_mode: true
//!     rate_limit:
//!       name: login
//!       token_bucket: {max_tokens: 5, tokens_per_fill: 1, fill_interval: 12s}
//!     descriptors: [...]            # nested entries of the same descriptor
//! ```
//!
//! Every error names the file and the dotted path of the field, e.g.
//! `limits.yaml: descriptors[0].rate_limit.unit: invalid rate limit unit 'fortnight'`.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Deserializer};

#[path = "config_limit.rs"]
mod limit;
pub use limit::parse_duration_ms;
use limit::parse_rate_limit;

/// A configuration error: the file, the field (dotted path) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: {}: {}", self.file, self.field, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// The time units of envoyproxy/ratelimit's fixed windows (`MONTH` is 30 days, `YEAR` 365).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unit {
    Second,
    Minute,
    Hour,
    Day,
    Week,
    Month,
    Year,
}

impl Unit {
    pub const ALL: [Unit; 7] = [
        Unit::Second,
        Unit::Minute,
        Unit::Hour,
        Unit::Day,
        Unit::Week,
        Unit::Month,
        Unit::Year,
    ];

    pub fn parse(s: &str) -> Option<Unit> {
        Unit::ALL
            .into_iter()
            .find(|u| u.name().eq_ignore_ascii_case(s))
    }

    pub fn name(self) -> &'static str {
        match self {
            Unit::Second => "SECOND",
            Unit::Minute => "MINUTE",
            Unit::Hour => "HOUR",
            Unit::Day => "DAY",
            Unit::Week => "WEEK",
            Unit::Month => "MONTH",
            Unit::Year => "YEAR",
        }
    }

    pub fn seconds(self) -> u64 {
        match self {
            Unit::Second => 1,
            Unit::Minute => 60,
            Unit::Hour => 3600,
            Unit::Day => 86_400,
            Unit::Week => 7 * 86_400,
            Unit::Month => 30 * 86_400,
            Unit::Year => 365 * 86_400,
        }
    }

    /// The protobuf value (`RateLimitResponse.RateLimit.Unit`).
    pub fn proto(self) -> i32 {
        match self {
            Unit::Second => 1,
            Unit::Minute => 2,
            Unit::Hour => 3,
            Unit::Day => 4,
            Unit::Month => 5,
            Unit::Year => 6,
            Unit::Week => 7,
        }
    }

    pub fn from_proto(v: i32) -> Option<Unit> {
        Unit::ALL.into_iter().find(|u| u.proto() == v)
    }

    /// The smallest unit at least `secs` long (a token bucket is reported in it, so the
    /// reported window never overstates the allowance); `YEAR` for anything longer.
    pub fn covering(secs: u64) -> Unit {
        Unit::ALL
            .into_iter()
            .find(|u| u.seconds() >= secs)
            .unwrap_or(Unit::Year)
    }
}

/// Token bucket parameters, with the semantics of meshwall's local `token_bucket` (and Envoy's
/// `local_ratelimit`): a new bucket is full; every `fill_interval_ms`, `tokens_per_fill` are
/// added, never above `max_tokens`; the fills stay on the bucket's own phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    pub max_tokens: u32,
    pub tokens_per_fill: u32,
    pub fill_interval_ms: u64,
}

/// YAML documents (domains) per file.
pub const MAX_DOCUMENTS: usize = 10_000;

pub const MIN_FILL_INTERVAL_MS: u64 = 50;
/// One year: longer intervals are "no refill" for any practical purpose.
pub const MAX_FILL_INTERVAL_MS: u64 = 365 * 86_400_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// envoyproxy/ratelimit's fixed window: `requests_per_unit` per calendar-aligned `unit`.
    Window {
        requests_per_unit: u32,
        unit: Unit,
    },
    Bucket(Bucket),
    /// `unlimited: true`: always OK, nothing stored.
    Unlimited,
}

/// One configured limit (a descriptor node's `rate_limit`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    /// `domain.key_value.key…`: the path of the node, for logs and metrics.
    pub full_key: String,
    pub name: Option<String>,
    pub kind: Kind,
    pub shadow: bool,
    /// envoyproxy/ratelimit's `quota_mode`: over this limit, the request is rejected only if
    /// every quota-mode limit of the request is over.
    pub quota: bool,
    pub replaces: Vec<String>,
}

/// A node of the descriptor tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Node {
    /// Children by `key` (a default) or `key_value`.
    pub children: HashMap<String, Node>,
    /// Children whose `key_value` contains `*`, in file order: (the child's map key, the key
    /// split on `*`).
    pub wildcards: Vec<(String, Vec<String>)>,
    /// Index into [`Config::limits`].
    pub limit: Option<usize>,
    pub share_threshold: bool,
    /// The wildcard `key_value` when `share_threshold` is set.
    pub wildcard_pattern: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    pub domains: HashMap<String, Node>,
    /// Every limit, in file order (metrics are per limit).
    pub limits: Vec<Limit>,
    /// The domains in file order.
    pub domain_names: Vec<String>,
}

// --- the YAML as written ---

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoot {
    #[serde(default, deserialize_with = "scalar")]
    domain: Option<String>,
    #[serde(default)]
    descriptors: Option<Vec<RawDescriptor>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDescriptor {
    #[serde(default, deserialize_with = "scalar")]
    key: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    value: Option<String>,
    #[serde(default)]
    rate_limit: Option<RawRateLimit>,
    #[serde(default)]
    descriptors: Option<Vec<RawDescriptor>>,
    #[serde(default)]
    shadow_mode: bool,
    #[serde(default)]
    quota_mode: bool,
    /// Metric naming in envoyproxy/ratelimit; accepted, no effect here.
    #[serde(default)]
    #[allow(dead_code)]
    detailed_metric: bool,
    /// Metric naming in envoyproxy/ratelimit; accepted, no effect here.
    #[serde(default)]
    #[allow(dead_code)]
    value_to_metric: bool,
    #[serde(default)]
    share_threshold: bool,
    /// Response dynamic metadata in envoyproxy/ratelimit; accepted, not sent.
    #[serde(default)]
    #[allow(dead_code)]
    metadata: Option<serde_norway::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    #[serde(default)]
    requests_per_unit: Option<u32>,
    #[serde(default, deserialize_with = "scalar")]
    unit: Option<String>,
    #[serde(default)]
    unlimited: bool,
    #[serde(default, deserialize_with = "scalar")]
    name: Option<String>,
    #[serde(default)]
    replaces: Option<Vec<RawReplaces>>,
    /// meshwall extension.
    #[serde(default)]
    token_bucket: Option<RawBucket>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReplaces {
    #[serde(default, deserialize_with = "scalar")]
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBucket {
    max_tokens: u32,
    tokens_per_fill: u32,
    #[serde(deserialize_with = "scalar_required")]
    fill_interval: String,
}

/// A YAML scalar as a string, as Go's yaml.v2 reads it into a string field: the text as written
/// (`value: 200` is "200", `value: 007` "007", `value: 0x1F` "0x1F", `value: yes` "yes"), so a
/// value matches the request's text whatever it looks like; a plain `null`, `~` or nothing
/// (`name:`) is absent, a quoted one a string.
fn scalar<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Option::<String>::deserialize(d)
}

fn scalar_required<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    use serde::de::Error;
    scalar(d)?.ok_or_else(|| D::Error::custom("expected a string"))
}

impl Config {
    /// Reads a file, or every `*.yaml`/`*.yml` file of a directory (sorted by name, not
    /// recursive), as envoyproxy/ratelimit reads its runtime directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with(path, false)
    }

    /// [`Config::load`]; with `merge_domains`, a domain repeated in several files or documents
    /// gets all their descriptors (envoyproxy/ratelimit's `MERGE_DOMAIN_CONFIG`; a descriptor
    /// repeated across them is still an error), else a repeated domain is an error.
    pub fn load_with(path: &Path, merge_domains: bool) -> Result<Config, ConfigError> {
        let err = |file: &Path, message: String| ConfigError {
            file: file.display().to_string(),
            field: String::new(),
            message,
        };
        let mut files = Vec::new();
        if path.is_dir() {
            let rd = std::fs::read_dir(path).map_err(|e| err(path, e.to_string()))?;
            for entry in rd {
                let p = entry.map_err(|e| err(path, e.to_string()))?.path();
                let yaml = matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("yaml") | Some("yml")
                );
                if yaml && p.is_file() {
                    files.push(p);
                }
            }
            files.sort();
            if files.is_empty() {
                return Err(err(path, "no *.yaml files in the directory".into()));
            }
        } else {
            files.push(path.to_path_buf());
        }
        let mut texts = Vec::new();
        for f in &files {
            let text = std::fs::read_to_string(f).map_err(|e| err(f, e.to_string()))?;
            texts.push((f.display().to_string(), text));
        }
        Config::from_texts_with(
            texts.iter().map(|(n, t)| (n.as_str(), t.as_str())),
            merge_domains,
        )
    }

    /// Parses YAML texts: (file name for errors, content).
    pub fn from_texts<'a>(
        texts: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Config, ConfigError> {
        Config::from_texts_with(texts, false)
    }

    /// [`Config::from_texts`], merging repeated domains if `merge_domains` (see `load_with`).
    pub fn from_texts_with<'a>(
        texts: impl IntoIterator<Item = (&'a str, &'a str)>,
        merge_domains: bool,
    ) -> Result<Config, ConfigError> {
        let mut cfg = Config::default();
        let mut origin: HashMap<String, String> = HashMap::new();
        for (file, text) in texts {
            // Lazily, stopping at the first error: after a syntax error the document iterator
            // never ends.
            for (i, doc) in serde_norway::Deserializer::from_str(text).enumerate() {
                let name = if i > 0 {
                    format!("{file} (document {})", i + 1)
                } else {
                    file.to_string()
                };
                if i >= MAX_DOCUMENTS {
                    return Err(ConfigError {
                        file: name,
                        field: String::new(),
                        message: format!("more than {MAX_DOCUMENTS} YAML documents"),
                    });
                }
                let raw: Option<RawRoot> = serde_path_to_error::deserialize(doc).map_err(|e| {
                    let field = field_of(&e.path().to_string());
                    let message = e.inner().to_string();
                    // serde_norway puts its own (shorter) path in front: keep ours.
                    let message = match message.split_once(": ") {
                        Some((p, rest)) if !p.contains(' ') && field.starts_with(p) => {
                            rest.to_string()
                        }
                        _ => message,
                    };
                    ConfigError {
                        file: name.clone(),
                        field,
                        message,
                    }
                })?;
                // An empty document (a lone `---`, a comment-only file) holds no domain.
                let Some(raw) = raw else { continue };
                let domain = cfg.add_domain(&name, raw, &origin, merge_domains)?;
                origin.entry(domain).or_insert(name);
            }
        }
        Ok(cfg)
    }

    fn add_domain(
        &mut self,
        file: &str,
        raw: RawRoot,
        origin: &HashMap<String, String>,
        merge: bool,
    ) -> Result<String, ConfigError> {
        let e = |field: &str, message: String| ConfigError {
            file: file.to_string(),
            field: field.to_string(),
            message,
        };
        let domain = raw.domain.unwrap_or_default();
        if domain.is_empty() {
            return Err(e(
                "domain",
                "a domain is required (and must not be empty)".into(),
            ));
        }
        let merged = merge.then(|| self.domains.remove(&domain)).flatten();
        if let (Some(first), None) = (origin.get(&domain), &merged) {
            return Err(e(
                "domain",
                format!("duplicate domain '{domain}' (also in {first})"),
            ));
        }
        let new = merged.is_none();
        let mut root = merged.unwrap_or_default();
        let descriptors = raw.descriptors.unwrap_or_default();
        self.load_descriptors(
            file,
            "descriptors",
            &format!("{domain}."),
            &descriptors,
            &mut root,
        )?;
        self.domains.insert(domain.clone(), root);
        if new {
            self.domain_names.push(domain.clone());
        }
        Ok(domain)
    }

    fn load_descriptors(
        &mut self,
        file: &str,
        field: &str,
        parent_key: &str,
        descriptors: &[RawDescriptor],
        node: &mut Node,
    ) -> Result<(), ConfigError> {
        for (i, d) in descriptors.iter().enumerate() {
            let at = format!("{field}[{i}]");
            let e = |sub: &str, message: String| ConfigError {
                file: file.to_string(),
                field: if sub.is_empty() {
                    at.clone()
                } else {
                    format!("{at}.{sub}")
                },
                message,
            };
            let key = d.key.clone().unwrap_or_default();
            if key.is_empty() {
                return Err(e("key", "a descriptor needs a non-empty key".into()));
            }
            let value = d.value.clone().unwrap_or_default();
            let final_key = if value.is_empty() {
                key.clone()
            } else {
                format!("{key}_{value}")
            };
            let full_key = format!("{parent_key}{final_key}");
            if node.children.contains_key(&final_key) {
                return Err(e(
                    "",
                    format!("duplicate descriptor composite key '{full_key}'"),
                ));
            }
            let wildcard = final_key.contains('*');
            if d.share_threshold && !wildcard {
                return Err(e(
                    "share_threshold",
                    format!("share_threshold needs a wildcard value (containing '*'), the key is '{final_key}'"),
                ));
            }
            let mut child = Node {
                share_threshold: d.share_threshold,
                wildcard_pattern: (d.share_threshold && wildcard).then(|| final_key.clone()),
                ..Node::default()
            };
            if let Some(rl) = &d.rate_limit {
                let mut limit = parse_rate_limit(rl, &full_key, d.shadow_mode)
                    .map_err(|(sub, msg)| e(&format!("rate_limit{sub}"), msg))?;
                limit.quota = d.quota_mode;
                self.limits.push(limit);
                child.limit = Some(self.limits.len() - 1);
            }
            if let Some(nested) = &d.descriptors {
                self.load_descriptors(
                    file,
                    &format!("{at}.descriptors"),
                    &format!("{full_key}."),
                    nested,
                    &mut child,
                )?;
            }
            if wildcard {
                let parts = final_key.split('*').map(str::to_string).collect();
                node.wildcards.push((final_key.clone(), parts));
            }
            node.children.insert(final_key, child);
        }
        Ok(())
    }
}

/// serde_path_to_error's path (`descriptors[0].rate_limit.unit`, `?` for an untyped step) as
/// the field; `.` for the document itself becomes empty.
fn field_of(path: &str) -> String {
    if path == "." {
        String::new()
    } else {
        path.to_string()
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
