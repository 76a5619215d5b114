//! meshwall-rls: an Envoy Rate Limit Service (`envoy.service.ratelimit.v3`) that keeps all its
//! state in Redis, so any number of replicas share exact limits. See docs/rls.md.

pub mod config;
pub mod http;
pub mod limiter;
pub mod matcher;
pub mod metrics;
pub mod server;
pub mod service;
pub mod settings;
pub mod store;
