//! The policy's tests, one module per subject. Helpers shared by all of them are here.

use super::*;
use meshwall_core::{parse_config, Ambiguity, Headers, MemHost};
use std::time::Duration;

const DEMO: &str = r#"{
  "rules": [
    {"name": "per-ip", "key": [{"remote_address": {}}],
     "token_bucket": {"max_tokens": 100, "tokens_per_fill": 100, "fill_interval": "60s"}},
    {"name": "login", "match": {"path": "/login", "methods": ["POST"]}, "key": [{"remote_address": {}}],
     "token_bucket": {"max_tokens": 5, "tokens_per_fill": 5, "fill_interval": "60s"}}
  ]
}"#;

fn build(host: &MemHost, json: &str) -> Result<RateLimitPolicy, ConfigError> {
    let cfg: RateLimitConfig = parse_config(json.as_bytes())?;
    RateLimitPolicy::new(cfg, host)
}

fn policy(host: &MemHost, json: &str) -> RateLimitPolicy {
    build(host, json).unwrap()
}

/// One rule `r` with the given key parts (JSON) and bucket.
fn one_rule(key: &str, max: u32, per: u32, interval: &str, extra: &str) -> String {
    format!(
        r#"{{"rules":[{{"name":"r","key":{key},"token_bucket":{{"max_tokens":{max},"tokens_per_fill":{per},"fill_interval":"{interval}"}}{extra}}}]}}"#
    )
}

/// One rule `r` (bucket of `max` tokens, refilled hourly) with a `match` and a `canonical`
/// section (JSON).
fn canon_rule(key: &str, max: u32, matcher: &str, canonical: &str) -> String {
    format!(
        r#"{{"rules":[{{"name":"r","key":{key},"match":{matcher},"token_bucket":{{"max_tokens":{max},"fill_interval":"1h"}}}}],"canonical":{canonical}}}"#
    )
}

fn req(method: &str, path: &str, ip: &str, headers: &[(&str, &str)]) -> Request {
    Request {
        client_ip: Some(ip.into()),
        ..Request::new(method, path, headers)
    }
}

/// Status (200 when the request goes on) and the rate-limit headers the client sees.
/// One request through the core exchange driver (`meshwall_core::send`, as Envoy runs it): the
/// status and response headers the client got.
fn send(p: &RateLimitPolicy, host: &MemHost, r: &Request) -> (u16, Headers) {
    let upstream = Response {
        status: 200,
        headers: Headers::from_pairs([("content-type", "application/json")]),
    };
    let s = meshwall_core::send(p, host, r, None, None, &upstream);
    if let Some(up) = &s.upstream {
        assert_eq!(
            up.headers, r.headers,
            "the filter never changes request headers"
        );
    } else {
        // Envoy runs the response phase on local replies too: it must not duplicate anything.
        let reply: Vec<&str> = s.headers.names().collect();
        let mut seen = std::collections::HashSet::new();
        assert!(
            reply.iter().all(|n| seen.insert(*n)),
            "no header twice: {reply:?}"
        );
    }
    (s.status, s.headers)
}

fn status(p: &RateLimitPolicy, host: &MemHost, r: &Request) -> u16 {
    send(p, host, r).0
}

fn count_ok(p: &RateLimitPolicy, host: &MemHost, r: &Request, n: usize) -> usize {
    (0..n).filter(|_| status(p, host, r) == 200).count()
}

mod config;
mod global;
mod global_faults;
mod keys;
mod limits;
mod matching;
mod table;
mod workers;
