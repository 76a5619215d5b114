//! `meshwall-rls-probe`: a test client. Reads one request per line on stdin and prints one
//! answer per line (JSON), over one HTTP/2 connection to a loopback server.
//!
//! ```text
//! {"domain":"d","descriptors":[{"entries":[["k","v"]],"hits_addend":2}],"hits_addend":1}
//! {"raw_hex":"0a01"}                 # any bytes as the gRPC message (malformed protobuf)
//! {"health":""}                      # grpc.health.v1 Check of a service name
//! ```
//! Answers: `{"overall_code":"OK","statuses":[{"code":"OK","limit_remaining":4,...}]}` or
//! `{"grpc_code":"Unavailable","message":"..."}`.

use std::io::BufRead;
use std::net::SocketAddr;

use bytes::{Buf, BufMut, Bytes};
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::{
    Entry, RateLimitOverride,
};
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use envoy_types::pb::google::protobuf::UInt64Value;
use serde_json::{json, Value};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::{Channel, Endpoint};
use tonic::Status;

#[derive(Default)]
struct RawCodec;
struct RawEnc;
struct RawDec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawEnc;
    type Decoder = RawDec;
    fn encoder(&mut self) -> RawEnc {
        RawEnc
    }
    fn decoder(&mut self) -> RawDec {
        RawDec
    }
}

impl Encoder for RawEnc {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawDec {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

fn main() -> std::process::ExitCode {
    let target = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8081".into());
    let Ok(addr) = target.parse::<SocketAddr>() else {
        eprintln!("usage: meshwall-rls-probe 127.0.0.1:PORT < requests.jsonl");
        return std::process::ExitCode::from(2);
    };
    if !addr.ip().is_loopback() {
        eprintln!("meshwall-rls-probe only talks to loopback addresses");
        return std::process::ExitCode::from(2);
    }
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return std::process::ExitCode::from(1);
    };
    rt.block_on(run(addr))
}

async fn run(addr: SocketAddr) -> std::process::ExitCode {
    let Ok(ep) = Endpoint::from_shared(format!("http://{addr}")) else {
        return std::process::ExitCode::from(2);
    };
    let channel = ep.connect_lazy();
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        let out = match serde_json::from_str::<Value>(&line) {
            Ok(v) => one(&channel, &v).await,
            Err(e) => json!({"probe_error": e.to_string()}),
        };
        println!("{out}");
    }
    std::process::ExitCode::SUCCESS
}

async fn one(channel: &Channel, v: &Value) -> Value {
    if let Some(hex) = v.get("raw_hex").and_then(Value::as_str) {
        return raw(channel, hex).await;
    }
    if let Some(name) = v.get("health").and_then(Value::as_str) {
        let mut c = tonic_health::pb::health_client::HealthClient::new(channel.clone());
        let req = tonic_health::pb::HealthCheckRequest {
            service: name.to_string(),
        };
        return match c.check(req).await {
            Ok(r) => json!({"health": r.get_ref().status}),
            Err(s) => status_json(&s),
        };
    }
    let req = request_of(v);
    let mut c = RateLimitServiceClient::new(channel.clone()).max_encoding_message_size(64 << 20);
    match c.should_rate_limit(req).await {
        Ok(r) => response_json(r.get_ref()),
        Err(s) => status_json(&s),
    }
}

async fn raw(channel: &Channel, hex: &str) -> Value {
    let bytes: Vec<u8> = (0..hex.len() / 2)
        .filter_map(|i| hex.get(2 * i..2 * i + 2))
        .filter_map(|h| u8::from_str_radix(h, 16).ok())
        .collect();
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    if let Err(e) = grpc.ready().await {
        return json!({"probe_error": e.to_string()});
    }
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit",
    );
    match grpc
        .unary(tonic::Request::new(Bytes::from(bytes)), path, RawCodec)
        .await
    {
        Ok(r) => {
            let body = r.into_inner();
            match <RateLimitResponse as prost::Message>::decode(body) {
                Ok(resp) => response_json(&resp),
                Err(e) => json!({"probe_error": e.to_string()}),
            }
        }
        Err(s) => status_json(&s),
    }
}

fn request_of(v: &Value) -> RateLimitRequest {
    let descriptors = v
        .get("descriptors")
        .and_then(Value::as_array)
        .map(|ds| {
            ds.iter()
                .map(|d| RateLimitDescriptor {
                    entries: d
                        .get("entries")
                        .and_then(Value::as_array)
                        .map(|es| {
                            es.iter()
                                .map(|e| Entry {
                                    key: e.get(0).and_then(Value::as_str).unwrap_or("").into(),
                                    value: e.get(1).and_then(Value::as_str).unwrap_or("").into(),
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    limit: d.get("limit").map(|l| RateLimitOverride {
                        requests_per_unit: l
                            .get("requests_per_unit")
                            .and_then(Value::as_u64)
                            .and_then(|n| u32::try_from(n).ok())
                            .unwrap_or(0),
                        unit: l
                            .get("unit")
                            .and_then(Value::as_i64)
                            .and_then(|n| i32::try_from(n).ok())
                            .unwrap_or(0),
                    }),
                    hits_addend: d
                        .get("hits_addend")
                        .and_then(Value::as_u64)
                        .map(|value| UInt64Value { value }),
                    is_negative_hits: d
                        .get("is_negative_hits")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                })
                .collect()
        })
        .unwrap_or_default();
    RateLimitRequest {
        domain: v.get("domain").and_then(Value::as_str).unwrap_or("").into(),
        descriptors,
        hits_addend: v
            .get("hits_addend")
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0),
    }
}

fn code_name(c: i32) -> &'static str {
    match c {
        1 => "OK",
        2 => "OVER_LIMIT",
        _ => "UNKNOWN",
    }
}

fn response_json(r: &RateLimitResponse) -> Value {
    let statuses: Vec<Value> = r
        .statuses
        .iter()
        .map(|s| {
            let reset_ms = s
                .duration_until_reset
                .map(|d| d.seconds.saturating_mul(1000) + i64::from(d.nanos / 1_000_000));
            json!({
                "code": code_name(s.code),
                "limit_remaining": s.limit_remaining,
                "current_limit": s.current_limit.as_ref().map(|l| json!({
                    "requests_per_unit": l.requests_per_unit, "unit": l.unit, "name": l.name})),
                "reset_ms": reset_ms,
            })
        })
        .collect();
    json!({"overall_code": code_name(r.overall_code), "statuses": statuses})
}

fn status_json(s: &Status) -> Value {
    json!({"grpc_code": format!("{:?}", s.code()), "message": s.message()})
}
