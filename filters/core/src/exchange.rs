//! The exchange driver: one request's way through a policy, headers → optional body →
//! response, as plain Rust. The proxy-wasm adaptor only turns each [`Step`] into host calls;
//! native tests drive the same machine through [`send`], so what the tests prove is what
//! runs inside Envoy.

use crate::action::{Action, Body, LocalReply, Verdict};
use crate::host::Host;
use crate::http::{HeaderOp, Headers, Request, Response};
use crate::policy::Policy;

/// What the host must do after a request callback.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Apply these changes to the request headers, then let the request go on.
    Continue(Vec<HeaderOp>),
    /// Apply these changes to the request headers, then stop iteration: the body is being
    /// buffered (and, when the headers are held, the headers wait for it too).
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
    /// A local reply was sent.
    Replied,
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
        match policy.on_request_headers(&mut self.ex, &req, host) {
            Action::Continue(ops) => Step::Continue(ops),
            Action::Reply(r) => self.reply(r),
            Action::ReadBody {
                max_bytes,
                ops,
                hold_headers,
            } => {
                if end_of_stream {
                    let next =
                        policy.on_request_body(&mut self.ex, &req, Body::Complete(&[]), host);
                    return match self.after_body(next) {
                        Step::Continue(more) => Step::Continue([ops, more].concat()),
                        other => other,
                    };
                }
                self.phase = Phase::Body {
                    req,
                    limit: max_bytes,
                };
                if hold_headers {
                    Step::Pause(ops)
                } else {
                    Step::Continue(ops)
                }
            }
        }
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
        let (req, limit) = match &self.phase {
            Phase::Replied => return Step::Pause(Vec::new()),
            Phase::Open => return Step::Continue(Vec::new()),
            Phase::Body { req, limit } => (req, *limit),
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
            other => {
                self.phase = other;
                Step::Continue(Vec::new())
            }
        };
        (ops, step)
    }

    /// Response headers are about to go downstream (upstream responses and local replies).
    pub fn response_headers(
        &mut self,
        policy: &P,
        resp: &Response,
        host: &dyn Host,
    ) -> Vec<HeaderOp> {
        policy.on_response_headers(&mut self.ex, resp, host)
    }

    /// Response trailers are about to go downstream.
    pub fn response_trailers(
        &mut self,
        policy: &P,
        trailers: &Headers,
        host: &dyn Host,
    ) -> Vec<HeaderOp> {
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
/// tests and tools.
pub fn send<P: Policy>(
    policy: &P,
    host: &dyn Host,
    req: &Request,
    body: Option<&[u8]>,
    trailers: Option<&Headers>,
    upstream: &Response,
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
