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
use meshwall_core::{canonical_request_path, Ambiguity, CanonConfig, Request};
use std::borrow::Cow;
use std::net::IpAddr;

/// The request as the rules see it.
pub(super) struct View<'a> {
    pub(super) req: &'a Request,
    /// The canonical path (no query).
    pub(super) path: String,
    /// The method the backend will run (`meshwall_core::effective_method`).
    pub(super) method: String,
}

impl<'a> View<'a> {
    /// The canonical view of `req`, or why it has none.
    pub(super) fn new(req: &'a Request, canon: &CanonConfig) -> Result<Self, Ambiguity> {
        Ok(View {
            req,
            path: canonical_request_path(req, canon)?,
            method: meshwall_core::effective_method(req, canon)?.into_owned(),
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
        if !m.path.matches(&view.path, &self.canon) || !m.methods.matches(&view.method, &self.canon)
        {
            return Ok(false);
        }
        let headers = &view.req.headers;
        headers.check_spellings(m.headers.iter().map(|(name, _)| name.as_str()))?;
        Ok(m.headers
            .iter()
            .all(|(name, present)| headers.contains(name) == *present))
    }

    /// The value of one key part for the request; `None` when it is missing (no client
    /// address, the header absent or empty).
    fn part_value<'v>(
        &self,
        part: &'v Part,
        view: &'v View,
    ) -> Result<Option<PartValue<'v>>, Ambiguity> {
        Ok(match part {
            Part::RemoteAddress => self.client_ip(view.req)?.map(PartValue::Ip),
            Part::Header(name) => match view.req.headers.single(name)?.map(str::trim) {
                Some(v) if !v.is_empty() => Some(PartValue::Text(v.into())),
                _ => None,
            },
            Part::Path => Some(PartValue::Text(self.key_path(&view.path).into())),
            Part::Method => Some(PartValue::Text(self.key_method(&view.method).into())),
            Part::Constant(c) => Some(PartValue::Text(c.as_str().into())),
        })
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
            let tag = match part {
                Part::RemoteAddress => 1,
                Part::Header(_) => 2,
                Part::Path => 3,
                Part::Method => 4,
                Part::Constant(_) => 5,
            };
            match self.part_value(part, view)? {
                Some(PartValue::Ip(ip)) => push_part(&mut out, tag, &self.ip_bytes(ip)),
                Some(PartValue::Text(t)) => push_part(&mut out, tag, t.as_bytes()),
                None => missing = true,
            }
        }
        Ok((!missing).then_some(out))
    }

    /// The descriptor entries of a global `rule` for the request, in key order: `None` when a
    /// part is missing (every key header is checked all the same). The client address is
    /// `remote_address` (`10.0.0.1`, as Envoy's `remote_address` action) when the prefix length
    /// keeps the whole address, else `masked_remote_address` (`10.0.0.0/24`, as Envoy's
    /// `masked_remote_address`).
    fn entries(&self, rule: &Rule, view: &View) -> Result<Option<Entries>, Ambiguity> {
        let mut out = Vec::with_capacity(rule.key.len());
        let mut missing = false;
        for (part, key) in rule.key.iter().zip(&rule.entry_keys) {
            match self.part_value(part, view)? {
                Some(PartValue::Ip(ip)) => out.push(self.address_entry(ip)),
                Some(PartValue::Text(t)) => out.push((key.clone(), t.into_owned())),
                None => missing = true,
            }
        }
        Ok((!missing).then_some(out))
    }

    /// The entries of a global rule's shared descriptor for requests with a missing part
    /// (`on_missing_key: anonymous`): every value empty, so all such requests share one counter.
    fn anonymous_entries(rule: &Rule) -> Entries {
        rule.entry_keys
            .iter()
            .map(|key| (key.clone(), String::new()))
            .collect()
    }

    fn address_entry(&self, ip: IpAddr) -> (String, String) {
        let (prefix, full) = match ip {
            IpAddr::V4(_) => (self.client_ip.ipv4_prefix_length, 32),
            IpAddr::V6(_) => (self.client_ip.ipv6_prefix_length, 128),
        };
        if prefix >= full {
            return ("remote_address".into(), ip.to_string());
        }
        let masked = match ip {
            IpAddr::V4(v4) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                IpAddr::from(std::net::Ipv4Addr::from(u32::from(v4) & mask))
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                IpAddr::from(std::net::Ipv6Addr::from(u128::from(v6) & mask))
            }
        };
        ("masked_remote_address".into(), format!("{masked}/{prefix}"))
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

    /// What the request is checked against: the buckets (rule, key material) of the local
    /// rules that apply, and the descriptors (rule, entries) of the global ones; or why the
    /// request is ambiguous for a rule that would apply to it.
    pub(super) fn applied(&self, view: &View) -> Result<Applied, Ambiguity> {
        let mut applied = Applied::default();
        for (i, rule) in self.rules.iter().enumerate() {
            if !self.applies(rule, view)? {
                continue;
            }
            if rule.global {
                match self.entries(rule, view)? {
                    Some(e) => applied.global.push((i, e)),
                    None => match rule.on_missing {
                        OnMissingKey::Skip => {}
                        OnMissingKey::Anonymous => {
                            applied.global.push((i, Self::anonymous_entries(rule)))
                        }
                    },
                }
                continue;
            }
            match self.key_material(rule, view)? {
                Some(m) => applied.local.push((i, m)),
                None => match rule.on_missing {
                    OnMissingKey::Skip => {}
                    OnMissingKey::Anonymous => applied.local.push((i, vec![0xff])),
                },
            }
        }
        Ok(applied)
    }
}

/// A global rule's descriptor: `(key, value)` entries.
pub(super) type Entries = Vec<(String, String)>;

/// The rules a request is checked against (see [`RateLimitPolicy::applied`]).
#[derive(Debug, Default)]
pub(super) struct Applied {
    pub(super) local: Vec<(usize, Vec<u8>)>,
    pub(super) global: Vec<(usize, Entries)>,
}

/// One key part's value for a request.
enum PartValue<'v> {
    Ip(IpAddr),
    Text(Cow<'v, str>),
}
