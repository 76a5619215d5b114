"""`ratelimit` filter against the real Envoy (envoy/ratelimit.yaml, ports rewritten; some tests
swap in another plugin configuration)."""

import math
import time

import pytest

import harness
import raw_client
from ratelimit_load import burst, sustained
from raw_upstream import RawUpstream

PLUGIN = "meshwall.ratelimit"


def config_with(plugin: dict) -> dict:
    cfg = harness.load_config("ratelimit")
    harness.set_plugin_config(cfg, PLUGIN, plugin)
    return cfg


def rule(name, key, max_tokens, fill_interval, tokens_per_fill=1, **extra):
    r = {"name": name, "key": key,
         "token_bucket": {"max_tokens": max_tokens, "tokens_per_fill": tokens_per_fill,
                          "fill_interval": fill_interval}}
    r.update(extra)
    return r


GLOBAL = [{"generic_key": {"descriptor_value": "all"}}]
IP = [{"remote_address": {}}]


def stat(envoy, name):
    return envoy.stat(f"meshwall.ratelimit.{name}")


# ------------------------------------------------------------------------ shipped demo

def test_demo_login_limit_is_independent_of_the_global_one(start_envoy):
    e = start_envoy(harness.load_config("ratelimit"))
    statuses = [e.request("POST", "/login", source_ip="127.0.0.2").status for _ in range(5)]
    assert statuses == [200] * 5
    r = e.request("POST", "/login", source_ip="127.0.0.2")
    assert r.status == 429
    assert r.header("content-type") == "application/problem+json"
    assert r.json()["status"] == 429 and r.json()["violated_policies"] == ["login"]
    assert 1 <= int(r.header("retry-after")) <= 60
    assert r.header("ratelimit-policy") == '"per-ip";q=100;w=60, "login";q=5;w=60'
    # The global bucket lost the 5 admitted logins only.
    r = e.request("GET", "/hello", source_ip="127.0.0.2")
    assert r.status == 200
    assert r.header("ratelimit").startswith('"per-ip";r=94;t=')
    # Path normalisation: no way around the login rule.
    assert e.request("POST", "//login", source_ip="127.0.0.2").status == 429
    assert e.request("POST", "/x/../login", source_ip="127.0.0.2").status == 429
    # Another client address has its own buckets.
    assert e.request("POST", "/login", source_ip="127.0.0.3").status == 200
    assert stat(e, "allowed.rule.login") == 6
    assert stat(e, "limited.rule.login") == 3
    # In Prometheus the rule is a label (the example's stats_tags).
    prom = e.admin("/stats/prometheus").decode().splitlines()
    assert 'meshwall_ratelimit_allowed{rule="login"} 6' in prom
    assert 'meshwall_ratelimit_limited{rule="login"} 3' in prom


def test_demo_global_limit_per_ip(start_envoy):
    e = start_envoy(harness.direct_response(harness.load_config("ratelimit")), concurrency=4)
    counts = burst(e.port, connections=10, total=150, path="/a", headers={})
    assert counts == {200: 100, 429: 50}
    # Spoofing x-forwarded-for does not give a fresh bucket (use_remote_address: true, 0 trusted hops).
    assert e.request("GET", "/a", {"x-forwarded-for": "203.0.113.9"}).status == 429


# ------------------------------------------------------------------------ exactness

def test_bucket_of_100_admits_exactly_100_across_4_workers(start_envoy):
    cfg = harness.direct_response(config_with({"rules": [rule("global", GLOBAL, 100, "1h")]}))
    e = start_envoy(cfg, concurrency=4)
    counts = burst(e.port, connections=20, total=1000)
    assert counts == {200: 100, 429: 900}, counts
    assert stat(e, "allowed.rule.global") == 100
    assert stat(e, "limited.rule.global") == 900
    assert stat(e, "table_cas_exhausted") == 0
    assert stat(e, "table_errors") == 0


