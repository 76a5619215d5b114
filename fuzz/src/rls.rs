//! meshwall-rls: its configuration parser (envoyproxy/ratelimit YAML) and, on a configuration,
//! the decoding and planning of a `RateLimitRequest` (protobuf bytes, as the gRPC server gets
//! them), without Redis.

use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;
use meshwall_rls::config::Config;
use meshwall_rls::limiter::{plan, respond, Limits, Slot};
use prost::Message;

/// The configuration used when the input's own YAML does not load.
const FALLBACK: &str = include_str!("../../rls/tests/data/envoyproxy-ratelimit/example_config.yaml");

/// `rls_config`: the input is `YAML` 0x00 `RateLimitRequest bytes` (either part may be
/// empty). The YAML is parsed as a configuration file (and as two files, split at the middle,
/// which merge domains); the request is decoded and planned on it (or on the fallback).
/// Invariants: a plan has one slot per descriptor, every counter key is within
/// `max_key_bytes` (or hashed), and the response has one status per descriptor.
pub fn config(data: &[u8]) {
    let (yaml, proto) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let yaml = String::from_utf8_lossy(yaml);
    let own = Config::from_texts([("f.yaml", yaml.as_ref())]).ok();
    if let Some(mid) = (yaml.len() / 2..yaml.len()).find(|&i| yaml.is_char_boundary(i)) {
        let _ = Config::from_texts([("a.yaml", &yaml[..mid]), ("b.yaml", &yaml[mid..])]);
    }
    let cfg = match own {
        Some(c) => c,
        None => match Config::from_texts([("fallback.yaml", FALLBACK)]) {
            Ok(c) => c,
            Err(e) => panic!("fallback configuration: {e}"),
        },
    };
    let Ok(req) = RateLimitRequest::decode(proto) else {
        return;
    };
    let lim = Limits { max_key_bytes: 96, ..Limits::default() };
    let Ok(p) = plan(&cfg, &lim, &req) else {
        return;
    };
    assert_eq!(p.slots.len(), req.descriptors.len(), "one slot per descriptor");
    for op in &p.ops {
        assert!(op.key.len() <= lim.max_key_bytes || op.key.contains('#'), "counter key too long: {}", op.key.len());
        assert!(op.key.len() <= lim.max_key_bytes + 41 + req.domain.len() * 9 + 32, "hashed key too long");
    }
    for s in &p.slots {
        if let Slot::Counter { op, limit, .. } = s {
            assert!(*op < p.ops.len(), "slot names a missing op");
            assert!(limit.is_none_or(|l| l < cfg.limits.len()), "slot names a missing limit");
        }
    }
    let r = respond(&p, None);
    assert_eq!(r.statuses.len(), req.descriptors.len(), "one status per descriptor");
}
