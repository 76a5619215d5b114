//! Global rules: decided fleet-wide by an Envoy Rate Limit Service v3 server
//! (`rate_limit_service`), after the local rules.
//!
//! 1. The local rules decide first (their tokens are taken): a request they reject never
//!    reaches the service, so a flood limited locally costs the service nothing.
//! 2. The descriptors of the global rules that apply go in one `ShouldRateLimit` call
//!    (`dispatch_grpc_call`, with the configured timeout), and the request waits
//!    ([`Action::Wait`]). Shadow rules go in a call of their own: a server that is all or
//!    nothing (meshwall-rls) would otherwise charge nothing for the enforced descriptors when
//!    a shadow one is over its limit, and the request would pass uncharged.
//! 3. `OVER_LIMIT` for an enforced rule: 429 with `Retry-After` (the longest
//!    `duration_until_reset` of the limits over), the rate-limit headers from the statuses,
//!    the server's `response_headers_to_add`. `OK`: the request goes on with the server's
//!    `request_headers_to_add`, the response gets its `response_headers_to_add` and the
//!    rate-limit headers. Either way the tokens the local rules took are given back when the
//!    request is not admitted (all or nothing, as between local rules).
//! 4. A failed call (cannot start, a gRPC error, the timeout), an answer that cannot be read
//!    (or with a status per descriptor that does not match the request), and `UNKNOWN`
//!    follow `failure_mode` (deny: 503 with `Retry-After: 1`), each counted under its reason.

use super::reply::Report;
use super::view::Entries;
use super::{Exchange, RateLimitPolicy, Seen, Target};
use crate::compile::metrics;
use crate::config::{
    parse_duration_ms, FailureMode, RateLimitServiceConfig, MAX_RLS_TIMEOUT_MS, MIN_RLS_TIMEOUT_MS,
};
use crate::rls::{self, ceil_secs, unit_secs, Code, RateLimitResponse};
use meshwall_core::host::grpc_status;
use meshwall_core::metrics::{Counter, Label};
use meshwall_core::{Action, ConfigError, GrpcResponse, GrpcUpstream, HeaderOp, Host, LocalReply};
use prost::Message;
use std::cell::Cell;
use std::time::Duration;

/// The largest answer read (a status per descriptor and a few headers need far less).
pub(super) const MAX_ANSWER: usize = 64 << 10;

/// Why a call did not decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Envoy did not start the call (no such cluster, …).
    Dispatch,
    /// No answer within the timeout.
    Timeout,
    /// A gRPC error status (UNAVAILABLE when the server cannot reach its store, …).
    Status,
    /// An answer that cannot be read, too large, or whose statuses do not match.
    BadResponse,
    /// `overall_code` UNKNOWN (or a code this filter does not know).
    Unknown,
}

impl Failure {
    pub(crate) const ALL: [Failure; 5] = [
        Failure::Dispatch,
        Failure::Timeout,
        Failure::Status,
        Failure::BadResponse,
        Failure::Unknown,
    ];

    pub(crate) fn label(self) -> &'static str {
        match self {
            Failure::Dispatch => "dispatch",
            Failure::Timeout => "timeout",
            Failure::Status => "grpc_status",
            Failure::BadResponse => "bad_response",
            Failure::Unknown => "unknown_code",
        }
    }
}

/// The rate limit service, ready to call.
pub(crate) struct Service {
    cluster: String,
    authority: Option<String>,
    domain: String,
    timeout: Duration,
    failure_mode: FailureMode,
    /// `meshwall.ratelimit.global_{ok,over_limit}`: answers, per call.
    m_ok: Counter,
    m_over_limit: Counter,
    /// `meshwall.ratelimit.global_errors.reason.<failure>`.
    m_errors: Vec<(Failure, Counter)>,
    /// `meshwall.ratelimit.global_failure_mode_{allowed,denied}`: requests.
    m_failure_allowed: Counter,
    m_failure_denied: Counter,
    /// Second of the last warning logged (one line per second at most: a service down at
    /// 10,000 requests/s is one event).
    last_warn: Cell<u64>,
}

