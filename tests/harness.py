"""Integration harness: the real Envoy binary, the built .wasm modules, a real echo upstream.

Configs come from the shipped examples in envoy/ (so examples and tests never drift); the harness
only rewrites ports, upstream endpoints and .wasm paths, and optionally a plugin's configuration.
"""

from __future__ import annotations

import atexit
import copy
import http.client
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Iterable, Optional

import yaml

from echo_upstream import EchoServer, echo_handler  # noqa: F401  (re-exported for tests)

ROOT = Path(__file__).resolve().parent.parent
ENVOY_BIN = Path(os.environ.get("MESHWALL_ENVOY", ROOT / ".venv" / "bin" / "envoy"))
WASM_DIR = ROOT / "target" / "wasm32-wasip1" / "release"
# MESHWALL_WASM_DIR: Envoy loads the examples' .wasm modules from another build (e.g. a snapshot
# of target/wasm32-wasip1/release while it is being rebuilt) instead of WASM_DIR.
MODULE_DIR = Path(os.environ.get("MESHWALL_WASM_DIR") or WASM_DIR)
ENVOY_DIR = ROOT / "envoy"

# Envoys alive now, and every Envoy started since the current test began (for failure logs).
LIVE: set = set()
STARTED_IN_TEST: list = []


_GIVEN_PORTS: set = set()


def free_port() -> int:
    """A port free now and never handed out before by this process (the OS may return a
    just-closed port again, and one Envoy needs several distinct ones)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _GIVEN_PORTS:
            _GIVEN_PORTS.add(port)
            return port


def load_config(name: str) -> dict:
    """Parses envoy/<name>.yaml."""
    with open(ENVOY_DIR / f"{name}.yaml", encoding="utf-8") as f:
        return yaml.safe_load(f)


def _walk(node, fn):
    if isinstance(node, dict):
        fn(node)
        for v in node.values():
            _walk(v, fn)
    elif isinstance(node, list):
        for v in node:
            _walk(v, fn)


def wasm_filters(cfg: dict) -> list:
    """The wasm PluginConfig dicts (`typed_config.config`) in a bootstrap config."""
    found = []

    def visit(d):
        tc = d.get("typed_config")
        if isinstance(tc, dict) and tc.get("@type", "").endswith("filters.http.wasm.v3.Wasm"):
            found.append(tc["config"])

    _walk(cfg, visit)
    return found


def set_plugin_config(cfg: dict, plugin_name: str, value) -> None:
    """Replaces the configuration of the wasm plugin named `plugin_name` (dict → JSON)."""
    text = value if isinstance(value, str) else json.dumps(value)
    hits = [p for p in wasm_filters(cfg) if p.get("name") == plugin_name]
    if not hits:
        raise KeyError(f"no wasm plugin named {plugin_name!r}")
    for p in hits:
        p["configuration"] = {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": text}


def direct_response(cfg: dict) -> dict:
    """Makes every virtual host answer in Envoy itself (200 "ok") instead of proxying to the
    backend: load tests then measure the filters, not the Python echo upstream."""
    def visit(d):
        if isinstance(d.get("virtual_hosts"), list):
            for vh in d["virtual_hosts"]:
                vh["routes"] = [{"match": {"prefix": "/"},
                                 "direct_response": {"status": 200, "body": {"inline_string": "ok"}}}]
    _walk(cfg, visit)
    return cfg


def plugin_config(cfg: dict, plugin_name: str) -> dict:
    """The parsed JSON configuration of the wasm plugin named `plugin_name`."""
    for p in wasm_filters(cfg):
        if p.get("name") == plugin_name:
            return json.loads(p.get("configuration", {}).get("value") or "{}")
    raise KeyError(plugin_name)


HCM_TYPE = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"

# The connection-manager settings that decide which path and header names the filters (and the
# upstream) see; every shipped example sets them explicitly (see README, Request canonicalisation).
HCM_REQUEST_SETTINGS = ("normalize_path", "merge_slashes", "path_with_escaped_slashes_action")
HCM_PROTOCOL_SETTINGS = ("headers_with_underscores_action",)   # in common_http_protocol_options


def http_connection_managers(cfg: dict) -> list:
    """The HttpConnectionManager typed_configs in a bootstrap config."""
    found = []

    def visit(d):
        tc = d.get("typed_config")
        if isinstance(tc, dict) and tc.get("@type") == HCM_TYPE:
            found.append(tc)

    _walk(cfg, visit)
    return found


def envoy_defaults(cfg: dict) -> dict:
    """Removes the path and header-name settings from every connection manager, as a user who
    leaves them at Envoy's defaults would have it (the filters must be safe there too)."""
    for hcm in http_connection_managers(cfg):
        for k in HCM_REQUEST_SETTINGS:
            hcm.pop(k, None)
        common = hcm.get("common_http_protocol_options")
        if isinstance(common, dict):
            for k in HCM_PROTOCOL_SETTINGS:
                common.pop(k, None)
            if not common:
                hcm.pop("common_http_protocol_options")
    return cfg


