use super::*;
use crate::store::OpResult;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::{
    Entry as PbEntry, RateLimitOverride,
};
use envoy_types::pb::google::protobuf::UInt64Value;

const CFG: &str = "
domain: d
descriptors:
  - key: user
    rate_limit:
      name: per-user
      token_bucket: {max_tokens: 10, tokens_per_fill: 2, fill_interval: 1s}
  - key: ip
    rate_limit: {unit: minute, requests_per_unit: 100}
  - key: vip
    rate_limit:
      unlimited: true
      replaces: [{name: per-user}]
  - key: shadow
    shadow_mode: true
    rate_limit: {unit: second, requests_per_unit: 1}
  - key: q1
    quota_mode: true
    rate_limit: {unit: second, requests_per_unit: 1}
  - key: q2
    quota_mode: true
    rate_limit: {unit: second, requests_per_unit: 1}
";

fn cfg() -> Config {
    Config::from_texts([("t.yaml", CFG)]).unwrap()
}

fn desc(entries: &[(&str, &str)]) -> RateLimitDescriptor {
    RateLimitDescriptor {
        entries: entries
            .iter()
            .map(|(k, v)| PbEntry {
                key: k.to_string(),
                value: v.to_string(),
            })
            .collect(),
        ..Default::default()
    }
}

fn req(domain: &str, ds: Vec<RateLimitDescriptor>) -> RateLimitRequest {
    RateLimitRequest {
        domain: domain.into(),
        descriptors: ds,
        hits_addend: 0,
    }
}

fn res(ok: bool, charged: bool, remaining: u64, reset_ms: u64) -> OpResult {
    OpResult {
        ok,
        charged,
        remaining,
        reset_ms,
        anchor: 0,
    }
}

#[test]
fn malformed_requests_are_refused() {
    let c = cfg();
    let lim = Limits::default();
    let neg = RateLimitDescriptor {
        is_negative_hits: true,
        ..desc(&[("ip", "1")])
    };
    let cases = [
        (req("", vec![desc(&[("ip", "1")])]), Invalid::EmptyDomain),
        (req("d", vec![]), Invalid::NoDescriptors),
        (
            req("d", vec![desc(&[("ip", "1")]); 65]),
            Invalid::TooManyDescriptors,
        ),
        (
            req("d", vec![desc(&[("k", "v"); 33])]),
            Invalid::TooManyEntries,
        ),
        (req("d", vec![neg]), Invalid::NegativeHits),
    ];
    for (r, want) in cases {
        assert_eq!(plan(&c, &lim, &r).unwrap_err(), want);
    }
    assert!(plan(&c, &lim, &req("d", vec![desc(&[("ip", "1")]); 64])).is_ok());
}

#[test]
fn unknown_domain_and_unmatched_descriptors_get_ok_without_redis() {
    let c = cfg();
    let p = plan(
        &c,
        &Limits::default(),
        &req("other", vec![desc(&[("ip", "1")])]),
    )
    .unwrap();
    assert!(!p.known_domain && p.ops.is_empty());
    let r = respond(&p, None);
    assert_eq!(r.overall_code, Code::Ok as i32);
    assert_eq!(r.statuses.len(), 1);
    let p = plan(
        &c,
        &Limits::default(),
        &req("d", vec![desc(&[("nope", "1")])]),
    )
    .unwrap();
    assert!(p.known_domain && p.ops.is_empty());
    assert_eq!(p.slots, vec![Slot::NoLimit]);
}

#[test]
fn ops_carry_the_limit_and_hits() {
    let c = cfg();
    let mut r = req(
        "d",
        vec![desc(&[("user", "alice")]), desc(&[("ip", "10.0.0.1")])],
    );
    r.hits_addend = 3;
    r.descriptors[1].hits_addend = Some(UInt64Value { value: 0 });
    let p = plan(&c, &Limits::default(), &r).unwrap();
    assert_eq!(
        p.ops,
        vec![
            Op {
                key: "meshwall:b:d_user_alice".into(),
                kind: OpKind::Bucket {
                    max_tokens: 10,
                    tokens_per_fill: 2,
                    fill_interval_ms: 1000
                },
                hits: 3,
                mode: Mode::Enforce,
            },
            Op {
                key: "meshwall:w:d_ip_10.0.0.1".into(),
                kind: OpKind::Window {
                    requests_per_unit: 100,
                    window_ms: 60_000
                },
                hits: 0,
                mode: Mode::Enforce,
            },
        ]
    );
    // A bucket is reported as max_tokens per the smallest unit that covers refilling it.
    let Slot::Counter { current, .. } = &p.slots[0] else {
        panic!()
    };
    assert_eq!(
        (
            current.requests_per_unit,
            current.unit,
            current.name.as_str()
        ),
        (10, Unit::Minute.proto(), "per-user")
    );
}

#[test]
fn request_hits_zero_means_one() {
    let p = plan(
        &cfg(),
        &Limits::default(),
        &req("d", vec![desc(&[("ip", "1")])]),
    )
    .unwrap();
    assert_eq!(p.ops[0].hits, 1);
}

