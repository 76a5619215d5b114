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

// ------------------------------------------------------------------ waiting for callouts

/// Makes `x-calls` gRPC calls (default 1) whose message is the path, and waits; an answer
/// `deny` refuses (429), a failed call refuses (503); once every call is in, it reads the body
/// (`read_body`: `Some(hold_headers)`) or lets the request go with `x-answer`.
struct WaitPolicy {
    read_body: Option<bool>,
}

#[derive(Default)]
struct WaitEx {
    pending: Vec<u32>,
    log: Vec<String>,
}

impl Policy for WaitPolicy {
    type Config = Cfg;
    type Exchange = WaitEx;
    const NAME: &'static str = "wait";

    fn new(c: Cfg, _: &dyn Host) -> Result<Self, ConfigError> {
        Ok(WaitPolicy {
            read_body: Some(c.hold),
        })
    }

    fn on_request_headers(&self, ex: &mut WaitEx, req: &Request, host: &dyn Host) -> Action {
        let n: usize = req.headers.get("x-calls").unwrap_or("1").parse().unwrap();
        for _ in 0..n {
            let t = std::time::Duration::from_millis(20);
            match host.grpc_call("rls".into(), "svc", "M", &[], req.path.as_bytes(), t) {
                Ok(token) => ex.pending.push(token),
                Err(_) => return Action::Reply(LocalReply::problem(503, "no call")),
            }
        }
        ex.log.push("headers".into());
        Action::Wait(vec![HeaderOp::Set("x-waited".into(), "1".into())])
    }

    fn on_request_callout(
        &self,
        ex: &mut WaitEx,
        req: &Request,
        token: u32,
        r: GrpcResponse,
        _: &dyn Host,
    ) -> Action {
        assert_eq!(req.headers.get("x-waited"), None, "the request as received");
        ex.pending.retain(|t| *t != token);
        ex.log.push(format!("callout {token}"));
        if r.status_code != 0 {
            return Action::Reply(LocalReply::problem(503, "call failed"));
        }
        if r.message == b"/deny" {
            return Action::Reply(LocalReply::problem(429, "denied"));
        }
        if !ex.pending.is_empty() {
            return Action::Wait(Vec::new());
        }
        let ops = vec![HeaderOp::Set(
            "x-answer".into(),
            String::from_utf8_lossy(&r.message).into_owned(),
        )];
        match self.read_body {
            Some(hold_headers) => Action::ReadBody {
                max_bytes: 8,
                ops,
                hold_headers,
            },
            None => Action::Continue(ops),
        }
    }

    fn on_request_body(
        &self,
        ex: &mut WaitEx,
        _: &Request,
        body: Body<'_>,
        _: &dyn Host,
    ) -> Verdict {
        ex.log.push("body".into());
        match body {
            Body::TooLarge { .. } => Verdict::Reply(LocalReply::problem(413, "too large")),
            Body::Complete(b) if b == b"bad" => Verdict::Reply(LocalReply::problem(400, "bad")),
            Body::Complete(b) => Verdict::Continue(vec![HeaderOp::Set(
                "x-body".into(),
                String::from_utf8_lossy(b).into_owned(),
            )]),
        }
    }
}

/// A host that answers each call with its own message (the request's path).
fn echoing() -> MemHost {
    let h = MemHost::new();
    h.answer_grpc_with(|c| GrpcResponse::ok(c.message.clone()));
    h
}

fn waiter(read_body: Option<bool>) -> WaitPolicy {
    WaitPolicy { read_body }
}

#[test]
fn a_waiting_request_goes_on_with_the_answer() {
    let h = echoing();
    let r = Request::new("GET", "/a", &[]);
    let s = send_with(&waiter(None), &h, &r, None, None, &ok(), &mut || {
        h.next_grpc_answer()
    });
    assert_eq!(s.status, 200);
    let up = s.upstream.unwrap();
    assert_eq!(up.headers.get("x-waited"), Some("1"), "changes of the wait");
    assert_eq!(up.headers.get("x-answer"), Some("/a"), "and of the answer");
    // Without answers the request never completes, and nothing went upstream.
    let s = send(&waiter(None), &h, &r, None, None, &ok());
    assert_eq!((s.status, s.upstream), (0, None));
}

