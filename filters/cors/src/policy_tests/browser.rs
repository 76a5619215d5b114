//! A browser, as far as CORS goes: the Fetch standard's "CORS check", "CORS-preflight fetch"
//! and response-header exposure (https://fetch.spec.whatwg.org/#http-cors-protocol), plus
//! Private Network Access preflights. A page's `fetch()` goes through the policy with
//! [`fetch`]; the verdict is the browser's, computed from the headers the policy produced.

use super::*;

/// What a page asks for.
#[derive(Debug, Clone)]
pub(super) struct Page<'a> {
    /// The page's origin, as the browser serialises it (`null` for a sandboxed frame).
    pub origin: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    /// Request headers the script sets.
    pub headers: Vec<(&'a str, &'a str)>,
    /// `credentials: "include"`.
    pub credentials: bool,
    /// The target is on a private network (Chrome's Private Network Access).
    pub private_network: bool,
}

impl<'a> Page<'a> {
    pub fn new(origin: &'a str, method: &'a str, path: &'a str) -> Self {
        Page {
            origin,
            method,
            path,
            headers: Vec::new(),
            credentials: false,
            private_network: false,
        }
    }
    pub fn header(mut self, k: &'a str, v: &'a str) -> Self {
        self.headers.push((k, v));
        self
    }
    pub fn credentials(mut self) -> Self {
        self.credentials = true;
        self
    }
    pub fn private_network(mut self) -> Self {
        self.private_network = true;
        self
    }
}

/// What the page gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Outcome {
    /// The preflight failed: the actual request was never sent.
    PreflightFailed,
    /// The response arrived but the script cannot read it (a network error to the page).
    Blocked,
    /// The script reads the status and these response header names (lower case, sorted).
    Read { status: u16, headers: Vec<String> },
}

const SAFELISTED_METHODS: &[&str] = &["GET", "HEAD", "POST"];
const SAFELISTED_RESPONSE: &[&str] = &[
    "cache-control",
    "content-language",
    "content-length",
    "content-type",
    "expires",
    "last-modified",
    "pragma",
];

fn safelisted_request_header(name: &str, value: &str) -> bool {
    match name.to_ascii_lowercase().as_str() {
        "accept" | "accept-language" | "content-language" => true,
        "content-type" => matches!(
            value.split(';').next().unwrap_or("").trim(),
            "application/x-www-form-urlencoded" | "multipart/form-data" | "text/plain"
        ),
        _ => false,
    }
}

/// The CORS-unsafe request-header names, lower case, sorted, once each.
fn unsafe_names(page: &Page) -> Vec<String> {
    let mut names: Vec<String> = page
        .headers
        .iter()
        .filter(|(k, v)| !safelisted_request_header(k, v))
        .map(|(k, _)| k.to_ascii_lowercase())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// A header's one value; `None` when absent or given more than once.
fn one<'s>(s: &'s Sent, name: &'s str) -> Option<&'s str> {
    let mut all = s.headers.get_all(name);
    let first = all.next();
    if all.next().is_some() {
        return None;
    }
    first
}

fn list(s: &Sent, name: &str) -> Vec<String> {
    s.headers
        .get_all(name)
        .flat_map(|v| v.split(','))
        .map(|x| x.trim().to_string())
        .filter(|x| !x.is_empty())
        .collect()
}

/// Fetch's CORS check: `Access-Control-Allow-Origin` is `*` (without credentials) or the
/// origin byte for byte, and with credentials `Access-Control-Allow-Credentials: true`.
pub(super) fn cors_check(s: &Sent, page: &Page) -> bool {
    let Some(allow) = one(s, ALLOW_ORIGIN) else {
        return false;
    };
    if !page.credentials && allow == "*" {
        return true;
    }
    if allow != page.origin {
        return false;
    }
    !page.credentials || one(s, ALLOW_CREDENTIALS) == Some("true")
}

/// Fetch's CORS-preflight fetch, checked on the preflight's answer.
fn preflight_ok(s: &Sent, page: &Page, unsafe_headers: &[String]) -> bool {
    if !(200..300).contains(&s.status) || !cors_check(s, page) {
        return false;
    }
    let methods = list(s, ALLOW_METHODS);
    let names = list(s, ALLOW_HEADERS);
    let wildcard = |l: &[String]| !page.credentials && l.iter().any(|x| x == "*");
    let method_ok = methods.iter().any(|m| m == page.method)
        || SAFELISTED_METHODS.contains(&page.method)
        || wildcard(&methods);
    let headers_ok = unsafe_headers.iter().all(|h| {
        names.iter().any(|n| n.eq_ignore_ascii_case(h))
            || (wildcard(&names) && h != "authorization")
    });
    let pna_ok = !page.private_network || one(s, ALLOW_PRIVATE_NETWORK) == Some("true");
    method_ok && headers_ok && pna_ok
}

/// The page's `fetch()`, through the policy; the upstream answers 200 with `extra` headers.
/// Also returns the preflight's answer, when one was sent.
pub(super) fn fetch_with(
    p: &CorsPolicy,
    host: &MemHost,
    page: &Page,
    extra: &[(&str, &str)],
) -> (Outcome, Option<Sent>) {
    let unsafe_headers = unsafe_names(page);
    let needs_preflight = !SAFELISTED_METHODS.contains(&page.method)
        || !unsafe_headers.is_empty()
        || page.private_network;
    let mut preflight = None;
    if needs_preflight {
        let joined = unsafe_headers.join(",");
        let mut h = vec![(ORIGIN, page.origin), (REQUEST_METHOD, page.method)];
        if !joined.is_empty() {
            h.push((REQUEST_HEADERS, joined.as_str()));
        }
        if page.private_network {
            h.push((REQUEST_PRIVATE_NETWORK, "true"));
        }
        let s = go(p, host, "OPTIONS", page.path, &h, extra);
        let ok = preflight_ok(&s, page, &unsafe_headers);
        preflight = Some(s);
        if !ok {
            return (Outcome::PreflightFailed, preflight);
        }
    }
    let mut h = vec![(ORIGIN, page.origin)];
    h.extend(page.headers.iter().copied());
    let s = go(p, host, page.method, page.path, &h, extra);
    if !cors_check(&s, page) {
        return (Outcome::Blocked, preflight);
    }
    let exposed = list(&s, EXPOSE_HEADERS);
    let any = !page.credentials && exposed.iter().any(|x| x == "*");
    let mut headers: Vec<String> = s
        .headers
        .names()
        .filter(|n| {
            SAFELISTED_RESPONSE.contains(n)
                || any
                || exposed.iter().any(|x| x.eq_ignore_ascii_case(n))
        })
        .map(str::to_string)
        .collect();
    headers.sort();
    headers.dedup();
    (
        Outcome::Read {
            status: s.status,
            headers,
        },
        preflight,
    )
}

pub(super) fn fetch(p: &CorsPolicy, host: &MemHost, page: &Page) -> Outcome {
    fetch_with(p, host, page, &[]).0
}
