//! The chain as a spec: Envoy's filter-chain order, in one policy.

use super::*;
use crate::action::LocalReply;
use crate::action::Verdict;
use crate::exchange::send;
use crate::exchange::send_with;
use crate::host::{GrpcResponse, MemHost};
use serde::Deserialize;

/// A policy that records what it saw in a header, and can refuse or read the body.
#[derive(Deserialize, Clone, Default)]
struct Cfg {
    name: String,
    #[serde(default)]
    deny_if: Option<String>,
    #[serde(default)]
    read_body: bool,
    /// Make a gRPC call (message: the name) and wait for it; an answer `deny` refuses.
    #[serde(default)]
    wait: bool,
    /// Say it has nothing to do on responses (it would still mark one if asked).
    #[serde(default)]
    no_response: bool,
}

struct Probe(Cfg);

impl Policy for Probe {
    type Config = Cfg;
    type Exchange = bool;
    const NAME: &'static str = "probe";

    fn new(c: Cfg, _: &dyn Host) -> Result<Self, ConfigError> {
        if c.name.is_empty() {
            return Err(ConfigError::new("name", "must not be empty"));
        }
        Ok(Probe(c))
    }

    fn uses_response(&self) -> bool {
        !self.0.no_response
    }

    fn on_request_headers(&self, ex: &mut bool, req: &Request, host: &dyn Host) -> Action {
        *ex = true;
        if let Some(h) = &self.0.deny_if {
            if req.headers.contains(h) {
                return Action::Reply(LocalReply::problem(403, &self.0.name));
            }
        }
        // Each policy appends its name to `x-path`: the next one sees the changes so far.
        let seen = req.headers.get("x-path").unwrap_or("");
        let ops = vec![HeaderOp::Set(
            "x-path".into(),
            format!("{seen}{}", self.0.name),
        )];
        if self.0.wait {
            let t = std::time::Duration::from_millis(20);
            return match host.grpc_call("rls".into(), "s", "M", &[], self.0.name.as_bytes(), t) {
                Ok(_) => Action::Wait(ops),
                Err(_) => Action::Reply(LocalReply::problem(503, &self.0.name)),
            };
        }
        self.after_headers(ops)
    }

    fn on_request_callout(
        &self,
        _: &mut bool,
        req: &Request,
        _: u32,
        r: GrpcResponse,
        _: &dyn Host,
    ) -> Action {
        if r.message == b"deny" {
            return Action::Reply(LocalReply::problem(429, &self.0.name));
        }
        // The answer's change records what the policy saw of the request when it waited.
        let seen = req.headers.get("x-path").unwrap_or("");
        self.after_headers(vec![HeaderOp::Append(
            "x-called".into(),
            format!("{}:{seen}", self.0.name),
        )])
    }

    fn on_request_body(
        &self,
        _: &mut bool,
        req: &Request,
        body: Body<'_>,
        _: &dyn Host,
    ) -> Verdict {
        match body {
            Body::Complete(b) if b != b"bad" => Verdict::Continue(vec![HeaderOp::Append(
                "x-body".into(),
                format!(
                    "{}:{}",
                    self.0.name,
                    req.headers.get("x-path").unwrap_or("")
                ),
            )]),
            Body::Complete(_) => Verdict::Reply(LocalReply::problem(400, &self.0.name)),
            Body::TooLarge { .. } => Verdict::Reply(LocalReply::problem(413, &self.0.name)),
        }
    }

    fn on_request_trailers(&self, _: &mut bool, t: &Headers, _: &dyn Host) -> Vec<HeaderOp> {
        let seen = t.get("x-t").unwrap_or("");
        vec![HeaderOp::Set(
            "x-t".into(),
            format!("{seen}{}", self.0.name),
        )]
    }

    fn on_response_headers(&self, ex: &mut bool, resp: &Response, _: &dyn Host) -> Vec<HeaderOp> {
        let seen = resp.headers.get("x-resp").unwrap_or("");
        let mark = if *ex { "" } else { "?" };
        vec![HeaderOp::Set(
            "x-resp".into(),
            format!("{seen}{}{mark}", self.0.name),
        )]
    }
}

impl Probe {
    fn after_headers(&self, ops: Vec<HeaderOp>) -> Action {
        if self.0.read_body {
            Action::ReadBody {
                max_bytes: 4,
                ops,
                hold_headers: true,
            }
        } else {
            Action::Continue(ops)
        }
    }
}

type Three = Chain<Probe, Chain<Probe, Probe>>;

fn cfg(name: &str) -> Cfg {
    Cfg {
        name: name.into(),
        ..Cfg::default()
    }
}

fn three(a: Cfg, b: Cfg, c: Cfg) -> Three {
    Three::new((Some(a), Some((Some(b), Some(c)))), &MemHost::new()).unwrap()
}

fn ok() -> Response {
    Response {
        status: 200,
        headers: Headers::new(),
    }
}