#[test]
fn the_same_counter_twice_is_one_op_with_the_hits_added() {
    let p = plan(
        &cfg(),
        &Limits::default(),
        &req("d", vec![desc(&[("ip", "1")]), desc(&[("ip", "1")])]),
    )
    .unwrap();
    assert_eq!(p.ops.len(), 1);
    assert_eq!(p.ops[0].hits, 2);
    assert!(matches!(
        (&p.slots[0], &p.slots[1]),
        (Slot::Counter { op: 0, .. }, Slot::Counter { op: 0, .. })
    ));
}

#[test]
fn replaces_drops_the_named_limit_and_unlimited_needs_no_counter() {
    let p = plan(
        &cfg(),
        &Limits::default(),
        &req("d", vec![desc(&[("user", "a")]), desc(&[("vip", "yes")])]),
    )
    .unwrap();
    assert_eq!(p.slots, vec![Slot::NoLimit, Slot::Unlimited]);
    assert!(p.ops.is_empty());
    let r = respond(&p, None);
    assert_eq!(r.statuses[1].limit_remaining, u32::MAX);
}

#[test]
fn envoy_override_is_a_fixed_window_of_its_own() {
    let mut d = desc(&[("user", "a")]);
    d.limit = Some(RateLimitOverride {
        requests_per_unit: 7,
        unit: Unit::Hour.proto(),
    });
    let p = plan(&cfg(), &Limits::default(), &req("d", vec![d])).unwrap();
    assert_eq!(p.ops[0].key, "meshwall:o3:d_user_a");
    assert_eq!(
        p.ops[0].kind,
        OpKind::Window {
            requests_per_unit: 7,
            window_ms: 3_600_000
        }
    );
}

#[test]
fn keys_are_unambiguous_and_bounded() {
    let lim = Limits::default();
    let key = |entries: &[(&str, &str)]| {
        let d = desc(entries);
        let values: Vec<String> = d.entries.iter().map(|e| e.value.clone()).collect();
        counter_key(&lim, "w", "d", &d, &values)
    };
    assert_ne!(key(&[("a", "x_b_y")]).0, key(&[("a", "x"), ("b", "y")]).0);
    assert_ne!(key(&[("a_b", "c")]).0, key(&[("a", "b_c")]).0);
    let (k, hashed) = key(&[("a", "{tag}%\n")]);
    assert_eq!(
        (k.as_str(), hashed),
        ("meshwall:w:d_a_%7Btag%7D%25%0A", false)
    );
    let big1 = "x".repeat(100_000);
    let big2 = format!("{}y", "x".repeat(99_999));
    let (k1, h1) = key(&[("a", &big1)]);
    let (k2, _) = key(&[("a", &big2)]);
    assert!(h1 && k1.len() <= 64, "{k1}");
    assert!(k1.starts_with("meshwall:w:d#"));
    assert_ne!(k1, k2, "distinct huge values keep distinct counters");
    let (k, h) = key(&[("a", &"v".repeat(400))]);
    assert!(!h && k.len() < lim.max_key_bytes);
}

#[test]
fn responses_follow_the_outcome() {
    let c = cfg();
    let p = plan(
        &c,
        &Limits::default(),
        &req(
            "d",
            vec![
                desc(&[("user", "a")]),
                desc(&[("ip", "1")]),
                desc(&[("shadow", "s")]),
            ],
        ),
    )
    .unwrap();
    // Rejected by `user`; `ip` was fine but not charged; `shadow` is over but never rejects.
    let outcome = Outcome {
        admitted: false,
        results: vec![
            res(false, false, 0, 400),
            res(true, false, 100, 59_500),
            res(false, false, 0, 1000),
        ],
    };
    let r = respond(&p, Some(&outcome));
    assert_eq!(r.overall_code, Code::OverLimit as i32);
    let codes: Vec<i32> = r.statuses.iter().map(|s| s.code).collect();
    assert_eq!(
        codes,
        vec![Code::OverLimit as i32, Code::Ok as i32, Code::Ok as i32]
    );
    assert_eq!(r.statuses[1].limit_remaining, 100);
    assert_eq!(
        r.statuses[0].duration_until_reset,
        Some(PbDuration {
            seconds: 0,
            nanos: 400_000_000
        })
    );
    assert_eq!(
        r.statuses[1].duration_until_reset,
        Some(PbDuration {
            seconds: 59,
            nanos: 500_000_000
        })
    );
    // A full bucket has nothing to reset.
    let ok = Outcome {
        admitted: true,
        results: vec![
            res(true, true, 10, 0),
            res(true, true, 99, 1),
            res(true, true, 0, 1),
        ],
    };
    let r = respond(&p, Some(&ok));
    assert_eq!(r.overall_code, Code::Ok as i32);
    assert_eq!(r.statuses[0].duration_until_reset, None);
}

#[test]
fn quota_mode_descriptors_are_ops_in_quota_mode() {
    let p = plan(
        &cfg(),
        &Limits::default(),
        &req("d", vec![desc(&[("q1", "a")]), desc(&[("q2", "b")])]),
    )
    .unwrap();
    assert!(p.ops.iter().all(|o| o.mode == Mode::Quota));
    // One of two quota limits over, the request admitted (Redis decided): OVER_LIMIT for that
    // descriptor, OK overall.
    let o = Outcome {
        admitted: true,
        results: vec![res(false, false, 0, 10), res(true, true, 0, 10)],
    };
    let r = respond(&p, Some(&o));
    assert_eq!(r.overall_code, Code::Ok as i32);
    assert_eq!(r.statuses[0].code, Code::OverLimit as i32);
}
