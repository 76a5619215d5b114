//! Two policies run as one, in Envoy's filter-chain order: a request goes through `first`,
//! then (with `first`'s header changes applied) through `second`; a response goes through
//! `second`, then `first`. Chains nest (`Chain<A, Chain<B, C>>`), so the suite module runs
//! every policy in one VM and one pass over the headers the adaptor read once.
//!
//! A local reply ends the request phase (later policies never see the request); the response
//! phase still runs through every policy, so a policy placed first on the request path (the
//! `headers` cleanup) sees every reply last. A policy that asks for the body holds the rest of
//! the chain until the body is complete: the later policies then run their header phase, and
//! their body phase on the same body. A policy that waits for a callout ([`Action::Wait`])
//! holds the rest of the chain the same way: the answer goes to it, and once it lets the
//! request go on the later policies run their header phase (and may read the body or wait on
//! their own callouts). A policy that waits must come before any policy that reads the body:
//! a header phase run after a body verdict cannot wait any more (the chain then answers 500).

use crate::action::{Action, Body, LocalReply, Verdict};
use crate::config::ConfigError;
use crate::host::{CalloutResponse, GrpcResponse, Host};
use crate::http::{HeaderOp, Headers, Request, Response};
use crate::policy::Policy;
use std::borrow::Cow;
use std::time::Duration;

/// `first` and `second`, each optional (an absent section of the suite's configuration).
pub struct Chain<A, B> {
    pub first: Option<A>,
    pub second: Option<B>,
}

/// Which policy is waiting for the body or for a callout, and the request as it sees it.
#[derive(Default)]
enum Waiting {
    #[default]
    None,
    First(Request),
    Second(Request),
    FirstCallout(Request),
    SecondCallout(Request),
}

/// Per-request state of a chain: each policy's own, and who waits for the body.
pub struct ChainExchange<A: Policy, B: Policy> {
    pub first: A::Exchange,
    pub second: B::Exchange,
    waiting: Waiting,
}

impl<A: Policy, B: Policy> Default for ChainExchange<A, B> {
    fn default() -> Self {
        ChainExchange {
            first: A::Exchange::default(),
            second: B::Exchange::default(),
            waiting: Waiting::None,
        }
    }
}

