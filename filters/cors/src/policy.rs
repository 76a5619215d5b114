//! The `cors` policy: answers the CORS preflights of allowed origins, puts the CORS headers on
//! the responses to their actual requests, and keeps every CORS decision on governed routes
//! its own. No host calls besides metrics.
//!
//! ## One request
//! 1. The canonical path picks the policy (first matching rule, else the default); an ambiguous
//!    path is refused (400), a path no policy governs is left alone entirely.
//! 2. On a governed path, the CORS request headers must have one meaning: `Origin`,
//!    `Access-Control-Request-Method` and `-Private-Network` given once, none of the
//!    `Access-Control-Request-*` names in another spelling (`access_control_request_method`);
//!    else 400.
//! 3. A preflight (`OPTIONS` with a non-empty `Origin` and `Access-Control-Request-Method`) from
//!    an allowed origin, for an allowed method and allowed headers (and Private Network Access
//!    when asked for and enabled) is answered here: 204 with the `Access-Control-Allow-*`
//!    headers. Any other preflight gets no CORS headers: it goes on to the upstream
//!    (`forward_not_matching_preflights`, Envoy's default `true`) or is answered 403.
//! 4. Every response on a governed path (the upstream's, or a local reply of Envoy or of a
//!    later filter) loses the upstream's `Access-Control-*` headers, so a backend cannot widen
//!    the policy; an actual request from an allowed origin gets `Access-Control-Allow-Origin`
//!    (its origin, or `*` for a wildcard policy without credentials),
//!    `Access-Control-Allow-Credentials`, `Access-Control-Expose-Headers`; and `Vary: Origin`
//!    is added (after the upstream's `Vary`), since the answer depends on the origin.

use crate::compile::{compile, Names, Resolved, Route};
use crate::config::CorsConfig;
use crate::origin::canonical_origin;
use meshwall_core::canon::same_header;
use meshwall_core::config::is_tchar;
use meshwall_core::metrics::{Counter, Counters, Label, Registry};
use meshwall_core::{
    canonical_request_path, Action, Ambiguity, CanonConfig, ConfigError, HeaderOp, Headers, Host,
    LocalReply, Policy, Refusals, Request, Response,
};

pub const ORIGIN: &str = "origin";
pub const REQUEST_METHOD: &str = "access-control-request-method";
pub const REQUEST_HEADERS: &str = "access-control-request-headers";
pub const REQUEST_PRIVATE_NETWORK: &str = "access-control-request-private-network";
pub const ALLOW_ORIGIN: &str = "access-control-allow-origin";
pub const ALLOW_CREDENTIALS: &str = "access-control-allow-credentials";
pub const ALLOW_METHODS: &str = "access-control-allow-methods";
pub const ALLOW_HEADERS: &str = "access-control-allow-headers";
pub const ALLOW_PRIVATE_NETWORK: &str = "access-control-allow-private-network";
pub const EXPOSE_HEADERS: &str = "access-control-expose-headers";
pub const MAX_AGE: &str = "access-control-max-age";
/// Every response header of the CORS protocol starts with this.
const RESPONSE_PREFIX: &str = "access-control-";
/// What a preflight's answer depends on.
const PREFLIGHT_VARY: &str =
    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers";

/// Methods browsers send cross-origin without asking: always allowed.
const SAFELISTED_METHODS: &[&str] = &["GET", "HEAD", "POST"];

/// Why a preflight is not allowed (the `reason` of the 403, when it is answered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotAllowed {
    Origin,
    Method,
    Headers,
    PrivateNetwork,
}

impl NotAllowed {
    /// Every reason, for defining one counter each at configure time.
    pub const ALL: [NotAllowed; 4] = [
        NotAllowed::Origin,
        NotAllowed::Method,
        NotAllowed::Headers,
        NotAllowed::PrivateNetwork,
    ];

    pub fn reason(self) -> &'static str {
        match self {
            NotAllowed::Origin => "origin_not_allowed",
            NotAllowed::Method => "method_not_allowed",
            NotAllowed::Headers => "headers_not_allowed",
            NotAllowed::PrivateNetwork => "private_network_not_allowed",
        }
    }
}

/// What the policy makes of a request (pure: no metrics, no logs).
#[derive(Debug)]
pub enum Decision {
    /// No policy governs the path.
    Ungoverned,
    /// The path or a CORS request header has no single meaning.
    Ambiguous(Ambiguity),
    /// A governed request that is not a preflight: `allow` goes on its response (empty when
    /// it has no `Origin` or the origin is not allowed).
    Actual {
        origin_allowed: Option<bool>,
        allow: Vec<HeaderOp>,
    },
    /// A CORS preflight on a governed path: the 204 answer, or why it is not allowed.
    Preflight {
        answer: Result<LocalReply, NotAllowed>,
        /// The policy forwards preflights it does not allow (else: 403).
        forward: bool,
    },
}

