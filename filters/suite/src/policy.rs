//! The suite policy: the four policies chained in their documented order.

use crate::config::SuiteConfig;
use meshwall_core::{
    Action, Body, CalloutResponse, Chain, ConfigError, HeaderOp, Headers, Host, Policy, Request,
    Response,
};
use meshwall_headers::HeadersPolicy;
use meshwall_jwt::JwtPolicy;
use meshwall_ratelimit::RateLimitPolicy;
use meshwall_validate::ValidatePolicy;
use std::time::Duration;

/// headers → jwt → ratelimit → validate on requests; the reverse on responses.
type Policies = Chain<HeadersPolicy, Chain<JwtPolicy, Chain<RateLimitPolicy, ValidatePolicy>>>;

pub struct SuitePolicy {
    chain: Policies,
}

impl SuitePolicy {
    /// Which policies are on, in request order.
    pub fn enabled(&self) -> Vec<&'static str> {
        let c = &self.chain;
        let jrv = c.second.as_ref();
        let rv = jrv.and_then(|x| x.second.as_ref());
        [
            c.first.is_some().then_some("headers"),
            jrv.is_some_and(|x| x.first.is_some()).then_some("jwt"),
            rv.is_some_and(|x| x.first.is_some()).then_some("ratelimit"),
            rv.is_some_and(|x| x.second.is_some()).then_some("validate"),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

impl Policy for SuitePolicy {
    type Config = SuiteConfig;
    type Exchange = <Policies as Policy>::Exchange;
    const NAME: &'static str = "suite";

    fn new(c: SuiteConfig, host: &dyn Host) -> Result<Self, ConfigError> {
        let chain = Policies::new(
            (c.headers, Some((c.jwt, Some((c.ratelimit, c.validate))))),
            host,
        )?;
        let suite = SuitePolicy { chain };
        log::info!(
            "meshwall.suite: policies on: {}",
            suite.enabled().join(", ")
        );
        Ok(suite)
    }

    fn uses_request(&self) -> bool {
        self.chain.uses_request()
    }

    fn uses_client_ip(&self) -> bool {
        self.chain.uses_client_ip()
    }

    fn on_request_headers(
        &self,
        ex: &mut Self::Exchange,
        req: &Request,
        host: &dyn Host,
    ) -> Action {
        self.chain.on_request_headers(ex, req, host)
    }

    fn on_request_body(
        &self,
        ex: &mut Self::Exchange,
        req: &Request,
        body: Body<'_>,
        host: &dyn Host,
    ) -> Action {
        self.chain.on_request_body(ex, req, body, host)
    }

    fn on_request_trailers(
        &self,
        ex: &mut Self::Exchange,
        t: &Headers,
        host: &dyn Host,
    ) -> Vec<HeaderOp> {
        self.chain.on_request_trailers(ex, t, host)
    }

    fn on_response_headers(
        &self,
        ex: &mut Self::Exchange,
        resp: &Response,
        host: &dyn Host,
    ) -> Vec<HeaderOp> {
        self.chain.on_response_headers(ex, resp, host)
    }

    fn on_response_trailers(
        &self,
        ex: &mut Self::Exchange,
        t: &Headers,
        host: &dyn Host,
    ) -> Vec<HeaderOp> {
        self.chain.on_response_trailers(ex, t, host)
    }

    fn tick_period(&self) -> Option<Duration> {
        self.chain.tick_period()
    }

    fn on_tick(&self, host: &dyn Host) {
        self.chain.on_tick(host)
    }

    fn max_callout_body(&self) -> usize {
        self.chain.max_callout_body()
    }

    fn on_http_call_response(&self, token: u32, response: CalloutResponse, host: &dyn Host) {
        self.chain.on_http_call_response(token, response, host)
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
