//! The policy interface every filter implements.

use crate::action::{Action, Body, LocalReply, Verdict};
use crate::config::ConfigError;
use crate::host::{CalloutResponse, GrpcResponse, Host};
use crate::http::{HeaderOp, Headers, Request, Response};
use serde::de::DeserializeOwned;
use std::time::Duration;

/// A filter's logic: configuration in, decisions out. No proxy-wasm calls here; everything
/// from outside comes through the [`Host`] argument.
///
/// One policy value lives per Envoy worker (one VM each); it is shared by that worker's
/// requests. Per-request state lives in [`Policy::Exchange`]. Methods take `&self`: a policy
/// that keeps per-worker state (a cache) uses interior mutability.
pub trait Policy: Sized + 'static {
    /// The JSON configuration (serde, `deny_unknown_fields`).
    type Config: DeserializeOwned;
    /// Per-request state carried from the request phase to the response phase.
    type Exchange: Default;
    /// Short name: used in log lines (`meshwall.<NAME>: …`) and metric names.
    const NAME: &'static str;

    /// Checks the whole configuration and builds the policy. Any error rejects the config:
    /// name the field. Metrics are defined here.
    fn new(config: Self::Config, host: &dyn Host) -> Result<Self, ConfigError>;

    /// Whether `on_request_headers` has anything to do. When false, the adaptor skips the
    /// request phase entirely (reading headers from the host costs time inside the VM).
    fn uses_request(&self) -> bool {
        true
    }

    /// Whether the policy reads [`Request::client_ip`] (one more host call per request).
    fn uses_client_ip(&self) -> bool {
        true
    }

    /// Whether `on_response_headers` or `on_response_trailers` has anything to do. When false,
    /// the adaptor reads no response header map (one host call and a copy of every header per
    /// response).
    fn uses_response(&self) -> bool {
        true
    }

    /// Request headers have arrived.
    fn on_request_headers(
        &self,
        _ex: &mut Self::Exchange,
        _req: &Request,
        _host: &dyn Host,
    ) -> Action {
        Action::proceed()
    }

    /// The body asked for with [`Action::ReadBody`] is complete (or too large).
    fn on_request_body(
        &self,
        _ex: &mut Self::Exchange,
        _req: &Request,
        _body: Body<'_>,
        _host: &dyn Host,
    ) -> Verdict {
        Verdict::proceed()
    }

    /// A gRPC call made with [`Host::grpc_call`] while handling this request's headers (the
    /// policy answered [`Action::Wait`]) has answered: `token` is the one `grpc_call` returned.
    /// The request is still held; the answer is what the header phase would have answered
    /// (`Wait` again while other calls of the request are pending). `req` is the request as
    /// the header phase saw it.
    ///
    /// A policy that never waits never gets here; the default refuses (500), so a policy that
    /// waits without handling the answer fails closed.
    fn on_request_callout(
        &self,
        _ex: &mut Self::Exchange,
        _req: &Request,
        _token: u32,
        _response: GrpcResponse,
        _host: &dyn Host,
    ) -> Action {
        log::error!(
            "meshwall.{}: a callout answered that no one waits for",
            Self::NAME
        );
        Action::Reply(LocalReply::problem(500, "filter error"))
    }

    /// Request trailers have arrived (HTTP/2, gRPC, chunked HTTP/1.1): the changes to make to
    /// them before they go upstream. A filter that strips or writes a header strips it from
    /// the trailers too, or the upstream sees it there.
    fn on_request_trailers(
        &self,
        _ex: &mut Self::Exchange,
        _trailers: &Headers,
        _host: &dyn Host,
    ) -> Vec<HeaderOp> {
        Vec::new()
    }

    /// Response trailers are about to go downstream: the changes to make to them.
    fn on_response_trailers(
        &self,
        _ex: &mut Self::Exchange,
        _trailers: &Headers,
        _host: &dyn Host,
    ) -> Vec<HeaderOp> {
        Vec::new()
    }

    /// Response headers are about to go downstream: upstream responses and local replies
    /// (Envoy's or another filter's) alike.
    fn on_response_headers(
        &self,
        _ex: &mut Self::Exchange,
        _resp: &Response,
        _host: &dyn Host,
    ) -> Vec<HeaderOp> {
        Vec::new()
    }

    /// How often [`Policy::on_tick`] runs on each worker (`None`: never).
    fn tick_period(&self) -> Option<Duration> {
        None
    }

    /// Periodic background work (e.g. refreshing a JWKS); runs in the root context.
    fn on_tick(&self, _host: &dyn Host) {}

    /// The largest callout response body (HTTP) or message (gRPC) copied into the VM; a larger
    /// one arrives empty with its size, so a hostile endpoint cannot grow the VM's memory.
    fn max_callout_body(&self) -> usize {
        1 << 20
    }

    /// The answer to an [`Host::http_call`] made from `on_tick` (calls belong to the root
    /// context; a call made while handling a request would be cancelled with the request).
    fn on_http_call_response(&self, _token: u32, _response: CalloutResponse, _host: &dyn Host) {}
}
