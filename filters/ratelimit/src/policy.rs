//! The `ratelimit` policy: matches rules, derives bucket keys, and takes tokens from the
//! shared table all-or-nothing with compare-and-swap.
//!
//! ## The update protocol (one request)
//! 1. Every rule whose match applies yields a bucket (rule, key) → fingerprint and shard.
//!    The shards involved are sorted (a fixed order for every worker).
//! 2. Read every pending shard (value + CAS). Refill each bucket lazily to `now`; a bucket
//!    not in its shard gets a slot (see [`crate::table::Shard::choose_victim`]).
//! 3. If an enforced rule has no token: reject. Nothing is written (refill is a pure function
//!    of the stored state, so it need not be saved).
//! 4. Otherwise take one token from every bucket that has one and write the shards back in
//!    order, each with its CAS. A CAS mismatch means another worker changed that shard: the
//!    shards already written stay committed, the others are read and decided again (step 2).
//!    If the second decision rejects, the tokens already taken are given back (refund), so a
//!    request rejected by one rule consumes nothing from the others.
//! 5. After `table.max_cas_attempts` rounds the request is neither admitted silently nor
//!    charged: committed tokens are refunded, `table.cas_exhausted` is counted, a warning is
//!    logged, and `on_table_error` decides (`deny` → 503 by default).

use crate::bucket::{BucketState, TokenBucket};
use crate::config::{
    check_header_name, check_name, parse_duration_ms, ClientIpConfig, KeyPart, MatchConfig,
    OnMissingKey, RateLimitConfig, RuleConfig, TableErrorMode, XRateLimitHeaders,
    MAX_FILL_INTERVAL_MS, MAX_SHARDS, MAX_SLOTS_PER_SHARD, MAX_TOTAL_SLOTS, MIN_FILL_INTERVAL_MS,
};
use crate::table::{shard_len, Claim, Shard};
use meshwall_core::http::client_ip_from_address;
use meshwall_core::{
    Action, ConfigError, HeaderOp, Host, HostError, LocalReply, MetricId, MetricKind, Policy,
    Request, Response,
};
use regex_lite::Regex;
use siphasher::sip128::{Hasher128, SipHasher13};
use std::cell::Cell;
use std::hash::Hasher;
use std::net::IpAddr;

const SEED_MAGIC: &[u8; 4] = b"MWS1";

enum PathMatch {
    Any,
    Exact(String),
    Prefix(String),
    Regex(Regex),
}

struct Matcher {
    path: PathMatch,
    methods: Vec<String>,
    headers: Vec<(String, bool)>,
}

impl Matcher {
    fn build(m: &MatchConfig, field: &str) -> Result<Self, ConfigError> {
        let given = [m.path.is_some(), m.prefix.is_some(), m.regex.is_some()];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err(ConfigError::new(
                field,
                "give at most one of `path`, `prefix`, `regex`",
            ));
        }
        let check_path = |name: &str, p: &str| {
            if p.starts_with('/') {
                Ok(())
            } else {
                Err(ConfigError::new(
                    format!("{field}.{name}"),
                    "must start with `/`",
                ))
            }
        };
        let path = if let Some(p) = &m.path {
            check_path("path", p)?;
            PathMatch::Exact(p.clone())
        } else if let Some(p) = &m.prefix {
            check_path("prefix", p)?;
            PathMatch::Prefix(p.clone())
        } else if let Some(r) = &m.regex {
            let re = Regex::new(&format!("^(?:{r})$")).map_err(|e| {
                ConfigError::new(
                    format!("{field}.regex"),
                    format!("invalid regular expression: {e}"),
                )
            })?;
            PathMatch::Regex(re)
        } else {
            PathMatch::Any
        };
        let mut methods = Vec::new();
        for (i, meth) in m.methods.iter().enumerate() {
            let f = format!("{field}.methods[{i}]");
            if meth.is_empty() || !meth.chars().all(|c| c.is_ascii_alphabetic()) {
                return Err(ConfigError::new(
                    f,
                    format!("`{meth}` is not an HTTP method"),
                ));
            }
            methods.push(meth.to_ascii_uppercase());
        }
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

