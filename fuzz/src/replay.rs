//! The stable-toolchain form of the fuzz targets: every harness over its committed seeds and
//! over inputs from a small deterministic generator (mutations of the seeds and random bytes),
//! for `FUZZ_SECONDS` per target (default 2). `make fuzz` runs this when there is no nightly.
//! `FUZZ_SEED` changes the generator's start.

use crate::TARGETS;
use std::path::Path;
use std::time::{Duration, Instant};

/// xorshift64*: small, deterministic, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const INTERESTING: &[&[u8]] = &[
    b"%", b"%2e", b"%2F", b"..", b"/", b";", b"\\", b"\"", b"{", b"}", b"[", b"]", b"\0", b"\n", b"\xff",
    b"-1", b"1e999", b"18446744073709551616", b"\"alg\":\"none\"", b"=", b"&", b",", b"~", b"\xc3\xa9",
];

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(5) {
            0 if !v.is_empty() => {
                let end = (at + 1 + rng.below(8)).min(v.len());
                v.drain(at.min(v.len())..end);
            }
            1 => {
                let piece = INTERESTING[rng.below(INTERESTING.len())];
                v.splice(at..at, piece.iter().copied());
            }
            2 if !v.is_empty() => {
                let i = at.min(v.len() - 1);
                v[i] ^= 1 << rng.below(8);
            }
            3 if !v.is_empty() => {
                let i = at.min(v.len() - 1);
                let len = (1 + rng.below(16)).min(v.len() - i);
                let piece: Vec<u8> = v[i..i + len].to_vec();
                let to = rng.below(v.len() + 1);
                v.splice(to..to, piece);
            }
            _ => {
                let n = rng.below(8);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                v.splice(at..at, bytes);
            }
        }
    }
    v
}

fn seeds(name: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds").join(name);
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .map(|rd| rd.filter_map(|e| std::fs::read(e.ok()?.path()).ok()).collect())
        .unwrap_or_default();
    out.sort();
    out
}

/// Runs one input; on a panic, prints the input (escaped) so it can become a regression test.
fn run(name: &str, harness: fn(&[u8]), input: &[u8]) {
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| harness(input)));
    if let Err(e) = r {
        eprintln!("{name}: failing input: b\"{}\"", input.escape_ascii());
        std::panic::resume_unwind(e);
    }
}

#[test]
fn every_target_survives_its_seeds_and_generated_inputs() {
    let secs: u64 = std::env::var("FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(2);
    let start: u64 = std::env::var("FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed);
    let only = std::env::var("FUZZ_TARGET").ok();
    for (name, harness) in TARGETS {
        if only.as_deref().is_some_and(|o| o != *name) {
            continue;
        }
        let corpus = seeds(name);
        assert!(!corpus.is_empty(), "no seeds for {name}");
        for s in &corpus {
            run(name, *harness, s);
        }
        let mut rng = Rng(start ^ (name.len() as u64) << 32 | 1);
        let until = Instant::now() + Duration::from_secs(secs);
        let mut runs = corpus.len();
        while Instant::now() < until {
            let base = &corpus[rng.below(corpus.len())];
            let input = if rng.below(16) == 0 {
                (0..rng.below(64)).map(|_| rng.next() as u8).collect()
            } else {
                mutate(&mut rng, base)
            };
            run(name, *harness, &input);
            runs += 1;
        }
        println!("replay {name}: {runs} inputs ({} seeds)", corpus.len());
    }
}
