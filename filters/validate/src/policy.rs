//! The `validate` policy: routes a request to its OpenAPI operation, checks parameters,
//! content type and JSON body, and answers 400/404/405/413/415 (or reports only).

use crate::config::{Mode, OnViolation, UnexpectedBody, ValidateConfig, MAX_DEPTH_CEILING};
use crate::media::{is_json, media_type, select_media};
use crate::schema::Violation;
use crate::spec::{self, Spec};
use boon::SchemaIndex;
use meshwall_core::http::query_pairs;
use meshwall_core::metrics::{Counter, Label, Registry};
use meshwall_core::{
    canonical_request_path, Action, Ambiguity, Body, CanonConfig, ConfigError, Host, LocalReply,
    Policy, Refusals, Request, Verdict,
};
use serde_json::{json, Value};

/// The counters, in [`Metric`] order: `meshwall.validate.<metric>` with its labels (one
/// `rejected` counter per status and reason: `meshwall_validate_rejected{status="404",
/// reason="unknown_path"}` in Prometheus).
type Labels = &'static [(Label, &'static str)];
const METRICS: [(&str, Labels); 8] = [
    ("validated", &[]),
    (
        "rejected",
        &[(Label::Status, "404"), (Label::Reason, "unknown_path")],
    ),
    (
        "rejected",
        &[
            (Label::Status, "405"),
            (Label::Reason, "method_not_allowed"),
        ],
    ),
    (
        "rejected",
        &[(Label::Status, "400"), (Label::Reason, "invalid_param")],
    ),
    (
        "rejected",
        &[(Label::Status, "400"), (Label::Reason, "invalid_body")],
    ),
    (
        "rejected",
        &[(Label::Status, "413"), (Label::Reason, "body_too_large")],
    ),
    (
        "rejected",
        &[
            (Label::Status, "415"),
            (Label::Reason, "unsupported_media_type"),
        ],
    ),
    ("report_only", &[]),
];

#[derive(Debug, Clone, Copy)]
enum Metric {
    Validated = 0,
    R404 = 1,
    R405 = 2,
    R400Param = 3,
    R400Body = 4,
    R413 = 5,
    R415 = 6,
    ReportOnly = 7,
}

/// How the body phase reads the body.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum BodyPlan {
    /// JSON: threat scan, parse, and the schema when there is one.
    #[default]
    Json,
    /// No `Content-Type`: scanned as JSON when it looks like JSON (FastAPI and Go handlers
    /// parse such bodies as JSON), else let through.
    Sniff,
    /// The operation declares no `requestBody`: any body is refused.
    Unexpected,
}

/// What the body phase must check.
#[derive(Debug, Default)]
pub struct Exchange {
    plan: BodyPlan,
    body_required: bool,
    schema: Option<SchemaIndex>,
    /// Violations already found (report-only) so the request is not counted as validated.
    reported: bool,
}

pub struct ValidatePolicy {
    cfg: ValidateConfig,
    spec: Option<Spec>,
    metrics: Vec<Option<Counter>>,
    refusals: Refusals,
    /// `cfg.canonical` with case kept: routes compare case as configured, parameter values
    /// keep the case the client sent.
    route_canon: CanonConfig,
}

/// A request's operation and its path parameter values.
type Routed<'s> = (&'s spec::Operation, Vec<(String, String)>);

impl std::fmt::Debug for ValidatePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValidatePolicy")
            .field("cfg", &self.cfg)
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

/// Whether the request carries a body: more than its headers, and not `Content-Length: 0`.
fn has_body(req: &Request) -> bool {
    req.has_body
        && req
            .headers
            .get("content-length")
            .is_none_or(|v| v.trim().parse::<u64>().map_or(true, |n| n > 0))
}

/// Whether a body looks like JSON: its first non-blank byte opens an object or an array.
fn looks_like_json(body: &[u8]) -> bool {
    matches!(
        body.iter().find(|b| !b.is_ascii_whitespace()),
        Some(b'{' | b'[')
    )
}

impl ValidatePolicy {
    fn count(&self, m: Metric, host: &dyn Host) {
        if let Some(Some(c)) = self.metrics.get(m as usize) {
            c.inc(host);
        }
    }

