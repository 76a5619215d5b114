//! Remote JWKS: fetched by the root context, shared by every worker through shared data.
//!
//! Two shared-data keys per remote provider (a fixed number, set by the configuration):
//! - `<base>.state`: small JSON [`FetchState`] (version, next fetch time, fetch lease,
//!   refetch request), always written with CAS;
//! - `<base>.jwks`: 8-byte little-endian version + the JWKS document as fetched.
//!
//! Each worker ticks. A tick that finds a fetch due takes the *lease* (a CAS write of
//! `lease_until_ms`); only the winner calls the JWKS cluster, so there is one fetch per
//! interval per Envoy, not per worker. A worker reparses the JWKS only when the version in
//! the state changes (on a tick, or on a request while it has no keys yet). A token with an
//! unknown `kid` sets `refetch_requested` (at most once per `refetch_min_interval`); the next
//! tick performs the fetch.
//!
//! Keys outlive failing fetches only so long: a successful fetch at `t` makes them usable
//! until `t + cache_duration + max_stale` (`keys_until_ms` in the state). After that every
//! worker drops them (requests for the provider get 401 `Jwks not available`) until a fetch
//! succeeds again. A response body over [`MAX_JWKS_BYTES`] is refused by its size alone: the
//! host never copies it into the VM (`Policy::max_callout_body`).

use crate::jwks::{parse_jwks, KeySet, MAX_JWKS_BYTES};
use meshwall_core::{CalloutResponse, Host, HostError};
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchState {
    /// Version of the JWKS in `<base>.jwks` (0: never loaded).
    pub version: u64,
    /// SHA-256 (hex) of that JWKS document: an identical refetch keeps the version.
    pub hash: String,
    /// When the next regular fetch is due (ms since the epoch).
    pub next_fetch_ms: u64,
    /// A fetch is under way until then (ms); nobody else starts one.
    pub lease_until_ms: u64,
    /// A token named an unknown `kid`: fetch on the next tick.
    pub refetch_requested: bool,
    /// When the last refetch for an unknown `kid` started (ms).
    pub last_refetch_ms: u64,
    /// The keys of `version` may be used until then (ms); 0: no limit recorded (a state
    /// written before `max_stale` existed, until the next successful fetch).
    #[serde(default)]
    pub keys_until_ms: u64,
}

#[derive(Debug, Clone)]
pub struct RemoteSettings {
    pub cluster: String,
    pub authority: String,
    pub path: String,
    pub timeout: Duration,
    pub cache_duration: Duration,
    pub failed_refetch: Duration,
    pub refetch_min: Duration,
    pub refetch_on_unknown_kid: bool,
    /// How long past `cache_duration` keys are kept while fetches fail.
    pub max_stale: Duration,
}

/// Outcome of one fetch, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchOutcome {
    Ok,
    Failed,
}

