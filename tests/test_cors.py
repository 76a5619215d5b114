"""`cors` filter against the real Envoy (envoy/cors.yaml as shipped, ports rewritten).

Requests go over HTTP/1.1 and HTTP/2 (raw clients: nothing normalised on the way) to a raw upstream
that records every request the moment its headers arrive, so each test proves what reached the
backend; the upstream echoes `x-echo-header: Name: value` as response headers, which is how a
test makes the backend try to widen the policy. Every protocol test also runs with the connection
manager's path and header-name settings removed ("envoy_defaults"), where the filter alone decides.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import uuid

import pytest

import harness
import raw_client
from raw_upstream import RawUpstream, echo_reply

APP = "https://app.example.com"
EVIL = "https://evil.example"
PROTOS = ["h1", "h2"]
MODES = ["shipped", "envoy_defaults"]

# The demo policy's answer to an allowed preflight (docs/cors.md).
PREFLIGHT_ANSWER = [
    ("access-control-allow-origin", APP),
    ("access-control-allow-credentials", "true"),
    ("access-control-allow-methods", "GET, POST, PUT, PATCH, DELETE"),
    ("access-control-allow-headers", "authorization, content-type, x-request-id"),
    ("access-control-max-age", "600"),
]
PERMISSIVE_BACKEND = [("x-echo-header", "Access-Control-Allow-Origin: *"),
                      ("x-echo-header", "Access-Control-Allow-Credentials: true"),
                      ("x-echo-header", "Access-Control-Allow-Methods: *"),
                      ("x-echo-header", "Access-Control-Expose-Headers: *")]


def backend_reply(a):
    """The echo, plus the response headers and status the request asks for."""
    r = echo_reply(a)
    for v in a.header_all("x-echo-header"):
        k, _, val = v.partition(":")
        r.headers.append((k.strip(), val.strip()))
    if a.header("x-echo-status"):
        r.status = int(a.header("x-echo-status"))
    return r


class Gateway:
    def __init__(self, cfg: dict):
        self.up = RawUpstream(respond=backend_reply).start()
        self.envoy = harness.Envoy(cfg, upstreams={"backend": self.up.port}).start()
        self.port = self.envoy.port

    def send(self, proto, method, path, headers=(), **kw):
        """One request; `r.arrivals` is what of it reached the upstream."""
        probe = uuid.uuid4().hex
        mark = self.up.mark()
        r = raw_client.request(proto, self.port, method, path, list(headers) + [("x-probe", probe)], **kw)
        r.arrivals = [a for a in self.up.since(mark) if probe in a.header_all("x-probe")]
        return r

    def stop(self):
        self.envoy.stop()
        self.up.stop()


def cors_config(mode: str = "shipped") -> dict:
    cfg = harness.load_config("cors")
    if mode == "envoy_defaults":
        harness.envoy_defaults(cfg)
    return cfg


@pytest.fixture(scope="module")
def gateways():
    started: dict = {}

    def get(mode: str) -> Gateway:
        if mode not in started:
            started[mode] = Gateway(cors_config(mode))
        return started[mode]

    yield get
    for g in started.values():
        g.stop()


def cors_headers(r) -> list:
    return [(k, v) for k, v in r.headers if k.startswith("access-control-")]


def refused(r) -> bool:
    """A 4xx, or Envoy's codec resetting the stream / closing the connection (no 5xx, no timeout)."""
    return 400 <= r.status < 500 or (r.status == 0 and not r.timed_out and (r.reset is not None or r.closed))


def preflight(origin=APP, method="PUT", headers=None) -> list:
    h = [("origin", origin), ("access-control-request-method", method)]
    if headers:
        h.append(("access-control-request-headers", headers))
    return h


# -- preflights ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("proto", PROTOS)
def test_allowed_preflight_is_answered_here(gateways, proto, mode):
    gw = gateways(mode)
    r = gw.send(proto, "OPTIONS", "/api/items/1", preflight(headers="content-type,x-request-id"))
    assert r.status == 204, r
    assert cors_headers(r) == PREFLIGHT_ANSWER
    assert r.header("vary") == "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
    assert r.body == b""
    assert r.arrivals == [], "the upstream never sees an answered preflight"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("proto", PROTOS)
