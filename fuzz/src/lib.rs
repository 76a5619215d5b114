//! meshwall fuzz harnesses. Every fuzz target (`fuzz_targets/<name>.rs`) is one call into a
//! function here, so the same harness runs under libFuzzer (`cargo +nightly fuzz run <name>`)
//! and, on a stable toolchain, as a plain test over the seed corpus plus inputs from a small
//! deterministic generator (`replay` below). The harnesses only use the crates' public APIs.
//!
//! Each harness asserts invariants as well as "no panic": a violated invariant panics, which
//! libFuzzer reports as a crash with the input that caused it.

pub mod canon;
pub mod config;
pub mod jwt;
pub mod ratelimit;
pub mod rls;
pub mod validate;

#[cfg(test)]
mod replay;

use meshwall_core::{parse_config, Headers, Host, MemHost, Policy, Request, Response, Sent};

/// Every target: its name (the file in `fuzz_targets/` and the folder in `seeds/`) and harness.
pub const TARGETS: &[(&str, fn(&[u8]))] = &[
    ("jwt_token", jwt::token),
    ("jwt_jwks", jwt::jwks),
    ("policy_config", config::policy_config),
    ("validate_spec", config::validate_spec),
    ("validate_request", validate::request),
    ("json_body", validate::json_body),
    ("canon_request", canon::request),
    ("ratelimit_table", ratelimit::table),
    ("ratelimit_rls", ratelimit::rls_messages),
    ("rls_config", rls::config),
];

/// Builds policy `P` from configuration bytes the way the adaptor does at `on_configure`.
pub fn build<P: Policy>(json: &[u8], host: &dyn Host) -> Option<P> {
    let cfg: P::Config = parse_config(json).ok()?;
    P::new(cfg, host).ok()
}

/// [`build`] for a configuration the harness itself wrote: one that does not load is a bug of
/// the harness (or a regression), reported with the policy's error.
pub fn must_build<P: Policy>(json: &[u8], host: &dyn Host) -> P {
    match parse_config::<P::Config>(json).and_then(|c| P::new(c, host)) {
        Ok(p) => p,
        Err(e) => panic!("the harness configuration must load: {e}: {}", String::from_utf8_lossy(json)),
    }
}

/// An upstream that answers 200.
pub fn upstream() -> Response {
    Response {
        status: 200,
        headers: Headers::from_pairs([("content-type", "application/json"), ("server", "x")]),
    }
}

/// Reads a request written as text, HTTP/1-like:
///
/// ```text
/// METHOD PATH
/// name: value          (any number of header lines; `@ip 10.0.0.1` sets the client address)
///
/// body…                (after the first empty line; absent: no body)
/// ```
///
/// Anything goes: a line without `:` is a header with an empty value, bytes that are not
/// UTF-8 are replaced. Header names keep their case and spelling (the policies must fold
/// them themselves).
pub fn parse_request(data: &[u8]) -> (Request, Option<Vec<u8>>) {
    let (head, body) = match find(data, b"\n\n") {
        Some(i) => (&data[..i], data.get(i + 2..).map(<[u8]>::to_vec)),
        None => (data, None),
    };
    let head = String::from_utf8_lossy(head);
    let mut lines = head.split('\n');
    let first = lines.next().unwrap_or("");
    let (method, path) = first.split_once(' ').unwrap_or((first, "/"));
    let mut req = Request::new(method, path, &[]);
    req.client_ip = Some("192.0.2.1".into());
    for line in lines {
        if let Some(ip) = line.strip_prefix("@ip ") {
            req.client_ip = Some(ip.to_string());
            continue;
        }
        if let Some(a) = line.strip_prefix("@authority ") {
            req.authority = a.to_string();
            continue;
        }
        let (n, v) = line.split_once(':').unwrap_or((line, ""));
        req.headers.0.push((n.to_string(), v.trim_start().to_string()));
    }
    req.has_body = body.is_some();
    (req, body)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Sends one request through `p` (headers, body, response phase) with [`meshwall_core::send`]
/// and checks what every policy promises whatever the request: the local reply is a valid
/// status with a problem+json body, and nothing is half-forwarded without a reply.
pub fn send_checked<P: Policy>(p: &P, host: &MemHost, req: &Request, body: Option<&[u8]>) -> Sent {
    let s = meshwall_core::send(p, host, req, body, None, &upstream());
    assert!(
        s.status == 0 || (100..=599).contains(&s.status),
        "status {} out of range",
        s.status
    );
    if s.upstream.is_none() || s.status != 200 {
        // A local reply: never an empty status, and its body (when any) is JSON.
        if !s.body.is_empty() {
            assert!(
                serde_json::from_slice::<serde_json::Value>(&s.body).is_ok(),
                "local reply body is not JSON: {:?}",
                String::from_utf8_lossy(&s.body)
            );
        }
    }
    s
}

/// True when the request reached the upstream whole (headers and body).
pub fn admitted(s: &Sent) -> bool {
    s.upstream.as_ref().is_some_and(|u| u.body_forwarded) && s.status == 200
}
