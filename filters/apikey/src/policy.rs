//! The `apikey` policy: finds the request's key, looks its SHA-256 digest up (O(1), confirmed
//! in constant time), checks the route's groups, and tells the upstream who the consumer is.
//!
//! Every request is first read as the backend will read it (`meshwall_core::canon`): the rules
//! match the canonical path, and an ambiguous path is refused with 400 before any rule runs; on
//! a route that needs a key, so is an ambiguous key source (`x_api_key` for `x-api-key`, a
//! bracketed or re-spelled parameter or cookie name). The consumer headers are stripped from
//! every request, in every spelling, and from request trailers, on every route: the upstream
//! only ever sees the values this filter wrote.

use crate::compile::{compile, Consumer, Metrics, Need, Rule};
use crate::config::ApiKeyConfig;
use crate::keys::KeyIndex;
use crate::sources::{extract, removal_ops, Refused, Source};
use meshwall_core::canon::same_header;
use meshwall_core::metrics::Counter;
use meshwall_core::{
    canonical_request_path, Action, CanonConfig, ConfigError, HeaderOp, Headers, Host, LocalReply,
    Policy, Refusals, Request,
};

/// Why a request is denied (401, or 403 for `Forbidden`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    Missing,
    Invalid,
    Multiple,
    Forbidden,
}

impl Denial {
    /// Every reason, for defining one counter each at configure time.
    pub const ALL: [Denial; 4] = [
        Denial::Missing,
        Denial::Invalid,
        Denial::Multiple,
        Denial::Forbidden,
    ];

    /// The fixed `detail` of the problem reply.
    pub fn detail(self) -> &'static str {
        match self {
            Denial::Missing => "API key is missing",
            Denial::Invalid => "API key is not valid",
            Denial::Multiple => "more than one API key in the request",
            Denial::Forbidden => "the consumer is not in a group allowed on this route",
        }
    }

    /// The `reason` label of its counter (`meshwall.apikey.denied.reason.<reason>`).
    pub fn reason(self) -> &'static str {
        match self {
            Denial::Missing => "missing",
            Denial::Invalid => "invalid",
            Denial::Multiple => "multiple",
            Denial::Forbidden => "forbidden",
        }
    }
}

pub struct ApiKeyPolicy {
    consumers: Vec<Consumer>,
    index: KeyIndex,
    sources: Vec<Source>,
    rules: Vec<Rule>,
    default_need: Need,
    forward: bool,
    consumer_header: String,
    groups_header: Option<String>,
    output_headers: Vec<String>,
    trailer_names: Vec<String>,
    bypass_cors_preflight: bool,
    challenge: String,
    canon: CanonConfig,
    refusals: Refusals,
    metrics: Metrics,
}

impl ApiKeyPolicy {
    pub fn from_config(cfg: ApiKeyConfig, host: &dyn Host) -> Result<Self, ConfigError> {
        let c = compile(&cfg)?;
        if c.plain_keys > 0 {
            meshwall_core::policy_log!(warn, crate::policy::ApiKeyPolicy,
                "{} of {} keys are given in clear in the configuration; give them as `sha256:<64 hex digits>` so it holds no secret",
                c.plain_keys,
                c.index.len()
            );
        }
        let metrics = Metrics::define(host, c.consumers.len(), c.index.len())?;
        Ok(ApiKeyPolicy {
            consumers: c.consumers,
            index: c.index,
            sources: c.sources,
            rules: c.rules,
            default_need: c.default_need,
            forward: cfg.forward,
            consumer_header: c.consumer_header,
            groups_header: c.groups_header,
            output_headers: c.output_headers,
            trailer_names: c.trailer_names,
            bypass_cors_preflight: cfg.bypass_cors_preflight,
            challenge: c.challenge,
            canon: cfg.canonical,
            refusals: Refusals::define(Self::NAME, host),
            metrics,
        })
    }

    /// Number of configured keys.
    pub fn key_count(&self) -> usize {
        self.index.len()
    }

    /// The largest number of digests a lookup compares (1 for any realistic key set).
    pub fn max_bucket_len(&self) -> usize {
        self.index.max_bucket_len()
    }

    fn count(&self, c: Counter, host: &dyn Host) {
        c.inc(host);
    }

    fn deny(&self, d: Denial, host: &dyn Host) -> Action {
        self.metrics.denied.inc(d.reason(), host);
        meshwall_core::policy_log!(
            debug,
            crate::policy::ApiKeyPolicy,
            "request denied: {}",
            d.reason()
        );
        let reply = match d {
            Denial::Forbidden => LocalReply::problem(403, d.detail()),
            _ => LocalReply::builder(401, d.detail())
                .header("www-authenticate", self.challenge.clone())
                .build(),
        };
        Action::Reply(reply)
    }

