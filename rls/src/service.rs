//! The gRPC `envoy.service.ratelimit.v3.RateLimitService`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitService;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use tonic::{Request, Response, Status};

use crate::config::Config;
use crate::limiter::{plan, respond, Limits, Slot};
use crate::metrics::{Metrics, RedisError};
use crate::store::{Mode, Store};

pub struct Rls {
    pub config: Arc<Config>,
    pub limits: Limits,
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
    /// Unix second of the last "redis unavailable" log line, and failures since.
    pub last_warn: AtomicU64,
    pub suppressed: AtomicU64,
}

struct Inflight<'a>(&'a Metrics);

impl Drop for Inflight<'_> {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Rls {
    pub async fn decide(&self, req: &RateLimitRequest) -> Result<RateLimitResponse, Status> {
        let started = Instant::now();
        self.metrics.inflight.fetch_add(1, Ordering::Relaxed);
        let _guard = Inflight(&self.metrics);
        let res = self.decide_inner(req).await;
        self.metrics.decision_latency.observe(started.elapsed());
        res
    }

    async fn decide_inner(&self, req: &RateLimitRequest) -> Result<RateLimitResponse, Status> {
        let plan = plan(&self.config, &self.limits, req).map_err(|why| {
            self.metrics.invalid(why);
            tracing::debug!(reason = why.label(), "invalid request");
            Status::invalid_argument(format!("invalid RateLimitRequest: {}", why.label()))
        })?;
        if !plan.known_domain {
            self.metrics.unknown_domain.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(domain = %req.domain, "unknown domain: OK");
            return Ok(respond(&plan, None));
        }
        if plan.hashed_keys > 0 {
            self.metrics
                .key_hashed
                .fetch_add(plan.hashed_keys as u64, Ordering::Relaxed);
        }
        let outcome = if plan.ops.is_empty() {
            None
        } else {
            match self.store.take(&plan.ops).await {
                Ok(o) => Some(o),
                Err(e) => {
                    self.metrics.unavailable.fetch_add(1, Ordering::Relaxed);
                    // One line per second at most (Redis down at 10k requests/s is one event),
                    // with the number of failures since the last line.
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    let prev = self.last_warn.swap(now, Ordering::Relaxed);
                    let n = self.suppressed.fetch_add(1, Ordering::Relaxed) + 1;
                    if prev != now {
                        self.suppressed.store(0, Ordering::Relaxed);
                        tracing::warn!(
                            domain = %req.domain,
                            error = e.label(),
                            failures = n,
                            "redis unavailable: answering UNAVAILABLE"
                        );
                    }
                    return Err(Status::unavailable(match e {
                        RedisError::Timeout => "redis timeout",
                        RedisError::Connection => "redis connection failed",
                        RedisError::Server => "redis error",
                        RedisError::PoolExhausted => "redis pool exhausted",
                    }));
                }
            }
        };
        let resp = respond(&plan, outcome.as_ref());
        self.count(req, &plan, outcome.as_ref(), &resp);
        Ok(resp)
    }

    fn count(
        &self,
        req: &RateLimitRequest,
        plan: &crate::limiter::Plan,
        outcome: Option<&crate::store::Outcome>,
        resp: &RateLimitResponse,
    ) {
        let over = resp.overall_code == 2;
        if let Some(d) = self.metrics.domain(&req.domain) {
            let c = if over { &d.over_limit } else { &d.ok };
            c.fetch_add(1, Ordering::Relaxed);
        }
        for slot in &plan.slots {
            let Slot::Counter {
                op,
                limit: Some(limit),
                mode,
                ..
            } = slot
            else {
                continue;
            };
            let (Some(m), Some(r)) = (
                self.metrics.limit(*limit),
                outcome.and_then(|o| o.results.get(*op)),
            ) else {
                continue;
            };
            let c = match (r.ok, mode) {
                (true, _) => &m.ok,
                (false, Mode::Shadow) => &m.shadow_over_limit,
                (false, _) => &m.over_limit,
            };
            c.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[tonic::async_trait]
impl RateLimitService for Rls {
    async fn should_rate_limit(
        &self,
        request: Request<RateLimitRequest>,
    ) -> Result<Response<RateLimitResponse>, Status> {
        self.decide(request.get_ref()).await.map(Response::new)
    }
}
