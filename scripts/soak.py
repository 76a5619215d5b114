"""Soak: the full chain under hostile traffic at saturation for a fixed time (`make soak`; not part of
`make test`). SOAK.md records the runs.

The real Envoy (`--concurrency 2`) runs envoy/demo.yaml (the seven modules; `--config suite`: the
same chain as the suite module) with every route answered by Envoy itself (direct response), so
every 5xx is Envoy's or a filter's, never an upstream's. Load-generator processes send the request
mix of tests/hostile_mix.py (valid, invalid and attack tokens, API keys, rate-limited logins, valid
and invalid bodies, hostile paths and headers, garbage) over keep-alive connections from thousands
of 127.0.0.0/8 addresses, as fast as Envoy answers. Every 10 s the script reads Envoy's RSS and CPU
time (/proc), `server.memory_allocated` and the Wasm VM stats. At the end it prints, as Markdown:
totals per status, 5xx, Wasm VM failures and restarts (stats and log), RSS at start/middle/end,
p50/p99 latency of the first and the last minute, req/s and Envoy CPU per request.

Usage: .venv/bin/python scripts/soak.py [--seconds 600] [--config demo|suite] [--clients 2]
       [--connections 4] [--json out.json]      (SOAK_SECONDS sets the default of --seconds)
Load goes to 127.0.0.1 only and stops after --seconds.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import harness  # noqa: E402
from hostile_mix import HOT_IP, HOT_KINDS, Client, Mix, cpu_seconds, jwks_server, rss_kib  # noqa: E402
from jwt_tokens import Keyring  # noqa: E402

WINDOW = 60.0          # latency percentiles per window of this many seconds
SAMPLE_EVERY = 10.0
MAX_SAMPLES = 20_000   # latency samples kept per window and process (reservoir)


def load_process(idx: int, port: int, keys: Keyring, deadline: float, t0: float, connections: int, out):
    """One load-generator process (forked: it inherits the signing keys)."""
    import random
    lock = threading.Lock()
    statuses, kinds, windows = {}, {}, {}
    rng = random.Random(idx)

    def worker(i: int):
        mix = Mix(idx * 1000 + i, keys)
        c, hot = Client(port), Client(port, HOT_IP)
        j = 0
        while time.monotonic() < deadline:
            if j % 20 == 0:
                k = rng.randrange(60_000)
                c.move_to(f"127.{1 + k // 62_500}.{(k // 250) % 250}.{k % 250 + 1}")
            j += 1
            kind, raw = mix.next()
            status, dt = (hot if kind in HOT_KINDS else c).send(raw)
            w = int((time.monotonic() - t0) // WINDOW)
            with lock:
                statuses[status] = statuses.get(status, 0) + 1
                ks = kinds.setdefault(kind, {})
                ks[status] = ks.get(status, 0) + 1
                win = windows.setdefault(w, [0, []])
                win[0] += 1
                if len(win[1]) < MAX_SAMPLES:
                    win[1].append(dt)
                elif rng.random() < MAX_SAMPLES / win[0]:
                    win[1][rng.randrange(MAX_SAMPLES)] = dt
        c.close()
        hot.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put({"statuses": statuses, "kinds": kinds, "windows": {w: v[1] for w, v in windows.items()}})


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] if xs else float("nan")


def wasm_stats(st: dict) -> dict:
    keep = ("wasm.envoy.wasm.runtime.v8.created", "wasm.envoy.wasm.runtime.v8.active")
    out = {k: st.get(k, 0) for k in keep}
    out["vm_reload"] = sum(v for k, v in st.items() if k.startswith("wasm.") and ".vm_reload" in k)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", "600")))
    ap.add_argument("--config", choices=["demo", "suite"], default="demo")
    ap.add_argument("--clients", type=int, default=2, help="load-generator processes")
    ap.add_argument("--connections", type=int, default=4, help="connections (threads) per process")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()

    keys = Keyring(prefix="soak-")
    ctx = mp.get_context("fork")
    with jwks_server(keys) as idp:
        cfg = harness.direct_response(harness.load_config(args.config))
        e = harness.Envoy(cfg, upstreams={"jwks": idp.port}, concurrency=2, log_level="warning").start()
        try:
            pid = e.proc.pid
            # Requests before the first JWKS fetch are refused (401, keys unavailable): start the
            # load once the keys are in.
            until = time.monotonic() + 30
            while e.stat("meshwall.jwt.jwks_fetch_ok") < 1 and time.monotonic() < until:
                time.sleep(0.1)
            t0 = time.monotonic()
            deadline = t0 + args.seconds
            out = ctx.Queue()
            procs = [ctx.Process(target=load_process, args=(i, e.port, keys, deadline, t0, args.connections, out))
                     for i in range(args.clients)]
            for p in procs:
                p.start()
            samples = []
            while time.monotonic() < deadline:
                st = e.stats()
                samples.append({"t": round(time.monotonic() - t0, 1), "rss_kib": rss_kib(pid),
                                "cpu_s": cpu_seconds(pid), "allocated": st.get("server.memory_allocated", 0),
                                "rq_total": st.get("http.ingress.downstream_rq_total", 0),
                                "rq_5xx": st.get("http.ingress.downstream_rq_5xx", 0), **wasm_stats(st)})
                print(f"t={samples[-1]['t']:6.0f}s rss={samples[-1]['rss_kib'] // 1024} MiB "
                      f"requests={samples[-1]['rq_total']} 5xx={samples[-1]['rq_5xx']}", flush=True)
                time.sleep(min(SAMPLE_EVERY, max(0.0, deadline - time.monotonic())))
            results = [out.get(timeout=120) for _ in procs]
            for p in procs:
                p.join(timeout=30)
            st = e.stats()
            final = {"t": round(time.monotonic() - t0, 1), "rss_kib": rss_kib(pid), "cpu_s": cpu_seconds(pid),
                     "allocated": st.get("server.memory_allocated", 0),
                     "rq_total": st.get("http.ingress.downstream_rq_total", 0),
                     "rq_5xx": st.get("http.ingress.downstream_rq_5xx", 0), **wasm_stats(st)}
            log = e.log_text()
        finally:
            e.stop()

    statuses, kinds, windows = {}, {}, {}
    for r in results:
        for s, n in r["statuses"].items():
            statuses[s] = statuses.get(s, 0) + n
        for k, d in r["kinds"].items():
            for s, n in d.items():
                kinds.setdefault(k, {})[s] = kinds.setdefault(k, {}).get(s, 0) + n
        for w, xs in r["windows"].items():
            windows.setdefault(w, []).extend(xs)
    total = sum(statuses.values())
    vm_errors = [ln for ln in log.splitlines() if "wasm_vm.cc" in ln or "Uncaught" in ln or "failed to load" in ln]
    full = [w for w in sorted(windows) if (w + 1) * WINDOW <= args.seconds + 1] or sorted(windows)
    first, last = full[0], full[-1]
    warm = next((s for s in samples if s["t"] >= 30), samples[0])
    mid = min(samples, key=lambda s: abs(s["t"] - args.seconds / 2))
    fig = {
        "config": args.config, "seconds": args.seconds, "requests": total, "req_per_s": round(total / args.seconds),
        "statuses": dict(sorted(statuses.items())), "envoy_5xx": final["rq_5xx"],
        "client_5xx": sum(n for s, n in statuses.items() if 500 <= s < 600),
        "no_answer": statuses.get(0, 0),
        "vms_created": [samples[0]["wasm.envoy.wasm.runtime.v8.created"], final["wasm.envoy.wasm.runtime.v8.created"]],
        "vms_active": [samples[0]["wasm.envoy.wasm.runtime.v8.active"], final["wasm.envoy.wasm.runtime.v8.active"]],
        "vm_reloads": final["vm_reload"], "vm_error_log_lines": len(vm_errors),
        "rss_mib": {"start(30s)": round(warm["rss_kib"] / 1024, 1), "middle": round(mid["rss_kib"] / 1024, 1),
                    "end": round(final["rss_kib"] / 1024, 1)},
        "allocated_mib": {"start(30s)": round(warm["allocated"] / 2**20, 1), "middle": round(mid["allocated"] / 2**20, 1),
                          "end": round(final["allocated"] / 2**20, 1)},
        "latency_ms": {"first minute": {"p50": round(1000 * pct(windows[first], 50), 2),
                                         "p99": round(1000 * pct(windows[first], 99), 2)},
                       "last minute": {"p50": round(1000 * pct(windows[last], 50), 2),
                                        "p99": round(1000 * pct(windows[last], 99), 2)}},
        "envoy_cpu_us_per_request": round(1e6 * (final["cpu_s"] - samples[0]["cpu_s"]) / max(1, final["rq_total"] - samples[0]["rq_total"]), 1),
        "kinds": {k: dict(sorted(v.items())) for k, v in sorted(kinds.items())},
        "rss_series_mib": [(s["t"], round(s["rss_kib"] / 1024, 1)) for s in samples[:: max(1, len(samples) // 12)]],
    }
    if args.json:
        Path(args.json).write_text(json.dumps(fig, indent=1))
    print(f"\n## Soak: {args.config}, {args.seconds:.0f} s, Envoy --concurrency 2, "
          f"{args.clients}×{args.connections} connections\n")
    print("| figure | value |\n|---|---|")
    for k in ("requests", "req_per_s", "statuses", "envoy_5xx", "client_5xx", "no_answer", "vms_created", "vms_active",
              "vm_reloads", "vm_error_log_lines", "rss_mib", "allocated_mib", "latency_ms", "envoy_cpu_us_per_request"):
        print(f"| {k} | {json.dumps(fig[k])} |")
    print("\nper kind (status: count):")
    for k, v in fig["kinds"].items():
        print(f"- {k}: {v}")
    print("\nRSS (s, MiB):", fig["rss_series_mib"])
    for ln in vm_errors[:5]:
        print("VM error:", ln)
    ok = fig["envoy_5xx"] == 0 and fig["client_5xx"] == 0 and fig["vm_reloads"] == 0 and not vm_errors \
        and fig["vms_created"][0] == fig["vms_created"][1]
    print("\nresult:", "OK (no 5xx, no VM failure)" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
