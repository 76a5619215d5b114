//! The `jwt` policy: finds the token, verifies it against the providers a route requires,
//! checks claim conditions, and writes claim headers. Configured output headers are always
//! removed from the incoming request first, on every path.

use crate::config::{parse_duration, JwtConfig, ProviderConfig, RuleConfig};
use crate::jwks::{parse_jwks, parse_jwks_value, KeySet};
use crate::remote::{split_uri, FetchOutcome, Remote, RemoteSettings};
use crate::rules::{compile_regex, ClaimCheck, Need, PathMatch, Rule};
use crate::sources::{extract, removal_ops, Found, Source};
use crate::token::{
    candidate_keys, check_claims, claim, claim_header_value, decode, verify_with, ClaimRules,
    Decoded, Failure, SubjectMatch,
};
use lru::LruCache;
use meshwall_core::config::{is_tchar, writable_header_name, FRAMING_HEADERS};
use meshwall_core::{
    Action, CalloutResponse, ConfigError, HeaderOp, Host, LocalReply, MetricId, MetricKind, Policy,
    Request,
};
use serde_json::{Map, Value};
use std::cell::RefCell;
use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::rc::Rc;
use std::time::Duration;

/// How often each worker's root context ticks when a provider uses a remote JWKS.
pub const TICK: Duration = Duration::from_millis(500);
const MAX_CACHE_SIZE: usize = 100_000;
const MAX_CLOCK_SKEW: u64 = 3600;

/// Headers a claim may never be written to, besides the framing ones
/// ([`meshwall_core::config::FRAMING_HEADERS`]).
const NEVER_CLAIM_HEADERS: &[&str] = &["cookie", "expect"];

enum Keys {
    Local(Rc<KeySet>),
    Remote(Box<Remote>),
}

struct Provider {
    name: String,
    rules: ClaimRules,
    /// Indexes into the policy's source table.
    sources: Vec<usize>,
    forward: bool,
    payload_header: Option<String>,
    claim_headers: Vec<(String, String)>,
    keys: Keys,
}

impl Provider {
    fn current_keys(&self, host: &dyn Host) -> Option<Rc<KeySet>> {
        match &self.keys {
            Keys::Local(k) => Some(k.clone()),
            Keys::Remote(r) => r.current(host),
        }
    }

    fn keys_version(&self) -> Option<u64> {
        match &self.keys {
            Keys::Local(k) => Some(k.version),
            Keys::Remote(r) => r.loaded_version(),
        }
    }
}

/// Per-worker LRU of verified tokens: (SHA-256 of the token, provider index) → result.
type Cache = LruCache<([u8; 32], usize), Rc<Verified>>;

/// A token that verified for one provider (cached per worker).
struct Verified {
    /// Accepted until this second (exp + skew).
    until: u64,
    keys_version: u64,
    payload: Rc<Map<String, Value>>,
    /// Claim and payload headers for this provider.
    headers: Vec<(String, String)>,
}

struct Metrics {
    allowed: MetricId,
    denied: Vec<MetricId>,
    cache_hit: MetricId,
    cache_miss: MetricId,
    fetch_ok: MetricId,
    fetch_failed: MetricId,
}

