//! A real deployment's size: 10,000 consumers (Apigee apps, Kong consumers) configure in well
//! under a second, and a request costs the same with 10 or 10,000 of them (one SHA-256, one
//! hash-map lookup, one 32-byte comparison).

use super::*;
use std::time::{Duration, Instant};

const N: usize = 10_000;

fn key(i: usize) -> String {
    format!(
        "k-{i:05}-{:016x}",
        (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    )
}

/// `n` consumers, each with one digest key and one of four groups; `/gold/` needs group `gold`.
fn config(n: usize) -> String {
    let consumers: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"name":"app-{i:05}","keys":["{}"],"groups":["{}"]}}"#,
                digest(&key(i)),
                ["bronze", "silver", "gold", "platinum"][i % 4]
            )
        })
        .collect();
    format!(
        r#"{{"consumers":[{}],"rules":[{{"match":{{"prefix":"/gold/"}},"groups":["gold"]}}]}}"#,
        consumers.join(",")
    )
}

#[test]
fn ten_thousand_consumers_configure_and_are_each_found() {
    let json = config(N);
    assert!(json.len() > 900_000, "a realistic configuration size");
    let host = MemHost::new();
    let started = Instant::now();
    let cfg: ApiKeyConfig = parse_config(json.as_bytes()).unwrap();
    let parsed = started.elapsed();
    let built = Instant::now();
    let p = ApiKeyPolicy::new(cfg, &host).unwrap();
    let new = built.elapsed();
    let total = started.elapsed();
    eprintln!("10,000 consumers: parse {parsed:?}, ApiKeyPolicy::new {new:?}, total {total:?}");
    // The time is printed, not asserted (speed goals live in `make bench`, not in a timed test).
    assert_eq!(p.key_count(), N);
    assert_eq!(host.metric("meshwall.apikey.consumers"), N as i64);
    assert_eq!(p.max_bucket_len(), 1, "one digest compared per lookup");
    // Every consumer is found, with its own name and groups.
    for i in [0, 1, 2, 4_999, 9_998, 9_999] {
        let s = send(&p, &host, &req("GET", "/x", &[("x-api-key", &key(i))]));
        assert_eq!(s.status, 200);
        let up = upstream(&s).unwrap();
        assert_eq!(
            up.get("x-consumer-name"),
            Some(format!("app-{i:05}").as_str())
        );
        let gold = send(&p, &host, &req("GET", "/gold/x", &[("x-api-key", &key(i))]));
        assert_eq!(gold.status, if i % 4 == 2 { 200 } else { 403 }, "{i}");
    }
    assert_eq!(
        send(&p, &host, &req("GET", "/x", &[("x-api-key", &key(N))])).status,
        401
    );
}

/// The median time of `rounds` batches of `n` lookups through the whole request path.
fn per_request(p: &ApiKeyPolicy, host: &MemHost, keys: &[Request], rounds: usize) -> Duration {
    let mut times: Vec<Duration> = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            for r in keys {
                let mut ex = ();
                let a = p.on_request_headers(&mut ex, r, host);
                assert!(matches!(a, Action::Continue(_)));
            }
            t.elapsed() / u32::try_from(keys.len()).unwrap()
        })
        .collect();
    times.sort();
    times[rounds / 2]
}

#[test]
fn a_request_costs_the_same_with_ten_or_ten_thousand_consumers() {
    let host = MemHost::new();
    let small = policy(&host, &config(10));
    let large = policy(&host, &config(N));
    let requests = |n: usize| -> Vec<Request> {
        (0..1000)
            .map(|i| req("GET", "/x", &[("x-api-key", &key(i % n))]))
            .collect()
    };
    let (rs, rl) = (requests(10), requests(N));
    per_request(&small, &host, &rs, 3); // warm-up
    let t_small = per_request(&small, &host, &rs, 9);
    let t_large = per_request(&large, &host, &rl, 9);
    eprintln!("per request: 10 consumers {t_small:?}, 10,000 consumers {t_large:?}");
    // O(1): a linear scan would be ~1000× slower; allow for cache misses and a noisy machine.
    assert!(
        t_large < t_small * 5 + Duration::from_micros(5),
        "10 consumers {t_small:?}, 10,000 consumers {t_large:?}"
    );
}
