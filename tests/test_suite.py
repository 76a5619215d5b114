"""The suite module (meshwall.wasm) in the real Envoy: envoy/suite.yaml serves the demo chain, and a
bad section is refused naming the section and the field. (Every other integration test also runs
against the suite: `MESHWALL_FORM=suite`, the second run of `make test`.)"""

import copy

import pytest

import harness

SUITE = "meshwall.suite"


def test_the_suite_example_answers_like_the_demo(start_envoy):
    e = start_envoy(harness.load_config("suite"), upstreams={"jwks": harness.free_port()})
    r = e.request("GET", "/hello")
    assert r.status == 401 and r.header("www-authenticate") is not None, r
    assert r.header("x-content-type-options") == "nosniff", "headers cleans jwt's reply"
    r = e.request("GET", "/public/%2e%2e;/admin/x")
    assert r.status == 400 and r.json()["reason"] == "path_dot_segment_params", r
    r = e.request("OPTIONS", "/v1/pets", [("Origin", "https://app.example.com"),
                                          ("Access-Control-Request-Method", "POST")])
    assert r.status == 204 and r.header("access-control-allow-origin") == "https://app.example.com", r
    r = e.request("GET", "/internal/users", source_ip="127.0.0.2")
    assert r.status == 403, r
    assert "policies on: headers, access, cors, jwt, apikey, ratelimit, validate" in e.log_text()


@pytest.mark.parametrize("sections, field", [
    ({"headers": {"bogus": True}}, "headers.bogus"),
    ({"jwt": {"providers": {"x": {"issuer": 5}}}}, "jwt.providers.x.issuer"),
    ({"ratelimit": {"rules": [{"name": "r", "key": [{"generic_key": {"descriptor_value": "a"}}],
                               "token_bucket": {"max_tokens": 0, "fill_interval": "1s"}}]}}, "ratelimit.rules[0]"),
    ({"firewall": {}}, "firewall"),
    ({"cors": {"default": {"allow_origin_string_match": [{"exact": "https://a.example"}]}},
      "jwt": {"providers": {}, "bypass_cors_preflight": True}}, "jwt.bypass_cors_preflight"),
])
def test_a_bad_section_is_refused_naming_it(echo, sections, field):
    cfg = copy.deepcopy(harness.load_config("suite"))
    harness.set_plugin_config(cfg, SUITE, sections)
    e = harness.Envoy(cfg, echo_port=echo.port, expect_fail=True).start()
    assert e.exit_code not in (None, 0), e.log_tail()
    lines = [ln for ln in e.log_text().splitlines() if "meshwall.suite: invalid configuration" in ln]
    assert lines, e.log_tail()
    assert f"field `{field}" in lines[0], lines[0]
