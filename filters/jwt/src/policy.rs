//! The `jwt` policy: finds the token, verifies it against the providers a route requires,
//! checks claim conditions, and writes claim headers.
//!
//! Every request is first read as the backend will read it (`meshwall_core::canon`): the
//! rules match the canonical path, and what has no single meaning is refused with 400 before
//! any rule runs (an ambiguous path; a written header or token source in another spelling,
//! such as `x_user_id` for `x-user-id`; a token cookie given twice). Configured output
//! headers are always removed from the incoming request (and its trailers), on every path.

use crate::build::{build_provider, build_rule, output_headers, Keys, Provider};
use crate::config::JwtConfig;
use crate::hostcrypto::{choose, HostAlgs, HOST_ALGS};
use crate::jwks::ALL_ALGS;
use crate::remote::{FetchOutcome, Remote};
use crate::rules::{Need, Rule};
use crate::shared_cache::{fingerprint, key_hash, Entry, SharedCache, MAX_SLOTS};
use crate::sources::{extract, removal_ops, Found, Refused, Source};
use crate::token::{
    candidate_keys, check_claims, claim, claim_header_value, decode, Decoded, Failure,
};
use crate::verify::{verify, Check, Path};
use lru::LruCache;
use meshwall_core::canon::same_header;
use meshwall_core::metrics::{Counter, Counters, Label, Registry};
use meshwall_core::{
    canonical_request_path, Action, CalloutResponse, CanonConfig, ConfigError, HeaderOp, Headers,
    Host, LocalReply, Policy, Refusals, Request,
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

/// `meshwall.jwt.allowed`, `meshwall.jwt.denied.reason.<Failure::metric>`, and the cache and
/// JWKS fetch counters (see `meshwall_core::metrics`).
struct Metrics {
    allowed: Counter,
    denied: Counters,
    cache_hit: Counter,
    cache_miss: Counter,
    fetch_ok: Counter,
    fetch_failed: Counter,
    /// Signature checks by the host and by the module.
    checks_host: Counter,
    checks_wasm: Counter,
    shared_hit: Counter,
    shared_miss: Counter,
}

pub struct JwtPolicy {
    providers: Vec<Provider>,
    sources: Vec<Source>,
    rules: Vec<Rule>,
    default_need: Need,
    bypass_cors_preflight: bool,
    realm: String,
    max_token_bytes: usize,
    /// Every header the filter writes (claims, payloads): always stripped from requests, and
    /// refused in another spelling.
    output_headers: Vec<String>,
    /// Names removed from request trailers: the output headers and the token source headers
    /// (`cookie` too when a provider reads a cookie).
    trailer_names: Vec<String>,
    canon: CanonConfig,
    refusals: Refusals,
    cache: Option<RefCell<Cache>>,
    /// Fetches this worker started: call token → provider index.
    pending: RefCell<HashMap<u32, usize>>,
    metrics: Metrics,
    /// Algorithms whose signatures the host checks (decided at configure time).
    host_algs: HostAlgs,
    /// The table shared by all workers (behind `cache`), and each provider's fingerprint.
    shared: Option<SharedCache>,
    fingerprints: Vec<[u8; 32]>,
    /// The last token this worker hashed, and its SHA-256 (the caches' key): a client sending
    /// the same token request after request is not hashed again. Only a byte-for-byte equal
    /// token (compared in constant time) reuses the hash.
    last_hash: RefCell<(String, [u8; 32])>,
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
        if cfg.shared_cache_size > MAX_SLOTS {
            return Err(ConfigError::new(
                "shared_cache_size",
                format!("at most {MAX_SLOTS}"),
            ));
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
        let mut fingerprints = Vec::new();
        for (name, p) in &cfg.providers {
            providers.push(build_provider(name, p, &mut sources, host)?);
            fingerprints.push(fingerprint(name, &format!("{p:?} {}", cfg.max_token_bytes)));
        }
        let mut rules = Vec::new();
        for (i, r) in cfg.rules.iter().enumerate() {
            rules.push(build_rule(i, r, &providers, &cfg.canonical)?);
        }
        let output_headers = output_headers(&providers, &sources)?;
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
        let m = Registry::of::<Self>(host);
        let reasons = Failure::ALL.map(Failure::metric);
        let metrics = Metrics {
            allowed: m.counter("allowed", &[])?,
            denied: m.counters("denied", Label::Reason, &reasons)?,
            cache_hit: m.counter("cache_hit", &[])?,
            cache_miss: m.counter("cache_miss", &[])?,
            fetch_ok: m.counter("jwks_fetch_ok", &[])?,
            fetch_failed: m.counter("jwks_fetch_failed", &[])?,
            checks_host: m.counter("signature_checks_host", &[])?,
            checks_wasm: m.counter("signature_checks_wasm", &[])?,
            shared_hit: m.counter("shared_cache_hit", &[])?,
            shared_miss: m.counter("shared_cache_miss", &[])?,
        };
        let host_algs = choose(cfg.verifier, host).map_err(|e| ConfigError::new("verifier", e))?;
        // `meshwall.jwt.verifier_host_<alg>`: 1 when the host checks that algorithm.
        for alg in ALL_ALGS {
            let name = format!("verifier_host_{}", format!("{alg:?}").to_ascii_lowercase());
            m.gauge(&name, &[])?.set(
                host,
                u64::from(HOST_ALGS.contains(&alg) && host_algs.uses(alg)),
            );
        }
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
            trailer_names,
            canon: cfg.canonical,
            refusals: Refusals::define(Self::NAME, host),
            cache: NonZeroUsize::new(cfg.jwt_cache_size).map(|n| RefCell::new(LruCache::new(n))),
            pending: RefCell::new(HashMap::new()),
            metrics,
            host_algs,
            shared: SharedCache::new(cfg.shared_cache_size),
            fingerprints,
            last_hash: RefCell::new((String::new(), hmac_sha256::Hash::hash(b""))),
        })
    }

    fn deny(&self, failure: Failure, host: &dyn Host) -> Action {
        self.metrics.denied.inc(failure.metric(), host);
        meshwall_core::policy_log!(
            debug,
            crate::policy::JwtPolicy,
            "request denied: {}",
            failure.metric()
        );
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
        self.metrics.allowed.inc(host);
        Action::Continue(ops)
    }

    /// SHA-256 of the token (the key of both caches), reused for the token hashed last.
    fn token_hash(&self, token: &str) -> [u8; 32] {
        let mut last = self.last_hash.borrow_mut();
        if meshwall_core::ct_eq(last.0.as_bytes(), token.as_bytes()) {
            return last.1;
        }
        let hash = hmac_sha256::Hash::hash(token.as_bytes());
        last.0.clear();
        last.0.push_str(token);
        last.1 = hash;
        hash
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
        hash: Option<&[u8; 32]>,
        decoded: &mut Option<Result<Decoded<'t>, Failure>>,
        host: &dyn Host,
    ) -> Result<Rc<Verified>, Failure> {
        let p = self.providers.get(pi).ok_or(Failure::JwksUnavailable)?;
        let now = host.now_secs();
        if let (Some(cache), Some(hash)) = (&self.cache, hash) {
            let mut c = cache.borrow_mut();
            if let Some(v) = c.get(&(*hash, pi)) {
                if now <= v.until && p.keys_version(host) == Some(v.keys_version) {
                    self.metrics.cache_hit.inc(host);
                    return Ok(v.clone());
                }
                c.pop(&(*hash, pi));
            }
            self.metrics.cache_miss.inc(host);
        }
        let shared_key = match (&self.shared, self.fingerprints.get(pi), hash) {
            (Some(_), Some(fp), Some(hash)) => Some(key_hash(hash, fp)),
            _ => None,
        };
        if let (Some(sc), Some(k)) = (&self.shared, &shared_key) {
            if let Some(v) = self.shared_lookup(sc, k, p, found, now, host) {
                self.metrics.shared_hit.inc(host);
                if let (Some(cache), Some(hash)) = (&self.cache, hash) {
                    cache.borrow_mut().put((*hash, pi), v.clone());
                }
                return Ok(v);
            }
            self.metrics.shared_miss.inc(host);
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
        let check = Check {
            now,
            skew: p.rules.clock_skew_seconds,
            max_bytes: self.max_token_bytes,
            host_algs: self.host_algs,
        };
        let ok = candidates.iter().any(|k| {
            let (ok, path) = verify(k, tok, &check, host);
            match path {
                Path::Host => self.metrics.checks_host.inc(host),
                Path::Wasm => self.metrics.checks_wasm.inc(host),
            }
            ok
        });
        if !ok {
            return Err(Failure::BadSignature);
        }
        let v = Self::verified(p, tok.payload.clone(), tok.payload_b64, until, keys.version);
        if let (Some(sc), Some(k)) = (&self.shared, &shared_key) {
            let entry = Entry {
                keys_version: keys.version,
                until,
                payload: tok.payload_json.clone(),
            };
            sc.put(k, &entry, host);
        }
        if let (Some(cache), Some(hash)) = (&self.cache, hash) {
            cache.borrow_mut().put((*hash, pi), v.clone());
        }
        Ok(v)
    }

    /// What a verified token gives provider `p`: its claims and the headers made of them.
    fn verified(
        p: &Provider,
        payload: Map<String, Value>,
        payload_b64: &str,
        until: u64,
        keys_version: u64,
    ) -> Rc<Verified> {
        let mut headers = Vec::new();
        for (h, c) in &p.claim_headers {
            if let Some(v) = claim(&payload, c).and_then(claim_header_value) {
                headers.push((h.clone(), v));
            }
        }
        if let Some(h) = &p.payload_header {
            headers.push((h.clone(), payload_b64.to_string()));
        }
        Rc::new(Verified {
            until,
            keys_version,
            payload: Rc::new(payload),
            headers,
        })
    }

    /// The shared table's entry for this token and provider, if still valid now (same keys
    /// version, not past `exp` + skew).
    fn shared_lookup(
        &self,
        sc: &SharedCache,
        key: &[u8; 32],
        p: &Provider,
        found: &Found,
        now: u64,
        host: &dyn Host,
    ) -> Option<Rc<Verified>> {
        let e = sc.get(key, host)?;
        if now > e.until || p.keys_version(host) != Some(e.keys_version) {
            return None;
        }
        let payload = crate::json::parse_object(&e.payload, crate::json::MAX_DEPTH).ok()?;
        let payload_b64 = found.token.split('.').nth(1)?;
        Some(Self::verified(
            p,
            payload,
            payload_b64,
            e.until,
            e.keys_version,
        ))
    }

    /// Removes every header whose name folds (`_` as `-`, any case) into one of `names`.
    fn strip_ops(headers: &Headers, names: &[String]) -> Vec<HeaderOp> {
        let mut ops: Vec<HeaderOp> = Vec::new();
        for k in headers.names() {
            let protected = names.iter().any(|n| same_header(n, k));
            if protected
                && !ops
                    .iter()
                    .any(|o| matches!(o, HeaderOp::Remove(x) if x == k))
            {
                ops.push(HeaderOp::Remove(k.to_string()));
            }
        }
        ops
    }

    fn decide(&self, req: &Request, host: &dyn Host) -> Action {
        // The one view every rule matches on; an ambiguous request goes no further.
        let path = match canonical_request_path(req, &self.canon) {
            Ok(p) => p,
            Err(a) => return self.refusals.refuse(&a, host),
        };
        let method = match meshwall_core::effective_method(req, &self.canon) {
            Ok(m) => m,
            Err(a) => return self.refusals.refuse(&a, host),
        };
        if let Err(a) = req
            .headers
            .check_spellings(self.output_headers.iter().map(String::as_str))
        {
            return self.refusals.refuse(&a, host);
        }
        let mut ops = Self::strip_ops(&req.headers, &self.output_headers);
        if self.bypass_cors_preflight && Self::is_cors_preflight(req) {
            return Action::Continue(ops);
        }
        let rule = self
            .rules
            .iter()
            .find(|r| r.matches(&method, &path, &self.canon));
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
            Err(Refused::Invalid(e)) => return self.deny(e, host),
            Err(Refused::Ambiguous(a)) => return self.refusals.refuse(&a, host),
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
        // The caches' key; without a cache the token is never hashed.
        let hash =
            (self.cache.is_some() || self.shared.is_some()).then(|| self.token_hash(&found.token));
        let mut decoded = None;
        let mut verified: Vec<(usize, Rc<Verified>)> = Vec::new();
        let mut worst: Option<Failure> = None;
        for &pi in providers {
            let in_sources = self
                .providers
                .get(pi)
                .is_some_and(|p| p.sources.iter().any(|s| found.sources.contains(s)));
            let result = if in_sources {
                self.verify(pi, &found, hash.as_ref(), &mut decoded, host)
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

    /// Nothing to do on responses: the adaptor does not read them.
    fn uses_response(&self) -> bool {
        false
    }

    /// The client address plays no part (one host call saved per request).
    fn uses_client_ip(&self) -> bool {
        false
    }

    fn new(config: JwtConfig, host: &dyn Host) -> Result<Self, ConfigError> {
        JwtPolicy::from_config(config, host)
    }

    fn on_request_headers(&self, _ex: &mut (), req: &Request, host: &dyn Host) -> Action {
        self.decide(req, host)
    }

    /// A trailer in any spelling of a header the filter writes or reads a token from never
    /// reaches the upstream (some backends merge trailers into the headers).
    fn on_request_trailers(
        &self,
        _ex: &mut (),
        trailers: &Headers,
        _host: &dyn Host,
    ) -> Vec<HeaderOp> {
        Self::strip_ops(trailers, &self.trailer_names)
    }

    /// A fetched JWKS larger than this is refused without being copied into the VM.
    fn max_callout_body(&self) -> usize {
        crate::jwks::MAX_JWKS_BYTES
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
                Some(Err(_)) => self.metrics.fetch_failed.inc(host),
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
            FetchOutcome::Ok => self.metrics.fetch_ok.inc(host),
            FetchOutcome::Failed => self.metrics.fetch_failed.inc(host),
        }
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
