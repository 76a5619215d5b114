"""Harness for meshwall-rls: real redis-server and meshwall-rls processes on free loopback ports,
each with its own temp dir (never system services), stopped at the end; Envoy configs derived
from envoy/rls/envoy.yaml with the replica and backend ports rewritten.
"""

from __future__ import annotations

import atexit
import copy
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional

import yaml

import harness

ROOT = harness.ROOT
RLS_CONFIG = ROOT / "envoy" / "rls" / "envoy.yaml"
TARGET = ROOT / "target" / "debug"
LIVE: set = set()
_BUILT = False


def build() -> None:
    """Builds the server and its test client once per session (a no-op when up to date)."""
    global _BUILT
    if _BUILT:
        return
    subprocess.run(["cargo", "build", "--quiet", "-p", "meshwall-rls", "--bins"], cwd=ROOT, check=True)
    _BUILT = True


def redis_server_bin() -> str:
    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError("redis-server is not installed: scripts/setup installs it (Debian package redis-server)")
    return found


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


class Redis:
    def __init__(self):
        self.port = harness.free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="meshwall-redis-"))
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> "Redis":
        self.log = open(self.dir / "redis.log", "ab")
        self.proc = subprocess.Popen(
            [redis_server_bin(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.dir)],
            stdout=self.log, stderr=subprocess.STDOUT)
        LIVE.add(self)
        deadline = time.monotonic() + 10
        while self.cli("PING") != "PONG":
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)
        return self

    def cli(self, *args: str) -> str:
        r = subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True)
        return r.stdout.strip()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        LIVE.discard(self)

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"


class Rls:
    """One meshwall-rls replica. `limits`: YAML text (written to its temp dir)."""

    def __init__(self, limits: str, redis_url: str, *extra: str):
        build()
        self.dir = Path(tempfile.mkdtemp(prefix="meshwall-rls-"))
        self.config = self.dir / "limits.yaml"
        self.config.write_text(limits)
        self.port = harness.free_port()
        self.metrics_port = harness.free_port()
        self.args = [str(TARGET / "meshwall-rls"), "--config", str(self.config),
                     "--grpc-addr", f"127.0.0.1:{self.port}",
                     "--metrics-addr", f"127.0.0.1:{self.metrics_port}",
                     "--redis-url", redis_url, "--workers", "2", *extra]
        self.log_path = self.dir / "rls.log"
        self.proc: Optional[subprocess.Popen] = None

    def start(self, wait: bool = True) -> "Rls":
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args, stdout=self._log, stderr=subprocess.STDOUT)
        LIVE.add(self)
        if wait:
            wait_port(self.port)
            wait_port(self.metrics_port)
        return self

    def kill(self, sig=signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        LIVE.discard(self)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def http(self, path: str) -> tuple:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def metrics(self) -> dict:
        """Prometheus samples by their full name with labels (`name{a="b"}`)."""
        out = {}
        for line in self.http("/metrics")[1].splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def metric(self, name: str) -> float:
        return self.metrics().get(name, 0.0)


class Probe:
    """The meshwall-rls-probe test client: one request per call over one HTTP/2 connection."""

    def __init__(self, port: int):
        build()
        self.proc = subprocess.Popen([str(TARGET / "meshwall-rls-probe"), f"127.0.0.1:{port}"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ask(self, req: dict) -> dict:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("meshwall-rls-probe exited")
        return json.loads(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=10)


def envoy_config(rls_ports: list, *, failure_mode_deny: bool = True, timeout: Optional[str] = None,
                 status_on_error: bool = True) -> dict:
    """envoy/rls/envoy.yaml with the meshwall_rls cluster pointing at `rls_ports`."""
    with open(RLS_CONFIG, encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    cfg = copy.deepcopy(cfg)
    for c in cfg["static_resources"]["clusters"]:
        if c["name"] == "meshwall_rls":
            c["load_assignment"]["endpoints"] = [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": p}}}}
                for p in rls_ports]}]
    for hcm in harness.http_connection_managers(cfg):
        for f in hcm["http_filters"]:
            if f["name"] == "envoy.filters.http.ratelimit":
                tc = f["typed_config"]
                tc["failure_mode_deny"] = failure_mode_deny
                if timeout:
                    tc["timeout"] = timeout
                if not status_on_error:
                    tc.pop("status_on_error", None)
    return cfg


@atexit.register
def _kill_leftovers() -> None:
    for p in list(LIVE):
        p.stop()
