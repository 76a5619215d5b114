//! Building the policy from its configuration: providers (claim rules, token sources,
//! output headers, keys) and route rules. Every check names the field at fault.

use crate::config::{parse_duration, ProviderConfig, RuleConfig};
use crate::jwks::{parse_jwks, parse_jwks_value, KeySet};
use crate::remote::{split_uri, Remote, RemoteSettings};
use crate::rules::{ClaimCheck, Need, Rule};
use crate::sources::Source;
use crate::token::{ClaimRules, SubjectMatch};
use meshwall_core::canon::same_header;
use meshwall_core::config::{is_tchar, writable_header_name, FRAMING_HEADERS};
use meshwall_core::{CanonConfig, ConfigError, Host};
use serde_json::Value;
use std::rc::Rc;
use std::time::Duration;

const MAX_CLOCK_SKEW: u64 = 3600;

/// Headers a claim may never be written to, besides the framing ones
/// ([`meshwall_core::config::FRAMING_HEADERS`]).
const NEVER_CLAIM_HEADERS: &[&str] = &["cookie", "expect"];

pub(crate) enum Keys {
    Local(Rc<KeySet>),
    Remote(Box<Remote>),
}

pub(crate) struct Provider {
    pub(crate) name: String,
    pub(crate) rules: ClaimRules,
    /// Indexes into the policy's source table.
    pub(crate) sources: Vec<usize>,
    pub(crate) forward: bool,
    pub(crate) payload_header: Option<String>,
    pub(crate) claim_headers: Vec<(String, String)>,
    pub(crate) keys: Keys,
}

impl Provider {
    /// The keys usable now (a remote JWKS past its `max_stale` has none).
    pub(crate) fn current_keys(&self, host: &dyn Host) -> Option<Rc<KeySet>> {
        match &self.keys {
            Keys::Local(k) => Some(k.clone()),
            Keys::Remote(r) => r.current(host),
        }
    }

    /// Version of the keys usable now (cached verifications are valid only for it).
    pub(crate) fn keys_version(&self, host: &dyn Host) -> Option<u64> {
        self.current_keys(host).map(|k| k.version)
    }
}

fn check_header_name(field: &str, name: &str) -> Result<String, ConfigError> {
    let lower = writable_header_name(field, name, FRAMING_HEADERS)?;
    writable_header_name(field, &lower, NEVER_CLAIM_HEADERS)
}