    /// Applies the mode to a violation: a reply in enforce mode, or a report.
    fn violation(
        &self,
        ex: &mut Exchange,
        how: OnViolation,
        metric: Metric,
        reply: LocalReply,
        what: &str,
        host: &dyn Host,
    ) -> Option<Verdict> {
        match (how, self.cfg.mode) {
            (OnViolation::Pass, _) => {
                ex.reported = true;
                None
            }
            (OnViolation::Report, _) | (OnViolation::Reject, Mode::ReportOnly) => {
                ex.reported = true;
                self.count(Metric::ReportOnly, host);
                meshwall_core::policy_log!(
                    warn,
                    crate::policy::ValidatePolicy,
                    "report-only: would answer {}: {what}",
                    reply.status
                );
                None
            }
            (OnViolation::Reject, Mode::Enforce) => {
                self.count(metric, host);
                meshwall_core::policy_log!(
                    info,
                    crate::policy::ValidatePolicy,
                    "{} {what}",
                    reply.status
                );
                Some(Verdict::Reply(reply))
            }
        }
    }

    fn bad_request(&self, detail: &str, errors: &[Violation]) -> LocalReply {
        let list: Vec<Value> = errors
            .iter()
            .take(self.cfg.max_errors.max(1))
            .map(|v| json!({"in": v.location, "pointer": v.pointer, "keyword": v.keyword, "message": v.message}))
            .collect();
        LocalReply::builder(400, detail)
            .member("errors", Value::Array(list))
            .build()
    }

    fn summary(errors: &[Violation]) -> String {
        let kws: Vec<String> = errors
            .iter()
            .take(5)
            .map(|v| format!("{}:{}", v.location, v.keyword))
            .collect();
        format!("{} violation(s) [{}]", errors.len(), kws.join(", "))
    }

    fn finish(&self, ex: &Exchange, host: &dyn Host) -> Verdict {
        if !ex.reported {
            self.count(Metric::Validated, host);
        }
        Verdict::proceed()
    }

    /// An ambiguous request (`meshwall_core::canon`): refused with 400 and its reason, or,
    /// in `report_only` mode, logged and let through.
    fn ambiguous(&self, ex: &mut Exchange, a: &Ambiguity, host: &dyn Host) -> Option<Action> {
        if self.cfg.mode == Mode::ReportOnly {
            ex.reported = true;
            self.count(Metric::ReportOnly, host);
            meshwall_core::policy_log!(
                warn,
                crate::policy::ValidatePolicy,
                "report-only: would answer 400: ambiguous request: {}",
                a.reason()
            );
            return None;
        }
        Some(self.refusals.refuse(a, host))
    }

    /// A request let through without its operation (unknown path or method passed or
    /// reported, CORS preflight): its JSON body still gets the threat scan.
    fn let_through(&self, ex: &mut Exchange, req: &Request, host: &dyn Host) -> Action {
        self.scan_only(ex, req, host)
    }

    /// The request's operation and its path parameter values, or the action for a request
    /// that has none.
    fn route<'s>(
        &self,
        spec: &'s Spec,
        ex: &mut Exchange,
        req: &Request,
        host: &dyn Host,
    ) -> Result<Routed<'s>, Action> {
        let path = match canonical_request_path(req, &self.route_canon) {
            Ok(p) => p,
            Err(a) => {
                return Err(self
                    .ambiguous(ex, &a, host)
                    .unwrap_or_else(|| self.let_through(ex, req, host)))
            }
        };
        let method = match meshwall_core::effective_method(req, &self.route_canon) {
            Ok(m) => m,
            Err(a) => {
                return Err(self
                    .ambiguous(ex, &a, host)
                    .unwrap_or_else(|| self.let_through(ex, req, host)))
            }
        };
        let (found, miss) = match spec.strip_base(&path) {
            Some(rest) => (spec.find(rest), "unknown path"),
            None => (Vec::new(), "path outside the base paths"),
        };
        if found.is_empty() {
            let reply = LocalReply::problem(404, "no API operation matches the request path");
            return Err(self
                .violation(ex, self.cfg.unknown_path, Metric::R404, reply, miss, host)
                .map_or_else(|| self.let_through(ex, req, host), Action::from));
        }
        let head_get = spec.canon.head_matches_get;
        let chosen = found
            .iter()
            .find_map(|(item, values)| Some((item.operation(&method, head_get)?, values)));
        if let Some((op, values)) = chosen {
            return Ok((op, values.clone()));
        }
        // A CORS preflight for a declared method is not a call of OPTIONS itself.
        let preflight = req.method.eq_ignore_ascii_case("OPTIONS")
            && req
                .headers
                .get("access-control-request-method")
                .is_some_and(|m| {
                    found
                        .iter()
                        .any(|(item, _)| item.operation(m.trim(), head_get).is_some())
                });
        if preflight {
            return Err(self.let_through(ex, req, host));
        }
        let reply = LocalReply::builder(405, "method not allowed for this path")
            .header(
                "allow",
                spec::allow(found.iter().map(|(item, _)| *item), head_get),
            )
            .build();
        Err(self
            .violation(
                ex,
                self.cfg.unknown_method,
                Metric::R405,
                reply,
                "undeclared method",
                host,
            )
            .map_or_else(|| self.let_through(ex, req, host), Action::from))
    }
}

