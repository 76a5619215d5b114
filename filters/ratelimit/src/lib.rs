//! meshwall `ratelimit` filter: token buckets kept in proxy-wasm shared data, exact across
//! Envoy workers (compare-and-swap), in a fixed-size table so memory is bounded by
//! configuration, with `Retry-After` and the IETF `RateLimit`/`RateLimit-Policy` headers; and
//! `global` rules decided fleet-wide by an Envoy Rate Limit Service v3 server.

pub mod bucket;
mod compile;
pub mod config;
pub mod policy;
pub mod rls;
pub mod table;

pub use policy::RateLimitPolicy;

meshwall_core::export_policy!(RateLimitPolicy);
