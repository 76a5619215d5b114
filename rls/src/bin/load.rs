//! `meshwall-rls-load`: a bounded load generator for a loopback meshwall-rls (or any Envoy RLS).
//!
//! ```text
//! meshwall-rls-load --target 127.0.0.1:8081 --domain bench --key user --values 1000 \
//!     --concurrency 64 --connections 4 --duration 10s
//! ```
//! Prints one JSON line: decisions, ok, over_limit, errors, seconds, decisions_per_s, p50/p99 µs.

// A load generator (not the server): it indexes its own four counters by constants.
#![allow(clippy::indexing_slicing)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;
use tonic::transport::Endpoint;

struct Args {
    target: SocketAddr,
    domain: String,
    key: String,
    values: u64,
    concurrency: usize,
    connections: usize,
    duration: Duration,
    workers: usize,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        target: "127.0.0.1:8081".parse().map_err(|_| "addr")?,
        domain: "bench".into(),
        key: "user".into(),
        values: 1000,
        concurrency: 64,
        connections: 4,
        duration: Duration::from_secs(5),
        workers: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().ok_or(format!("{flag} needs a value"))?;
        let n = || {
            v.parse::<u64>()
                .map_err(|_| format!("{flag}: not a number"))
        };
        match flag.as_str() {
            "--target" => a.target = v.parse().map_err(|_| "--target: not an address")?,
            "--domain" => a.domain = v.clone(),
            "--key" => a.key = v.clone(),
            "--values" => a.values = n()?.max(1),
            "--concurrency" => a.concurrency = usize::try_from(n()?.max(1)).unwrap_or(1),
            "--connections" => a.connections = usize::try_from(n()?.max(1)).unwrap_or(1),
            "--workers" => a.workers = usize::try_from(n()?.max(1)).unwrap_or(1),
            "--duration" => {
                let secs: f64 = v.trim_end_matches('s').parse().map_err(|_| "--duration")?;
                // Bounded: at most 5 minutes.
                a.duration = Duration::from_secs_f64(secs.clamp(0.1, 300.0));
            }
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if !a.target.ip().is_loopback() {
        return Err("--target must be a loopback address".into());
    }
    Ok(a)
}

fn main() -> std::process::ExitCode {
    let a = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("meshwall-rls-load: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let Ok(rt) = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(a.workers)
        .enable_all()
        .build()
    else {
        return std::process::ExitCode::from(1);
    };
    rt.block_on(run(a))
}

async fn run(a: Args) -> std::process::ExitCode {
    let Ok(ep) = Endpoint::from_shared(format!("http://{}", a.target)) else {
        return std::process::ExitCode::from(2);
    };
    let ep = ep.tcp_nodelay(true).http2_adaptive_window(true);
    let mut channels = Vec::new();
    for _ in 0..a.connections {
        match ep.connect().await {
            Ok(c) => channels.push(c),
            Err(e) => {
                eprintln!("meshwall-rls-load: connect {}: {e}", a.target);
                return std::process::ExitCode::from(1);
            }
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let counters: Arc<[AtomicU64; 4]> = Arc::new(Default::default()); // ok, over, error, seq
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..a.concurrency {
        let Some(ch) = channels.get(t % channels.len().max(1)).cloned() else {
            break;
        };
        let (stop, counters) = (stop.clone(), counters.clone());
        let (domain, key, values) = (a.domain.clone(), a.key.clone(), a.values);
        tasks.push(tokio::spawn(async move {
            let mut client = RateLimitServiceClient::new(ch);
            let mut lat = Vec::with_capacity(1 << 16);
            while !stop.load(Ordering::Relaxed) {
                let seq = counters[3].fetch_add(1, Ordering::Relaxed);
                let req = RateLimitRequest {
                    domain: domain.clone(),
                    descriptors: vec![RateLimitDescriptor {
                        entries: vec![Entry {
                            key: key.clone(),
                            value: format!("v{}", seq % values),
                        }],
                        ..Default::default()
                    }],
                    hits_addend: 1,
                };
                let t0 = Instant::now();
                let i = match client.should_rate_limit(req).await {
                    Ok(r) if r.get_ref().overall_code == 1 => 0,
                    Ok(_) => 1,
                    Err(_) => 2,
                };
                lat.push(u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX));
                counters[i].fetch_add(1, Ordering::Relaxed);
            }
            lat
        }));
    }
    tokio::time::sleep(a.duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut lat = Vec::new();
    for t in tasks {
        if let Ok(l) = t.await {
            lat.extend(l);
        }
    }
    let secs = started.elapsed().as_secs_f64();
    lat.sort_unstable();
    let pct = |p: f64| {
        let i = ((lat.len() as f64 - 1.0) * p).round().max(0.0) as usize;
        lat.get(i).copied().unwrap_or(0)
    };
    let (ok, over, err) = (
        counters[0].load(Ordering::Relaxed),
        counters[1].load(Ordering::Relaxed),
        counters[2].load(Ordering::Relaxed),
    );
    let total = ok + over + err;
    println!(
        "{}",
        serde_json::json!({
            "decisions": ok + over, "ok": ok, "over_limit": over, "errors": err,
            "seconds": secs, "decisions_per_s": (ok + over) as f64 / secs,
            "requests": total, "p50_us": pct(0.5), "p99_us": pct(0.99),
            "concurrency": a.concurrency, "connections": a.connections,
        })
    );
    std::process::ExitCode::SUCCESS
}
