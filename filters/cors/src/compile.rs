//! The configuration compiled into what requests are checked against: each rule's path
//! matcher on the canonical path and its effective CORS policy (the rule's fields, then the
//! default's, as Envoy takes a route's policy over its virtual host's). Everything is checked
//! once, when the configuration loads; every error names its field.

use crate::config::{CorsConfig, CorsPolicyConfig, MatchConfig, StringList};
use crate::origin::OriginMatcher;
use meshwall_core::config::{header_name, is_tchar};
use meshwall_core::{CanonConfig, ConfigError, PathMatch};

/// An allow-list of names: any (`*`) or these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Names {
    Any,
    /// As configured (methods keep their spelling, header names are lower-cased).
    List(Vec<String>),
}

impl Names {
    /// The header value listing the names (`None` for `*` or an empty list).
    pub(crate) fn value(&self) -> Option<String> {
        match self {
            Names::List(l) if !l.is_empty() => Some(l.join(", ")),
            _ => None,
        }
    }
}

/// One effective CORS policy: what a governed route allows.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub(crate) origins: Vec<OriginMatcher>,
    /// Allowed origins get `Access-Control-Allow-Origin: *` (an `exact: "*"` matcher, no
    /// credentials); otherwise the request's origin.
    pub(crate) wildcard: bool,
    pub(crate) methods: Names,
    pub(crate) headers: Names,
    /// `Access-Control-Expose-Headers` value.
    pub(crate) expose: Option<String>,
    pub(crate) max_age: Option<u64>,
    pub(crate) credentials: bool,
    pub(crate) private_network: bool,
    pub(crate) forward_not_matching: bool,
}

/// One policy's own fields, checked; `None` = not given (taken from the default).
#[derive(Debug, Clone, Default)]
struct Fields {
    enabled: Option<bool>,
    origins: Option<Vec<OriginMatcher>>,
    methods: Option<Names>,
    headers: Option<Names>,
    expose: Option<Names>,
    max_age: Option<u64>,
    credentials: Option<bool>,
    private_network: Option<bool>,
    forward: Option<bool>,
}

/// A rule, ready to be matched. `policy: None`: the rule turns the filter off.
pub(crate) struct Route {
    pub(crate) path: PathMatch,
    pub(crate) policy: Option<Resolved>,
}

/// The rules and the default policy (`None`: paths no rule matches are not governed).
pub(crate) struct Compiled {
    pub(crate) routes: Vec<Route>,
    pub(crate) default: Option<Resolved>,
}

/// A list of names, each checked by `check` (`*` alone: any).
fn names(
    field: &str,
    list: &StringList,
    check: impl Fn(&str, &str) -> Result<String, ConfigError>,
) -> Result<Names, ConfigError> {
    if list.0.iter().any(|n| n == "*") {
        if list.0.len() > 1 {
            return Err(ConfigError::new(field, "`*` must be the only entry"));
        }
        return Ok(Names::Any);
    }
    let mut out: Vec<String> = Vec::new();
    for (i, n) in list.0.iter().enumerate() {
        let n = check(&format!("{field}[{i}]"), n)?;
        if !out.iter().any(|o| o.eq_ignore_ascii_case(&n)) {
            out.push(n);
        }
    }
    Ok(Names::List(out))
}

fn method(field: &str, m: &str) -> Result<String, ConfigError> {
    if m.is_empty() || !m.chars().all(is_tchar) {
        return Err(ConfigError::new(
            field,
            format!("`{m}` is not an HTTP method"),
        ));
    }
    Ok(m.to_string())
}

fn match_path(field: &str, m: &MatchConfig, canon: &CanonConfig) -> Result<PathMatch, ConfigError> {
    match (&m.path, &m.prefix, &m.safe_regex) {
        (Some(p), None, None) => PathMatch::exact(&format!("{field}.path"), p, canon),
        (None, Some(p), None) => PathMatch::prefix(&format!("{field}.prefix"), p, canon),
        (None, None, Some(r)) => {
            PathMatch::regex(&format!("{field}.safe_regex.regex"), &r.regex, canon)
        }
        _ => Err(ConfigError::new(
            field,
            "give exactly one of `path`, `prefix`, `safe_regex`",
        )),
    }
}

