//! The exchange driver: one request's way through a policy, headers → optional callout
//! answers → optional body → response, as plain Rust. The proxy-wasm adaptor only turns each
//! [`Step`] into host calls; native tests drive the same machine through [`send`] and
//! [`send_with`], so what the tests prove is what runs inside Envoy.

use crate::action::{Action, Body, LocalReply, Verdict};
use crate::host::{GrpcResponse, Host};
use crate::http::{HeaderOp, Headers, Request, Response};
use crate::policy::Policy;

/// What the host must do after a request callback.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Apply these changes to the request headers, then let the request go on.
    Continue(Vec<HeaderOp>),
    /// Apply these changes to the request headers, then stop iteration: the body is being
    /// buffered (and, when the headers are held, the headers wait for it too), or the request
    /// waits for a callout's answer (then headers, body and trailers all wait).
    Pause(Vec<HeaderOp>),
    /// Answer locally; nothing more of the request goes upstream.
    Reply(LocalReply),
}

/// Where the exchange stands.
#[derive(Debug, Default)]
enum Phase {
    /// Request headers not seen yet, or seen and let through.
    #[default]
    Open,
    /// Buffering the body for the policy (at most `limit` bytes).
    Body { req: Request, limit: usize },
    /// Waiting for the answer to a callout made in the header phase; what arrived of the
    /// request meanwhile is held.
    Waiting { req: Request, arrived: Arrived },
    /// A local reply was sent.
    Replied,
}

/// What arrived of a request while it waited for a callout (all of it held).
#[derive(Debug, Default, Clone, Copy)]
struct Arrived {
    /// Bytes of body buffered so far.
    buffered: usize,
    /// The request is complete (no body, the last body piece, or trailers).
    end: bool,
    /// Trailers arrived (the body may be larger than `buffered` says).
    trailers: bool,
}

/// One request's state: the policy's own per-request state and the driver's phase.
pub struct Exchange<P: Policy> {
    pub ex: P::Exchange,
    phase: Phase,
}

impl<P: Policy> Default for Exchange<P> {
    fn default() -> Self {
        Exchange {
            ex: P::Exchange::default(),
            phase: Phase::Open,
        }
    }
}