/// `meshwall.cors.origin_{valid,invalid}`, `meshwall.cors.preflight_allowed`, and the
/// preflights not allowed, forwarded or answered 403, per reason
/// (`meshwall.cors.preflight_denied.reason.<NotAllowed::reason>`).
struct Metrics {
    origin_valid: Counter,
    origin_invalid: Counter,
    preflight_allowed: Counter,
    preflight_forwarded: Counters,
    preflight_denied: Counters,
}

impl Metrics {
    fn define(host: &dyn Host) -> Result<Self, ConfigError> {
        let m = Registry::of::<CorsPolicy>(host);
        let reasons = NotAllowed::ALL.map(NotAllowed::reason);
        Ok(Metrics {
            origin_valid: m.counter("origin_valid", &[])?,
            origin_invalid: m.counter("origin_invalid", &[])?,
            preflight_allowed: m.counter("preflight_allowed", &[])?,
            preflight_forwarded: m.counters("preflight_forwarded", Label::Reason, &reasons)?,
            preflight_denied: m.counters("preflight_denied", Label::Reason, &reasons)?,
        })
    }
}

/// The `cors` policy.
pub struct CorsPolicy {
    routes: Vec<Route>,
    default: Option<Resolved>,
    canon: CanonConfig,
    refusals: Refusals,
    metrics: Metrics,
}

/// Per-request state: whether the response is governed, and the CORS headers it gets.
#[derive(Debug, Default)]
pub enum Exchange {
    /// Not governed, or answered here: the response phase changes nothing.
    #[default]
    Untouched,
    /// Governed: the upstream's `Access-Control-*` go, `allow` is added, `Vary: Origin` too.
    Governed { allow: Vec<HeaderOp> },
}

/// The one value of `name`. Given twice, in another spelling, or as a list (`a, b`: Envoy's
/// HTTP/1.1 codec joins a repeated `Origin` or `Access-Control-Request-Method` into one value;
/// `Origin: a b` is RFC 6454's list form), it has no single meaning.
fn one_value<'h>(
    h: &'h Headers,
    name: &str,
    separators: &[char],
) -> Result<Option<&'h str>, Ambiguity> {
    let v = h.single(name)?;
    if v.is_some_and(|v| v.trim().contains(separators)) {
        return Err(Ambiguity::RepeatedHeader(name.to_string()));
    }
    Ok(v)
}

/// The requested header names (lower-case, once each), or `None` when one is not a token.
fn requested_headers(h: &Headers) -> Option<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for item in h.get_all(REQUEST_HEADERS).flat_map(|v| v.split(',')) {
        let name = item.trim();
        if name.is_empty() {
            continue;
        }
        if !name.chars().all(is_tchar) {
            return None;
        }
        let name = name.to_ascii_lowercase();
        if !out.contains(&name) {
            out.push(name);
        }
    }
    Some(out)
}

fn method_allowed(p: &Resolved, m: &str) -> bool {
    if m.is_empty() || m == "*" || !m.chars().all(is_tchar) {
        return false;
    }
    SAFELISTED_METHODS.iter().any(|s| s.eq_ignore_ascii_case(m))
        || match &p.methods {
            Names::Any => true,
            Names::List(l) => l.iter().any(|x| x.eq_ignore_ascii_case(m)),
        }
}

/// `*` covers every header but `authorization`, as a browser's wildcard does.
fn header_allowed(p: &Resolved, name: &str) -> bool {
    match &p.headers {
        Names::Any => name != "authorization",
        Names::List(l) => l.iter().any(|x| x == name),
    }
}

fn allow_origin_value<'a>(p: &Resolved, origin: &'a str) -> &'a str {
    if p.wildcard {
        "*"
    } else {
        origin
    }
}

/// The headers on the response to an actual request from an allowed origin.
fn actual_headers(p: &Resolved, origin: &str) -> Vec<HeaderOp> {
    let mut ops = vec![HeaderOp::Set(
        ALLOW_ORIGIN.into(),
        allow_origin_value(p, origin).into(),
    )];
    if p.credentials {
        ops.push(HeaderOp::Set(ALLOW_CREDENTIALS.into(), "true".into()));
    }
    if let Some(e) = &p.expose {
        ops.push(HeaderOp::Set(EXPOSE_HEADERS.into(), e.clone()));
    }
    ops
}

