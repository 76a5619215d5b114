//! meshwall `apikey` filter: API keys and consumers at the gateway (Apigee VerifyAPIKey, Kong
//! key-auth + acl, Envoy's `api_key_auth`). Keys are configured as SHA-256 digests and looked up
//! in O(1) per request; the consumer's name and groups go to the upstream as headers it can trust.

mod compile;
pub mod config;
pub mod keys;
pub mod policy;
pub mod sources;

pub use policy::ApiKeyPolicy;

meshwall_core::export_policy!(ApiKeyPolicy);