impl<P: Policy> Exchange<P> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether a local reply ended the request phase.
    pub fn replied(&self) -> bool {
        matches!(self.phase, Phase::Replied)
    }

    /// Whether the body is being buffered for the policy.
    pub fn reading_body(&self) -> bool {
        matches!(self.phase, Phase::Body { .. })
    }

    /// Whether the request waits for a callout's answer.
    pub fn waiting(&self) -> bool {
        matches!(self.phase, Phase::Waiting { .. })
    }

    fn reply(&mut self, reply: LocalReply) -> Step {
        self.phase = Phase::Replied;
        Step::Reply(reply)
    }

    /// The verdict on the body becomes a step.
    fn after_body(&mut self, verdict: Verdict) -> Step {
        match verdict {
            Verdict::Continue(ops) => {
                self.phase = Phase::Open;
                Step::Continue(ops)
            }
            Verdict::Reply(r) => self.reply(r),
        }
    }

    /// Request headers arrived; `end_of_stream` when no body follows.
    pub fn request_headers(
        &mut self,
        policy: &P,
        req: Request,
        end_of_stream: bool,
        host: &dyn Host,
    ) -> Step {
        let action = policy.on_request_headers(&mut self.ex, &req, host);
        let arrived = Arrived {
            end: end_of_stream,
            ..Arrived::default()
        };
        self.after_headers(policy, action, req, arrived, &mut |_| Vec::new(), host)
    }

    /// What the header phase (or a callout's answer, which continues it) decided becomes a
    /// step. `arrived`: what of the request is already there (held).
    fn after_headers(
        &mut self,
        policy: &P,
        action: Action,
        req: Request,
        arrived: Arrived,
        read: &mut dyn FnMut(usize) -> Vec<u8>,
        host: &dyn Host,
    ) -> Step {
        match action {
            Action::Continue(ops) => {
                self.phase = Phase::Open;
                Step::Continue(ops)
            }
            Action::Reply(r) => self.reply(r),
            Action::Wait(ops) => {
                self.phase = Phase::Waiting { req, arrived };
                Step::Pause(ops)
            }
            Action::ReadBody {
                max_bytes,
                ops,
                hold_headers,
            } => {
                if arrived.end || arrived.buffered > max_bytes {
                    // The body is all there already (or too large): the verdict now.
                    let body = if arrived.buffered > max_bytes {
                        None
                    } else if arrived.trailers {
                        Some(read(max_bytes.saturating_add(1)))
                    } else if arrived.buffered == 0 {
                        Some(Vec::new())
                    } else {
                        Some(read(arrived.buffered))
                    };
                    let view = match &body {
                        Some(b) if b.len() <= max_bytes => Body::Complete(b),
                        _ => Body::TooLarge { limit: max_bytes },
                    };
                    let next = policy.on_request_body(&mut self.ex, &req, view, host);
                    return match self.after_body(next) {
                        Step::Continue(more) => Step::Continue([ops, more].concat()),
                        other => other,
                    };
                }
                self.phase = Phase::Body {
                    req,
                    limit: max_bytes,
                };
                // Body bytes held while waiting stay held: letting the headers go now would
                // send them on before the verdict.
                if hold_headers || arrived.buffered > 0 {
                    Step::Pause(ops)
                } else {
                    Step::Continue(ops)
                }
            }
        }
    }

    /// A callout made by the policy while the request waits has answered (`token`, `response`).
    /// `read` returns up to that many bytes of the body held meanwhile. Answers that no one
    /// waits for (the request was answered, or never waited) change nothing.
    pub fn callout_response(
        &mut self,
        policy: &P,
        token: u32,
        response: GrpcResponse,
        read: &mut dyn FnMut(usize) -> Vec<u8>,
        host: &dyn Host,
    ) -> Step {
        let (req, arrived) = match std::mem::take(&mut self.phase) {
            Phase::Waiting { req, arrived } => (req, arrived),
            other => {
                self.phase = other;
                return Step::Pause(Vec::new());
            }
        };
        let action = policy.on_request_callout(&mut self.ex, &req, token, response, host);
        self.after_headers(policy, action, req, arrived, read, host)
    }

    /// A piece of the body arrived: `buffered` bytes are held so far. `read` returns up to
    /// that many bytes of the buffered body (called once, when the body is complete).
    pub fn request_body(
        &mut self,
        policy: &P,
        buffered: usize,
        end_of_stream: bool,
        read: &mut dyn FnMut(usize) -> Vec<u8>,
        host: &dyn Host,
    ) -> Step {
        let (req, limit) = match &mut self.phase {
            Phase::Replied => return Step::Pause(Vec::new()),
            Phase::Open => return Step::Continue(Vec::new()),
            Phase::Waiting { arrived, .. } => {
                arrived.buffered = buffered;
                arrived.end |= end_of_stream;
                return Step::Pause(Vec::new());
            }
            Phase::Body { req, limit } => (&*req, *limit),
        };
        if buffered > limit {
            let action = policy.on_request_body(&mut self.ex, req, Body::TooLarge { limit }, host);
            return self.after_body(action);
        }
        if !end_of_stream {
            return Step::Pause(Vec::new());
        }
        let body = read(buffered);
        let action = policy.on_request_body(&mut self.ex, req, Body::Complete(&body), host);
        self.after_body(action)
    }

    /// Request trailers arrived: the changes to the trailers, and the step (trailers end the
    /// stream, so a body still being buffered is complete now).
    pub fn request_trailers(
        &mut self,
        policy: &P,
        trailers: &Headers,
        read: &mut dyn FnMut(usize) -> Vec<u8>,
        host: &dyn Host,
    ) -> (Vec<HeaderOp>, Step) {
        if self.replied() {
            return (Vec::new(), Step::Pause(Vec::new()));
        }
        let ops = policy.on_request_trailers(&mut self.ex, trailers, host);
        let step = match std::mem::take(&mut self.phase) {
            Phase::Body { req, limit } => {
                let body = read(limit.saturating_add(1));
                let view = if body.len() > limit {
                    Body::TooLarge { limit }
                } else {
                    Body::Complete(&body)
                };
                let action = policy.on_request_body(&mut self.ex, &req, view, host);
                self.after_body(action)
            }
            Phase::Waiting { req, mut arrived } => {
                arrived.end = true;
                arrived.trailers = true;
                self.phase = Phase::Waiting { req, arrived };
                Step::Pause(Vec::new())
            }
            other => {
                self.phase = other;
                Step::Continue(Vec::new())
            }
        };
        (ops, step)
    }

    /// Response headers are about to go downstream (upstream responses and local replies).
    /// A policy that says it does not use responses is not asked (nor, in Envoy, is the
    /// response read), so tests show what it would miss.
    pub fn response_headers(
        &mut self,
        policy: &P,
        resp: &Response,
        host: &dyn Host,
    ) -> Vec<HeaderOp> {
        if !policy.uses_response() {
            return Vec::new();
        }
        policy.on_response_headers(&mut self.ex, resp, host)
    }

    /// Response trailers are about to go downstream.
    pub fn response_trailers(
        &mut self,
        policy: &P,
        trailers: &Headers,
        host: &dyn Host,
    ) -> Vec<HeaderOp> {
        if !policy.uses_response() {
            return Vec::new();
        }
        policy.on_response_trailers(&mut self.ex, trailers, host)
    }
}