pub struct JwtPolicy {
    providers: Vec<Provider>,
    sources: Vec<Source>,
    rules: Vec<Rule>,
    default_need: Need,
    bypass_cors_preflight: bool,
    realm: String,
    max_token_bytes: usize,
    /// Every header the filter writes (claims, payloads): always stripped from requests.
    output_headers: Vec<String>,
    cache: Option<RefCell<Cache>>,
    /// Fetches this worker started: call token → provider index.
    pending: RefCell<HashMap<u32, usize>>,
    metrics: Metrics,
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

fn build_provider(
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
        if token_headers.contains(&h) || claim_headers.iter().any(|(x, _)| *x == h) {
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
            if token_headers.contains(&h) || claim_headers.iter().any(|(x, _)| *x == h) {
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

fn build_rule(i: usize, cfg: &RuleConfig, providers: &[Provider]) -> Result<Rule, ConfigError> {
    let f = |x: &str| format!("rules[{i}].{x}");
    let m = &cfg.route;
    let path = match (&m.path, &m.prefix, &m.safe_regex) {
        (Some(p), None, None) if p.starts_with('/') => PathMatch::Exact(p.clone()),
        (None, Some(p), None) if p.starts_with('/') => PathMatch::Prefix(p.clone()),
        (None, None, Some(r)) => PathMatch::Regex(
            compile_regex(&r.regex)
                .map_err(|e| ConfigError::new(f("match.safe_regex.regex"), e))?,
        ),
        (Some(_), None, None) | (None, Some(_), None) => {
            return Err(ConfigError::new(
                f("match"),
                "paths and prefixes start with `/`",
            ))
        }
        _ => {
            return Err(ConfigError::new(
                f("match"),
                "give exactly one of `path`, `prefix`, `safe_regex`",
            ))
        }
    };
    let mut methods = Vec::new();
    for (j, meth) in m.methods.iter().enumerate() {
        if meth.is_empty() || !meth.chars().all(is_tchar) {
            return Err(ConfigError::new(
                f(&format!("match.methods[{j}]")),
                "not an HTTP method",
            ));
        }
        methods.push(meth.to_ascii_uppercase());
    }
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
        path,
        methods,
        need,
        claims,
    })
}

fn define(host: &dyn Host, name: &str) -> Result<MetricId, ConfigError> {
    host.define_metric(MetricKind::Counter, &format!("meshwall.jwt.{name}"))
        .map_err(|e| ConfigError::new(".", format!("cannot define metric {name}: {e}")))
}

impl JwtPolicy {
    pub fn from_config(cfg: JwtConfig, host: &dyn Host) -> Result<Self, ConfigError> {
        if cfg.providers.is_empty() {
            return Err(ConfigError::new(
                "providers",
                "at least one provider is needed",
            ));
        }
        if cfg.max_token_bytes == 0 || cfg.max_token_bytes > 65536 {
            return Err(ConfigError::new("max_token_bytes", "between 1 and 65536"));
        }
        if cfg.jwt_cache_size > MAX_CACHE_SIZE {
            return Err(ConfigError::new(
                "jwt_cache_size",
                format!("at most {MAX_CACHE_SIZE}"),
            ));
        }
        if cfg.realm.is_empty()
            || cfg
                .realm
                .chars()
                .any(|c| c == '"' || c == '\\' || c.is_control())
        {
            return Err(ConfigError::new(
                "realm",
                "non-empty, without quotes, backslashes or control characters",
            ));
        }
        let mut sources = Vec::new();
        let mut providers = Vec::new();
        for (name, p) in &cfg.providers {
            providers.push(build_provider(name, p, &mut sources, host)?);
        }
        let mut rules = Vec::new();
        for (i, r) in cfg.rules.iter().enumerate() {
            rules.push(build_rule(i, r, &providers)?);
        }
        let mut output_headers: Vec<String> = Vec::new();
        for p in &providers {
            for h in p
                .claim_headers
                .iter()
                .map(|(h, _)| h)
                .chain(p.payload_header.iter())
            {
                if !output_headers.contains(h) {
                    output_headers.push(h.clone());
                }
            }
        }
        // An output header of one provider must not be a token source of another.
        for s in &sources {
            if let Source::Header { name, .. } = s {
                if output_headers.contains(name) {
                    return Err(ConfigError::new(
                        "providers",
                        format!("header `{name}` is both a token source and an output header"),
                    ));
                }
            }
        }
        let mut denied = Vec::new();
        for f in Failure::ALL {
            denied.push(define(host, &format!("denied.{}", f.metric()))?);
        }
        let metrics = Metrics {
            allowed: define(host, "allowed")?,
            denied,
            cache_hit: define(host, "cache.hit")?,
            cache_miss: define(host, "cache.miss")?,
            fetch_ok: define(host, "jwks_fetch.ok")?,
            fetch_failed: define(host, "jwks_fetch.failed")?,
        };
        let default_need = Need::Token {
            providers: (0..providers.len()).collect(),
            all: false,
            allow_missing: false,
        };
        Ok(JwtPolicy {
            providers,
            sources,
            rules,
            default_need,
            bypass_cors_preflight: cfg.bypass_cors_preflight,
            realm: cfg.realm,
            max_token_bytes: cfg.max_token_bytes,
            output_headers,
            cache: NonZeroUsize::new(cfg.jwt_cache_size).map(|n| RefCell::new(LruCache::new(n))),
            pending: RefCell::new(HashMap::new()),
            metrics,
        })
    }

    fn deny(&self, failure: Failure, host: &dyn Host) -> Action {
        let idx = Failure::ALL.iter().position(|f| *f == failure).unwrap_or(0);
        if let Some(id) = self.metrics.denied.get(idx) {
            host.increment_metric(*id, 1);
        }
        log::debug!("meshwall.jwt: request denied: {}", failure.metric());
        let desc = failure.description();
        let (status, challenge) = match failure {
            Failure::Missing => (401, format!("Bearer realm=\"{}\"", self.realm)),
            Failure::Forbidden => (
                403,
                format!("Bearer realm=\"{}\", error=\"insufficient_scope\", error_description=\"{desc}\"", self.realm),
            ),
            _ => (401, format!("Bearer realm=\"{}\", error=\"invalid_token\", error_description=\"{desc}\"", self.realm)),
        };
        Action::Reply(
            LocalReply::builder(status, desc)
                .header("www-authenticate", challenge)
                .build(),
        )
    }

    fn allow(&self, ops: Vec<HeaderOp>, host: &dyn Host) -> Action {
        host.increment_metric(self.metrics.allowed, 1);
        Action::Continue(ops)
    }

    fn is_cors_preflight(req: &Request) -> bool {
        req.method.eq_ignore_ascii_case("OPTIONS")
            && req.headers.contains("origin")
            && req.headers.contains("access-control-request-method")
    }

    /// Verifies `found` for provider `pi` (cache first). `decoded` memoizes decoding across
    /// providers of one request.
    fn verify<'t>(
        &self,
        pi: usize,
        found: &'t Found,
        hash: &[u8; 32],
        decoded: &mut Option<Result<Decoded<'t>, Failure>>,
        host: &dyn Host,
    ) -> Result<Rc<Verified>, Failure> {
        let p = self.providers.get(pi).ok_or(Failure::JwksUnavailable)?;
        let now = host.now_secs();
        if let Some(cache) = &self.cache {
            let mut c = cache.borrow_mut();
            if let Some(v) = c.get(&(*hash, pi)) {
                if now <= v.until && p.keys_version() == Some(v.keys_version) {
                    host.increment_metric(self.metrics.cache_hit, 1);
                    return Ok(v.clone());
                }
                c.pop(&(*hash, pi));
            }
            host.increment_metric(self.metrics.cache_miss, 1);
        }
        let tok = match decoded.get_or_insert_with(|| decode(&found.token, self.max_token_bytes)) {
            Ok(t) => t,
            Err(e) => return Err(*e),
        };
        let until = check_claims(&tok.payload, &p.rules, now)?;
        let Some(keys) = p.current_keys(host) else {
            if let Keys::Remote(r) = &p.keys {
                r.note_unavailable(host.now_millis());
            }
            return Err(Failure::JwksUnavailable);
        };
        let candidates = match candidate_keys(&keys, tok) {
            Ok(c) => c,
            Err(Failure::UnknownKid) => {
                if let Keys::Remote(r) = &p.keys {
                    r.request_refetch(host);
                }
                return Err(Failure::UnknownKid);
            }
            Err(e) => return Err(e),
        };
        let ok = candidates.iter().any(|k| {
            verify_with(
                k,
                tok,
                now,
                p.rules.clock_skew_seconds,
                self.max_token_bytes,
            )
        });
        if !ok {
            return Err(Failure::BadSignature);
        }
        let mut headers = Vec::new();
        for (h, c) in &p.claim_headers {
            if let Some(v) = claim(&tok.payload, c).and_then(claim_header_value) {
                headers.push((h.clone(), v));
            }
        }
        if let Some(h) = &p.payload_header {
            headers.push((h.clone(), tok.payload_b64.to_string()));
        }
        let v = Rc::new(Verified {
            until,
            keys_version: keys.version,
            payload: Rc::new(tok.payload.clone()),
            headers,
        });
        if let Some(cache) = &self.cache {
            cache.borrow_mut().put((*hash, pi), v.clone());
        }
        Ok(v)
    }

    fn decide(&self, req: &Request, host: &dyn Host) -> Action {
        let mut ops: Vec<HeaderOp> = self
            .output_headers
            .iter()
            .filter(|h| req.headers.contains(h))
            .map(|h| HeaderOp::Remove(h.clone()))
            .collect();
        if self.bypass_cors_preflight && Self::is_cors_preflight(req) {
            return Action::Continue(ops);
        }
        let rule = self.rules.iter().find(|r| r.matches(req));
        let need = rule.map(|r| &r.need).unwrap_or(&self.default_need);
        let Need::Token {
            providers,
            all,
            allow_missing,
        } = need
        else {
            return Action::Continue(ops);
        };
        let found = match extract(req, &self.sources, self.max_token_bytes) {
            Ok(f) => f,
            Err(e) => return self.deny(e, host),
        };
        // Only a token in a source of a required provider counts.
        let found = found.filter(|f| {
            providers
                .iter()
                .filter_map(|i| self.providers.get(*i))
                .any(|p| p.sources.iter().any(|s| f.sources.contains(s)))
        });
        let Some(found) = found else {
            return if *allow_missing {
                self.allow(ops, host)
            } else {
                self.deny(Failure::Missing, host)
            };
        };
        let hash = hmac_sha256::Hash::hash(found.token.as_bytes());
        let mut decoded = None;
        let mut verified: Vec<(usize, Rc<Verified>)> = Vec::new();
        let mut worst: Option<Failure> = None;
        for &pi in providers {
            let in_sources = self
                .providers
                .get(pi)
                .is_some_and(|p| p.sources.iter().any(|s| found.sources.contains(s)));
            let result = if in_sources {
                self.verify(pi, &found, &hash, &mut decoded, host)
            } else {
                Err(Failure::Missing)
            };
            match result {
                Ok(v) => {
                    verified.push((pi, v));
                    if !*all {
                        break;
                    }
                }
                Err(e) => {
                    if *all {
                        return self.deny(e, host);
                    }
                    if worst.is_none_or(|w| e.rank() > w.rank()) {
                        worst = Some(e);
                    }
                }
            }
        }
        let Some((_, first)) = verified.first() else {
            return self.deny(worst.unwrap_or(Failure::BadSignature), host);
        };
        if let Some(rule) = rule {
            if !rule.claims.iter().all(|c| c.holds(&first.payload)) {
                return self.deny(Failure::Forbidden, host);
            }
        }
        for (_, v) in &verified {
            for (h, val) in &v.headers {
                ops.push(HeaderOp::Set(h.clone(), val.clone()));
            }
        }
        let forward = verified
            .iter()
            .all(|(pi, _)| self.providers.get(*pi).is_some_and(|p| p.forward));
        if !forward {
            ops.extend(removal_ops(req, &self.sources, &found));
        }
        self.allow(ops, host)
    }

    /// Remote providers (for tests and the tick).
    fn remotes(&self) -> impl Iterator<Item = (usize, &Remote)> {
        self.providers
            .iter()
            .enumerate()
            .filter_map(|(i, p)| match &p.keys {
                Keys::Remote(r) => Some((i, r.as_ref())),
                Keys::Local(_) => None,
            })
    }

    #[cfg(test)]
    fn remote(&self, name: &str) -> Option<&Remote> {
        self.remotes()
            .find(|(_, r)| r.provider == name)
            .map(|(_, r)| r)
    }
}

impl Policy for JwtPolicy {
    type Config = JwtConfig;
    type Exchange = ();
    const NAME: &'static str = "jwt";