/// The 204 answer to an allowed preflight, or why it is not allowed.
fn answer(
    p: &Resolved,
    origin: &str,
    method: &str,
    headers: &Headers,
    private_network: bool,
) -> Result<LocalReply, NotAllowed> {
    if !method_allowed(p, method) {
        return Err(NotAllowed::Method);
    }
    let requested = requested_headers(headers).ok_or(NotAllowed::Headers)?;
    if !requested.iter().all(|h| header_allowed(p, h)) {
        return Err(NotAllowed::Headers);
    }
    if private_network && !p.private_network {
        return Err(NotAllowed::PrivateNetwork);
    }
    let mut h: Vec<(String, String)> =
        vec![(ALLOW_ORIGIN.into(), allow_origin_value(p, origin).into())];
    if p.credentials {
        h.push((ALLOW_CREDENTIALS.into(), "true".into()));
    }
    // Browsers compare methods byte for byte: the requested spelling is always listed.
    let methods = match &p.methods {
        Names::Any => method.to_string(),
        Names::List(l) if l.iter().any(|x| x == method) => l.join(", "),
        Names::List(l) => l
            .iter()
            .map(String::as_str)
            .chain([method])
            .collect::<Vec<_>>()
            .join(", "),
    };
    h.push((ALLOW_METHODS.into(), methods));
    let allow_headers = match &p.headers {
        Names::Any => Some(requested.join(", ")).filter(|v| !v.is_empty()),
        list => list.value(),
    };
    if let Some(v) = allow_headers {
        h.push((ALLOW_HEADERS.into(), v));
    }
    if let Some(age) = p.max_age {
        h.push((MAX_AGE.into(), age.to_string()));
    }
    if private_network {
        h.push((ALLOW_PRIVATE_NETWORK.into(), "true".into()));
    }
    h.push(("vary".into(), PREFLIGHT_VARY.into()));
    Ok(LocalReply {
        status: 204,
        headers: h,
        body: Vec::new(),
    })
}

/// One `Remove` per distinct `Access-Control-*` name present (in any spelling).
fn strip_ops<'a>(names: impl Iterator<Item = &'a str>) -> Vec<HeaderOp> {
    let mut ops: Vec<HeaderOp> = Vec::new();
    for name in names {
        let ours = name
            .get(..RESPONSE_PREFIX.len())
            .is_some_and(|head| same_header(head, RESPONSE_PREFIX));
        let lower = name.to_ascii_lowercase();
        if ours
            && !ops
                .iter()
                .any(|op| matches!(op, HeaderOp::Remove(n) if *n == lower))
        {
            ops.push(HeaderOp::Remove(lower));
        }
    }
    ops
}

/// Whether the response already varies on `Origin` (or on everything).
fn varies_on_origin(h: &Headers) -> bool {
    h.get_all("vary")
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|t| t == "*" || t.eq_ignore_ascii_case(ORIGIN))
}

impl CorsPolicy {
    pub fn from_config(cfg: CorsConfig, host: &dyn Host) -> Result<Self, ConfigError> {
        let compiled = compile(&cfg)?;
        Ok(CorsPolicy {
            routes: compiled.routes,
            default: compiled.default,
            refusals: Refusals::define(Self::NAME, host),
            metrics: Metrics::define(host)?,
            canon: cfg.canonical,
        })
    }

    /// The policy governing a canonical path (`None`: not governed).
    fn policy_for(&self, path: &str) -> Option<&Resolved> {
        match self
            .routes
            .iter()
            .find(|r| r.path.matches(path, &self.canon))
        {
            Some(r) => r.policy.as_ref(),
            None => self.default.as_ref(),
        }
    }

    /// What the policy makes of `req`; [`Policy::on_request_headers`] acts on it.
    pub fn decide(&self, req: &Request) -> Decision {
        match self.try_decide(req) {
            Ok(d) => d,
            Err(a) => Decision::Ambiguous(a),
        }
    }