/// What came of one request sent through a policy with [`send`].
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    /// The status the client got: the local reply's, or the upstream's.
    pub status: u16,
    /// The response headers the client got (after the response phase).
    pub headers: Headers,
    /// The body of a local reply (empty when the upstream answered).
    pub body: Vec<u8>,
    /// What reached the upstream: the request with its header changes applied, and whether
    /// its headers went before the body's verdict. `None` when the policy answered locally
    /// before anything was forwarded.
    pub upstream: Option<Upstream>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Upstream {
    pub headers: Headers,
    pub trailers: Headers,
    /// The body reached the upstream too (false when a body verdict refused it after the
    /// headers had been let through).
    pub body_forwarded: bool,
}

impl Sent {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    /// The problem+json body of a local reply, parsed.
    pub fn problem(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// Carries out one step the way Envoy does: header changes made after the headers went
/// upstream are lost.
fn follow(step: Step, up: &mut Headers, sent: &mut bool, reply: &mut Option<LocalReply>) {
    match step {
        Step::Continue(ops) => {
            if !*sent {
                up.apply(&ops);
            }
            *sent = true;
        }
        Step::Pause(ops) => {
            if !*sent {
                up.apply(&ops);
            }
        }
        Step::Reply(r) => *reply = Some(r),
    }
}

/// One exchange, the way Envoy runs it: request headers, the body (when given, or empty when
/// `req.has_body` says one follows) in one piece, request trailers (when given), then either the
/// local reply or `upstream` (the upstream's response) through the response phase. For native
/// tests and tools. A request that waits for a callout gets no answer here and never completes
/// (status 0, nothing upstream): use [`send_with`].
pub fn send<P: Policy>(
    policy: &P,
    host: &dyn Host,
    req: &Request,
    body: Option<&[u8]>,
    trailers: Option<&Headers>,
    upstream: &Response,
) -> Sent {
    send_with(policy, host, req, body, trailers, upstream, &mut || None)
}

/// [`send`], with the callouts the request waits for answered by `answer` (token and answer,
/// e.g. [`crate::MemHost::next_grpc_answer`]) once all of the request has arrived (held while
/// it waits, as Envoy holds it). A request still waiting when `answer` has nothing more never
/// completes: status 0, nothing upstream.
pub fn send_with<P: Policy>(
    policy: &P,
    host: &dyn Host,
    req: &Request,
    body: Option<&[u8]>,
    trailers: Option<&Headers>,
    upstream: &Response,
    answer: &mut dyn FnMut() -> Option<(u32, GrpcResponse)>,
) -> Sent {
    let mut x = Exchange::<P>::new();
    let has_body = req.has_body || body.is_some() || trailers.is_some();
    let end = !has_body;
    let req = Request {
        has_body,
        ..req.clone()
    };
    let mut up = req.headers.clone();
    let mut sent = false;
    let mut reply = None;
    let step = x.request_headers(policy, req, end, host);
    follow(step, &mut up, &mut sent, &mut reply);
    let bytes = body.unwrap_or_default();
    let mut read = |max: usize| bytes.iter().take(max).copied().collect::<Vec<u8>>();
    // A request that says it has a body but sends none (an empty body, a zero-length stream):
    // the body phase sees it empty.
    if has_body && (body.is_some() || trailers.is_none()) && reply.is_none() {
        let step = x.request_body(policy, bytes.len(), trailers.is_none(), &mut read, host);
        follow(step, &mut up, &mut sent, &mut reply);
    }
    let mut up_trailers = trailers.cloned().unwrap_or_default();
    if let (Some(t), None) = (trailers, &reply) {
        let (ops, step) = x.request_trailers(policy, t, &mut read, host);
        up_trailers.apply(&ops);
        follow(step, &mut up, &mut sent, &mut reply);
    }
    while x.waiting() {
        let Some((token, response)) = answer() else {
            return Sent {
                status: 0,
                headers: Headers::new(),
                body: Vec::new(),
                upstream: None,
            };
        };
        let step = x.callout_response(policy, token, response, &mut read, host);
        follow(step, &mut up, &mut sent, &mut reply);
    }
    let (status, mut headers, body, upstream) = match reply {
        Some(r) => (
            r.status,
            Headers(r.headers),
            r.body,
            sent.then(|| Upstream {
                headers: up,
                trailers: Headers::new(),
                body_forwarded: false,
            }),
        ),
        None => (
            upstream.status,
            upstream.headers.clone(),
            Vec::new(),
            Some(Upstream {
                headers: up,
                trailers: up_trailers,
                body_forwarded: true,
            }),
        ),
    };
    let seen = Response {
        status,
        headers: headers.clone(),
    };
    let ops = x.response_headers(policy, &seen, host);
    headers.apply(&ops);
    Sent {
        status,
        headers,
        body,
        upstream,
    }
}

#[cfg(test)]
#[path = "exchange_tests.rs"]
mod tests;
