//! The configuration compiled into what requests are checked against: every address list as a
//! range set, every rule's match on the canonical request view, the metrics. Everything is
//! checked once, when the configuration loads; every error names its field
//! (`rules[1].allow[3]`).

use crate::cidr::Cidr;
use crate::config::{AccessConfig, RuleConfig, MAX_TRUSTED_HOPS};
use crate::ipset::IpSet;
use meshwall_core::metrics::{Counter, Counters, Label, Registry};
use meshwall_core::{CanonConfig, ConfigError, Host, RouteMatch};

/// Which addresses an `allow` list lets through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Allow {
    /// An empty list: any address (that no deny list has).
    Any,
    Only(IpSet),
}

impl Allow {
    pub(crate) fn admits(&self, ip: std::net::IpAddr) -> bool {
        match self {
            Allow::Any => true,
            Allow::Only(set) => set.contains(ip),
        }
    }
}

/// A rule, ready to be matched.
pub(crate) struct Rule {
    pub(crate) route: RouteMatch,
    /// `None`: the global `allow` applies.
    pub(crate) allow: Option<Allow>,
    pub(crate) deny: IpSet,
}

/// The whole configuration, checked.
pub(crate) struct Compiled {
    pub(crate) allow: Allow,
    pub(crate) deny: IpSet,
    pub(crate) rules: Vec<Rule>,
    pub(crate) trusted_hops: u32,
}

/// Parses a list of CIDR blocks at `field`; entry `i` is `field[i]` in errors.
pub(crate) fn cidr_list(field: &str, list: &[String]) -> Result<IpSet, ConfigError> {
    let mut blocks = Vec::with_capacity(list.len());
    for (i, entry) in list.iter().enumerate() {
        blocks.push(Cidr::parse(entry).map_err(|e| ConfigError::new(format!("{field}[{i}]"), e))?);
    }
    Ok(IpSet::new(blocks))
}

fn allow_list(field: &str, list: &[String]) -> Result<Allow, ConfigError> {
    if list.is_empty() {
        return Ok(Allow::Any);
    }
    Ok(Allow::Only(cidr_list(field, list)?))
}

fn rule(i: usize, rc: &RuleConfig, canon: &CanonConfig) -> Result<Rule, ConfigError> {
    let f = |x: &str| format!("rules[{i}].{x}");
    Ok(Rule {
        route: rc.route.compile(&f("match"), canon)?,
        allow: match &rc.allow {
            Some(list) => Some(allow_list(&f("allow"), list)?),
            None => None,
        },
        deny: cidr_list(&f("deny"), &rc.deny)?,
    })
}

pub(crate) fn compile(cfg: &AccessConfig) -> Result<Compiled, ConfigError> {
    if cfg.allow.is_empty() && cfg.deny.is_empty() && cfg.rules.is_empty() {
        return Err(ConfigError::new(
            ".",
            "give at least one of `allow`, `deny`, `rules` (without them every address is allowed)",
        ));
    }
    if cfg.client_ip.xff_num_trusted_hops > MAX_TRUSTED_HOPS {
        return Err(ConfigError::new(
            "client_ip.xff_num_trusted_hops",
            format!("must be at most {MAX_TRUSTED_HOPS}"),
        ));
    }
    let allow = allow_list("allow", &cfg.allow)?;
    let deny = cidr_list("deny", &cfg.deny)?;
    let rules = cfg
        .rules
        .iter()
        .enumerate()
        .map(|(i, rc)| rule(i, rc, &cfg.canonical))
        .collect::<Result<Vec<Rule>, ConfigError>>()?;
    Ok(Compiled {
        allow,
        deny,
        rules,
        trusted_hops: cfg.client_ip.xff_num_trusted_hops,
    })
}

/// Why a request was denied: the `reason` label of its counter
/// (`meshwall.access.denied.reason.<reason>`, `meshwall_access_denied{reason="…"}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyReason {
    /// The address is in the global `deny` list or the matching rule's.
    DenyList,
    /// An `allow` list applies and the address is not in it.
    NotAllowed,
    /// The client address is unknown (fail closed).
    NoClientAddress,
}

impl DenyReason {
    /// Every reason, for defining one counter each at configure time.
    pub const ALL: [DenyReason; 3] = [
        DenyReason::DenyList,
        DenyReason::NotAllowed,
        DenyReason::NoClientAddress,
    ];

    pub fn code(self) -> &'static str {
        match self {
            DenyReason::DenyList => "deny_list",
            DenyReason::NotAllowed => "not_allowed",
            DenyReason::NoClientAddress => "no_client_address",
        }
    }
}

/// The counters, defined at configure time: `meshwall.access.allowed` and
/// `meshwall.access.denied.reason.<reason>` (their sum over reasons is every denial).
pub(crate) struct Metrics {
    pub(crate) allowed: Counter,
    pub(crate) denied: Counters,
}

impl Metrics {
    pub(crate) fn define(host: &dyn Host) -> Result<Self, ConfigError> {
        let m = Registry::of::<crate::policy::AccessPolicy>(host);
        Ok(Metrics {
            allowed: m.counter("allowed", &[])?,
            denied: m.counters(
                "denied",
                Label::Reason,
                &DenyReason::ALL.map(DenyReason::code),
            )?,
        })
    }
}