def test_preflight_not_allowed_is_forwarded_without_cors_headers(gateways, proto, mode):
    gw = gateways(mode)
    for what, headers in [
        ("another origin", preflight(origin=EVIL)),
        ("the origin with a path", preflight(origin=APP + "/")),
        ("a method not listed", preflight(method="PROPFIND")),
        ("a header not listed", preflight(headers="x-debug")),
        ("private network access where not enabled",
         preflight(method="GET") + [("access-control-request-private-network", "true")]),
    ]:
        r = gw.send(proto, "OPTIONS", "/api/items", headers + PERMISSIVE_BACKEND)
        assert r.status == 200, (what, r)
        assert len(r.arrivals) == 1 and r.arrivals[0].method == "OPTIONS", what
        assert cors_headers(r) == [], f"{what}: the backend's Access-Control-* must not pass: {r}"
        assert "Origin" in ",".join(r.header_all("vary")), what


@pytest.mark.parametrize("proto", PROTOS)
def test_strict_route_answers_403_and_forwards_nothing(gateways, proto):
    gw = gateways("shipped")
    r = gw.send(proto, "OPTIONS", "/strict/x", preflight(origin=EVIL))
    assert r.status == 403 and r.header("content-type") == "application/problem+json", r
    assert r.json()["reason"] == "origin_not_allowed"
    assert cors_headers(r) == [] and r.arrivals == []
    r = gw.send(proto, "OPTIONS", "/strict/x", preflight(method="PROPFIND"))
    assert (r.status, r.json()["reason"]) == (403, "method_not_allowed")
    r = gw.send(proto, "OPTIONS", "/strict/x", preflight())
    assert r.status == 204 and r.header("access-control-allow-origin") == APP


@pytest.mark.parametrize("proto", PROTOS)
def test_private_network_access_and_wildcard_routes(gateways, proto):
    gw = gateways("shipped")
    pna = preflight(method="GET") + [("access-control-request-private-network", "true")]
    r = gw.send(proto, "OPTIONS", "/device/status", pna)
    assert r.status == 204 and r.header("access-control-allow-private-network") == "true", r
    r = gw.send(proto, "OPTIONS", "/public/data", preflight(origin="https://anyone.example", method="GET",
                                                            headers="x-a"))
    assert r.status == 204, r
    assert r.header("access-control-allow-origin") == "*"
    assert r.header("access-control-allow-credentials") is None
    assert r.header("access-control-allow-headers") == "x-a"
    r = gw.send(proto, "OPTIONS", "/public/data", preflight(origin="https://anyone.example", method="GET",
                                                            headers="authorization"))
    assert r.status == 200 and cors_headers(r) == [], "`*` never covers authorization"
    r = gw.send(proto, "OPTIONS", "/embed/w", preflight(origin="null"))
    assert r.status == 204 and r.header("access-control-allow-origin") == "null", r


# -- actual requests ----------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("proto", PROTOS)
def test_actual_responses(gateways, proto, mode):
    gw = gateways(mode)
    # An allowed origin: its origin back, credentials, exposed headers; Vary after the backend's.
    r = gw.send(proto, "GET", "/api/items", [("origin", APP), ("x-echo-header", "Vary: Accept-Encoding")]
                + PERMISSIVE_BACKEND)
    assert r.status == 200, r
    assert cors_headers(r) == [("access-control-allow-origin", APP),
                               ("access-control-allow-credentials", "true"),
                               ("access-control-expose-headers", "x-request-id, ratelimit")]
    vary = [t.strip() for v in r.header_all("vary") for t in v.split(",")]
    assert vary == ["Accept-Encoding", "Origin"], r
    assert r.arrivals[0].header("origin") == APP, "the request goes on unchanged"
    # Another origin, no origin, null: nothing, whatever the backend says; still Vary: Origin.
    for headers in ([("origin", EVIL)], [], [("origin", "null")]):
        r = gw.send(proto, "GET", "/api/items", headers + PERMISSIVE_BACKEND)
        assert r.status == 200 and len(r.arrivals) == 1, r
        assert cors_headers(r) == [], f"{headers}: {r}"
        assert r.header_all("vary") == ["Origin"]
    # The wildcard route: `*`, never with credentials.
    r = gw.send(proto, "GET", "/public/data", [("origin", "https://anyone.example")])
    assert cors_headers(r)[:1] == [("access-control-allow-origin", "*")], r
    assert r.header("access-control-allow-credentials") is None
    # The route turned off: the backend's own CORS headers pass, nothing is added.
    r = gw.send(proto, "GET", "/legacy/x", [("origin", EVIL)] + PERMISSIVE_BACKEND)
    assert r.header("access-control-allow-origin") == "*" and r.header("vary") is None, r


@pytest.mark.parametrize("proto", PROTOS)
def test_error_responses_of_the_backend_carry_cors_headers(gateways, proto):
    gw = gateways("shipped")
    r = gw.send(proto, "POST", "/api/items", [("origin", APP), ("x-echo-status", "422")])
    assert (r.status, r.header("access-control-allow-origin")) == (422, APP)


