"""Harness for meshwall-rls: real redis-server and meshwall-rls processes on free loopback ports,
each with its own temp dir (never system services), stopped at the end; Envoy configs derived
from envoy/rls/envoy.yaml with the replica and backend ports rewritten.
"""

from __future__ import annotations

import atexit
import copy
import json
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
RELEASE = ROOT / "target" / "release"
LIVE: set = set()
_BUILT: set = set()


def build(release: bool = False) -> Path:
    """Builds the server and its test clients once per session (a no-op when up to date), the
    release build for benchmarks; returns the directory of the binaries."""
    if release not in _BUILT:
        subprocess.run(["cargo", "build", "--quiet", *(["--release"] if release else []), "-p", "meshwall-rls",
                        "--bins"], cwd=ROOT, check=True)
        _BUILT.add(release)
    return RELEASE if release else TARGET


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
    """One meshwall-rls replica. `limits`: YAML text (written to its temp dir); `extra` flags
    come after the defaults (a repeated flag: the last wins); `release`: the release build."""

    def __init__(self, limits: str, redis_url: str, *extra: str, release: bool = False):
        binaries = build(release)
        self.dir = Path(tempfile.mkdtemp(prefix="meshwall-rls-"))
        self.config = self.dir / "limits.yaml"
        self.config.write_text(limits)
        self.port = harness.free_port()
        self.metrics_port = harness.free_port()
        self.args = [str(binaries / "meshwall-rls"), "--config", str(self.config),
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
    """envoy/rls/envoy.yaml with the meshwall_rls cluster pointing at `rls_ports`; `timeout` sets
    the filter's timeout and the retries' per-try timeout."""
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
                    # Envoy's per-try timeout of these calls: kept at the filter's (docs/rls.md).
                    retry = tc["rate_limit_service"]["grpc_service"].get("retry_policy")
                    if retry:
                        retry["retry_back_off"]["max_interval"] = timeout
                if not status_on_error:
                    tc.pop("status_on_error", None)
    return cfg


@atexit.register
def _kill_leftovers() -> None:
    for p in list(LIVE):
        p.stop()


# -- the wasm filter's global rules ----------------------------------------------------------

WASM_GLOBAL = "ratelimit-global"     # envoy/ratelimit-global.yaml
WASM_PLUGIN = "meshwall.ratelimit"


def wasm_envoy_config(rls_ports: list, *, plugin: Optional[dict] = None, health_checks: bool = True,
                      **service) -> dict:
    """envoy/ratelimit-global.yaml with the meshwall_rls cluster pointing at `rls_ports`;
    `plugin` replaces the filter's configuration, `service` sets fields of its
    `rate_limit_service` (failure_mode=, timeout=, ...)."""
    cfg = harness.load_config(WASM_GLOBAL)
    for c in cfg["static_resources"]["clusters"]:
        if c["name"] == "meshwall_rls":
            c["load_assignment"]["endpoints"] = [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": p}}}}
                for p in rls_ports]}]
            if not health_checks:
                c.pop("health_checks", None)
    conf = copy.deepcopy(plugin) if plugin is not None else harness.plugin_config(cfg, WASM_PLUGIN)
    conf.setdefault("rate_limit_service", {}).update(service)
    harness.set_plugin_config(cfg, WASM_PLUGIN, conf)
    return cfg


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def pb_bytes(field: int, value: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint(field << 3 | 2) + _varint(len(value)) + value


def pb_varint(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value)


def rls_response(code: int, statuses: int = 0, response_headers=(), request_headers=(), extra: bytes = b"") -> bytes:
    """A RateLimitResponse: overall_code, `statuses` DescriptorStatus{code} with the same code,
    the header lists (HeaderValue{key, value}), then `extra` raw bytes."""
    hv = lambda k, v: pb_bytes(1, k.encode()) + pb_bytes(2, v.encode())  # noqa: E731
    return (pb_varint(1, code) + b"".join(pb_bytes(2, pb_varint(1, code)) for _ in range(statuses))
            + b"".join(pb_bytes(3, hv(k, v)) for k, v in response_headers)
            + b"".join(pb_bytes(4, hv(k, v)) for k, v in request_headers) + extra)


def grpc_frame(message: bytes, declared: Optional[int] = None) -> bytes:
    return b"\x00" + (len(message) if declared is None else declared).to_bytes(4, "big") + message


class FakeRls:
    """A gRPC-over-HTTP/2 server (the `h2` package) answering ShouldRateLimit in the ways a
    broken or hostile rate limit service could. The answer is chosen by a marker in the request
    message: a descriptor value containing `mode-<name>` (see MODES); anything else is OK."""

    # name -> (response headers, gRPC body or None, trailers or None); None headers: no answer.
    MODES = {
        "ok": ([(":status", "200"), ("content-type", "application/grpc")], grpc_frame(rls_response(1)),
               [("grpc-status", "0")]),
        "over": ([(":status", "200"), ("content-type", "application/grpc")],
                 grpc_frame(rls_response(2, 1)), [("grpc-status", "0")]),
        "garbage": ([(":status", "200"), ("content-type", "application/grpc")], grpc_frame(b"\xff\xff\xff"),
                    [("grpc-status", "0")]),
        "mismatch": ([(":status", "200"), ("content-type", "application/grpc")],
                     grpc_frame(rls_response(1, 3)), [("grpc-status", "0")]),
        "unknown": ([(":status", "200"), ("content-type", "application/grpc")], grpc_frame(b""),
                    [("grpc-status", "0")]),
        "internal": ([(":status", "200"), ("content-type", "application/grpc"), ("grpc-status", "13"),
                      ("grpc-message", "boom")], None, None),
        "http503": ([(":status", "503")], None, None),
        "truncated": ([(":status", "200"), ("content-type", "application/grpc")],
                      grpc_frame(b"\x08\x01", declared=100), [("grpc-status", "0")]),
        "huge": ([(":status", "200"), ("content-type", "application/grpc")],
                 grpc_frame(rls_response(1, extra=pb_bytes(5, b"x" * 70_000))), [("grpc-status", "0")]),
        "headers": ([(":status", "200"), ("content-type", "application/grpc")],
                    grpc_frame(rls_response(1, response_headers=[("x-ok", "1"), ("x-bad", "a\r\nx-injected: 1"),
                                                                 ("bad name", "x"), ("content-length", "7")],
                                            request_headers=[("x-user-tier", "gold"), ("host", "evil")])),
                    [("grpc-status", "0")]),
        "slow": (None, None, None),
    }

    def __init__(self):
        self.port = harness.free_port()
        self.requests = 0
        self.errors: list = []     # what ended a connection early (for failure messages)
        self._sock: Optional[socket.socket] = None
        self._stop = False

    def start(self) -> "FakeRls":
        import threading
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", self.port))
        self._sock.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop = True
        if self._sock:
            self._sock.close()

    def _accept(self) -> None:
        import threading
        while not self._stop:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _mode(self, message: bytes) -> str:
        for name in self.MODES:
            if f"mode-{name}".encode() in message:
                return name
        return "ok"

    def _serve(self, sock: socket.socket) -> None:
        import h2.config
        import h2.connection
        import h2.events
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        conn.initiate_connection()
        bodies: dict = {}
        pending: dict = {}     # stream -> [data left, trailers]
        try:
            sock.sendall(conn.data_to_send())
            while True:
                data = sock.recv(65536)
                if not data:
                    return
                for ev in conn.receive_data(data):
                    if isinstance(ev, h2.events.RequestReceived):
                        bodies[ev.stream_id] = b""
                    elif isinstance(ev, h2.events.DataReceived):
                        bodies[ev.stream_id] = bodies.get(ev.stream_id, b"") + ev.data
                        conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    elif isinstance(ev, h2.events.StreamEnded):
                        self.requests += 1
                        headers, body, trailers = self.MODES[self._mode(bodies.pop(ev.stream_id, b""))]
                        if headers is None:
                            continue
                        conn.send_headers(ev.stream_id, headers, end_stream=body is None and trailers is None)
                        if body is not None or trailers is not None:
                            pending[ev.stream_id] = [body or b"", trailers]
                    elif isinstance(ev, h2.events.StreamReset):
                        pending.pop(ev.stream_id, None)
                self._flush(conn, pending)
                sock.sendall(conn.data_to_send())
        except Exception as e:   # noqa: BLE001 (the peer went away, or h2 refused its frames)
            self.errors.append(repr(e))
            return
        finally:
            sock.close()

    @staticmethod
    def _flush(conn, pending: dict) -> None:
        """Sends what flow control allows of each pending answer; its trailers once it is all out.
        A stream Envoy closed meanwhile is dropped (the connection goes on)."""
        import h2.exceptions
        for sid in list(pending):
            data, trailers = pending[sid]
            try:
                while data:
                    n = min(len(data), conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
                    if n <= 0:
                        break
                    conn.send_data(sid, data[:n])
                    data = data[n:]
                pending[sid][0] = data
                if not data:
                    if trailers is not None:
                        conn.send_headers(sid, trailers, end_stream=True)
                    else:
                        conn.end_stream(sid)
                    del pending[sid]
            except h2.exceptions.StreamClosedError:
                pending.pop(sid, None)
