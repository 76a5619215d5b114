//! `MemHost`: an in-memory [`Host`] for native tests — shared data with Envoy's CAS semantics,
//! metrics, a clock that moves only when told, recorded HTTP and gRPC callouts with scripted
//! answers, and scripted foreign functions. Clones share everything, as a VM's workers share
//! shared data.

use crate::host::{GrpcResponse, GrpcUpstream, Host, HostError, MetricId, MetricKind};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A recorded [`Host::http_call`] of a [`MemHost`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedCall {
    pub token: u32,
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub timeout: Duration,
}

/// A recorded [`Host::grpc_call`] of a [`MemHost`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedGrpcCall {
    pub token: u32,
    pub cluster: String,
    /// Set by [`Host::grpc_call_with_authority`].
    pub authority: Option<String>,
    pub service: String,
    pub method: String,
    pub initial_metadata: Vec<(String, Vec<u8>)>,
    pub message: Vec<u8>,
    pub timeout: Duration,
}

/// How a [`MemHost`] answers gRPC calls (see [`MemHost::answer_grpc_with`]).
type GrpcResponder = Box<dyn Fn(&RecordedGrpcCall) -> GrpcResponse>;

/// A foreign function of a [`MemHost`] (see [`MemHost::with_foreign`]).
type ForeignFn = std::rc::Rc<dyn Fn(&[u8]) -> Result<Option<Vec<u8>>, HostError>>;

#[derive(Debug, Default)]
struct Store {
    entries: HashMap<String, (Vec<u8>, u32)>,
    next_cas: u32,
}

/// In-memory host for native tests. Clones share one shared-data store and one metric
/// registry, like the worker VMs of one Envoy process, so several policies built on clones
/// act as several workers. The clock is per clone-family and moves only when told.
#[derive(Clone)]
pub struct MemHost {
    inner: std::rc::Rc<MemInner>,
}

struct MemInner {
    now: Cell<SystemTime>,
    store: RefCell<Store>,
    metrics: RefCell<Vec<(String, MetricKind, i64)>>,
    calls: RefCell<Vec<RecordedCall>>,
    next_token: Cell<u32>,
    /// When > 0, that many upcoming CAS writes fail as if another worker won the race.
    forced_cas_failures: Cell<u32>,
    grpc_calls: RefCell<Vec<RecordedGrpcCall>>,
    /// How many of `grpc_calls` (oldest first) have been answered.
    grpc_answered: Cell<usize>,
    grpc_responder: RefCell<Option<std::rc::Rc<GrpcResponder>>>,
    /// When > 0, that many upcoming gRPC calls cannot be started.
    grpc_failures: Cell<u32>,
    /// Foreign functions by name, and how often each was called.
    foreign: RefCell<HashMap<String, (ForeignFn, usize)>>,
    /// Every host call made so far, counted by `Host` method name.
    host_calls: RefCell<std::collections::BTreeMap<&'static str, u32>>,
}

impl Default for MemHost {
    fn default() -> Self {
        Self::new()
    }
}

impl MemHost {
    /// A host whose clock reads 2026-01-01T00:00:00Z.
    pub fn new() -> Self {
        MemHost {
            inner: std::rc::Rc::new(MemInner {
                now: Cell::new(UNIX_EPOCH + Duration::from_secs(1_767_225_600)),
                store: RefCell::new(Store {
                    entries: HashMap::new(),
                    next_cas: 1,
                }),
                metrics: RefCell::new(Vec::new()),
                calls: RefCell::new(Vec::new()),
                next_token: Cell::new(1),
                forced_cas_failures: Cell::new(0),
                grpc_calls: RefCell::new(Vec::new()),
                grpc_answered: Cell::new(0),
                grpc_responder: RefCell::new(None),
                grpc_failures: Cell::new(0),
                foreign: RefCell::new(HashMap::new()),
                host_calls: RefCell::new(std::collections::BTreeMap::new()),
            }),
        }
    }

    /// Gives this host (and its clones) the foreign function `name`, answering with `f`.
    pub fn with_foreign(
        self,
        name: &str,
        f: impl Fn(&[u8]) -> Result<Option<Vec<u8>>, HostError> + 'static,
    ) -> Self {
        self.inner
            .foreign
            .borrow_mut()
            .insert(name.to_string(), (std::rc::Rc::new(f), 0));
        self
    }

