//! Bench only: N signature verifications of one algorithm through meshwall-jwt's own code path
//! (`token::decode`, `verify::candidate_keys`, `verify::verify_with`, i.e. jwt-simple
//! `pure-rust`), timed inside the module. Run by run.mjs under Node's V8.
//!
//! Usage: jwt_v8_profile <fixtures.json> <alg> <n> [warm-up] [no-decode]
//! (fixtures.json from fixtures.py, in a directory the WASI host pre-opens).
//! Prints one JSON line: wall and process-CPU µs per verification, and the same for
//! `token::decode` alone (base64url + JSON of the token, done by the filter before verifying;
//! `no-decode` skips that loop, for a profile of the verifications only).

use meshwall_jwt::jwks::parse_jwks;
use meshwall_jwt::token::decode;
use meshwall_jwt::verify::{candidate_keys, verify_with};
use std::hint::black_box;
use std::process::ExitCode;
use std::time::Instant;

const MAX_BYTES: usize = 8192;
const SKEW: u64 = 60;

#[link(wasm_import_module = "wasi_snapshot_preview1")]
extern "C" {
    /// WASI `clock_time_get`; clock 2 is the process CPU-time clock.
    #[link_name = "clock_time_get"]
    fn wasi_clock_time_get(id: u32, precision: u64, time: *mut u64) -> u16;
}

/// Process CPU time in ns (all threads of the host process: V8's compiler threads are idle by
/// the time the loop runs), 0 if the host does not give it.
fn cpu_ns() -> u64 {
    let mut t: u64 = 0;
    // SAFETY: a plain WASI call writing one u64 into `t`.
    let rc = unsafe { wasi_clock_time_get(2, 1, &mut t) };
    if rc == 0 {
        t
    } else {
        0
    }
}

struct Timing {
    wall_us: f64,
    cpu_us: f64,
    ok: usize,
}

// Never inlined: the CPU profile keeps only the samples under this frame.
#[inline(never)]
fn time_loop(n: usize, mut f: impl FnMut(usize) -> bool) -> Timing {
    let c0 = cpu_ns();
    let t0 = Instant::now();
    let mut ok = 0usize;
    for i in 0..n {
        if black_box(f(i)) {
            ok += 1;
        }
    }
    let wall = t0.elapsed().as_secs_f64() * 1e6;
    let cpu = cpu_ns().saturating_sub(c0) as f64 / 1e3;
    let n = n.max(1) as f64;
    Timing {
        wall_us: wall / n,
        cpu_us: cpu / n,
        ok,
    }
}

fn run() -> Result<String, String> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(path), Some(alg), Some(n)) = (args.get(1), args.get(2), args.get(3)) else {
        return Err("usage: jwt_v8_profile <fixtures.json> <alg> <n> [warm-up] [no-decode]".into());
    };
    let n: usize = n.parse().map_err(|e| format!("n: {e}"))?;
    let warm: usize = match args.get(4) {
        Some(w) => w.parse().map_err(|e| format!("warm-up: {e}"))?,
        None => 10,
    };
    let text = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    let fx: serde_json::Value = serde_json::from_slice(&text).map_err(|e| e.to_string())?;
    let now = fx["now"].as_u64().ok_or("fixtures: no now")?;
    let jwks = serde_json::to_vec(&fx["jwks"]).map_err(|e| e.to_string())?;
    let (set, refused) = parse_jwks(&jwks, true).map_err(|e| format!("{e:?}"))?;
    if !refused.is_empty() {
        return Err(format!("refused keys: {refused:?}"));
    }
    let tokens: Vec<&str> = fx["tokens"][alg.as_str()]
        .as_array()
        .ok_or_else(|| format!("fixtures: no {alg} tokens"))?
        .iter()
        .filter_map(|t| t.as_str())
        .collect();
    if tokens.is_empty() {
        return Err(format!("fixtures: no {alg} tokens"));
    }
    let pick = |i: usize| tokens.get(i % tokens.len()).copied().unwrap_or_default();

    // What the filter does for a token its caches miss: decode, pick the key, verify.
    let verify_one = |i: usize| -> bool {
        let Ok(tok) = decode(pick(i), MAX_BYTES) else {
            return false;
        };
        let Ok(keys) = candidate_keys(&set, &tok) else {
            return false;
        };
        keys.iter()
            .any(|k| verify_with(k, &tok, now, SKEW, MAX_BYTES))
    };
    let decode_one = |i: usize| decode(pick(i), MAX_BYTES).is_ok();

    time_loop(warm, verify_one);
    let v = time_loop(n, verify_one);
    let d = if args.get(5).is_some_and(|a| a == "no-decode") {
        Timing {
            wall_us: 0.0,
            cpu_us: 0.0,
            ok: 0,
        }
    } else {
        time_loop(n.saturating_mul(20).max(1000), decode_one)
    };
    if v.ok != n {
        return Err(format!("{alg}: only {} of {n} tokens verified", v.ok));
    }
    Ok(format!(
        "{{\"alg\":\"{alg}\",\"n\":{n},\"ok\":{},\"wall_us\":{:.2},\"cpu_us\":{:.2},\
         \"decode_wall_us\":{:.3},\"decode_cpu_us\":{:.3}}}",
        v.ok, v.wall_us, v.cpu_us, d.wall_us, d.cpu_us
    ))
}

fn main() -> ExitCode {
    match run() {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("jwt_v8_profile: {e}");
            ExitCode::FAILURE
        }
    }
}
