//! The table: bounded memory, eviction order, reconfiguration, and the hash seed.

use super::*;

#[test]
fn memory_is_bounded_by_the_table() {
    let store = MemHost::new();
    let json = one_rule(
        r#"[{"request_headers":{"header_name":"x-k"}}]"#,
        5,
        1,
        "1m",
        r#","on_missing_key":"skip""#,
    )
    .replace("]}", r#"],"table":{"shards":8,"slots_per_shard":4}}"#);
    let p = policy(&store, &json);
    let keys_before = store.shared_key_count();
    let bytes_before = store.shared_bytes();
    assert_eq!(keys_before, 9);
    assert_eq!(bytes_before as u64, p.table_bytes());
    assert_eq!(
        store.metric("meshwall.ratelimit.table_bytes") as u64,
        p.table_bytes()
    );
    for i in 0..5000 {
        assert_eq!(
            status(
                &p,
                &store,
                &req("GET", "/", "10.0.0.1", &[("x-k", &format!("key-{i}"))])
            ),
            200
        );
    }
    assert_eq!(store.shared_key_count(), keys_before);
    assert_eq!(store.shared_bytes(), bytes_before);
    let churn = store.metric("meshwall.ratelimit.table_evictions")
        + store.metric("meshwall.ratelimit.table_reclaims");
    assert_eq!(
        churn,
        5000 - 32,
        "every key beyond the 32 slots took over an occupied slot"
    );
}

fn single_shard(max: u32, slots: u32) -> String {
    one_rule(
        r#"[{"request_headers":{"header_name":"x-k"}}]"#,
        max,
        1,
        "1s",
        r#","on_missing_key":"skip""#,
    )
    .replace(
        "]}",
        &format!(r#"],"table":{{"shards":1,"slots_per_shard":{slots}}}}}"#),
    )
}

fn k(key: &str) -> Request {
    req("GET", "/", "10.0.0.1", &[("x-k", key)])
}

#[test]
fn full_table_reclaims_refilled_buckets_first() {
    let store = MemHost::new();
    let p = policy(&store, &single_shard(4, 2));
    assert_eq!(count_ok(&p, &store, &k("a"), 4), 4); // a: 0/4
    store.advance(Duration::from_millis(100));
    assert_eq!(status(&p, &store, &k("b")), 200); // b: 3/4, newer
    store.advance(Duration::from_millis(1000)); // a refilled to 1/4, b to 4/4 (full)
    assert_eq!(status(&p, &store, &k("c")), 200); // takes b's slot: nothing lost
    assert_eq!(store.metric("meshwall.ratelimit.table_reclaims"), 1);
    assert_eq!(store.metric("meshwall.ratelimit.table_evictions"), 0);
    // a kept its state: 1 token.
    assert_eq!(count_ok(&p, &store, &k("a"), 3), 1);
}

#[test]
fn under_pressure_the_least_used_bucket_is_evicted_and_its_owner_starts_afresh() {
    let store = MemHost::new();
    let p = policy(&store, &single_shard(10, 3));
    assert_eq!(count_ok(&p, &store, &k("heavy"), 10), 10); // 0/10
    assert_eq!(count_ok(&p, &store, &k("mid"), 5), 5); // 5/10
    assert_eq!(count_ok(&p, &store, &k("light"), 1), 1); // 9/10
    assert_eq!(status(&p, &store, &k("new")), 200);
    assert_eq!(store.metric("meshwall.ratelimit.table_evictions"), 1);
    // `light` was the victim: it comes back with a fresh bucket (and evicts `new`, 9/10, newer
    // than nobody else with that deficit).
    assert_eq!(count_ok(&p, &store, &k("light"), 12), 10);
    assert_eq!(
        status(&p, &store, &k("heavy")),
        429,
        "the depleted bucket survived"
    );
}

#[test]
fn cycling_keys_cannot_reset_a_depleted_bucket() {
    let store = MemHost::new();
    let p = policy(&store, &single_shard(50, 8));
    let victim = k("abuser");
    assert_eq!(count_ok(&p, &store, &victim, 60), 50);
    for i in 0..10_000 {
        assert_eq!(status(&p, &store, &k(&format!("junk-{i}"))), 200);
        if i % 1000 == 0 {
            assert_eq!(status(&p, &store, &victim), 429, "after {i} junk keys");
        }
    }
    assert_eq!(status(&p, &store, &victim), 429);
    assert!(store.metric("meshwall.ratelimit.table_evictions") >= 10_000 - 8);
}

#[test]
fn tied_deficits_evict_the_least_recently_used() {
    let store = MemHost::new();
    let p = policy(&store, &single_shard(10, 3));
    for key in ["a", "b", "c"] {
        assert_eq!(status(&p, &store, &k(key)), 200);
        store.advance(Duration::from_millis(10));
    }
    assert_eq!(status(&p, &store, &k("a")), 200); // a: 8/10 now; b and c 9/10, b older
    assert_eq!(status(&p, &store, &k("d")), 200); // evicts b
    assert_eq!(count_ok(&p, &store, &k("c"), 20), 9, "c kept its state");
    assert_eq!(count_ok(&p, &store, &k("a"), 20), 8, "a kept its state");
}

#[test]
fn removed_rules_free_their_slots_and_kept_rules_keep_state_across_reconfiguration() {
    let store = MemHost::new();
    let two = r#"{"rules":[
      {"name":"keep","key":[{"remote_address":{}}],"token_bucket":{"max_tokens":5,"fill_interval":"1h"}},
      {"name":"gone","key":[{"remote_address":{}}],"token_bucket":{"max_tokens":5,"fill_interval":"1h"}}],
      "table":{"shards":1,"slots_per_shard":2}}"#;
    let p = policy(&store, two);
    assert_eq!(
        count_ok(&p, &store, &req("GET", "/", "10.0.0.1", &[]), 3),
        3
    );
    let one = r#"{"rules":[
      {"name":"keep","key":[{"remote_address":{}}],"token_bucket":{"max_tokens":5,"fill_interval":"1h"}}],
      "table":{"shards":1,"slots_per_shard":2}}"#;
    let p2 = policy(&store, one);
    assert_eq!(
        count_ok(&p2, &store, &req("GET", "/", "10.0.0.1", &[]), 5),
        2,
        "state kept across the reload"
    );
    assert_eq!(status(&p2, &store, &req("GET", "/", "10.0.0.2", &[])), 200);
    assert_eq!(status(&p2, &store, &req("GET", "/", "10.0.0.3", &[])), 200);
    assert_eq!(
        store.metric("meshwall.ratelimit.table_evictions"),
        1,
        "only the third key needed a victim"
    );
}