def downstream_http1_trailers(cfg: dict) -> dict:
    """Makes every connection manager parse HTTP/1.1 chunked trailers (Envoy drops them by
    default), so the filters see them and the tests prove what the filters do with them."""
    for hcm in http_connection_managers(cfg):
        hcm.setdefault("http_protocol_options", {})["enable_trailers"] = True
    return cfg


def upstream_protocol(cfg: dict, cluster: str, proto: str) -> dict:
    """Sets the protocol Envoy speaks to `cluster`: "h2" (prior knowledge; trailers pass), or
    "h1_trailers" (HTTP/1.1 with chunked trailers forwarded, which Envoy drops by default)."""
    opts = {"h2": {"http2_protocol_options": {}},
            "h1_trailers": {"http_protocol_options": {"enable_trailers": True}}}[proto]
    for c in cfg.get("static_resources", {}).get("clusters", []):
        if c.get("name") == cluster:
            c["typed_extension_protocol_options"] = {
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                    "explicit_http_config": opts}}
            return cfg
    raise KeyError(f"no cluster named {cluster!r}")


# MESHWALL_FORM=suite: every Envoy the tests start runs the per-policy modules of its config as
# one suite module (meshwall.wasm, one section per policy), so the same scenarios prove both
# forms. `make test` runs the integration tests once per form.
FORM = os.environ.get("MESHWALL_FORM", "modules")
SUITE_ORDER = ["headers", "access", "cors", "jwt", "apikey", "ratelimit", "validate"]


def _policy_of(f: dict) -> Optional[str]:
    """The policy a wasm http filter runs (`meshwall_<policy>.wasm`), or None."""
    tc = f.get("typed_config") or {}
    if not tc.get("@type", "").endswith("filters.http.wasm.v3.Wasm"):
        return None
    fn = tc.get("config", {}).get("vm_config", {}).get("code", {}).get("local", {}).get("filename", "")
    name = Path(fn).name
    if name.startswith("meshwall_") and name.endswith(".wasm"):
        return name[len("meshwall_"):-len(".wasm")]
    return None


