//! The range set against its definition: property tests that compare every lookup with a
//! naive matcher (a linear scan of the blocks, comparing prefix bits), on random blocks and
//! addresses of both families, with the addresses around every block's edges.

use super::*;
use crate::cidr::mask;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Instant;

/// splitmix64: a small deterministic generator (the failing seed is printed).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn u128(&mut self) -> u128 {
        (u128::from(self.next()) << 64) | u128::from(self.next())
    }
}

/// The definition: an address is in the set when one block's first `len` bits are its own.
fn naive(blocks: &[Cidr], ip: IpAddr) -> bool {
    let ip = canonical_ip(ip);
    blocks.iter().any(|b| b.contains(ip))
}

/// A prefix length: mostly long (so blocks are small and lookups miss as often as they hit),
/// sometimes short, sometimes the extremes.
fn length(rng: &mut Rng, max: u8) -> u8 {
    let max64 = u64::from(max);
    let l = match rng.below(10) {
        0 => 0,
        1 => max64,
        2 => rng.below(max64 / 4 + 1),
        _ => max64 / 2 + rng.below(max64 / 2 + 1),
    };
    u8::try_from(l.min(max64)).unwrap_or(max)
}

/// Network bits near a few anchors, so blocks overlap, nest and touch.
fn v4_bits(rng: &mut Rng) -> u32 {
    let anchors = [0x0a00_0000_u32, 0xc0a8_0000, 0xffff_ff00, 0, 0x7f00_0000];
    match rng.below(4) {
        0 => rng.next() as u32,
        _ => anchors[rng.below(anchors.len() as u64) as usize] | (rng.next() as u32 & 0xffff),
    }
}

fn v6_bits(rng: &mut Rng) -> u128 {
    let anchors = [
        0x2001_0db8_u128 << 96,
        0,
        u128::MAX << 64,
        0xfe80_u128 << 112,
    ];
    match rng.below(4) {
        0 => rng.u128(),
        _ => anchors[rng.below(anchors.len() as u64) as usize] | (rng.u128() & 0xffff_ffff),
    }
}

/// A random block written as configured: IPv4, IPv6, or IPv4 written IPv4-mapped.
fn block_text(rng: &mut Rng) -> String {
    match rng.below(5) {
        0 | 1 => {
            let len = length(rng, 32);
            let net = u32::try_from(u128::from(v4_bits(rng)) & mask(len, 32)).unwrap_or(0);
            format!("{}/{len}", Ipv4Addr::from(net))
        }
        2 => {
            let len = length(rng, 32);
            let net = u32::try_from(u128::from(v4_bits(rng)) & mask(len, 32)).unwrap_or(0);
            format!("::ffff:{}/{}", Ipv4Addr::from(net), len + 96)
        }
        _ => {
            let len = length(rng, 128);
            let net = v6_bits(rng) & mask(len, 128);
            format!("{}/{len}", Ipv6Addr::from(net))
        }
    }
}

/// Addresses to look up: each block's first and last address and their neighbours, random
/// addresses near the anchors, the extremes, and IPv4 addresses written IPv4-mapped.
fn probes(rng: &mut Rng, blocks: &[Cidr]) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = vec![
        Ipv4Addr::from(0).into(),
        Ipv4Addr::from(u32::MAX).into(),
        Ipv6Addr::from(0).into(),
        Ipv6Addr::from(u128::MAX).into(),
    ];
    for b in blocks {
        if let Some((first, last)) = b.v4_range() {
            for a in [first.wrapping_sub(1), first, last, last.wrapping_add(1)] {
                out.push(Ipv4Addr::from(a).into());
                out.push(Ipv4Addr::from(a).to_ipv6_mapped().into());
            }
        }
        if let Some((first, last)) = b.v6_range() {
            for a in [first.wrapping_sub(1), first, last, last.wrapping_add(1)] {
                out.push(Ipv6Addr::from(a).into());
            }
        }
    }
    for _ in 0..64 {
        out.push(Ipv4Addr::from(v4_bits(rng)).into());
        out.push(Ipv6Addr::from(v6_bits(rng)).into());
    }
    out
}

/// The merged ranges are sorted, disjoint and never touch (else they would be one).
fn assert_canonical(set: &IpSet) {
    for w in set.v4.windows(2) {
        assert!(
            w[0].0 <= w[0].1 && w[0].1.checked_add(1).unwrap() < w[1].0,
            "{w:?}"
        );
    }
    for w in set.v6.windows(2) {
        assert!(
            w[0].0 <= w[0].1 && w[0].1.checked_add(1).unwrap() < w[1].0,
            "{w:?}"
        );
    }
}