#[derive(Debug)]
pub struct Remote {
    pub provider: String,
    pub settings: RemoteSettings,
    state_key: String,
    jwks_key: String,
    keys: RefCell<Option<Rc<KeySet>>>,
    /// This worker's copy of the state's `keys_until_ms` for its keys.
    keys_until_ms: Cell<u64>,
    /// The keys were dropped for age (for the log line).
    expired: Cell<bool>,
    last_local_refetch_request_ms: Cell<u64>,
    last_unavailable_log_ms: Cell<Option<u64>>,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Remote {
    pub fn new(provider: &str, settings: RemoteSettings) -> Self {
        // The keys name the provider and a hash of where it fetches from, so two listeners
        // sharing one vm_id with different JWKS sources never mix their keys.
        let id = hmac_sha256::Hash::hash(
            format!(
                "{}\n{}\n{}",
                settings.cluster, settings.authority, settings.path
            )
            .as_bytes(),
        );
        let base = format!(
            "meshwall.jwt.{provider}.{}",
            hex(id.get(..6).unwrap_or(&[]))
        );
        Remote {
            provider: provider.to_string(),
            settings,
            state_key: format!("{base}.state"),
            jwks_key: format!("{base}.jwks"),
            keys: RefCell::new(None),
            keys_until_ms: Cell::new(0),
            expired: Cell::new(false),
            last_local_refetch_request_ms: Cell::new(0),
            last_unavailable_log_ms: Cell::new(None),
        }
    }

    pub fn state_key(&self) -> &str {
        &self.state_key
    }

    pub fn jwks_key(&self) -> &str {
        &self.jwks_key
    }

    /// Creates the state key when absent (configuration time, before any tick), so later
    /// writes are all CAS writes.
    pub fn init(&self, host: &dyn Host) {
        if let Ok(None) = host.shared_get(&self.state_key) {
            if let Ok(v) = serde_json::to_vec(&FetchState::default()) {
                let _ = host.shared_set(&self.state_key, &v, None);
            }
        }
    }

    fn read_state(&self, host: &dyn Host) -> Option<(FetchState, Option<u32>)> {
        match host.shared_get(&self.state_key) {
            Ok(Some((bytes, cas))) => serde_json::from_slice(&bytes).ok().map(|s| (s, Some(cas))),
            Ok(None) => Some((FetchState::default(), None)),
            Err(_) => None,
        }
    }

    fn write_state(
        &self,
        host: &dyn Host,
        state: &FetchState,
        cas: Option<u32>,
    ) -> Result<(), HostError> {
        let bytes = serde_json::to_vec(state).map_err(|e| HostError::Failed(e.to_string()))?;
        host.shared_set(&self.state_key, &bytes, cas)
    }

    /// Applies `change` to the shared state with a CAS loop (a few tries).
    fn update_state(&self, host: &dyn Host, change: impl Fn(&mut FetchState)) -> bool {
        for _ in 0..8 {
            let Some((mut st, cas)) = self.read_state(host) else {
                return false;
            };
            change(&mut st);
            match self.write_state(host, &st, cas) {
                Ok(()) => return true,
                Err(HostError::CasMismatch) => continue,
                Err(_) => return false,
            }
        }
        false
    }

    /// The keys this worker uses now. While it has none, or its keys are past their
    /// `keys_until_ms`, looks in shared data (another worker may have fetched them); keys
    /// still too old are dropped.
    pub fn current(&self, host: &dyn Host) -> Option<Rc<KeySet>> {
        let now = host.now_millis();
        let mine = self.keys.borrow().clone();
        if let Some(k) = mine {
            if !Self::past(self.keys_until_ms.get(), now) {
                return Some(k);
            }
        }
        self.sync(host);
        // Shared data unreadable: this worker's own copy of the limit still holds.
        if self.drop_if_past(self.keys_until_ms.get(), now) {
            return None;
        }
        self.keys.borrow().clone()
    }

    fn past(until_ms: u64, now_ms: u64) -> bool {
        until_ms != 0 && now_ms > until_ms
    }

    /// The keys without touching shared data (cache validation).
    pub fn loaded_version(&self) -> Option<u64> {
        self.keys.borrow().as_ref().map(|k| k.version)
    }

    /// Drops this worker's keys when they are past `until_ms`; true when they are.
    fn drop_if_past(&self, until_ms: u64, now_ms: u64) -> bool {
        if !Self::past(until_ms, now_ms) {
            return false;
        }
        if self.keys.borrow_mut().take().is_some() || !self.expired.get() {
            meshwall_core::policy_log!(warn, crate::policy::JwtPolicy,
                "provider `{}`: JWKS not refreshed for cache_duration + max_stale (fetches from cluster `{}` failing): keys dropped, refusing protected requests with 401",
                self.provider,
                self.settings.cluster
            );
        }
        self.expired.set(true);
        true
    }

    /// Reparses the shared JWKS if its version differs from this worker's; drops the keys
    /// when the shared state says they are too old.
    pub fn sync(&self, host: &dyn Host) {
        let Some((st, _)) = self.read_state(host) else {
            return;
        };
        if st.version == 0 || self.drop_if_past(st.keys_until_ms, host.now_millis()) {
            return;
        }
        if self.loaded_version() == Some(st.version) {
            self.keys_until_ms.set(st.keys_until_ms);
            return;
        }
        let Ok(Some((bytes, _))) = host.shared_get(&self.jwks_key) else {
            return;
        };
        let (Some(head), Some(body)) = (bytes.get(..8), bytes.get(8..)) else {
            return;
        };
        let mut v = [0u8; 8];
        v.copy_from_slice(head);
        let version = u64::from_le_bytes(v);
        if self.loaded_version() == Some(version) {
            self.keys_until_ms.set(st.keys_until_ms);
            return;
        }
        match parse_jwks(body, false) {
            Ok((mut set, _)) => {
                set.version = version;
                *self.keys.borrow_mut() = Some(Rc::new(set));
                self.keys_until_ms.set(st.keys_until_ms);
                self.expired.set(false);
            }
            Err(e) => meshwall_core::policy_log!(
                warn,
                crate::policy::JwtPolicy,
                "provider `{}`: shared JWKS unreadable: {}",
                self.provider,
                e.reason
            ),
        }
    }

    /// Logs (at most every 10 s per worker) that requests are refused for lack of keys.
    pub fn note_unavailable(&self, now_ms: u64) {
        let due = self
            .last_unavailable_log_ms
            .get()
            .is_none_or(|t| now_ms.saturating_sub(t) >= 10_000);
        if due {
            self.last_unavailable_log_ms.set(Some(now_ms));
            let why = if self.expired.get() {
                "JWKS expired (older than cache_duration + max_stale)"
            } else {
                "no JWKS loaded yet"
            };
            meshwall_core::policy_log!(warn, crate::policy::JwtPolicy,
                "provider `{}`: {why} (fetch from cluster `{}` pending or failing); refusing protected requests with 401",
                self.provider,
                self.settings.cluster
            );
        }
    }

    /// A token named a `kid` this worker's keys lack: ask for a refetch, at most once per
    /// `refetch_min_interval` (per worker without touching shared data, then per Envoy).
    pub fn request_refetch(&self, host: &dyn Host) {
        if !self.settings.refetch_on_unknown_kid {
            return;
        }
        let now = host.now_millis();
        let min = ms(self.settings.refetch_min);
        let last = self.last_local_refetch_request_ms.get();
        if last != 0 && now.saturating_sub(last) < min {
            return;
        }
        self.last_local_refetch_request_ms.set(now);
        let Some((st, cas)) = self.read_state(host) else {
            return;
        };
        if st.refetch_requested
            || (st.last_refetch_ms != 0 && now.saturating_sub(st.last_refetch_ms) < min)
        {
            return;
        }
        let mut next = st;
        next.refetch_requested = true;
        let _ = self.write_state(host, &next, cas);
    }

    /// Periodic work: pick up new keys; start a fetch if one is due and nobody holds the
    /// lease. Returns the call token when this worker started a fetch, or the failure when
    /// the call could not even be dispatched.
    pub fn on_tick(&self, host: &dyn Host) -> Option<Result<u32, FetchOutcome>> {
        self.sync(host);
        let now = host.now_millis();
        let (st, cas) = self.read_state(host)?;
        let refetch_due = st.refetch_requested;
        if !(now >= st.next_fetch_ms || refetch_due) || st.lease_until_ms > now {
            return None;
        }
        let mut mine = st.clone();
        mine.lease_until_ms = now
            .saturating_add(ms(self.settings.timeout))
            .saturating_add(1000);
        if refetch_due {
            mine.refetch_requested = false;
            mine.last_refetch_ms = now;
        }
        if self.write_state(host, &mine, cas).is_err() {
            return None; // another worker took the lease
        }
        let headers = [
            (":method", "GET"),
            (":path", self.settings.path.as_str()),
            (":authority", self.settings.authority.as_str()),
            ("accept", "application/json, application/jwk-set+json"),
        ];
        match host.http_call(
            &self.settings.cluster,
            &headers,
            None,
            self.settings.timeout,
        ) {
            Ok(token) => Some(Ok(token)),
            Err(e) => {
                meshwall_core::policy_log!(
                    warn,
                    crate::policy::JwtPolicy,
                    "provider `{}`: JWKS fetch from cluster `{}` not dispatched: {e}",
                    self.provider,
                    self.settings.cluster
                );
                self.fetch_failed(host);
                Some(Err(FetchOutcome::Failed))
            }
        }
    }

    fn fetch_failed(&self, host: &dyn Host) {
        let next = host
            .now_millis()
            .saturating_add(ms(self.settings.failed_refetch));
        self.update_state(host, |st| {
            st.lease_until_ms = 0;
            st.next_fetch_ms = next;
        });
    }

    /// The answer to a fetch this worker started.
    pub fn on_response(&self, resp: &CalloutResponse, host: &dyn Host) -> FetchOutcome {
        if resp.status != 200 {
            meshwall_core::policy_log!(
                warn,
                crate::policy::JwtPolicy,
                "provider `{}`: JWKS fetch failed: {}",
                self.provider,
                if resp.status == 0 {
                    "no response (timeout, reset or no upstream)".to_string()
                } else {
                    format!("HTTP {}", resp.status)
                }
            );
            self.fetch_failed(host);
            return FetchOutcome::Failed;
        }
        if resp.body_size > MAX_JWKS_BYTES {
            meshwall_core::policy_log!(
                warn,
                crate::policy::JwtPolicy,
                "provider `{}`: fetched JWKS refused: {} bytes, over the limit of {MAX_JWKS_BYTES}",
                self.provider,
                resp.body_size
            );
            self.fetch_failed(host);
            return FetchOutcome::Failed;
        }
        let (mut set, skipped) = match parse_jwks(&resp.body, false) {
            Ok(x) => x,
            Err(e) => {
                meshwall_core::policy_log!(
                    warn,
                    crate::policy::JwtPolicy,
                    "provider `{}`: fetched JWKS refused: {} {}",
                    self.provider,
                    e.field,
                    e.reason
                );
                self.fetch_failed(host);
                return FetchOutcome::Failed;
            }
        };
        for e in &skipped {
            meshwall_core::policy_log!(
                warn,
                crate::policy::JwtPolicy,
                "provider `{}`: JWKS key {} skipped: {}",
                self.provider,
                e.field,
                e.reason
            );
        }
        let hash = hex(&hmac_sha256::Hash::hash(&resp.body));
        let now = host.now_millis();
        let next = now.saturating_add(ms(self.settings.cache_duration));
        let until = next.saturating_add(ms(self.settings.max_stale));
        let Some((st, _)) = self.read_state(host) else {
            self.fetch_failed(host);
            return FetchOutcome::Failed;
        };
        let version = if st.hash == hash && st.version != 0 {
            st.version
        } else {
            let v = st.version.wrapping_add(1).max(1);
            let mut value = Vec::with_capacity(8 + resp.body.len());
            value.extend_from_slice(&v.to_le_bytes());
            value.extend_from_slice(&resp.body);
            if let Err(e) = host.shared_set(&self.jwks_key, &value, None) {
                meshwall_core::policy_log!(
                    warn,
                    crate::policy::JwtPolicy,
                    "provider `{}`: storing JWKS failed: {e}",
                    self.provider
                );
                self.fetch_failed(host);
                return FetchOutcome::Failed;
            }
            meshwall_core::policy_log!(
                info,
                crate::policy::JwtPolicy,
                "provider `{}`: JWKS loaded ({} keys, {} skipped)",
                self.provider,
                set.keys.len(),
                skipped.len()
            );
            v
        };
        self.update_state(host, |s| {
            s.version = version;
            s.hash = hash.clone();
            s.next_fetch_ms = next;
            s.lease_until_ms = 0;
            s.keys_until_ms = until;
        });
        set.version = version;
        if self.loaded_version() != Some(version) {
            *self.keys.borrow_mut() = Some(Rc::new(set));
        }
        self.keys_until_ms.set(until);
        self.expired.set(false);
        FetchOutcome::Ok
    }

    #[cfg(test)]
    pub fn shared_state(&self, host: &dyn Host) -> FetchState {
        self.read_state(host).map(|(s, _)| s).unwrap_or_default()
    }
}

/// Splits `http(s)://authority/path?query` into (authority, path).
pub fn split_uri(uri: &str) -> Option<(String, String)> {
    let rest = uri
        .strip_prefix("https://")
        .or_else(|| uri.strip_prefix("http://"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (rest.get(..i)?, rest.get(i..)?),
        None => (rest, "/"),
    };
    if authority.is_empty()
        || authority.contains('@')
        || !authority
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._:[]".contains(c))
        || path.chars().any(|c| c.is_control() || c == ' ' || c == '#')
    {
        return None;
    }
    Some((authority.to_string(), path.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        assert_eq!(
            split_uri("https://idp.example.com/.well-known/jwks.json"),
            Some(("idp.example.com".into(), "/.well-known/jwks.json".into()))
        );
        assert_eq!(
            split_uri("http://127.0.0.1:8081"),
            Some(("127.0.0.1:8081".into(), "/".into()))
        );
        assert_eq!(
            split_uri("http://h/k?x=1"),
            Some(("h".into(), "/k?x=1".into()))
        );
        for bad in [
            "ftp://h/x",
            "https:///x",
            "https://u@h/x",
            "h/x",
            "https://h/a b",
            "https://h/#f",
        ] {
            assert_eq!(split_uri(bad), None, "{bad}");
        }
    }
}