/// Every configured limit must be usable; errors name the field.
fn check_config(cfg: &ValidateConfig) -> Result<(), ConfigError> {
    let l = &cfg.json_limits;
    if l.max_depth == 0 || l.max_depth > MAX_DEPTH_CEILING {
        return Err(ConfigError::new(
            "json_limits.max_depth",
            format!("must be between 1 and {MAX_DEPTH_CEILING}"),
        ));
    }
    if cfg.max_body_bytes == 0 {
        return Err(ConfigError::new("max_body_bytes", "must be at least 1"));
    }
    if cfg.max_errors == 0 {
        return Err(ConfigError::new("max_errors", "must be at least 1"));
    }
    if let Some(b) = &cfg.base_path {
        if !b.starts_with('/') || b.contains('?') || b.contains('#') {
            return Err(ConfigError::new(
                "base_path",
                "must be a path starting with `/`",
            ));
        }
        if cfg.spec.is_none() {
            return Err(ConfigError::new("base_path", "only applies with `spec`"));
        }
        spec::canonical_base(b, &cfg.canonical).map_err(|e| ConfigError::new("base_path", e))?;
    }
    Ok(())
}

impl Policy for ValidatePolicy {
    type Config = ValidateConfig;
    type Exchange = Exchange;
    const NAME: &'static str = "validate";

    /// Nothing to do on responses: the adaptor does not read them.
    fn uses_response(&self) -> bool {
        false
    }

    /// The client address plays no part (one host call saved per request).
    fn uses_client_ip(&self) -> bool {
        false
    }

    fn new(config: ValidateConfig, host: &dyn Host) -> Result<Self, ConfigError> {
        check_config(&config)?;
        let spec = match &config.spec {
            None => None,
            Some(s) => Some(
                spec::load_with(
                    s,
                    config.base_path.as_deref(),
                    config.assert_formats,
                    &config.canonical,
                )
                .map_err(|e| ConfigError::new("spec", e.to_string()))?,
            ),
        };
        let registry = Registry::of::<Self>(host);
        let metrics = METRICS
            .iter()
            .map(|(m, labels)| registry.counter(m, labels).ok())
            .collect();
        if let Some(s) = &spec {
            meshwall_core::policy_log!(
                info,
                crate::policy::ValidatePolicy,
                "OpenAPI {} loaded: {} paths, {} operations",
                s.version,
                s.items.len(),
                s.items.iter().map(|i| i.operations.len()).sum::<usize>()
            );
        }
        if !config.hold_headers {
            meshwall_core::policy_log!(warn, crate::policy::ValidatePolicy,
                "hold_headers is off: request headers reach the upstream before the body is checked"
            );
        }
        let route_canon = CanonConfig {
            case_insensitive_paths: false,
            ..config.canonical.clone()
        };
        Ok(ValidatePolicy {
            refusals: Refusals::define(Self::NAME, host),
            route_canon,
            cfg: config,
            spec,
            metrics,
        })
    }

