//! The policy's tests, one module per subject, driven through core's exchange driver
//! (`meshwall_core::send`: what reaches the upstream is what Envoy would forward). Helpers
//! shared by all of them are here.

use super::*;
use crate::keys::sha256;
use meshwall_core::{parse_config, send as exchange, Headers, MemHost, Response, Sent};

pub(super) const ALICE: &str = "alice-key-0001";
pub(super) const ALICE2: &str = "alice-key-0002";
pub(super) const BOB: &str = "bob-key-0001";
pub(super) const CAROL: &str = "carol-plain-key";

/// `sha256:<hex>` of a key, as a configuration gives it.
pub(super) fn digest(key: &str) -> String {
    let hex: String = sha256(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// alice (admin, staff; two keys), bob (staff), carol (no group; her key in clear). `/healthz`
/// needs no key, `/public/` takes one if given, `/admin/` needs the admin group, `POST /staff/`
/// the staff group; anything else needs a valid key (the default).
pub(super) fn demo(extra: &str) -> String {
    format!(
        r#"{{
  "consumers": [
    {{"name": "alice", "keys": ["{a}", "{a2}"], "groups": ["admin", "staff"]}},
    {{"name": "bob", "keys": ["{b}"], "groups": ["staff"]}},
    {{"name": "carol", "keys": ["{CAROL}"]}}
  ],
  "rules": [
    {{"match": {{"path": "/healthz"}}, "requires": false}},
    {{"match": {{"prefix": "/public/"}}, "allow_missing": true}},
    {{"match": {{"prefix": "/admin/"}}, "groups": ["admin"]}},
    {{"match": {{"prefix": "/staff/", "methods": ["POST"]}}, "groups": ["staff"]}}
  ]{extra}
}}"#,
        a = digest(ALICE),
        a2 = digest(ALICE2),
        b = digest(BOB),
    )
}

pub(super) fn build(host: &MemHost, json: &str) -> Result<ApiKeyPolicy, ConfigError> {
    let cfg: ApiKeyConfig = parse_config(json.as_bytes())?;
    ApiKeyPolicy::new(cfg, host)
}

pub(super) fn policy(host: &MemHost, json: &str) -> ApiKeyPolicy {
    build(host, json).unwrap()
}

pub(super) fn ok() -> Response {
    Response {
        status: 200,
        headers: Headers::from_pairs([("content-type", "application/json")]),
    }
}

pub(super) fn req(method: &str, path: &str, headers: &[(&str, &str)]) -> Request {
    Request::new(method, path, headers)
}

/// One exchange without body.
pub(super) fn send(p: &ApiKeyPolicy, host: &MemHost, r: &Request) -> Sent {
    exchange(p, host, r, None, None, &ok())
}

/// The headers that reached the upstream (`None`: nothing did).
pub(super) fn upstream(s: &Sent) -> Option<&Headers> {
    s.upstream.as_ref().map(|u| &u.headers)
}

/// Status, detail and `WWW-Authenticate` of a local reply.
pub(super) fn reply(s: &Sent) -> (u16, String, Option<String>) {
    (
        s.status,
        s.problem()["detail"].as_str().unwrap_or("").to_string(),
        s.header("www-authenticate").map(str::to_string),
    )
}

mod config;
mod requests;
mod scale;
mod views;