    fn matches(&self, req: &Request) -> bool {
        let path = req.path_only();
        let path_ok = match &self.path {
            PathMatch::Any => true,
            PathMatch::Exact(p) => path == p,
            PathMatch::Prefix(p) => path.starts_with(p.as_str()),
            PathMatch::Regex(re) => re.is_match(path),
        };
        path_ok
            && (self.methods.is_empty() || self.methods.contains(&req.method))
            && self
                .headers
                .iter()
                .all(|(name, present)| req.headers.contains(name) == *present)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    RemoteAddress,
    Header(String),
    Path,
    Method,
    Constant(String),
}

struct Rule {
    name: String,
    matcher: Matcher,
    key: Vec<Part>,
    bucket: TokenBucket,
    shadow: bool,
    on_missing: OnMissingKey,
    /// Marks this rule's slots in the table (hash of the name).
    tag: u32,
    /// `"name";q=…;w=…`
    policy_item: String,
    m_allowed: MetricId,
    m_limited: MetricId,
    m_shadow_limited: MetricId,
}

struct TableMetrics {
    evictions: MetricId,
    reclaims: MetricId,
    cas_retries: MetricId,
    cas_exhausted: MetricId,
    errors: MetricId,
    refunds_lost: MetricId,
}

/// The `ratelimit` policy (one per worker; all state is in shared data).
pub struct RateLimitPolicy {
    rules: Vec<Rule>,
    client_ip: ClientIpConfig,
    shards: u32,
    slots: usize,
    max_attempts: u32,
    key_prefix: String,
    seed_key: String,
    /// The hash seed as last read: (CAS of the seed key, k0, k1). CAS 0 = not read yet.
    seed: Cell<(u32, u64, u64)>,
    draft_headers: bool,
    legacy_headers: bool,
    on_error: TableErrorMode,
    metrics: TableMetrics,
}

/// Per-request state: the rate-limit headers to put on the response.
#[derive(Debug, Default)]
pub struct Exchange {
    ops: Vec<HeaderOp>,
}

/// One bucket a request needs a token from.
#[derive(Debug, Clone, Copy)]
struct Target {
    rule: usize,
    fp: u64,
    shard: u32,
}

/// What a request saw of one bucket.
#[derive(Debug, Clone, Copy)]
struct Seen {
    rule: usize,
    /// The bucket after the decision (a token taken when admitted and available).
    state: BucketState,
    had_token: bool,
}

enum Outcome {
    Allowed(Vec<Seen>),
    Rejected(Vec<Seen>),
    Failed,
}

#[derive(Debug, Clone)]
struct Group {
    shard: u32,
    members: Vec<usize>,
}

fn define(host: &dyn Host, kind: MetricKind, name: &str) -> Result<MetricId, ConfigError> {
    host.define_metric(kind, name)
        .map_err(|e| ConfigError::new(".", format!("cannot define metric {name}: {e}")))
}

fn rule_tag(name: &str) -> u32 {
    let mut h = SipHasher13::new_with_keys(0x6d65_7368_7761_6c6c, 0x7261_7465_6c69_6d69);
    h.write(name.as_bytes());
    let v = h.finish128();
    // Truncation intended: 32 bits tell a handful of rules apart (collisions are refused).
    (v.h1 & 0xffff_ffff) as u32
}

fn parse_ip(s: &str) -> Option<IpAddr> {
    client_ip_from_address(s.trim())
        .parse::<IpAddr>()
        .ok()
        .map(|ip| ip.to_canonical())
}

fn push_part(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    out.push(tag);
    out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(bytes);
}

impl RateLimitPolicy {
    fn build_rule(i: usize, rc: &RuleConfig, host: &dyn Host) -> Result<Rule, ConfigError> {
        let field = format!("rules[{i}]");
        check_name(&format!("{field}.name"), &rc.name)?;
        let matcher = Matcher::build(&rc.matcher, &format!("{field}.match"))?;
        if rc.key.is_empty() {
            return Err(ConfigError::new(
                format!("{field}.key"),
                "give at least one key part",
            ));
        }
        let mut key = Vec::new();
        for (k, part) in rc.key.iter().enumerate() {
            let f = format!("{field}.key[{k}]");
            key.push(match part {
                KeyPart::RemoteAddress {} => Part::RemoteAddress,
                KeyPart::RequestHeaders { header_name } => Part::Header(check_header_name(
                    &format!("{f}.request_headers.header_name"),
                    header_name,
                )?),
                KeyPart::Path {} => Part::Path,
                KeyPart::Method {} => Part::Method,
                KeyPart::GenericKey { descriptor_value } => {
                    if descriptor_value.is_empty() {
                        return Err(ConfigError::new(
                            format!("{f}.generic_key.descriptor_value"),
                            "must not be empty",
                        ));
                    }
                    Part::Constant(descriptor_value.clone())
                }
            });
        }
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
        let tbf = format!("{field}.token_bucket");
        let tb = &rc.token_bucket;
        if tb.max_tokens == 0 {
            return Err(ConfigError::new(
                format!("{tbf}.max_tokens"),
                "must be at least 1",
            ));
        }
        if tb.tokens_per_fill == 0 {
            return Err(ConfigError::new(
                format!("{tbf}.tokens_per_fill"),
                "must be at least 1",
            ));
        }
        let interval = parse_duration_ms(&format!("{tbf}.fill_interval"), &tb.fill_interval)?;
        if !(MIN_FILL_INTERVAL_MS..=MAX_FILL_INTERVAL_MS).contains(&interval) {
            return Err(ConfigError::new(
                format!("{tbf}.fill_interval"),
                "must be between 50ms and 24h",
            ));
        }
        let bucket = TokenBucket {
            max_tokens: tb.max_tokens,
            tokens_per_fill: tb.tokens_per_fill,
            fill_interval_ms: interval,
        };
        let prefix = format!("meshwall.ratelimit.rule.{}", rc.name);
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
            m_allowed: define(host, MetricKind::Counter, &format!("{prefix}.allowed"))?,
            m_limited: define(host, MetricKind::Counter, &format!("{prefix}.limited"))?,
            m_shadow_limited: define(
                host,
                MetricKind::Counter,
                &format!("{prefix}.shadow_limited"),
            )?,
        })
    }

    /// Checks the configuration and builds the policy; creates the shared table when this
    /// is the first worker to start.
    pub fn from_config(cfg: RateLimitConfig, host: &dyn Host) -> Result<Self, ConfigError> {
        if cfg.rules.is_empty() {
            return Err(ConfigError::new("rules", "give at least one rule"));
        }
        let mut rules: Vec<Rule> = Vec::new();
        for (i, rc) in cfg.rules.iter().enumerate() {
            let rule = Self::build_rule(i, rc, host)?;
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
        let ip = cfg.client_ip.clone();
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
        let t = &cfg.table;
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
        if (t.slots_per_shard as usize) < rules.len() {
            return Err(ConfigError::new(
                "table.slots_per_shard",
                format!("must be at least the number of rules ({}): one request may need a bucket of each rule in one shard", rules.len()),
            ));
        }
        if !(1..=1000).contains(&t.max_cas_attempts) {
            return Err(ConfigError::new(
                "table.max_cas_attempts",
                "must be between 1 and 1000",
            ));
        }
        let metrics = TableMetrics {
            evictions: define(
                host,
                MetricKind::Counter,
                "meshwall.ratelimit.table.evictions",
            )?,
            reclaims: define(
                host,
                MetricKind::Counter,
                "meshwall.ratelimit.table.reclaims",
            )?,
            cas_retries: define(
                host,
                MetricKind::Counter,
                "meshwall.ratelimit.table.cas_retries",
            )?,
            cas_exhausted: define(
                host,
                MetricKind::Counter,
                "meshwall.ratelimit.table.cas_exhausted",
            )?,
            errors: define(host, MetricKind::Counter, "meshwall.ratelimit.table.errors")?,
            refunds_lost: define(
                host,
                MetricKind::Counter,
                "meshwall.ratelimit.table.refunds_lost",
            )?,
        };
        let key_prefix = format!(
            "meshwall.ratelimit/{}/{}x{}/",
            t.name, t.shards, t.slots_per_shard
        );
        let policy = RateLimitPolicy {
            rules,
            client_ip: ip,
            shards: t.shards,
            slots: t.slots_per_shard as usize,
            max_attempts: t.max_cas_attempts,
            seed_key: format!("meshwall.ratelimit/{}/seed", t.name),
            key_prefix,
            seed: Cell::new((0, 0, 0)),
            draft_headers: cfg.enable_ratelimit_headers,
            legacy_headers: cfg.enable_x_ratelimit_headers == XRateLimitHeaders::DraftVersion03,
            on_error: cfg.on_table_error,
            metrics,
        };
        policy.init_table(host)?;
        let bytes_gauge = define(host, MetricKind::Gauge, "meshwall.ratelimit.table.bytes")?;
        host.record_metric(bytes_gauge, policy.table_bytes());
        Ok(policy)
    }

    /// Bytes of shared data the table uses (keys and values, seed included): fixed by the
    /// configuration.
    pub fn table_bytes(&self) -> u64 {
        let keys: u64 = (0..self.shards)
            .map(|i| self.shard_key(i).len() as u64)
            .sum();
        let values = u64::from(self.shards) * shard_len(self.slots) as u64;
        keys + values + self.seed_key.len() as u64 + 20
    }

    /// Number of shared-data keys the table uses (shards + the seed).
    pub fn table_keys(&self) -> u64 {
        u64::from(self.shards) + 1
    }

    fn shard_key(&self, shard: u32) -> String {
        format!("{}{shard}", self.key_prefix)
    }

    /// Creates the seed and every shard that does not exist yet, so that no shard is ever
    /// created while requests are being served (Envoy has no atomic create: a write to a
    /// missing key succeeds whatever CAS it carries).
    fn init_table(&self, host: &dyn Host) -> Result<(), ConfigError> {
        let err = |e: HostError| ConfigError::new("table", format!("shared data unavailable: {e}"));
        if host.shared_get(&self.seed_key).map_err(err)?.is_none() {
            let mut seed = [0u8; 16];
            getrandom::fill(&mut seed)
                .map_err(|e| ConfigError::new("table", format!("no random seed: {e}")))?;
            let mut v = SEED_MAGIC.to_vec();
            v.extend_from_slice(&seed);
            host.shared_set(&self.seed_key, &v, None).map_err(err)?;
        }
        let empty = Shard::empty(self.slots).encode();
        for i in 0..self.shards {
            let key = self.shard_key(i);
            let current = host.shared_get(&key).map_err(err)?;
            let valid = current
                .as_ref()
                .is_some_and(|(v, _)| Shard::decode(v, self.slots).is_some());
            if !valid {
                host.shared_set(&key, &empty, None).map_err(err)?;
            }
        }
        self.load_seed(host).map_err(err)?;
        Ok(())
    }

    /// The table's hash seed, re-read when its CAS changed (only possible while workers
    /// start at the same time: the last write wins and everyone adopts it).
    fn load_seed(&self, host: &dyn Host) -> Result<(u64, u64), HostError> {
        let (value, cas) = host
            .shared_get(&self.seed_key)?
            .ok_or_else(|| HostError::Failed("rate-limit seed missing".into()))?;
        let cached = self.seed.get();
        if cached.0 == cas && cas != 0 {
            return Ok((cached.1, cached.2));
        }
        let word = |at: usize| {
            value
                .get(at..at + 8)
                .and_then(|s| s.try_into().ok())
                .map(u64::from_le_bytes)
        };
        match (
            value.get(..4) == Some(SEED_MAGIC.as_slice()) && value.len() == 20,
            word(4),
            word(12),
        ) {
            (true, Some(k0), Some(k1)) => {
                self.seed.set((cas, k0, k1));
                Ok((k0, k1))
            }
            _ => Err(HostError::Failed("rate-limit seed damaged".into())),
        }
    }

    fn params(&self, tag: u32) -> Option<TokenBucket> {
        self.rules.iter().find(|r| r.tag == tag).map(|r| r.bucket)
    }

    fn client_ip(&self, req: &Request) -> Option<IpAddr> {
        let hops = self.client_ip.xff_num_trusted_hops as usize;
        if hops > 0 {
            let entries: Vec<&str> = req
                .headers
                .get_all("x-forwarded-for")
                .flat_map(|v| v.split(','))
                .collect();
            if let Some(ip) = entries
                .len()
                .checked_sub(hops)
                .and_then(|i| entries.get(i))
                .and_then(|e| parse_ip(e))
            {
                return Some(ip);
            }
        }
        req.client_ip.as_deref().and_then(parse_ip)
    }

    fn ip_bytes(&self, ip: IpAddr) -> Vec<u8> {
        match ip {
            IpAddr::V4(v4) => {
                let bits = u32::from(self.client_ip.ipv4_prefix_length.min(32));
                let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
                let mut b = vec![4, self.client_ip.ipv4_prefix_length];
                b.extend_from_slice(&(u32::from(v4) & mask).to_be_bytes());
                b
            }
            IpAddr::V6(v6) => {
                let bits = u32::from(self.client_ip.ipv6_prefix_length.min(128));
                let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                let mut b = vec![6, self.client_ip.ipv6_prefix_length];
                b.extend_from_slice(&(u128::from(v6) & mask).to_be_bytes());
                b
            }
        }
    }

    /// The bytes that identify a request's bucket for `rule`; `None` when a part is missing.
    fn key_material(&self, rule: &Rule, req: &Request) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        for part in &rule.key {
            match part {
                Part::RemoteAddress => push_part(&mut out, 1, &self.ip_bytes(self.client_ip(req)?)),
                Part::Header(name) => {
                    let values: Vec<&str> = req.headers.get_all(name).collect();
                    let joined = values.join(",");
                    if joined.trim().is_empty() {
                        return None;
                    }
                    push_part(&mut out, 2, joined.as_bytes());
                }
                Part::Path => push_part(&mut out, 3, req.path_only().as_bytes()),
                Part::Method => push_part(&mut out, 4, req.method.as_bytes()),
                Part::Constant(c) => push_part(&mut out, 5, c.as_bytes()),
            }
        }
        Some(out)
    }

    fn target(&self, seed: (u64, u64), rule_index: usize, material: &[u8]) -> Option<Target> {
        let rule = self.rules.get(rule_index)?;
        let mut h = SipHasher13::new_with_keys(seed.0, seed.1);
        h.write(
            &u32::try_from(rule.name.len())
                .unwrap_or(u32::MAX)
                .to_le_bytes(),
        );
        h.write(rule.name.as_bytes());
        h.write(material);
        let v = h.finish128();
        let fp = if v.h1 == 0 { 1 } else { v.h1 };
        let shard = u32::try_from(v.h2 % u64::from(self.shards.max(1))).unwrap_or(0);
        Some(Target {
            rule: rule_index,
            fp,
            shard,
        })
    }

    fn read_shard(&self, host: &dyn Host, shard: u32) -> Result<(Shard, Option<u32>), HostError> {
        match host.shared_get(&self.shard_key(shard))? {
            Some((v, cas)) => Ok((
                Shard::decode(&v, self.slots).unwrap_or_else(|| Shard::empty(self.slots)),
                Some(cas),
            )),
            None => Ok((Shard::empty(self.slots), None)),
        }
    }

    /// Takes a token from every target, all or nothing (see the module documentation).
    fn take(&self, targets: &[Target], now: u64, host: &dyn Host) -> Outcome {
        let mut pending: Vec<Group> = Vec::new();
        for (ti, t) in targets.iter().enumerate() {
            match pending.iter_mut().find(|g| g.shard == t.shard) {
                Some(g) => g.members.push(ti),
                None => pending.push(Group {
                    shard: t.shard,
                    members: vec![ti],
                }),
            }
        }
        pending.sort_by_key(|g| g.shard);
        let mut seen: Vec<Option<Seen>> = vec![None; targets.len()];
        let mut committed: Vec<Group> = Vec::new();

        for _ in 0..self.max_attempts {
            let mut work: Vec<(Shard, Option<u32>, Vec<Claim>)> = Vec::with_capacity(pending.len());
            for g in &pending {
                match self.read_shard(host, g.shard) {
                    Ok((shard, cas)) => work.push((shard, cas, Vec::new())),
                    Err(e) => return self.fail(&committed, targets, &seen, host, &e.to_string()),
                }
            }
            // Decide on fresh reads.
            let mut reject = false;
            let mut evals: Vec<(usize, usize, usize)> = Vec::new(); // (target, group, slot)
            for (gi, g) in pending.iter().enumerate() {
                let Some((shard, _, claims)) = work.get_mut(gi) else {
                    continue;
                };
                let mut taken: Vec<usize> = Vec::new();
                for &ti in &g.members {
                    let Some(t) = targets.get(ti) else { continue };
                    let Some(rule) = self.rules.get(t.rule) else {
                        continue;
                    };
                    let found = shard.find(t.fp, rule.tag);
                    let (idx, state) = match found {
                        Some(i) => match shard.slots.get(i) {
                            Some(s) => (i, rule.bucket.refill(s.state(), now)),
                            None => continue,
                        },
                        None => match shard.choose_victim(now, &taken, |tag| self.params(tag)) {
                            Some((i, claim)) => {
                                claims.push(claim);
                                (i, rule.bucket.fresh(now))
                            }
                            None => {
                                return self.fail(&committed, targets, &seen, host, "no free slot")
                            }
                        },
                    };
                    taken.push(idx);
                    let Some(slot) = shard.slots.get_mut(idx) else {
                        continue;
                    };
                    slot.fp = t.fp;
                    slot.rule_tag = rule.tag;
                    slot.set_state(state);
                    if found.is_none() {
                        slot.last_used = now;
                    }
                    let had_token = state.tokens >= 1;
                    if !had_token && !rule.shadow {
                        reject = true;
                    }
                    if let Some(s) = seen.get_mut(ti) {
                        *s = Some(Seen {
                            rule: t.rule,
                            state,
                            had_token,
                        });
                    }
                    evals.push((ti, gi, idx));
                }
            }
            if reject {
                self.refund(&committed, targets, &seen, host);
                for g in &committed {
                    for &ti in &g.members {
                        if let Some(Some(s)) = seen.get_mut(ti) {
                            if s.had_token {
                                let max = self
                                    .rules
                                    .get(s.rule)
                                    .map_or(u32::MAX, |r| r.bucket.max_tokens);
                                s.state.tokens = s.state.tokens.saturating_add(1).min(max);
                            }
                        }
                    }
                }
                return Outcome::Rejected(seen.into_iter().flatten().collect());
            }
            // Admit: take the tokens, write back in shard order.
            for &(ti, gi, idx) in &evals {
                let Some(Some(s)) = seen.get_mut(ti) else {
                    continue;
                };
                let Some(slot) = work.get_mut(gi).and_then(|w| w.0.slots.get_mut(idx)) else {
                    continue;
                };
                if s.had_token {
                    slot.tokens = slot.tokens.saturating_sub(1);
                    s.state.tokens = slot.tokens;
                }
                slot.last_used = now;
            }
            let mut conflict_at = None;
            for (gi, g) in pending.iter().enumerate() {
                let Some((shard, cas, claims)) = work.get(gi) else {
                    continue;
                };
                match host.shared_set(&self.shard_key(g.shard), &shard.encode(), *cas) {
                    Ok(()) => {
                        for c in claims {
                            match c {
                                Claim::Evicted => host.increment_metric(self.metrics.evictions, 1),
                                Claim::Reclaimed => host.increment_metric(self.metrics.reclaims, 1),
                                Claim::Free => {}
                            }
                        }
                        committed.push(g.clone());
                    }
                    Err(HostError::CasMismatch) => {
                        host.increment_metric(self.metrics.cas_retries, 1);
                        conflict_at = Some(gi);
                        break;
                    }
                    Err(e) => return self.fail(&committed, targets, &seen, host, &e.to_string()),
                }
            }
            match conflict_at {
                None => return Outcome::Allowed(seen.into_iter().flatten().collect()),
                Some(gi) => pending = pending.split_off(gi),
            }
        }
        host.increment_metric(self.metrics.cas_exhausted, 1);
        log::warn!(
            "meshwall.ratelimit: gave up after {} compare-and-swap attempts (table.cas_exhausted)",
            self.max_attempts
        );
        self.refund(&committed, targets, &seen, host);
        Outcome::Failed
    }

    fn fail(
        &self,
        committed: &[Group],
        targets: &[Target],
        seen: &[Option<Seen>],
        host: &dyn Host,
        why: &str,
    ) -> Outcome {
        host.increment_metric(self.metrics.errors, 1);
        log::warn!("meshwall.ratelimit: rate-limit table unavailable: {why}");
        self.refund(committed, targets, seen, host);
        Outcome::Failed
    }

    /// Gives back the tokens taken from already written shards (the request is not admitted
    /// after all). A bucket evicted in the meantime has nothing to give back to.
    fn refund(
        &self,
        committed: &[Group],
        targets: &[Target],
        seen: &[Option<Seen>],
        host: &dyn Host,
    ) {
        for g in committed {
            let mut done = false;
            for _ in 0..self.max_attempts {
                let Ok((mut shard, cas)) = self.read_shard(host, g.shard) else {
                    break;
                };
                for &ti in &g.members {
                    let (Some(t), Some(Some(s))) = (targets.get(ti), seen.get(ti)) else {
                        continue;
                    };
                    let Some(rule) = self.rules.get(t.rule) else {
                        continue;
                    };
                    if !s.had_token {
                        continue;
                    }
                    if let Some(slot) = shard
                        .find(t.fp, rule.tag)
                        .and_then(|i| shard.slots.get_mut(i))
                    {
                        slot.tokens = slot.tokens.saturating_add(1).min(rule.bucket.max_tokens);
                    }
                }
                match host.shared_set(&self.shard_key(g.shard), &shard.encode(), cas) {
                    Ok(()) => {
                        done = true;
                        break;
                    }
                    Err(HostError::CasMismatch) => {
                        host.increment_metric(self.metrics.cas_retries, 1)
                    }
                    Err(_) => break,
                }
            }
            if !done {
                host.increment_metric(self.metrics.refunds_lost, 1);
                log::warn!("meshwall.ratelimit: could not give back a token (table.refunds_lost)");
            }
        }
    }

    /// The rate-limit response headers for what the request saw.
    fn headers(&self, seen: &[Seen], now: u64) -> Vec<(String, String)> {
        let enforced: Vec<(&Rule, &Seen)> = seen
            .iter()
            .filter_map(|s| self.rules.get(s.rule).map(|r| (r, s)))
            .filter(|(r, _)| !r.shadow)
            .collect();
        let mut out = Vec::new();
        if enforced.is_empty() {
            return out;
        }
        if self.draft_headers {
            let policy: Vec<&str> = enforced
                .iter()
                .map(|(r, _)| r.policy_item.as_str())
                .collect();
            let status: Vec<String> = enforced
                .iter()
                .map(|(r, s)| {
                    format!(
                        "\"{}\";r={};t={}",
                        r.name,
                        s.state.tokens,
                        r.bucket.reset_secs(s.state, now)
                    )
                })
                .collect();
            out.push(("ratelimit-policy".to_string(), policy.join(", ")));
            out.push(("ratelimit".to_string(), status.join(", ")));
        }
        if self.legacy_headers {
            if let Some((r, s)) = enforced.iter().min_by_key(|(_, s)| s.state.tokens) {
                out.push((
                    "x-ratelimit-limit".to_string(),
                    r.bucket.max_tokens.to_string(),
                ));
                out.push((
                    "x-ratelimit-remaining".to_string(),
                    s.state.tokens.to_string(),
                ));
                out.push((
                    "x-ratelimit-reset".to_string(),
                    r.bucket.reset_secs(s.state, now).to_string(),
                ));
            }
        }
        out
    }

    fn count(&self, seen: &[Seen], admitted: bool, host: &dyn Host) {
        for s in seen {
            let Some(r) = self.rules.get(s.rule) else {
                continue;
            };
            if s.had_token {
                if admitted {
                    host.increment_metric(r.m_allowed, 1);
                }
            } else if r.shadow {
                host.increment_metric(r.m_shadow_limited, 1);
            } else {
                host.increment_metric(r.m_limited, 1);
            }
        }
    }

    fn table_error(&self) -> Action {
        match self.on_error {
            TableErrorMode::Allow => Action::proceed(),
            TableErrorMode::Deny => Action::Reply(
                LocalReply::builder(503, "rate limit state unavailable, retry later")
                    .header("retry-after", "1")
                    .build(),
            ),
        }
    }
}

