//! The exchange driver as a spec, with a small policy that reads bodies.

use super::*;
use crate::action::Verdict;
use crate::config::ConfigError;
use crate::host::MemHost;
use serde::Deserialize;

#[derive(Deserialize)]
struct Cfg {
    hold: bool,
}

/// Reads the body of POSTs (at most 8 bytes); refuses a body that says "bad" and a request
/// with header `x-deny`; adds `x-seen` to requests, `x-served` to responses, strips
/// `x-secret` from trailers.
struct BodyPolicy {
    hold: bool,
}

impl Policy for BodyPolicy {
    type Config = Cfg;
    type Exchange = Vec<&'static str>;
    const NAME: &'static str = "test";

    fn new(c: Cfg, _: &dyn Host) -> Result<Self, ConfigError> {
        Ok(BodyPolicy { hold: c.hold })
    }

    fn on_request_headers(&self, ex: &mut Self::Exchange, req: &Request, _: &dyn Host) -> Action {
        ex.push("headers");
        if req.headers.contains("x-deny") {
            return Action::Reply(LocalReply::problem(403, "denied"));
        }
        let ops = vec![HeaderOp::Set("x-seen".into(), "1".into())];
        if req.method == "POST" {
            Action::ReadBody {
                max_bytes: 8,
                ops,
                hold_headers: self.hold,
            }
        } else {
            Action::Continue(ops)
        }
    }

    fn on_request_body(
        &self,
        ex: &mut Self::Exchange,
        req: &Request,
        body: Body<'_>,
        _: &dyn Host,
    ) -> Verdict {
        ex.push("body");
        assert_eq!(
            req.headers.get("x-seen"),
            None,
            "the policy sees the request as received"
        );
        match body {
            Body::TooLarge { .. } => Verdict::Reply(LocalReply::problem(413, "too large")),
            Body::Complete(b) if b == b"bad" => {
                Verdict::Reply(LocalReply::problem(400, "bad body"))
            }
            Body::Complete(_) => {
                Verdict::Continue(vec![HeaderOp::Set("x-body".into(), "ok".into())])
            }
        }
    }

    fn on_request_trailers(
        &self,
        ex: &mut Self::Exchange,
        _: &Headers,
        _: &dyn Host,
    ) -> Vec<HeaderOp> {
        ex.push("trailers");
        vec![HeaderOp::Remove("x-secret".into())]
    }

    fn on_response_headers(
        &self,
        ex: &mut Self::Exchange,
        _: &Response,
        _: &dyn Host,
    ) -> Vec<HeaderOp> {
        ex.push("response");
        vec![HeaderOp::Set("x-served".into(), ex.join(","))]
    }
}

fn policy(hold: bool) -> BodyPolicy {
    BodyPolicy { hold }
}

fn ok() -> Response {
    Response {
        status: 200,
        headers: Headers::from_pairs([("content-type", "text/plain")]),
    }
}

#[test]
fn a_request_without_body_continues_with_its_changes() {
    let s = send(
        &policy(true),
        &MemHost::new(),
        &Request::new("GET", "/", &[]),
        None,
        None,
        &ok(),
    );
    assert_eq!(s.status, 200);
    let up = s.upstream.clone().unwrap();
    assert_eq!(up.headers.get("x-seen"), Some("1"));
    assert_eq!(s.header("x-served"), Some("headers,response"));
}

#[test]
fn a_local_reply_ends_the_request_phase_and_still_gets_the_response_phase() {
    let r = Request::new("POST", "/", &[("x-deny", "1")]);
    let s = send(&policy(true), &MemHost::new(), &r, Some(b"x"), None, &ok());
    assert_eq!(s.status, 403);
    assert!(s.upstream.is_none(), "nothing reached the upstream");
    assert_eq!(
        s.header("x-served"),
        Some("headers,response"),
        "no body phase after a reply"
    );
    assert_eq!(s.problem()["detail"], "denied");
}

