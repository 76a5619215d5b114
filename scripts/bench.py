"""Side-by-side benchmark: each meshwall filter against Envoy's native equivalent.

Every variant runs in its own Envoy (--concurrency 1) in front of one shared backend Envoy that
answers with a fixed direct response. All variants are started first, then measured in
interleaved rounds (A B C, A B C, ...) with wrk on 127.0.0.1 only, so machine noise hits them
alike. Results are medians over the rounds, reported as ratios to the native variant.

Usage: scripts/bench [--seconds N] [--rounds N] [--connections N] [scenario ...]
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import harness  # noqa: E402

WASM = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
ROUTER = {"name": "envoy.filters.http.router",
          "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
                           "suppress_envoy_headers": True}}
LEAKY = ["server", "x-powered-by", "x-aspnet-version", "x-runtime"]


def listener(name, http_filters, routes, server_pass_through=True):
    hcm = {"@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
           "stat_prefix": name,
           "route_config": {"name": name, "virtual_hosts": [{"name": name, "domains": ["*"], "routes": routes}]},
           "http_filters": http_filters + [ROUTER]}
    if server_pass_through:
        hcm["server_header_transformation"] = "PASS_THROUGH"
    return {"name": name, "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                            "typed_config": hcm}]}]}


def bootstrap(listeners, clusters=()):
    return {"admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
            "static_resources": {"listeners": listeners, "clusters": list(clusters)}}


def backend_cluster():
    return {"name": "backend", "type": "STATIC", "connect_timeout": "1s",
            "load_assignment": {"cluster_name": "backend", "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 1}}}}]}]}}


def wasm_filter(name, config_json):
    return {"name": f"meshwall.{name}", "typed_config": {"@type": WASM, "config": {
        "name": f"meshwall.{name}", "root_id": f"meshwall.{name}",
        "vm_config": {"vm_id": f"meshwall.{name}", "runtime": "envoy.wasm.runtime.v8",
                      "code": {"local": {"filename": f"target/wasm32-wasip1/release/meshwall_{name}.wasm"}}},
        "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": config_json}}}}


def front(http_filters, route_extra=None):
    route = {"match": {"prefix": "/"}, "route": {"cluster": "backend"}}
    route.update(route_extra or {})
    return bootstrap([listener("front", http_filters, [route])], [backend_cluster()])


# --- scenarios: name -> (description, [(variant, bootstrap, wrk headers)]) -------------------------
def scenario_headers():
    native_route = {
        "response_headers_to_remove": LEAKY,
        "response_headers_to_add": [
            {"header": {"key": k, "value": v}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
            for k, v in [("strict-transport-security", "max-age=63072000; includeSubDomains"),
                         ("x-content-type-options", "nosniff"), ("x-frame-options", "DENY"),
                         ("referrer-policy", "no-referrer"),
                         ("content-security-policy", "default-src 'none'; frame-ancestors 'none'"),
                         ("cross-origin-resource-policy", "same-origin"),
                         ("x-permitted-cross-domain-policies", "none")]]
        + [{"header": {"key": "cache-control", "value": "no-store"}, "append_action": "ADD_IF_ABSENT"}],
    }
    return ("response header cleanup + OWASP security headers",
            [("no filter", front([]), []),
             ("native route headers", front([], native_route), []),
             ("meshwall.headers", front([wasm_filter("headers", "{}")]), [])])


SCENARIOS = {"headers": scenario_headers}


def backend_envoy():
    # Direct response with leaky headers, served by its own Envoy.
    route = {"match": {"prefix": "/"},
             "direct_response": {"status": 200, "body": {"inline_string": '{"ok":true}'}},
             "response_headers_to_add": [{"header": {"key": k, "value": "x"}} for k in LEAKY]}
    return harness.Envoy(bootstrap([listener("backend", [], [route])]), concurrency=1)


def wrk(port, seconds, connections, headers):
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for h in headers:
        cmd += ["-H", h]
    cmd.append(f"http://127.0.0.1:{port}/bench")
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def pct(p):
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, pct(50), pct(99), int(non2xx.group(1)) if non2xx else 0


def run(name, seconds, rounds, connections):
    desc, variants = SCENARIOS[name]()
    print(f"\n== {name}: {desc}")
    print(f"   wrk -t1 -c{connections} -d{seconds}s, {rounds} interleaved rounds, each Envoy --concurrency 1")
    with backend_envoy() as be:
        envoys = []
        try:
            for label, cfg, headers in variants:
                envoys.append((label, harness.Envoy(cfg, concurrency=1, upstreams={"backend": be.port}).start(), headers))
            results = {label: [] for label, _, _ in envoys}
            for _ in range(rounds):
                for label, e, headers in envoys:
                    wrk(e.port, 1, connections, headers)  # warm-up
                    results[label].append(wrk(e.port, seconds, connections, headers))
        finally:
            for _, e, _ in envoys:
                e.stop()
    ref = variants[1][0] if len(variants) > 2 else variants[0][0]
    med = {k: tuple(statistics.median(r[i] for r in v) for i in range(4)) for k, v in results.items()}
    print(f"   {'variant':<24}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>9}   req/s vs '{ref}'")
    for label, (rps, p50, p99, bad) in med.items():
        print(f"   {label:<24}{rps:>10.0f}{p50:>9.2f}{p99:>9.2f}{bad:>9.0f}   {rps / med[ref][0]:.2f}x")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("scenarios", nargs="*", default=list(SCENARIOS))
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("bench: wrk missing (scripts/setup --bench installs it)")
    for name in args.scenarios:
        run(name, args.seconds, args.rounds, args.connections)


if __name__ == "__main__":
    main()
