"""Load helpers for the ratelimit tests: many parallel keep-alive connections to 127.0.0.1."""

from __future__ import annotations

import collections
import http.client
import threading
import time
from typing import Optional


class _Conn:
    """One keep-alive HTTP/1.1 connection that reconnects when Envoy closes it."""

    def __init__(self, port: int, source_ip: Optional[str] = None):
        self.port = port
        self.source_ip = source_ip
        self.conn: Optional[http.client.HTTPConnection] = None

    def request(self, method: str, path: str, headers: dict) -> int:
        for attempt in range(3):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(
                    "127.0.0.1", self.port, timeout=30,
                    source_address=(self.source_ip, 0) if self.source_ip else None)
            try:
                self.conn.request(method, path, headers=headers)
                r = self.conn.getresponse()
                r.read()
                if r.getheader("connection", "").lower() == "close":
                    self.close()
                return r.status
            except (http.client.HTTPException, OSError):
                self.close()
                if attempt == 2:
                    raise
        raise RuntimeError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def burst(port: int, connections: int, total: int, method: str = "GET", path: str = "/",
          headers: Optional[dict] = None) -> collections.Counter:
    """Sends `total` requests over `connections` parallel connections; counts the statuses."""
    counts: collections.Counter = collections.Counter()
    lock = threading.Lock()
    start = threading.Barrier(connections)
    per = [total // connections + (1 if i < total % connections else 0) for i in range(connections)]
    errors: list = []

    def run(n: int) -> None:
        c = _Conn(port)
        local: collections.Counter = collections.Counter()
        try:
            start.wait()
            for _ in range(n):
                local[c.request(method, path, dict(headers or {}))] += 1
        except Exception as e:  # reported below
            errors.append(e)
        finally:
            c.close()
            with lock:
                counts.update(local)

    threads = [threading.Thread(target=run, args=(n,)) for n in per]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return counts


def sustained(port: int, connections: int, seconds: float, method: str = "GET", path: str = "/",
              headers: Optional[dict] = None) -> tuple:
    """Keeps `connections` connections busy for `seconds`.

    Returns (status counter, elapsed) where elapsed runs from the moment the first request was
    sent to the moment the last response arrived (so the server's own span is inside it)."""
    counts: collections.Counter = collections.Counter()
    lock = threading.Lock()
    start = threading.Barrier(connections + 1)
    stop_at: list = [0.0]
    first_sent: list = []
    last_done: list = [0.0]
    errors: list = []

    def run() -> None:
        c = _Conn(port)
        local: collections.Counter = collections.Counter()
        try:
            start.wait()
            while time.monotonic() < stop_at[0]:
                sent = time.monotonic()
                with lock:
                    if not first_sent:
                        first_sent.append(sent)
                status = c.request(method, path, dict(headers or {}))
                local[status] += 1
                done = time.monotonic()
                with lock:
                    last_done[0] = max(last_done[0], done)
        except Exception as e:  # reported below
            errors.append(e)
        finally:
            c.close()
            with lock:
                counts.update(local)

    threads = [threading.Thread(target=run) for _ in range(connections)]
    for t in threads:
        t.start()
    stop_at[0] = time.monotonic() + seconds
    start.wait()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return counts, last_done[0] - first_sent[0]