#[test]
fn a_checked_body_continues_with_changes_from_both_phases() {
    let s = send(
        &policy(true),
        &MemHost::new(),
        &Request::new("POST", "/", &[]),
        Some(b"good"),
        None,
        &ok(),
    );
    assert_eq!(s.status, 200);
    let up = s.upstream.clone().unwrap();
    assert_eq!(up.headers.get("x-seen"), Some("1"));
    assert_eq!(
        up.headers.get("x-body"),
        Some("ok"),
        "held headers take the body verdict's changes"
    );
    assert_eq!(s.header("x-served"), Some("headers,body,response"));
}

#[test]
fn held_headers_never_reach_the_upstream_of_a_refused_body() {
    for (body, status) in [(&b"bad"[..], 400), (&b"123456789"[..], 413)] {
        let s = send(
            &policy(true),
            &MemHost::new(),
            &Request::new("POST", "/", &[]),
            Some(body),
            None,
            &ok(),
        );
        assert_eq!(s.status, status);
        assert!(s.upstream.is_none(), "held: the upstream saw nothing");
        // Without holding, the headers went on before the verdict: the driver says so.
        let s = send(
            &policy(false),
            &MemHost::new(),
            &Request::new("POST", "/", &[]),
            Some(body),
            None,
            &ok(),
        );
        assert_eq!(s.status, status);
        let up = s.upstream.clone().unwrap();
        assert!(!up.body_forwarded);
        assert_eq!(
            up.headers.get("x-body"),
            None,
            "changes after the headers went are lost"
        );
    }
}

#[test]
fn an_empty_stream_gets_the_body_verdict_at_once() {
    let mut x = Exchange::<BodyPolicy>::new();
    let step = x.request_headers(
        &policy(true),
        Request::new("POST", "/", &[]),
        true,
        &MemHost::new(),
    );
    assert_eq!(
        step,
        Step::Continue(vec![
            HeaderOp::Set("x-seen".into(), "1".into()),
            HeaderOp::Set("x-body".into(), "ok".into())
        ])
    );
    assert_eq!(x.ex, ["headers", "body"]);
}

#[test]
fn the_body_is_buffered_until_complete_and_read_once() {
    let p = policy(true);
    let host = MemHost::new();
    let mut x = Exchange::<BodyPolicy>::new();
    assert!(matches!(
        x.request_headers(&p, Request::new("POST", "/", &[]), false, &host),
        Step::Pause(_)
    ));
    let mut reads = 0;
    let mut read = |n: usize| {
        reads += 1;
        b"good".iter().take(n).copied().collect()
    };
    assert_eq!(
        x.request_body(&p, 2, false, &mut read, &host),
        Step::Pause(vec![])
    );
    assert_eq!(
        x.request_body(&p, 4, true, &mut read, &host),
        Step::Continue(vec![HeaderOp::Set("x-body".into(), "ok".into())])
    );
    assert_eq!(reads, 1);
    // A body larger than the limit is refused as soon as it passes the limit.
    let mut x = Exchange::<BodyPolicy>::new();
    x.request_headers(&p, Request::new("POST", "/", &[]), false, &host);
    assert!(
        matches!(x.request_body(&p, 9, false, &mut |_| Vec::new(), &host), Step::Reply(r) if r.status == 413)
    );
    assert!(x.replied());
    assert_eq!(
        x.request_body(&p, 12, true, &mut |_| Vec::new(), &host),
        Step::Pause(vec![])
    );
}

#[test]
fn trailers_end_the_body_and_are_cleaned() {
    let t = Headers::from_pairs([("x-secret", "s"), ("grpc-status", "0")]);
    let s = send(
        &policy(true),
        &MemHost::new(),
        &Request::new("POST", "/", &[]),
        Some(b"good"),
        Some(&t),
        &ok(),
    );
    assert_eq!(s.status, 200);
    let up = s.upstream.clone().unwrap();
    assert_eq!(up.trailers.names().collect::<Vec<_>>(), ["grpc-status"]);
    assert_eq!(s.header("x-served"), Some("headers,trailers,body,response"));
    let s = send(
        &policy(true),
        &MemHost::new(),
        &Request::new("POST", "/", &[]),
        Some(b"bad"),
        Some(&t),
        &ok(),
    );
    assert_eq!(s.status, 400);
    assert!(s.upstream.is_none());
}
