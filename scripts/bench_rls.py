#!/usr/bin/env python3
"""meshwall-rls decisions per second per core, against redis-benchmark running the same script.

Both sides run the same check-and-take (rls/src/take.lua, one token bucket per key, 1000 keys,
every call admitted and written):
  * meshwall-rls: the release server (1 tokio worker) driven by meshwall-rls-load (gRPC,
    --concurrency streams over --connections HTTP/2 connections);
  * redis-benchmark: EVALSHA of the same script straight into Redis (-c 50, no pipelining).
"Per core" = decisions / CPU seconds the process used (from /proc), so the two are comparable on
a machine where the load client, the server and Redis share cores. Everything on 127.0.0.1,
bounded in time; every process is started here, with its own temp dir, and stopped.

  scripts/bench_rls.py [--seconds 8] [--concurrency 64] [--connections 4] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RELEASE = ROOT / "target" / "release"
TICK = os.sysconf("SC_CLK_TCK")
LIMITS = """domain: bench
descriptors:
  - key: user
    rate_limit:
      token_bucket: {max_tokens: 1000000000, tokens_per_fill: 1000000000, fill_interval: 1s}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK     # utime + stime


def wait_port(port: int) -> None:
    for _ in range(500):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"port {port} never opened")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    for tool in ("redis-server", "redis-cli", "redis-benchmark"):
        if not shutil.which(tool):
            sys.exit(f"{tool} missing: scripts/setup installs it")
    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "meshwall-rls", "--bins"], cwd=ROOT, check=True)

    tmp = Path(tempfile.mkdtemp(prefix="meshwall-bench-rls-"))
    procs = []
    try:
        rport = free_port()
        redis = subprocess.Popen(["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
                                  "--appendonly", "no", "--dir", str(tmp)], stdout=subprocess.DEVNULL)
        procs.append(redis)
        wait_port(rport)
        (tmp / "limits.yaml").write_text(LIMITS)
        gport, mport = free_port(), free_port()
        rls = subprocess.Popen([str(RELEASE / "meshwall-rls"), "--config", str(tmp / "limits.yaml"),
                                "--grpc-addr", f"127.0.0.1:{gport}", "--metrics-addr", f"127.0.0.1:{mport}",
                                "--redis-url", f"redis://127.0.0.1:{rport}", "--workers", "1",
                                # a throughput measurement: a call delayed by the shared machine
                                # must not turn into UNAVAILABLE (the default deadline is 100ms)
                                "--redis-timeout", "2s", "--log-level", "warn"], stderr=open(tmp / "rls.log", "wb"))
        procs.append(rls)
        wait_port(gport)

        def load(seconds: float) -> dict:
            out = subprocess.run([str(RELEASE / "meshwall-rls-load"), "--target", f"127.0.0.1:{gport}",
                                  "--domain", "bench", "--key", "user", "--values", "1000",
                                  "--concurrency", str(a.concurrency), "--connections", str(a.connections),
                                  "--duration", str(seconds)], capture_output=True, text=True, check=True)
            return json.loads(out.stdout)

        load(1.0)   # warm-up: connections, script cache
        c0, r0 = cpu_seconds(rls.pid), cpu_seconds(redis.pid)
        res = load(a.seconds)
        c1, r1 = cpu_seconds(rls.pid), cpu_seconds(redis.pid)
        rls_cpu, redis_cpu_rls = c1 - c0, r1 - r0
        # Every call must be admitted; a stream cut at the end of the run may count as an error.
        if res["over_limit"] or res["errors"] > max(1, res["decisions"] // 10_000):
            raise RuntimeError(f"unexpected answers: {res}")

        # The same script, straight into Redis.
        sha = subprocess.run(["redis-cli", "-p", str(rport), "SCRIPT", "LOAD", (ROOT / "rls/src/take.lua").read_text()],
                             capture_output=True, text=True, check=True).stdout.strip()
        n = max(res["decisions"], 20_000)   # as many calls as meshwall-rls decided: a similar run time
        r0 = cpu_seconds(redis.pid)
        t0 = time.monotonic()
        bench = subprocess.run(["redis-benchmark", "-h", "127.0.0.1", "-p", str(rport), "-n", str(n), "-c", "50",
                                "-r", "1000", "-q", "EVALSHA", sha, "1", "meshwall:b:bench_user_v__rand_int__",
                                "b", "1000000000", "1000000000", "1000", "1", "1"],
                               capture_output=True, text=True, check=True)
        took = time.monotonic() - t0
        r1 = cpu_seconds(redis.pid)
        m = re.search(r"([\d.]+) requests per second", bench.stdout)
        bench_rps = float(m.group(1)) if m else n / took
        redis_cpu = r1 - r0
        result = {
            "rls_decisions_per_s": round(res["decisions_per_s"]),
            "rls_cpu_seconds": round(rls_cpu, 2),
            "rls_decisions_per_core_s": round(res["decisions"] / rls_cpu) if rls_cpu else None,
            "rls_p50_us": res["p50_us"], "rls_p99_us": res["p99_us"], "rls_errors": res["errors"],
            "redis_cpu_seconds_during_rls": round(redis_cpu_rls, 2),
            "redis_benchmark_evalsha_per_s": round(bench_rps),
            "redis_evalsha_per_core_s": round(n / redis_cpu) if redis_cpu else None,
            "concurrency": a.concurrency, "connections": a.connections, "seconds": a.seconds,
            "cores": os.cpu_count(),
        }
        if result["rls_decisions_per_core_s"] and result["redis_evalsha_per_core_s"]:
            result["ratio_per_core"] = round(result["rls_decisions_per_core_s"] / result["redis_evalsha_per_core_s"], 2)
        result["ratio_throughput"] = round(result["rls_decisions_per_s"] / result["redis_benchmark_evalsha_per_s"], 2)
        print(f"meshwall-rls     {result['rls_decisions_per_s']:>9} decisions/s  "
              f"{result['rls_decisions_per_core_s']} per core-second  p50 {res['p50_us']} µs  p99 {res['p99_us']} µs")
        print(f"redis-benchmark  {result['redis_benchmark_evalsha_per_s']:>9} EVALSHA/s    "
              f"{result['redis_evalsha_per_core_s']} per core-second (same script)")
        print(f"ratio per core {result.get('ratio_per_core')}  (goal >= 0.5),  throughput ratio {result['ratio_throughput']}")
        if a.json:
            a.json.write_text(json.dumps(result, indent=2) + "\n")
        return 0
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
