//! meshwall `jwt` filter: verifies JWTs (JWKS inline or fetched), checks claims and route
//! rules, and hands verified claims to the upstream as headers.

mod build;
pub mod claims;
pub mod config;
pub mod hostcrypto;
pub mod json;
pub mod jwks;
pub mod policy;
pub mod remote;
pub mod rules;
pub mod shared_cache;
pub mod sources;
pub mod token;
pub mod verify;

pub use policy::JwtPolicy;

meshwall_core::export_policy!(JwtPolicy);
