"""The `ratelimit-global` scenario of `make bench`: a global rule decided by a rate limit service
on every request (the bucket never empties), the `ratelimit` wasm filter next to Envoy's native
`envoy.filters.http.ratelimit`, both asking the same meshwall-rls (release build, one Redis
behind it) with the same descriptor `(generic_key, all)` in domain `bench`. Goal: the wasm filter
at ≥ 0.8× the native filter's req/s.

The scenario needs Redis and meshwall-rls running, and the native filter needs a route to a
cluster (it does nothing on a `direct_response` route), so it comes with `services(mode)`, a
context manager that starts them (and, in `direct` mode, an Envoy answering directly in place of
the route) and yields `prepare(cfg, upstreams) -> (cfg, upstreams)` for each front bootstrap.

Registered in scripts/bench_scenarios.py (`SCENARIOS["ratelimit-global"]`); scripts/bench.py
enters `services(mode)` around starting and measuring the variants and passes each front bootstrap
through `prepare`. The scenario runs in `proxied` mode only (`modes`): the native filter needs a
route to a cluster, so `direct` would forward to an answering Envoy too and measure the same.

Standalone (one short round, no report): `.venv/bin/python scripts/bench_ratelimit_global.py`.
"""

from __future__ import annotations

import contextlib
import copy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402
from bench_scenarios import Load, Variant, wasm_filter  # noqa: E402

DOMAIN = "bench"
LIMITS = f"""domain: {DOMAIN}
descriptors:
  - key: generic_key
    value: all
    rate_limit:
      token_bucket: {{max_tokens: 1000000000, tokens_per_fill: 1000000000, fill_interval: 1s}}
"""
TIMEOUT = "0.25s"

NATIVE = {"name": "envoy.filters.http.ratelimit", "typed_config": {
    "@type": "type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit",
    "domain": DOMAIN, "failure_mode_deny": True, "timeout": TIMEOUT,
    "status_on_error": {"code": "ServiceUnavailable"},
    "rate_limit_service": {"transport_api_version": "V3",
                           "grpc_service": {"envoy_grpc": {"cluster_name": "meshwall_rls"}}}}}
# The descriptor the native filter sends: one `rate_limits` entry on the virtual host.
RATE_LIMITS = [{"actions": [{"generic_key": {"descriptor_value": "all"}}]}]
WASM = {"rules": [{"name": "all", "global": True, "key": [{"generic_key": {"descriptor_value": "all"}}]}],
        "enable_ratelimit_headers": False,
        "rate_limit_service": {"cluster": "meshwall_rls", "domain": DOMAIN, "timeout": "250ms",
                               "failure_mode": "deny"}}


def rls_cluster() -> dict:
    """The meshwall-rls cluster (HTTP/2; its port is set through `upstreams`)."""
    return {"name": "meshwall_rls", "type": "STATIC", "connect_timeout": "0.25s",
            "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}}}},
            "circuit_breakers": {"thresholds": [{"max_pending_requests": 4096, "max_requests": 4096}]},
            "load_assignment": {"cluster_name": "meshwall_rls", "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 1}}}}]}]}}


def scenario_ratelimit_global(mode):
    return ("global rate limit on every request: one ShouldRateLimit call to meshwall-rls (Redis) per "
            "request, bucket never empty",
            [Variant("native ratelimit (global)", [NATIVE]),
             Variant("no filter"),
             Variant("meshwall.ratelimit global rule", [wasm_filter("ratelimit", WASM)], load=Load())])


@contextlib.contextmanager
def services(mode: str):
    """Redis and a release meshwall-rls (2 workers), started by tests/rls_harness.py on free
    loopback ports with their own temp dirs, and, in `direct` mode, an Envoy answering in place
    of the route; yields `prepare(cfg, upstreams)`. Everything stopped on exit."""
    import rls_harness as rh
    redis = rls = answer = None
    try:
        redis = rh.Redis().start()
        # A throughput measurement: a call delayed by the shared machine must not turn into
        # UNAVAILABLE (the default Redis deadline is 100ms; the filters wait 250ms).
        rls = rh.Rls(LIMITS, redis.url, "--redis-timeout", "200ms", "--log-level", "warn", release=True).start()
        if mode == "direct":
            import bench_scenarios as sc
            answer = harness.Envoy(sc.backend_bootstrap(), concurrency=1).start()

        def prepare(cfg: dict, upstreams: dict):
            cfg = copy.deepcopy(cfg)
            cfg["static_resources"].setdefault("clusters", []).append(rls_cluster())
            for hcm in harness.http_connection_managers(cfg):
                for vh in hcm["route_config"]["virtual_hosts"]:
                    vh["rate_limits"] = RATE_LIMITS
                    if answer:   # the native filter needs a route to a cluster
                        vh["routes"] = [{"match": {"prefix": "/"}, "route": {"cluster": "backend"}}]
            ups = dict(upstreams, meshwall_rls=rls.port)
            if answer:
                ups["backend"] = answer.port
            return cfg, ups

        yield prepare
    finally:
        for p in (answer, rls, redis):
            if p:
                p.stop()


scenario_ratelimit_global.services = services
scenario_ratelimit_global.modes = ("proxied",)


def main() -> None:
    """Three interleaved rounds per mode (`direct`, `proxied`, or the modes given as arguments):
    each variant's median req/s and CPU µs/req, and the median of the per-round wasm/native
    ratios (the figure `make bench` reports)."""
    import statistics

    import bench
    import bench_scenarios as sc
    for mode in sys.argv[1:] or scenario_ratelimit_global.modes:
        desc, variants = scenario_ratelimit_global(mode)
        backend = harness.Envoy(sc.backend_bootstrap(), concurrency=1).start() if mode == "proxied" else None
        envoys, runs = [], {v.label: [] for v in variants}
        try:
            with services(mode) as prepare:
                for v in variants:
                    cfg = sc.front(v.filters, v.route_extra, direct=(mode == "direct"))
                    cfg, ups = prepare(cfg, {"backend": backend.port if backend else 1})
                    envoys.append((v, harness.Envoy(cfg, concurrency=1, upstreams=ups).start()))
                for _ in range(3):
                    for v, e in envoys:
                        bench.wrk(e.port, 1, 16, v.load)
                        runs[v.label].append(bench.wrk(e.port, 4, 16, v.load, e.proc.pid))
                for _, e in envoys:
                    e.stop()
        finally:
            for _, e in envoys:
                e.stop()
            if backend:
                backend.stop()
        print(f"== ratelimit-global [{mode}]: {desc}")
        for label, r in runs.items():
            print(f"   {label:<34}{statistics.median(x.rps for x in r):>9.0f} req/s"
                  f"{statistics.median(x.cpu_us_per_req for x in r):>8.1f} CPU µs/req"
                  f"  non-2xx {sum(x.non2xx for x in r)}")
        wasm, native = runs["meshwall.ratelimit global rule"], runs["native ratelimit (global)"]
        ratios = [w.rps / n.rps for w, n in zip(wasm, native)]
        print(f"   wasm / native req/s: {statistics.median(ratios):.2f}× "
              f"({min(ratios):.2f}–{max(ratios):.2f})")


if __name__ == "__main__":
    main()