def test_refill_rate_within_one_percent_of_theory(start_envoy):
    # 100 tokens/s in fills of 5 every 50 ms; a large bucket so a scheduling stall on a busy
    # machine (< 2 s) wastes no fill.
    max_tokens, per_fill, interval = 200, 5, 0.05
    cfg = harness.direct_response(config_with({"rules": [rule("global", GLOBAL, max_tokens, "50ms", tokens_per_fill=per_fill)]}))
    e = start_envoy(cfg, concurrency=4)
    counts, elapsed = sustained(e.port, connections=20, seconds=10)
    admitted = counts[200]
    assert counts[429] > admitted, f"the load must keep the bucket empty: {counts}"
    theory = max_tokens + per_fill * math.floor(elapsed / interval)
    assert abs(admitted - theory) <= 0.01 * theory, (admitted, theory, elapsed, counts)
    assert set(counts) <= {200, 429}


# ------------------------------------------------------------------------ keys

def test_client_ip_buckets_are_independent(start_envoy):
    e = start_envoy(config_with({"rules": [rule("ip", IP, 3, "1h")]}), concurrency=2)
    for ip in ["127.0.0.2", "127.0.0.3"]:
        assert [e.request("GET", "/", source_ip=ip).status for _ in range(4)] == [200, 200, 200, 429], ip
    assert e.request("GET", "/", {"x-forwarded-for": "198.51.100.1"}, source_ip="127.0.0.2").status == 429


def test_forwarded_client_ip_with_trusted_hops(start_envoy):
    # One trusted proxy in front + Envoy's own append (use_remote_address: true) = 2 hops.
    cfg = config_with({"rules": [rule("ip", IP, 3, "1h")], "client_ip": {"xff_num_trusted_hops": 2}})
    e = start_envoy(cfg)
    a = {"x-forwarded-for": "198.51.100.1"}
    b = {"x-forwarded-for": "198.51.100.2"}
    assert [e.request("GET", "/", a).status for _ in range(4)] == [200, 200, 200, 429]
    assert [e.request("GET", "/", b).status for _ in range(3)] == [200, 200, 200]
    # Entries the client adds to the left change nothing.
    assert e.request("GET", "/", {"x-forwarded-for": "6.6.6.6, 198.51.100.1"}).status == 429


def test_header_keys_are_independent_and_missing_header_is_skipped(start_envoy):
    cfg = config_with({"rules": [rule("user", [{"request_headers": {"header_name": "x-user-id"}}], 2, "1h",
                                      on_missing_key="skip")]})
    e = start_envoy(cfg)
    alice = {"x-user-id": "alice"}
    bob = {"x-user-id": "bob"}
    assert [e.request("GET", "/", alice).status for _ in range(3)] == [200, 200, 429]
    assert [e.request("GET", "/", bob).status for _ in range(3)] == [200, 200, 429]
    r = e.request("GET", "/")
    assert r.status == 200 and r.header("ratelimit") is None, "no header: the rule does not apply"


# ------------------------------------------------------------------------ shadow, headers, Retry-After

def test_shadow_mode_never_rejects_but_counts(start_envoy):
    e = start_envoy(harness.direct_response(config_with({"rules": [rule("trial", IP, 2, "1h", shadow=True)]})), concurrency=4)
    counts = burst(e.port, connections=4, total=40)
    assert counts == {200: 40}
    assert stat(e, "allowed.rule.trial") == 2
    assert stat(e, "shadow_limited.rule.trial") == 38
    assert stat(e, "limited.rule.trial") == 0


def test_headers_on_allowed_and_rejected_responses(start_envoy):
    cfg = config_with({"rules": [rule("small", IP, 2, "30s"), rule("big", IP, 10, "1s")],
                       "enable_x_ratelimit_headers": "DRAFT_VERSION_03"})
    e = start_envoy(cfg)
    r = e.request("GET", "/")
    assert r.status == 200
    assert r.header_all("ratelimit-policy") == ['"small";q=2;w=60, "big";q=10;w=10']
    assert r.header_all("ratelimit") == ['"small";r=1;t=30, "big";r=9;t=1']
    assert (r.header("x-ratelimit-limit"), r.header("x-ratelimit-remaining"), r.header("x-ratelimit-reset")) == \
        ("2", "1", "30")
    e.request("GET", "/")
    r = e.request("GET", "/")
    assert r.status == 429
    ratelimit = r.header_all("ratelimit")
    assert len(ratelimit) == 1 and ratelimit[0].startswith('"small";r=0;t=')
    assert r.header("x-ratelimit-remaining") == "0"
    assert 1 <= int(r.header("retry-after")) <= 30