def test_envoys_own_local_reply_carries_cors_headers(start_envoy):
    # No backend at all: Envoy answers 503 itself; the preflight is still answered by the filter.
    e = start_envoy(cors_config(), upstreams={"backend": harness.free_port()})
    r = e.request("GET", "/api/items", {"Origin": APP})
    assert r.status == 503 and r.header("access-control-allow-origin") == APP, r
    assert r.header("access-control-allow-credentials") == "true"
    r = e.request("OPTIONS", "/api/items", preflight())
    assert r.status == 204 and r.header("access-control-allow-origin") == APP, r


# -- one meaning: variants get the canonical form's verdict or are refused ----------------------------

def verdict(r) -> tuple:
    """Status, whether the origin is allowed (`*` or reflected), how many requests went upstream."""
    allow = r.header("access-control-allow-origin")
    return r.status, "*" if allow == "*" else allow is not None, len(r.arrivals)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("proto", PROTOS)
def test_spellings_get_the_verdict_of_their_canonical_form_or_are_refused(gateways, proto, mode):
    gw = gateways(mode)
    anyone = "https://anyone.example"
    cases = [
        # (canonical request, variants): (method, path, headers)
        (("OPTIONS", "/public/x", preflight(origin=anyone, method="GET")),
         [("OPTIONS", p, preflight(origin=anyone, method="GET"))
          for p in ["//public/x", "/public/./x", "/api/../public/x", "/%70ublic/x", "/public//x"]]),
        (("OPTIONS", "/api/x", preflight(origin=anyone, method="GET")),
         [("OPTIONS", p, preflight(origin=anyone, method="GET"))
          for p in ["/public/../api/x", "/public/%2e%2e/api/x", "/public/..;/api/x", "/public;a/../api/x",
                    "/public/..%2fapi/x", "/public\\..\\api/x", "/public/%2e%2e%2fapi/x"]]),
        (("OPTIONS", "/api/x", preflight()),
         [("OPTIONS", "/api/x", preflight(origin="HTTPS://APP.EXAMPLE.COM")),
          ("OPTIONS", "/api/x", preflight(origin=APP + ":443")),
          ("options", "/api/x", preflight()),
          ("OPTIONS", "/api/x", [("Origin", APP), ("Access-Control-Request-Method", "PUT")]),
          ("OPTIONS", "/api/x", preflight() + [("origin", APP)]),
          ("OPTIONS", "/api/x", [("origin", APP), ("access_control_request_method", "PUT")]),
          ("OPTIONS", "/api/x", preflight() + [("access_control_request_headers", "x-debug")]),
          ("OPTIONS", "/api/x", preflight() + [("access-control-request-method", "PROPFIND")])]),
        (("GET", "/api/x", [("origin", EVIL)]),
         [("GET", "/api/x", [("origin", EVIL), ("origin", APP)]),
          ("GET", "/api/x", [("origin", f"{EVIL}, {APP}")]),
          ("GET", "/api/x", [("origin", f"{EVIL} {APP}")]),
          ("GET", "/api/x", [("origin", APP + "/")]),
          ("GET", "/api/x", [("origin", APP + ".evil.example")]),
          ("GET", "/api/x", [("origin", "https://app.example.com@evil.example")])]),
    ]
    failures = []
    for canonical, variants in cases:
        want = gw.send(proto, *canonical)
        assert want.status < 400, want
        for v in variants:
            r = gw.send(proto, *v)
            if refused(r):
                if r.arrivals:
                    failures.append(f"{v}: refused but reached the upstream")
                continue
            if verdict(r) != verdict(want):
                failures.append(f"{v}: {verdict(r)}, canonical {canonical[:2]}: {verdict(want)}")
            allow = r.header("access-control-allow-origin")
            origin = next((val for k, val in v[2] if k.lower() == "origin"), None)
            if allow not in (None, "*", origin):
                failures.append(f"{v}: answered for {allow!r}, asked by {origin!r} (browsers compare bytes)")
    assert not failures, "\n".join(failures)
    assert not [ln for ln in gw.envoy.log_text().splitlines() if "panicked" in ln]


