//! The configuration compiled into what requests are checked against: the consumers and the
//! index of their key digests, the key sources, the rules (on the canonical request view), the
//! output headers. Everything is checked once, when the configuration loads; every error names
//! its field and never repeats a key.

use crate::config::{ApiKeyConfig, DEFAULT_HEADER};
use crate::keys::{parse_key, Digest, KeyIndex};
use crate::sources::Source;
use meshwall_core::canon::same_header;
use meshwall_core::config::{is_tchar, writable_header_name, FRAMING_HEADERS};
use meshwall_core::metrics::{Counter, Counters, Label, Registry};
use meshwall_core::{CanonConfig, ConfigError, Host, RouteMatch};
use std::collections::HashMap;

/// Headers that can be neither a key source nor an output header, besides the framing ones.
const NEVER_TOUCHED: &[&str] = &["cookie", "expect"];
const MAX_NAME: usize = 128;
const MAX_GROUP: usize = 64;
const MAX_GROUPS_PER_CONSUMER: usize = 64;

/// One consumer, as written to the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Consumer {
    pub(crate) name: String,
    /// Group ids (into the policy's group table).
    pub(crate) groups: Vec<u32>,
    /// The groups header value (`, `-joined, config order); `None` when in no group.
    pub(crate) groups_value: Option<String>,
}

/// What a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Need {
    /// A valid key (`false`: the key is not looked at).
    pub(crate) requires: bool,
    /// No key at all passes (a bad key does not).
    pub(crate) allow_missing: bool,
    /// The consumer is in one of these groups (empty: any consumer).
    pub(crate) groups: Vec<u32>,
}

pub(crate) struct Rule {
    pub(crate) route: RouteMatch,
    pub(crate) need: Need,
}

impl Rule {
    /// Whether the rule applies to this method and canonical path.
    pub(crate) fn matches(&self, method: &str, path: &str, cfg: &CanonConfig) -> bool {
        self.route.matches(method, path, cfg)
    }
}

/// `meshwall.apikey.allowed`, `.anonymous`, `.denied.reason.<Denial::reason>`, and the
/// gauges `.consumers` and `.keys` (see `meshwall_core::metrics`). No metric per consumer:
/// there may be thousands.
pub(crate) struct Metrics {
    pub(crate) allowed: Counter,
    pub(crate) anonymous: Counter,
    pub(crate) denied: Counters,
}

impl Metrics {
    /// Defines the counters, and records the configured numbers of consumers and keys.
    pub(crate) fn define(
        host: &dyn Host,
        consumers: usize,
        keys: usize,
    ) -> Result<Self, ConfigError> {
        let m = Registry::of::<crate::policy::ApiKeyPolicy>(host);
        for (name, v) in [("consumers", consumers), ("keys", keys)] {
            m.gauge(name, &[])?
                .set(host, u64::try_from(v).unwrap_or(u64::MAX));
        }
        let reasons = crate::policy::Denial::ALL.map(crate::policy::Denial::reason);
        Ok(Metrics {
            allowed: m.counter("allowed", &[])?,
            anonymous: m.counter("anonymous", &[])?,
            denied: m.counters("denied", Label::Reason, &reasons)?,
        })
    }
}

/// Everything but the metrics and refusals.
pub(crate) struct Compiled {
    pub(crate) consumers: Vec<Consumer>,
    pub(crate) index: KeyIndex,
    /// Keys given in clear (counted in one warning).
    pub(crate) plain_keys: usize,
    pub(crate) sources: Vec<Source>,
    pub(crate) rules: Vec<Rule>,
    pub(crate) default_need: Need,
    pub(crate) consumer_header: String,
    pub(crate) groups_header: Option<String>,
    /// Every header the filter writes: always stripped from requests, in every spelling.
    pub(crate) output_headers: Vec<String>,
    /// Stripped from request trailers: the output headers, the key source headers, `cookie`
    /// when a key may come in a cookie.
    pub(crate) trailer_names: Vec<String>,
    pub(crate) challenge: String,
}

/// Whether a consumer or group name can be written to a header: visible ASCII (inner spaces
/// allowed in names), without `,` `;` `"` `\`.
fn label_ok(s: &str, max: usize, spaces: bool) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.trim() == s
        && s.bytes().all(|b| {
            (b.is_ascii_graphic() || (spaces && b == b' '))
                && !matches!(b, b',' | b';' | b'"' | b'\\')
        })
}

fn check_label(
    field: impl FnOnce() -> String,
    s: &str,
    max: usize,
    spaces: bool,
) -> Result<(), ConfigError> {
    if label_ok(s, max, spaces) {
        return Ok(());
    }
    let what = if spaces {
        "1-128 visible ASCII characters (inner spaces allowed)"
    } else {
        "1-64 visible ASCII characters"
    };
    Err(ConfigError::new(
        field(),
        format!("must be {what}, without `,` `;` `\"` `\\`"),
    ))
}