fn check_text(field: &str, s: &str) -> Result<(), ConfigError> {
    if s.chars().any(|c| c.is_control() && c != '\t') {
        return Err(ConfigError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

fn check_provider_name(name: &str) -> Result<(), ConfigError> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(ConfigError::new(
            format!("providers.{name}"),
            "provider names are 1-64 characters of A-Z a-z 0-9 - _ .",
        ));
    }
    Ok(())
}

fn source_index(table: &mut Vec<Source>, s: Source) -> usize {
    if let Some(i) = table.iter().position(|t| *t == s) {
        return i;
    }
    table.push(s);
    table.len() - 1
}

pub(crate) fn build_provider(
    name: &str,
    cfg: &ProviderConfig,
    table: &mut Vec<Source>,
    host: &dyn Host,
) -> Result<Provider, ConfigError> {
    let f = |field: &str| format!("providers.{name}.{field}");
    check_provider_name(name)?;
    if let Some(iss) = &cfg.issuer {
        if iss.is_empty() {
            return Err(ConfigError::new(
                f("issuer"),
                "must not be empty (leave it out to accept any issuer)",
            ));
        }
    }
    for (i, a) in cfg.audiences.iter().enumerate() {
        if a.is_empty() {
            return Err(ConfigError::new(
                f(&format!("audiences[{i}]")),
                "must not be empty",
            ));
        }
    }
    let mut subjects = Vec::new();
    for (i, s) in cfg.subjects.iter().enumerate() {
        let field = f(&format!("subjects[{i}]"));
        subjects.push(match (&s.exact, &s.prefix) {
            (Some(e), None) if !e.is_empty() => SubjectMatch::Exact(e.clone()),
            (None, Some(p)) if !p.is_empty() => SubjectMatch::Prefix(p.clone()),
            _ => {
                return Err(ConfigError::new(
                    field,
                    "give exactly one non-empty `exact` or `prefix`",
                ))
            }
        });
    }
    if cfg.clock_skew_seconds > MAX_CLOCK_SKEW {
        return Err(ConfigError::new(
            f("clock_skew_seconds"),
            format!("at most {MAX_CLOCK_SKEW}"),
        ));
    }
    if cfg.max_lifetime_seconds == Some(0) {
        return Err(ConfigError::new(
            f("max_lifetime_seconds"),
            "must be positive",
        ));
    }
    let rules = ClaimRules {
        issuer: cfg.issuer.clone(),
        audiences: cfg.audiences.clone(),
        subjects,
        require_expiration: cfg.require_expiration,
        max_lifetime_seconds: cfg.max_lifetime_seconds,
        clock_skew_seconds: cfg.clock_skew_seconds,
    };

    // Token sources.
    let mut sources = Vec::new();
    let mut token_headers = Vec::new();
    for (i, h) in cfg.from_headers.iter().enumerate() {
        let hn = check_header_name(&f(&format!("from_headers[{i}].name")), &h.name)?;
        if let Some(p) = &h.value_prefix {
            check_text(&f(&format!("from_headers[{i}].value_prefix")), p)?;
        }
        token_headers.push(hn.clone());
        let prefix = h.value_prefix.clone().filter(|p| !p.is_empty());
        sources.push(source_index(table, Source::Header { name: hn, prefix }));
    }
    for (i, p) in cfg.from_params.iter().enumerate() {
        if p.is_empty() || p.contains(['&', '=', '#']) || p.chars().any(char::is_control) {
            return Err(ConfigError::new(
                f(&format!("from_params[{i}]")),
                "not a usable query parameter name",
            ));
        }
        sources.push(source_index(table, Source::Param(p.clone())));
    }
    for (i, c) in cfg.from_cookies.iter().enumerate() {
        if c.is_empty() || !c.chars().all(is_tchar) {
            return Err(ConfigError::new(
                f(&format!("from_cookies[{i}]")),
                "not a valid cookie name",
            ));
        }
        sources.push(source_index(table, Source::Cookie(c.clone())));
    }
    if sources.is_empty() {
        token_headers.push("authorization".into());
        sources.push(source_index(
            table,
            Source::Header {
                name: "authorization".into(),
                prefix: Some("Bearer ".into()),
            },
        ));
    }

    // Output headers.
    let mut claim_headers: Vec<(String, String)> = Vec::new();
    for (i, c) in cfg.claim_to_headers.iter().enumerate() {
        let field = f(&format!("claim_to_headers[{i}]"));
        let h = check_header_name(&format!("{field}.header_name"), &c.header_name)?;
        if c.claim_name.is_empty() || c.claim_name.split('.').any(str::is_empty) {
            return Err(ConfigError::new(
                format!("{field}.claim_name"),
                "not a claim name or dotted path",
            ));
        }
        if token_headers.iter().any(|t| same_header(t, &h))
            || claim_headers.iter().any(|(x, _)| same_header(x, &h))
        {
            return Err(ConfigError::new(
                format!("{field}.header_name"),
                format!("`{h}` is already used"),
            ));
        }
        claim_headers.push((h, c.claim_name.clone()));
    }
    let payload_header = match &cfg.forward_payload_header {
        None => None,
        Some(h) => {
            let h = check_header_name(&f("forward_payload_header"), h)?;
            if token_headers.iter().any(|t| same_header(t, &h))
                || claim_headers.iter().any(|(x, _)| same_header(x, &h))
            {
                return Err(ConfigError::new(
                    f("forward_payload_header"),
                    format!("`{h}` is already used"),
                ));
            }
            Some(h)
        }
    };

    // Keys.
    let keys = match (&cfg.local_jwks, &cfg.remote_jwks) {
        (Some(local), None) => {
            let parsed = match (&local.inline_string, &local.inline_jwks) {
                (Some(s), None) => parse_jwks(s.as_bytes(), true).map_err(|e| {
                    ConfigError::new(
                        f("local_jwks.inline_string"),
                        format!(
                            "{}: {}",
                            if e.field.is_empty() { "JWKS" } else { &e.field },
                            e.reason
                        ),
                    )
                })?,
                (None, Some(Value::Object(o))) => parse_jwks_value(o, true).map_err(|e| {
                    let path = if e.field.is_empty() {
                        f("local_jwks.inline_jwks")
                    } else {
                        f(&format!("local_jwks.inline_jwks.{}", e.field))
                    };
                    ConfigError::new(path, e.reason)
                })?,
                (None, Some(_)) => {
                    return Err(ConfigError::new(
                        f("local_jwks.inline_jwks"),
                        "must be a JWKS object",
                    ))
                }
                _ => {
                    return Err(ConfigError::new(
                        f("local_jwks"),
                        "give exactly one of `inline_string`, `inline_jwks`",
                    ))
                }
            };
            let (mut set, _) = parsed;
            set.version = 1;
            Keys::Local(Rc::new(set))
        }
        (None, Some(remote)) => {
            let r = |x: &str| f(&format!("remote_jwks.{x}"));
            let (authority, path) = split_uri(&remote.http_uri.uri).ok_or_else(|| {
                ConfigError::new(r("http_uri.uri"), "expected http(s)://host[:port]/path")
            })?;
            if remote.http_uri.cluster.is_empty() {
                return Err(ConfigError::new(
                    r("http_uri.cluster"),
                    "must name an Envoy cluster",
                ));
            }
            let timeout = parse_duration(&r("http_uri.timeout"), &remote.http_uri.timeout)?;
            if timeout < Duration::from_millis(100) || timeout > Duration::from_secs(60) {
                return Err(ConfigError::new(
                    r("http_uri.timeout"),
                    "between 100ms and 60s",
                ));
            }
            let cache_duration = parse_duration(&r("cache_duration"), &remote.cache_duration)?;
            if cache_duration < Duration::from_secs(1) {
                return Err(ConfigError::new(r("cache_duration"), "at least 1s"));
            }
            let failed_refetch = parse_duration(
                &r("failed_refetch_duration"),
                &remote.failed_refetch_duration,
            )?;
            if failed_refetch < Duration::from_millis(500) {
                return Err(ConfigError::new(
                    r("failed_refetch_duration"),
                    "at least 500ms",
                ));
            }
            let refetch_min =
                parse_duration(&r("refetch_min_interval"), &remote.refetch_min_interval)?;
            if refetch_min < Duration::from_secs(1) {
                return Err(ConfigError::new(r("refetch_min_interval"), "at least 1s"));
            }
            let max_stale = parse_duration(&r("max_stale"), &remote.max_stale)?;
            if max_stale < timeout {
                return Err(ConfigError::new(
                    r("max_stale"),
                    "at least `http_uri.timeout` (a slow refresh must not drop the keys)",
                ));
            }
            let remote = Remote::new(
                name,
                RemoteSettings {
                    cluster: remote.http_uri.cluster.clone(),
                    authority,
                    path,
                    timeout,
                    cache_duration,
                    failed_refetch,
                    refetch_min,
                    refetch_on_unknown_kid: remote.refetch_on_unknown_kid,
                    max_stale,
                },
            );
            remote.init(host);
            Keys::Remote(Box::new(remote))
        }
        _ => {
            return Err(ConfigError::new(
                f("local_jwks"),
                "give exactly one of `local_jwks`, `remote_jwks`",
            ))
        }
    };

    Ok(Provider {
        name: name.to_string(),
        rules,
        sources,
        forward: cfg.forward,
        payload_header,
        claim_headers,
        keys,
    })
}

fn provider_index(providers: &[Provider], field: &str, name: &str) -> Result<usize, ConfigError> {
    providers
        .iter()
        .position(|p| p.name == name)
        .ok_or_else(|| ConfigError::new(field, format!("no provider named `{name}`")))
}

pub(crate) fn build_rule(
    i: usize,
    cfg: &RuleConfig,
    providers: &[Provider],
    canon: &CanonConfig,
) -> Result<Rule, ConfigError> {
    let f = |x: &str| format!("rules[{i}].{x}");
    let route = cfg.route.compile(&f("match"), canon)?;
    let need = match &cfg.requires {
        None => {
            if cfg.allow_missing {
                return Err(ConfigError::new(f("allow_missing"), "needs `requires`"));
            }
            Need::Nothing
        }
        Some(req) => {
            let (names, all, field) =
                match (&req.provider_name, &req.requires_any, &req.requires_all) {
                    (Some(n), None, None) => (vec![n.clone()], false, f("requires.provider_name")),
                    (None, Some(list), None) => (list.clone(), false, f("requires.requires_any")),
                    (None, None, Some(list)) => (list.clone(), true, f("requires.requires_all")),
                    _ => {
                        return Err(ConfigError::new(
                            f("requires"),
                            "give exactly one of `provider_name`, `requires_any`, `requires_all`",
                        ))
                    }
                };
            if names.is_empty() {
                return Err(ConfigError::new(field, "must name at least one provider"));
            }
            let mut idx = Vec::new();
            for (j, n) in names.iter().enumerate() {
                let fi = if req.provider_name.is_some() {
                    field.clone()
                } else {
                    format!("{field}[{j}]")
                };
                let p = provider_index(providers, &fi, n)?;
                if !idx.contains(&p) {
                    idx.push(p);
                }
            }
            Need::Token {
                providers: idx,
                all,
                allow_missing: cfg.allow_missing,
            }
        }
    };
    let mut claims = Vec::new();
    for (j, c) in cfg.claims.iter().enumerate() {
        let field = f(&format!("claims[{j}]"));
        if matches!(need, Need::Nothing) {
            return Err(ConfigError::new(field, "claim conditions need `requires`"));
        }
        if cfg.allow_missing {
            return Err(ConfigError::new(
                field,
                "claim conditions cannot hold for a missing token (`allow_missing`)",
            ));
        }
        if c.name.is_empty() || c.name.split('.').any(str::is_empty) {
            return Err(ConfigError::new(
                format!("{field}.name"),
                "not a claim name or dotted path",
            ));
        }
        claims.push(match (&c.contains, &c.contains_any, &c.equals) {
            (Some(v), None, None) => ClaimCheck::Contains { name: c.name.clone(), any_of: vec![v.clone()] },
            (None, Some(list), None) if !list.is_empty() => ClaimCheck::Contains { name: c.name.clone(), any_of: list.clone() },
            (None, None, Some(v)) if matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_)) => {
                ClaimCheck::Equals { name: c.name.clone(), value: v.clone() }
            }
            _ => {
                return Err(ConfigError::new(
                    field,
                    "give exactly one of `contains`, `contains_any` (non-empty), `equals` (string, number or boolean)",
                ))
            }
        });
    }
    Ok(Rule {
        route,
        need,
        claims,
    })
}

/// Every header the providers write (claims, payloads), once each. Two spellings that a
/// backend folds together (`x-user` and `x_user`) are one header: refused. No output header
/// may fold into a token source header of any provider.
pub(crate) fn output_headers(
    providers: &[Provider],
    sources: &[Source],
) -> Result<Vec<String>, ConfigError> {
    let mut out: Vec<String> = Vec::new();
    for p in providers {
        let field = format!("providers.{}", p.name);
        for h in p
            .claim_headers
            .iter()
            .map(|(h, _)| h)
            .chain(p.payload_header.iter())
        {
            match out.iter().find(|o| same_header(o, h)) {
                Some(o) if o != h => {
                    return Err(ConfigError::new(
                        field,
                        format!("output header `{h}` is `{o}` for backends that read `_` as `-`"),
                    ))
                }
                Some(_) => {}
                None => out.push(h.clone()),
            }
        }
    }
    for s in sources {
        if let Source::Header { name, .. } = s {
            if out.iter().any(|o| same_header(o, name)) {
                return Err(ConfigError::new(
                    "providers",
                    format!("header `{name}` is both a token source and an output header"),
                ));
            }
        }
    }
    Ok(out)
}