#[test]
fn requests_go_first_to_last_and_responses_last_to_first() {
    let s = send(
        &three(cfg("a"), cfg("b"), cfg("c")),
        &MemHost::new(),
        &Request::new("GET", "/", &[]),
        None,
        None,
        &ok(),
    );
    assert_eq!(
        s.upstream.clone().unwrap().headers.get("x-path"),
        Some("abc")
    );
    assert_eq!(s.header("x-resp"), Some("cba"));
}

#[test]
fn absent_sections_are_skipped() {
    let chain = Three::new((None, Some((Some(cfg("b")), None))), &MemHost::new()).unwrap();
    let s = send(
        &chain,
        &MemHost::new(),
        &Request::new("GET", "/", &[]),
        None,
        None,
        &ok(),
    );
    assert_eq!(s.upstream.clone().unwrap().headers.get("x-path"), Some("b"));
    assert!(!Three::new((None, Some((None, None))), &MemHost::new())
        .unwrap()
        .uses_request());
}

#[test]
fn policies_without_a_response_phase_are_not_asked_and_an_all_such_chain_reads_no_response() {
    let quiet = |name: &str| Cfg {
        no_response: true,
        ..cfg(name)
    };
    let req = Request::new("GET", "/", &[]);
    let host = MemHost::new();
    let mixed = three(quiet("a"), cfg("b"), quiet("c"));
    assert!(mixed.uses_response());
    let s = send(&mixed, &host, &req, None, None, &ok());
    assert_eq!(s.header("x-resp"), Some("b"), "only b was asked");
    let silent = three(quiet("a"), quiet("b"), quiet("c"));
    assert!(
        !silent.uses_response(),
        "the adaptor then reads no response"
    );
    let s = send(&silent, &host, &req, None, None, &ok());
    assert_eq!(s.header("x-resp"), None);
    assert_eq!(s.upstream.unwrap().headers.get("x-path"), Some("abc"));
}

#[test]
fn a_local_reply_stops_the_request_phase_but_every_policy_sees_the_response() {
    let b = Cfg {
        deny_if: Some("x-deny".into()),
        ..cfg("b")
    };
    let s = send(
        &three(cfg("a"), b, cfg("c")),
        &MemHost::new(),
        &Request::new("GET", "/", &[("x-deny", "1")]),
        None,
        None,
        &ok(),
    );
    assert_eq!(s.status, 403);
    assert!(s.upstream.is_none());
    assert_eq!(s.problem()["detail"], "b");
    assert_eq!(
        s.header("x-resp"),
        Some("c?ba"),
        "c never saw the request; a sees the reply last"
    );
}

#[test]
fn a_body_reader_holds_the_rest_of_the_chain_until_the_body_is_checked() {
    let a = Cfg {
        read_body: true,
        ..cfg("a")
    };
    let c = Cfg {
        read_body: true,
        ..cfg("c")
    };
    let chain = three(a.clone(), cfg("b"), c.clone());
    let s = send(
        &chain,
        &MemHost::new(),
        &Request::new("POST", "/", &[]),
        Some(b"ok"),
        None,
        &ok(),
    );
    assert_eq!(s.status, 200);
    let up = s.upstream.clone().unwrap();
    assert_eq!(up.headers.get("x-path"), Some("abc"));
    assert_eq!(
        up.headers.get_all("x-body").collect::<Vec<_>>(),
        ["a:a", "c:abc"],
        "each body phase sees the request as changed by the policies before it"
    );
    // The first reader refuses: nothing after it runs, nothing reaches the upstream.
    let s = send(
        &chain,
        &MemHost::new(),
        &Request::new("POST", "/", &[]),
        Some(b"bad"),
        None,
        &ok(),
    );
    assert_eq!((s.status, s.problem()["detail"].as_str()), (400, Some("a")));
    assert!(s.upstream.is_none());
    assert_eq!(s.header("x-resp"), Some("c?b?a"));
    // Only the last policy reads the body.
    let chain = three(cfg("a"), cfg("b"), c);
    let s = send(
        &chain,
        &MemHost::new(),
        &Request::new("POST", "/", &[]),
        Some(b"toolong"),
        None,
        &ok(),
    );
    assert_eq!((s.status, s.problem()["detail"].as_str()), (413, Some("c")));
    assert!(s.upstream.is_none());
}

#[test]
fn trailers_pass_in_request_order() {
    let t = Headers::from_pairs([("x-t", "")]);
    let s = send(
        &three(cfg("a"), cfg("b"), cfg("c")),
        &MemHost::new(),
        &Request::new("POST", "/", &[]),
        Some(b"x"),
        Some(&t),
        &ok(),
    );
    assert_eq!(s.upstream.clone().unwrap().trailers.get("x-t"), Some("abc"));
}

