//! The one proxy-wasm adaptor: runs any [`Policy`] as an Envoy HTTP filter.
//!
//! Host calls go through `proxy_wasm::hostcalls` directly (the SDK's trait helpers unwrap
//! host errors, and its string getters panic on non-UTF-8 header values; a panic kills the
//! VM). Header values are read as bytes and converted lossily.

use crate::action::LocalReply;
use crate::config::parse_config;
use crate::exchange::{Exchange, Step};
use crate::host::{
    CalloutResponse, GrpcResponse, GrpcUpstream, Host, HostError, MetricId, MetricKind,
};
use crate::http::{client_ip_from_address, split_pseudo, HeaderOp, Headers, Request, Response};
use crate::policy::Policy;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{
    Action as WasmAction, BufferType, ContextType, LogLevel, MapType, MetricType, Status,
};
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Installs the root context for policy `P`. Called from [`crate::export_policy!`].
pub fn start<P: Policy>() {
    // Everything goes to the host, which logs what its own level (`--component-log-level
    // wasm:debug`, the admin `/logging` endpoint) asks for: Envoy decides, not the module.
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(Root::<P> { policy: None })
    });
}

/// [`Host`] backed by proxy-wasm host calls.
pub struct WasmHost;

fn status_error(s: Status) -> HostError {
    match s {
        Status::CasMismatch => HostError::CasMismatch,
        other => HostError::Failed(format!("{other:?}")),
    }
}

impl Host for WasmHost {
    fn now(&self) -> SystemTime {
        hostcalls::get_current_time().unwrap_or(UNIX_EPOCH)
    }

    fn shared_get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
        match hostcalls::get_shared_data(key) {
            Ok((Some(v), cas)) => Ok(Some((v, cas.unwrap_or(0)))),
            Ok((None, _)) => Ok(None),
            Err(Status::NotFound) => Ok(None),
            Err(s) => Err(status_error(s)),
        }
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        hostcalls::set_shared_data(key, Some(value), cas).map_err(status_error)
    }

    fn define_metric(&self, kind: MetricKind, name: &str) -> Result<MetricId, HostError> {
        let t = match kind {
            MetricKind::Counter => MetricType::Counter,
            MetricKind::Gauge => MetricType::Gauge,
            MetricKind::Histogram => MetricType::Histogram,
        };
        hostcalls::define_metric(t, name)
            .map(MetricId)
            .map_err(status_error)
    }

    fn increment_metric(&self, id: MetricId, delta: i64) {
        let _ = hostcalls::increment_metric(id.0, delta);
    }

    fn record_metric(&self, id: MetricId, value: u64) {
        let _ = hostcalls::record_metric(id.0, value);
    }

    fn call_foreign_function(&self, name: &str, arg: &[u8]) -> Result<Option<Vec<u8>>, HostError> {
        hostcalls::call_foreign_function(name, Some(arg)).map_err(status_error)
    }

    fn http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, HostError> {
        hostcalls::dispatch_http_call(cluster, headers.to_vec(), body, Vec::new(), timeout)
            .map_err(status_error)
    }

    fn grpc_call(
        &self,
        upstream: GrpcUpstream<'_>,
        service: &str,
        method: &str,
        initial_metadata: &[(&str, &[u8])],
        message: &[u8],
        timeout: Duration,
    ) -> Result<u32, HostError> {
        let cluster = upstream.cluster;
        let upstream = match upstream.authority {
            Some(authority) => {
                grpc_service_with_authority(cluster, authority).ok_or_else(|| {
                    HostError::Failed(
                        "cluster and authority: at most 123 ASCII bytes together".into(),
                    )
                })?
            }
            // Envoy reads the upstream as a serialized `GrpcService` and, only when that fails
            // to parse, as a cluster name: some names parse as a (wrong) GrpcService, so send
            // the message (a name too long for it goes as it is).
            None => grpc_service(cluster).unwrap_or_else(|| cluster.to_string()),
        };
        hostcalls::dispatch_grpc_call(
            &upstream,
            service,
            method,
            initial_metadata.to_vec(),
            Some(message),
            timeout,
        )
        .map_err(status_error)
    }
}

/// `GrpcService { envoy_grpc (1): EnvoyGrpc { cluster_name (1), authority (2) } }`, for ASCII
/// names of at most 123 bytes together (every length then fits one varint byte below 0x80, so
/// the bytes are a `&str` for the SDK).
fn grpc_service_with_authority(cluster: &str, authority: &str) -> Option<String> {
    let (c, a) = (cluster.len(), authority.len());
    let inner = u8::try_from(c.checked_add(a)?.checked_add(4)?)
        .ok()
        .filter(|n| *n <= 127)?;
    if !cluster.is_ascii() || !authority.is_ascii() {
        return None;
    }
    let mut out = String::with_capacity(usize::from(inner) + 2);
    out.push('\n'); // field 1 (envoy_grpc), length-delimited
    out.push(char::from(inner));
    out.push('\n'); // field 1 (cluster_name)
    out.push(char::from(u8::try_from(c).ok()?));
    out.push_str(cluster);
    out.push('\x12'); // field 2 (authority)
    out.push(char::from(u8::try_from(a).ok()?));
    out.push_str(authority);
    Some(out)
}