@pytest.mark.parametrize("proto", PROTOS)
def test_ambiguous_requests_are_refused_by_the_filter_itself(gateways, proto):
    # With Envoy's defaults nothing in front of the filter refuses these: the filter does, 400.
    gw = gateways("envoy_defaults")
    for path, headers, reason in [
        ("/api/x;jsessionid=1", [("origin", APP)], "path_params"),
        ("/api/x", [("origin", APP), ("origin", EVIL)], "repeated_header"),
        ("/api/x", [("origin", APP), ("access_control_request_method", "PUT")], "header_spelling"),
    ]:
        r = gw.send(proto, "OPTIONS", path, headers)
        assert r.status == 400 and r.json()["reason"] == reason, (path, headers, r)
        assert r.arrivals == [] and cors_headers(r) == []


# -- metrics, configuration, other filters -------------------------------------------------------------

def test_metrics_count_preflights_and_origins(start_envoy):
    e = start_envoy(cors_config())
    e.request("OPTIONS", "/api/x", preflight())
    e.request("OPTIONS", "/api/x", preflight(origin=EVIL))
    e.request("OPTIONS", "/strict/x", preflight(origin=EVIL))
    e.request("GET", "/api/x", {"Origin": APP})
    assert e.stat("meshwall.cors.preflight_allowed") == 1
    assert e.stat("meshwall.cors.preflight_forwarded.reason.origin_not_allowed") == 1
    assert e.stat("meshwall.cors.preflight_denied.reason.origin_not_allowed") == 1
    assert e.stat("meshwall.cors.origin_valid") == 2
    assert e.stat("meshwall.cors.origin_invalid") == 2


@pytest.mark.parametrize("plugin_cfg", [
    {"default": {"allow_origin_string_match": [{"exact": "*"}], "allow_credentials": True}},
    {"default": {"allow_origin_string_match": [{"exact": "https://app.example.com/"}]}},
    {"rules": [{"match": {"prefix": "/a/"}, "allow_methods": 5}]},
    {"default": {}, "bogus": 1},
])
def test_bad_config_is_refused_naming_the_field(echo, plugin_cfg):
    cfg = copy.deepcopy(cors_config())
    harness.set_plugin_config(cfg, "meshwall.cors", plugin_cfg)
    e = harness.Envoy(cfg, echo_port=echo.port, expect_fail=True).start()
    assert e.exit_code not in (None, 0), e.log_tail()
    assert "meshwall.cors: invalid configuration: field `" in e.log_text(), e.log_tail()


def _prepend_filter(cfg: dict, other: str) -> dict:
    """cfg with the wasm filter of envoy/<other>.yaml first in its chain."""
    theirs = harness.load_config(other)
    hcm = harness.http_connection_managers(theirs)[0]
    first = next(f for f in hcm["http_filters"] if f["name"] == f"meshwall.{other}")
    harness.http_connection_managers(cfg)[0]["http_filters"].insert(0, first)
    return cfg


def test_cors_headers_survive_the_headers_filter(start_envoy):
    # headers (first: it cleans every response last) → cors → router.
    e = start_envoy(_prepend_filter(cors_config(), "headers"))
    r = e.request("OPTIONS", "/api/x", preflight())
    assert r.status == 204 and cors_headers(r) == PREFLIGHT_ANSWER, r
    assert r.header("x-content-type-options") == "nosniff", "the preflight answer is cleaned too"
    r = e.request("GET", "/api/x", {"Origin": APP})
    assert r.header("access-control-allow-origin") == APP and r.header("server") is None, r


def test_with_jwt_after_cors_preflights_need_no_token_and_401s_are_readable(start_envoy):
    # cors → jwt → router: cors answers the preflight before jwt sees it; jwt's 401 to the actual
    # request goes back through cors, so the page can read it.
    cfg = cors_config()
    jwt = harness.load_config("jwt")
    jwt_filter = next(f for f in harness.http_connection_managers(jwt)[0]["http_filters"]
                      if f["name"] == "meshwall.jwt")
    harness.http_connection_managers(cfg)[0]["http_filters"].insert(1, jwt_filter)
    provider = harness.plugin_config(jwt, "meshwall.jwt")["providers"]["example-inline"]
    harness.set_plugin_config(cfg, "meshwall.jwt", {"providers": {"example-inline": provider}})
    e = start_envoy(cfg)
    r = e.request("OPTIONS", "/api/x", preflight(headers="authorization"))
    assert r.status == 204 and r.header("access-control-allow-origin") == APP, r
    r = e.request("GET", "/api/x", {"Origin": APP})
    assert r.status == 401 and r.header("access-control-allow-origin") == APP, r
    assert r.header("access-control-allow-credentials") == "true"
    r = e.request("OPTIONS", "/api/x", preflight(origin=EVIL))
    assert r.status == 401 and cors_headers(r) == [], "a preflight cors does not allow meets jwt"


# -- a real browser ------------------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium")

