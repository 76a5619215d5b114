"""Bench only: does the jwt module's pure-Rust path get faster while Envoy runs (a V8 tier-up)?

Starts the real Envoy (.venv/bin/envoy, --concurrency 1) with meshwall.jwt `verifier: wasm` and
the rotating tokens of `make bench` (scripts/bench_scenarios.jwt_setup: 4,000 distinct tokens,
each request verifies a signature), then measures Envoy's CPU time per request in consecutive
1-second wrk windows from the first request on. Also: the first requests' latency (a lazily
compiled function is compiled at its first call), and the start-up cost: wall time from
starting Envoy to the listener accepting, and Envoy's CPU time by then, with the jwt module and
with no filter (start-ups interleaved).

With `--compare DIR` instead: this build's jwt module against the one in DIR (e.g. built with
other dependency features), `verifier: wasm`, one Envoy each, measured in interleaved rounds
(a 1 s warm-up window, then a measured one) for each of --algs; CPU µs per request and the
ratio DIR/this build per round.

Every window goes on with the token after the last one sent, so every request misses the
1,000-entry verified-token LRU (a window restarting at the first token would hit what the
window before cached).

Usage: .venv/bin/python scripts/jwt_v8_profile/envoy_windows.py [--alg ES256] [--windows 12]
           [--starts 3] [--connections 8]
       .venv/bin/python scripts/jwt_v8_profile/envoy_windows.py --compare DIR
           [--algs RS256,PS256,ES256,EdDSA] [--rounds 3] [--seconds 3]
Modules from MESHWALL_WASM_DIR (default target/wasm32-wasip1/release; `make build` first).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import harness  # noqa: E402
import bench_scenarios as sc  # noqa: E402
from bench import cpu_seconds, wrk  # noqa: E402


def jwt_variant(alg: str, module_dir: Path = None):
    _, ours, load = sc.jwt_setup(alg, True)
    filters = [sc.wasm_filter("jwt", dict(ours, verifier="wasm"))]
    if module_dir is not None:
        here, there = (json.dumps(str(d))[1:-1] + "/" for d in (harness.MODULE_DIR, module_dir))
        filters = json.loads(json.dumps(filters).replace(here, there))
    return filters, load


class Rotation:
    """wrk loads that go on through the token list where the last one stopped."""

    def __init__(self, load):
        self.lua = load.lua
        self.count = len([line for line in load.lua.splitlines() if line.startswith('  "')])
        self.done = 0

    def window(self, port, seconds, connections, pid):
        w = sc.Load(lua=self.lua.replace("local i = 0", f"local i = {self.done % self.count}"))
        run = wrk(port, seconds, connections, w, pid)
        self.done += run.requests
        return run


def compare(args) -> None:
    other = Path(args.compare).resolve()
    print(f"this build ({harness.MODULE_DIR}) vs {other}: meshwall.jwt verifier: wasm, rotating tokens, "
          f"{args.rounds} interleaved rounds of a 1 s warm-up + {args.seconds} s, wrk -t1 -c{args.connections}")
    print(f"  {'alg':<7}{'build':<10}{'req/s':>8}{'CPU µs/req':>12}{'ratio (min–max)':>22}")
    for alg in args.algs.split(","):
        envoys = []
        try:
            for label, d in (("this", None), ("other", other)):
                filters, load = jwt_variant(alg, d)
                e, _, _ = start(filters)
                envoys.append((label, e, Rotation(load)))
            runs = {label: [] for label, _, _ in envoys}
            for _ in range(args.rounds):
                for label, e, rot in envoys:
                    rot.window(e.port, 1, args.connections, e.proc.pid)
                    runs[label].append(rot.window(e.port, args.seconds, args.connections, e.proc.pid))
        finally:
            for _, e, _ in envoys:
                e.stop()
        for label in runs:
            ratios = [x.cpu_us_per_req / y.cpu_us_per_req for x, y in zip(runs[label], runs["this"])]
            bad = sum(x.non2xx for x in runs[label])
            print(f"  {alg:<7}{label:<10}{statistics.median(x.rps for x in runs[label]):>8.0f}"
                  f"{statistics.median(x.cpu_us_per_req for x in runs[label]):>12.0f}"
                  f"{statistics.median(ratios):>10.2f}× ({min(ratios):.2f}–{max(ratios):.2f})"
                  + (f"  non2xx {bad}" if bad else ""))


def start(filters) -> tuple:
    """A started front Envoy (direct answers), wall seconds to ready, its CPU seconds by then."""
    e = harness.Envoy(sc.front(filters, direct=True), concurrency=1, upstreams={"backend": 1},
                      startup_timeout=300)
    t0 = time.monotonic()
    e.start()
    wall = time.monotonic() - t0
    return e, wall, cpu_seconds(e.proc.pid)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--alg", default="ES256")
    ap.add_argument("--windows", type=int, default=12)
    ap.add_argument("--starts", type=int, default=3)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--compare", default="")
    ap.add_argument("--algs", default="RS256,PS256,ES256,EdDSA")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=3)
    args = ap.parse_args()
    if args.compare:
        compare(args)
        return
    filters, load = jwt_variant(args.alg)

    # -- start-up: no filter vs the jwt module, interleaved ---------------------------------
    starts = {"no filter": [], f"meshwall.jwt {args.alg} (wasm)": []}
    for _ in range(args.starts):
        for label, f in (("no filter", []), (f"meshwall.jwt {args.alg} (wasm)", filters)):
            e, wall, cpu = start(f)
            e.stop()
            starts[label].append((wall, cpu))
    print(f"start-up ({args.starts} starts each, interleaved): wall s to ready / Envoy CPU s by then")
    for label, xs in starts.items():
        print(f"  {label:<28} wall {statistics.median(x[0] for x in xs):.2f} s "
              f"({min(x[0] for x in xs):.2f}–{max(x[0] for x in xs):.2f}), "
              f"CPU {statistics.median(x[1] for x in xs):.2f} s "
              f"({min(x[1] for x in xs):.2f}–{max(x[1] for x in xs):.2f})")

    # -- windows from the first request on ---------------------------------------------------
    e, wall, _ = start(filters)
    try:
        # The first requests one by one: each a new token (a signature check), wall ms.
        tokens = [line.split('"')[1] for line in load.lua.splitlines() if line.startswith('  "')]
        firsts = []
        for tok in tokens[:5]:
            t0 = time.monotonic()
            r = e.request("GET", "/bench", headers={"Authorization": f"Bearer {tok}"})
            firsts.append((time.monotonic() - t0) * 1e3)
            if r.status != 200:
                raise RuntimeError(f"status {r.status}: {e.log_tail(20)}")
        print(f"first 5 requests after ready (new connection each, ms): "
              + ", ".join(f"{x:.1f}" for x in firsts))
        print(f"consecutive 1 s windows, wrk -t1 -c{args.connections}, {args.alg} rotating tokens, "
              f"verifier: wasm")
        print(f"  {'window':>6}{'req/s':>9}{'CPU µs/req':>12}{'p50 ms':>8}{'non2xx':>8}")
        cpus = []
        rot = Rotation(load)
        rot.done = len(firsts)
        for w in range(args.windows):
            run = rot.window(e.port, 1, args.connections, e.proc.pid)
            cpus.append(run.cpu_us_per_req)
            print(f"  {w + 1:>6}{run.rps:>9.0f}{run.cpu_us_per_req:>12.0f}{run.p50_ms:>8.2f}{run.non2xx:>8}")
        half = len(cpus) // 2
        print(f"  median CPU µs/req: windows 1–{half} {statistics.median(cpus[:half]):.0f}, "
              f"windows {half + 1}–{len(cpus)} {statistics.median(cpus[half:]):.0f}")
    finally:
        e.stop()


if __name__ == "__main__":
    main()
