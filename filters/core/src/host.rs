//! The host interface: everything a policy needs from Envoy. The in-memory host for tests is
//! [`crate::memhost::MemHost`] (re-exported here).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Handle of a metric defined through [`Host::define_metric`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MetricId(pub u32);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostError {
    /// A shared-data write lost a compare-and-swap race: read again and retry.
    CasMismatch,
    /// Anything else the host refused, with its status.
    Failed(String),
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostError::CasMismatch => f.write_str("shared data CAS mismatch"),
            HostError::Failed(s) => write!(f, "host call failed: {s}"),
        }
    }
}

/// The response to an HTTP callout made with [`Host::http_call`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CalloutResponse {
    /// `:status`; 0 when the call failed without a response (reset, timeout, no cluster).
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The body; left empty (never copied into the VM) when `body_size` is over the
    /// policy's [`crate::Policy::max_callout_body`].
    pub body: Vec<u8>,
    /// The size of the body as the host has it.
    pub body_size: usize,
}

impl CalloutResponse {
    /// A response with its whole body (`body_size` is the body's length).
    pub fn new(status: u16, headers: Vec<(String, String)>, body: Vec<u8>) -> Self {
        CalloutResponse {
            status,
            headers,
            body_size: body.len(),
            body,
        }
    }
}

/// The answer to a gRPC call made with [`Host::grpc_call`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrpcResponse {
    /// The gRPC status: 0 (OK) when the server answered with a message; otherwise the call
    /// failed (the server's status, or Envoy's: UNAVAILABLE when no connection could be made,
    /// DEADLINE_EXCEEDED or UNAVAILABLE at the timeout, …) and `message` is empty.
    pub status_code: u32,
    /// The response message (protobuf bytes, without gRPC framing); left empty (never copied
    /// into the VM) when `message_size` is over the policy's
    /// [`crate::Policy::max_callout_body`].
    pub message: Vec<u8>,
    /// The size of the message as the host has it.
    pub message_size: usize,
}

impl GrpcResponse {
    /// A successful call's answer (status 0) with its whole message.
    pub fn ok(message: Vec<u8>) -> Self {
        GrpcResponse {
            status_code: 0,
            message_size: message.len(),
            message,
        }
    }

    /// A failed call (non-zero gRPC status, no message).
    pub fn failed(status_code: u32) -> Self {
        GrpcResponse {
            status_code,
            message: Vec::new(),
            message_size: 0,
        }
    }
}

/// gRPC status codes a policy may want to tell apart.
pub mod grpc_status {
    pub const OK: u32 = 0;
    pub const DEADLINE_EXCEEDED: u32 = 4;
    pub const INTERNAL: u32 = 13;
    pub const UNAVAILABLE: u32 = 14;
}

/// What a policy may ask of Envoy. One implementation calls proxy-wasm host functions;
/// [`MemHost`] is the in-memory one for native tests.
///
/// Shared data follows Envoy's semantics: one store per `vm_id` shared by every worker;
/// a value carries a CAS number; a write with `cas: Some(n)` to an existing key fails with
/// [`HostError::CasMismatch`] unless `n` is its current CAS (a write to a missing key always
/// succeeds, so there is no atomic create-if-absent); `cas: None` writes unconditionally.
/// Keys can never be deleted, so never create one per client.
pub trait Host {
    /// Wall-clock time.
    fn now(&self) -> SystemTime;
    /// The value and its CAS, or `None` when the key was never written.
    fn shared_get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError>;
    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError>;
    /// Defines (or looks up) a metric. Names are shared by all workers of the process.
    fn define_metric(&self, kind: MetricKind, name: &str) -> Result<MetricId, HostError>;
    fn increment_metric(&self, id: MetricId, delta: i64);
    fn record_metric(&self, id: MetricId, value: u64);
    /// Starts an HTTP call to Envoy cluster `cluster`; the answer arrives later through
    /// `Policy::on_http_call_response` with the returned token. Headers must include
    /// `:method`, `:path` and `:authority`.
    fn http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, HostError>;

    /// Starts a unary gRPC call (`service`/`method`, e.g.
    /// `envoy.service.ratelimit.v3.RateLimitService`/`ShouldRateLimit`) to `upstream` (an Envoy
    /// cluster, HTTP/2, and optionally the `:authority` to send; `"cluster".into()`), with `message` (protobuf bytes) as the request. Made while handling
    /// a request's headers, its answer goes to that request ([`crate::Action::Wait`],
    /// `Policy::on_request_callout`) with the returned token. Envoy answers within `timeout`
    /// (with a non-zero status when the call fails or takes longer).
    fn grpc_call(
        &self,
        upstream: GrpcUpstream<'_>,
        service: &str,
        method: &str,
        initial_metadata: &[(&str, &[u8])],
        message: &[u8],
        timeout: Duration,
    ) -> Result<u32, HostError>;

    /// Calls the host's foreign function `name` (`proxy_call_foreign_function`) with `arg`;
    /// `Ok(None)` when it answered without data. A host without the function answers
    /// `Err` (Envoy: `NotFound`); so does this default.
    fn call_foreign_function(&self, name: &str, arg: &[u8]) -> Result<Option<Vec<u8>>, HostError> {
        let _ = (name, arg);
        Err(HostError::Failed("NotFound".into()))
    }

    /// Milliseconds since the Unix epoch.
    fn now_millis(&self) -> u64 {
        self.now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }

    /// Whole seconds since the Unix epoch.
    fn now_secs(&self) -> u64 {
        self.now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}

/// Where a gRPC call goes: an Envoy cluster, and optionally the `:authority` to send (Envoy's
/// `EnvoyGrpc.authority`). Without one Envoy sends the cluster name, which a server refuses when
/// it is no valid authority (Istio's `outbound|8081||rls.ns.svc.cluster.local`: the `|`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrpcUpstream<'a> {
    pub cluster: &'a str,
    pub authority: Option<&'a str>,
}

impl<'a> From<&'a str> for GrpcUpstream<'a> {
    /// A cluster, with Envoy's default authority.
    fn from(cluster: &'a str) -> Self {
        GrpcUpstream {
            cluster,
            authority: None,
        }
    }
}

pub use crate::memhost::{MemHost, RecordedCall, RecordedGrpcCall};
