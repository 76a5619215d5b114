//! Wiring: configuration, Redis, the gRPC server (rate limit + health), the metrics port,
//! and graceful shutdown on SIGTERM/SIGINT.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitServiceServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;

use crate::config::Config;
use crate::http::{self, HttpState};
use crate::limiter::Limits;
use crate::metrics::Metrics;
use crate::service::Rls;
use crate::settings::Settings;
use crate::store::{Store, StoreSettings};

/// Runs until SIGTERM/SIGINT and the end of the shutdown. `Err`: could not start.
pub async fn run(s: Settings, config: Config) -> Result<(), String> {
    let config = Arc::new(config);
    let metrics = Arc::new(Metrics::new(&config));
    let store = Arc::new(
        Store::connect(
            &StoreSettings {
                urls: s.redis_urls.clone(),
                cluster: s.cluster,
                pool_size: s.pool_size,
                max_inflight: s.max_inflight,
                timeout: s.redis_timeout,
                connect_timeout: s.connect_timeout,
            },
            metrics.clone(),
        )
        .await?,
    );
    let grpc = TcpListener::bind(s.grpc_addr)
        .await
        .map_err(|e| format!("--grpc-addr {}: {e}", s.grpc_addr))?;
    let metrics_listener = TcpListener::bind(s.metrics_addr)
        .await
        .map_err(|e| format!("--metrics-addr {}: {e}", s.metrics_addr))?;
    let grpc_addr = grpc.local_addr().map_err(|e| e.to_string())?;
    let metrics_addr = metrics_listener.local_addr().map_err(|e| e.to_string())?;

    let http_state = Arc::new(HttpState {
        metrics: metrics.clone(),
        store: store.clone(),
        draining: AtomicBool::new(false),
    });
    tokio::spawn(http::serve(metrics_listener, http_state.clone()));

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<RateLimitServiceServer<Rls>>().await;
    health.set_service_status("", ServingStatus::Serving).await;

    let rls = Rls {
        config: config.clone(),
        limits: Limits {
            max_descriptors: s.max_descriptors,
            max_entries: s.max_entries,
            max_key_bytes: s.max_key_bytes,
            key_prefix: s.key_prefix.clone(),
        },
        store,
        metrics,
        last_warn: Default::default(),
        suppressed: Default::default(),
    };
    let service = RateLimitServiceServer::new(rls)
        .max_decoding_message_size(s.max_message_bytes)
        .max_encoding_message_size(4 << 20);

    let (stop_tx, mut stop_rx) = watch::channel(false);
    let drain_delay = s.drain_delay;
    let hs = http_state.clone();
    let reporter = health.clone();
    tokio::spawn(async move {
        let why = wait_for_signal().await;
        tracing::info!(
            signal = why,
            "shutting down: NOT_SERVING, finishing in-flight requests"
        );
        hs.draining.store(true, Ordering::Relaxed);
        reporter
            .set_not_serving::<RateLimitServiceServer<Rls>>()
            .await;
        reporter
            .set_service_status("", ServingStatus::NotServing)
            .await;
        tokio::time::sleep(drain_delay).await;
        let _ = stop_tx.send(true);
    });

    tracing::info!(
        grpc = %grpc_addr,
        metrics = %metrics_addr,
        redis = %mask(&s.redis_urls.join(",")),
        cluster = s.cluster,
        domains = config.domain_names.len(),
        limits = config.limits.len(),
        "meshwall-rls listening"
    );
    let incoming = TcpIncoming::from(grpc).with_nodelay(Some(true));
    let mut stop_wait = stop_rx.clone();
    let server = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .add_service(health_service)
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = stop_wait.wait_for(|v| *v).await;
        });
    tokio::pin!(server);
    let grace = s.shutdown_grace;
    tokio::select! {
        r = &mut server => r.map_err(|e| format!("grpc server: {e}"))?,
        _ = async {
            let _ = stop_rx.wait_for(|v| *v).await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!("shutdown grace over: closing the connections still open");
        }
    }
    tracing::info!("meshwall-rls stopped");
    Ok(())
}

async fn wait_for_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => "SIGTERM",
                    _ = int.recv() => "SIGINT",
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}

/// `redis://user:pass@host` → `redis://*****@host` for logs.
fn mask(urls: &str) -> String {
    urls.split(',')
        .map(|u| match (u.split_once("://"), u.rfind('@')) {
            (Some((scheme, _)), Some(at)) => {
                format!("{scheme}://*****{}", u.get(at..).unwrap_or(""))
            }
            _ => u.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}