fn check_header(field: &str, name: &str) -> Result<String, ConfigError> {
    let lower = writable_header_name(field, name, FRAMING_HEADERS)?;
    writable_header_name(field, &lower, NEVER_TOUCHED)
}

fn build_consumers(
    cfg: &ApiKeyConfig,
    groups: &mut HashMap<String, u32>,
) -> Result<(Vec<Consumer>, KeyIndex, usize), ConfigError> {
    if cfg.consumers.is_empty() {
        return Err(ConfigError::new("consumers", "give at least one consumer"));
    }
    let mut out = Vec::with_capacity(cfg.consumers.len());
    let mut names: HashMap<&str, usize> = HashMap::with_capacity(cfg.consumers.len());
    let total: usize = cfg.consumers.iter().map(|c| c.keys.len()).sum();
    let mut seen: HashMap<Digest, (usize, usize)> = HashMap::with_capacity(total);
    let mut plain = 0usize;
    for (ci, c) in cfg.consumers.iter().enumerate() {
        let f = |x: &str| format!("consumers[{ci}].{x}");
        check_label(|| f("name"), &c.name, MAX_NAME, true)?;
        if let Some(prev) = names.insert(c.name.as_str(), ci) {
            return Err(ConfigError::new(
                f("name"),
                format!("`{}` is already the name of consumers[{prev}]", c.name),
            ));
        }
        for (ki, k) in c.keys.iter().enumerate() {
            let field = || f(&format!("keys[{ki}]"));
            let key = parse_key(k).map_err(|e| ConfigError::new(field(), e))?;
            plain += usize::from(key.plain);
            if let Some((pc, pk)) = seen.insert(key.digest, (ci, ki)) {
                let whose = if pc == ci {
                    "this consumer".to_string()
                } else {
                    format!(
                        "consumer `{}`",
                        cfg.consumers.get(pc).map_or("", |p| p.name.as_str())
                    )
                };
                return Err(ConfigError::new(
                    field(),
                    format!("the same key as consumers[{pc}].keys[{pk}] ({whose}): a key identifies one consumer"),
                ));
            }
        }
        if c.groups.len() > MAX_GROUPS_PER_CONSUMER {
            return Err(ConfigError::new(
                f("groups"),
                format!("at most {MAX_GROUPS_PER_CONSUMER} groups"),
            ));
        }
        let mut ids = Vec::with_capacity(c.groups.len());
        for (gi, g) in c.groups.iter().enumerate() {
            let field = || f(&format!("groups[{gi}]"));
            check_label(field, g, MAX_GROUP, false)?;
            let id = group_id(groups, g);
            if ids.contains(&id) {
                return Err(ConfigError::new(field(), format!("`{g}` is given twice")));
            }
            ids.push(id);
        }
        out.push(Consumer {
            name: c.name.clone(),
            groups: ids,
            groups_value: (!c.groups.is_empty()).then(|| c.groups.join(", ")),
        });
    }
    let keys = seen
        .into_iter()
        .map(|(d, (ci, _))| (d, u32::try_from(ci).unwrap_or(u32::MAX)))
        .collect();
    Ok((out, KeyIndex::build(keys), plain))
}

fn group_id(groups: &mut HashMap<String, u32>, g: &str) -> u32 {
    if let Some(id) = groups.get(g) {
        return *id;
    }
    let next = u32::try_from(groups.len()).unwrap_or(u32::MAX);
    groups.insert(g.to_string(), next);
    next
}

fn build_sources(cfg: &ApiKeyConfig) -> Result<Vec<Source>, ConfigError> {
    let mut out: Vec<Source> = Vec::new();
    for (i, h) in cfg.from_headers.iter().enumerate() {
        let field = format!("from_headers[{i}]");
        let name = check_header(&format!("{field}.name"), &h.name)?;
        if let Some(Source::Header { name: prev, .. }) = out
            .iter()
            .find(|s| matches!(s, Source::Header { name: n, .. } if same_header(n, &name)))
        {
            return Err(ConfigError::new(
                format!("{field}.name"),
                format!("`{name}` is already a key source (`{prev}`)"),
            ));
        }
        let prefix = match &h.value_prefix {
            None => None,
            Some(p) if p.trim().is_empty() || p.chars().any(char::is_control) || !p.is_ascii() => {
                return Err(ConfigError::new(
                    format!("{field}.value_prefix"),
                    "visible ASCII text (a trailing space allowed), or leave it out",
                ))
            }
            Some(p) => Some(p.clone()),
        };
        out.push(Source::Header { name, prefix });
    }
    for (i, p) in cfg.from_params.iter().enumerate() {
        let field = format!("from_params[{i}]");
        if p.is_empty()
            || p.contains(['&', '=', '#', ';', '[', ']', '%', '+', ' '])
            || p.chars().any(char::is_control)
        {
            return Err(ConfigError::new(field, "not a usable query parameter name"));
        }
        if out.contains(&Source::Param(p.clone())) {
            return Err(ConfigError::new(field, format!("`{p}` is given twice")));
        }
        out.push(Source::Param(p.clone()));
    }
    for (i, c) in cfg.from_cookies.iter().enumerate() {
        let field = format!("from_cookies[{i}]");
        if c.is_empty() || !c.chars().all(is_tchar) {
            return Err(ConfigError::new(field, "not a valid cookie name"));
        }
        if out.contains(&Source::Cookie(c.clone())) {
            return Err(ConfigError::new(field, format!("`{c}` is given twice")));
        }
        out.push(Source::Cookie(c.clone()));
    }
    if out.is_empty() {
        out.push(Source::Header {
            name: DEFAULT_HEADER.into(),
            prefix: None,
        });
    }
    Ok(out)
}