    fn on_request_headers(&self, ex: &mut Exchange, req: &Request, host: &dyn Host) -> Action {
        let Some(spec) = &self.spec else {
            // Threat protection only: JSON bodies.
            return self.scan_only(ex, req, host);
        };
        let (op, path_values) = match self.route(spec, ex, req, host) {
            Ok(found) => found,
            Err(action) => return action,
        };
        let query = query_pairs(req.query().unwrap_or_default());
        if let Err(a) = crate::params::ambiguity::check(&op.params, req, &query) {
            if let Some(action) = self.ambiguous(ex, &a, host) {
                return action;
            }
        }
        let mut errors = Vec::new();
        crate::params::check(
            &op.params,
            &path_values,
            req,
            &query,
            &spec.schemas,
            &spec.literals,
            self.cfg.reject_unknown_query_params,
            self.cfg.max_errors,
            &mut errors,
        );
        if !errors.is_empty() {
            let reply = self.bad_request(
                "request parameters do not conform to the API specification",
                &errors,
            );
            let what = Self::summary(&errors);
            if let Some(a) = self.violation(
                ex,
                OnViolation::Reject,
                Metric::R400Param,
                reply,
                &what,
                host,
            ) {
                return a.into();
            }
        }
        let Some(body) = &op.body else {
            return self.no_request_body(ex, req, host);
        };
        ex.body_required = body.required;
        if !has_body(req) {
            return self
                .check_body(ex, &[], host)
                .unwrap_or_else(|| self.finish(ex, host))
                .into();
        }
        let ct: Vec<&str> = req.headers.get_all("content-type").collect();
        if ct.len() > 1 {
            let a = Ambiguity::RepeatedHeader("content-type".into());
            if let Some(action) = self.ambiguous(ex, &a, host) {
                return action;
            }
        }
        let Some((essence, charset)) = ct.first().map(|c| media_type(c)) else {
            let reply =
                LocalReply::problem(415, "a Content-Type is required for this request body");
            return self
                .violation(
                    ex,
                    OnViolation::Reject,
                    Metric::R415,
                    reply,
                    "missing content-type",
                    host,
                )
                .unwrap_or_else(|| self.finish(ex, host))
                .into();
        };
        let media = select_media(body, &essence);
        let charset_ok = !is_json(&essence)
            || charset
                .as_deref()
                .is_none_or(|c| c == "utf-8" || c == "utf8");
        let Some(media) = media.filter(|_| charset_ok) else {
            let reply = LocalReply::problem(415, "content type not accepted for this operation");
            return self
                .violation(
                    ex,
                    OnViolation::Reject,
                    Metric::R415,
                    reply,
                    "undeclared content-type",
                    host,
                )
                .unwrap_or_else(|| self.finish(ex, host))
                .into();
        };
        if !is_json(&essence) {
            // Only JSON bodies are validated; other declared media types pass as they are.
            return self.finish(ex, host).into();
        }
        ex.plan = BodyPlan::Json;
        ex.schema = media.schema;
        self.read_body(ex, req, host)
    }

    fn on_request_body(
        &self,
        ex: &mut Exchange,
        _req: &Request,
        body: Body<'_>,
        host: &dyn Host,
    ) -> Verdict {
        self.body_phase(ex, body, host)
    }
}

impl ValidatePolicy {
    /// A request to an operation without `requestBody`: a body is refused, scanned or let
    /// through (`unexpected_body`).
    fn no_request_body(&self, ex: &mut Exchange, req: &Request, host: &dyn Host) -> Action {
        if !has_body(req) {
            return self.finish(ex, host).into();
        }
        match self.cfg.unexpected_body {
            UnexpectedBody::Pass => self.finish(ex, host).into(),
            UnexpectedBody::Scan => self.scan_only(ex, req, host),
            UnexpectedBody::Reject => {
                let declared = req
                    .headers
                    .get("content-length")
                    .and_then(|v| v.trim().parse::<u64>().ok());
                if declared.is_some() {
                    // A length over 0 (has_body): refused before any byte is buffered.
                    return self
                        .unexpected(ex, host)
                        .unwrap_or_else(|| self.finish(ex, host))
                        .into();
                }
                // Chunked or HTTP/2 without a length: only a non-empty body is refused.
                ex.plan = BodyPlan::Unexpected;
                self.read_body(ex, req, host)
            }
        }
    }
}

mod body;

#[cfg(test)]
mod tests;
