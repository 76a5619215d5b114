//! Origins as browsers serialise them (RFC 6454 §6.1, WHATWG URL "serialization of an
//! origin"), and the allowed-origin matchers of the configuration.
//!
//! A browser sends `Origin: scheme://host[:port]` with the scheme and host in lower case, the
//! host in ASCII (international names as punycode), IPv4 in dotted decimal, IPv6 in brackets,
//! the port left out when it is the scheme's default, and no path, user or trailing slash; or
//! `Origin: null` for an opaque origin (sandboxed frames, `file:`, `data:`, some redirects).
//! Every value is brought to that one form before it is matched, so `HTTPS://App.Example.com:443`
//! gets the verdict of `https://app.example.com`; anything that is not an origin
//! (`https://a.example/`, `https://a.example@evil.example`, a list) matches nothing.

use crate::config::OriginMatchConfig;
use meshwall_core::matching::compile_regex;
use meshwall_core::ConfigError;
use regex_lite::Regex;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The opaque origin.
pub const NULL: &str = "null";

/// The scheme's default port, which a serialised origin leaves out.
fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        "ftp" => Some(21),
        _ => None,
    }
}

/// A scheme (`ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`), lower-cased.
fn canonical_scheme(s: &str) -> Option<String> {
    let mut bytes = s.bytes();
    let first = bytes.next()?;
    if !first.is_ascii_alphabetic() || s.len() > 64 {
        return None;
    }
    if !bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')) {
        return None;
    }
    Some(s.to_ascii_lowercase())
}

/// A host as a browser serialises it: `[IPv6]`, dotted-decimal IPv4, or a lower-case ASCII
/// name. A name whose last label is numeric is an IPv4 address to a URL parser and must then
/// be written as one (`0x7f.1` is not how any browser sends 127.0.0.1).
fn canonical_host(h: &str) -> Option<String> {
    if let Some(inner) = h.strip_prefix('[') {
        let ip: Ipv6Addr = inner.strip_suffix(']')?.parse().ok()?;
        return Some(format!("[{ip}]"));
    }
    if h.is_empty()
        || h.len() > 253
        || !h
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        return None;
    }
    let last = h.rsplit('.').next().unwrap_or(h);
    let numeric = !last.is_empty()
        && (last.bytes().all(|b| b.is_ascii_digit())
            || last.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("0x")));
    if numeric {
        let ip: Ipv4Addr = h.parse().ok()?;
        return Some(ip.to_string());
    }
    Some(h.to_ascii_lowercase())
}

fn parse_port(p: &str) -> Option<u16> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    p.parse().ok()
}

/// Splits `host[:port]` (the host may be a bracketed IPv6 address).
fn split_host_port(rest: &str) -> Option<(&str, Option<&str>)> {
    if rest.starts_with('[') {
        let end = rest.find(']')?;
        let (host, after) = rest.split_at(end + 1);
        return match after {
            "" => Some((host, None)),
            _ => after.strip_prefix(':').map(|p| (host, Some(p))),
        };
    }
    Some(match rest.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (rest, None),
    })
}

/// The canonical form of an `Origin` value, or `None` when it is not an origin.
pub fn canonical_origin(value: &str) -> Option<String> {
    if value.eq_ignore_ascii_case(NULL) {
        return Some(NULL.to_string());
    }
    let (scheme, rest) = value.split_once("://")?;
    let scheme = canonical_scheme(scheme)?;
    let (host, port) = split_host_port(rest)?;
    let host = canonical_host(host)?;
    let port = match port {
        None => None,
        Some(p) => Some(parse_port(p)?).filter(|n| Some(*n) != default_port(&scheme)),
    };
    Some(match port {
        Some(n) => format!("{scheme}://{host}:{n}"),
        None => format!("{scheme}://{host}"),
    })
}

/// One allowed-origin matcher, compared with canonical origins.
#[derive(Debug, Clone)]
pub enum OriginMatcher {
    /// `exact: "*"`: every origin except `null`.
    Any,
    /// One canonical origin, or `null`.
    Exact(String),
    /// `scheme://` or `scheme://host:`.
    Prefix(String),
    /// `.example.com[:port]`.
    Suffix(String),
    /// Anchored, case-insensitive.
    Regex(Regex),
}

const ORIGIN_FORM: &str =
    "not an origin as browsers send it: `scheme://host[:port]`, no path or trailing slash, international names in punycode (`xn--…`)";

/// Origins no configuration names: a matcher that admits them admits every site.
const PROBES: &[&str] = &[
    "https://meshwall-probe.invalid",
    "http://meshwall-probe.invalid",
];