    /// The host calls made since the last [`MemHost::reset_host_calls`] (on this host and its
    /// clones), by `Host` method name (`now`, `shared_get`, `increment_metric`, ...): each one
    /// leaves the VM in Envoy, so tests can pin what a request costs.
    pub fn host_calls(&self) -> std::collections::BTreeMap<&'static str, u32> {
        self.inner.host_calls.borrow().clone()
    }

    pub fn reset_host_calls(&self) {
        self.inner.host_calls.borrow_mut().clear();
    }

    fn count(&self, call: &'static str) {
        let mut calls = self.inner.host_calls.borrow_mut();
        let n = calls.entry(call).or_insert(0);
        *n = n.saturating_add(1);
    }

    /// How often the foreign function `name` was called.
    pub fn foreign_calls(&self, name: &str) -> usize {
        self.inner.foreign.borrow().get(name).map_or(0, |(_, n)| *n)
    }

    pub fn set_now(&self, t: SystemTime) {
        self.inner.now.set(t);
    }

    pub fn advance(&self, d: Duration) {
        self.inner.now.set(self.inner.now.get() + d);
    }

    /// Makes the next `n` conditional shared-data writes fail with a CAS mismatch (after
    /// bumping the key's CAS, as a competing write would).
    pub fn fail_next_cas(&self, n: u32) {
        self.inner.forced_cas_failures.set(n);
    }

    /// Value of a metric by name (0 when never defined).
    pub fn metric(&self, name: &str) -> i64 {
        self.inner
            .metrics
            .borrow()
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, _, v)| *v)
            .unwrap_or(0)
    }

    /// Names of every defined metric.
    pub fn metric_names(&self) -> Vec<String> {
        self.inner
            .metrics
            .borrow()
            .iter()
            .map(|(n, _, _)| n.clone())
            .collect()
    }

    /// Number of shared-data keys ever written.
    pub fn shared_key_count(&self) -> usize {
        self.inner.store.borrow().entries.len()
    }

    /// Total bytes of shared-data keys and values.
    pub fn shared_bytes(&self) -> usize {
        self.inner
            .store
            .borrow()
            .entries
            .iter()
            .map(|(k, (v, _))| k.len() + v.len())
            .sum()
    }

    /// HTTP calls made so far, oldest first.
    pub fn calls(&self) -> Vec<RecordedCall> {
        self.inner.calls.borrow().clone()
    }

    /// gRPC calls made so far, oldest first.
    pub fn grpc_calls(&self) -> Vec<RecordedGrpcCall> {
        self.inner.grpc_calls.borrow().clone()
    }

    /// How gRPC calls are answered from now on: `f` gets each call (on this host and its
    /// clones) and returns its answer; see [`MemHost::next_grpc_answer`].
    pub fn answer_grpc_with(&self, f: impl Fn(&RecordedGrpcCall) -> GrpcResponse + 'static) {
        *self.inner.grpc_responder.borrow_mut() = Some(std::rc::Rc::new(Box::new(f)));
    }

    /// Answers the oldest gRPC call not answered yet with the function given to
    /// [`MemHost::answer_grpc_with`]: its token and the answer, as Envoy would deliver them.
    /// `None` when every call has been answered, or no function was given.
    pub fn next_grpc_answer(&self) -> Option<(u32, GrpcResponse)> {
        let responder = self.inner.grpc_responder.borrow().clone()?;
        let i = self.inner.grpc_answered.get();
        let call = self.inner.grpc_calls.borrow().get(i).cloned()?;
        self.inner.grpc_answered.set(i + 1);
        Some((call.token, responder(&call)))
    }

    /// Makes the next `n` gRPC calls fail to start (as when Envoy refuses the call).
    pub fn fail_next_grpc_calls(&self, n: u32) {
        self.inner.grpc_failures.set(n);
    }
}

impl Host for MemHost {
    fn now(&self) -> SystemTime {
        self.count("now");
        self.inner.now.get()
    }

