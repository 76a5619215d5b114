//! The scripts and the store against a real redis-server (started here, on a free port).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{store, Redis};
use meshwall_ratelimit::bucket::{BucketState, TokenBucket};
use meshwall_rls::metrics::RedisError;
use meshwall_rls::store::{Mode, Op, OpKind, Store, TAKE_LUA};
use redis::AsyncCommands;

fn bucket(key: &str, max: u32, per: u32, ms: u64, hits: u64) -> Op {
    Op {
        key: key.into(),
        kind: OpKind::Bucket {
            max_tokens: max,
            tokens_per_fill: per,
            fill_interval_ms: ms,
        },
        hits,
        mode: Mode::Enforce,
    }
}

fn window(key: &str, limit: u32, window_ms: u64, hits: u64) -> Op {
    Op {
        key: key.into(),
        kind: OpKind::Window {
            requests_per_unit: limit,
            window_ms,
        },
        hits,
        mode: Mode::Enforce,
    }
}

async fn conn(r: &Redis) -> redis::aio::MultiplexedConnection {
    redis::Client::open(r.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn redis_now_ms(c: &mut redis::aio::MultiplexedConnection) -> u64 {
    let (s, us): (u64, u64) = redis::cmd("TIME").query_async(c).await.unwrap();
    s * 1000 + us / 1000
}

/// The script's answer for a bucket whose stored state is (`tokens`, `last_fill`) is the local
/// token bucket's (filters/ratelimit/src/bucket.rs) at the script's own clock.
#[tokio::test]
async fn the_bucket_script_is_the_local_token_bucket() {
    let r = Redis::start();
    let mut c = conn(&r).await;
    let script = redis::Script::new(TAKE_LUA);
    // (max, per, interval ms, stored tokens, last fill this long ago, hits)
    let cases: &[(u32, u32, u64, u32, u64, u64)] = &[
        (10, 1, 1000, 0, 500, 1),       // no fill yet: rejected
        (10, 1, 1000, 0, 2500, 1),      // two fills
        (10, 3, 1000, 2, 3_600_000, 1), // capped at max, phase kept on the grid
        (10, 3, 1000, 4, 1000, 7),      // exactly enough for 7 hits
        (10, 3, 1000, 4, 999, 7),       // one ms short of the fill: rejected
        (5, 1, 60_000, 50, 0, 1),       // stored above a lowered max: clamped
        (100, 7, 130, 3, 5000, 40),     // many odd fills
        (1, 1, 50, 0, 49, 0),           // check only, empty
        (1, 1, 50, 0, 50, 0),           // check only, one token
    ];
    for (i, &(max, per, ms, tokens, ago, hits)) in cases.iter().enumerate() {
        let key = format!("t:{i}");
        let now = redis_now_ms(&mut c).await;
        let last = now - ago;
        let _: () = c
            .hset_multiple(&key, &[("t", tokens as u64), ("f", last)])
            .await
            .unwrap();
        let out: Vec<i64> = script
            .key(&key)
            .arg("b")
            .arg(max)
            .arg(per)
            .arg(ms)
            .arg(hits)
            .arg("1")
            .invoke_async(&mut c)
            .await
            .unwrap();
        let script_now = out[1] as u64;
        let tb = TokenBucket {
            max_tokens: max,
            tokens_per_fill: per,
            fill_interval_ms: ms,
        };
        let want = tb.refill(
            BucketState {
                tokens,
                last_fill: last,
            },
            script_now,
        );
        let ok = if hits == 0 {
            want.tokens >= 1
        } else {
            u64::from(want.tokens) >= hits
        };
        let left = if ok && hits > 0 {
            u64::from(want.tokens) - hits
        } else {
            u64::from(want.tokens)
        };
        let ctx = format!("case {i}: {:?} now+{}", cases[i], script_now - now);
        assert_eq!(out[0], i64::from(ok), "admitted, {ctx}");
        assert_eq!(out[2], i64::from(ok), "ok, {ctx}");
        assert_eq!(out[3], i64::from(ok && hits > 0), "charged, {ctx}");
        assert_eq!(out[4] as u64, left, "remaining, {ctx}");
        assert_eq!(out[6] as u64, want.last_fill, "last fill, {ctx}");
        if left < u64::from(max) {
            let next = tb.ms_until_next_fill(want, script_now);
            assert_eq!(out[5] as u64, next, "reset, {ctx}");
        } else {
            assert_eq!(out[5], 0, "a full bucket has nothing to reset, {ctx}");
        }
        let stored: (Option<u64>, Option<u64>) = redis::cmd("HMGET")
            .arg(&key)
            .arg("t")
            .arg("f")
            .query_async(&mut c)
            .await
            .unwrap();
        if ok && hits > 0 {
            assert_eq!(stored, (Some(left), Some(want.last_fill)), "{ctx}");
            // Expires when it would be full again (an absent bucket is a full one).
            let pttl: i64 = redis::cmd("PTTL")
                .arg(&key)
                .query_async(&mut c)
                .await
                .unwrap();
            let full_at = want.last_fill + (u64::from(max) - left).div_ceil(u64::from(per)) * ms;
            assert!(
                pttl > 0 && pttl as u64 <= full_at - script_now + 5,
                "pttl {pttl}, {ctx}"
            );
        } else {
            assert_eq!(
                stored,
                (Some(u64::from(tokens)), Some(last)),
                "a rejection writes nothing, {ctx}"
            );
        }
    }
}

#[tokio::test]
async fn a_new_bucket_is_full_and_gives_exactly_max_tokens() {
    let r = Redis::start();
    let (s, _) = store(vec![r.url()], false, 500).await;
    let mut remaining = Vec::new();
    for _ in 0..7 {
        let o = s.take(&[bucket("k", 5, 1, 3_600_000, 1)]).await.unwrap();
        remaining.push((o.admitted, o.results[0].remaining));
    }
    assert_eq!(
        remaining,
        vec![
            (true, 4),
            (true, 3),
            (true, 2),
            (true, 1),
            (true, 0),
            (false, 0),
            (false, 0)
        ]
    );
}

#[tokio::test]
async fn all_or_nothing_across_the_limits_of_a_request() {
    let r = Redis::start();
    let (s, _) = store(vec![r.url()], false, 500).await;
    for _ in 0..2 {
        assert!(s.take(&[window("w", 2, 60_000, 1)]).await.unwrap().admitted);
    }
    // The window is used up: the bucket must not pay for the rejected request.
    let o = s
        .take(&[bucket("b", 3, 1, 3_600_000, 1), window("w", 2, 60_000, 1)])
        .await
        .unwrap();
    assert!(!o.admitted);
    assert!(o.results[0].ok && !o.results[0].charged && o.results[0].remaining == 3);
    assert!(!o.results[1].ok);
    let o = s.take(&[bucket("b", 3, 1, 3_600_000, 0)]).await.unwrap();
    assert_eq!(
        o.results[0].remaining, 3,
        "nothing was taken from the bucket"
    );
}

#[tokio::test]
async fn shadow_never_rejects_and_quota_rejects_only_when_all_quotas_are_over() {
    let r = Redis::start();
    let (s, _) = store(vec![r.url()], false, 500).await;
    let shadow = |hits| Op {
        mode: Mode::Shadow,
        ..bucket("sh", 1, 1, 3_600_000, hits)
    };
    assert!(s.take(&[shadow(1)]).await.unwrap().admitted);
    let o = s
        .take(&[shadow(1), bucket("e", 5, 1, 3_600_000, 1)])
        .await
        .unwrap();
    assert!(o.admitted, "an over shadow limit does not reject");
    assert!(!o.results[0].ok && !o.results[0].charged);
    assert!(o.results[1].charged);

    let q = |k: &str| Op {
        mode: Mode::Quota,
        ..bucket(k, 1, 1, 3_600_000, 1)
    };
    assert!(s.take(&[q("q1")]).await.unwrap().admitted);
    let o = s.take(&[q("q1"), q("q2")]).await.unwrap();
    assert!(o.admitted, "q2 still has room");
    assert!(!o.results[0].ok && o.results[1].charged);
    assert!(
        !s.take(&[q("q1"), q("q2")]).await.unwrap().admitted,
        "both quotas over"
    );
}

#[tokio::test]
async fn fixed_windows_count_per_aligned_window_and_expire_with_it() {
    let r = Redis::start();
    let (s, _) = store(vec![r.url()], false, 500).await;
    let mut c = conn(&r).await;
    // Start early in a 1 s window so the 4 calls land in the same one.
    while redis_now_ms(&mut c).await % 1000 > 300 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut seen = Vec::new();
    for _ in 0..4 {
        let o = s.take(&[window("win", 3, 1000, 1)]).await.unwrap();
        seen.push((o.admitted, o.results[0].remaining));
        assert_eq!(
            o.results[0].anchor % 1000,
            0,
            "aligned to the epoch like envoyproxy/ratelimit"
        );
        assert!(o.results[0].reset_ms <= 1000);
    }
    assert_eq!(seen, vec![(true, 2), (true, 1), (true, 0), (false, 0)]);
    let pttl: i64 = redis::cmd("PTTL")
        .arg("win")
        .query_async(&mut c)
        .await
        .unwrap();
    assert!((1..=1000).contains(&pttl), "{pttl}");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        s.take(&[window("win", 3, 1000, 1)]).await.unwrap().admitted,
        "a new window"
    );
}

#[tokio::test]
async fn hits_zero_checks_without_taking() {
    let r = Redis::start();
    let (s, _) = store(vec![r.url()], false, 500).await;
    for _ in 0..3 {
        let o = s.take(&[bucket("z", 1, 1, 3_600_000, 0)]).await.unwrap();
        assert!(o.admitted && !o.results[0].charged && o.results[0].remaining == 1);
    }
    assert!(
        s.take(&[bucket("z", 1, 1, 3_600_000, 1)])
            .await
            .unwrap()
            .admitted
    );
    assert!(
        !s.take(&[bucket("z", 1, 1, 3_600_000, 0)])
            .await
            .unwrap()
            .admitted,
        "empty"
    );
}

/// Two stores (two replicas) share one Redis: 600 concurrent requests over 3 keys with a
/// bucket of 50 admit exactly 150.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_replicas_are_exact() {
    let r = Redis::start();
    let (a, _) = store(vec![r.url()], false, 2000).await;
    let (b, _) = store(vec![r.url()], false, 2000).await;
    let stores: [Arc<Store>; 2] = [Arc::new(a), Arc::new(b)];
    let mut tasks = Vec::new();
    for i in 0..600usize {
        let s = stores[i % 2].clone();
        tasks.push(tokio::spawn(async move {
            let key = format!("fleet:{}", i % 3);
            (
                i % 3,
                s.take(&[bucket(&key, 50, 1, 3_600_000, 1)])
                    .await
                    .unwrap()
                    .admitted,
            )
        }));
    }
    let mut admitted = [0; 3];
    for t in tasks {
        let (k, ok) = t.await.unwrap();
        admitted[k] += usize::from(ok);
    }
    assert_eq!(admitted, [50, 50, 50]);
}

