"""`access` filter against the real Envoy (envoy/access.yaml as shipped, ports rewritten).

Client addresses: the whole of 127.0.0.0/8 is loopback on Linux, so requests come from
127.0.0.1, 127.0.0.2, 127.6.6.6, ... (`source_ip`); IPv6 from ::1 on a second listener, and
IPv4-mapped IPv6 (`::ffff:127.0.0.1`) from a listener bound to a mapped address with
`ipv4_compat`; any other address through `x-forwarded-for` with trusted hops (the test client
plays the trusted proxy). The echo upstream (or, for the hostile spellings, the raw upstream of
canonical_support, which records every request the moment its headers arrive) shows what reached
the backend. The hostile classes run over HTTP/1.1 and HTTP/2, with the example's
connection-manager settings ("shipped") and without them ("envoy_defaults").
"""

from __future__ import annotations

import copy
import http.client
import json
import socket
import time
import urllib.request

import pytest

import harness
import raw_client
from canonical_support import MODES, PROTOS, Gateway, gateway, started
from raw_upstream import RawUpstream

PLUGIN = "meshwall.access"
DETAIL = "access from this client address is not allowed"
OPERATOR = "127.0.0.1"      # in the /internal/ rule's allow (and the global allow)
INSIDER = "127.0.0.2"       # in the global allow (127.0.0.0/8), not in the /internal/ rule's
BLOCKED = "127.6.6.6"       # in the global deny


def upstream(r) -> dict:
    """What the echo upstream received: header name → values."""
    out: dict = {}
    for k, v in r.json()["headers"]:
        out.setdefault(k, []).append(v)
    return out


def assert_denied(r) -> None:
    assert r.status == 403, r
    assert r.header("content-type") == "application/problem+json", r
    assert r.json() == {"type": "about:blank", "title": "Forbidden", "status": 403, "detail": DETAIL}, r.body
    assert b"127." not in r.body and b"::" not in r.body, "no address in the reply"


def with_plugin(plugin: dict, hcm: dict | None = None) -> dict:
    """envoy/access.yaml with another plugin configuration and connection-manager settings."""
    cfg = harness.load_config("access")
    harness.set_plugin_config(cfg, PLUGIN, plugin)
    for m in harness.http_connection_managers(cfg):
        for k, v in (hcm or {}).items():
            if v is None:
                m.pop(k, None)
            else:
                m[k] = v
    return cfg


@pytest.fixture(scope="module")
def envoy():
    with harness.EchoServer() as echo:
        with harness.Envoy(harness.load_config("access"), echo_port=echo.port) as e:
            yield e


# -- the shipped example, as its comments say ---------------------------------------------------

@pytest.mark.parametrize("path, source, headers, status", [
    ("/hello", None, [], 200),
    ("/internal/users", None, [], 200),
    ("/internal/users", INSIDER, [], 403),
    ("/hello", INSIDER, [], 200),
    ("/healthz", BLOCKED, [], 403),
    ("/hello", BLOCKED, [], 403),
    ("/internal/users", BLOCKED, [], 403),
    ("/internal/users", INSIDER, [("X-Forwarded-For", OPERATOR)], 403),
    ("/internal;x/users", INSIDER, [], 400),
])
def test_walkthrough(envoy, path, source, headers, status):
    r = envoy.request("GET", path, headers, source_ip=source)
    assert r.status == status, r
    if status == 403:
        assert_denied(r)
    if status == 400:
        assert r.json()["reason"] == "path_params", r


def test_an_allowed_request_reaches_the_upstream_unchanged(envoy):
    r = envoy.request("GET", "/internal/users?page=2&q=a%2Cb", [("x-keep", "1"), ("x-keep", "2")])
    assert r.status == 200, r
    assert r.json()["path"] == "/internal/users?page=2&q=a%2Cb"
    assert upstream(r)["x-keep"] == ["1", "2"]