def as_suite(cfg: dict) -> bool:
    """Rewrites, in place, each filter chain whose meshwall modules stand next to each other, in the
    suite's order, once each, into one suite filter carrying their configurations as sections.
    Returns whether anything was rewritten (chains the suite cannot express stay as they are)."""
    changed = False
    for hcm in http_connection_managers(cfg):
        filters = hcm.get("http_filters", [])
        idx = [i for i, f in enumerate(filters) if _policy_of(f)]
        if not idx:
            continue
        names = [_policy_of(filters[i]) for i in idx]
        contiguous = idx == list(range(idx[0], idx[-1] + 1))
        in_order = names == [n for n in SUITE_ORDER if n in names] and len(set(names)) == len(names)
        if not (contiguous and in_order):
            continue
        sections = {}
        configs = [filters[i]["typed_config"]["config"] for i in idx]
        for n, c in zip(names, configs):
            sections[n] = json.loads((c.get("configuration") or {}).get("value") or "{}")
        if "cors" in sections and any(sections.get(p, {}).get("bypass_cors_preflight") for p in ("jwt", "apikey")):
            continue  # the suite refuses the bypass beside cors
        suite = copy.deepcopy(filters[idx[0]])
        sc = suite["typed_config"]["config"]
        sc["name"] = sc["root_id"] = "meshwall.suite"
        sc["vm_config"]["vm_id"] = "meshwall.suite"
        sc["vm_config"]["code"]["local"]["filename"] = "target/wasm32-wasip1/release/meshwall.wasm"
        sc["configuration"] = {"@type": "type.googleapis.com/google.protobuf.StringValue",
                               "value": json.dumps(sections)}
        if any(c.get("failure_policy") == "FAIL_CLOSED" for c in configs):
            sc["failure_policy"] = "FAIL_CLOSED"
        if any(c.get("allow_on_headers_stop_iteration") for c in configs):
            sc["allow_on_headers_stop_iteration"] = True
        suite["name"] = "meshwall.suite"
        hcm["http_filters"] = filters[:idx[0]] + [suite] + filters[idx[-1] + 1:]
        changed = True
    return changed


class Resp:
    def __init__(self, status: int, headers: list, body: bytes):
        self.status = status
        self.headers = [(k.lower(), v) for k, v in headers]
        self.body = body

    def header(self, name: str) -> Optional[str]:
        name = name.lower()
        return next((v for k, v in self.headers if k == name), None)

    def header_all(self, name: str) -> list:
        name = name.lower()
        return [v for k, v in self.headers if k == name]

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"Resp({self.status}, {self.headers}, {self.body[:300]!r})"


