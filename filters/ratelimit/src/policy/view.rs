//! What a rule sees of a request: the canonical request view, and the bucket keys built on it.
//!
//! Rules match, and keys are built, on meshwall-core's canonical view, never on the raw
//! request: the canonical path ([`meshwall_core::canonical_path`]: `//login`, `/./login`,
//! `/%6cogin` are `/login`), the method without regard to case, one value per key header.
//! What has no single meaning is refused with a 400 before any token is taken
//! ([`meshwall_core::Refusals`]): an ambiguous path (`/login;jsessionid=1`, `/a/..;/login`,
//! `%2F`, …) on every request, since every request is checked by at least one rule; a key
//! header given twice or in another spelling (`x_api_key` for `x-api-key`), or a `match.headers`
//! name in another spelling, when that rule's path and methods match.

use super::RateLimitPolicy;
use crate::compile::{Part, Rule};
use crate::config::OnMissingKey;
use meshwall_core::client::client_ip;
use meshwall_core::{canonical_path, Ambiguity, CanonConfig, Request};
use std::net::IpAddr;

/// The request as the rules see it.
pub(super) struct View<'a> {
    pub(super) req: &'a Request,
    /// The canonical path (no query).
    pub(super) path: String,
}

impl<'a> View<'a> {
    /// The canonical view of `req`, or why it has none.
    pub(super) fn new(req: &'a Request, canon: &CanonConfig) -> Result<Self, Ambiguity> {
        Ok(View {
            req,
            path: canonical_path(&req.path, canon)?,
        })
    }
}

fn push_part(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    out.push(tag);
    out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(bytes);
}

impl RateLimitPolicy {
    /// The client address (core's `client_ip`: the peer, or with trusted hops an entry of
    /// `x-forwarded-for`, which must then not be present in another spelling: a CGI-style
    /// backend reads `x_forwarded_for` into the same list).
    fn client_ip(&self, req: &Request) -> Result<Option<IpAddr>, Ambiguity> {
        client_ip(req, self.client_ip.xff_num_trusted_hops)
    }

    fn ip_bytes(&self, ip: IpAddr) -> Vec<u8> {
        match ip {
            IpAddr::V4(v4) => {
                let bits = u32::from(self.client_ip.ipv4_prefix_length.min(32));
                let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
                let mut b = vec![4, self.client_ip.ipv4_prefix_length];
                b.extend_from_slice(&(u32::from(v4) & mask).to_be_bytes());
                b
            }
            IpAddr::V6(v6) => {
                let bits = u32::from(self.client_ip.ipv6_prefix_length.min(128));
                let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                let mut b = vec![6, self.client_ip.ipv6_prefix_length];
                b.extend_from_slice(&(u128::from(v6) & mask).to_be_bytes());
                b
            }
        }
    }

    /// Whether `rule` applies to the request: path and methods on the canonical view, then
    /// the header presence conditions, whose names must not be present in another spelling.
    pub(super) fn applies(&self, rule: &Rule, view: &View) -> Result<bool, Ambiguity> {
        let m = &rule.matcher;
        if !m.path.matches(&view.path, &self.canon)
            || !m.methods.matches(&view.req.method, &self.canon)
        {
            return Ok(false);
        }
        let headers = &view.req.headers;
        headers.check_spellings(m.headers.iter().map(|(name, _)| name.as_str()))?;
        Ok(m.headers
            .iter()
            .all(|(name, present)| headers.contains(name) == *present))
    }

    /// The bytes that identify a request's bucket for `rule`; `None` when a part is missing.
    /// Every key header is checked (one value, one spelling) even when another part is missing.
    pub(super) fn key_material(
        &self,
        rule: &Rule,
        view: &View,
    ) -> Result<Option<Vec<u8>>, Ambiguity> {
        let mut out = Vec::new();
        let mut missing = false;
        for part in &rule.key {
            match part {
                Part::RemoteAddress => match self.client_ip(view.req)? {
                    Some(ip) => push_part(&mut out, 1, &self.ip_bytes(ip)),
                    None => missing = true,
                },
                Part::Header(name) => match view.req.headers.single(name)?.map(str::trim) {
                    Some(v) if !v.is_empty() => push_part(&mut out, 2, v.as_bytes()),
                    _ => missing = true,
                },
                Part::Path => push_part(&mut out, 3, self.key_path(&view.path).as_bytes()),
                Part::Method => {
                    push_part(&mut out, 4, self.key_method(&view.req.method).as_bytes())
                }
                Part::Constant(c) => push_part(&mut out, 5, c.as_bytes()),
            }
        }
        Ok((!missing).then_some(out))
    }

    /// The canonical path as a key: with `trailing_slash_insensitive`, `/a/` is `/a`.
    fn key_path<'p>(&self, path: &'p str) -> &'p str {
        match path.strip_suffix('/') {
            Some(p) if self.canon.trailing_slash_insensitive && !p.is_empty() => p,
            _ => path,
        }
    }

    /// The method as a key: upper-cased; with `head_matches_get`, `HEAD` is `GET`.
    fn key_method(&self, method: &str) -> String {
        let m = method.to_ascii_uppercase();
        if self.canon.head_matches_get && m == "HEAD" {
            "GET".into()
        } else {
            m
        }
    }

    /// The buckets (rule, key material) the request needs a token from, or why the request
    /// is ambiguous for a rule that would apply to it.
    pub(super) fn buckets(&self, view: &View) -> Result<Vec<(usize, Vec<u8>)>, Ambiguity> {
        let mut applied = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            if !self.applies(rule, view)? {
                continue;
            }
            match self.key_material(rule, view)? {
                Some(m) => applied.push((i, m)),
                None => match rule.on_missing {
                    OnMissingKey::Skip => {}
                    OnMissingKey::Anonymous => applied.push((i, vec![0xff])),
                },
            }
        }
        Ok(applied)
    }
}
