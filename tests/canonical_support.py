"""Shared by test_canonical*.py: the shipped examples behind a raw upstream, and the verdict checks.

Every gateway is one real Envoy running an envoy/<name>.yaml as shipped ("shipped") or with the
connection manager's path and header-name settings removed ("envoy_defaults": what a user who
leaves them out gets; the filters alone must then be safe). Two changes to the shipped files,
both widening what can reach the upstream so the tests can see it: HTTP/1.1 trailers are parsed
from clients and forwarded to the backend (Envoy drops them by default), and the backend is a
`raw_upstream.RawUpstream` that records every request the moment its headers arrive.

Gateways start on first use and stay up for the session (one Envoy per configuration, not per
test); harness stops them at exit.
"""

from __future__ import annotations

import itertools
import json
import re
import time
import uuid
from typing import Optional

import harness
import raw_client
from jwt_tokens import Keyring, claims
from raw_upstream import RawUpstream

PROTOS = ["h1", "h2"]
MODES = ["shipped", "envoy_defaults"]

DEMO_ISS = "http://127.0.0.1:8081"   # the demo-idp issuer in envoy/jwt.yaml and envoy/demo.yaml
DEMO_AUD = "meshwall-demo"
TRUSTED = ["x-user-id", "x-user-roles", "x-tenant", "x-jwt-payload"]   # jwt writes these

_ips = itertools.count()


def fresh_ip() -> str:
    """A loopback address no other test used: the demo chain rate-limits per client IP."""
    n = next(_ips)
    return f"127.{100 + n // 62500}.{n // 250 % 250}.{n % 250 + 2}"


def fold(name: str) -> str:
    """A header name as PHP, Rack, WSGI and CGI read it."""
    return name.lower().replace("_", "-")


class Idp:
    """The demo identity provider: a JWKS endpoint (through the `jwks` cluster) and tokens."""

    def __init__(self):
        self.keys = Keyring(prefix="demo-")
        doc = json.dumps(self.keys.jwks(with_hmac=False)).encode()

        def handler(method, path, headers, body):
            if path == "/.well-known/jwks.json":
                return 200, [("Content-Type", "application/json")], doc
            return 404, [], b""

        self.srv = harness.EchoServer(handler=handler).start()
        self.port = self.srv.port

    def token(self, sub="alice", roles=("reader",), scope="orders:read", tenant="acme") -> str:
        return self.keys.sign("ES256", claims(DEMO_ISS, aud=DEMO_AUD, sub=sub, lifetime=3600,
                                              roles=list(roles), scope=scope, org={"tenant": tenant}))


_idp: Optional[Idp] = None


def idp() -> Idp:
    global _idp
    if _idp is None:
        _idp = Idp()
    return _idp


def user_token() -> str:
    return idp().token()


def admin_token() -> str:
    return idp().token(sub="root", roles=("admin",), scope="orders:read orders:write")


def bearer(token: str) -> tuple:
    return ("authorization", f"Bearer {token}")


def refused(r) -> bool:
    """A refusal: a 4xx answer, or (Envoy's codec refusing a malformed request) a reset or closed
    stream without an answer. Never a 5xx, never a timeout."""
    if 400 <= r.status < 500:
        return True
    return r.status == 0 and not r.timed_out and (r.reset is not None or r.closed)


def brief(r) -> str:
    """One line about a response and what reached the upstream."""
    state = f"{r.status}" + (f" reset={r.reset}" if r.reset is not None else "") + (" closed" if r.closed else "") \
        + (" timed-out" if r.timed_out else "")
    ups = [a.request_line.decode("latin-1") for a in getattr(r, "arrivals", [])]
    return f"{r.proto} {state} upstream={ups} body={r.body[:80]!r}"


class Gateway:
    """One Envoy and its raw upstream."""

    def __init__(self, envoy: harness.Envoy, upstream: RawUpstream, name: str):
        self.envoy, self.upstream, self.name = envoy, upstream, name
        self.port = envoy.port

    def session(self, source_ip: Optional[str] = None) -> "Session":
        """A test's view: its requests (from one fresh client address) and its failures."""
        return Session(self, source_ip or fresh_ip())

    def vm_failures(self) -> list:
        # A Rust panic, a trap, a VM that failed or was reloaded (not the filters' own log lines).
        pat = re.compile(r"panicked at|Uncaught|RuntimeError|Wasm VM failed|Function: proxy_on_\w+ failed"
                         r"|Plugin \S+ failed to load|VM (is )?(failed|crashed)")
        return [line for line in self.envoy.log_text().splitlines() if pat.search(line)]


