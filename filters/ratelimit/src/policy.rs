//! The `ratelimit` policy: matches rules, derives bucket keys, and takes tokens from the
//! shared table all-or-nothing with compare-and-swap. The rules are compiled from the
//! configuration in `compile.rs`; rules match, and keys are built, on the canonical request
//! view (`policy/view.rs`), and what has no single meaning is refused (400) before any token
//! is taken; the replies and rate-limit headers are in `policy/reply.rs`; `global` rules, decided
//! by a rate limit service after the local ones, in `policy/global.rs`.
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
//!    charged: committed tokens are refunded, `table_cas_exhausted` is counted, a warning is
//!    logged, and `on_table_error` decides (`deny` → 503 by default).

use crate::bucket::{BucketState, TokenBucket};
use crate::compile::{self, Part, Rule, TableMetrics};
use crate::config::{ClientIpConfig, RateLimitConfig, TableErrorMode, XRateLimitHeaders};
use crate::table::{shard_len, Claim, Shard};
use meshwall_core::{
    Action, CanonConfig, ConfigError, GrpcResponse, HeaderOp, Host, HostError, Policy, Refusals,
    Request, Response,
};
use siphasher::sip128::{Hasher128, SipHasher13};
use std::cell::Cell;
use std::hash::Hasher;

mod global;
mod reply;
mod view;

use global::{Service, Taken};
use view::View;

const SEED_MAGIC: &[u8; 4] = b"MWS1";

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
    canon: CanonConfig,
    refusals: Refusals,
    /// The rate limit service of the global rules.
    service: Option<Service>,
}

/// Per-request state: the rate-limit headers to put on the response, and what a request
/// waiting for the rate limit service needs when the answer comes.
#[derive(Debug, Default)]
pub struct Exchange {
    ops: Vec<HeaderOp>,
    global: Option<Box<global::Pending>>,
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

impl RateLimitPolicy {
    /// Checks the configuration and builds the policy; creates the shared table when this
    /// is the first worker to start.
    pub fn from_config(cfg: RateLimitConfig, host: &dyn Host) -> Result<Self, ConfigError> {
        let rules = compile::rules(&cfg, host)?;
        compile::check_client_ip(&cfg.client_ip)?;
        let t = &cfg.table;
        compile::check_table(t, rules.iter().filter(|r| !r.global).count())?;
        let service = match &cfg.rate_limit_service {
            Some(_) if !rules.iter().any(|r| r.global) => {
                return Err(ConfigError::new(
                    "rate_limit_service",
                    "no rule is `global`: remove it, or mark the rules it decides",
                ))
            }
            Some(c) => Some(Service::new(c, host)?),
            None => None,
        };
        let metrics = TableMetrics::define(host)?;
        let key_prefix = format!(
            "meshwall.ratelimit/{}/{}x{}/",
            t.name, t.shards, t.slots_per_shard
        );
        let policy = RateLimitPolicy {
            rules,
            client_ip: cfg.client_ip.clone(),
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
            refusals: Refusals::define(Self::NAME, host),
            canon: cfg.canonical.clone(),
            service,
        };
        policy.init_table(host)?;
        compile::metrics(host)
            .gauge("table_bytes", &[])?
            .set(host, policy.table_bytes());
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
                                Claim::Evicted => self.metrics.evictions.inc(host),
                                Claim::Reclaimed => self.metrics.reclaims.inc(host),
                                Claim::Free => {}
                            }
                        }
                        committed.push(g.clone());
                    }
                    Err(HostError::CasMismatch) => {
                        self.metrics.cas_retries.inc(host);
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
        self.metrics.cas_exhausted.inc(host);
        meshwall_core::policy_log!(
            warn,
            crate::policy::RateLimitPolicy,
            "gave up after {} compare-and-swap attempts (table_cas_exhausted)",
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
        self.metrics.errors.inc(host);
        meshwall_core::policy_log!(
            warn,
            crate::policy::RateLimitPolicy,
            "rate-limit table unavailable: {why}"
        );
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
                    Err(HostError::CasMismatch) => self.metrics.cas_retries.inc(host),
                    Err(_) => break,
                }
            }
            if !done {
                self.metrics.refunds_lost.inc(host);
                meshwall_core::policy_log!(
                    warn,
                    crate::policy::RateLimitPolicy,
                    "could not give back a token (table_refunds_lost)"
                );
            }
        }
    }
}

impl RateLimitPolicy {
    /// Takes a token from the bucket of every local rule that applies: what was taken, or the
    /// reply (429, or the table error when `on_table_error` denies; when it allows, nothing is
    /// taken and the request goes on to the global rules).
    fn take_local(
        &self,
        ex: &mut Exchange,
        local: &[(usize, Vec<u8>)],
        host: &dyn Host,
    ) -> Result<Taken, Action> {
        let failed = || match self.table_error() {
            Action::Continue(_) => Ok(Taken::default()),
            reply => Err(reply),
        };
        let seed = match self.load_seed(host) {
            Ok(s) => s,
            Err(e) => {
                self.metrics.errors.inc(host);
                meshwall_core::policy_log!(
                    warn,
                    crate::policy::RateLimitPolicy,
                    "rate-limit table unavailable: {e}"
                );
                return failed();
            }
        };
        let targets: Vec<Target> = local
            .iter()
            .filter_map(|(i, m)| self.target(seed, *i, m))
            .collect();
        let now = host.now_millis();
        match self.take(&targets, now, host) {
            Outcome::Allowed(seen) => Ok(Taken { seen, targets, now }),
            Outcome::Rejected(seen) => {
                self.count(&seen, false, host);
                Err(self.rejected(ex, &seen, now))
            }
            Outcome::Failed => failed(),
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
        // Every request is checked by at least one rule, so an ambiguous one is always refused
        // (before any token is taken: a refusal costs nothing and reaches nothing).
        let applied = match View::new(req, &self.canon).and_then(|v| self.applied(&v)) {
            Ok(applied) => applied,
            Err(a) => return self.refusals.refuse(&a, host),
        };
        if applied.local.is_empty() && applied.global.is_empty() {
            return Action::proceed();
        }
        // Local rules first: what they reject never reaches the rate limit service.
        let mut taken = Taken::default();
        if !applied.local.is_empty() {
            match self.take_local(ex, &applied.local, host) {
                Ok(t) => taken = t,
                Err(reply) => return reply,
            }
        }
        if applied.global.is_empty() {
            return self.finish_local(ex, taken, host);
        }
        self.start_global(ex, taken, applied.global, host)
    }

    fn on_request_callout(
        &self,
        ex: &mut Exchange,
        _req: &Request,
        token: u32,
        response: GrpcResponse,
        host: &dyn Host,
    ) -> Action {
        self.global_answer(ex, token, response, host)
    }

    /// Rate limit service answers are small (a status per descriptor and a few headers).
    fn max_callout_body(&self) -> usize {
        global::MAX_ANSWER
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
#[path = "policy_tests/mod.rs"]
mod tests;