def test_headers_can_be_switched_off(start_envoy):
    e = start_envoy(config_with({"rules": [rule("r", IP, 1, "1h")], "enable_ratelimit_headers": False}))
    ok, limited = e.request("GET", "/"), e.request("GET", "/")
    assert (ok.status, limited.status) == (200, 429)
    for r in (ok, limited):
        assert r.header("ratelimit") is None and r.header("ratelimit-policy") is None
        assert r.header("x-ratelimit-limit") is None
    assert limited.header("retry-after") is not None


def test_retry_after_is_honest(start_envoy):
    e = start_envoy(config_with({"rules": [rule("r", IP, 1, "3s")]}), concurrency=4)
    assert e.request("GET", "/").status == 200
    r = e.request("GET", "/")
    assert r.status == 429
    wait = int(r.header("retry-after"))
    assert 1 <= wait <= 3
    time.sleep(wait)
    assert e.request("GET", "/").status == 200


# ------------------------------------------------------------------------ configuration

def test_invalid_configuration_is_refused_naming_the_field():
    cfg = config_with({"rules": [rule("r", IP, 1, "10ms")]})
    with harness.Envoy(cfg, expect_fail=True) as e:
        pass
    assert e.exit_code not in (None, 0)
    assert "rules[0].token_bucket.fill_interval" in e.log_text()


# ------------------------------------------------------------------------ the canonical view
#
# Raw request targets (raw_client: nothing normalised on the way) over HTTP/1.1 and HTTP/2, with
# the shipped connection manager and with Envoy's defaults (no normalize_path, no merge_slashes:
# the filter alone). A raw upstream records what arrived.

# Spellings of `/login` that every backend reads as `/login`.
LOGIN_SPELLINGS = ["/login", "/login/", "//login", "///login//", "/./login", "/x/../login", "/../login",
                   "/login/.", "/%6cogin", "/lo%67%69n", "/login?next=/"]

# Spellings with no single meaning, and the reason the filter gives (with Envoy's defaults).
AMBIGUOUS = [
    ("/login;jsessionid=1", "path_params"),
    ("/x/..;/login", "path_dot_segment_params"),
    ("/x/%2e%2e/login", "path_encoded_dot_segment"),
    ("/%2e/login", "path_encoded_dot_segment"),
    ("/x%2f..%2flogin", "path_encoded_slash"),
    ("/login%2F", "path_encoded_slash"),
    ("/x\\..\\login", "path_backslash"),
    ("/login%252f", "path_double_encoding"),
    ("/login%00", "path_encoded_control"),
]

HCM_MODES = {"shipped": lambda cfg: cfg, "envoy_defaults": harness.envoy_defaults}


@pytest.fixture(scope="module")
def upstream():
    with RawUpstream() as up:
        yield up


def canonical_envoy(start_envoy, upstream, mode, plugin=None):
    cfg = harness.load_config("ratelimit") if plugin is None else config_with(plugin)
    return start_envoy(HCM_MODES[mode](cfg), echo_port=upstream.port)


def refused_by_envoy(r):
    """Envoy's own refusal, before the filters: 400 on HTTP/1.1, a stream reset on HTTP/2."""
    return r.status == 400 or (r.status == 0 and r.reset is not None)


def problem_reason(r):
    assert r.header("content-type") == "application/problem+json", r
    return r.json().get("reason")


