//! Prometheus metrics (text format 0.0.4), lock-free counters. Every label set is fixed at
//! start-up from the configuration, so no request can grow the metric set.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use crate::config::Config;

/// Why a request was refused with `INVALID_ARGUMENT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    EmptyDomain,
    NoDescriptors,
    TooManyDescriptors,
    TooManyEntries,
    NegativeHits,
}

impl Invalid {
    pub const ALL: [Invalid; 5] = [
        Invalid::EmptyDomain,
        Invalid::NoDescriptors,
        Invalid::TooManyDescriptors,
        Invalid::TooManyEntries,
        Invalid::NegativeHits,
    ];
    pub fn label(self) -> &'static str {
        match self {
            Invalid::EmptyDomain => "empty_domain",
            Invalid::NoDescriptors => "no_descriptors",
            Invalid::TooManyDescriptors => "too_many_descriptors",
            Invalid::TooManyEntries => "too_many_entries",
            Invalid::NegativeHits => "negative_hits",
        }
    }
}

/// The kinds of Redis failure (each answers `UNAVAILABLE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisError {
    /// The call did not finish within `--redis-timeout`.
    Timeout,
    /// No connection (refused, reset, not yet re-established).
    Connection,
    /// Redis answered with an error (script error, OOM, cluster down, …).
    Server,
    /// `--max-inflight` calls were already waiting and no slot freed up in time.
    PoolExhausted,
}

impl RedisError {
    pub const ALL: [RedisError; 4] = [
        RedisError::Timeout,
        RedisError::Connection,
        RedisError::Server,
        RedisError::PoolExhausted,
    ];
    pub fn label(self) -> &'static str {
        match self {
            RedisError::Timeout => "timeout",
            RedisError::Connection => "connection",
            RedisError::Server => "server",
            RedisError::PoolExhausted => "pool_exhausted",
        }
    }
    fn index(self) -> usize {
        RedisError::ALL.iter().position(|e| *e == self).unwrap_or(0)
    }
}

const LATENCY_BUCKETS: [f64; 12] = [
    0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0,
];

