"""Config time of a real-world OpenAPI description (part of `make bench`, not a test).

Starts Envoy with the validate filter holding GitHub's REST API description (~13 MB, from a
pinned npm package fetched at bench time; needs npm) and with an empty spec, five times each,
interleaved, and reports the time from exec to the first reply answered by the filter and the
resident memory then.

Usage: .venv/bin/python scripts/bench_validate_config.py
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
from bench_scenarios import front, wasm_filter  # noqa: E402


def main():
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



if __name__ == "__main__":
    main()