impl Service {
    pub(crate) fn new(c: &RateLimitServiceConfig, host: &dyn Host) -> Result<Self, ConfigError> {
        let f = "rate_limit_service";
        // Envoy reads a cluster name of at most 125 ASCII bytes inside the GrpcService
        // meshwall-core sends; printable, no spaces.
        if c.cluster.is_empty()
            || c.cluster.len() > 125
            || !c.cluster.chars().all(|ch| ch.is_ascii_graphic())
        {
            return Err(ConfigError::new(
                format!("{f}.cluster"),
                "must be an Envoy cluster name: 1 to 125 printable ASCII characters, no spaces",
            ));
        }
        let authority = c.checked_authority(f)?;
        if c.domain.is_empty() || c.domain.len() > 256 || c.domain.chars().any(char::is_control) {
            return Err(ConfigError::new(
                format!("{f}.domain"),
                "must be 1 to 256 characters, none a control character",
            ));
        }
        let ms = parse_duration_ms(&format!("{f}.timeout"), &c.timeout)?;
        if !(MIN_RLS_TIMEOUT_MS..=MAX_RLS_TIMEOUT_MS).contains(&ms) {
            return Err(ConfigError::new(
                format!("{f}.timeout"),
                "must be between 1ms and 60s",
            ));
        }
        let m = metrics(host);
        let mut m_errors = Vec::new();
        for fail in Failure::ALL {
            m_errors.push((
                fail,
                m.counter("global_errors", &[(Label::Reason, fail.label())])?,
            ));
        }
        Ok(Service {
            cluster: c.cluster.clone(),
            authority,
            domain: c.domain.clone(),
            timeout: Duration::from_millis(ms),
            failure_mode: c.failure_mode,
            m_ok: m.counter("global_ok", &[])?,
            m_over_limit: m.counter("global_over_limit", &[])?,
            m_errors,
            m_failure_allowed: m.counter("global_failure_mode_allowed", &[])?,
            m_failure_denied: m.counter("global_failure_mode_denied", &[])?,
            last_warn: Cell::new(0),
        })
    }

    /// Counts a failure; logs it unless a warning was logged this second.
    fn error(&self, fail: Failure, detail: &str, host: &dyn Host) {
        if let Some((_, c)) = self.m_errors.iter().find(|(f, _)| *f == fail) {
            c.inc(host);
        }
        self.warn(
            &format!(
                "rate limit service failed ({}): {detail}; failure_mode applies",
                fail.label()
            ),
            host,
        );
    }

    /// One warning per second at most (a service down at 10,000 requests/s is one event).
    fn warn(&self, what: &str, host: &dyn Host) {
        let now = host.now_secs();
        if self.last_warn.replace(now) != now {
            meshwall_core::policy_log!(warn, crate::policy::RateLimitPolicy, "{what}");
        }
    }
}

/// What the local rules took for a request that now waits for the service.
#[derive(Debug, Default)]
pub(super) struct Taken {
    pub(super) seen: Vec<Seen>,
    pub(super) targets: Vec<Target>,
    pub(super) now: u64,
}

/// A request waiting for the service.
#[derive(Debug)]
pub(super) struct Pending {
    taken: Taken,
    sent_at: u64,
    calls: Vec<Call>,
}

#[derive(Debug)]
struct Call {
    token: u32,
    shadow: bool,
    /// The rules of the descriptors, in order.
    rules: Vec<usize>,
    result: Option<Result<Answer, Failure>>,
}

/// A readable answer.
#[derive(Debug)]
struct Answer {
    over: bool,
    /// Per rule of the call: (over its limit, its status when the server sent one).
    rules: Vec<(bool, Option<rls::DescriptorStatus>)>,
    request_headers: Vec<(String, String)>,
    response_headers: Vec<(String, String)>,
}

/// The headers of a server's list that may be written: a valid name, not a framing header nor
/// `content-type`, and a value without CR, LF or NUL; at most 64. The others are dropped
/// (`dropped` counts them).
fn server_headers(list: &[rls::HeaderValue], dropped: &mut usize) -> Vec<(String, String)> {
    let mut out = Vec::new();
    *dropped += list.len().saturating_sub(64);
    for h in list.iter().take(64) {
        let value = if h.value.is_empty() {
            String::from_utf8(h.raw_value.clone()).unwrap_or_default()
        } else {
            h.value.clone()
        };
        let name = h.key.to_ascii_lowercase();
        // Not framing, and not `content-type`: the body is the upstream's or problem+json.
        let name_ok = !name.is_empty()
            && name.chars().all(meshwall_core::config::is_tchar)
            && !meshwall_core::config::FRAMING_HEADERS.contains(&name.as_str())
            && name != "content-type";
        let value_ok = value.len() <= 8192 && !value.contains(['\r', '\n', '\0']);
        if name_ok && value_ok {
            out.push((name, value));
        } else {
            *dropped += 1;
        }
    }
    out
}

