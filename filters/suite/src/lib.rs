//! meshwall suite module (`meshwall.wasm`): every policy in one VM and one HTTP context, one
//! pass over the request headers, one configuration with a section per policy:
//!
//! ```json
//! {"headers": {…}, "access": {…}, "cors": {…}, "jwt": {…}, "apikey": {…}, "ratelimit": {…}, "validate": {…}}
//! ```
//!
//! Each section is exactly that policy's own configuration; an absent section turns the
//! policy off. Requests go headers (request cleanup) → access → cors → jwt → apikey →
//! ratelimit → validate, each seeing the changes of the ones before; responses — upstream answers and the
//! local replies of any policy alike — go back the other way, so `headers` cleans every
//! response last. This is the order of the per-policy modules in `envoy/demo.yaml` and of the
//! Istio manifests' phases and priorities.

pub mod config;
pub mod policy;

pub use config::SuiteConfig;
pub use policy::SuitePolicy;

meshwall_core::export_policy!(SuitePolicy);