#[test]
fn answers_can_refuse_and_nothing_reaches_the_upstream() {
    let h = echoing();
    for (path, calls, status) in [("/deny", "1", 429), ("/deny", "3", 429)] {
        let r = Request::new("POST", path, &[("x-calls", calls)]);
        let s = send_with(
            &waiter(None),
            &h,
            &r,
            Some(b"body"),
            None,
            &ok(),
            &mut || h.next_grpc_answer(),
        );
        assert_eq!(s.status, status);
        assert!(s.upstream.is_none(), "held headers never went");
    }
    // A failed call is the policy's to judge (here: 503); a call that cannot start too.
    let failing = MemHost::new();
    failing.answer_grpc_with(|_| GrpcResponse::failed(crate::host::grpc_status::UNAVAILABLE));
    let r = Request::new("GET", "/a", &[]);
    let s = send_with(&waiter(None), &failing, &r, None, None, &ok(), &mut || {
        failing.next_grpc_answer()
    });
    assert_eq!(s.status, 503);
    failing.fail_next_grpc_calls(1);
    assert_eq!(
        send(&waiter(None), &failing, &r, None, None, &ok()).status,
        503
    );
}

#[test]
fn several_calls_are_waited_for_in_any_order() {
    let p = waiter(None);
    let h = MemHost::new();
    let mut x = Exchange::<WaitPolicy>::new();
    let r = Request::new("GET", "/a", &[("x-calls", "3")]);
    assert_eq!(
        x.request_headers(&p, r, true, &h),
        Step::Pause(vec![HeaderOp::Set("x-waited".into(), "1".into())])
    );
    let tokens: Vec<u32> = h.grpc_calls().iter().map(|c| c.token).collect();
    assert_eq!(tokens.len(), 3);
    let mut read = |_: usize| -> Vec<u8> { unreachable!("no body") };
    for t in [tokens[2], tokens[0]] {
        let got = x.callout_response(&p, t, GrpcResponse::ok(b"/a".to_vec()), &mut read, &h);
        assert_eq!(got, Step::Pause(vec![]), "still waiting");
        assert!(x.waiting());
    }
    let last = x.callout_response(
        &p,
        tokens[1],
        GrpcResponse::ok(b"/a".to_vec()),
        &mut read,
        &h,
    );
    assert_eq!(
        last,
        Step::Continue(vec![HeaderOp::Set("x-answer".into(), "/a".into())])
    );
    assert!(!x.waiting());
    // A late or unknown answer changes nothing and reaches no policy.
    let again = x.callout_response(&p, tokens[1], GrpcResponse::failed(14), &mut read, &h);
    assert_eq!(again, Step::Pause(vec![]));
    assert_eq!(x.ex.log.len(), 4);
}

#[test]
fn what_arrives_while_waiting_is_held() {
    let p = waiter(None);
    let h = MemHost::new();
    let mut x = Exchange::<WaitPolicy>::new();
    let mut read = |_: usize| -> Vec<u8> { unreachable!("the policy reads no body") };
    x.request_headers(&p, Request::new("POST", "/a", &[]), false, &h);
    assert_eq!(
        x.request_body(&p, 3, false, &mut read, &h),
        Step::Pause(vec![])
    );
    assert_eq!(
        x.request_body(&p, 6, true, &mut read, &h),
        Step::Pause(vec![])
    );
    let t = Headers::from_pairs([("x-secret", "s")]);
    let (_, step) = x.request_trailers(&p, &t, &mut read, &h);
    assert_eq!(step, Step::Pause(vec![]), "trailers wait too");
    let token = h.grpc_calls()[0].token;
    assert!(matches!(
        x.callout_response(&p, token, GrpcResponse::ok(b"/a".to_vec()), &mut read, &h),
        Step::Continue(_)
    ));
}

