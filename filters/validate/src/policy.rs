//! The `validate` policy: routes a request to its OpenAPI operation, checks parameters,
//! content type and JSON body, and answers 400/404/405/413/415 (or reports only).

use crate::config::{Mode, OnViolation, ValidateConfig, MAX_DEPTH_CEILING};
use crate::schema::Violation;
use crate::spec::{self, RequestBody, Spec};
use crate::threat;
use boon::SchemaIndex;
use meshwall_core::{
    Action, Body, ConfigError, Host, LocalReply, MetricId, MetricKind, Policy, Request,
};
use serde_json::{json, Value};

const METRICS: [&str; 8] = [
    "validated",
    "rejected_404",
    "rejected_405",
    "rejected_400_param",
    "rejected_400_body",
    "rejected_413",
    "rejected_415",
    "report_only",
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

/// What the body phase must check.
#[derive(Debug, Default)]
pub struct Exchange {
    body_required: bool,
    schema: Option<SchemaIndex>,
    /// Violations already found (report-only) so the request is not counted as validated.
    reported: bool,
}

#[derive(Debug)]
pub struct ValidatePolicy {
    cfg: ValidateConfig,
    spec: Option<Spec>,
    metrics: Vec<Option<MetricId>>,
}

/// `type/subtype` (lower case) and the charset parameter of a Content-Type value.
fn media_type(ct: &str) -> (String, Option<String>) {
    let mut parts = ct.split(';');
    let essence = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
    let charset = parts.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| v.trim().trim_matches('"').to_ascii_lowercase())
    });
    (essence, charset)
}

/// Whether a media type is JSON (`application/json`, `*/*+json`).
pub fn is_json(essence: &str) -> bool {
    let sub = essence.split_once('/').map(|(_, s)| s).unwrap_or_default();
    sub == "json" || sub.ends_with("+json")
}

/// Matches `type/subtype` against a declared range (`*/*`, `type/*`, `application/*+json`).
fn range_matches(range: &str, essence: &str) -> bool {
    let (Some((rt, rs)), Some((t, s))) = (range.split_once('/'), essence.split_once('/')) else {
        return false;
    };
    let type_ok = rt == "*" || rt == t;
    let sub_ok = rs == "*"
        || rs == s
        || match rs.split_once('*') {
            Some((pre, post)) => {
                s.len() >= pre.len() + post.len() && s.starts_with(pre) && s.ends_with(post)
            }
            None => false,
        };
    type_ok && sub_ok
}

/// The declared media type for a request content type: exact first, then the most specific range.
fn select_media<'a>(body: &'a RequestBody, essence: &str) -> Option<&'a spec::MediaType> {
    let specificity = |r: &str| -> u8 {
        if r == essence {
            3
        } else if r.starts_with("*/") {
            0
        } else if r.ends_with("/*") {
            1
        } else {
            2
        }
    };
    body.content
        .iter()
        .filter(|m| range_matches(&m.range, essence))
        .max_by_key(|m| specificity(&m.range))
}