class Session:
    """Sends requests and collects every failed check, so one run shows every variant that gets
    through (`done()` raises with all of them)."""

    def __init__(self, gw: Gateway, source_ip: str):
        self.gw, self.ip = gw, source_ip
        self.failures: list = []
        self.refused_probes: list = []

    def send(self, proto: str, method: str, path: str, headers=(), body=None, **kw):
        """One request with a unique `x-probe` header; `r.arrivals` is what of it reached the
        upstream by the time the answer came."""
        probe = uuid.uuid4().hex
        mark = self.gw.upstream.mark()
        hdrs = list(headers) + [("x-probe", probe)]
        kw.setdefault("source_ip", self.ip)
        r = raw_client.request(proto, self.gw.port, method, path, hdrs, body, **kw)
        r.probe = probe
        r.arrivals = [a for a in self.gw.upstream.since(mark) if probe in a.header_all("x-probe")]
        return r

    def check(self, ok: bool, what, msg: str, r=None) -> bool:
        if not ok:
            self.failures.append(f"{what}: {msg}" + (f" -- {brief(r)}" if r is not None else ""))
        return ok

    def expect(self, r, status: int, what=None) -> bool:
        return self.check(r.status == status, what, f"expected {status}", r)

    def refused(self, r, what=None) -> bool:
        """`r` is a refusal and nothing of it (not even the request line) reached the upstream;
        checked again after a grace period by `done()`."""
        if not self.check(refused(r), what, "not refused", r):
            return False
        self.refused_probes.append((what, r.probe))
        return self.check(r.arrivals == [], what, "refused, but it reached the upstream", r)

    def same_verdict(self, canonical, variant, what=None) -> bool:
        """The variant gets the canonical form's verdict, or is refused (and reaches nothing)."""
        if refused(variant):
            return self.refused(variant, what)
        if not self.check(variant.status == canonical.status and variant.status < 500, what,
                          f"verdict {variant.status}, canonical form {canonical.status}", variant):
            return False
        return self.check(len(variant.arrivals) == len(canonical.arrivals), what,
                          f"{len(variant.arrivals)} arrivals, canonical form {len(canonical.arrivals)}", variant)

    def done(self, grace: float = 0.3) -> None:
        """Raises with every failure, and with refused requests that reached the upstream late."""
        if self.refused_probes:
            time.sleep(grace)
        for what, probe in self.refused_probes:
            late = self.gw.upstream.with_header("x-probe", probe)
            if late:
                self.failures.append(f"{what}: reached the upstream after its refusal: {late}")
        if self.failures:
            raise AssertionError(f"{self.gw.name}: {len(self.failures)} failed checks:\n  "
                                 + "\n  ".join(self.failures))


_GATEWAYS: dict = {}


def _build(name: str, mode: str, variant: Optional[str], upstream: RawUpstream) -> harness.Envoy:
    cfg = harness.load_config(name)
    if mode == "envoy_defaults":
        harness.envoy_defaults(cfg)
    harness.downstream_http1_trailers(cfg)
    harness.upstream_protocol(cfg, "backend", "h2" if variant == "h2_upstream" else "h1_trailers")
    if variant == "strip_prefix":
        plugin = harness.plugin_config(cfg, "meshwall.headers")
        plugin["request_header_prefixes_to_remove"] = ["x-internal-"]
        harness.set_plugin_config(cfg, "meshwall.headers", plugin)
    if variant == "istio":
        # What Istio's WasmPlugin produces: no allow_on_headers_stop_iteration, and the istio
        # manifests' `hold_headers: false`.
        for p in harness.wasm_filters(cfg):
            p.pop("allow_on_headers_stop_iteration", None)
        plugin = harness.plugin_config(cfg, "meshwall.validate")
        plugin["hold_headers"] = False
        harness.set_plugin_config(cfg, "meshwall.validate", plugin)
    ups = {"backend": upstream.port}
    if any(c.get("name") == "jwks" for c in cfg["static_resources"]["clusters"]):
        ups["jwks"] = idp().port
    return harness.Envoy(cfg, upstreams=ups)


def gateway(name: str, mode: str = "shipped", variant: Optional[str] = None) -> Gateway:
    key = (name, mode, variant)
    if key not in _GATEWAYS:
        up = RawUpstream().start()
        e = _build(name, mode, variant, up).start()
        _GATEWAYS[key] = Gateway(e, up, f"{name}/{mode}" + (f"/{variant}" if variant else ""))
    return _GATEWAYS[key]


def started() -> list:
    return list(_GATEWAYS.values())


def warm_jwt(gw: Gateway, token: str) -> None:
    """Waits until the remote JWKS is loaded (the first requests may find it still fetching)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        r = raw_client.h1(gw.port, "GET", "/api/orders", [bearer(token)])
        if r.status == 200:
            return
        time.sleep(0.2)
    raise AssertionError(f"{gw.name}: a valid token is still refused: {r}")


def headers_named(arrival, names) -> list:
    """The headers (and trailers) of `arrival` whose folded name is one of `names`."""
    want = {fold(n) for n in names}
    return [(k, v) for k, v in arrival.headers + arrival.trailers if fold(k) in want]

