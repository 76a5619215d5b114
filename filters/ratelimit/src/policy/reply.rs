//! What the client is told: the rate-limit headers, the 429 reply and the table-error reply.

use super::{Exchange, RateLimitPolicy, Seen};
use crate::compile::Rule;
use crate::config::TableErrorMode;
use meshwall_core::{Action, HeaderOp, Host, LocalReply};

impl RateLimitPolicy {
    /// The rate-limit response headers for what the request saw.
    pub(super) fn headers(&self, seen: &[Seen], now: u64) -> Vec<(String, String)> {
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

    pub(super) fn count(&self, seen: &[Seen], admitted: bool, host: &dyn Host) {
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
        let names: Vec<serde_json::Value> = limiting
            .iter()
            .filter_map(|s| {
                self.rules
                    .get(s.rule)
                    .map(|r| serde_json::Value::from(r.name.as_str()))
            })
            .collect();
        let headers = self.headers(seen, now);
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
}
