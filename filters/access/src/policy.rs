//! The `access` policy: allows or denies a request by its client address.
//!
//! ## The decision, in order
//! 1. The client address: the downstream address Envoy gives the filter, or with
//!    `client_ip.xff_num_trusted_hops` = N > 0 the N-th entry from the right of
//!    `x-forwarded-for` (core's [`client_ip`], shared with `ratelimit`); IPv4-mapped IPv6
//!    addresses are the IPv4 address. Unknown → **denied** (fail closed). With N > 0,
//!    `x-forwarded-for` in another spelling (`x_forwarded_for`) is refused as ambiguous, and a
//!    trusted entry that is not an address means the client is unknown (it is not replaced by
//!    the peer, which is then a proxy and often an allowed internal address).
//! 2. The global `deny` list: an address in it is denied on every request, whatever rule
//!    matches.
//! 3. The first rule whose methods and path match (on the canonical request view) decides:
//!    an address in its `deny` is denied (deny overrides allow); otherwise its `allow` list
//!    applies, or the global `allow` when the rule has none.
//! 4. No rule matches: the global `allow` applies.
//!
//! An `allow` list that applies admits the addresses in it; an empty one admits any address.
//! A denied request gets a 403 problem+json (the same reply whatever the reason, without the
//! address) and never reaches the upstream. The path is read only when a rule's methods match
//! and its path must be compared: an ambiguous path ([`meshwall_core::canonical_path`]) is then
//! refused with a 400 ([`Refusals`]), since its verdict could depend on which reading the
//! backend makes.

use crate::compile::{self, Allow, Compiled, DenyReason, Metrics};
use crate::config::AccessConfig;
use meshwall_core::client::client_ip;
use meshwall_core::{
    canonical_request_path, Action, Ambiguity, CanonConfig, ConfigError, Host, LocalReply, Policy,
    Refusals, Request,
};
use std::net::IpAddr;

/// The fixed sentence of every 403.
pub const DENIED_DETAIL: &str = "access from this client address is not allowed";

/// What the policy decided for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny(DenyReason),
}

/// The `access` policy (one per worker; no state besides its configuration).
pub struct AccessPolicy {
    cfg: Compiled,
    canon: CanonConfig,
    metrics: Metrics,
    refusals: Refusals,
}

impl AccessPolicy {
    /// Checks the configuration and builds the policy.
    pub fn from_config(cfg: AccessConfig, host: &dyn Host) -> Result<Self, ConfigError> {
        let compiled = compile::compile(&cfg)?;
        Ok(AccessPolicy {
            cfg: compiled,
            canon: cfg.canonical,
            metrics: Metrics::define(host)?,
            refusals: Refusals::define(Self::NAME, host),
        })
    }

    /// The client address the lists are checked against (see the module documentation);
    /// `Ok(None)`: unknown.
    pub fn client_address(&self, req: &Request) -> Result<Option<IpAddr>, Ambiguity> {
        client_ip(req, self.cfg.trusted_hops)
    }

    /// The verdict for `req`, or why the request is ambiguous (a pure function of the request
    /// and the configuration).
    pub fn decide(&self, req: &Request) -> Result<Verdict, Ambiguity> {
        let Some(ip) = self.client_address(req)? else {
            return Ok(Verdict::Deny(DenyReason::NoClientAddress));
        };
        if self.cfg.deny.contains(ip) {
            return Ok(Verdict::Deny(DenyReason::DenyList));
        }
        let mut path: Option<String> = None;
        // Read only when a rule needs it (without rules the verdict depends on neither).
        let mut method = None;
        for rule in &self.cfg.rules {
            let m = match &method {
                Some(m) => m,
                None => method.insert(meshwall_core::effective_method(req, &self.canon)?),
            };
            if !rule.route.matches_method(m, &self.canon) {
                continue;
            }
            let p = match &path {
                Some(p) => p,
                None => path.insert(canonical_request_path(req, &self.canon)?),
            };
            if !rule.route.path.matches(p, &self.canon) {
                continue;
            }
            if rule.deny.contains(ip) {
                return Ok(Verdict::Deny(DenyReason::DenyList));
            }
            return Ok(admit(rule.allow.as_ref().unwrap_or(&self.cfg.allow), ip));
        }
        Ok(admit(&self.cfg.allow, ip))
    }
}

fn admit(allow: &Allow, ip: IpAddr) -> Verdict {
    if allow.admits(ip) {
        Verdict::Allow
    } else {
        Verdict::Deny(DenyReason::NotAllowed)
    }
}

impl Policy for AccessPolicy {
    type Config = AccessConfig;
    type Exchange = ();
    const NAME: &'static str = "access";

    /// Nothing to do on responses: the adaptor does not read them.
    fn uses_response(&self) -> bool {
        false
    }

    fn new(config: AccessConfig, host: &dyn Host) -> Result<Self, ConfigError> {
        Self::from_config(config, host)
    }

    fn on_request_headers(&self, _ex: &mut (), req: &Request, host: &dyn Host) -> Action {
        match self.decide(req) {
            Err(a) => self.refusals.refuse(&a, host),
            Ok(Verdict::Allow) => {
                self.metrics.allowed.inc(host);
                Action::proceed()
            }
            Ok(Verdict::Deny(reason)) => {
                self.metrics.denied.inc(reason.code(), host);
                if reason == DenyReason::NoClientAddress {
                    meshwall_core::policy_log!(
                        info,
                        crate::policy::AccessPolicy,
                        "403 no client address (denied)"
                    );
                } else {
                    meshwall_core::policy_log!(
                        debug,
                        crate::policy::AccessPolicy,
                        "403 {}",
                        reason.code()
                    );
                }
                Action::Reply(LocalReply::problem(403, DENIED_DETAIL))
            }
        }
    }
}

#[cfg(test)]
#[path = "policy_tests/mod.rs"]
mod tests;