// ---------------------------------------------------------------- seed

// ---------------------------------------------------------------- seed

#[test]
fn workers_share_one_seed_and_adopt_a_rewritten_one() {
    let store = MemHost::new();
    let p1 = policy(&store, DEMO);
    let p2 = policy(&store.clone(), DEMO);
    assert_eq!(p1.load_seed(&store).unwrap(), p2.load_seed(&store).unwrap());
    // Two workers started at once and the other's seed won: everyone adopts it.
    let mut v = SEED_MAGIC.to_vec();
    v.extend_from_slice(&[7u8; 16]);
    store
        .shared_set("meshwall.ratelimit/default/seed", &v, None)
        .unwrap();
    let w = u64::from_le_bytes([7; 8]);
    assert_eq!(p1.load_seed(&store).unwrap(), (w, w));
    assert_eq!(p2.load_seed(&store).unwrap(), (w, w));
}

#[test]
fn seeds_differ_between_processes() {
    let a = policy(&MemHost::new(), DEMO);
    let b = policy(&MemHost::new(), DEMO);
    assert_ne!(a.seed.get().1, b.seed.get().1, "the hash seed is random");
}

#[test]
fn damaged_seed_fails_closed_and_is_counted() {
    let store = MemHost::new();
    let p = policy(&store, DEMO);
    store
        .shared_set("meshwall.ratelimit/default/seed", b"junk", None)
        .unwrap();
    let (st, _) = send(&p, &store, &req("GET", "/", "10.0.0.1", &[]));
    assert_eq!(st, 503);
    assert_eq!(store.metric("meshwall.ratelimit.table_errors"), 1);
}

#[test]
fn damaged_shard_reads_as_empty() {
    let store = MemHost::new();
    let p = policy(&store, &single_shard(1, 2));
    assert_eq!(status(&p, &store, &k("a")), 200);
    assert_eq!(status(&p, &store, &k("a")), 429);
    store.shared_set(&p.shard_key(0), b"garbage", None).unwrap();
    assert_eq!(status(&p, &store, &k("a")), 200);
    assert_eq!(status(&p, &store, &k("a")), 429);
}
