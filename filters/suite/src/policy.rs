//! The suite policy: every policy chained in its documented order.

use crate::config::SuiteConfig;
use meshwall_access::AccessPolicy;
use meshwall_apikey::ApiKeyPolicy;
use meshwall_core::{
    Action, Body, CalloutResponse, Chain, ConfigError, GrpcResponse, HeaderOp, Headers, Host,
    Policy, Request, Response, Verdict,
};
use meshwall_cors::CorsPolicy;
use meshwall_headers::HeadersPolicy;
use meshwall_jwt::JwtPolicy;
use meshwall_ratelimit::RateLimitPolicy;
use meshwall_validate::ValidatePolicy;
use std::time::Duration;

/// Requests: headers (request cleanup) → access → cors → jwt → apikey → ratelimit → validate;
/// responses the other way, so headers cleans every response, local replies included, last.
type Policies = Chain<
    HeadersPolicy,
    Chain<
        AccessPolicy,
        Chain<
            CorsPolicy,
            Chain<JwtPolicy, Chain<ApiKeyPolicy, Chain<RateLimitPolicy, ValidatePolicy>>>,
        >,
    >,
>;

/// The order of the sections, as requests meet them.
pub const ORDER: &[&str] = &[
    "headers",
    "access",
    "cors",
    "jwt",
    "apikey",
    "ratelimit",
    "validate",
];

pub struct SuitePolicy {
    chain: Policies,
    enabled: Vec<&'static str>,
}

impl SuitePolicy {
    /// Which policies are on, in request order.
    pub fn enabled(&self) -> &[&'static str] {
        &self.enabled
    }
}

/// Checks that need two sections at once.
fn check_together(c: &SuiteConfig) -> Result<(), ConfigError> {
    if let (Some(_), Some(apikey)) = (&c.cors, &c.apikey) {
        if apikey.bypass_cors_preflight {
            return Err(ConfigError::new(
                "apikey.bypass_cors_preflight",
                "not with a `cors` section: cors answers the preflights it allows before apikey, \
                 and the others must not pass without a key",
            ));
        }
    }
    if let (Some(_), Some(jwt)) = (&c.cors, &c.jwt) {
        if jwt.bypass_cors_preflight {
            // cors answers the preflights it allows before jwt sees them; with the bypass on,
            // jwt would also let through the ones cors does not allow.
            return Err(ConfigError::new(
                "jwt.bypass_cors_preflight",
                "not with a `cors` section: cors answers the preflights it allows before jwt, \
                 and the others must not pass without a token",
            ));
        }
    }
    Ok(())
}

impl Policy for SuitePolicy {
    type Config = SuiteConfig;
    type Exchange = <Policies as Policy>::Exchange;
    const NAME: &'static str = "suite";

    fn new(c: SuiteConfig, host: &dyn Host) -> Result<Self, ConfigError> {
        check_together(&c)?;
        let present = [
            c.headers.is_some(),
            c.access.is_some(),
            c.cors.is_some(),
            c.jwt.is_some(),
            c.apikey.is_some(),
            c.ratelimit.is_some(),
            c.validate.is_some(),
        ];
        let enabled = ORDER
            .iter()
            .zip(present)
            .filter_map(|(name, on)| on.then_some(*name))
            .collect();
        let chain = Policies::new(
            (
                c.headers,
                Some((
                    c.access,
                    Some((
                        c.cors,
                        Some((c.jwt, Some((c.apikey, Some((c.ratelimit, c.validate)))))),
                    )),
                )),
            ),
            host,
        )?;
        let suite = SuitePolicy { chain, enabled };
        meshwall_core::policy_log!(
            info,
            crate::policy::SuitePolicy,
            "policies on: {}",
            suite.enabled.join(", ")
        );
        Ok(suite)
    }

    fn uses_request(&self) -> bool {
        self.chain.uses_request()
    }

    fn uses_client_ip(&self) -> bool {
        self.chain.uses_client_ip()
    }

    fn uses_response(&self) -> bool {
        self.chain.uses_response()
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
    ) -> Verdict {
        self.chain.on_request_body(ex, req, body, host)
    }

    fn on_request_callout(
        &self,
        ex: &mut Self::Exchange,
        req: &Request,
        token: u32,
        response: GrpcResponse,
        host: &dyn Host,
    ) -> Action {
        self.chain
            .on_request_callout(ex, req, token, response, host)
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