    fn try_decide(&self, req: &Request) -> Result<Decision, Ambiguity> {
        let path = canonical_request_path(req, &self.canon)?;
        // Not matched on here, but a method override would make the backend run another
        // handler than the one this answer was decided for.
        meshwall_core::effective_method(req, &self.canon)?;
        let Some(p) = self.policy_for(&path) else {
            return Ok(Decision::Ungoverned);
        };
        let h = &req.headers;
        h.check_spellings([REQUEST_METHOD, REQUEST_HEADERS, REQUEST_PRIVATE_NETWORK])?;
        let Some(origin) = one_value(h, ORIGIN, &[',', ' '])?.filter(|o| !o.is_empty()) else {
            return Ok(Decision::Actual {
                origin_allowed: None,
                allow: Vec::new(),
            });
        };
        let allowed =
            canonical_origin(origin).is_some_and(|o| p.origins.iter().any(|m| m.matches(&o)));
        let requested = if req.method.eq_ignore_ascii_case("OPTIONS") {
            one_value(h, REQUEST_METHOD, &[','])?.filter(|m| !m.is_empty())
        } else {
            None
        };
        let Some(method) = requested else {
            return Ok(Decision::Actual {
                origin_allowed: Some(allowed),
                allow: if allowed {
                    actual_headers(p, origin)
                } else {
                    Vec::new()
                },
            });
        };
        let private_network = one_value(h, REQUEST_PRIVATE_NETWORK, &[','])? == Some("true");
        let answer = if allowed {
            answer(p, origin, method, h, private_network)
        } else {
            Err(NotAllowed::Origin)
        };
        Ok(Decision::Preflight {
            answer,
            forward: p.forward_not_matching,
        })
    }

    /// Whether `req` is a CORS preflight for a path a CORS policy governs (allowed or not).
    /// For jwt's `bypass_cors_preflight`: see docs/cors.md, "With jwt".
    pub fn is_preflight_for_configured_route(&self, req: &Request) -> bool {
        matches!(self.decide(req), Decision::Preflight { .. })
    }

    /// Whether this policy answers `req` itself as an allowed preflight (204).
    pub fn answers_preflight(&self, req: &Request) -> bool {
        matches!(self.decide(req), Decision::Preflight { answer: Ok(_), .. })
    }

    fn count_origin(&self, allowed: Option<bool>, host: &dyn Host) {
        match allowed {
            Some(true) => self.metrics.origin_valid.inc(host),
            Some(false) => self.metrics.origin_invalid.inc(host),
            None => {}
        }
    }
}

impl Policy for CorsPolicy {
    type Config = CorsConfig;
    type Exchange = Exchange;
    const NAME: &'static str = "cors";

    fn new(config: CorsConfig, host: &dyn Host) -> Result<Self, ConfigError> {
        Self::from_config(config, host)
    }

    fn uses_client_ip(&self) -> bool {
        false
    }

    fn on_request_headers(&self, ex: &mut Exchange, req: &Request, host: &dyn Host) -> Action {
        *ex = Exchange::Untouched;
        match self.decide(req) {
            Decision::Ungoverned => Action::proceed(),
            Decision::Ambiguous(a) => self.refusals.refuse(&a, host),
            Decision::Actual {
                origin_allowed,
                allow,
            } => {
                self.count_origin(origin_allowed, host);
                *ex = Exchange::Governed { allow };
                Action::proceed()
            }
            Decision::Preflight {
                answer: Ok(reply), ..
            } => {
                self.count_origin(Some(true), host);
                self.metrics.preflight_allowed.inc(host);
                Action::Reply(reply)
            }
            Decision::Preflight {
                answer: Err(why),
                forward,
            } => {
                self.count_origin(Some(why != NotAllowed::Origin), host);
                if forward {
                    self.metrics.preflight_forwarded.inc(why.reason(), host);
                    *ex = Exchange::Governed { allow: Vec::new() };
                    return Action::proceed();
                }
                self.metrics.preflight_denied.inc(why.reason(), host);
                meshwall_core::policy_log!(
                    info,
                    crate::policy::CorsPolicy,
                    "403 preflight not allowed: {}",
                    why.reason()
                );
                Action::Reply(
                    LocalReply::builder(403, "the CORS preflight is not allowed")
                        .member("reason", serde_json::Value::from(why.reason()))
                        .build(),
                )
            }
        }
    }

    fn on_response_headers(
        &self,
        ex: &mut Exchange,
        resp: &Response,
        _host: &dyn Host,
    ) -> Vec<HeaderOp> {
        let Exchange::Governed { allow } = ex else {
            return Vec::new();
        };
        let mut ops = strip_ops(resp.headers.names());
        ops.extend(allow.iter().cloned());
        if !varies_on_origin(&resp.headers) {
            ops.push(HeaderOp::Append("vary".into(), "Origin".into()));
        }
        ops
    }

    /// Response trailers on a governed path lose `Access-Control-*` too.
    fn on_response_trailers(
        &self,
        ex: &mut Exchange,
        trailers: &Headers,
        _host: &dyn Host,
    ) -> Vec<HeaderOp> {
        match ex {
            Exchange::Governed { .. } => strip_ops(trailers.names()),
            Exchange::Untouched => Vec::new(),
        }
    }
}

#[cfg(test)]
#[path = "policy_tests/mod.rs"]
mod tests;