impl OriginMatcher {
    /// Checks one `allow_origin_string_match` entry (`field` is its path).
    pub fn build(field: &str, m: &OriginMatchConfig) -> Result<Self, ConfigError> {
        let given = [
            m.exact.is_some(),
            m.prefix.is_some(),
            m.suffix.is_some(),
            m.safe_regex.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err(ConfigError::new(
                field,
                "give exactly one of `exact`, `prefix`, `suffix`, `safe_regex`",
            ));
        }
        if let Some(e) = &m.exact {
            if e == "*" {
                return Ok(OriginMatcher::Any);
            }
            return canonical_origin(e)
                .map(OriginMatcher::Exact)
                .ok_or_else(|| ConfigError::new(format!("{field}.exact"), ORIGIN_FORM));
        }
        if let Some(p) = &m.prefix {
            return Self::prefix(&format!("{field}.prefix"), p);
        }
        if let Some(s) = &m.suffix {
            return Self::suffix(&format!("{field}.suffix"), s);
        }
        let r = m
            .safe_regex
            .as_ref()
            .map(|r| r.regex.as_str())
            .unwrap_or("");
        compile_regex(r, true)
            .map(OriginMatcher::Regex)
            .map_err(|e| ConfigError::new(format!("{field}.safe_regex.regex"), e))
    }

    /// A prefix must end at a boundary: after the scheme (`https://`) or after a whole host
    /// (`http://localhost:`, any port). `https://app.example.com` as a prefix would also
    /// admit `https://app.example.com.evil.example`.
    fn prefix(field: &str, p: &str) -> Result<Self, ConfigError> {
        let bad = || {
            ConfigError::new(
                field,
                "a prefix must be `scheme://` (any host) or `scheme://host:` (any port of the host); `scheme://host` would also admit `scheme://host.evil.example`: use `exact`",
            )
        };
        let (scheme, rest) = p.split_once("://").ok_or_else(bad)?;
        let scheme = canonical_scheme(scheme).ok_or_else(bad)?;
        if rest.is_empty() {
            return Ok(OriginMatcher::Prefix(format!("{scheme}://")));
        }
        let host = rest.strip_suffix(':').ok_or_else(bad)?;
        let host = canonical_host(host).ok_or_else(bad)?;
        Ok(OriginMatcher::Prefix(format!("{scheme}://{host}:")))
    }

    /// A suffix must start at a label boundary (`.example.com`, so that `evilexample.com` is
    /// not admitted) and name at least two labels (`.com` would admit every `.com` site).
    fn suffix(field: &str, s: &str) -> Result<Self, ConfigError> {
        let bad = |why: &str| ConfigError::new(field, why.to_string());
        let body = s.strip_prefix('.').ok_or_else(|| {
            bad("a suffix must start with `.` (`.example.com`): `example.com` would also admit `evilexample.com`")
        })?;
        let (host, port) = match body.rsplit_once(':') {
            Some((h, p)) => (
                h,
                Some(parse_port(p).ok_or_else(|| bad("not a port number"))?),
            ),
            None => (body, None),
        };
        let host = canonical_host(host)
            .filter(|h| !h.starts_with('[') && h.contains('.') && !h.starts_with('.'))
            .ok_or_else(|| {
                bad("a suffix must be `.name.tld[:port]` with at least two labels after the `.`")
            })?;
        Ok(OriginMatcher::Suffix(match port {
            Some(n) => format!(".{host}:{n}"),
            None => format!(".{host}"),
        }))
    }

    /// Whether the canonical origin `o` is allowed. `null` is allowed only by `exact: "null"`.
    pub fn matches(&self, o: &str) -> bool {
        let opaque = o == NULL;
        match self {
            OriginMatcher::Any => !opaque,
            OriginMatcher::Exact(e) => e == o,
            OriginMatcher::Prefix(p) => !opaque && o.starts_with(p.as_str()),
            OriginMatcher::Suffix(s) => !opaque && o.ends_with(s.as_str()),
            OriginMatcher::Regex(r) => !opaque && r.is_match(o),
        }
    }

    /// Whether the matcher admits sites nobody configured (`*`, `https://`, a regex such as
    /// `https?://.*`): such a matcher cannot go with credentials.
    pub fn admits_any_site(&self) -> bool {
        match self {
            OriginMatcher::Any => true,
            OriginMatcher::Prefix(p) => p.ends_with("://"),
            OriginMatcher::Regex(_) => PROBES.iter().any(|p| self.matches(p)),
            OriginMatcher::Exact(_) | OriginMatcher::Suffix(_) => false,
        }
    }
}

#[cfg(test)]
#[path = "origin_tests.rs"]
mod tests;
