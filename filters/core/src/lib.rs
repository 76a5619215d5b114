//! meshwall core: everything the filters share.
//!
//! A filter is a [`Policy`]: plain Rust that turns a request or response view into an
//! [`Action`] (continue with header changes, or answer locally). It talks to the outside
//! world only through the [`Host`] trait, so it is unit-tested natively with [`MemHost`].
//! The one proxy-wasm adaptor (`adaptor`, compiled for wasm only) runs any policy inside
//! Envoy; a filter crate's `lib.rs` exports its module with [`export_policy!`].

pub mod action;
pub mod canon;
pub mod chain;
pub mod client;
pub mod config;
pub mod ct;
pub mod exchange;
pub mod host;
pub mod http;
pub mod logging;
pub mod matching;
pub mod memhost;
pub mod method;
pub mod metrics;
pub mod policy;
pub mod url_override;

#[cfg(target_arch = "wasm32")]
pub mod adaptor;
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub use proxy_wasm;

#[doc(hidden)]
pub use log as __log;

pub use action::{Action, Body, LocalReply, Verdict};
pub use canon::{canonical_path, Ambiguity, CanonConfig, Refusals};
pub use chain::Chain;
pub use config::{parse_config, parse_duration, ConfigError};
pub use ct::ct_eq;
pub use exchange::{send, send_with, Exchange, Sent, Step};
pub use host::{
    CalloutResponse, GrpcResponse, GrpcUpstream, Host, HostError, MemHost, MetricId, MetricKind,
    RecordedGrpcCall,
};
pub use http::{HeaderOp, Headers, Request, Response};
pub use matching::{MethodSet, PathMatch, RouteMatch, RouteMatchConfig};
pub use method::effective_method;
pub use policy::Policy;
pub use url_override::canonical_request_path;

/// Exports a proxy-wasm module that runs policy `$policy`. Put it in the filter crate's
/// `lib.rs`; it expands to nothing outside wasm builds, and nothing unless the crate's
/// `module` feature is on (the suite links every policy and exports one module itself).
#[macro_export]
macro_rules! export_policy {
    ($policy:ty) => {
        #[cfg(all(target_arch = "wasm32", feature = "module"))]
        $crate::proxy_wasm::main! {{
            $crate::adaptor::start::<$policy>();
        }}
    };
}