@pytest.mark.parametrize("mode", list(HCM_MODES))
@pytest.mark.parametrize("proto", ["h1", "h2"])
def test_login_limit_cannot_be_escaped_by_any_spelling(start_envoy, upstream, proto, mode):
    e = canonical_envoy(start_envoy, upstream, mode)
    send = lambda method, path: raw_client.request(proto, e.port, method, path, source_ip="127.0.0.4")
    mark = upstream.mark()
    # Five logins, each in another spelling, all from the one budget of 5.
    assert [send("POST", p).status for p in LOGIN_SPELLINGS[:5]] == [200] * 5
    assert len(upstream.since(mark)) == 5
    mark = upstream.mark()
    # HTTP/1.1 methods are case-sensitive in Envoy's parser (`post` is a 400 there); HTTP/2
    # passes `post` on, and Django/Flask upper-case it.
    methods = ["POST", "post", "Post"] if proto == "h2" else ["POST"]
    if proto == "h1":
        assert send("post", "/login").status == 400
    for method in methods:
        for path in LOGIN_SPELLINGS:
            r = send(method, path)
            assert r.status == 429, (method, path, r)
            assert r.json()["violated_policies"] == ["login"]
    for path, reason in AMBIGUOUS:
        r = send("POST", path)
        if mode == "envoy_defaults":
            assert (r.status, problem_reason(r)) == (400, reason), (path, r)
        else:
            # Envoy normalises some of these itself (to `/login`: limited) or refuses them.
            assert r.status in (429, 307) or refused_by_envoy(r), (path, r)
    assert upstream.since(mark) == [], "nothing limited or refused reached the upstream"
    # Not the login rule: another method, another path.
    assert send("GET", "/login").status == 200
    assert send("POST", "/login/x").status == 200
    assert stat(e, "allowed.rule.login") == 5


@pytest.mark.parametrize("proto", ["h1", "h2"])
def test_ambiguous_paths_are_refused_and_counted_without_taking_a_token(start_envoy, upstream, proto):
    e = canonical_envoy(start_envoy, upstream, "envoy_defaults")
    mark = upstream.mark()
    for path, reason in AMBIGUOUS:
        r = raw_client.request(proto, e.port, "POST", path)
        assert r.status == 400, (path, r)
        body = r.json()
        assert (body["status"], body["reason"]) == (400, reason), (path, body)
        assert r.header("ratelimit") is None and r.header("retry-after") is None
    assert upstream.since(mark) == []
    for reason in {reason for _, reason in AMBIGUOUS}:
        want = sum(1 for _, r in AMBIGUOUS if r == reason)
        assert stat(e, f"ambiguous.reason.{reason}") == want, reason
    assert "meshwall.ratelimit: 400 ambiguous request: path_params" in e.log_text()
    # No token was taken: the five logins are all still there.
    assert [raw_client.request(proto, e.port, "POST", "/login").status for _ in range(6)] == [200] * 5 + [429]


API_KEY_RULE = {"rules": [rule("per-key", [{"request_headers": {"header_name": "x-api-key"}}], 2, "1h",
                               on_missing_key="skip", match={"prefix": "/api/"})]}


@pytest.mark.parametrize("mode", list(HCM_MODES))
@pytest.mark.parametrize("proto", ["h1", "h2"])
def test_key_header_must_have_one_value_in_one_spelling(start_envoy, upstream, proto, mode):
    e = canonical_envoy(start_envoy, upstream, mode, API_KEY_RULE)
    send = lambda headers, path="/api/x": raw_client.request(proto, e.port, "GET", path, headers)
    assert [send([("x-api-key", "K1")]).status for _ in range(3)] == [200, 200, 429]
    mark = upstream.mark()
    cases = [
        ([("x-api-key", "K1"), ("x-api-key", "K1")], "repeated_header"),
        ([("x-api-key", "K1"), ("x-api-key", "K2")], "repeated_header"),
        ([("x_api_key", "K1")], "header_spelling"),
        ([("x_api_key", "K9")], "header_spelling"),
        ([("x-api-key", "K1"), ("x_api_key", "K9")], "header_spelling"),
    ]
    envoy_rejects_underscores = any(
        hcm.get("common_http_protocol_options", {}).get("headers_with_underscores_action") == "REJECT_REQUEST"
        for hcm in harness.http_connection_managers(e.cfg))
    for headers, reason in cases:
        r = send(headers)
        if envoy_rejects_underscores and reason == "header_spelling":
            assert refused_by_envoy(r), (headers, r)
        else:
            assert (r.status, problem_reason(r)) == (400, reason), (headers, r)
    assert upstream.since(mark) == [], "a refused request reaches nothing"
    assert stat(e, "ambiguous.reason.repeated_header") == 2
    assert stat(e, "ambiguous.reason.header_spelling") == (0 if envoy_rejects_underscores else 3)
    # K9 was never charged; outside the rule's paths the header is not looked at.
    assert [send([("x-api-key", "K9")]).status for _ in range(3)] == [200, 200, 429]
    assert send([("x-api-key", "K1"), ("x-api-key", "K1")], path="/health").status == 200
