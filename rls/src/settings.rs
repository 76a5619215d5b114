//! Command-line flags (each also read from `MESHWALL_RLS_<FLAG>` in the environment, e.g.
//! `MESHWALL_RLS_REDIS_URL`; a flag wins over the environment).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::parse_duration_ms;

pub const USAGE: &str = "\
meshwall-rls: Envoy Rate Limit Service (envoy.service.ratelimit.v3) with all state in Redis

usage: meshwall-rls --config PATH [flags]

  --config PATH              limits: an envoyproxy/ratelimit YAML file, or a directory of them
  --check-config             parse the configuration, print a summary, exit (0 ok, 2 error)
  --merge-domain-configs     a domain in several files: merge them (envoyproxy/ratelimit's
                             MERGE_DOMAIN_CONFIG); without it a repeated domain is an error
  --grpc-addr ADDR           gRPC listen address                        [0.0.0.0:8081]
  --metrics-addr ADDR        HTTP /metrics /healthz /readyz address       [0.0.0.0:9090]
  --redis-url URL            a single Redis: redis://[user:pass@]host:port[/db]
                                                                  [redis://127.0.0.1:6379]
  --redis-cluster URL,URL    Redis Cluster seed nodes (instead of --redis-url)
  --redis-pool-size N        multiplexed connections to a single Redis   [4]
  --redis-timeout DUR        deadline of one request's Redis work        [100ms]
  --redis-connect-timeout DUR                                             [1s]
  --max-inflight N           requests waiting for or in Redis at once    [4096]
  --max-descriptors N        descriptors per request (more: INVALID_ARGUMENT)  [64]
  --max-entries N            entries per descriptor (more: INVALID_ARGUMENT)   [32]
  --max-key-bytes N          longer counter keys are hashed (SHA-1)      [512]
  --max-message-bytes N      largest accepted gRPC request               [262144]
  --key-prefix S             prefix of every Redis key                   [meshwall:]
  --shutdown-grace DUR       SIGTERM: time to finish in-flight requests  [10s]
  --drain-delay DUR          SIGTERM: NOT_SERVING this long before closing the listener [0s]
  --workers N                tokio worker threads                        [CPU count]
  --log-level LEVEL          error|warn|info|debug|trace                 [info]
";

#[derive(Debug, Clone)]
pub struct Settings {
    pub config: PathBuf,
    pub check_config: bool,
    pub merge_domain_configs: bool,
    pub grpc_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub redis_urls: Vec<String>,
    pub cluster: bool,
    pub pool_size: usize,
    pub redis_timeout: Duration,
    pub connect_timeout: Duration,
    pub max_inflight: usize,
    pub max_descriptors: usize,
    pub max_entries: usize,
    pub max_key_bytes: usize,
    pub max_message_bytes: usize,
    pub key_prefix: String,
    pub shutdown_grace: Duration,
    pub drain_delay: Duration,
    pub workers: Option<usize>,
    pub log_level: String,
}

const FLAGS: [&str; 22] = [
    "config",
    "check-config",
    "merge-domain-configs",
    "grpc-addr",
    "metrics-addr",
    "redis-url",
    "redis-cluster",
    "redis-pool-size",
    "redis-timeout",
    "redis-connect-timeout",
    "max-inflight",
    "max-descriptors",
    "max-entries",
    "max-key-bytes",
    "max-message-bytes",
    "key-prefix",
    "shutdown-grace",
    "drain-delay",
    "workers",
    "log-level",
    "help",
    "version",
];

/// `Ok(None)`: `--help` was asked for.
pub fn parse(
    args: impl IntoIterator<Item = String>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<Settings>, String> {
    let mut given: Vec<(String, String)> = Vec::new();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let Some(flag) = a.strip_prefix("--") else {
            return Err(format!("unexpected argument '{a}' (see --help)"));
        };
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (flag.to_string(), None),
        };
        if !FLAGS.contains(&name.as_str()) {
            return Err(format!("unknown flag --{name} (see --help)"));
        }
        if name == "help" {
            return Ok(None);
        }
        let value = if ["check-config", "merge-domain-configs", "version"].contains(&name.as_str())
        {
            inline.unwrap_or_else(|| "true".into())
        } else {
            match inline {
                Some(v) => v,
                None => it.next().ok_or(format!("--{name} needs a value"))?,
            }
        };
        given.push((name, value));
    }
    let get = |name: &str| -> Option<String> {
        given
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .or_else(|| {
                env(&format!(
                    "MESHWALL_RLS_{}",
                    name.to_uppercase().replace('-', "_")
                ))
            })
    };
    let num = |name: &str, default: usize| -> Result<usize, String> {
        match get(name) {
            None => Ok(default),
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or(format!("--{name}: '{v}' is not a positive integer")),
        }
    };
    let dur = |name: &str, default: &str| -> Result<Duration, String> {
        let v = get(name).unwrap_or_else(|| default.to_string());
        parse_duration_ms(&v)
            .map(Duration::from_millis)
            .ok_or(format!(
                "--{name}: '{v}' is not a duration like 100ms, 1s, 1m"
            ))
    };
    let addr = |name: &str, default: &str| -> Result<SocketAddr, String> {
        let v = get(name).unwrap_or_else(|| default.to_string());
        v.parse()
            .map_err(|_| format!("--{name}: '{v}' is not an address like 0.0.0.0:8081"))
    };
    let config = get("config").ok_or("--config PATH is required (see --help)")?;
    let (redis_urls, cluster) = match (get("redis-url"), get("redis-cluster")) {
        (Some(_), Some(_)) => {
            return Err("--redis-url and --redis-cluster exclude each other".into())
        }
        (_, Some(c)) => (
            c.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect::<Vec<_>>(),
            true,
        ),
        (u, None) => (
            vec![u.unwrap_or_else(|| "redis://127.0.0.1:6379".into())],
            false,
        ),
    };
    if redis_urls.is_empty() {
        return Err("--redis-cluster: no URL".into());
    }
    for u in &redis_urls {
        if !(u.starts_with("redis://") || u.starts_with("rediss://") || u.starts_with("unix://")) {
            return Err(format!(
                "redis URL '{u}' must start with redis://, rediss:// or unix://"
            ));
        }
    }
    let redis_timeout = dur("redis-timeout", "100ms")?;
    if redis_timeout.is_zero() {
        return Err("--redis-timeout must be above 0".into());
    }
    let workers = match get("workers") {
        None => None,
        Some(_) => Some(num("workers", 1)?),
    };
    let log_level = get("log-level").unwrap_or_else(|| "info".into());
    if !["error", "warn", "info", "debug", "trace"].contains(&log_level.as_str()) {
        return Err(format!(
            "--log-level: '{log_level}' is not one of error|warn|info|debug|trace"
        ));
    }
    Ok(Some(Settings {
        config: PathBuf::from(config),
        check_config: get("check-config").is_some_and(|v| v != "false"),
        merge_domain_configs: get("merge-domain-configs").is_some_and(|v| v != "false"),
        grpc_addr: addr("grpc-addr", "0.0.0.0:8081")?,
        metrics_addr: addr("metrics-addr", "0.0.0.0:9090")?,
        redis_urls,
        cluster,
        pool_size: num("redis-pool-size", 4)?,
        redis_timeout,
        connect_timeout: dur("redis-connect-timeout", "1s")?,
        max_inflight: num("max-inflight", 4096)?,
        max_descriptors: num("max-descriptors", 64)?,
        max_entries: num("max-entries", 32)?,
        max_key_bytes: num("max-key-bytes", 512)?,
        max_message_bytes: num("max-message-bytes", 262_144)?,
        key_prefix: get("key-prefix").unwrap_or_else(|| "meshwall:".into()),
        shutdown_grace: dur("shutdown-grace", "10s")?,
        drain_delay: dur("drain-delay", "0s")?,
        workers,
        log_level,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn flags_env_and_defaults() {
        let s = parse(args("--config c.yaml --redis-timeout 50ms"), |k| {
            (k == "MESHWALL_RLS_REDIS_POOL_SIZE").then(|| "2".to_string())
        })
        .unwrap()
        .unwrap();
        assert_eq!(s.redis_timeout, Duration::from_millis(50));
        assert_eq!(s.pool_size, 2);
        assert_eq!(s.redis_urls, vec!["redis://127.0.0.1:6379".to_string()]);
        assert!(!s.cluster && !s.check_config);
        assert_eq!(s.grpc_addr.port(), 8081);
        let c = parse(
            args("--config=c --redis-cluster redis://a:1,redis://b:2 --check-config"),
            |_| None,
        )
        .unwrap()
        .unwrap();
        assert!(c.cluster && c.check_config);
        assert_eq!(c.redis_urls.len(), 2);
        assert!(!c.merge_domain_configs);
        // envoyproxy/ratelimit's MERGE_DOMAIN_CONFIG=true, as a flag or from the environment.
        let m = parse(args("--config c --merge-domain-configs"), |_| None);
        assert!(m.unwrap().unwrap().merge_domain_configs);
        let env = |k: &str| (k == "MESHWALL_RLS_MERGE_DOMAIN_CONFIGS").then(|| "true".to_string());
        assert!(
            parse(args("--config c"), env)
                .unwrap()
                .unwrap()
                .merge_domain_configs
        );
    }

    #[test]
    fn bad_flags_name_the_flag() {
        let cases = [
            ("", "--config"),
            ("--config c --bogus 1", "--bogus"),
            ("--config c --redis-timeout 5", "--redis-timeout"),
            ("--config c --redis-pool-size 0", "--redis-pool-size"),
            ("--config c --grpc-addr nowhere", "--grpc-addr"),
            ("--config c --redis-url http://x", "redis://"),
            (
                "--config c --redis-url redis://a --redis-cluster redis://b",
                "exclude",
            ),
            ("--config c --log-level loud", "--log-level"),
            ("--config", "needs a value"),
        ];
        for (a, want) in cases {
            let e = parse(args(a), |_| None).unwrap_err();
            assert!(e.contains(want), "{a}: {e}");
        }
        assert!(parse(args("--help"), |_| None).unwrap().is_none());
    }
}
