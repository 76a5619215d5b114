"""Side-by-side benchmark: each meshwall filter against Envoy's native equivalent.

Every variant runs in its own Envoy (--concurrency 1) in front of one shared backend Envoy that
answers with a fixed direct response. All variants are started first, then measured in
interleaved rounds (A B C, A B C, ...) with wrk on 127.0.0.1 only, so machine noise hits them
alike. Results are medians over the rounds, reported as ratios to the native variant.

Usage: scripts/bench [--seconds N] [--rounds N] [--connections N] [scenario ...]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
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


def scenario_validate():
    """(b) config time for GitHub's OpenAPI description (printed here), then (a) the variants
    for the per-request cost of validating a JSON body."""
    import json
    import tarfile
    import time
    import urllib.error
    import urllib.request

    sample = json.loads(next(p for p in harness.wasm_filters(harness.load_config("validate"))
                             if p["name"] == "meshwall.validate")["configuration"]["value"])
    # The validating Envoy answers 404 itself for paths the spec does not declare.
    empty_spec = {"openapi": "3.0.3", "info": {"title": "empty", "version": "1"}, "paths": {}}

    def fetch_big_spec(tmp):
        # GitHub's REST API description (OpenAPI 3.0.3, ~13 MB) from a pinned npm package. The
        # tarball (~29 MB) holds several variants; only api.github.com.json is extracted.
        pkg = "@octokit/openapi@23.0.2"
        out = subprocess.run(["npm", "pack", pkg, "--silent", "--pack-destination", tmp],
                             capture_output=True, text=True, check=True).stdout.split()
        with tarfile.open(Path(tmp) / out[-1]) as tar:
            raw = tar.extractfile("package/generated/api.github.com.json").read()
        return pkg, raw

    def timed_start(spec):
        # Seconds from exec to the first request answered by the filter (a 404 for an undeclared
        # path: the worker's VM has loaded the spec), and the resident memory of Envoy then.
        cfg = front([wasm_filter("validate", json.dumps({"spec": spec}))])
        e = harness.Envoy(cfg, concurrency=1, upstreams={"backend": 1})  # ports and paths only
        cfg_path = e.dir / "envoy.json"
        cfg_path.write_text(json.dumps(e.cfg))
        cmd = [str(harness.ENVOY_BIN), "-c", str(cfg_path), "--concurrency", "1",
               "--disable-hot-restart", "--log-level", "warn"]
        with open(e.log_path, "wb") as log:
            t0 = time.monotonic()
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=harness.ROOT)
            try:
                while time.monotonic() - t0 < 120:
                    if proc.poll() is not None:
                        raise RuntimeError(f"envoy exited with {proc.returncode}:\n{e.log_tail()}")
                    try:
                        urllib.request.urlopen(f"http://127.0.0.1:{e.port}/meshwall-bench-unknown", timeout=5)
                    except urllib.error.HTTPError as err:
                        if err.code == 404 and err.headers.get("content-type") == "application/problem+json":
                            elapsed = time.monotonic() - t0
                            rss = re.search(r"^VmRSS:\s+(\d+) kB", Path(f"/proc/{proc.pid}/status").read_text(), re.M)
                            return elapsed, int(rss.group(1)) / 1024 if rss else float("nan")
                    except OSError:
                        pass
                    time.sleep(0.01)
                raise RuntimeError(f"envoy not serving within 120s:\n{e.log_tail()}")
            finally:
                proc.terminate()
                proc.wait()
                shutil.rmtree(e.dir, ignore_errors=True)

    print("\n== validate (config time): Envoy exec → first reply from the filter, --concurrency 1")
    if not shutil.which("npm"):
        print("   skipped: npm missing (needed to fetch the large real-world spec)")
    else:
        with tempfile.TemporaryDirectory(prefix="meshwall-bench-") as tmp:
            pkg, raw = fetch_big_spec(tmp)
            big = json.loads(raw)
            print(f"   spec: api.github.com.json from npm {pkg}: {len(raw) / 1e6:.1f} MB, OpenAPI "
                  f"{big['openapi']}, {len(big['paths'])} paths, {len(big['components']['schemas'])} schemas")
            runs = {"empty spec": [], "GitHub spec": []}
            for _ in range(5):  # interleaved
                runs["empty spec"].append(timed_start(empty_spec))
                runs["GitHub spec"].append(timed_start(big))
            print(f"   {'variant':<24}{'median s':>10}{'min s':>9}{'max s':>9}{'RSS MB':>9}")
            for label, r in runs.items():
                t = [x[0] for x in r]
                print(f"   {label:<24}{statistics.median(t):>10.2f}{min(t):>9.2f}{max(t):>9.2f}"
                      f"{statistics.median(x[1] for x in r):>9.0f}")
            d = statistics.median(x[0] for x in runs["GitHub spec"]) - statistics.median(x[0] for x in runs["empty spec"])
            print(f"   difference (config time of the spec, main thread and worker VM): {d:+.2f} s")

    # (a) A ~1 KB order (declared members validated; the others still pass the threat limits
    # and the JSON parse) sent as POST to an operation with path, query and body checks.
    body = json.dumps({
        "petId": 4711, "quantity": 3, "shipDate": "2025-06-01T12:30:00Z",
        "notes": "Leave at the back door; the dog is friendly. Call before delivery, please.",
        "customer": {"id": "c-0042", "name": "Ada Lovelace", "email": "ada@example.com",
                     "address": {"street": "12 Analytical Row", "city": "London", "zip": "NW1 2AB",
                                 "country": "GB"}},
        "lines": [{"sku": f"SKU-{i:04d}", "title": f"Chew toy model {i}", "qty": i % 3 + 1,
                   "price": {"amount": 4.99 + i, "currency": "EUR"}} for i in range(6)],
        "tags": ["gift", "express", "fragile"], "coupon": None, "gift": True})
    post = {"method": "POST", "body": body, "path": "/v1/orders?dry_run=true&ids=1|2|3"}
    headers = ["Content-Type: application/json"]
    return (f"POST /v1/orders with a {len(body)}-byte JSON body, sample spec of envoy/validate.yaml",
            [("no filter", front([]), headers, post),
             ("meshwall.validate", front([wasm_filter("validate", json.dumps(sample))]), headers, post)])


def scenario_ratelimit():
    # One global bucket large enough that every request passes: the cost of the check itself.
    bucket = {"max_tokens": 1_000_000_000, "tokens_per_fill": 1_000_000_000, "fill_interval": "1s"}
    native = {"name": "envoy.filters.http.local_ratelimit", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
        "stat_prefix": "bench",
        "token_bucket": bucket,
        "filter_enabled": {"runtime_key": "rl_enabled", "default_value": {"numerator": 100, "denominator": "HUNDRED"}},
        "filter_enforced": {"runtime_key": "rl_enforced", "default_value": {"numerator": 100, "denominator": "HUNDRED"}}}}
    ours = {"rules": [{"name": "all", "key": [{"generic_key": {"descriptor_value": "all"}}],
                       "token_bucket": bucket}],
            "enable_ratelimit_headers": False}
    per_ip = {"rules": [{"name": "per-ip", "key": [{"remote_address": {}}], "token_bucket": bucket}],
              "enable_ratelimit_headers": False}
    return ("token bucket check on every request (bucket never empty)",
            [("no filter", front([]), []),
             ("native local_ratelimit", front([native]), []),
             ("meshwall.ratelimit global", front([wasm_filter("ratelimit", json.dumps(ours))]), []),
             ("meshwall.ratelimit per-ip", front([wasm_filter("ratelimit", json.dumps(per_ip))]), [])])


def _jwt_variants(alg, rotate):
    """no filter / native jwt_authn / meshwall.jwt, same inline JWKS, same provider semantics
    (issuer, audience, sub → x-user-id, token removed), both with a 1,000-entry token cache.
    rotate=False: one token on every request (the cache path). rotate=True: 4,000 distinct tokens
    in turn, more than either cache holds, so every request pays a signature verification."""
    from jwt_tokens import Keyring, claims  # tests/ is on sys.path

    keys = Keyring(prefix="bench-")
    jwks = keys.jwks(with_hmac=False)
    iss, aud = "https://issuer.bench.example", "bench"
    count = 4000 if rotate else 1
    tokens = [keys.sign(alg, claims(iss, aud=aud, sub=f"user-{i}", lifetime=7200)) for i in range(count)]
    native = {"name": "envoy.filters.http.jwt_authn", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
        "providers": {"bench": {
            "issuer": iss, "audiences": [aud],
            "local_jwks": {"inline_string": json.dumps(jwks)},
            "claim_to_headers": [{"header_name": "x-user-id", "claim_name": "sub"}],
            "jwt_cache_config": {"jwt_cache_size": 1000}}},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "bench"}}]}}
    ours = {"providers": {"bench": {
                "issuer": iss, "audiences": [aud], "local_jwks": {"inline_jwks": jwks},
                "claim_to_headers": [{"header_name": "x-user-id", "claim_name": "sub"}]}},
            "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "bench"}}],
            "jwt_cache_size": 1000}
    if rotate:
        table = ",\n".join(f'  "{t}"' for t in tokens)
        load = {"lua": ("local tokens = {\n" + table + "\n}\nlocal i = 0\n"
                        "request = function()\n  i = i % #tokens + 1\n"
                        '  return wrk.format("GET", "/bench", {["Authorization"] = "Bearer " .. tokens[i]})\nend\n')}
        headers = []
    else:
        load = {}
        headers = [f"Authorization: Bearer {tokens[0]}"]
    return [("no filter", front([]), headers, load),
            (f"native jwt_authn {alg}", front([native]), headers, load),
            (f"meshwall.jwt {alg}", front([wasm_filter("jwt", json.dumps(ours))]), headers, load)]


def scenario_jwt_cached():
    return ("JWT check, the same ES256 token on every request (verified-token cache)", _jwt_variants("ES256", False))


def scenario_jwt_es256():
    return ("JWT verification, 4,000 distinct ES256 tokens in turn (every request misses the cache)",
            _jwt_variants("ES256", True))


def scenario_jwt_rs256():
    return ("JWT verification, 4,000 distinct RS256 tokens in turn (every request misses the cache)",
            _jwt_variants("RS256", True))


SCENARIOS = {"headers": scenario_headers, "jwt-cached": scenario_jwt_cached, "jwt-es256": scenario_jwt_es256,
             "jwt-rs256": scenario_jwt_rs256, "ratelimit": scenario_ratelimit, "validate": scenario_validate}


def backend_envoy():
    # Direct response with leaky headers, served by its own Envoy.
    route = {"match": {"prefix": "/"},
             "direct_response": {"status": 200, "body": {"inline_string": '{"ok":true}'}},
             "response_headers_to_add": [{"header": {"key": k, "value": "x"}} for k in LEAKY]}
    return harness.Envoy(bootstrap([listener("backend", [], [route])]), concurrency=1)


def wrk(port, seconds, connections, headers, method=None, body=None, path="/bench", lua=None):
    """One wrk run. `lua`: a whole wrk Lua script (e.g. a `request` function rotating tokens)."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for h in headers:
        cmd += ["-H", h]
    script = None
    if lua is not None:
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
            f.write(lua)
            script = f.name
        cmd += ["-s", script]
    elif method or body is not None:  # wrk sets a method and body only from a Lua script
        def lua(text):  # a Lua string literal: printable ASCII as is, every other byte as \ddd
            return '"' + "".join(chr(b) if 32 <= b < 127 and b not in (34, 92) else f"\\{b:03d}"
                                 for b in text.encode()) + '"'

        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
            f.write(f"wrk.method = {lua(method or 'GET')}\n")
            if body is not None:
                f.write(f"wrk.body = {lua(body)}\n")
            script = f.name
        cmd += ["-s", script]
    cmd.append(f"http://127.0.0.1:{port}{path}")
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    finally:
        if script:
            os.unlink(script)
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
            for label, cfg, headers, *req in variants:  # optional 4th: wrk(method=, body=, path=)
                envoys.append((label, harness.Envoy(cfg, concurrency=1, upstreams={"backend": be.port}).start(),
                               headers, req[0] if req else {}))
            results = {label: [] for label, _, _, _ in envoys}
            for _ in range(rounds):
                for label, e, headers, req in envoys:
                    wrk(e.port, 1, connections, headers, **req)  # warm-up
                    results[label].append(wrk(e.port, seconds, connections, headers, **req))
        finally:
            for _, e, _, _ in envoys:
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
