//! The Redis side: a bounded pool of multiplexed connections (or a Redis Cluster connection),
//! and the two scripts. Every check-and-update of a request is one `EVALSHA` of `take.lua`
//! (one per Cluster slot the request's counters live in; a request whose counters span slots
//! and is rejected in one slot gets its charges in the others given back by `refund.lua`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Script, Value};
use tokio::sync::Semaphore;

use crate::metrics::{Metrics, RedisError};

pub const TAKE_LUA: &str = include_str!("take.lua");
pub const REFUND_LUA: &str = include_str!("refund.lua");

/// One counter to check and charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    pub key: String,
    pub kind: OpKind,
    /// 0 = check only.
    pub hits: u64,
    pub mode: Mode,
}

/// How an op's result counts for the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Over its limit: the request is rejected.
    Enforce,
    /// `shadow_mode`: never rejects (charged only when within its limit).
    Shadow,
    /// `quota_mode`: the request is rejected only when all its quota-mode ops are over.
    Quota,
}

impl Mode {
    fn arg(self) -> &'static str {
        match self {
            Mode::Enforce => "1",
            Mode::Shadow => "0",
            Mode::Quota => "q",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Bucket {
        max_tokens: u32,
        tokens_per_fill: u32,
        fill_interval_ms: u64,
    },
    Window {
        requests_per_unit: u32,
        window_ms: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpResult {
    /// The counter had room for the hits.
    pub ok: bool,
    /// The hits were taken (the request was admitted and `ok`).
    pub charged: bool,
    /// What is left after this request.
    pub remaining: u64,
    /// Milliseconds until the window ends / the bucket's next fill (0: a full bucket).
    pub reset_ms: u64,
    /// The window start or last fill (ms since the epoch, Redis clock).
    pub anchor: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Every enforced op was `ok`, and all were charged.
    pub admitted: bool,
    pub results: Vec<OpResult>,
}

#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// `redis://host:port/db` URLs: one for a single Redis, several (or one) with `cluster`.
    pub urls: Vec<String>,
    pub cluster: bool,
    /// Multiplexed connections to a single Redis (each pipelines many calls).
    pub pool_size: usize,
    /// Calls waiting for or in Redis at once; more wait until `timeout` and fail.
    pub max_inflight: usize,
    /// The deadline of one request's Redis work (pool wait + scripts).
    pub timeout: Duration,
    pub connect_timeout: Duration,
}

enum Backend {
    Single {
        conns: Vec<ConnectionManager>,
        next: AtomicUsize,
    },
    Cluster(ClusterConnection),
}

pub struct Store {
    backend: Backend,
    take: Script,
    refund: Script,
    permits: Semaphore,
    timeout: Duration,
    metrics: Arc<Metrics>,
}

impl Store {
    /// Connects lazily: the server starts (and answers `UNAVAILABLE`) while Redis is down, and
    /// reconnects by itself when it is back.
    pub async fn connect(s: &StoreSettings, metrics: Arc<Metrics>) -> Result<Store, String> {
        let backend = if s.cluster {
            let client = redis::cluster::ClusterClient::builder(s.urls.clone())
                .connection_timeout(s.connect_timeout)
                .response_timeout(s.timeout)
                .retries(2)
                .build()
                .map_err(|e| format!("redis cluster: {e}"))?;
            let conn = client
                .get_async_connection()
                .await
                .map_err(|e| format!("redis cluster: {e}"))?;
            Backend::Cluster(conn)
        } else {
            let url = s.urls.first().ok_or("no redis url")?;
            let client = redis::Client::open(url.as_str()).map_err(|e| format!("redis: {e}"))?;
            let cfg = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(s.connect_timeout))
                .set_response_timeout(Some(s.timeout))
                .set_number_of_retries(2)
                .set_min_delay(Duration::from_millis(50))
                .set_max_delay(Duration::from_millis(1000));
            let mut conns = Vec::new();
            for _ in 0..s.pool_size.max(1) {
                let c = ConnectionManager::new_lazy_with_config(client.clone(), cfg.clone())
                    .map_err(|e| format!("redis: {e}"))?;
                conns.push(c);
            }
            Backend::Single {
                conns,
                next: AtomicUsize::new(0),
            }
        };
        Ok(Store {
            backend,
            take: Script::new(TAKE_LUA),
            refund: Script::new(REFUND_LUA),
            permits: Semaphore::new(s.max_inflight.max(1)),
            timeout: s.timeout,
            metrics,
        })
    }

    /// Checks and charges `ops` all or nothing, within the deadline.
    pub async fn take(&self, ops: &[Op]) -> Result<Outcome, RedisError> {
        let deadline = Instant::now() + self.timeout;
        let permit = match tokio::time::timeout_at(deadline.into(), self.permits.acquire()).await {
            Ok(Ok(p)) => p,
            _ => {
                self.metrics.redis_error(RedisError::PoolExhausted);
                return Err(RedisError::PoolExhausted);
            }
        };
        let groups = self.groups(ops);
        let calls = groups.iter().map(|g| self.take_group(ops, g, deadline));
        let answers = futures_util::future::join_all(calls).await;
        drop(permit);
        let mut results = vec![None; ops.len()];
        let mut admitted = true;
        let mut failure = None;
        let mut done = Vec::new();
        for (g, a) in groups.iter().zip(answers) {
            match a {
                Ok((adm, rs)) => {
                    admitted &= adm;
                    for (&i, r) in g.iter().zip(rs) {
                        if let Some(slot) = results.get_mut(i) {
                            *slot = Some(r);
                        }
                    }
                    done.push((g, adm));
                }
                Err(e) => failure = Some(e),
            }
        }
        if failure.is_some() || !admitted {
            // Give back what the admitted groups took (only ever happens when a request's
            // counters span several Cluster slots).
            for (g, adm) in done {
                if adm {
                    self.give_back(ops, g, &mut results).await;
                }
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        let results = results
            .into_iter()
            .map(|r| r.ok_or(RedisError::Server))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Outcome { admitted, results })
    }

    /// Indexes of `ops` grouped by Cluster slot (one group for a single Redis).
    fn groups(&self, ops: &[Op]) -> Vec<Vec<usize>> {
        match self.backend {
            Backend::Single { .. } => vec![(0..ops.len()).collect()],
            Backend::Cluster(_) => {
                let mut groups: Vec<(u16, Vec<usize>)> = Vec::new();
                for (i, op) in ops.iter().enumerate() {
                    let slot = key_slot(op.key.as_bytes());
                    match groups.iter_mut().find(|(s, _)| *s == slot) {
                        Some((_, g)) => g.push(i),
                        None => groups.push((slot, vec![i])),
                    }
                }
                groups.into_iter().map(|(_, g)| g).collect()
            }
        }
    }

    async fn take_group(
        &self,
        ops: &[Op],
        group: &[usize],
        deadline: Instant,
    ) -> Result<(bool, Vec<OpResult>), RedisError> {
        let mut inv = self.take.prepare_invoke();
        for op in group.iter().filter_map(|&i| ops.get(i)) {
            inv.key(&op.key);
            match op.kind {
                OpKind::Bucket {
                    max_tokens,
                    tokens_per_fill,
                    fill_interval_ms,
                } => inv
                    .arg("b")
                    .arg(max_tokens)
                    .arg(tokens_per_fill)
                    .arg(fill_interval_ms),
                OpKind::Window {
                    requests_per_unit,
                    window_ms,
                } => inv.arg("w").arg(requests_per_unit).arg(window_ms).arg(0),
            };
            inv.arg(op.hits.min(u64::from(u32::MAX))).arg(op.mode.arg());
        }
        let started = Instant::now();
        let call = async {
            match &self.backend {
                Backend::Single { conns, next } => {
                    let i = next.fetch_add(1, Ordering::Relaxed) % conns.len().max(1);
                    let Some(conn) = conns.get(i) else {
                        return Err(RedisError::Connection);
                    };
                    let mut c = conn.clone();
                    inv.invoke_async::<Value>(&mut c).await.map_err(classify)
                }
                Backend::Cluster(conn) => {
                    let mut c = conn.clone();
                    inv.invoke_async::<Value>(&mut c).await.map_err(classify)
                }
            }
        };
        let res = match tokio::time::timeout_at(deadline.into(), call).await {
            Ok(r) => r,
            Err(_) => Err(RedisError::Timeout),
        };
        self.metrics.redis_latency.observe(started.elapsed());
        let value = res.inspect_err(|e| self.metrics.redis_error(*e))?;
        parse_take(&value, group.len()).ok_or_else(|| {
            self.metrics.redis_error(RedisError::Server);
            RedisError::Server
        })
    }

    async fn give_back(&self, ops: &[Op], group: &[usize], results: &mut [Option<OpResult>]) {
        let mut inv = self.refund.prepare_invoke();
        let mut n = 0;
        for &i in group {
            let (Some(op), Some(Some(r))) = (ops.get(i), results.get(i)) else {
                continue;
            };
            if !r.charged {
                continue;
            }
            let (kind, p1) = match op.kind {
                OpKind::Bucket { max_tokens, .. } => ("b", max_tokens),
                OpKind::Window {
                    requests_per_unit, ..
                } => ("w", requests_per_unit),
            };
            inv.key(&op.key)
                .arg(kind)
                .arg(p1)
                .arg(r.anchor)
                .arg(op.hits.min(u64::from(u32::MAX)));
            n += 1;
        }
        if n == 0 {
            return;
        }
        let ok = match &self.backend {
            Backend::Cluster(conn) => {
                let mut c = conn.clone();
                let call = inv.invoke_async::<Value>(&mut c);
                matches!(tokio::time::timeout(self.timeout, call).await, Ok(Ok(_)))
            }
            Backend::Single { .. } => false,
        };
        let counter = if ok {
            &self.metrics.refunds
        } else {
            &self.metrics.refunds_lost
        };
        counter.fetch_add(n, Ordering::Relaxed);
        if ok {
            for &i in group {
                if let (Some(op), Some(Some(r))) = (ops.get(i), results.get_mut(i)) {
                    if r.charged {
                        r.charged = false;
                        r.remaining = r.remaining.saturating_add(op.hits);
                    }
                }
            }
        }
    }

    /// `PING` on one connection within the timeout (the `/readyz` check).
    pub async fn ping(&self) -> bool {
        let call = async {
            match &self.backend {
                Backend::Single { conns, .. } => match conns.first() {
                    Some(c) => {
                        let mut c = c.clone();
                        redis::cmd("PING")
                            .query_async::<String>(&mut c)
                            .await
                            .is_ok()
                    }
                    None => false,
                },
                Backend::Cluster(conn) => {
                    let mut c = conn.clone();
                    redis::cmd("PING")
                        .query_async::<String>(&mut c)
                        .await
                        .is_ok()
                }
            }
        };
        matches!(tokio::time::timeout(self.timeout, call).await, Ok(true))
    }
}

fn classify(e: redis::RedisError) -> RedisError {
    if e.is_timeout() {
        RedisError::Timeout
    } else if e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_unrecoverable_error()
    {
        RedisError::Connection
    } else {
        RedisError::Server
    }
}

/// `{admitted, now, then 5 integers per key}` → the outcome of one group.
fn parse_take(v: &Value, n: usize) -> Option<(bool, Vec<OpResult>)> {
    let Value::Array(items) = v else { return None };
    let int = |i: usize| match items.get(i) {
        Some(Value::Int(x)) => Some(*x),
        _ => None,
    };
    let nonneg = |i: usize| int(i).map(|x| u64::try_from(x).unwrap_or(0));
    if items.len() != 2 + 5 * n {
        return None;
    }
    let admitted = int(0)? == 1;
    let mut out = Vec::with_capacity(n);
    for k in 0..n {
        let b = 2 + 5 * k;
        out.push(OpResult {
            ok: int(b)? == 1,
            charged: int(b + 1)? == 1,
            remaining: nonneg(b + 2)?,
            reset_ms: nonneg(b + 3)?,
            anchor: nonneg(b + 4)?,
        });
    }
    Some((admitted, out))
}

/// The Redis Cluster hash slot of a key (CRC16-XMODEM of the key, or of its `{hash tag}`).
pub fn key_slot(key: &[u8]) -> u16 {
    let tagged = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = key.get(open + 1..)?;
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| rest.get(..close)).flatten()
        })
        .unwrap_or(key);
    let mut crc: u16 = 0;
    for &b in tagged {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis_cluster_keyslot() {
        // Values from `redis-cli CLUSTER KEYSLOT`.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"foo{}{bar}"), key_slot(b"foo{}{bar}"));
        assert_eq!(key_slot(b"foo{}{bar}"), 8363);
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
    }

    #[test]
    fn take_answers_are_parsed_strictly() {
        let ok = Value::Array([1, 5, 1, 1, 9, 0, 7].into_iter().map(Value::Int).collect());
        let (adm, rs) = parse_take(&ok, 1).unwrap();
        assert!(adm);
        assert_eq!(
            rs,
            vec![OpResult {
                ok: true,
                charged: true,
                remaining: 9,
                reset_ms: 0,
                anchor: 7
            }]
        );
        assert!(parse_take(&ok, 2).is_none(), "wrong length");
        assert!(parse_take(&Value::Nil, 0).is_none());
    }
}