def test_metrics(envoy):
    names = ["allowed", "denied.reason.deny_list", "denied.reason.not_allowed", "denied.reason.no_client_address",
             "ambiguous.reason.path_params"]
    before = {n: envoy.stat(f"meshwall.access.{n}") for n in names}
    envoy.request("GET", "/hello")
    envoy.request("GET", "/hello", source_ip=INSIDER)
    envoy.request("GET", "/internal/x", source_ip=INSIDER)
    envoy.request("GET", "/hello", source_ip=BLOCKED)
    envoy.request("GET", "/internal;x/y", source_ip=INSIDER)
    want = {"allowed": 2, "denied.reason.deny_list": 1, "denied.reason.not_allowed": 1,
            "denied.reason.no_client_address": 0, "ambiguous.reason.path_params": 1}
    for n in names:
        assert envoy.stat(f"meshwall.access.{n}") - before[n] == want[n], n


def test_every_worker_decides_the_same(envoy):
    # --concurrency 2: fresh connections land on both workers.
    for i in range(20):
        assert envoy.request("GET", "/internal/x", source_ip=OPERATOR).status == 200
        assert envoy.request("GET", "/internal/x", source_ip=f"127.0.9.{i + 1}").status == 403


# -- hostile spellings, HTTP/1.1 and HTTP/2 -------------------------------------------------------