impl Policy for RateLimitPolicy {
    type Config = RateLimitConfig;
    type Exchange = Exchange;
    const NAME: &'static str = "ratelimit";

    fn new(config: RateLimitConfig, host: &dyn Host) -> Result<Self, ConfigError> {
        Self::from_config(config, host)
    }

    fn uses_client_ip(&self) -> bool {
        self.rules
            .iter()
            .any(|r| r.key.contains(&Part::RemoteAddress))
    }

    fn on_request_headers(&self, ex: &mut Exchange, req: &Request, host: &dyn Host) -> Action {
        let mut applied: Vec<(usize, Vec<u8>)> = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            if !rule.matcher.matches(req) {
                continue;
            }
            match self.key_material(rule, req) {
                Some(m) => applied.push((i, m)),
                None => match rule.on_missing {
                    OnMissingKey::Skip => {}
                    OnMissingKey::Anonymous => applied.push((i, vec![0xff])),
                },
            }
        }
        if applied.is_empty() {
            return Action::proceed();
        }
        let seed = match self.load_seed(host) {
            Ok(s) => s,
            Err(e) => {
                host.increment_metric(self.metrics.errors, 1);
                log::warn!("meshwall.ratelimit: rate-limit table unavailable: {e}");
                return self.table_error();
            }
        };
        let targets: Vec<Target> = applied
            .iter()
            .filter_map(|(i, m)| self.target(seed, *i, m))
            .collect();
        let now = host.now_millis();
        match self.take(&targets, now, host) {
            Outcome::Allowed(seen) => {
                self.count(&seen, true, host);
                ex.ops = self
                    .headers(&seen, now)
                    .into_iter()
                    .map(|(k, v)| HeaderOp::Set(k, v))
                    .collect();
                Action::proceed()
            }
            Outcome::Rejected(seen) => {
                self.count(&seen, false, host);
                let limiting: Vec<&Seen> = seen
                    .iter()
                    .filter(|s| !s.had_token && self.rules.get(s.rule).is_some_and(|r| !r.shadow))
                    .collect();
                let retry_after = limiting
                    .iter()
                    .filter_map(|s| {
                        self.rules
                            .get(s.rule)
                            .map(|r| r.bucket.retry_after_secs(s.state, now))
                    })
                    .max()
                    .unwrap_or(1);
                let names: Vec<serde_json::Value> = limiting
                    .iter()
                    .filter_map(|s| {
                        self.rules
                            .get(s.rule)
                            .map(|r| serde_json::Value::from(r.name.as_str()))
                    })
                    .collect();
                let headers = self.headers(&seen, now);
                let mut b = LocalReply::builder(429, "rate limit exceeded")
                    .member("violated_policies", serde_json::Value::Array(names))
                    .header("retry-after", retry_after.to_string());
                for (k, v) in &headers {
                    b = b.header(k, v.clone());
                }
                ex.ops = headers
                    .into_iter()
                    .map(|(k, v)| HeaderOp::Set(k, v))
                    .collect();
                Action::Reply(b.build())
            }
            Outcome::Failed => self.table_error(),
        }
    }

    fn on_response_headers(
        &self,
        ex: &mut Exchange,
        _resp: &Response,
        _host: &dyn Host,
    ) -> Vec<HeaderOp> {
        std::mem::take(&mut ex.ops)
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