/// `envoy.config.core.v3.GrpcService { envoy_grpc (1): EnvoyGrpc { cluster_name (1) } }`, for
/// an ASCII name of at most 125 bytes (both lengths then fit one varint byte, and the bytes are
/// a `&str` for the SDK).
fn grpc_service(cluster: &str) -> Option<String> {
    let n = u8::try_from(cluster.len()).ok().filter(|n| *n <= 125)?;
    if !cluster.is_ascii() {
        return None;
    }
    let mut out = String::with_capacity(cluster.len() + 4);
    out.push('\n'); // field 1, length-delimited
    out.push(char::from(n + 2));
    out.push('\n');
    out.push(char::from(n));
    out.push_str(cluster);
    Some(out)
}

fn read_map(map: MapType) -> Vec<(String, String)> {
    hostcalls::get_map_bytes(map)
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| {
            // Valid UTF-8 (nearly always) keeps its buffer: no second copy per header.
            let v = String::from_utf8(v)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
            (k, v)
        })
        .collect()
}

/// Up to `max` bytes of a host buffer; empty when absent or unreadable.
fn read_buffer(buffer: BufferType, max: usize) -> Vec<u8> {
    if max == 0 {
        return Vec::new();
    }
    hostcalls::get_buffer(buffer, 0, max)
        .ok()
        .flatten()
        .unwrap_or_default()
}

fn apply_ops(map: MapType, ops: &[HeaderOp]) {
    for op in ops {
        let _ = match op {
            HeaderOp::Set(name, value) => hostcalls::set_map_value(map, name, Some(value)),
            HeaderOp::Append(name, value) => hostcalls::add_map_value(map, name, value),
            HeaderOp::Remove(name) => hostcalls::set_map_value(map, name, None),
        };
    }
}

fn send_reply(reply: &LocalReply) {
    let headers: Vec<(&str, &str)> = reply
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    if let Err(e) =
        hostcalls::send_http_response(u32::from(reply.status), headers, Some(&reply.body))
    {
        log::error!("meshwall: sending local reply failed: {e:?}");
    }
}

struct Root<P: Policy> {
    policy: Option<Rc<P>>,
}

impl<P: Policy> Context for Root<P> {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let Some(policy) = &self.policy else { return };
        let (pseudo, headers) = split_pseudo(read_map(MapType::HttpCallResponseHeaders));
        let status = pseudo
            .iter()
            .find(|(k, _)| k == ":status")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let body = if body_size > policy.max_callout_body() {
            Vec::new()
        } else {
            read_buffer(BufferType::HttpCallResponseBody, body_size)
        };
        policy.on_http_call_response(
            token_id,
            CalloutResponse {
                status,
                headers: headers.0,
                body,
                body_size,
            },
            &WasmHost,
        );
    }
}

impl<P: Policy> RootContext for Root<P> {
    fn on_configure(&mut self, size: usize) -> bool {
        let bytes = read_buffer(BufferType::PluginConfiguration, size);
        let built = parse_config::<P::Config>(&bytes).and_then(|cfg| P::new(cfg, &WasmHost));
        match built {
            Ok(policy) => {
                if let Some(period) = policy.tick_period() {
                    if let Err(e) = hostcalls::set_tick_period(period) {
                        // Without ticks, background work (remote JWKS refresh) never runs.
                        log::error!(
                            "meshwall.{}: set_tick_period({period:?}) failed: {e:?}",
                            P::NAME
                        );
                    }
                }
                self.policy = Some(Rc::new(policy));
                true
            }
            Err(e) => {
                log::error!("meshwall.{}: {}", P::NAME, e);
                self.policy = None;
                false
            }
        }
    }

