//! meshwall `headers` filter: removes leaky response headers, adds security headers, and
//! strips request headers clients must not send.

pub mod config;
pub mod policy;

pub use policy::HeadersPolicy;

meshwall_core::export_policy!(HeadersPolicy);
