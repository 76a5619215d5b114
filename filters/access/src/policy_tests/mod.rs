//! The policy's tests, one module per subject; the helpers shared by all of them are here.
//! Requests go through core's exchange driver (`meshwall_core::send`), the machine the proxy-wasm
//! adaptor runs inside Envoy.

use super::*;
use meshwall_core::{parse_config, send, Headers, MemHost, Response, Sent};

mod canonical;
mod client;
mod config;
mod decide;

fn build(host: &MemHost, json: &str) -> Result<AccessPolicy, ConfigError> {
    let cfg: AccessConfig = parse_config(json.as_bytes())?;
    AccessPolicy::new(cfg, host)
}

fn policy(json: &str) -> (AccessPolicy, MemHost) {
    let host = MemHost::new();
    match build(&host, json) {
        Ok(p) => (p, host),
        Err(e) => panic!("{json}: {e}"),
    }
}

/// A request from downstream address `peer` (`None`: unknown).
fn req(method: &str, path: &str, peer: Option<&str>, headers: &[(&str, &str)]) -> Request {
    Request {
        client_ip: peer.map(str::to_string),
        ..Request::new(method, path, headers)
    }
}

fn upstream_ok() -> Response {
    Response {
        status: 200,
        headers: Headers::from_pairs([("content-type", "application/json")]),
    }
}

/// One exchange through the driver; a denied or refused request must reach nothing.
fn exchange(p: &AccessPolicy, host: &MemHost, r: &Request) -> Sent {
    let s = send(p, host, r, None, None, &upstream_ok());
    if s.status != 200 {
        assert!(
            s.upstream.is_none(),
            "a refused request reached the upstream: {s:?}"
        );
    }
    s
}

/// The status a GET of `path` from `peer` gets.
fn status_of(p: &AccessPolicy, host: &MemHost, method: &str, path: &str, peer: &str) -> u16 {
    exchange(p, host, &req(method, path, Some(peer), &[])).status
}
