//! What the client is told: the rate-limit headers, the 429 reply and the table-error reply.

use super::{Exchange, RateLimitPolicy, Seen};
use crate::config::TableErrorMode;
use meshwall_core::{Action, HeaderOp, Host, LocalReply};

/// What one enforced rule tells the client in the rate-limit headers.
pub(super) struct Report {
    /// The rule's index (items are listed in rule order).
    pub(super) rule: usize,
    /// `"name";q=<limit>;w=<window seconds>`
    pub(super) policy_item: String,
    pub(super) limit: u64,
    pub(super) remaining: u64,
    /// Seconds until the next fill (local) or the reset (global).
    pub(super) reset: u64,
}

impl RateLimitPolicy {
    /// The reports of the enforced local rules a request saw.
    pub(super) fn local_reports(&self, seen: &[Seen], now: u64) -> Vec<Report> {
        seen.iter()
            .filter_map(|s| self.rules.get(s.rule).map(|r| (r, s)))
            .filter(|(r, _)| !r.shadow)
            .map(|(r, s)| Report {
                rule: s.rule,
                policy_item: r.policy_item.clone(),
                limit: u64::from(r.bucket.max_tokens),
                remaining: u64::from(s.state.tokens),
                reset: r.bucket.reset_secs(s.state, now),
            })
            .collect()
    }

    /// The rate-limit response headers for what the request saw.
    pub(super) fn headers(&self, seen: &[Seen], now: u64) -> Vec<(String, String)> {
        self.report_headers(self.local_reports(seen, now))
    }

    /// The rate-limit response headers for these reports (local and global rules alike).
    pub(super) fn report_headers(&self, mut reports: Vec<Report>) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if reports.is_empty() {
            return out;
        }
        reports.sort_by_key(|r| r.rule);
        if self.draft_headers {
            let policy: Vec<&str> = reports.iter().map(|r| r.policy_item.as_str()).collect();
            let status: Vec<String> = reports
                .iter()
                .filter_map(|r| {
                    self.rules
                        .get(r.rule)
                        .map(|rule| format!("\"{}\";r={};t={}", rule.name, r.remaining, r.reset))
                })
                .collect();
            out.push(("ratelimit-policy".to_string(), policy.join(", ")));
            out.push(("ratelimit".to_string(), status.join(", ")));
        }
        if self.legacy_headers {
            if let Some(r) = reports.iter().min_by_key(|r| r.remaining) {
                out.push(("x-ratelimit-limit".to_string(), r.limit.to_string()));
                out.push(("x-ratelimit-remaining".to_string(), r.remaining.to_string()));
                out.push(("x-ratelimit-reset".to_string(), r.reset.to_string()));
            }
        }
        out
    }

    pub(super) fn count(&self, seen: &[Seen], admitted: bool, host: &dyn Host) {
        for s in seen {
            let Some(r) = self.rules.get(s.rule) else {
                continue;
            };
            if s.had_token {
                if admitted {
                    r.m_allowed.inc(host);
                }
            } else if r.shadow {
                r.m_shadow_limited.inc(host);
            } else {
                r.m_limited.inc(host);
            }
        }
    }

    pub(super) fn table_error(&self) -> Action {
        match self.on_error {
            TableErrorMode::Allow => Action::proceed(),
            TableErrorMode::Deny => Action::Reply(
                LocalReply::builder(503, "rate limit state unavailable, retry later")
                    .header("retry-after", "1")
                    .build(),
            ),
        }
    }

    /// The 429 for a request an enforced rule had no token for; the same rate-limit headers
    /// go on the response phase.
    pub(super) fn rejected(&self, ex: &mut Exchange, seen: &[Seen], now: u64) -> Action {
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
        let violated: Vec<usize> = limiting.iter().map(|s| s.rule).collect();
        let headers = self.headers(seen, now);
        self.too_many(ex, &violated, retry_after, headers, &[])
    }

    /// The 429: `violated` (rule indexes) in the body, `headers` (the rate-limit headers) on
    /// the reply and again in the response phase, `extra` (the rate limit service's
    /// `response_headers_to_add`) on the reply only, except the names the reply has already.
    pub(super) fn too_many(
        &self,
        ex: &mut Exchange,
        violated: &[usize],
        retry_after: u64,
        headers: Vec<(String, String)>,
        extra: &[(String, String)],
    ) -> Action {
        let names: Vec<serde_json::Value> = violated
            .iter()
            .filter_map(|i| {
                self.rules
                    .get(*i)
                    .map(|r| serde_json::Value::from(r.name.as_str()))
            })
            .collect();
        let mut b = LocalReply::builder(429, "rate limit exceeded")
            .member("violated_policies", serde_json::Value::Array(names))
            .header("retry-after", retry_after.max(1).to_string());
        // The service's headers never relabel the problem+json or replace the reply's own.
        let own = |k: &str| {
            matches!(k, "content-type" | "cache-control" | "retry-after")
                || headers.iter().any(|(h, _)| h == k)
        };
        let extra = extra.iter().filter(|(k, _)| !own(k));
        for (k, v) in headers.iter().chain(extra) {
            b = b.header(k, v.clone());
        }
        ex.ops = headers
            .into_iter()
            .map(|(k, v)| HeaderOp::Set(k, v))
            .collect();
        Action::Reply(b.build())
    }
}