#[test]
fn after_the_answer_the_body_is_read_whenever_it_arrived() {
    let h = echoing();
    // Body (and trailers) complete while waiting: the verdict comes with the answer.
    for (body, trailers, status, x_body) in [
        (&b"good"[..], false, 200, Some("good")),
        (&b"good"[..], true, 200, Some("good")),
        (&b"bad"[..], false, 400, None),
        (&b"123456789"[..], false, 413, None),
        (&b"123456789"[..], true, 413, None),
        (&b""[..], false, 200, Some("")),
    ] {
        for hold in [true, false] {
            let t = Headers::from_pairs([("grpc-status", "0")]);
            let r = Request::new("POST", "/a", &[]);
            let s = send_with(
                &waiter(Some(hold)),
                &h,
                &r,
                Some(body),
                trailers.then_some(&t),
                &ok(),
                &mut || h.next_grpc_answer(),
            );
            assert_eq!(s.status, status, "{body:?} {trailers} {hold}");
            match s.upstream {
                Some(up) => {
                    assert_eq!(up.headers.get("x-body"), x_body);
                    assert_eq!(up.headers.get("x-answer"), Some("/a"));
                }
                None => assert!(status != 200, "held until the verdict"),
            }
        }
    }
    // No body at all: the body verdict on an empty body, at once.
    let s = send_with(
        &waiter(Some(true)),
        &h,
        &Request::new("GET", "/a", &[]),
        None,
        None,
        &ok(),
        &mut || h.next_grpc_answer(),
    );
    assert_eq!(s.upstream.unwrap().headers.get("x-body"), Some(""));
}

#[test]
fn a_body_that_comes_after_the_answer_goes_through_the_body_phase() {
    let h = MemHost::new();
    let answer = |x: &mut Exchange<WaitPolicy>, p: &WaitPolicy| {
        let token = h.grpc_calls().last().unwrap().token;
        x.callout_response(
            p,
            token,
            GrpcResponse::ok(b"/a".to_vec()),
            &mut |_| Vec::new(),
            &h,
        )
    };
    let set = |k: &str, v: &str| HeaderOp::Set(k.into(), v.into());
    // Held headers stay held until the body's verdict.
    let p = waiter(Some(true));
    let mut x = Exchange::<WaitPolicy>::new();
    x.request_headers(&p, Request::new("POST", "/a", &[]), false, &h);
    assert_eq!(answer(&mut x, &p), Step::Pause(vec![set("x-answer", "/a")]));
    assert!(x.reading_body());
    let step = x.request_body(&p, 4, true, &mut |n| b"good"[..n].to_vec(), &h);
    assert_eq!(step, Step::Continue(vec![set("x-body", "good")]));
    // Without holding, and nothing of the body held yet, the headers go on now.
    let p = waiter(Some(false));
    let mut x = Exchange::<WaitPolicy>::new();
    x.request_headers(&p, Request::new("POST", "/a", &[]), false, &h);
    assert_eq!(
        answer(&mut x, &p),
        Step::Continue(vec![set("x-answer", "/a")])
    );
    assert!(x.reading_body());
    // ... but body bytes held while waiting keep the headers held too (they cannot go on
    // before the verdict now), and a body already over the limit is refused at once.
    let mut x = Exchange::<WaitPolicy>::new();
    x.request_headers(&p, Request::new("POST", "/a", &[]), false, &h);
    x.request_body(&p, 2, false, &mut |_| Vec::new(), &h);
    assert_eq!(answer(&mut x, &p), Step::Pause(vec![set("x-answer", "/a")]));
    let mut x = Exchange::<WaitPolicy>::new();
    x.request_headers(&p, Request::new("POST", "/a", &[]), false, &h);
    x.request_body(&p, 9, false, &mut |_| unreachable!("not read"), &h);
    assert!(matches!(answer(&mut x, &p), Step::Reply(r) if r.status == 413));
    assert!(x.replied());
}