# Spellings that backends read as /internal/x (Tomcat and Spring resolve `..;` and strip `;params`,
# IIS and some Java containers split on `\`, most decode `%2F` or `%2e` somewhere).
INTERNAL_SPELLINGS = [
    "/internal", "/internal/", "//internal/x", "/./internal/x", "/internal/./x", "/internal//x", "/x/../internal/x",
    "/public/x/../../internal/x", "/%69nternal/x", "/%69%6e%74%65%72%6e%61%6c/x", "/internal/x?a=/public",
    "/public/%2e%2e/internal/x", "/public/%2E%2E/internal/x", "/public/.%2e/internal/x", "/public/%2e./internal/x",
    "/public/%2e%2e;/internal/x", "/public/..;/internal/x", "/public/..;x=1/internal/x", "/public;x/../internal/x",
    "/public/..%2finternal/x", "/public/..%2Finternal/x", "/public/..%5cinternal/x", "/public/..\\internal/x",
    "/public/%2e%2e%2finternal/x", "/public/%252e%252e/internal/x", "/healthz/../internal/x", "/healthz/..;/internal/x",
    "/healthz;/../internal/x", "/healthz%2f..%2finternal/x", "/internal;x=1/x", "/internal/x;jsessionid=1",
    "/internal%2fx", "/internal/x%00", "/internal/x#frag",
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("proto", PROTOS)
def test_no_path_spelling_dodges_the_internal_rule(proto, mode):
    gw = gateway("access", mode)
    for source, want in [(None, 403), (OPERATOR, 200)]:
        t = gw.session(source)
        canonical = t.send(proto, "GET", "/internal/x")
        assert canonical.status == want, (source, canonical)
        for path in INTERNAL_SPELLINGS:
            t.same_verdict(canonical, t.send(proto, "GET", path), (source, path))
        t.done()


SPOOFS = [
    [("x-forwarded-for", OPERATOR)],
    [("x-forwarded-for", f"{OPERATOR}, {OPERATOR}")],
    [("x-forwarded-for", OPERATOR), ("x-forwarded-for", OPERATOR)],
    [("X-Forwarded-For", OPERATOR)],
    [("x_forwarded_for", OPERATOR)],
    [("X_FORWARDED_FOR", OPERATOR)],
    [("forwarded", f"for={OPERATOR}")],
    [("x-real-ip", OPERATOR)],
    [("true-client-ip", OPERATOR)],
    [("x-envoy-external-address", OPERATOR)],
    [("x-envoy-internal", "true")],
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("proto", PROTOS)
def test_no_client_sent_header_or_trailer_changes_the_address(proto, mode):
    gw = gateway("access", mode)
    t = gw.session()
    canonical = t.send(proto, "GET", "/internal/x")
    assert canonical.status == 403, canonical
    for headers in SPOOFS:
        t.same_verdict(canonical, t.send(proto, "GET", "/internal/x", headers), headers)
        t.same_verdict(canonical, t.send(proto, "POST", "/internal/x", [], pieces=[b"{}"], trailers=headers),
                       ("trailers", headers))
    t.done()


@pytest.fixture(scope="module")
def method_gateway():
    """The example with a rule on DELETE only (a method rule to dodge)."""
    cfg = with_plugin({"rules": [{"match": {"prefix": "/internal/", "methods": ["DELETE", "GET"]},
                                  "allow": [OPERATOR]}]})
    harness.downstream_http1_trailers(cfg)
    harness.upstream_protocol(cfg, "backend", "h1_trailers")
    up = RawUpstream().start()
    e = harness.Envoy(cfg, upstreams={"backend": up.port}).start()
    yield Gateway(e, up, "access/methods")
    e.stop()
    up.stop()


@pytest.mark.parametrize("proto", PROTOS)
def test_no_method_spelling_dodges_a_method_rule(method_gateway, proto):
    t = method_gateway.session()
    for method in ["DELETE", "GET"]:
        canonical = t.send(proto, method, "/internal/x")
        assert canonical.status == 403, canonical
    for method in ["delete", "Delete", "get", "HEAD", "head"]:
        canonical = t.send(proto, "DELETE", "/internal/x")
        t.same_verdict(canonical, t.send(proto, method, "/internal/x"), method)
    # Another method: no rule applies (and nothing in the example denies it).
    t.expect(t.send(proto, "POST", "/internal/x"), 200, "POST")
    t.done()
    assert method_gateway.vm_failures() == []


def test_no_vm_failed_in_the_hostile_gateways():
    for gw in started():
        if gw.name.startswith("access/"):
            assert gw.vm_failures() == [], gw.name


# -- IPv6 and IPv4-mapped clients ----------------------------------------------------------------

def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


class DualStackEnvoy(harness.Envoy):
    """The harness binds every listener to 127.0.0.1; the listeners named in `binds` keep the
    given address (`(address, ipv4_compat, connect_to)`), and readiness connects there."""

    def __init__(self, cfg, binds: dict, **kw):
        super().__init__(cfg, **kw)
        self.binds = binds
        for listener in self.cfg["static_resources"]["listeners"]:
            if listener["name"] in binds:
                address, compat, _ = binds[listener["name"]]
                sa = listener["address"]["socket_address"]
                sa["address"] = address
                if compat:
                    sa["ipv4_compat"] = True

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/ready", timeout=1) as r:
                if r.status != 200:
                    return False
            for name, port in self.listener_ports.items():
                host = self.binds[name][2] if name in self.binds else "127.0.0.1"
                with socket.create_connection((host, port), timeout=1):
                    pass
            return True
        except OSError:
            return False

    def get(self, listener: str, path: str, source_ip=None) -> harness.Resp:
        host = self.binds[listener][2] if listener in self.binds else "127.0.0.1"
        conn = http.client.HTTPConnection(host, self.listener_ports[listener], timeout=10,
                                          source_address=(source_ip, 0) if source_ip else None)
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            return harness.Resp(r.status, r.getheaders(), r.read())
        finally:
            conn.close()


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_ipv6_and_ipv4_mapped_clients(echo):
    cfg = with_plugin({
        "allow": ["127.0.0.1", "::ffff:127.0.0.3"],
        "deny": ["::ffff:127.0.0.4/128"],
        "rules": [{"match": {"prefix": "/v6/"}, "allow": ["::1"]},
                  {"match": {"prefix": "/no-v6/"}, "allow": [], "deny": ["::/0"]}],
    })
    ingress = cfg["static_resources"]["listeners"][0]
    for name in ["v6", "mapped"]:
        extra = copy.deepcopy(ingress)
        extra["name"] = name
        cfg["static_resources"]["listeners"].append(extra)
    binds = {"v6": ("::1", False, "::1"), "mapped": ("::ffff:127.0.0.1", True, "127.0.0.1")}
    with DualStackEnvoy(cfg, binds, echo_port=echo.port) as e:
        cases = [
            # listener, source, path, status
            ("v6", None, "/v6/x", 200),            # ::1 in the rule's allow
            ("v6", None, "/x", 403),               # the global allow has no IPv6 address
            ("v6", None, "/no-v6/x", 403),         # ::/0 denies every IPv6 client
            ("ingress", None, "/x", 200),          # 127.0.0.1
            ("ingress", None, "/v6/x", 403),
            ("ingress", None, "/no-v6/x", 200),    # ::/0 is no IPv4 client
            ("ingress", "127.0.0.3", "/x", 200),   # allowed as ::ffff:127.0.0.3
            ("ingress", "127.0.0.4", "/no-v6/x", 403),  # denied as ::ffff:127.0.0.4
            # Envoy hands these over as ::ffff:127.0.0.x: the same verdicts as IPv4.
            ("mapped", None, "/x", 200),
            ("mapped", None, "/v6/x", 403),
            ("mapped", None, "/no-v6/x", 200),
            ("mapped", "127.0.0.2", "/x", 403),
            ("mapped", "127.0.0.3", "/x", 200),
            ("mapped", "127.0.0.4", "/x", 403),
        ]
        for listener, source, path, status in cases:
            r = e.get(listener, path, source)
            assert r.status == status, (listener, source, path, r)
            if status == 200:
                seen = upstream(r)
                if listener == "mapped":
                    # What Envoy itself saw: the mapped address (the filter folded it).
                    assert seen["x-envoy-external-address"] == [f"::ffff:{source or '127.0.0.1'}"], seen
            else:
                assert_denied(r)


# -- where the client address comes from -----------------------------------------------------------

HOPS_PLUGIN = {
    "deny": ["203.0.113.0/24", "2001:db8:bad::/48"],
    "rules": [{"match": {"prefix": "/internal/"}, "allow": ["198.51.100.7", "2001:db8::7"]}],
}

# (x-forwarded-for the trusted proxy sends, path, status) with one trusted proxy in front.
VIA_PROXY = [
    ("198.51.100.7", "/internal/x", 200),
    ("198.51.100.8", "/internal/x", 403),
    ("2001:db8::7", "/internal/x", 200),
    ("::ffff:198.51.100.7", "/internal/x", 200),
    ("203.0.113.9", "/hello", 403),
    ("2001:db8:bad::1", "/hello", 403),
    ("198.51.100.8", "/hello", 200),
    # The client's own entries are on the left; the proxy appends the address it saw.
    ("198.51.100.7, 198.51.100.8", "/internal/x", 403),
    ("203.0.113.9, 198.51.100.7", "/internal/x", 200),
]


@pytest.mark.parametrize("how", ["filter_hops", "envoy_hops"])
def test_one_trusted_proxy_in_front(start_envoy, how):
    """Two ways to trust one proxy: the filter's `client_ip.xff_num_trusted_hops: 2` (the proxy's
    entry, then Envoy's own: `use_remote_address: true` appends the peer), or Envoy's
    `xff_num_trusted_hops: 1` (Envoy hands the filter the proxy's entry as `source.address`)."""
    if how == "filter_hops":
        e = start_envoy(with_plugin(dict(HOPS_PLUGIN, client_ip={"xff_num_trusted_hops": 2})))
    else:
        e = start_envoy(with_plugin(HOPS_PLUGIN, {"xff_num_trusted_hops": 1}))
    for xff, path, status in VIA_PROXY:
        r = e.request("GET", path, [("x-forwarded-for", xff)], source_ip=INSIDER)
        assert r.status == status, (how, xff, path, r)
    # Without the header: the peer (127.0.0.2 is not in the /internal/ allow).
    assert e.request("GET", "/internal/x", source_ip=INSIDER).status == 403
    assert e.request("GET", "/hello", source_ip=INSIDER).status == 200
    # A trusted entry that is not an address: the filter's own hops deny (the peer is the proxy);
    # Envoy's hops fall back to the peer (here not allowed on /internal/ either).
    for junk in ["unknown", "198.51.100.7, junk"]:
        r = e.request("GET", "/internal/x", [("x-forwarded-for", junk)], source_ip=OPERATOR)
        assert r.status == 403, (how, junk, r)
    before = e.stat("meshwall.access.denied.reason.no_client_address")
    e.request("GET", "/hello", [("x-forwarded-for", "unknown")], source_ip=INSIDER)
    assert e.stat("meshwall.access.denied.reason.no_client_address") - before == (1 if how == "filter_hops" else 0)


def test_with_filter_hops_x_forwarded_for_in_another_spelling_is_refused(start_envoy):
    # With Envoy's defaults for header names (underscores allowed), the filter refuses a second
    # spelling: a CGI-style backend would read it into the same list.
    cfg = with_plugin(dict(HOPS_PLUGIN, client_ip={"xff_num_trusted_hops": 2}))
    harness.envoy_defaults(cfg)
    e = start_envoy(cfg)
    r = e.request("GET", "/hello", [("x-forwarded-for", "198.51.100.8"), ("x_forwarded_for", "198.51.100.7")],
                  source_ip=INSIDER)
    assert r.status == 400 and r.json()["reason"] == "header_spelling", r
    assert e.stat("meshwall.access.ambiguous.reason.header_spelling") == 1
    r = raw_client.h2(e.port, "GET", "/internal/x", [("x_forwarded_for", "198.51.100.7")], source_ip=INSIDER)
    assert r.status == 400, r


def test_without_use_remote_address_envoy_trusts_a_client_sent_x_forwarded_for(start_envoy):
    """Why the example sets `use_remote_address: true`: with Envoy's default (`false`) Envoy takes
    `source.address` from the last x-forwarded-for entry, which any client writes."""
    e = start_envoy(with_plugin(HOPS_PLUGIN, {"use_remote_address": None}))
    r = e.request("GET", "/internal/x", [("x-forwarded-for", "198.51.100.7")], source_ip=INSIDER)
    assert r.status == 200, r
    e = start_envoy(with_plugin(HOPS_PLUGIN))
    r = e.request("GET", "/internal/x", [("x-forwarded-for", "198.51.100.7")], source_ip=INSIDER)
    assert r.status == 403, r


# -- configuration ---------------------------------------------------------------------------------

@pytest.mark.parametrize("plugin_cfg, field", [
    ({}, "."),
    ({"allow": ["10.0.0.1/8"]}, "allow[0]"),
    ({"deny": ["10.0.0.0/8", "10.0.0.0/33"]}, "deny[1]"),
    ({"rules": [{"match": {"prefix": "/"}}, {"match": {"prefix": "/a"}, "allow": ["::1", "a", "b", "fe80::1%lo"]}]},
     "rules[1].allow[1]"),
    ({"rules": [{"match": {"prefix": "/"}, "deny": ["1.2.3.4", "5.6.7.8", "9.9.9.9", "2001:db8::/129"]}]},
     "rules[0].deny[3]"),
    ({"rules": [{"match": {"prefix": "/", "path": "/"}}]}, "rules[0].match"),
    ({"deny": ["1.1.1.1"], "client_ip": {"xff_num_trusted_hops": 99}}, "client_ip.xff_num_trusted_hops"),
    ({"deny": ["1.1.1.1"], "allowlist": []}, "allowlist"),
])
def test_bad_config_is_refused_naming_the_field(echo, plugin_cfg, field):
    cfg = harness.load_config("access")
    harness.set_plugin_config(cfg, PLUGIN, plugin_cfg)
    e = harness.Envoy(cfg, echo_port=echo.port, expect_fail=True).start()
    assert e.exit_code not in (None, 0), e.log_tail()
    lines = [ln for ln in e.log_text().splitlines() if "meshwall.access: invalid configuration" in ln]
    assert lines, e.log_tail()
    assert f"field `{field}`" in lines[0], lines[0]


def test_a_hundred_thousand_entries_in_envoy(start_envoy):
    n = 100_000
    deny = [f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" if i % 2 == 0 else f"2001:db8:{i >> 16:x}:{i & 0xffff:x}::/64"
            for i in range(n)]
    operators = [f"172.{16 + (i >> 16 & 15)}.{i >> 8 & 255}.{i & 255}" for i in range(n)]
    plugin = {"deny": deny, "rules": [{"match": {"prefix": "/internal/"}, "allow": operators + [OPERATOR]}],
              "client_ip": {"xff_num_trusted_hops": 2}}
    assert len(json.dumps(plugin)) > 3_000_000
    t = time.monotonic()
    e = start_envoy(with_plugin(plugin))
    started_in = time.monotonic() - t
    for xff, path, status in [("10.0.0.0", "/x", 403), ("10.0.0.1", "/x", 200), ("10.1.134.158", "/x", 403),
                              ("2001:db8:1:869f::1", "/x", 403), ("2001:db8:1:86a1::1", "/x", 200),
                              ("172.17.134.159", "/internal/x", 200), ("172.17.134.160", "/internal/x", 403),
                              ("172.16.0.0", "/internal/x", 200), ("10.0.0.1", "/internal/x", 403)]:
        r = e.request("GET", path, [("x-forwarded-for", xff)], source_ip=INSIDER)
        assert r.status == status, (xff, path, r)
    # Start-up includes Envoy itself and one configuration per worker (2) and the main thread.
    print(f"Envoy with {2 * n} access entries ready in {started_in:.2f}s")
    assert started_in < 30, started_in