/// The body as a policy that asked for at most `max` bytes sees it.
fn within(body: Body<'_>, max: usize) -> Body<'_> {
    match body {
        Body::Complete(b) if b.len() > max => Body::TooLarge { limit: max },
        Body::TooLarge { limit } => Body::TooLarge {
            limit: limit.min(max),
        },
        other => other,
    }
}

fn apply_to(req: &mut Cow<'_, Request>, ops: &[HeaderOp]) {
    if !ops.is_empty() {
        req.to_mut().headers.apply(ops);
    }
}

fn runs<P: Policy>(p: &Option<P>) -> Option<&P> {
    p.as_ref().filter(|p| p.uses_request())
}

/// `p`, when present and it has a response phase.
fn answers<P: Policy>(p: &Option<P>) -> Option<&P> {
    p.as_ref().filter(|p| p.uses_response())
}

impl<A: Policy, B: Policy> Chain<A, B> {
    /// `second`'s header phase, after `first` let the request go on with `ops`.
    fn second_headers(
        &self,
        ex: &mut ChainExchange<A, B>,
        req: Cow<'_, Request>,
        mut ops: Vec<HeaderOp>,
        host: &dyn Host,
    ) -> Action {
        let Some(b) = runs(&self.second) else {
            return Action::Continue(ops);
        };
        match b.on_request_headers(&mut ex.second, &req, host) {
            Action::Continue(more) => {
                ops.extend(more);
                Action::Continue(ops)
            }
            Action::Reply(r) => Action::Reply(r),
            Action::ReadBody {
                max_bytes,
                ops: more,
                hold_headers,
            } => {
                let mut req = req;
                apply_to(&mut req, &more);
                ops.extend(more);
                ex.waiting = Waiting::Second(req.into_owned());
                Action::ReadBody {
                    max_bytes,
                    ops,
                    hold_headers,
                }
            }
            Action::Wait(more) => {
                let mut req = req;
                apply_to(&mut req, &more);
                ops.extend(more);
                ex.waiting = Waiting::SecondCallout(req.into_owned());
                Action::Wait(ops)
            }
        }
    }

    /// What `first` answered (in its header phase or to a callout) for `req`: the rest of the
    /// chain runs when it lets the request go on.
    fn after_first(
        &self,
        ex: &mut ChainExchange<A, B>,
        req: Cow<'_, Request>,
        action: Action,
        host: &dyn Host,
    ) -> Action {
        let mut cur = req;
        match action {
            Action::Continue(ops) => {
                apply_to(&mut cur, &ops);
                self.second_headers(ex, cur, ops, host)
            }
            Action::Reply(r) => Action::Reply(r),
            Action::ReadBody {
                max_bytes,
                ops,
                hold_headers,
            } => {
                apply_to(&mut cur, &ops);
                ex.waiting = Waiting::First(cur.into_owned());
                Action::ReadBody {
                    max_bytes,
                    ops,
                    hold_headers,
                }
            }
            Action::Wait(ops) => {
                apply_to(&mut cur, &ops);
                ex.waiting = Waiting::FirstCallout(cur.into_owned());
                Action::Wait(ops)
            }
        }
    }
}

impl<A: Policy, B: Policy> Policy for Chain<A, B> {
    type Config = (Option<A::Config>, Option<B::Config>);
    type Exchange = ChainExchange<A, B>;
    const NAME: &'static str = "chain";

    fn new(config: Self::Config, host: &dyn Host) -> Result<Self, ConfigError> {
        // Errors name the policy's section (`jwt.providers…`); a nested chain adds nothing.
        fn section<P: Policy>(e: ConfigError) -> ConfigError {
            if P::NAME == "chain" {
                e
            } else {
                e.within(P::NAME)
            }
        }
        let first = match config.0 {
            Some(c) => Some(A::new(c, host).map_err(section::<A>)?),
            None => None,
        };
        let second = match config.1 {
            Some(c) => Some(B::new(c, host).map_err(section::<B>)?),
            None => None,
        };
        Ok(Chain { first, second })
    }

    fn uses_request(&self) -> bool {
        runs(&self.first).is_some() || runs(&self.second).is_some()
    }

    fn uses_client_ip(&self) -> bool {
        runs(&self.first).is_some_and(|p| p.uses_client_ip())
            || runs(&self.second).is_some_and(|p| p.uses_client_ip())
    }

    fn uses_response(&self) -> bool {
        answers(&self.first).is_some() || answers(&self.second).is_some()
    }

    fn on_request_headers(
        &self,
        ex: &mut Self::Exchange,
        req: &Request,
        host: &dyn Host,
    ) -> Action {
        match runs(&self.first) {
            Some(a) => {
                let action = a.on_request_headers(&mut ex.first, req, host);
                self.after_first(ex, Cow::Borrowed(req), action, host)
            }
            None => self.second_headers(ex, Cow::Borrowed(req), Vec::new(), host),
        }
    }

    fn on_request_callout(
        &self,
        ex: &mut Self::Exchange,
        _req: &Request,
        token: u32,
        response: GrpcResponse,
        host: &dyn Host,
    ) -> Action {
        match std::mem::take(&mut ex.waiting) {
            Waiting::FirstCallout(req) => match &self.first {
                Some(a) => {
                    let action = a.on_request_callout(&mut ex.first, &req, token, response, host);
                    self.after_first(ex, Cow::Owned(req), action, host)
                }
                None => Action::proceed(),
            },
            Waiting::SecondCallout(req) => {
                let Some(b) = &self.second else {
                    return Action::proceed();
                };
                match b.on_request_callout(&mut ex.second, &req, token, response, host) {
                    Action::Wait(ops) => {
                        let mut cur = Cow::Owned(req);
                        apply_to(&mut cur, &ops);
                        ex.waiting = Waiting::SecondCallout(cur.into_owned());
                        Action::Wait(ops)
                    }
                    Action::ReadBody {
                        max_bytes,
                        ops,
                        hold_headers,
                    } => {
                        let mut cur = Cow::Owned(req);
                        apply_to(&mut cur, &ops);
                        ex.waiting = Waiting::Second(cur.into_owned());
                        Action::ReadBody {
                            max_bytes,
                            ops,
                            hold_headers,
                        }
                    }
                    other => other,
                }
            }
            other => {
                // Nobody here waits for a callout: the answer changes nothing.
                ex.waiting = other;
                Action::proceed()
            }
        }
    }

    fn on_request_body(
        &self,
        ex: &mut Self::Exchange,
        _req: &Request,
        body: Body<'_>,
        host: &dyn Host,
    ) -> Verdict {
        match std::mem::take(&mut ex.waiting) {
            Waiting::None | Waiting::FirstCallout(_) | Waiting::SecondCallout(_) => {
                Verdict::proceed()
            }
            Waiting::Second(req) => match &self.second {
                Some(b) => b.on_request_body(&mut ex.second, &req, body, host),
                None => Verdict::proceed(),
            },
            Waiting::First(req) => {
                let Some(a) = &self.first else {
                    return Verdict::proceed();
                };
                let ops = match a.on_request_body(&mut ex.first, &req, body, host) {
                    Verdict::Reply(r) => return Verdict::Reply(r),
                    Verdict::Continue(ops) => ops,
                };
                let mut cur = Cow::Owned(req);
                apply_to(&mut cur, &ops);
                // `second` runs its header phase now, and its body phase on the same body.
                match self.second_headers(ex, cur, ops, host) {
                    Action::Continue(ops) => Verdict::Continue(ops),
                    Action::Reply(r) => Verdict::Reply(r),
                    Action::Wait(_) => {
                        // A body verdict cannot wait: fail closed (see the module documentation).
                        ex.waiting = Waiting::None;
                        log::error!(
                            "meshwall.{}: a policy after one that read the body waits for a callout",
                            B::NAME
                        );
                        Verdict::Reply(LocalReply::problem(500, "filter chain misconfigured"))
                    }
                    Action::ReadBody { max_bytes, ops, .. } => {
                        let (Waiting::Second(req), Some(b)) =
                            (std::mem::take(&mut ex.waiting), &self.second)
                        else {
                            return Verdict::Continue(ops);
                        };
                        match b.on_request_body(&mut ex.second, &req, within(body, max_bytes), host)
                        {
                            Verdict::Reply(r) => Verdict::Reply(r),
                            Verdict::Continue(more) => Verdict::Continue([ops, more].concat()),
                        }
                    }
                }
            }
        }
    }

    fn on_request_trailers(
        &self,
        ex: &mut Self::Exchange,
        trailers: &Headers,
        host: &dyn Host,
    ) -> Vec<HeaderOp> {
        let mut ops = match &self.first {
            Some(a) => a.on_request_trailers(&mut ex.first, trailers, host),
            None => Vec::new(),
        };
        if let Some(b) = &self.second {
            let more = if ops.is_empty() {
                b.on_request_trailers(&mut ex.second, trailers, host)
            } else {
                let mut seen = trailers.clone();
                seen.apply(&ops);
                b.on_request_trailers(&mut ex.second, &seen, host)
            };
            ops.extend(more);
        }
        ops
    }

    fn on_response_headers(
        &self,
        ex: &mut Self::Exchange,
        resp: &Response,
        host: &dyn Host,
    ) -> Vec<HeaderOp> {
        let mut ops = match answers(&self.second) {
            Some(b) => b.on_response_headers(&mut ex.second, resp, host),
            None => Vec::new(),
        };
        if let Some(a) = answers(&self.first) {
            let more = if ops.is_empty() {
                a.on_response_headers(&mut ex.first, resp, host)
            } else {
                let mut seen = resp.clone();
                seen.headers.apply(&ops);
                a.on_response_headers(&mut ex.first, &seen, host)
            };
            ops.extend(more);
        }
        ops
    }

    fn on_response_trailers(
        &self,
        ex: &mut Self::Exchange,
        trailers: &Headers,
        host: &dyn Host,
    ) -> Vec<HeaderOp> {
        let mut ops = match answers(&self.second) {
            Some(b) => b.on_response_trailers(&mut ex.second, trailers, host),
            None => Vec::new(),
        };
        if let Some(a) = answers(&self.first) {
            let more = if ops.is_empty() {
                a.on_response_trailers(&mut ex.first, trailers, host)
            } else {
                let mut seen = trailers.clone();
                seen.apply(&ops);
                a.on_response_trailers(&mut ex.first, &seen, host)
            };
            ops.extend(more);
        }
        ops
    }

    fn tick_period(&self) -> Option<Duration> {
        let a = self.first.as_ref().and_then(Policy::tick_period);
        let b = self.second.as_ref().and_then(Policy::tick_period);
        match (a, b) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        }
    }

    fn on_tick(&self, host: &dyn Host) {
        if let Some(a) = &self.first {
            a.on_tick(host);
        }
        if let Some(b) = &self.second {
            b.on_tick(host);
        }
    }

    /// The larger of the two limits: each policy checks `body_size` against its own.
    fn max_callout_body(&self) -> usize {
        let a = self.first.as_ref().map_or(0, Policy::max_callout_body);
        let b = self.second.as_ref().map_or(0, Policy::max_callout_body);
        a.max(b)
    }

    /// Both policies see the answer; each ignores tokens it did not issue.
    fn on_http_call_response(&self, token: u32, response: CalloutResponse, host: &dyn Host) {
        match (&self.first, &self.second) {
            (Some(a), Some(b)) => {
                a.on_http_call_response(token, response.clone(), host);
                b.on_http_call_response(token, response, host);
            }
            (Some(a), None) => a.on_http_call_response(token, response, host),
            (None, Some(b)) => b.on_http_call_response(token, response, host),
            (None, None) => {}
        }
    }
}

#[cfg(test)]
#[path = "chain_tests.rs"]
mod tests;