#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; 12],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (b, le) in self.buckets.iter().zip(LATENCY_BUCKETS) {
            if secs <= le {
                b.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (b, le) in self.buckets.iter().zip(LATENCY_BUCKETS) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{le}\"}} {}",
                b.load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

#[derive(Default)]
pub struct PerLimit {
    pub ok: AtomicU64,
    pub over_limit: AtomicU64,
    pub shadow_over_limit: AtomicU64,
}

#[derive(Default)]
pub struct PerDomain {
    pub ok: AtomicU64,
    pub over_limit: AtomicU64,
}

pub struct Metrics {
    domains: Vec<String>,
    per_domain: Vec<PerDomain>,
    limits: Vec<String>,
    per_limit: Vec<PerLimit>,
    pub unknown_domain: AtomicU64,
    pub unavailable: AtomicU64,
    invalid: [AtomicU64; 5],
    redis_errors: [AtomicU64; 4],
    pub redis_latency: Histogram,
    pub decision_latency: Histogram,
    pub refunds: AtomicU64,
    pub refunds_lost: AtomicU64,
    pub inflight: AtomicI64,
    pub key_hashed: AtomicU64,
}

impl Metrics {
    pub fn new(cfg: &Config) -> Metrics {
        Metrics {
            domains: cfg.domain_names.clone(),
            per_domain: cfg
                .domain_names
                .iter()
                .map(|_| PerDomain::default())
                .collect(),
            limits: cfg.limits.iter().map(|l| l.full_key.clone()).collect(),
            per_limit: cfg.limits.iter().map(|_| PerLimit::default()).collect(),
            unknown_domain: AtomicU64::new(0),
            unavailable: AtomicU64::new(0),
            invalid: Default::default(),
            redis_errors: Default::default(),
            redis_latency: Histogram::default(),
            decision_latency: Histogram::default(),
            refunds: AtomicU64::new(0),
            refunds_lost: AtomicU64::new(0),
            inflight: AtomicI64::new(0),
            key_hashed: AtomicU64::new(0),
        }
    }

    pub fn domain(&self, name: &str) -> Option<&PerDomain> {
        let i = self.domains.iter().position(|d| d == name)?;
        self.per_domain.get(i)
    }

    pub fn limit(&self, index: usize) -> Option<&PerLimit> {
        self.per_limit.get(index)
    }

    pub fn invalid(&self, why: Invalid) {
        let i = Invalid::ALL.iter().position(|e| *e == why).unwrap_or(0);
        if let Some(c) = self.invalid.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn redis_error(&self, kind: RedisError) {
        if let Some(c) = self.redis_errors.get(kind.index()) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn redis_errors(&self, kind: RedisError) -> u64 {
        self.redis_errors
            .get(kind.index())
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut o = String::with_capacity(4096);
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        o.push_str("# HELP meshwall_rls_decisions_total Requests answered, by domain and overall code.\n# TYPE meshwall_rls_decisions_total counter\n");
        for (d, c) in self.domains.iter().zip(&self.per_domain) {
            let d = escape(d);
            let _ = writeln!(
                o,
                "meshwall_rls_decisions_total{{domain=\"{d}\",code=\"ok\"}} {}",
                load(&c.ok)
            );
            let _ = writeln!(
                o,
                "meshwall_rls_decisions_total{{domain=\"{d}\",code=\"over_limit\"}} {}",
                load(&c.over_limit)
            );
        }
        o.push_str("# HELP meshwall_rls_limit_total Descriptors checked against a limit, by limit (full key) and result.\n# TYPE meshwall_rls_limit_total counter\n");
        for (l, c) in self.limits.iter().zip(&self.per_limit) {
            let l = escape(l);
            for (res, v) in [
                ("ok", &c.ok),
                ("over_limit", &c.over_limit),
                ("shadow_over_limit", &c.shadow_over_limit),
            ] {
                let _ = writeln!(
                    o,
                    "meshwall_rls_limit_total{{limit=\"{l}\",result=\"{res}\"}} {}",
                    load(v)
                );
            }
        }
        o.push_str("# HELP meshwall_rls_over_limit_total Requests answered OVER_LIMIT (all domains).\n# TYPE meshwall_rls_over_limit_total counter\n");
        let over: u64 = self.per_domain.iter().map(|c| load(&c.over_limit)).sum();
        let _ = writeln!(o, "meshwall_rls_over_limit_total {over}");
        let simple = [
            ("meshwall_rls_unknown_domain_total", "Requests for a domain the configuration does not have (answered OK, as envoyproxy/ratelimit does).", &self.unknown_domain),
            ("meshwall_rls_unavailable_total", "Requests answered UNAVAILABLE because Redis failed (the client's failure mode decides).", &self.unavailable),
            ("meshwall_rls_refunds_total", "Charges given back because another Redis Cluster slot of the same request was over its limit.", &self.refunds),
            ("meshwall_rls_refunds_lost_total", "Charges that could not be given back (errs on the strict side).", &self.refunds_lost),
            ("meshwall_rls_hashed_keys_total", "Descriptors whose counter key was longer than --max-key-bytes and was replaced by its SHA-1.", &self.key_hashed),
        ];
        for (name, help, c) in simple {
            let _ = writeln!(
                o,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                load(c)
            );
        }
        o.push_str("# HELP meshwall_rls_invalid_requests_total Requests refused with INVALID_ARGUMENT, by reason.\n# TYPE meshwall_rls_invalid_requests_total counter\n");
        for (why, c) in Invalid::ALL.iter().zip(&self.invalid) {
            let _ = writeln!(
                o,
                "meshwall_rls_invalid_requests_total{{reason=\"{}\"}} {}",
                why.label(),
                load(c)
            );
        }
        o.push_str("# HELP meshwall_rls_redis_errors_total Failed Redis calls, by kind.\n# TYPE meshwall_rls_redis_errors_total counter\n");
        for (kind, c) in RedisError::ALL.iter().zip(&self.redis_errors) {
            let _ = writeln!(
                o,
                "meshwall_rls_redis_errors_total{{kind=\"{}\"}} {}",
                kind.label(),
                load(c)
            );
        }
        self.redis_latency.render(
            &mut o,
            "meshwall_rls_redis_latency_seconds",
            "Time of one Redis script call (successful or not).",
        );
        self.decision_latency.render(
            &mut o,
            "meshwall_rls_decision_latency_seconds",
            "Time from a ShouldRateLimit request to its answer.",
        );
        let _ = writeln!(
            o,
            "# HELP meshwall_rls_inflight Requests being decided now.\n# TYPE meshwall_rls_inflight gauge\nmeshwall_rls_inflight {}",
            self.inflight.load(Ordering::Relaxed)
        );
        o
    }
}

/// A Prometheus label value: `\`, `"` and newlines escaped.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_sets_come_from_the_configuration_and_values_are_escaped() {
        let cfg = Config::from_texts([(
            "t.yaml",
            "domain: 'a\"b'\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 1}\n",
        )])
        .unwrap();
        let m = Metrics::new(&cfg);
        m.domain("a\"b").unwrap().ok.fetch_add(3, Ordering::Relaxed);
        m.limit(0)
            .unwrap()
            .over_limit
            .fetch_add(2, Ordering::Relaxed);
        m.redis_error(RedisError::Timeout);
        m.redis_latency.observe(Duration::from_micros(700));
        let text = m.render();
        assert!(text.contains("meshwall_rls_decisions_total{domain=\"a\\\"b\",code=\"ok\"} 3"));
        assert!(
            text.contains("meshwall_rls_limit_total{limit=\"a\\\"b.k\",result=\"over_limit\"} 2")
        );
        assert!(text.contains("meshwall_rls_redis_errors_total{kind=\"timeout\"} 1"));
        assert!(text.contains("meshwall_rls_redis_latency_seconds_bucket{le=\"0.0005\"} 0"));
        assert!(text.contains("meshwall_rls_redis_latency_seconds_bucket{le=\"0.001\"} 1"));
        assert!(text.contains("meshwall_rls_redis_latency_seconds_count 1"));
        assert!(m.domain("other").is_none());
    }
}