fn fields(f: &str, c: &CorsPolicyConfig) -> Result<Fields, ConfigError> {
    let origins = match &c.allow_origin_string_match {
        None => None,
        Some(list) => Some(
            list.iter()
                .enumerate()
                .map(|(i, m)| {
                    OriginMatcher::build(&format!("{f}.allow_origin_string_match[{i}]"), m)
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let opt = |name: &str,
               l: &Option<StringList>,
               check: fn(&str, &str) -> Result<String, ConfigError>| {
        l.as_ref()
            .map(|l| names(&format!("{f}.{name}"), l, check))
            .transpose()
    };
    Ok(Fields {
        enabled: c.enabled,
        origins,
        methods: opt("allow_methods", &c.allow_methods, method)?,
        headers: opt("allow_headers", &c.allow_headers, header_name)?,
        expose: opt("expose_headers", &c.expose_headers, header_name)?,
        max_age: c.max_age.map(|m| m.0),
        credentials: c.allow_credentials,
        private_network: c.allow_private_network_access,
        forward: c.forward_not_matching_preflights,
    })
}

/// The effective policy of `own` over `base`; `f` names `own` in errors. `None` when the
/// policy is turned off (`enabled` is the policy's own, as Envoy's `filter_enabled` is the
/// route's: a rule is on unless it says otherwise).
fn resolve(f: &str, own: &Fields, base: &Fields) -> Result<Option<Resolved>, ConfigError> {
    if !own.enabled.unwrap_or(true) {
        return Ok(None);
    }
    let origins = own
        .origins
        .clone()
        .or_else(|| base.origins.clone())
        .unwrap_or_default();
    let credentials = own.credentials.or(base.credentials).unwrap_or(false);
    let expose = own.expose.clone().or_else(|| base.expose.clone());
    // Which field to blame for a combination: the one this policy sets itself.
    let blame = |set_here: bool, field: &str| {
        if set_here {
            format!("{f}.{field}")
        } else {
            format!("{f}.allow_credentials")
        }
    };
    if credentials {
        if let Some(i) = origins.iter().position(OriginMatcher::admits_any_site) {
            return Err(ConfigError::new(
                blame(own.origins.is_some(), &format!("allow_origin_string_match[{i}]")),
                "admits every site, which cannot go with allow_credentials: true (any page could act as the signed-in user); list the origins",
            ));
        }
        if expose == Some(Names::Any) {
            return Err(ConfigError::new(
                blame(own.expose.is_some(), "expose_headers"),
                "`*` cannot go with allow_credentials: true (browsers read it as a header named `*`); list the headers",
            ));
        }
        if origins.iter().any(|m| m.matches(crate::origin::NULL)) {
            meshwall_core::policy_log!(warn, crate::policy::CorsPolicy,
                "{f}: the `null` origin with allow_credentials: any sandboxed frame or local file acts as the signed-in user"
            );
        }
    }
    Ok(Some(Resolved {
        wildcard: !credentials && origins.iter().any(|m| matches!(m, OriginMatcher::Any)),
        origins,
        methods: own
            .methods
            .clone()
            .or_else(|| base.methods.clone())
            .unwrap_or(Names::List(Vec::new())),
        headers: own
            .headers
            .clone()
            .or_else(|| base.headers.clone())
            .unwrap_or(Names::List(Vec::new())),
        expose: match expose {
            Some(Names::Any) => Some("*".to_string()),
            Some(n) => n.value(),
            None => None,
        },
        max_age: own.max_age.or(base.max_age),
        credentials,
        private_network: own
            .private_network
            .or(base.private_network)
            .unwrap_or(false),
        forward_not_matching: own.forward.or(base.forward).unwrap_or(true),
    }))
}

/// Checks and compiles the whole configuration.
pub(crate) fn compile(cfg: &CorsConfig) -> Result<Compiled, ConfigError> {
    if cfg.rules.is_empty() && cfg.default_policy.is_none() {
        return Err(ConfigError::new(
            ".",
            "give `rules`, a `default` policy, or both",
        ));
    }
    let (base, default) = match &cfg.default_policy {
        None => (Fields::default(), None),
        Some(d) => {
            if d.matcher.is_some() {
                return Err(ConfigError::new(
                    "default.match",
                    "the default policy applies where no rule matches: it has no `match`",
                ));
            }
            let base = fields("default", d)?;
            let default = resolve("default", &base, &Fields::default())?;
            (base, default)
        }
    };
    let mut routes = Vec::with_capacity(cfg.rules.len());
    for (i, r) in cfg.rules.iter().enumerate() {
        let f = format!("rules[{i}]");
        let m = r
            .matcher
            .as_ref()
            .ok_or_else(|| ConfigError::new(format!("{f}.match"), "a rule needs a `match`"))?;
        let path = match_path(&format!("{f}.match"), m, &cfg.canonical)?;
        let own = fields(&f, r)?;
        routes.push(Route {
            path,
            policy: resolve(&f, &own, &base)?,
        });
    }
    Ok(Compiled { routes, default })
}
