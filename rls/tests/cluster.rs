//! Redis Cluster: 3 masters on loopback ports (`redis-cli --cluster create`), each in its own
//! temp dir. Counters of one request in different slots are still all or nothing (the admitted
//! slots give their charges back), and concurrent replicas stay exact.

// Test code: an index out of range fails the test, which is what it should do.
#![allow(clippy::indexing_slicing)]
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{store, Redis};
use meshwall_rls::store::{key_slot, Mode, Op, OpKind, Store};

fn bucket(key: &str, max: u32, hits: u64) -> Op {
    Op {
        key: key.into(),
        kind: OpKind::Bucket {
            max_tokens: max,
            tokens_per_fill: 1,
            fill_interval_ms: 3_600_000,
        },
        hits,
        mode: Mode::Enforce,
    }
}

struct Cluster {
    nodes: Vec<Redis>,
}

impl Cluster {
    fn start() -> Cluster {
        let nodes: Vec<Redis> = (0..3)
            .map(|_| {
                Redis::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                ])
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = std::process::Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let t0 = Instant::now();
        while !nodes
            .iter()
            .all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"))
        {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "cluster did not become ok"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Cluster { nodes }
    }

    fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.url()).collect()
    }

    fn node(&self) -> &Redis {
        &self.nodes[0]
    }
}

/// Two keys in different slots (on different masters, most likely).
fn keys_in_two_slots() -> (String, String) {
    let a = "meshwall:b:d_user_a".to_string();
    let b = (0..)
        .map(|i| format!("meshwall:b:d_ip_{i}"))
        .find(|k| key_slot(k.as_bytes()) / 5462 != key_slot(a.as_bytes()) / 5462)
        .unwrap_or_default();
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster() {
    let c = Cluster::start();

    // The slot computation is Redis's own.
    for k in [
        "foo",
        "bar",
        "meshwall:b:d_user_a",
        "{user1000}.following",
        "foo{}{bar}",
        "foo{{bar}}zap",
        "a{b}c",
    ] {
        let want: u16 = c.node().cli(&["CLUSTER", "KEYSLOT", k]).parse().unwrap();
        assert_eq!(key_slot(k.as_bytes()), want, "{k}");
    }

    let (s, m) = store(c.urls(), true, 1000).await;
    let (ka, kb) = keys_in_two_slots();
    assert_ne!(key_slot(ka.as_bytes()), key_slot(kb.as_bytes()));

    // kb has one token: the first two-slot request takes it and one of ka's 5.
    let o = s
        .take(&[bucket(&ka, 5, 1), bucket(&kb, 1, 1)])
        .await
        .unwrap();
    assert!(o.admitted);
    assert_eq!((o.results[0].remaining, o.results[1].remaining), (4, 0));
    // Now kb is empty: rejected, and ka's slot (admitted on its own) gives its token back.
    let o = s
        .take(&[bucket(&ka, 5, 1), bucket(&kb, 1, 1)])
        .await
        .unwrap();
    assert!(!o.admitted);
    assert!(!o.results[0].charged, "refunded");
    assert_eq!(o.results[0].remaining, 4);
    assert_eq!(m.refunds.load(std::sync::atomic::Ordering::Relaxed), 1);
    let o = s.take(&[bucket(&ka, 5, 0)]).await.unwrap();
    assert_eq!(
        o.results[0].remaining, 4,
        "ka still has 4 after the rejected request"
    );

    // Two replicas, 600 concurrent requests, 3 keys on different slots, bucket of 50.
    let (s2, _) = store(c.urls(), true, 2000).await;
    let stores = [Arc::new(s), Arc::new(s2)];
    let mut tasks = Vec::new();
    for i in 0..600usize {
        let st: Arc<Store> = stores[i % 2].clone();
        tasks.push(tokio::spawn(async move {
            let key = format!("meshwall:b:fleet_k_{}", i % 3);
            (
                i % 3,
                st.take(&[bucket(&key, 50, 1)]).await.unwrap().admitted,
            )
        }));
    }
    let mut admitted = [0; 3];
    for t in tasks {
        let (k, ok) = t.await.unwrap();
        admitted[k] += usize::from(ok);
    }
    assert_eq!(admitted, [50, 50, 50]);
    let slots: std::collections::BTreeSet<u16> = (0..3)
        .map(|i| key_slot(format!("meshwall:b:fleet_k_{i}").as_bytes()))
        .collect();
    assert_eq!(slots.len(), 3);
}