    fn on_tick(&mut self) {
        if let Some(policy) = &self.policy {
            policy.on_tick(&WasmHost);
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http::<P> {
            policy: self.policy.clone(),
            x: Exchange::new(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Http<P: Policy> {
    policy: Option<Rc<P>>,
    x: Exchange<P>,
}

impl<P: Policy> Http<P> {
    fn read_request(end_of_stream: bool, with_client_ip: bool) -> Request {
        let (pseudo, headers) = split_pseudo(read_map(MapType::HttpRequestHeaders));
        let pseudo_value = |name: &str| {
            pseudo
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let client_ip = with_client_ip
            .then(|| hostcalls::get_property(vec!["source", "address"]))
            .and_then(|r| r.ok().flatten())
            .and_then(|b| String::from_utf8(b).ok())
            .map(|a| client_ip_from_address(&a).to_string());
        Request {
            method: pseudo_value(":method"),
            path: pseudo_value(":path"),
            authority: pseudo_value(":authority"),
            scheme: pseudo_value(":scheme"),
            headers,
            client_ip,
            has_body: !end_of_stream,
        }
    }
}

/// Carries out a driver step on the request headers.
fn carry_out(step: Step) -> WasmAction {
    match step {
        Step::Continue(ops) => {
            apply_ops(MapType::HttpRequestHeaders, &ops);
            WasmAction::Continue
        }
        Step::Pause(ops) => {
            apply_ops(MapType::HttpRequestHeaders, &ops);
            WasmAction::Pause
        }
        Step::Reply(reply) => {
            send_reply(&reply);
            WasmAction::Pause
        }
    }
}

impl<P: Policy> Context for Http<P> {
    /// The answer to a gRPC call this request made while its headers were handled.
    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        let Some(policy) = self.policy.clone() else {
            return;
        };
        let message = if status_code != 0 || response_size > policy.max_callout_body() {
            Vec::new()
        } else {
            read_buffer(BufferType::GrpcReceiveBuffer, response_size)
        };
        let response = GrpcResponse {
            status_code,
            message,
            message_size: response_size,
        };
        let mut read = |max: usize| read_buffer(BufferType::HttpRequestBody, max);
        match self
            .x
            .callout_response(&policy, token_id, response, &mut read, &WasmHost)
        {
            Step::Continue(ops) => {
                apply_ops(MapType::HttpRequestHeaders, &ops);
                if let Err(e) = hostcalls::resume_http_request() {
                    log::error!("meshwall.{}: resuming the request failed: {e:?}", P::NAME);
                }
            }
            // Still waiting (another call), or now buffering the body: the request stays held.
            Step::Pause(ops) => apply_ops(MapType::HttpRequestHeaders, &ops),
            Step::Reply(reply) => send_reply(&reply),
        }
    }
}

impl<P: Policy> HttpContext for Http<P> {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> WasmAction {
        let Some(policy) = self.policy.clone() else {
            // Only reachable if Envoy kept a plugin whose configuration failed: fail closed.
            send_reply(&LocalReply::problem(503, "filter not configured"));
            return WasmAction::Pause;
        };
        if !policy.uses_request() {
            return WasmAction::Continue;
        }
        let req = Self::read_request(end_of_stream, policy.uses_client_ip());
        carry_out(
            self.x
                .request_headers(&policy, req, end_of_stream, &WasmHost),
        )
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> WasmAction {
        let Some(policy) = self.policy.clone() else {
            return WasmAction::Pause;
        };
        let mut read = |max: usize| read_buffer(BufferType::HttpRequestBody, max);
        carry_out(
            self.x
                .request_body(&policy, body_size, end_of_stream, &mut read, &WasmHost),
        )
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> WasmAction {
        let Some(policy) = self.policy.clone() else {
            return WasmAction::Pause;
        };
        let trailers = Headers(read_map(MapType::HttpRequestTrailers));
        let mut read = |max: usize| read_buffer(BufferType::HttpRequestBody, max);
        let (ops, step) = self
            .x
            .request_trailers(&policy, &trailers, &mut read, &WasmHost);
        apply_ops(MapType::HttpRequestTrailers, &ops);
        carry_out(step)
    }

    fn on_http_response_headers(
        &mut self,
        _num_headers: usize,
        _end_of_stream: bool,
    ) -> WasmAction {
        let Some(policy) = self.policy.clone() else {
            return WasmAction::Continue;
        };
        if !policy.uses_response() {
            return WasmAction::Continue;
        }
        let (pseudo, headers) = split_pseudo(read_map(MapType::HttpResponseHeaders));
        let status = pseudo
            .iter()
            .find(|(k, _)| k == ":status")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let ops = self
            .x
            .response_headers(&policy, &Response { status, headers }, &WasmHost);
        apply_ops(MapType::HttpResponseHeaders, &ops);
        WasmAction::Continue
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> WasmAction {
        let Some(policy) = self.policy.clone() else {
            return WasmAction::Continue;
        };
        if !policy.uses_response() {
            return WasmAction::Continue;
        }
        let trailers = Headers(read_map(MapType::HttpResponseTrailers));
        let ops = self.x.response_trailers(&policy, &trailers, &WasmHost);
        apply_ops(MapType::HttpResponseTrailers, &ops);
        WasmAction::Continue
    }
}
