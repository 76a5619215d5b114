//! The policy's tests, one module per subject; `browser` is a model of what a browser does
//! with the answers (the Fetch standard's CORS checks), so the tables say what a page can do.

use super::*;
use meshwall_core::{parse_config, send, MemHost, Sent};

mod actual;
mod browser;
mod config;
mod preflight;

/// The shipped example, envoy/cors.yaml: its plugin configuration is the demo policy here,
/// so the example and these tests cannot drift apart.
const ENVOY_CORS_YAML: &str = include_str!("../../../../envoy/cors.yaml");

/// The JSON block under `value: |` in envoy/cors.yaml.
fn demo_json() -> String {
    let mut lines = ENVOY_CORS_YAML.lines();
    let start = lines
        .by_ref()
        .find(|l| l.trim_start().starts_with("value: |"))
        .expect("envoy/cors.yaml has the plugin configuration");
    let indent = start.len() - start.trim_start().len();
    lines
        .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
        .collect::<Vec<_>>()
        .join("\n")
}

fn build(host: &MemHost, json: &str) -> Result<CorsPolicy, ConfigError> {
    let cfg: CorsConfig = parse_config(json.as_bytes())?;
    CorsPolicy::new(cfg, host)
}

fn policy(json: &str) -> (CorsPolicy, MemHost) {
    let host = MemHost::new();
    (build(&host, json).unwrap(), host)
}

fn demo() -> (CorsPolicy, MemHost) {
    policy(&demo_json())
}

/// The upstream's answer: 200 JSON with these extra headers.
fn upstream(extra: &[(&str, &str)]) -> Response {
    let mut h = vec![
        ("content-type", "application/json"),
        ("x-request-id", "r-1"),
    ];
    h.extend_from_slice(extra);
    Response {
        status: 200,
        headers: Headers::from_pairs(h),
    }
}

/// One exchange through the policy (upstream answers 200 with `extra` headers).
fn go(
    p: &CorsPolicy,
    host: &MemHost,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    extra: &[(&str, &str)],
) -> Sent {
    send(
        p,
        host,
        &Request::new(method, path, headers),
        None,
        None,
        &upstream(extra),
    )
}

/// The `Access-Control-*` response headers, in order.
fn cors_headers(s: &Sent) -> Vec<(String, String)> {
    s.headers
        .iter()
        .filter(|(k, _)| k.starts_with("access-control-"))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
