//! meshwall `cors` filter: per-route CORS with Envoy's `CorsPolicy` field names. Preflights
//! from allowed origins are answered here (204); actual responses get the CORS headers for
//! allowed origins only, `Vary: Origin`, and never the upstream's own `Access-Control-*`.

mod compile;
pub mod config;
pub mod origin;
pub mod policy;

pub use policy::CorsPolicy;

meshwall_core::export_policy!(CorsPolicy);