    fn shared_get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
        self.count("shared_get");
        Ok(self.inner.store.borrow().entries.get(key).cloned())
    }

    fn call_foreign_function(&self, name: &str, arg: &[u8]) -> Result<Option<Vec<u8>>, HostError> {
        self.count("call_foreign_function");
        let f = {
            let mut map = self.inner.foreign.borrow_mut();
            let Some((f, n)) = map.get_mut(name) else {
                return Err(HostError::Failed("NotFound".into()));
            };
            *n += 1;
            f.clone()
        };
        f(arg)
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        self.count("shared_set");
        let mut store = self.inner.store.borrow_mut();
        let next = store.next_cas;
        store.next_cas = next.wrapping_add(1).max(1);
        let forced = self.inner.forced_cas_failures.get();
        if let Some(expected) = cas.filter(|c| *c != 0) {
            let current = store.entries.get(key).map(|(_, c)| *c);
            if forced > 0 {
                self.inner.forced_cas_failures.set(forced - 1);
                if let Some(entry) = store.entries.get_mut(key) {
                    entry.1 = next;
                }
                return Err(HostError::CasMismatch);
            }
            // As in proxy-wasm-cpp-host: the CAS is only compared when the key exists; a
            // conditional write to a missing key creates it.
            if current.is_some_and(|c| c != expected) {
                return Err(HostError::CasMismatch);
            }
        }
        store
            .entries
            .insert(key.to_string(), (value.to_vec(), next));
        Ok(())
    }

    fn define_metric(&self, kind: MetricKind, name: &str) -> Result<MetricId, HostError> {
        self.count("define_metric");
        let mut metrics = self.inner.metrics.borrow_mut();
        if let Some(i) = metrics.iter().position(|(n, _, _)| n == name) {
            return Ok(MetricId(u32::try_from(i).unwrap_or(u32::MAX)));
        }
        metrics.push((name.to_string(), kind, 0));
        Ok(MetricId(
            u32::try_from(metrics.len() - 1).unwrap_or(u32::MAX),
        ))
    }

    fn increment_metric(&self, id: MetricId, delta: i64) {
        self.count("increment_metric");
        if let Some(m) = self.inner.metrics.borrow_mut().get_mut(id.0 as usize) {
            m.2 = m.2.saturating_add(delta);
        }
    }

    fn record_metric(&self, id: MetricId, value: u64) {
        self.count("record_metric");
        if let Some(m) = self.inner.metrics.borrow_mut().get_mut(id.0 as usize) {
            m.2 = i64::try_from(value).unwrap_or(i64::MAX);
        }
    }

    fn http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, HostError> {
        self.count("http_call");
        let token = self.inner.next_token.get();
        self.inner.next_token.set(token + 1);
        self.inner.calls.borrow_mut().push(RecordedCall {
            token,
            cluster: cluster.to_string(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.map(<[u8]>::to_vec),
            timeout,
        });
        Ok(token)
    }

    fn grpc_call(
        &self,
        upstream: GrpcUpstream<'_>,
        service: &str,
        method: &str,
        initial_metadata: &[(&str, &[u8])],
        message: &[u8],
        timeout: Duration,
    ) -> Result<u32, HostError> {
        self.count("grpc_call");
        let failures = self.inner.grpc_failures.get();
        if failures > 0 {
            self.inner.grpc_failures.set(failures - 1);
            return Err(HostError::Failed("InternalFailure".into()));
        }
        let token = self.inner.next_token.get();
        self.inner.next_token.set(token + 1);
        self.inner.grpc_calls.borrow_mut().push(RecordedGrpcCall {
            token,
            cluster: upstream.cluster.to_string(),
            authority: upstream.authority.map(str::to_string),
            service: service.to_string(),
            method: method.to_string(),
            initial_metadata: initial_metadata
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_vec()))
                .collect(),
            message: message.to_vec(),
            timeout,
        });
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::grpc_status;

    #[test]
    fn host_calls_are_counted_by_method_across_clones() {
        let a = MemHost::new();
        let b = a.clone();
        let _ = a.now();
        let _ = b.now();
        let _ = b.shared_get("k");
        let expected: std::collections::BTreeMap<&str, u32> =
            [("now", 2), ("shared_get", 1)].into_iter().collect();
        assert_eq!(a.host_calls(), expected);
        a.reset_host_calls();
        assert!(b.host_calls().is_empty());
    }

    #[test]
    fn cas_semantics_match_envoy() {
        let worker_a = MemHost::new();
        let worker_b = worker_a.clone();
        assert_eq!(worker_a.shared_get("k").unwrap(), None);
        worker_a.shared_set("k", b"1", None).unwrap();
        let (v, cas) = worker_b.shared_get("k").unwrap().unwrap();
        assert_eq!(v, b"1");
        worker_a.shared_set("k", b"2", Some(cas)).unwrap();
        assert_eq!(
            worker_b.shared_set("k", b"3", Some(cas)),
            Err(HostError::CasMismatch)
        );
        assert_eq!(worker_b.shared_get("k").unwrap().unwrap().0, b"2");
        // A conditional write to a missing key creates it (Envoy does the same).
        worker_a.shared_set("new", b"x", Some(7)).unwrap();
        assert_eq!(worker_b.shared_get("new").unwrap().unwrap().0, b"x");
    }

    #[test]
    fn forced_cas_failures_bump_the_cas() {
        let h = MemHost::new();
        h.shared_set("k", b"1", None).unwrap();
        let (_, cas) = h.shared_get("k").unwrap().unwrap();
        h.fail_next_cas(1);
        assert_eq!(
            h.shared_set("k", b"2", Some(cas)),
            Err(HostError::CasMismatch)
        );
        let (v, cas2) = h.shared_get("k").unwrap().unwrap();
        assert_eq!(v, b"1");
        assert_ne!(cas, cas2);
        h.shared_set("k", b"2", Some(cas2)).unwrap();
    }

    #[test]
    fn metrics_are_shared_by_name() {
        let a = MemHost::new();
        let b = a.clone();
        let ia = a
            .define_metric(MetricKind::Counter, "meshwall.x.allowed")
            .unwrap();
        let ib = b
            .define_metric(MetricKind::Counter, "meshwall.x.allowed")
            .unwrap();
        a.increment_metric(ia, 2);
        b.increment_metric(ib, 3);
        assert_eq!(a.metric("meshwall.x.allowed"), 5);
    }

    #[test]
    fn grpc_calls_are_recorded_and_answered_in_order() {
        let h = MemHost::new();
        let worker = h.clone();
        assert_eq!(h.next_grpc_answer(), None, "no responder, no call");
        let t1 = h
            .grpc_call(
                "rls".into(),
                "svc",
                "M",
                &[("x-a", b"1")],
                b"one",
                Duration::from_millis(20),
            )
            .unwrap();
        let t2 = worker
            .grpc_call(
                "rls".into(),
                "svc",
                "M",
                &[],
                b"two",
                Duration::from_millis(20),
            )
            .unwrap();
        assert_ne!(t1, t2);
        assert_eq!(h.next_grpc_answer(), None, "no responder yet");
        h.answer_grpc_with(|c| {
            if c.message == b"one" {
                GrpcResponse::ok(b"answer".to_vec())
            } else {
                GrpcResponse::failed(grpc_status::UNAVAILABLE)
            }
        });
        assert_eq!(
            worker.next_grpc_answer(),
            Some((t1, GrpcResponse::ok(b"answer".to_vec())))
        );
        assert_eq!(h.next_grpc_answer(), Some((t2, GrpcResponse::failed(14))));
        assert_eq!(h.next_grpc_answer(), None);
        let calls = h.grpc_calls();
        assert_eq!(calls.len(), 2);
        assert_eq!(
            calls[0].initial_metadata,
            [("x-a".to_string(), b"1".to_vec())]
        );
        assert_eq!(calls[0].timeout, Duration::from_millis(20));
        h.fail_next_grpc_calls(1);
        assert!(h
            .grpc_call("rls".into(), "s", "M", &[], b"", Duration::ZERO)
            .is_err());
        assert!(h
            .grpc_call("rls".into(), "s", "M", &[], b"", Duration::ZERO)
            .is_ok());
        assert_eq!(
            h.grpc_calls().len(),
            3,
            "a call that failed to start is not recorded"
        );
    }

    #[test]
    fn foreign_functions_answer_as_scripted() {
        let h = MemHost::new().with_foreign("echo", |a| Ok(Some(a.to_vec())));
        let other = h.clone();
        assert_eq!(
            other.call_foreign_function("echo", b"x"),
            Ok(Some(b"x".to_vec()))
        );
        assert_eq!(h.foreign_calls("echo"), 1);
        assert!(h.call_foreign_function("missing", b"x").is_err());
        assert_eq!(h.foreign_calls("missing"), 0);
    }

    #[test]
    fn clock_moves_only_when_told() {
        let h = MemHost::new();
        let t = h.now_millis();
        h.advance(Duration::from_millis(1500));
        assert_eq!(h.now_millis() - t, 1500);
        assert_eq!(h.now_secs(), 1_767_225_601);
    }
}