    fn new(config: JwtConfig, host: &dyn Host) -> Result<Self, ConfigError> {
        JwtPolicy::from_config(config, host)
    }

    fn on_request_headers(&self, _ex: &mut (), req: &Request, host: &dyn Host) -> Action {
        self.decide(req, host)
    }

    fn tick_period(&self) -> Option<Duration> {
        self.remotes().next().map(|_| TICK)
    }

    fn on_tick(&self, host: &dyn Host) {
        for (i, r) in self.remotes() {
            match r.on_tick(host) {
                Some(Ok(token)) => {
                    self.pending.borrow_mut().insert(token, i);
                }
                Some(Err(_)) => host.increment_metric(self.metrics.fetch_failed, 1),
                None => {}
            }
        }
    }

    fn on_http_call_response(&self, token: u32, response: CalloutResponse, host: &dyn Host) {
        let Some(pi) = self.pending.borrow_mut().remove(&token) else {
            return;
        };
        let Some(Keys::Remote(r)) = self.providers.get(pi).map(|p| &p.keys) else {
            return;
        };
        match r.on_response(&response, host) {
            FetchOutcome::Ok => host.increment_metric(self.metrics.fetch_ok, 1),
            FetchOutcome::Failed => host.increment_metric(self.metrics.fetch_failed, 1),
        }
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