    /// Removes every header whose name folds (`_` as `-`, any case) into one of `names`.
    fn strip_ops(headers: &Headers, names: &[String]) -> Vec<HeaderOp> {
        let mut ops: Vec<HeaderOp> = Vec::new();
        for k in headers.names() {
            if names.iter().any(|n| same_header(n, k))
                && !ops
                    .iter()
                    .any(|o| matches!(o, HeaderOp::Remove(x) if x.eq_ignore_ascii_case(k)))
            {
                ops.push(HeaderOp::Remove(k.to_ascii_lowercase()));
            }
        }
        ops
    }

    fn is_cors_preflight(req: &Request) -> bool {
        req.method.eq_ignore_ascii_case("OPTIONS")
            && req.headers.contains("origin")
            && req.headers.contains("access-control-request-method")
    }

    fn decide(&self, req: &Request, host: &dyn Host) -> Action {
        // The one view every rule matches on; an ambiguous request goes no further.
        let path = match canonical_request_path(req, &self.canon) {
            Ok(p) => p,
            Err(a) => return self.refusals.refuse(&a, host),
        };
        let method = match meshwall_core::effective_method(req, &self.canon) {
            Ok(m) => m,
            Err(a) => return self.refusals.refuse(&a, host),
        };
        let mut ops = Self::strip_ops(&req.headers, &self.output_headers);
        if self.bypass_cors_preflight && Self::is_cors_preflight(req) {
            self.count(self.metrics.anonymous, host);
            return Action::Continue(ops);
        }
        let need = self
            .rules
            .iter()
            .find(|r| r.matches(&method, &path, &self.canon))
            .map_or(&self.default_need, |r| &r.need);
        if !need.requires {
            self.count(self.metrics.anonymous, host);
            return Action::Continue(ops);
        }
        let found = match extract(req, &self.sources) {
            Ok(f) => f,
            Err(Refused::Multiple) => return self.deny(Denial::Multiple, host),
            Err(Refused::Ambiguous(a)) => return self.refusals.refuse(&a, host),
        };
        let Some(found) = found else {
            if need.allow_missing {
                self.count(self.metrics.anonymous, host);
                return Action::Continue(ops);
            }
            return self.deny(Denial::Missing, host);
        };
        let Some(consumer) = self
            .index
            .lookup(found.key.as_bytes())
            .and_then(|i| self.consumers.get(i as usize))
        else {
            return self.deny(Denial::Invalid, host);
        };
        if !need.groups.is_empty() && !need.groups.iter().any(|g| consumer.groups.contains(g)) {
            return self.deny(Denial::Forbidden, host);
        }
        ops.push(HeaderOp::Set(
            self.consumer_header.clone(),
            consumer.name.clone(),
        ));
        if let (Some(h), Some(v)) = (&self.groups_header, &consumer.groups_value) {
            ops.push(HeaderOp::Set(h.clone(), v.clone()));
        }
        if !self.forward {
            ops.extend(removal_ops(req, &self.sources, &found));
        }
        self.count(self.metrics.allowed, host);
        Action::Continue(ops)
    }
}

impl Policy for ApiKeyPolicy {
    type Config = ApiKeyConfig;
    type Exchange = ();
    const NAME: &'static str = "apikey";

    /// Nothing to do on responses: the adaptor does not read them.
    fn uses_response(&self) -> bool {
        false
    }

    fn new(config: ApiKeyConfig, host: &dyn Host) -> Result<Self, ConfigError> {
        ApiKeyPolicy::from_config(config, host)
    }

    fn uses_client_ip(&self) -> bool {
        false
    }

    fn on_request_headers(&self, _ex: &mut (), req: &Request, host: &dyn Host) -> Action {
        self.decide(req, host)
    }

    /// A trailer in any spelling of a consumer header or a key source header (and `cookie`,
    /// when a key may come in a cookie) never reaches the upstream: some backends merge
    /// trailers into the headers.
    fn on_request_trailers(
        &self,
        _ex: &mut (),
        trailers: &Headers,
        _host: &dyn Host,
    ) -> Vec<HeaderOp> {
        Self::strip_ops(trailers, &self.trailer_names)
    }
}

#[cfg(test)]
#[path = "policy_tests/mod.rs"]
mod tests;
