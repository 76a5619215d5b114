//! `meshwall-rls`: see `meshwall-rls --help` and docs/rls.md.

use std::process::ExitCode;

use meshwall_rls::config::{Config, Kind};
use meshwall_rls::settings::{self, USAGE};

fn main() -> ExitCode {
    let parsed = settings::parse(std::env::args().skip(1), |k| std::env::var(k).ok());
    let s = match parsed {
        Ok(Some(s)) => s,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            init_logs("info");
            tracing::error!("invalid flags: {e}");
            return ExitCode::from(2);
        }
    };
    init_logs(&s.log_level);
    let config = match Config::load_with(&s.config, s.merge_domain_configs) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("config error: {e}");
            return ExitCode::from(2);
        }
    };
    if s.check_config {
        let buckets = config
            .limits
            .iter()
            .filter(|l| matches!(l.kind, Kind::Bucket(_)))
            .count();
        println!(
            "config ok: {} domain(s), {} limit(s) ({} token bucket(s))",
            config.domain_names.len(),
            config.limits.len(),
            buckets
        );
        return ExitCode::SUCCESS;
    }
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(n) = s.workers {
        rt.worker_threads(n);
    }
    let rt = match rt.build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(meshwall_rls::server::run(s, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("cannot start: {e}");
            ExitCode::from(1)
        }
    }
}

/// Structured logs: one JSON object per line on stderr.
fn init_logs(level: &str) {
    let filter = tracing_subscriber::EnvFilter::new(format!("meshwall_rls={level},warn"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_current_span(false)
        .with_target(false)
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
