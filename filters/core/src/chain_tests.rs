//! The chain as a spec: Envoy's filter-chain order, in one policy.

use super::*;
use crate::action::LocalReply;
use crate::action::Verdict;
use crate::exchange::send;
use crate::host::MemHost;
use serde::Deserialize;

/// A policy that records what it saw in a header, and can refuse or read the body.
#[derive(Deserialize, Clone, Default)]
struct Cfg {
    name: String,
    #[serde(default)]
    deny_if: Option<String>,
    #[serde(default)]
    read_body: bool,
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

    fn on_request_headers(&self, ex: &mut bool, req: &Request, _: &dyn Host) -> Action {
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