#[test]
fn config_errors_name_the_section() {
    let e = Three::new(
        (Some(cfg("a")), Some((Some(cfg("")), None))),
        &MemHost::new(),
    )
    .err()
    .unwrap();
    assert_eq!(e.field, "probe.name");
}

// ------------------------------------------------------------------ waiting for callouts

fn waits(name: &str) -> Cfg {
    Cfg {
        wait: true,
        ..cfg(name)
    }
}

/// `GET /` through `chain`, each callout answered by `h` as it comes.
fn get_answered(chain: &Three, h: &MemHost) -> crate::exchange::Sent {
    send_with(
        chain,
        h,
        &Request::new("GET", "/", &[]),
        None,
        None,
        &ok(),
        &mut || h.next_grpc_answer(),
    )
}

/// Answers every call with `deny` when its message (the caller's name) is in `denied`.
fn answering(denied: &'static [&'static str]) -> MemHost {
    let h = MemHost::new();
    h.answer_grpc_with(move |c| {
        let name = String::from_utf8_lossy(&c.message).into_owned();
        GrpcResponse::ok(if denied.contains(&name.as_str()) {
            b"deny".to_vec()
        } else {
            c.message.clone()
        })
    });
    h
}

#[test]
fn a_waiting_policy_holds_the_rest_of_the_chain_until_its_answer() {
    let chain = three(cfg("a"), waits("b"), cfg("c"));
    let h = answering(&[]);
    // Before the answer, `c` has not seen the request.
    let mut x = crate::exchange::Exchange::<Three>::new();
    let step = x.request_headers(&chain, Request::new("GET", "/", &[]), true, &h);
    assert!(matches!(step, crate::exchange::Step::Pause(_)));
    assert!(x.ex.first && x.ex.second.first && !x.ex.second.second);
    let s = get_answered(&chain, &h);
    assert_eq!(s.status, 200);
    let up = s.upstream.clone().unwrap();
    assert_eq!(
        up.headers.get("x-path"),
        Some("abc"),
        "c ran after the answer"
    );
    assert_eq!(up.headers.get("x-called"), Some("b:ab"));
    assert_eq!(s.header("x-resp"), Some("cba"));
}

#[test]
fn an_answer_that_refuses_ends_the_request_phase() {
    let h = answering(&["b"]);
    let s = get_answered(&three(cfg("a"), waits("b"), cfg("c")), &h);
    assert_eq!((s.status, s.problem()["detail"].as_str()), (429, Some("b")));
    assert!(s.upstream.is_none());
    assert_eq!(s.header("x-resp"), Some("c?ba"), "c never saw the request");
}

#[test]
fn each_waiting_policy_gets_its_own_answer_in_turn() {
    let h = answering(&[]);
    let chain = three(waits("a"), cfg("b"), waits("c"));
    let s = get_answered(&chain, &h);
    assert_eq!(s.status, 200);
    let up = s.upstream.unwrap();
    assert_eq!(up.headers.get("x-path"), Some("abc"));
    assert_eq!(
        up.headers.get_all("x-called").collect::<Vec<_>>(),
        ["a:a", "c:abc"]
    );
    let calls: Vec<Vec<u8>> = h.grpc_calls().into_iter().map(|c| c.message).collect();
    assert_eq!(
        calls,
        [b"a".to_vec(), b"c".to_vec()],
        "c called only after a's answer"
    );
    // The second one refuses: the first one's changes never reached the upstream.
    let h = answering(&["c"]);
    let s = get_answered(&chain, &h);
    assert_eq!((s.status, s.upstream), (429, None));
}

#[test]
fn after_an_answer_a_later_policy_reads_the_body() {
    let h = answering(&[]);
    let c = Cfg {
        read_body: true,
        ..cfg("c")
    };
    let chain = three(cfg("a"), waits("b"), c);
    for (body, status) in [
        (&b"ok"[..], 200),
        (&b"bad"[..], 400),
        (&b"toolong"[..], 413),
    ] {
        let s = send_with(
            &chain,
            &h,
            &Request::new("POST", "/", &[]),
            Some(body),
            None,
            &ok(),
            &mut || h.next_grpc_answer(),
        );
        assert_eq!(s.status, status, "{body:?}");
        if status == 200 {
            let up = s.upstream.unwrap();
            assert_eq!(up.headers.get("x-body"), Some("c:abc"));
            assert_eq!(up.headers.get("x-called"), Some("b:ab"));
        } else {
            assert!(s.upstream.is_none());
        }
    }
}

#[test]
fn a_policy_cannot_wait_after_a_body_verdict() {
    let h = answering(&[]);
    let a = Cfg {
        read_body: true,
        ..cfg("a")
    };
    let s = send_with(
        &three(a, waits("b"), cfg("c")),
        &h,
        &Request::new("POST", "/", &[]),
        Some(b"ok"),
        None,
        &ok(),
        &mut || h.next_grpc_answer(),
    );
    assert_eq!(s.status, 500, "fails closed");
    assert!(s.upstream.is_none());
}
