"""Global rules of the `ratelimit` wasm filter through the real Envoy (envoy/ratelimit-global.yaml,
ports rewritten), against meshwall-rls with Redis behind it (tests/rls_harness.py): exactness
across a fleet (2 Envoys × 2 workers, 2 replicas, 1 Redis), the same admissions as Envoy's native
`envoy.filters.http.ratelimit` with the same descriptors, local rules first, failure modes (Redis
stopped, a server slower than the timeout, malformed answers from a fake gRPC server), and bodies
held while a request waits, over HTTP/1.1 and HTTP/2.
"""

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

import harness
import raw_client
import rls_harness as rh
from raw_upstream import RawUpstream

LIMITS = """
domain: edge
descriptors:
  - key: user
    rate_limit:
      token_bucket: {max_tokens: 50, tokens_per_fill: 1, fill_interval: 24h}
  - key: user
    value: five-*
    rate_limit:
      token_bucket: {max_tokens: 5, tokens_per_fill: 1, fill_interval: 24h}
  - key: user
    value: blocked-*
    rate_limit: {unit: minute, requests_per_unit: 0}
  - key: user
    value: vip-*
    rate_limit: {unlimited: true}
"""

PER_USER = {"name": "per-user", "global": True, "on_missing_key": "skip",
            "key": [{"request_headers": {"header_name": "x-user-id", "descriptor_key": "user"}}]}
PER_CLIENT = {"name": "per-client", "global": True, "key": [{"remote_address": {}}]}


def plugin(*rules, **service) -> dict:
    """The filter's configuration: `rules`, and the example's rate_limit_service with `service`."""
    svc = {"cluster": "meshwall_rls", "domain": "edge", "timeout": "250ms", "failure_mode": "deny"}
    svc.update(service)
    return {"rules": list(rules), "client_ip": {"ipv6_prefix_length": 128}, "rate_limit_service": svc}


