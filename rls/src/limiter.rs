//! From a `RateLimitRequest` to the counters to check (`plan`), and from Redis's answer to the
//! `RateLimitResponse` (`respond`). Both are pure; the Redis call is in between.

use std::collections::HashMap;
use std::fmt::Write as _;

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{
    Code, DescriptorStatus, RateLimit,
};
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use envoy_types::pb::google::protobuf::Duration as PbDuration;

use crate::config::{Config, Kind, Unit};
use crate::matcher::{lookup, Entry};
use crate::metrics::Invalid;
use crate::store::{Mode, Op, OpKind, Outcome};

/// Bounds on what one request may ask (beyond them: `INVALID_ARGUMENT`).
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_descriptors: usize,
    pub max_entries: usize,
    /// A counter key longer than this gets its descriptor part replaced by its SHA-1.
    pub max_key_bytes: usize,
    /// Prepended to every Redis key.
    pub key_prefix: String,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_descriptors: 64,
            max_entries: 32,
            max_key_bytes: 512,
            key_prefix: "meshwall:".into(),
        }
    }
}

/// What each descriptor of the request gets.
#[derive(Debug, Clone, PartialEq)]
pub enum Slot {
    /// No limit applies: OK.
    NoLimit,
    /// `unlimited: true`: OK, `limit_remaining` = u32::MAX.
    Unlimited,
    /// Counter `op` of the plan; `limit` is the configured limit's index (None: Envoy's
    /// per-descriptor override).
    Counter {
        op: usize,
        limit: Option<usize>,
        current: RateLimit,
        mode: Mode,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub known_domain: bool,
    pub slots: Vec<Slot>,
    pub ops: Vec<Op>,
    /// Descriptors whose key was hashed (over `max_key_bytes`).
    pub hashed_keys: usize,
}

/// The counters a request needs. Refuses (`Err`) what is malformed or over the bounds.
pub fn plan(cfg: &Config, lim: &Limits, req: &RateLimitRequest) -> Result<Plan, Invalid> {
    if req.domain.is_empty() {
        return Err(Invalid::EmptyDomain);
    }
    if req.descriptors.is_empty() {
        return Err(Invalid::NoDescriptors);
    }
    if req.descriptors.len() > lim.max_descriptors {
        return Err(Invalid::TooManyDescriptors);
    }
    for d in &req.descriptors {
        if d.entries.len() > lim.max_entries {
            return Err(Invalid::TooManyEntries);
        }
        if d.is_negative_hits {
            return Err(Invalid::NegativeHits);
        }
    }
    let domain = cfg.domains.get(&req.domain);
    let mut plan = Plan {
        known_domain: domain.is_some(),
        slots: Vec::with_capacity(req.descriptors.len()),
        ops: Vec::new(),
        hashed_keys: 0,
    };
    let Some(domain) = domain else {
        plan.slots = vec![Slot::NoLimit; req.descriptors.len()];
        return Ok(plan);
    };
    // The matched limit of every descriptor, then `replaces`.
    let mut matched = Vec::with_capacity(req.descriptors.len());
    let mut replaced: Vec<&str> = Vec::new();
    for d in &req.descriptors {
        let entries: Vec<Entry<'_>> = d
            .entries
            .iter()
            .map(|e| Entry {
                key: &e.key,
                value: &e.value,
            })
            .collect();
        let m = if override_of(d).is_some() {
            None
        } else {
            lookup(domain, &entries)
        };
        if let Some(limit) = m.as_ref().and_then(|m| cfg.limits.get(m.limit)) {
            replaced.extend(limit.replaces.iter().map(String::as_str));
        }
        matched.push(m);
    }
    let mut by_key: HashMap<String, usize> = HashMap::new();
    for (d, m) in req.descriptors.iter().zip(matched) {
        let hits = hits_of(d, req.hits_addend);
        let (kind, current, mode, limit, values, tag) = if let Some((rpu, unit)) = override_of(d) {
            let values: Vec<String> = d.entries.iter().map(|e| e.value.clone()).collect();
            let kind = OpKind::Window {
                requests_per_unit: rpu,
                window_ms: unit.seconds() * 1000,
            };
            let current = RateLimit {
                name: String::new(),
                requests_per_unit: rpu,
                unit: unit.proto(),
            };
            let tag = format!("o{}", unit.proto());
            (kind, current, Mode::Enforce, None, values, tag)
        } else {
            let Some(m) = m else {
                plan.slots.push(Slot::NoLimit);
                continue;
            };
            let Some(limit) = cfg.limits.get(m.limit) else {
                plan.slots.push(Slot::NoLimit);
                continue;
            };
            if limit.name.as_deref().is_some_and(|n| replaced.contains(&n)) {
                plan.slots.push(Slot::NoLimit);
                continue;
            }
            let name = limit.name.clone().unwrap_or_default();
            let (kind, current, tag) = match limit.kind {
                Kind::Unlimited => {
                    plan.slots.push(Slot::Unlimited);
                    continue;
                }
                Kind::Window {
                    requests_per_unit,
                    unit,
                } => (
                    OpKind::Window {
                        requests_per_unit,
                        window_ms: unit.seconds() * 1000,
                    },
                    RateLimit {
                        name,
                        requests_per_unit,
                        unit: unit.proto(),
                    },
                    "w".to_string(),
                ),
                Kind::Bucket(b) => {
                    let per = u64::from(b.tokens_per_fill.max(1));
                    let fills = u64::from(b.max_tokens).div_ceil(per);
                    let window_s = fills.saturating_mul(b.fill_interval_ms).div_ceil(1000);
                    (
                        OpKind::Bucket {
                            max_tokens: b.max_tokens,
                            tokens_per_fill: b.tokens_per_fill,
                            fill_interval_ms: b.fill_interval_ms,
                        },
                        RateLimit {
                            name,
                            requests_per_unit: b.max_tokens,
                            unit: Unit::covering(window_s.max(1)).proto(),
                        },
                        "b".to_string(),
                    )
                }
            };
            let mode = if limit.shadow {
                Mode::Shadow
            } else if limit.quota {
                Mode::Quota
            } else {
                Mode::Enforce
            };
            (kind, current, mode, Some(m.limit), m.counter_values, tag)
        };
        let (key, hashed) = counter_key(lim, &tag, &req.domain, d, &values);
        plan.hashed_keys += usize::from(hashed);
        // The same counter twice in one request is one op with the hits added up.
        let op = match by_key.get(&key) {
            Some(&i) => {
                if let Some(op) = plan.ops.get_mut(i) {
                    op.hits = op.hits.saturating_add(hits);
                    if mode == Mode::Enforce {
                        op.mode = Mode::Enforce;
                    }
                }
                i
            }
            None => {
                plan.ops.push(Op {
                    key: key.clone(),
                    kind,
                    hits,
                    mode,
                });
                by_key.insert(key, plan.ops.len() - 1);
                plan.ops.len() - 1
            }
        };
        plan.slots.push(Slot::Counter {
            op,
            limit,
            current,
            mode,
        });
    }
    Ok(plan)
}

/// Envoy's per-descriptor `limit` override, if its unit is known.
fn override_of(d: &RateLimitDescriptor) -> Option<(u32, Unit)> {
    let o = d.limit.as_ref()?;
    Some((o.requests_per_unit, Unit::from_proto(o.unit)?))
}

/// The descriptor's `hits_addend` if set (0 allowed: check only), else the request's, at least 1.
fn hits_of(d: &RateLimitDescriptor, request_hits: u32) -> u64 {
    match &d.hits_addend {
        Some(h) => h.value,
        None => u64::from(request_hits.max(1)),
    }
}

/// `<prefix><tag>:<domain>_<key>_<value>_…` with `%`, `_`, `{`, `}` and control characters
/// escaped (so no two descriptors share a key, and no value picks a Cluster hash tag); when that
/// is longer than `max_key_bytes`, the part after the domain is replaced by `#<sha1 hex>`.
pub fn counter_key(
    lim: &Limits,
    tag: &str,
    domain: &str,
    d: &RateLimitDescriptor,
    values: &[String],
) -> (String, bool) {
    let mut head = String::with_capacity(lim.key_prefix.len() + domain.len() + 8);
    head.push_str(&lim.key_prefix);
    head.push_str(tag);
    head.push(':');
    escape_into(&mut head, domain);
    let mut tail = String::new();
    for (e, v) in d.entries.iter().zip(values) {
        tail.push('_');
        escape_into(&mut tail, &e.key);
        tail.push('_');
        escape_into(&mut tail, v);
    }
    if head.len() + tail.len() <= lim.max_key_bytes {
        head.push_str(&tail);
        (head, false)
    } else {
        let digest = sha1_smol::Sha1::from(tail.as_bytes()).digest().to_string();
        head.push('#');
        head.push_str(&digest);
        (head, true)
    }
}

fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '%' | '_' | '{' | '}' | '#' => {
                let _ = write!(out, "%{:02X}", c as u32);
            }
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(out, "%{b:02X}");
                }
            }
            c => out.push(c),
        }
    }
}