impl ValidatePolicy {
    fn count(&self, m: Metric, host: &dyn Host) {
        if let Some(Some(id)) = self.metrics.get(m as usize) {
            host.increment_metric(*id, 1);
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
    ) -> Option<Action> {
        match (how, self.cfg.mode) {
            (OnViolation::Pass, _) => {
                ex.reported = true;
                None
            }
            (OnViolation::Report, _) | (OnViolation::Reject, Mode::ReportOnly) => {
                ex.reported = true;
                self.count(Metric::ReportOnly, host);
                log::warn!(
                    "meshwall.validate: report-only: would answer {}: {what}",
                    reply.status
                );
                None
            }
            (OnViolation::Reject, Mode::Enforce) => {
                self.count(metric, host);
                log::info!("meshwall.validate: {} {what}", reply.status);
                Some(Action::Reply(reply))
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

    fn too_large(&self) -> LocalReply {
        LocalReply::problem(
            413,
            &format!("request body exceeds {} bytes", self.cfg.max_body_bytes),
        )
    }

    /// Decides whether to read the body: `plan` = (required, schema) for a JSON body.
    fn read_body(&self, ex: &mut Exchange, req: &Request, host: &dyn Host) -> Action {
        let declared = req
            .headers
            .get("content-length")
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.cfg.max_body_bytes as u64) {
            if let Some(a) = self.violation(
                ex,
                OnViolation::Reject,
                Metric::R413,
                self.too_large(),
                "content-length over limit",
                host,
            ) {
                return a;
            }
            return self.finish(ex, host);
        }
        Action::ReadBody {
            max_bytes: self.cfg.max_body_bytes,
            ops: Vec::new(),
            hold_headers: self.cfg.hold_headers,
        }
    }

    fn finish(&self, ex: &Exchange, host: &dyn Host) -> Action {
        if !ex.reported {
            self.count(Metric::Validated, host);
        }
        Action::proceed()
    }

    fn check_body(&self, ex: &mut Exchange, body: &[u8], host: &dyn Host) -> Option<Action> {
        if body.is_empty() {
            if ex.body_required {
                let v = [Violation {
                    location: "body",
                    pointer: String::new(),
                    keyword: "required".into(),
                    message: "request body is required".into(),
                }];
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
        match threat::scan(body, &self.cfg.json_limits) {
            Err(t) => errors.push(Violation {
                location: "body",
                pointer: t.pointer,
                keyword: t.keyword.into(),
                message: t.message,
            }),
            Ok(()) => match serde_json::from_slice::<Value>(body) {
                Err(_) => errors.push(Violation {
                    location: "body",
                    pointer: String::new(),
                    keyword: "json".into(),
                    message: "body is not valid JSON".into(),
                }),
                Ok(v) => {
                    if let (Some(idx), Some(spec)) = (ex.schema, &self.spec) {
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
    }
    Ok(())
}

impl Policy for ValidatePolicy {
    type Config = ValidateConfig;
    type Exchange = Exchange;
    const NAME: &'static str = "validate";

    fn new(config: ValidateConfig, host: &dyn Host) -> Result<Self, ConfigError> {
        check_config(&config)?;
        let spec = match &config.spec {
            None => None,
            Some(s) => Some(
                spec::load(s, config.base_path.as_deref(), config.assert_formats)
                    .map_err(|e| ConfigError::new("spec", e.to_string()))?,
            ),
        };
        let metrics = METRICS
            .iter()
            .map(|m| {
                host.define_metric(MetricKind::Counter, &format!("meshwall.validate.{m}"))
                    .ok()
            })
            .collect();
        if let Some(s) = &spec {
            log::info!(
                "meshwall.validate: OpenAPI {} loaded: {} paths, {} operations",
                s.version,
                s.items.len(),
                s.items.iter().map(|i| i.operations.len()).sum::<usize>()
            );
        }
        if !config.hold_headers {
            log::warn!(
                "meshwall.validate: hold_headers is off: request headers reach the upstream before the body is checked"
            );
        }
        Ok(ValidatePolicy {
            cfg: config,
            spec,
            metrics,
        })
    }

    fn on_request_headers(&self, ex: &mut Exchange, req: &Request, host: &dyn Host) -> Action {
        let ct = req.headers.get("content-type").map(media_type);
        let Some(spec) = &self.spec else {
            // Threat protection only: JSON bodies.
            return match ct {
                Some((essence, _)) if req.has_body && is_json(&essence) => {
                    self.read_body(ex, req, host)
                }
                _ => self.finish(ex, host),
            };
        };
        let (found, miss) = match spec.strip_base(req.path_only()) {
            Some(path) => (spec.find(path), "unknown path"),
            None => (Vec::new(), "path outside the base paths"),
        };
        if found.is_empty() {
            let reply = LocalReply::problem(404, "no API operation matches the request path");
            return self
                .violation(ex, self.cfg.unknown_path, Metric::R404, reply, miss, host)
                .unwrap_or_else(|| self.finish(ex, host));
        }
        let chosen = found
            .iter()
            .find_map(|(item, values)| Some((item.operation(&req.method)?, values)));
        let (op, path_values) = match chosen {
            Some(c) => c,
            None => {
                // A CORS preflight for a declared method is not a call of OPTIONS itself.
                let preflight = req.method.eq_ignore_ascii_case("OPTIONS")
                    && req
                        .headers
                        .get("access-control-request-method")
                        .is_some_and(|m| {
                            found
                                .iter()
                                .any(|(item, _)| item.operation(m.trim()).is_some())
                        });
                if preflight {
                    return self.finish(ex, host);
                }
                let reply = LocalReply::builder(405, "method not allowed for this path")
                    .header("allow", spec::allow(found.iter().map(|(item, _)| *item)))
                    .build();
                return self
                    .violation(
                        ex,
                        self.cfg.unknown_method,
                        Metric::R405,
                        reply,
                        "undeclared method",
                        host,
                    )
                    .unwrap_or_else(|| self.finish(ex, host));
            }
        };
        let mut errors = Vec::new();
        crate::params::check(
            &op.params,
            path_values,
            req,
            &spec.schemas,
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
                return a;
            }
        }
        let Some(body) = &op.body else {
            return self.finish(ex, host);
        };
        ex.body_required = body.required;
        if !req.has_body {
            return match self.check_body(ex, &[], host) {
                Some(a) => a,
                None => self.finish(ex, host),
            };
        }
        let Some((essence, charset)) = ct else {
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
                .unwrap_or_else(|| self.finish(ex, host));
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
                .unwrap_or_else(|| self.finish(ex, host));
        };
        if !is_json(&essence) {
            // Only JSON bodies are validated; other declared media types pass as they are.
            return self.finish(ex, host);
        }
        ex.schema = media.schema;
        self.read_body(ex, req, host)
    }

    fn on_request_body(
        &self,
        ex: &mut Exchange,
        _req: &Request,
        body: Body<'_>,
        host: &dyn Host,
    ) -> Action {
        match body {
            Body::TooLarge { .. } => self
                .violation(
                    ex,
                    OnViolation::Reject,
                    Metric::R413,
                    self.too_large(),
                    "body over limit",
                    host,
                )
                .unwrap_or_else(|| self.finish(ex, host)),
            Body::Complete(b) => self
                .check_body(ex, b, host)
                .unwrap_or_else(|| self.finish(ex, host)),
        }
    }
}

#[cfg(test)]
mod tests;
