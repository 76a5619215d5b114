//! Configuration parsing + compile of every policy (and the suite), from arbitrary JSON; and
//! OpenAPI documents (JSON or YAML) as validate's `spec`.

use crate::{build, parse_request, send_checked};
use meshwall_core::{MemHost, Policy};
use serde_json::{json, Value};

/// Requests sent through every configuration that loads: whatever the configuration says,
/// the policy answers them without panicking.
const PROBES: &[&[u8]] = &[
    b"GET /",
    b"GET /healthz\nx-api-key: k\nauthorization: Bearer a.b.c",
    b"POST /v1/pets?limit=5\ncontent-type: application/json\norigin: https://a.example\n\n{\"name\":\"x\"}",
    b"OPTIONS /api/x\norigin: https://a.example\naccess-control-request-method: PUT",
    b"GET /admin/%2e%2e/x;p=1?a=1&a=2\ncookie: a=1; a=2\nx-forwarded-for: 10.0.0.1, 10.0.0.2\n@ip 2001:db8::1",
];

fn run<P: Policy>(json: &[u8]) {
    let host = MemHost::new();
    let keys_before = host.shared_key_count();
    let Some(p) = build::<P>(json, &host) else {
        return;
    };
    let keys_after_config = host.shared_key_count();
    for probe in PROBES {
        let (req, body) = parse_request(probe);
        let _ = send_checked(&p, &host, &req, body.as_deref());
        p.on_tick(&host);
    }
    // Shared-data keys are created at configure time only (never per request).
    assert_eq!(host.shared_key_count(), keys_after_config, "requests created shared-data keys");
    let _ = keys_before;
}

/// `policy_config`: the first byte picks the policy, the rest is its configuration JSON.
pub fn policy_config(data: &[u8]) {
    let Some((&which, json)) = data.split_first() else {
        return;
    };
    match which % 8 {
        0 => run::<meshwall_headers::HeadersPolicy>(json),
        1 => run::<meshwall_access::AccessPolicy>(json),
        2 => run::<meshwall_cors::CorsPolicy>(json),
        3 => run::<meshwall_jwt::JwtPolicy>(json),
        4 => run::<meshwall_apikey::ApiKeyPolicy>(json),
        5 => run::<meshwall_ratelimit::RateLimitPolicy>(json),
        6 => run::<meshwall_validate::ValidatePolicy>(json),
        _ => run::<meshwall::SuitePolicy>(json),
    }
}

/// `validate_spec`: the input is an OpenAPI document. Given to validate as a string (JSON or
/// YAML) and, when it is JSON, as an object too; the first byte (when it is not `{` or a
/// letter) also picks a few settings, so the canonical options change how paths compile.
pub fn validate_spec(data: &[u8]) {
    let Some((&flags, doc)) = data.split_first() else {
        return;
    };
    let (flags, doc) = if flags.is_ascii_graphic() || flags.is_ascii_whitespace() {
        (0, data)
    } else {
        (flags, doc)
    };
    let Ok(text) = std::str::from_utf8(doc) else {
        return;
    };
    let canonical = json!({
        "trailing_slash_insensitive": flags & 1 == 0,
        "case_insensitive_paths": flags & 2 != 0,
        "allow_path_params": flags & 4 != 0,
        "allow_encoded_slashes": flags & 8 != 0,
    });
    let mut specs = vec![Value::String(text.to_string())];
    if let Ok(v) = serde_json::from_str::<Value>(text) {
        specs.push(v);
    }
    for spec in specs {
        let cfg = json!({"spec": spec, "canonical": canonical, "assert_formats": flags & 16 == 0,
                         "max_body_bytes": 4096});
        run::<meshwall_validate::ValidatePolicy>(cfg.to_string().as_bytes());
    }
}