/// The response for a plan and Redis's outcome (`None`: no counter was needed).
pub fn respond(plan: &Plan, outcome: Option<&Outcome>) -> RateLimitResponse {
    let admitted = outcome.is_none_or(|o| o.admitted);
    let statuses = plan
        .slots
        .iter()
        .map(|slot| match slot {
            Slot::NoLimit => DescriptorStatus {
                code: Code::Ok as i32,
                ..Default::default()
            },
            Slot::Unlimited => DescriptorStatus {
                code: Code::Ok as i32,
                limit_remaining: u32::MAX,
                ..Default::default()
            },
            Slot::Counter {
                op, current, mode, ..
            } => {
                let r = outcome.and_then(|o| o.results.get(*op));
                let ok = r.is_none_or(|r| r.ok);
                // A quota-mode limit that is over reports OVER_LIMIT (the overall code says
                // whether the request was rejected); a shadow one reports OK.
                let code = if ok || *mode == Mode::Shadow {
                    Code::Ok
                } else {
                    Code::OverLimit
                };
                let remaining = r.map_or(0, |r| u32::try_from(r.remaining).unwrap_or(u32::MAX));
                let reset = r.map_or(0, |r| r.reset_ms);
                DescriptorStatus {
                    code: code as i32,
                    current_limit: Some(current.clone()),
                    limit_remaining: remaining,
                    duration_until_reset: (reset > 0).then(|| PbDuration {
                        seconds: i64::try_from(reset / 1000).unwrap_or(i64::MAX),
                        nanos: i32::try_from((reset % 1000) * 1_000_000).unwrap_or(0),
                    }),
                    quota: None,
                }
            }
        })
        .collect();
    RateLimitResponse {
        overall_code: if admitted {
            Code::Ok as i32
        } else {
            Code::OverLimit as i32
        },
        statuses,
        ..Default::default()
    }
}

#[cfg(test)]
#[path = "limiter_tests.rs"]
mod tests;
