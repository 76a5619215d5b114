//! Configuration of the `cors` filter (JSON). See `docs/cors.md` for the reference.
//!
//! Field names are those of Envoy's `CorsPolicy` (`envoy.config.route.v3.CorsPolicy`):
//! `allow_origin_string_match`, `allow_methods`, `allow_headers`, `expose_headers`, `max_age`,
//! `allow_credentials`, `allow_private_network_access`, `forward_not_matching_preflights`. As in
//! Envoy, a route's policy (`rules[i]`) takes every field it leaves out from the virtual host's
//! (here `default`).

use meshwall_core::CanonConfig;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    /// Per-route policies on the canonical path, first match wins.
    #[serde(default)]
    pub rules: Vec<CorsPolicyConfig>,
    /// The policy of every path no rule matches (Envoy's virtual-host `cors`), and the
    /// fields a rule leaves out. Absent: paths no rule matches are not governed.
    #[serde(default, rename = "default")]
    pub default_policy: Option<CorsPolicyConfig>,
    /// How request paths are read (meshwall-core's canonical request view).
    #[serde(default)]
    pub canonical: CanonConfig,
}

/// One CORS policy: a rule (with `match`) or the default (without). Every field is optional:
/// a rule takes what it leaves out from `default`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsPolicyConfig {
    /// Which paths the rule governs (rules only).
    #[serde(default, rename = "match")]
    pub matcher: Option<MatchConfig>,
    /// `false`: the filter leaves these paths alone (no CORS answers, the upstream's own
    /// `Access-Control-*` headers pass). Default `true`.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Allowed origins, any of them. `[]` allows none (the route is governed, nothing is
    /// allowed cross-origin).
    #[serde(default)]
    pub allow_origin_string_match: Option<Vec<OriginMatchConfig>>,
    /// Methods a preflight may ask for (`"GET, PUT"` or `["GET", "PUT"]`; `"*"`: any).
    /// GET, HEAD and POST are always allowed, as browsers send them without asking.
    #[serde(default)]
    pub allow_methods: Option<StringList>,
    /// Request headers a preflight may ask for (`"*"`: any except `authorization`, which a
    /// browser's wildcard never covers either).
    #[serde(default)]
    pub allow_headers: Option<StringList>,
    /// Response headers the page may read (`Access-Control-Expose-Headers`).
    #[serde(default)]
    pub expose_headers: Option<StringList>,
    /// Seconds a browser may cache the preflight's answer (`"600"` or `600`).
    #[serde(default)]
    pub max_age: Option<MaxAge>,
    /// Cookies and HTTP authentication may go with cross-origin requests.
    #[serde(default)]
    pub allow_credentials: Option<bool>,
    /// Answer Private Network Access preflights (`Access-Control-Request-Private-Network`).
    #[serde(default)]
    pub allow_private_network_access: Option<bool>,
    /// A preflight that is not allowed goes on to the upstream (`true`, Envoy's default) or
    /// is answered 403 here (`false`). Either way it gets no CORS headers.
    #[serde(default)]
    pub forward_not_matching_preflights: Option<bool>,
}

/// Which paths a rule governs, on the canonical path (exactly one field).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub safe_regex: Option<SafeRegex>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SafeRegex {
    /// Must match the whole subject (bounded size).
    pub regex: String,
}

/// One allowed-origin matcher (Envoy's `StringMatcher`, exactly one field), compared with the
/// request's origin as browsers serialise it (`scheme://host[:port]`, lower-case, default
/// port left out).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginMatchConfig {
    /// One origin (`https://app.example.com`), `null`, or `*` (any origin but `null`).
    #[serde(default)]
    pub exact: Option<String>,
    /// `scheme://` (any host of the scheme) or `scheme://host:` (any port of the host).
    #[serde(default)]
    pub prefix: Option<String>,
    /// `.example.com`: any subdomain (any scheme, default port); `.example.com:8443`.
    #[serde(default)]
    pub suffix: Option<String>,
    /// Must match the whole origin (case-insensitive).
    #[serde(default)]
    pub safe_regex: Option<SafeRegex>,
}

/// A list of names: Envoy's comma-separated string (`"GET, POST"`) or a JSON list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StringList(pub Vec<String>);

impl<'de> Deserialize<'de> for StringList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StringList;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a comma-separated string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<StringList, E> {
                if s.trim().is_empty() {
                    return Ok(StringList(Vec::new()));
                }
                Ok(StringList(
                    s.split(',').map(|x| x.trim().to_string()).collect(),
                ))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StringList, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s.trim().to_string());
                }
                Ok(StringList(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// `Access-Control-Max-Age` in seconds: Envoy's string (`"600"`) or a JSON integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxAge(pub u64);

/// The longest `max_age` accepted: Firefox caps a preflight at 24 hours (Chromium at 2).
pub const MAX_AGE_LIMIT: u64 = 86_400;

impl<'de> Deserialize<'de> for MaxAge {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MaxAge;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "a number of seconds from 0 to {MAX_AGE_LIMIT}")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<MaxAge, E> {
                if v > MAX_AGE_LIMIT {
                    return Err(E::custom(format!(
                        "must be at most {MAX_AGE_LIMIT} seconds (browsers cap it: Firefox 24 h, Chromium 2 h)"
                    )));
                }
                Ok(MaxAge(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<MaxAge, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom("must not be negative")),
                }
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<MaxAge, E> {
                if s.is_empty() || s.len() > 6 || !s.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(E::custom(format!(
                        "`{s}` is not a number of seconds from 0 to {MAX_AGE_LIMIT}"
                    )));
                }
                self.visit_u64(s.parse::<u64>().map_err(E::custom)?)
            }
        }
        d.deserialize_any(V)
    }
}
