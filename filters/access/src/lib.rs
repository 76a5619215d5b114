//! meshwall `access` filter: IP allow and deny lists (CIDR blocks, IPv4 and IPv6), global and
//! per route on the canonical request view; the client address from the downstream peer or
//! `x-forwarded-for` with trusted hops (meshwall-core's `client_ip`, shared with `ratelimit`).
//! Lists are sorted, merged address ranges: 100,000 blocks load in milliseconds and a lookup is
//! one binary search.

pub mod cidr;
mod compile;
pub mod config;
pub mod ipset;
pub mod policy;

pub use compile::DenyReason;
pub use policy::{AccessPolicy, Verdict};

meshwall_core::export_policy!(AccessPolicy);