/// Set for the first value of a name, Append for the next ones.
fn header_ops(headers: &[(String, String)]) -> Vec<HeaderOp> {
    let mut ops = Vec::with_capacity(headers.len());
    for (i, (k, v)) in headers.iter().enumerate() {
        if headers.iter().take(i).any(|(p, _)| p == k) {
            ops.push(HeaderOp::Append(k.clone(), v.clone()));
        } else {
            ops.push(HeaderOp::Set(k.clone(), v.clone()));
        }
    }
    ops
}

impl RateLimitPolicy {
    /// Sends the descriptors of the global rules that apply (after the local rules admitted
    /// the request and took `taken`); the request waits for the answers.
    pub(super) fn start_global(
        &self,
        ex: &mut Exchange,
        taken: Taken,
        global: Vec<(usize, Entries)>,
        host: &dyn Host,
    ) -> Action {
        let Some(svc) = &self.service else {
            return self.finish_local(ex, taken, host);
        };
        // Before the calls start: Envoy's timer starts inside `grpc_call`.
        let sent_at = host.now_millis();
        let mut calls = Vec::new();
        for shadow in [false, true] {
            let group: Vec<&(usize, Entries)> = global
                .iter()
                .filter(|(i, _)| self.rules.get(*i).is_some_and(|r| r.shadow == shadow))
                .collect();
            if group.is_empty() {
                continue;
            }
            let message = rls::request(&svc.domain, group.iter().map(|(_, e)| e.as_slice()));
            let rules = group.iter().map(|(i, _)| *i).collect();
            let upstream = GrpcUpstream {
                cluster: &svc.cluster,
                authority: svc.authority.as_deref(),
            };
            let sent = host.grpc_call(
                upstream,
                rls::SERVICE,
                rls::METHOD,
                &[],
                &message,
                svc.timeout,
            );
            let (token, result) = match sent {
                Ok(token) => (token, None),
                Err(e) => {
                    svc.error(Failure::Dispatch, &e.to_string(), host);
                    (0, Some(Err(Failure::Dispatch)))
                }
            };
            calls.push(Call {
                token,
                shadow,
                rules,
                result,
            });
        }
        let waiting = calls.iter().any(|c| c.result.is_none());
        ex.global = Some(Box::new(Pending {
            taken,
            sent_at,
            calls,
        }));
        if waiting {
            Action::Wait(Vec::new())
        } else {
            self.finish(ex, host)
        }
    }

    /// An answer of the service arrived.
    pub(super) fn global_answer(
        &self,
        ex: &mut Exchange,
        token: u32,
        response: GrpcResponse,
        host: &dyn Host,
    ) -> Action {
        let (Some(svc), Some(pending)) = (&self.service, ex.global.as_mut()) else {
            meshwall_core::policy_log!(
                error,
                crate::policy::RateLimitPolicy,
                "an answer no request waits for"
            );
            return Action::Reply(LocalReply::problem(500, "filter error"));
        };
        if let Some(call) = pending
            .calls
            .iter_mut()
            .find(|c| c.token == token && c.result.is_none())
        {
            let result = Self::read_answer(svc, &response, call.rules.len(), pending.sent_at, host);
            match &result {
                Ok(a) if a.over => svc.m_over_limit.inc(host),
                Ok(_) => svc.m_ok.inc(host),
                Err(fail) => {
                    let detail = format!("gRPC status {}", response.status_code);
                    svc.error(*fail, &detail, host);
                }
            }
            call.result = Some(result);
        }
        if pending.calls.iter().any(|c| c.result.is_none()) {
            return Action::Wait(Vec::new());
        }
        self.finish(ex, host)
    }