#[test]
fn agrees_with_the_naive_matcher_on_random_blocks_and_addresses() {
    let mut lookups = 0;
    for seed in 0..400u64 {
        let mut rng = Rng(seed);
        let n = match seed % 4 {
            0 => rng.below(4),
            1 => rng.below(40),
            _ => rng.below(400),
        };
        let texts: Vec<String> = (0..n).map(|_| block_text(&mut rng)).collect();
        let blocks: Vec<Cidr> = texts
            .iter()
            .map(|t| Cidr::parse(t).unwrap_or_else(|e| panic!("seed {seed}: {t}: {e}")))
            .collect();
        let set = IpSet::new(blocks.iter().copied());
        assert_canonical(&set);
        for ip in probes(&mut rng, &blocks) {
            assert_eq!(
                set.contains(ip),
                naive(&blocks, ip),
                "seed {seed}: {ip} in {texts:?}"
            );
            lookups += 1;
        }
    }
    assert!(lookups > 100_000, "{lookups} lookups");
}

#[test]
fn edges_of_the_address_space_and_merging() {
    let set = |list: &[&str]| IpSet::new(list.iter().map(|s| Cidr::parse(s).unwrap()));
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let cases: &[(&[&str], &str, bool)] = &[
        (&[], "10.0.0.1", false),
        (&["0.0.0.0/0"], "255.255.255.255", true),
        (&["0.0.0.0/0"], "0.0.0.0", true),
        (&["0.0.0.0/0"], "::1", false),
        (&["::/0"], "::ffff:10.0.0.1", false),
        (&["::/0"], "2001:db8::1", true),
        (&["255.255.255.255"], "255.255.255.255", true),
        (
            &["255.255.255.254/31", "0.0.0.0/1"],
            "127.255.255.255",
            true,
        ),
        (&["255.255.255.254/31", "0.0.0.0/1"], "128.0.0.0", false),
        (
            &["ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"],
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            true,
        ),
        // Adjacent blocks merge; a block inside another disappears.
        (&["10.0.0.0/9", "10.128.0.0/9"], "10.127.255.255", true),
        (&["10.0.0.0/9", "10.128.0.0/9"], "10.128.0.0", true),
        (&["10.0.0.0/9", "10.128.0.0/9"], "11.0.0.0", false),
        (&["10.0.0.0/8", "10.1.2.0/24"], "10.200.0.1", true),
        (&["10.1.2.0/24", "10.0.0.0/8"], "9.255.255.255", false),
        // IPv4-mapped blocks and addresses are IPv4.
        (&["::ffff:192.0.2.0/120"], "192.0.2.77", true),
        (&["192.0.2.0/24"], "::ffff:192.0.2.77", true),
        (&["192.0.2.0/24"], "::192.0.2.77", false),
        (&["2001:db8::/32"], "2001:db9::", false),
        (
            &["2001:db8::/32"],
            "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
            true,
        ),
    ];
    for (list, addr, want) in cases {
        assert_eq!(set(list).contains(ip(addr)), *want, "{addr} in {list:?}");
    }
    let s = set(&[
        "10.0.0.0/9",
        "10.128.0.0/9",
        "10.1.0.0/16",
        "2001:db8::/33",
        "2001:db8:8000::/33",
    ]);
    assert_eq!(s.ranges(), (1, 1));
    assert_canonical(&s);
}

/// 100,000 random blocks (half IPv4, half IPv6) build into a set that answers like the naive
/// definition. Prints build and lookup times (not asserted: speed goals live in `make bench`) (`cargo test -p meshwall-access --release -- --nocapture lookup_cost`).
#[test]
fn lookup_cost_with_100000_blocks() {
    let mut rng = Rng(7);
    let blocks: Vec<Cidr> = (0..100_000)
        .map(|i| {
            let text = if i % 2 == 0 {
                let len = 16 + rng.below(17) as u8;
                let net = u32::try_from(u128::from(rng.next() as u32) & mask(len, 32)).unwrap();
                format!("{}/{len}", Ipv4Addr::from(net))
            } else {
                let len = 32 + rng.below(97) as u8;
                format!("{}/{len}", Ipv6Addr::from(rng.u128() & mask(len, 128)))
            };
            Cidr::parse(&text).unwrap()
        })
        .collect();
    let t = Instant::now();
    let set = IpSet::new(blocks.iter().copied());
    let build = t.elapsed();
    let (r4, r6) = set.ranges();
    let addrs: Vec<IpAddr> = (0..1024)
        .map(|i| {
            if i % 2 == 0 {
                Ipv4Addr::from(rng.next() as u32).into()
            } else {
                Ipv6Addr::from(rng.u128()).into()
            }
        })
        .collect();
    let rounds = 1000;
    let t = Instant::now();
    let mut hits = 0usize;
    for _ in 0..rounds {
        for a in &addrs {
            hits += usize::from(set.contains(std::hint::black_box(*a)));
        }
    }
    let per = t.elapsed().as_nanos() / (rounds * addrs.len()) as u128;
    println!(
        "100000 blocks -> {r4} IPv4 + {r6} IPv6 ranges, built in {build:?}; {per} ns per lookup ({hits} hits)"
    );
    // Spot-check the big set against the definition.
    for a in addrs.iter().take(64) {
        assert_eq!(set.contains(*a), naive(&blocks, *a), "{a}");
    }
}
