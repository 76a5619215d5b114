"""Memory benchmark of the ratelimit filter (part of `make bench`, not a test).

Sends N requests (default 1,000,000), each with a distinct key, through a real Envoy running the
ratelimit filter keyed on a request header, and reports Envoy's resident memory at checkpoints
together with the shared-data footprint of the bucket table. The goal: memory grows until the
table is full and then stays flat, bounded by the configured table (shards × slots).

Load goes to 127.0.0.1 only, over a few keep-alive connections (raw sockets); Envoy answers itself
(direct response), so no upstream is involved.

Usage: .venv/bin/python scripts/bench_ratelimit_memory.py [--keys N] [--shards N] [--slots N]
       [--connections N] [--concurrency N]
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import harness  # noqa: E402

PLUGIN = "meshwall.ratelimit"
# Envoy does not serve pipelined HTTP/1.1 requests reliably (it answers a couple, then closes):
# one request in flight per connection.
BATCH = 1


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1




class Pipeline:
    """One keep-alive connection (raw socket: far cheaper than http.client at a million requests)."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.buf = b""

    def _read_response(self) -> int:
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("envoy closed the connection")
            self.buf += chunk
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(rest) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("envoy closed the connection")
            rest += chunk
        self.buf = rest[length:]
        return status

    def send_keys(self, keys: range, statuses: dict) -> None:
        for start in range(keys.start, keys.stop, BATCH):
            chunk = range(start, min(start + BATCH, keys.stop))
            req = b"".join(b"GET / HTTP/1.1\r\nHost: bench\r\nx-client-key: k%d\r\n\r\n" % k for k in chunk)
            self.sock.sendall(req)
            for _ in chunk:
                s = self._read_response()
                statuses[s] = statuses.get(s, 0) + 1

    def close(self) -> None:
        self.sock.close()


def send_range(port: int, lo: int, hi: int, connections: int) -> dict:
    total: dict = {}
    lock = threading.Lock()
    bounds = [lo + (hi - lo) * i // connections for i in range(connections + 1)]

    def run(a: int, b: int) -> None:
        local: dict = {}
        p = Pipeline(port)
        try:
            p.send_keys(range(a, b), local)
        finally:
            p.close()
            with lock:
                for k, v in local.items():
                    total[k] = total.get(k, 0) + v

    threads = [threading.Thread(target=run, args=(bounds[i], bounds[i + 1])) for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--shards", type=int, default=1024)
    ap.add_argument("--slots", type=int, default=16)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--concurrency", type=int, default=2)
    args = ap.parse_args()

    plugin = {
        "rules": [{"name": "per-key", "key": [{"request_headers": {"header_name": "x-client-key"}}],
                   "on_missing_key": "skip",
                   "token_bucket": {"max_tokens": 10, "tokens_per_fill": 10, "fill_interval": "60s"}}],
        "table": {"shards": args.shards, "slots_per_shard": args.slots},
    }
    cfg = harness.direct_response(harness.load_config("ratelimit"))
    harness.set_plugin_config(cfg, PLUGIN, plugin)
    checkpoints = sorted({c for c in (0, 10_000, 50_000, 100_000, 250_000, 500_000, args.keys) if c <= args.keys})
    rows = []
    with harness.Envoy(cfg, concurrency=args.concurrency) as e:
        pid = e.proc.pid
        # Warm up both code paths (allowed, new slot) with a handful of requests first.
        send_range(e.port, -100, 0, 1)
        started = time.monotonic()
        done = 0
        statuses: dict = {}
        for c in checkpoints:
            if c > done:
                for k, v in send_range(e.port, done, c, args.connections).items():
                    statuses[k] = statuses.get(k, 0) + v
                done = c
            s = e.stats()
            get = lambda name: sum(v for k, v in s.items() if k.endswith(f"meshwall.ratelimit.{name}"))  # noqa: E731
            rows.append({"keys_sent": c, "rss_kib": rss_kib(pid),
                         "evictions": get("table_evictions"), "reclaims": get("table_reclaims"),
                         "allowed": get("allowed.rule.per-key"), "cas_retries": get("table_cas_retries"),
                         "seconds": round(time.monotonic() - started, 1)})
            print(json.dumps(rows[-1]), flush=True)
        table_bytes = e.stat("meshwall.ratelimit.table_bytes")
    first, last = rows[0], rows[-1]
    full_at = next((r for r in rows if r["keys_sent"] >= args.shards * args.slots), last)
    summary = {
        "keys": args.keys,
        "statuses": statuses,
        "table": {"shards": args.shards, "slots_per_shard": args.slots,
                  "shared_data_keys": args.shards + 1, "shared_data_bytes": table_bytes},
        "rss_kib_before": first["rss_kib"], "rss_kib_after": last["rss_kib"],
        "rss_growth_kib": last["rss_kib"] - first["rss_kib"],
        "rss_growth_after_table_full_kib": last["rss_kib"] - full_at["rss_kib"],
        "requests_per_second": round(args.keys / max(last["seconds"], 0.001)),
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
