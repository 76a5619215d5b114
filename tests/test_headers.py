"""`headers` filter against the real Envoy (envoy/headers.yaml as shipped, ports rewritten)."""

import copy

import pytest

import harness

SECURITY = {
    "strict-transport-security": "max-age=63072000; includeSubDomains",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-resource-policy": "same-origin",
    "cache-control": "no-store",
}
LEAKY = ["server", "x-powered-by", "x-aspnet-version", "x-envoy-upstream-service-time", "x-envoy-debug"]


def assert_cleaned(r):
    for name in LEAKY:
        assert r.header(name) is None, f"{name} leaked: {r}"
    for name, value in SECURITY.items():
        assert r.header_all(name) == [value], f"{name}: {r}"
    assert "default-src 'none'" in r.header("content-security-policy")


@pytest.fixture(scope="module")
def envoy():
    with harness.EchoServer() as echo:
        with harness.Envoy(harness.load_config("headers"), echo_port=echo.port) as e:
            yield e


LEAKY_UPSTREAM = [("x-echo-header", "X-AspNet-Version: 4.0.30319"),
                  ("x-echo-header", "X-Envoy-Upstream-Service-Time: 12"),
                  ("x-echo-header", "X-Envoy-Debug: on")]


def test_upstream_reply_is_cleaned_and_hardened(envoy):
    r = envoy.request("GET", "/hello", LEAKY_UPSTREAM)
    assert r.status == 200
    assert r.json()["path"] == "/hello"
    assert_cleaned(r)


def test_every_worker_cleans(envoy):
    # --concurrency 2: fresh connections land on both workers.
    for _ in range(20):
        r = envoy.request("GET", "/w", LEAKY_UPSTREAM)
        assert r.status == 200
        assert_cleaned(r)


def test_envoy_local_404_is_cleaned(envoy):
    r = envoy.request("GET", "/", {"Host": "unknown.example"})
    assert r.status == 404
    assert_cleaned(r)


def test_upstream_error_is_cleaned(envoy):
    r = envoy.request("GET", "/boom", [("x-echo-status", "503")] + LEAKY_UPSTREAM)
    assert r.status == 503
    assert_cleaned(r)


def test_overwrite_vs_only_if_absent(envoy):
    r = envoy.request("GET", "/c", [("x-echo-header", "Cache-Control: max-age=60"),
                                    ("x-echo-header", "X-Frame-Options: ALLOWALL")])
    assert r.header_all("cache-control") == ["max-age=60"], "cache-control is ADD_IF_ABSENT"
    assert r.header_all("x-frame-options") == ["DENY"], "x-frame-options is overwritten"


def test_internal_request_header_never_reaches_upstream(envoy):
    r = envoy.request("GET", "/in", [("X-Internal-Debug", "1"), ("x-internal-debug", "2"), ("x-keep", "yes")])
    seen = dict(r.json()["headers"])
    assert "x-internal-debug" not in seen
    assert seen["x-keep"] == "yes"


def test_local_reply_of_a_later_filter_is_cleaned(start_envoy):
    # A native filter after meshwall.headers answers locally (413): the reply passes our
    # response hook on its way out.
    cfg = harness.load_config("headers")
    hcm = cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    hcm["http_filters"].insert(1, {
        "name": "envoy.filters.http.buffer",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
                         "max_request_bytes": 16}})
    e = start_envoy(cfg)
    r = e.request("POST", "/upload", body=b"x" * 1000)
    assert r.status == 413
    assert_cleaned(r)


def test_without_pass_through_envoy_puts_server_back(start_envoy):
    # Documents why the examples set PASS_THROUGH: Envoy overwrites `server` after the filters.
    cfg = harness.load_config("headers")
    hcm = cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    del hcm["server_header_transformation"]
    e = start_envoy(cfg)
    r = e.request("GET", "/x")
    assert r.header("server") == "envoy"
    assert r.header("x-powered-by") is None


@pytest.mark.parametrize("plugin_cfg, field", [
    ({"security_headers": "owasp_api", "bogus": True}, "bogus"),
    ({"response_headers_to_remove": "server"}, "response_headers_to_remove"),
    ({"response_headers_to_add": [{"header": {"key": "a", "value": "b"}, "append_action": "SOMETIMES"}]},
     "response_headers_to_add[0].append_action"),
    ({"request_headers_to_remove": ["content-length"]}, "request_headers_to_remove[0]"),
])
def test_bad_config_is_refused_naming_the_field(echo, plugin_cfg, field):
    cfg = copy.deepcopy(harness.load_config("headers"))
    harness.set_plugin_config(cfg, "meshwall.headers", plugin_cfg)
    e = harness.Envoy(cfg, echo_port=echo.port, expect_fail=True).start()
    assert e.exit_code not in (None, 0), e.log_tail()
    lines = [ln for ln in e.log_text().splitlines() if "meshwall.headers: invalid configuration" in ln]
    assert lines, e.log_tail()
    assert f"field `{field}`" in lines[0]


def test_not_json_config_is_refused(echo):
    cfg = harness.load_config("headers")
    harness.set_plugin_config(cfg, "meshwall.headers", "security_headers: owasp_api")
    e = harness.Envoy(cfg, echo_port=echo.port, expect_fail=True).start()
    assert e.exit_code not in (None, 0)
    assert "meshwall.headers: invalid configuration" in e.log_text()
