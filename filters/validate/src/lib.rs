//! meshwall `validate` filter: validates requests against an OpenAPI 3.0/3.1 document
//! (routing, parameters, JSON bodies) and applies JSON threat protection limits.

pub mod config;
pub mod media;
pub mod numbers;
pub mod params;
pub mod policy;
pub mod router;
pub mod schema;
pub mod spec;
pub mod threat;

pub use policy::ValidatePolicy;

meshwall_core::export_policy!(ValidatePolicy);