    fn read_answer(
        svc: &Service,
        response: &GrpcResponse,
        descriptors: usize,
        sent_at: u64,
        host: &dyn Host,
    ) -> Result<Answer, Failure> {
        if response.status_code != grpc_status::OK {
            let elapsed_ms = host.now_millis().saturating_sub(sent_at);
            // Envoy ends a call at its timeout with UNAVAILABLE (not DEADLINE_EXCEEDED): a
            // failure that came with the timeout is one. Envoy arms its timer from the event
            // loop's cached clock, which can lag the moment the call left by the time that loop
            // iteration had already run (milliseconds on a busy worker), so the timer may fire a
            // little "early" by our clock: anything past 80 % of the timeout counts as it. (Only
            // the metric's reason depends on this; the verdict is the failure mode either way.)
            let timeout_ms = svc.timeout.as_millis();
            let timed_out = response.status_code == grpc_status::DEADLINE_EXCEEDED
                || u128::from(elapsed_ms).saturating_mul(5) >= timeout_ms.saturating_mul(4);
            return Err(if timed_out {
                Failure::Timeout
            } else {
                Failure::Status
            });
        }
        // Larger than this policy reads (in a chain the host may have read it for another).
        if response.message_size > response.message.len() || response.message_size > MAX_ANSWER {
            return Err(Failure::BadResponse);
        }
        let r = RateLimitResponse::decode(response.message.as_slice())
            .map_err(|_| Failure::BadResponse)?;
        if !r.statuses.is_empty() && r.statuses.len() != descriptors {
            return Err(Failure::BadResponse);
        }
        let overall = match Code::try_from(r.overall_code) {
            Ok(Code::Ok) => false,
            Ok(Code::OverLimit) => true,
            _ => return Err(Failure::Unknown),
        };
        let over_code = Code::OverLimit as i32;
        let rules = (0..descriptors)
            .map(|i| match r.statuses.get(i) {
                Some(s) => (s.code == over_code, Some(s.clone())),
                None => (overall, None),
            })
            .collect::<Vec<_>>();
        let mut dropped = 0;
        let request_headers = server_headers(&r.request_headers_to_add, &mut dropped);
        let response_headers = server_headers(&r.response_headers_to_add, &mut dropped);
        if dropped > 0 {
            svc.warn(
                &format!("dropped {dropped} invalid header(s) from the rate limit service"),
                host,
            );
        }
        Ok(Answer {
            over: overall || rules.iter().any(|(over, _)| *over),
            rules,
            request_headers,
            response_headers,
        })
    }

    /// Every call answered (or failed): the decision.
    fn finish(&self, ex: &mut Exchange, host: &dyn Host) -> Action {
        let (Some(svc), Some(pending)) = (&self.service, ex.global.take()) else {
            return Action::proceed();
        };
        let Pending { taken, calls, .. } = *pending;
        let enforced = calls.iter().find(|c| !c.shadow);
        let (call, answer) = match enforced.map(|c| (c, c.result.as_ref())) {
            Some((_, Some(Err(_)) | None)) => {
                return match svc.failure_mode {
                    FailureMode::Allow => {
                        svc.m_failure_allowed.inc(host);
                        self.count_global(&calls, true, host);
                        self.finish_local(ex, taken, host)
                    }
                    FailureMode::Deny => {
                        svc.m_failure_denied.inc(host);
                        self.count_global(&calls, false, host);
                        self.give_back(&taken, host);
                        Action::Reply(
                            LocalReply::builder(503, "rate limit service unavailable, retry later")
                                .header("retry-after", "1")
                                .build(),
                        )
                    }
                };
            }
            Some((c, Some(Ok(a)))) => (c, a),
            // Only shadow rules applied: they never reject.
            None => {
                self.count_global(&calls, true, host);
                return self.finish_local(ex, taken, host);
            }
        };
        let admitted = !answer.over;
        self.count(&taken.seen, admitted, host);
        self.count_global(&calls, admitted, host);
        let mut reports = if admitted {
            self.local_reports(&taken.seen, taken.now)
        } else {
            // The local buckets as they stand once their tokens are given back.
            let back: Vec<Seen> = taken.seen.iter().map(|s| self.given_back(*s)).collect();
            self.local_reports(&back, taken.now)
        };
        for (i, (_, status)) in call.rules.iter().zip(&answer.rules) {
            let (Some(rule), Some(s)) = (self.rules.get(*i), status.as_ref()) else {
                continue;
            };
            let (Some(limit), Some(window)) = (
                s.current_limit.as_ref(),
                s.current_limit.as_ref().and_then(|l| unit_secs(l.unit)),
            ) else {
                continue;
            };
            reports.push(Report {
                rule: *i,
                policy_item: format!("\"{}\";q={};w={window}", rule.name, limit.requests_per_unit),
                limit: u64::from(limit.requests_per_unit),
                remaining: u64::from(s.limit_remaining),
                reset: s
                    .duration_until_reset
                    .as_ref()
                    .and_then(ceil_secs)
                    .unwrap_or(0),
            });
        }
        if admitted {
            return self.admit(
                ex,
                reports,
                &answer.request_headers,
                &answer.response_headers,
            );
        }
        self.give_back(&taken, host);
        let over: Vec<(usize, Option<&rls::DescriptorStatus>)> = call
            .rules
            .iter()
            .zip(&answer.rules)
            .filter(|(_, (over, _))| *over)
            .map(|(i, (_, s))| (*i, s.as_ref()))
            .collect();
        // Over as a whole, yet no descriptor over: every rule of the call is to blame.
        let violated: Vec<usize> = if over.is_empty() {
            call.rules.clone()
        } else {
            over.iter().map(|(i, _)| *i).collect()
        };
        let retry_after = over
            .iter()
            .filter_map(|(_, s)| (*s)?.duration_until_reset.as_ref().and_then(ceil_secs))
            .max()
            .unwrap_or(1);
        let headers = self.report_headers(reports);
        self.too_many(
            ex,
            &violated,
            retry_after,
            headers,
            &answer.response_headers,
        )
    }

