//! The body phase: what is read, and how a body is checked.

use super::{has_body, looks_like_json, BodyPlan, Exchange, Metric, ValidatePolicy};
use crate::config::OnViolation;
use crate::media::is_json;
use crate::schema::Violation;
use crate::threat;
use meshwall_core::{Action, Body, Host, LocalReply, Request, Verdict};
use serde_json::Value;

fn body_violation(keyword: &str, pointer: String, message: String) -> Violation {
    Violation {
        location: "body",
        pointer,
        keyword: keyword.into(),
        message,
    }
}

impl ValidatePolicy {
    pub(super) fn too_large(&self) -> LocalReply {
        LocalReply::problem(
            413,
            &format!("request body exceeds {} bytes", self.cfg.max_body_bytes),
        )
    }

    /// Asks for the body (planned in `ex`); a declared `Content-Length` over the limit is
    /// answered at once, before any byte is buffered.
    pub(super) fn read_body(&self, ex: &mut Exchange, req: &Request, host: &dyn Host) -> Action {
        let declared = req
            .headers
            .get("content-length")
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.cfg.max_body_bytes as u64) {
            if ex.plan == BodyPlan::Unexpected {
                return self
                    .unexpected(ex, host)
                    .unwrap_or_else(|| self.finish(ex, host))
                    .into();
            }
            if let Some(a) = self.violation(
                ex,
                OnViolation::Reject,
                Metric::R413,
                self.too_large(),
                "content-length over limit",
                host,
            ) {
                return a.into();
            }
            return self.finish(ex, host).into();
        }
        Action::ReadBody {
            max_bytes: self.cfg.max_body_bytes,
            ops: Vec::new(),
            hold_headers: self.cfg.hold_headers,
        }
    }

    /// A request the spec does not describe the body of (no spec, unknown path or method let
    /// through, `unexpected_body: scan`): JSON bodies still get the threat scan.
    pub(super) fn scan_only(&self, ex: &mut Exchange, req: &Request, host: &dyn Host) -> Action {
        if !has_body(req) {
            return self.finish(ex, host).into();
        }
        ex.schema = None;
        ex.body_required = false;
        match req
            .headers
            .get("content-type")
            .map(crate::media::media_type)
        {
            Some((essence, _)) if is_json(&essence) => ex.plan = BodyPlan::Json,
            Some(_) => return self.finish(ex, host).into(),
            None => ex.plan = BodyPlan::Sniff,
        }
        self.read_body(ex, req, host)
    }

    /// A body on an operation without `requestBody`, per `unexpected_body: reject`.
    pub(super) fn unexpected(&self, ex: &mut Exchange, host: &dyn Host) -> Option<Verdict> {
        let v = [body_violation(
            "unexpectedBody",
            String::new(),
            "this operation takes no request body".into(),
        )];
        let reply = self.bad_request("this operation takes no request body", &v);
        self.violation(
            ex,
            OnViolation::Reject,
            Metric::R400Body,
            reply,
            "unexpected body",
            host,
        )
    }

    pub(super) fn body_phase(&self, ex: &mut Exchange, body: Body<'_>, host: &dyn Host) -> Verdict {
        let verdict = match (body, ex.plan) {
            (Body::TooLarge { .. }, BodyPlan::Unexpected) => self.unexpected(ex, host),
            (Body::TooLarge { .. }, _) => self.violation(
                ex,
                OnViolation::Reject,
                Metric::R413,
                self.too_large(),
                "body over limit",
                host,
            ),
            (Body::Complete(b), BodyPlan::Unexpected) if !b.is_empty() => self.unexpected(ex, host),
            (Body::Complete(_), BodyPlan::Unexpected) => None,
            (Body::Complete(b), BodyPlan::Sniff) if !looks_like_json(b) => None,
            (Body::Complete(b), _) => self.check_body(ex, b, host),
        };
        verdict.unwrap_or_else(|| self.finish(ex, host))
    }

    /// A JSON body: present when required, within the threat limits, valid JSON, and valid
    /// against the schema (numbers exact, `crate::numbers`).
    pub(super) fn check_body(
        &self,
        ex: &mut Exchange,
        body: &[u8],
        host: &dyn Host,
    ) -> Option<Verdict> {
        if body.is_empty() {
            if ex.body_required {
                let v = [body_violation(
                    "required",
                    String::new(),
                    "request body is required".into(),
                )];
                let reply = self.bad_request("request body is required", &v);
                return self.violation(
                    ex,
                    OnViolation::Reject,
                    Metric::R400Body,
                    reply,
                    "missing body",
                    host,
                );
            }
            return None;
        }
        let mut errors = Vec::new();
        let schema = ex.schema.zip(self.spec.as_ref());
        let literals = schema.map(|(_, spec)| &spec.literals);
        match threat::scan_numbers(body, &self.cfg.json_limits, literals) {
            Err(t) => errors.push(body_violation(t.keyword, t.pointer, t.message)),
            Ok(stand_ins) => match serde_json::from_slice::<Value>(body) {
                Err(_) => errors.push(body_violation(
                    "json",
                    String::new(),
                    "body is not valid JSON".into(),
                )),
                Ok(mut v) => {
                    if let Some((idx, spec)) = schema {
                        crate::numbers::apply(&mut v, &stand_ins);
                        spec.schemas.validate(
                            idx,
                            &v,
                            "body",
                            "",
                            self.cfg.max_errors,
                            &mut errors,
                        );
                    }
                }
            },
        }
        if errors.is_empty() {
            return None;
        }
        let reply = self.bad_request(
            "request body does not conform to the API specification",
            &errors,
        );
        let what = Self::summary(&errors);
        self.violation(
            ex,
            OnViolation::Reject,
            Metric::R400Body,
            reply,
            &what,
            host,
        )
    }
}