def http_request(port: int, method: str, path: str, headers: Optional[Iterable] = None,
                 body: Optional[bytes] = None, timeout: float = 10.0, host: str = "127.0.0.1",
                 source_ip: Optional[str] = None) -> Resp:
    """One HTTP/1.1 request on a fresh connection. `headers`: dict or list of pairs (repeats kept)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout,
                                      source_address=(source_ip, 0) if source_ip else None)
    try:
        pairs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
        has_host = any(k.lower() == "host" for k, _ in pairs)
        conn.putrequest(method, path, skip_host=has_host, skip_accept_encoding=True)
        for k, v in pairs:
            conn.putheader(k, v)
        if body is not None and not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in pairs):
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        r = conn.getresponse()
        return Resp(r.status, r.getheaders(), r.read())
    finally:
        conn.close()


class Envoy:
    """Runs the real Envoy with `cfg` (a parsed bootstrap), ports and paths rewritten.

    Use as a context manager. `upstreams` maps cluster names to local ports; the cluster
    `backend` goes to `echo_port` when given. With `expect_fail=True` the process is expected
    to exit (bad config): `exit_code` and `log_text()` tell how.
    """

    def __init__(self, cfg: dict, *, concurrency: int = 2, echo_port: Optional[int] = None,
                 upstreams: Optional[dict] = None, expect_fail: bool = False, log_level: str = "info",
                 startup_timeout: float = 60.0):
        self.cfg = copy.deepcopy(cfg)
        self.concurrency = concurrency
        self.expect_fail = expect_fail
        self.log_level = log_level
        self.startup_timeout = startup_timeout
        self.upstreams = dict(upstreams or {})
        if echo_port is not None:
            self.upstreams.setdefault("backend", echo_port)
        self.listener_ports: dict = {}
        self.port: Optional[int] = None
        self.admin_port: Optional[int] = None
        self.exit_code: Optional[int] = None
        self.proc: Optional[subprocess.Popen] = None
        self.dir = Path(tempfile.mkdtemp(prefix="meshwall-envoy-"))
        self.log_path = self.dir / "envoy.log"
        self._rewrite()

    # -- config rewriting -------------------------------------------------------------
    def _rewrite(self) -> None:
        cfg = self.cfg
        if FORM == "suite":
            as_suite(cfg)
        self.admin_port = free_port()
        cfg.setdefault("admin", {})["address"] = {
            "socket_address": {"address": "127.0.0.1", "port_value": self.admin_port}}
        for listener in cfg.get("static_resources", {}).get("listeners", []):
            port = free_port()
            listener["address"]["socket_address"]["port_value"] = port
            listener["address"]["socket_address"]["address"] = "127.0.0.1"
            self.listener_ports[listener.get("name", str(port))] = port
            if self.port is None:
                self.port = port
        for cluster in cfg.get("static_resources", {}).get("clusters", []):
            port = self.upstreams.get(cluster.get("name"))
            if port is None:
                continue

            def set_port(d, port=port):
                sa = d.get("socket_address")
                if isinstance(sa, dict) and "port_value" in sa:
                    sa["port_value"] = port
                    sa["address"] = "127.0.0.1"

            _walk(cluster.get("load_assignment", {}), set_port)

        def fix_wasm_path(d):
            fn = d.get("filename")
            if isinstance(fn, str) and fn.endswith(".wasm") and not os.path.isabs(fn):
                built = "target/wasm32-wasip1/release/"
                d["filename"] = str(MODULE_DIR / fn[len(built):] if fn.startswith(built) else ROOT / fn)

        _walk(cfg, fix_wasm_path)

    # -- process ----------------------------------------------------------------------
    def start(self) -> "Envoy":
        if not ENVOY_BIN.exists():
            raise RuntimeError(f"{ENVOY_BIN} missing: run scripts/setup (make test does)")
        for p in wasm_filters(self.cfg):
            fn = p.get("vm_config", {}).get("code", {}).get("local", {}).get("filename")
            if fn and not Path(fn).exists():
                raise RuntimeError(f"{fn} missing: build the filters first (make build)")
        cfg_path = self.dir / "envoy.yaml"
        cfg_path.write_text(yaml.safe_dump(self.cfg, sort_keys=False))
        cmd = [str(ENVOY_BIN), "-c", str(cfg_path), "--concurrency", str(self.concurrency),
               "--disable-hot-restart", "--log-level", self.log_level,
               "--component-log-level", "wasm:info"]
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT)
        LIVE.add(self)
        STARTED_IN_TEST.append(self)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                self.exit_code = code
                LIVE.discard(self)
                if self.expect_fail:
                    return self
                raise RuntimeError(f"envoy exited with {code} during start-up:\n{self.log_tail()}")
            if not self.expect_fail and self._ready():
                return self
            time.sleep(0.05)
        if self.expect_fail:
            self.stop()
            raise RuntimeError(f"envoy did not refuse the config within {self.startup_timeout}s:\n{self.log_tail()}")
        self.stop()
        raise RuntimeError(f"envoy not ready within {self.startup_timeout}s:\n{self.log_tail()}")

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/ready", timeout=1) as r:
                if r.status != 200:
                    return False
            # every listener must accept connections
            for port in self.listener_ports.values():
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    pass
            return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.exit_code = self.proc.returncode
        LIVE.discard(self)
        if getattr(self, "_log", None):
            self._log.close()

    def __enter__(self) -> "Envoy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- use --------------------------------------------------------------------------
    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 150) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def request(self, method: str, path: str, headers=None, body: Optional[bytes] = None, **kw) -> Resp:
        return http_request(self.port, method, path, headers, body, **kw)

    def admin(self, path: str) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}{path}", timeout=10) as r:
            return r.read()

    def stats(self) -> dict:
        """Counters and gauges by name."""
        data = json.loads(self.admin("/stats?format=json"))
        return {s["name"]: s["value"] for s in data.get("stats", []) if "value" in s}

    def stat(self, suffix: str) -> int:
        """Sum of the stats whose name ends with `suffix` (wasm metrics get an Envoy prefix)."""
        return sum(v for k, v in self.stats().items() if k.endswith(suffix))


def validate_config(path: Path) -> subprocess.CompletedProcess:
    """Runs `envoy --mode validate` on a shipped config, from the repo root (relative .wasm paths)."""
    return subprocess.run([str(ENVOY_BIN), "--mode", "validate", "-c", str(path), "--disable-hot-restart"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


@atexit.register
def _kill_leftovers() -> None:
    for e in list(LIVE):
        e.stop()