    /// The counters of the global rules: over → limited (shadow: shadow_limited), under →
    /// allowed when the request was admitted. A failed call counts nothing per rule.
    fn count_global(&self, calls: &[Call], admitted: bool, host: &dyn Host) {
        for call in calls {
            let Some(Ok(a)) = &call.result else { continue };
            for (i, (over, _)) in call.rules.iter().zip(&a.rules) {
                let Some(r) = self.rules.get(*i) else {
                    continue;
                };
                match (*over, r.shadow) {
                    (true, true) => r.m_shadow_limited.inc(host),
                    (true, false) => r.m_limited.inc(host),
                    (false, _) if admitted => r.m_allowed.inc(host),
                    (false, _) => {}
                }
            }
        }
    }

    /// The request goes on: `request_headers` from the service now, the rate-limit headers
    /// and the service's `response_headers` on the response.
    fn admit(
        &self,
        ex: &mut Exchange,
        reports: Vec<Report>,
        request_headers: &[(String, String)],
        response_headers: &[(String, String)],
    ) -> Action {
        let mut ops: Vec<HeaderOp> = self
            .report_headers(reports)
            .into_iter()
            .map(|(k, v)| HeaderOp::Set(k, v))
            .collect();
        ops.extend(header_ops(response_headers));
        ex.ops = ops;
        Action::Continue(header_ops(request_headers))
    }

    /// Admitted by the local rules alone (no global rule applied, or the service failed open).
    pub(super) fn finish_local(&self, ex: &mut Exchange, taken: Taken, host: &dyn Host) -> Action {
        self.count(&taken.seen, true, host);
        let reports = self.local_reports(&taken.seen, taken.now);
        self.admit(ex, reports, &[], &[])
    }

    /// What a request saw of a bucket, once the token it took is given back.
    fn given_back(&self, mut s: Seen) -> Seen {
        if s.had_token {
            let max = self
                .rules
                .get(s.rule)
                .map_or(u32::MAX, |r| r.bucket.max_tokens);
            s.state.tokens = s.state.tokens.saturating_add(1).min(max);
        }
        s
    }

    /// Gives back the tokens the local rules took for a request that is not admitted.
    fn give_back(&self, taken: &Taken, host: &dyn Host) {
        if taken.targets.is_empty() {
            return;
        }
        let mut groups: Vec<super::Group> = Vec::new();
        for (ti, t) in taken.targets.iter().enumerate() {
            match groups.iter_mut().find(|g| g.shard == t.shard) {
                Some(g) => g.members.push(ti),
                None => groups.push(super::Group {
                    shard: t.shard,
                    members: vec![ti],
                }),
            }
        }
        let seen: Vec<Option<Seen>> = taken
            .targets
            .iter()
            .map(|t| taken.seen.iter().find(|s| s.rule == t.rule).copied())
            .collect();
        self.refund(&groups, &taken.targets, &seen, host);
    }
}