def uid(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def get(envoy, user=None, **kw):
    return envoy.request("GET", "/", {"x-user-id": user} if user else {}, timeout=10, **kw)


def stat(envoy, name: str) -> int:
    return envoy.stat(f"meshwall.ratelimit.{name}")


def decisions(replicas) -> int:
    return int(sum(r.metric('meshwall_rls_decisions_total{domain="edge",code="ok"}')
                   + r.metric('meshwall_rls_decisions_total{domain="edge",code="over_limit"}') for r in replicas))


@pytest.fixture
def services():
    """1 Redis and 1 meshwall-rls replica; stopped after the test."""
    redis = rh.Redis().start()
    rls = rh.Rls(LIMITS, redis.url).start()
    yield redis, rls
    rls.stop()
    redis.stop()


@pytest.fixture
def fleet(echo):
    """1 Redis, 2 meshwall-rls replicas, 2 Envoys (2 workers each) running the wasm filter."""
    redis = rh.Redis().start()
    # The server's Redis deadline below the filter's timeout, as docs/rls.md says, but not the
    # 100 ms default: on two shared cores a starved replica would answer UNAVAILABLE (a 503).
    replicas = [rh.Rls(LIMITS, redis.url, "--redis-timeout", "800ms").start() for _ in range(2)]
    # 1 s rather than the example's 250 ms: the fleet shares two cores with the load; a call
    # that timed out would be a 503 (and perhaps charged), not a decision.
    cfg = rh.wasm_envoy_config([r.port for r in replicas], plugin=plugin(PER_USER, PER_CLIENT, timeout="1s"))
    envoys = [harness.Envoy(cfg, echo_port=echo.port, concurrency=2).start() for _ in range(2)]
    yield redis, replicas, envoys
    for e in envoys:
        e.stop()
    for r in replicas:
        r.stop()
    redis.stop()


def test_the_fleet_admits_exactly_the_bucket_per_key(fleet):
    _, replicas, envoys = fleet
    users = [uid(f"fleet{i}-") for i in range(3)]
    jobs = [(envoys[i % 2], users[i % 3]) for i in range(600)]
    with ThreadPoolExecutor(24) as ex:
        got = list(ex.map(lambda j: (j[1], get(j[0], j[1]).status), jobs))
    for u in users:
        codes = [s for (w, s) in got if w == u]
        assert len(codes) == 200
        assert codes.count(200) == 50, (u, {c: codes.count(c) for c in set(codes)})
        assert codes.count(429) == 150
    # Both replicas decided; between them every request exactly once.
    assert all(decisions([r]) > 0 for r in replicas)
    assert decisions(replicas) == 600
    # The filter's own counters agree, across both Envoys and their workers.
    assert sum(stat(e, "allowed.rule.per-user") for e in envoys) == 150
    assert sum(stat(e, "limited.rule.per-user") for e in envoys) == 450
    assert sum(stat(e, "global_over_limit") for e in envoys) == 450
    assert sum(stat(e, "global_errors.reason.timeout") for e in envoys) == 0


def test_the_same_admissions_as_envoys_native_filter(services, echo):
    """The same meshwall-rls, the same descriptors ((user, <x-user-id>) when the header is there,
    (remote_address, <peer>)), the same requests: the same statuses, one by one."""
    _, rls = services
    native = harness.Envoy(rh.envoy_config([rls.port]), echo_port=echo.port).start()
    wasm = harness.Envoy(rh.wasm_envoy_config([rls.port], plugin=plugin(PER_USER, PER_CLIENT)),
                         echo_port=echo.port).start()
    try:
        run = uuid.uuid4().hex[:8]
        kinds = ["five-a", "five-b", "blocked", "vip", None, "plain"]
        seq = [kinds[i % len(kinds)] for i in range(48)] + ["plain"] * 50
        got = {}
        for side, envoy in (("native", native), ("wasm", wasm)):
            # Each side its own users (the counters are shared), matching the same limits.
            name = lambda k: None if k is None else f"{k.split('-')[0]}-{run}-{side}-{k}"  # noqa: E731
            got[side] = [get(envoy, name(k)).status for k in seq]
        assert got["wasm"] == got["native"]
        by_kind = lambda k: [s for kk, s in zip(seq, got["wasm"]) if kk == k]  # noqa: E731
        assert by_kind("five-a") == [200] * 5 + [429] * 3
        assert set(by_kind("blocked")) == {429} and set(by_kind("vip")) == {200}
        assert set(by_kind(None)) == {200}
        assert by_kind("plain").count(200) == 50 and by_kind("plain")[-8:] == [429] * 8
    finally:
        native.stop()
        wasm.stop()


def test_a_429_has_retry_after_and_the_ratelimit_headers_of_the_service(services, echo):
    _, rls = services
    e = harness.Envoy(rh.wasm_envoy_config([rls.port], plugin=plugin(PER_USER)), echo_port=echo.port).start()
    try:
        user = uid("five-")
        first = get(e, user)
        assert first.status == 200
        assert first.header("ratelimit-policy").startswith('"per-user";q=5;w=')
        assert first.header("ratelimit").startswith('"per-user";r=4;t=')
        for _ in range(4):
            assert get(e, user).status == 200
        r = get(e, user)
        assert r.status == 429, r
        assert r.header("content-type") == "application/problem+json"
        assert r.json()["violated_policies"] == ["per-user"]
        assert 1 <= int(r.header("retry-after")) <= 86400       # the next fill of the bucket
        assert r.header("ratelimit").startswith('"per-user";r=0;t=')
    finally:
        e.stop()


def test_local_rules_run_first_and_a_locally_limited_flood_never_reaches_the_service(services, echo):
    _, rls = services
    local = {"name": "local", "key": [{"remote_address": {}}],
             "token_bucket": {"max_tokens": 5, "tokens_per_fill": 5, "fill_interval": "1h"}}
    e = harness.Envoy(rh.wasm_envoy_config([rls.port], plugin=plugin(local, PER_USER)), echo_port=echo.port).start()
    try:
        before = decisions([rls])
        user = uid("flood-")
        codes = [get(e, user).status for _ in range(30)]
        assert codes == [200] * 5 + [429] * 25
        assert decisions([rls]) - before == 5, "only what the local rule admitted was asked"
    finally:
        e.stop()


def test_shadow_global_rules_count_and_never_reject(services, echo):
    _, rls = services
    shadow = dict(PER_USER, shadow=True)
    e = harness.Envoy(rh.wasm_envoy_config([rls.port], plugin=plugin(shadow)), echo_port=echo.port).start()
    try:
        user = uid("blocked-")
        assert [get(e, user).status for _ in range(4)] == [200] * 4
        assert stat(e, "shadow_limited.rule.per-user") == 4
        assert stat(e, "limited.rule.per-user") == 0
    finally:
        e.stop()


def test_redis_stopped_deny_gives_503_never_200_and_allow_gives_200_counted(services, echo):
    redis, rls = services
    deny = harness.Envoy(rh.wasm_envoy_config([rls.port], plugin=plugin(PER_USER)), echo_port=echo.port).start()
    allow = harness.Envoy(rh.wasm_envoy_config([rls.port], plugin=plugin(PER_USER, failure_mode="allow")),
                          echo_port=echo.port).start()
    try:
        user = uid("fault-")
        assert [get(deny, user).status for _ in range(3)] == [200] * 3
        redis.stop()
        denied = [get(deny, user) for _ in range(10)]
        assert [r.status for r in denied] == [503] * 10
        assert all(r.header("retry-after") == "1" for r in denied)
        assert [get(allow, user).status for _ in range(10)] == [200] * 10
        assert stat(allow, "global_failure_mode_allowed") == 10
        assert stat(allow, "global_errors.reason.grpc_status") == 10, "meshwall-rls answers UNAVAILABLE"
        assert stat(deny, "global_failure_mode_denied") == 10
        # Back on the same port: limits again, without a restart of Envoy or meshwall-rls.
        redis.start()
        deadline = time.monotonic() + 15
        while get(deny, uid("probe-")).status != 200:
            assert time.monotonic() < deadline, "no recovery after the Redis restart"
            time.sleep(0.2)
    finally:
        deny.stop()
        allow.stop()


def test_a_server_slower_than_the_timeout_gets_the_failure_mode_within_it(echo):
    redis = rh.Redis().start()
    rls = rh.Rls(LIMITS, redis.url, "--redis-timeout", "3s").start()
    deny = harness.Envoy(rh.wasm_envoy_config([rls.port], plugin=plugin(PER_USER)), echo_port=echo.port).start()
    allow = harness.Envoy(rh.wasm_envoy_config([rls.port], plugin=plugin(PER_USER, failure_mode="allow")),
                          echo_port=echo.port).start()
    try:
        user = uid("slow-")
        assert get(deny, user).status == 200
        assert redis.cli("CLIENT", "PAUSE", "2500", "ALL") == "OK"
        for envoy, want in ((deny, 503), (allow, 200)):
            t0 = time.monotonic()
            r = get(envoy, user)
            took = time.monotonic() - t0
            assert r.status == want, r
            assert took < 0.25 + 1.25, took       # the filter's timeout, not the server's 2.5–3 s
            assert stat(envoy, "global_errors.reason.timeout") == 1
    finally:
        deny.stop()
        allow.stop()
        rls.stop()
        redis.stop()


# (mode of the fake server, status with failure_mode deny, the reason counted or None)
MALFORMED = [
    ("ok", 200, None),
    ("over", 429, None),
    ("garbage", 503, "bad_response"),
    ("mismatch", 503, "bad_response"),
    ("huge", 503, "bad_response"),
    ("unknown", 503, "unknown_code"),
    ("internal", 503, "grpc_status"),
    ("http503", 503, "grpc_status"),
    ("truncated", 503, None),          # Envoy's gRPC client refuses the frame (an error status)
    ("slow", 503, "timeout"),
]
REASONS = ["dispatch", "timeout", "grpc_status", "bad_response", "unknown_code"]


def test_malformed_answers_follow_the_failure_mode_and_never_crash_the_vm(echo):
    fake = rh.FakeRls().start()
    cfg = rh.wasm_envoy_config([fake.port], plugin=plugin(PER_USER), health_checks=False)
    e = harness.Envoy(cfg, echo_port=echo.port).start()
    try:
        for mode, want, reason in MALFORMED:
            before = {r: stat(e, f"global_errors.reason.{r}") for r in REASONS}
            t0 = time.monotonic()
            r = get(e, f"mode-{mode}-{uuid.uuid4().hex[:6]}")
            took = time.monotonic() - t0
            assert r.status == want, (mode, r)
            assert took < 0.25 + 1.25, mode
            after = {r: stat(e, f"global_errors.reason.{r}") for r in REASONS}
            grew = {k for k in REASONS if after[k] > before[k]}
            if want == 503:
                assert r.header("retry-after") == "1", mode
                assert len(grew) == 1 and sum(after.values()) == sum(before.values()) + 1, (mode, grew)
                if reason:
                    assert grew == {reason}, (mode, grew, took, fake.errors)
            else:
                assert not grew, (mode, grew)
        # The service's headers are checked: what could split a header or reframe the message
        # is dropped; the request header the service asserts replaces the client's.
        r = e.request("GET", "/", {"x-user-id": "mode-headers", "x-user-tier": "platinum"})
        assert r.status == 200
        assert r.header("x-ok") == "1"
        assert r.header("x-bad") is None and r.header("x-injected") is None
        upstream = dict((k, v) for k, v in r.json()["headers"] if k in ("x-user-tier", "host"))
        assert upstream["x-user-tier"] == "gold"
        assert upstream["host"] != "evil"
        # The VM is alive and well.
        assert get(e).status == 200
        assert "panicked" not in e.log_text() and "Wasm VM failed" not in e.log_text()
    finally:
        e.stop()
        fake.stop()


@pytest.mark.parametrize("stop_iteration", [True, False], ids=["allow_on_headers_stop_iteration", "istio"])
@pytest.mark.parametrize("proto", ["h1", "h2"])
def test_a_waiting_request_holds_its_body_and_a_refused_one_reaches_nothing(services, proto, stop_iteration):
    """With allow_on_headers_stop_iteration the body arrives in the filter (held) while the request
    waits; without it (Istio's WasmPlugin) Envoy holds it. Either way it all goes on after an OK."""
    _, rls = services
    with RawUpstream() as up:
        cfg = rh.wasm_envoy_config([rls.port], plugin=plugin(PER_USER))
        if not stop_iteration:
            for p in harness.wasm_filters(cfg):
                p.pop("allow_on_headers_stop_iteration", None)
        e = harness.Envoy(cfg, upstreams={"backend": up.port}).start()
        try:
            body = b"x" * 20_000
            mark = up.mark()
            r = raw_client.request(proto, e.port, "POST", "/upload", [("x-user-id", uid("vip-"))], body)
            assert r.status == 200, r
            [a] = up.since(mark)
            assert a.complete and bytes(a.body) == body
            # A body (and trailers) still arriving while the request waits.
            mark = up.mark()
            extra = {"trailers": [("x-t", "1")]} if proto == "h2" else {"content_length": True}
            r = raw_client.request(proto, e.port, "POST", "/upload", [("x-user-id", uid("vip-"))],
                                   pieces=[b"p" * 1000] * 5, delay=0.02, **extra)
            assert r.status == 200, r
            [a] = up.since(mark)
            assert a.complete and bytes(a.body) == b"p" * 5000
            mark = up.mark()
            r = raw_client.request(proto, e.port, "POST", "/upload",
                                   [("x-user-id", uid("blocked-")), ("x-probe", "refused")], body)
            assert r.status == 429, r
            time.sleep(0.3)
            assert up.since(mark) == [], "not even the headers of a refused request"
        finally:
            e.stop()


def test_an_unknown_cluster_fails_each_call_at_once_and_counts_it(echo):
    cfg = rh.wasm_envoy_config([1], plugin=plugin(PER_USER, cluster="no_such_cluster"), health_checks=False)
    e = harness.Envoy(cfg, echo_port=echo.port).start()
    try:
        assert [get(e, "u").status for _ in range(3)] == [503] * 3
        assert stat(e, "global_errors.reason.dispatch") == 3
        assert get(e).status == 200, "no descriptor, no call; the VM is fine"
    finally:
        e.stop()