PAGE = """<!doctype html><title>cors</title><script>
const target = "http://localhost:%(envoy)d";
const cases = [
  ["get_credentials", "/api/x", {credentials: "include"}],
  ["put_json", "/api/items/1", {method: "PUT", credentials: "include", body: "{}",
                                headers: {"content-type": "application/json", "x-request-id": "r1"}}],
  ["delete_unlisted_header", "/api/items/1", {method: "DELETE", headers: {"x-debug": "1"}}],
  ["public", "/public/x", {}],
  ["public_credentials", "/public/x", {credentials: "include"}],
  ["public_authorization", "/public/x", {headers: {"authorization": "Bearer t"}}],
  ["legacy", "/legacy/x", {}],
  ["backend_allows_all", "/api/wide", {}],
  ["backend_allows_all_legacy", "/legacy/wide", {}],
];
(async () => {
  const out = {origin: location.origin};
  for (const [name, path, init] of cases) {
    try {
      const r = await fetch(target + path, init);
      out[name] = [r.status, r.headers.get("x-request-id")];
    } catch (e) {
      out[name] = "blocked";
    }
  }
  await fetch("/result", {method: "POST", body: JSON.stringify(out)});
})();
</script>"""


class _PageServer:
    """Serves PAGE on 127.0.0.1 and collects the page's POST /result."""

    def __init__(self, envoy_port: int):
        import http.server
        import queue
        import threading

        results = self.results = queue.Queue()
        page = (PAGE % {"envoy": envoy_port}).encode()

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                self.send_response(200)
                self.send_header("content-type", "text/html")
                self.send_header("content-length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def do_POST(self):
                results.put(json.loads(self.rfile.read(int(self.headers["content-length"]))))
                self.send_response(204)
                self.end_headers()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def visit(self, host: str, tmp_path) -> dict:
        """Opens http://<host>:<port>/ in headless Chromium; the page's results."""
        profile = tmp_path / f"chromium-{host}"
        proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run",
             f"--user-data-dir={profile}", f"http://{host}:{self.port}/"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            return self.results.get(timeout=60)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _wide_backend(method, path, headers, body):
    """The echo, answering with `x-request-id: r-1`, and `Access-Control-Allow-Origin: *` on */wide."""
    status, out, payload = harness.echo_handler(method, path, headers, body)
    out = out + [("X-Request-Id", "r-1")]
    if path.endswith("/wide"):
        out.append(("Access-Control-Allow-Origin", "*"))
    return status, out, payload


@pytest.mark.skipif(CHROMIUM is None, reason="headless check needs Debian's `chromium`")
def test_a_real_browser_on_another_port(tmp_path):
    # A page on http://localhost:<A> (allowed) and the same page on http://127.0.0.1:<A> (another
    # origin) fetch from Envoy on http://localhost:<B>; Chromium decides what each script can read.
    with harness.EchoServer(handler=_wide_backend) as backend:
        cfg = cors_config()
        # The page needs Envoy's port and the policy the page's origin: set up Envoy (ports
        # assigned), start the page server, then name its origin in the config Envoy starts with.
        envoy = harness.Envoy(cfg, echo_port=backend.port)
        pages = _PageServer(envoy.port)
        try:
            plugin = harness.plugin_config(cfg, "meshwall.cors")
            plugin["default"]["allow_origin_string_match"].append({"exact": f"http://localhost:{pages.port}"})
            harness.set_plugin_config(envoy.cfg, "meshwall.cors", plugin)
            with envoy:
                allowed = pages.visit("localhost", tmp_path)
                other = pages.visit("127.0.0.1", tmp_path)
        finally:
            pages.stop()
    ok, exposed_hidden = [200, "r-1"], [200, None]
    assert allowed == {
        "origin": f"http://localhost:{pages.port}",
        "get_credentials": ok,
        "put_json": ok,
        "delete_unlisted_header": "blocked",
        "public": ok,
        "public_credentials": "blocked",
        "public_authorization": "blocked",
        "legacy": "blocked",
        "backend_allows_all": ok,
        "backend_allows_all_legacy": exposed_hidden,
    }
    assert other == {
        "origin": f"http://127.0.0.1:{pages.port}",
        "get_credentials": "blocked",
        "put_json": "blocked",
        "delete_unlisted_header": "blocked",
        "public": ok,
        "public_credentials": "blocked",
        "public_authorization": "blocked",
        "legacy": "blocked",
        "backend_allows_all": "blocked",         # the backend's `*` is removed on governed routes
        "backend_allows_all_legacy": exposed_hidden,  # where it is not, the browser takes it
    }