fn build_need(
    field: &str,
    requires: bool,
    allow_missing: bool,
    names: &[String],
    groups: &mut HashMap<String, u32>,
) -> Result<Need, ConfigError> {
    if !requires && allow_missing {
        return Err(ConfigError::new(
            format!("{field}allow_missing"),
            "needs `requires: true`",
        ));
    }
    if !names.is_empty() && !requires {
        return Err(ConfigError::new(
            format!("{field}groups"),
            "groups need `requires: true`",
        ));
    }
    if !names.is_empty() && allow_missing {
        return Err(ConfigError::new(
            format!("{field}groups"),
            "a missing key has no groups (`allow_missing`)",
        ));
    }
    let mut ids = Vec::new();
    for (i, g) in names.iter().enumerate() {
        let f = format!("{field}groups[{i}]");
        check_label(|| f.clone(), g, MAX_GROUP, false)?;
        let id = group_id(groups, g);
        if ids.contains(&id) {
            return Err(ConfigError::new(f, format!("`{g}` is given twice")));
        }
        ids.push(id);
    }
    Ok(Need {
        requires,
        allow_missing,
        groups: ids,
    })
}

fn build_output_headers(
    cfg: &ApiKeyConfig,
    sources: &[Source],
) -> Result<Vec<String>, ConfigError> {
    let mut out = vec![check_header("consumer_header", &cfg.consumer_header)?];
    if let Some(g) = &cfg.groups_header {
        let g = check_header("groups_header", g)?;
        if out.iter().any(|o| same_header(o, &g)) {
            return Err(ConfigError::new(
                "groups_header",
                format!("`{g}` is `consumer_header` for backends that read `_` as `-`"),
            ));
        }
        out.push(g);
    }
    for (field, h) in [
        ("consumer_header", out.first()),
        ("groups_header", out.get(1)),
    ] {
        let Some(h) = h else { continue };
        if sources
            .iter()
            .any(|s| matches!(s, Source::Header { name, .. } if same_header(name, h)))
        {
            return Err(ConfigError::new(
                field,
                format!("`{h}` is also a key source header"),
            ));
        }
    }
    Ok(out)
}

/// Checks the whole configuration (except metrics) and compiles it.
pub(crate) fn compile(cfg: &ApiKeyConfig) -> Result<Compiled, ConfigError> {
    if cfg.realm.is_empty()
        || cfg.realm.len() > 128
        || cfg
            .realm
            .chars()
            .any(|c| c == '"' || c == '\\' || c.is_control() || !c.is_ascii())
    {
        return Err(ConfigError::new(
            "realm",
            "1-128 ASCII characters, without quotes, backslashes or control characters",
        ));
    }
    let mut groups = HashMap::new();
    let (consumers, index, plain_keys) = build_consumers(cfg, &mut groups)?;
    let sources = build_sources(cfg)?;
    let output_headers = build_output_headers(cfg, &sources)?;
    let mut rules = Vec::with_capacity(cfg.rules.len());
    for (i, r) in cfg.rules.iter().enumerate() {
        let field = format!("rules[{i}]");
        let route = r.route.compile(&format!("{field}.match"), &cfg.canonical)?;
        let need = build_need(
            &format!("{field}."),
            r.requires,
            r.allow_missing,
            &r.groups,
            &mut groups,
        )?;
        rules.push(Rule { route, need });
    }
    let d = &cfg.default_rule;
    let default_need = build_need(
        "default.",
        d.requires,
        d.allow_missing,
        &d.groups,
        &mut groups,
    )?;
    let mut trailer_names = output_headers.clone();
    for s in &sources {
        let name = match s {
            Source::Header { name, .. } => name.as_str(),
            Source::Cookie(_) => "cookie",
            Source::Param(_) => continue,
        };
        if !trailer_names.iter().any(|t| t == name) {
            trailer_names.push(name.to_string());
        }
    }
    Ok(Compiled {
        consumers,
        index,
        plain_keys,
        sources,
        rules,
        default_need,
        consumer_header: output_headers.first().cloned().unwrap_or_default(),
        groups_header: output_headers.get(1).cloned(),
        output_headers,
        trailer_names,
        challenge: format!("APIKey realm=\"{}\"", cfg.realm),
    })
}