#[tokio::test]
async fn redis_down_is_unavailable_and_it_recovers_by_itself() {
    let mut r = Redis::start();
    let (s, m) = store(vec![r.url()], false, 200).await;
    assert!(s.take(&[bucket("r", 5, 1, 1000, 1)]).await.is_ok());
    r.stop();
    let t0 = Instant::now();
    let e = s.take(&[bucket("r", 5, 1, 1000, 1)]).await.unwrap_err();
    assert!(
        matches!(e, RedisError::Connection | RedisError::Timeout),
        "{e:?}"
    );
    assert!(
        t0.elapsed() < Duration::from_millis(400),
        "within the deadline: {:?}",
        t0.elapsed()
    );
    assert!(m.redis_errors(RedisError::Connection) + m.redis_errors(RedisError::Timeout) >= 1);
    r.restart();
    let t0 = Instant::now();
    loop {
        // Every connection of the pool must come back (requests rotate over them).
        let mut all = true;
        for _ in 0..8 {
            all &= s.take(&[bucket("r", 5, 1, 1000, 1)]).await.is_ok();
        }
        if all {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no recovery after a Redis restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The scripts were gone with the restart (NOSCRIPT → loaded again).
    assert!(
        s.take(&[window("after", 1, 60_000, 1)])
            .await
            .unwrap()
            .admitted
    );
}

#[tokio::test]
async fn a_slow_redis_fails_within_the_deadline() {
    let r = Redis::start();
    let (s, m) = store(vec![r.url()], false, 100).await;
    assert!(s.take(&[bucket("slow", 5, 1, 1000, 1)]).await.is_ok());
    assert_eq!(r.cli(&["CLIENT", "PAUSE", "1500", "ALL"]), "OK");
    let t0 = Instant::now();
    let e = s.take(&[bucket("slow", 5, 1, 1000, 1)]).await.unwrap_err();
    let took = t0.elapsed();
    assert_eq!(e, RedisError::Timeout);
    assert!(
        took >= Duration::from_millis(90) && took < Duration::from_millis(400),
        "{took:?}"
    );
    assert_eq!(m.redis_errors(RedisError::Timeout), 1);
}

#[tokio::test]
async fn a_flushed_script_cache_is_reloaded() {
    let r = Redis::start();
    let (s, _) = store(vec![r.url()], false, 500).await;
    assert!(
        s.take(&[bucket("f", 2, 1, 1000, 1)])
            .await
            .unwrap()
            .admitted
    );
    assert_eq!(r.cli(&["SCRIPT", "FLUSH"]), "OK");
    let o = s.take(&[bucket("f", 2, 1, 1000, 1)]).await.unwrap();
    assert!(o.admitted && o.results[0].remaining == 0);
}
