"""meshwall-rls against bad input (straight gRPC, and through Envoy), bad configuration files,
health, readiness and graceful shutdown. Real redis-server and meshwall-rls processes.
"""

import json
import signal
import socket
import subprocess
import threading
import time
import uuid

import pytest

import harness
import rls_harness as rh

LIMITS = """
domain: edge
descriptors:
  - key: user
    rate_limit:
      token_bucket: {max_tokens: 50, tokens_per_fill: 1, fill_interval: 24h}
"""


def req(user: str, domain: str = "edge", **kw) -> dict:
    return {"domain": domain, "descriptors": [{"entries": [["user", user]]}], **kw}


@pytest.fixture(scope="module")
def server():
    redis = rh.Redis().start()
    rls = rh.Rls(LIMITS, redis.url).start()
    probe = rh.Probe(rls.port)
    yield redis, rls, probe
    probe.close()
    rls.stop()
    redis.stop()


def test_a_valid_request_is_decided(server):
    _, _, probe = server
    r = probe.ask(req("alice"))
    assert r["overall_code"] == "OK"
    assert r["statuses"][0]["limit_remaining"] == 49
    assert r["statuses"][0]["current_limit"]["requests_per_unit"] == 50


@pytest.mark.parametrize("raw_hex, why", [
    ("ffff", "truncated varint"),
    ("0a05", "length beyond the message"),
    ("12020a", "descriptor with a cut-off entry"),
    ("0a0361", "domain cut short"),
    ("1a0101", "wire type of an unknown field"),
])
def test_malformed_protobuf_is_refused_and_the_server_lives_on(server, raw_hex, why):
    _, rls, probe = server
    r = probe.ask({"raw_hex": raw_hex})
    assert "grpc_code" in r, (why, r)
    # tonic's decoder answers INTERNAL for a message it cannot decode.
    assert r["grpc_code"] in ("Internal", "InvalidArgument"), (why, r)
    assert probe.ask(req("after-" + raw_hex))["overall_code"] == "OK"
    assert rls.proc.poll() is None


def test_garbage_on_the_grpc_port_does_not_hurt(server):
    _, rls, probe = server
    for junk in (b"\x00" * 64, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\xff" * 100):
        with socket.create_connection(("127.0.0.1", rls.port), timeout=2) as s:
            s.sendall(junk)
            try:
                s.recv(1024)
            except OSError:
                pass
    assert probe.ask(req("after-garbage"))["overall_code"] == "OK"
    assert rls.proc.poll() is None


def test_requests_over_the_bounds_are_invalid_argument(server):
    _, rls, probe = server
    cases = [
        ({"domain": "", "descriptors": [{"entries": [["user", "a"]]}]}, "empty_domain"),
        ({"domain": "edge", "descriptors": []}, "no_descriptors"),
        ({"domain": "edge", "descriptors": [{"entries": [["user", "a"]]}] * 65}, "too_many_descriptors"),
        ({"domain": "edge", "descriptors": [{"entries": [["k", "v"]] * 33}]}, "too_many_entries"),
        ({"domain": "edge", "descriptors": [{"entries": [["user", "a"]], "is_negative_hits": True}]}, "negative_hits"),
    ]
    for r, reason in cases:
        got = probe.ask(r)
        assert got.get("grpc_code") == "InvalidArgument" and reason in got["message"], (reason, got)
        assert rls.metric(f'meshwall_rls_invalid_requests_total{{reason="{reason}"}}') >= 1


def test_unknown_domain_is_ok_and_counted(server):
    _, rls, probe = server
    before = rls.metric("meshwall_rls_unknown_domain_total")
    r = probe.ask(req("a", domain="nobody-configured-this"))
    assert r["overall_code"] == "OK" and r["statuses"][0]["current_limit"] is None
    assert rls.metric("meshwall_rls_unknown_domain_total") == before + 1


def test_huge_values_get_a_hashed_key_and_oversized_messages_are_refused(server):
    redis, rls, probe = server
    big = "x" * 100_000
    for expected in (49, 48):
        r = probe.ask(req(big))
        assert r["overall_code"] == "OK" and r["statuses"][0]["limit_remaining"] == expected
    other = probe.ask(req(big[:-1] + "y"))
    assert other["statuses"][0]["limit_remaining"] == 49, "another huge value, another counter"
    keys = redis.cli("--scan", "--pattern", "meshwall:b:edge#*").split()
    assert len(keys) == 2 and all(len(k) <= 64 for k in keys), keys
    assert rls.metric("meshwall_rls_hashed_keys_total") == 3
    # Over --max-message-bytes (256 KiB): refused by the gRPC layer, nothing stored.
    r = probe.ask(req("z" * 300_000))
    assert r.get("grpc_code") in ("OutOfRange", "ResourceExhausted"), r
    assert rls.proc.poll() is None


def test_a_huge_header_through_envoy_is_one_bounded_counter(server, echo):
    _, rls, _ = server
    envoy = harness.Envoy(rh.envoy_config([rls.port]), echo_port=echo.port).start()
    try:
        user = "h" * 30_000 + uuid.uuid4().hex
        codes = [envoy.request("GET", "/", {"x-user-id": user}).status for _ in range(52)]
        assert codes == [200] * 50 + [429] * 2
    finally:
        envoy.stop()


def test_health_and_readiness(server):
    _, rls, probe = server
    assert probe.ask({"health": ""}) == {"health": 1}
    assert probe.ask({"health": "envoy.service.ratelimit.v3.RateLimitService"}) == {"health": 1}
    assert probe.ask({"health": "no.such.Service"}).get("grpc_code") == "NotFound"
    assert rls.http("/healthz") == (200, "ok\n")
    assert rls.http("/readyz") == (200, "ready\n")
    assert rls.http("/nope")[0] == 404
    text = rls.http("/metrics")[1]
    for name in ("meshwall_rls_decisions_total", "meshwall_rls_over_limit_total", "meshwall_rls_redis_latency_seconds_bucket",
                 "meshwall_rls_redis_errors_total", "meshwall_rls_unavailable_total"):
        assert f"# TYPE {name.removesuffix('_bucket')}" in text, name


def test_logs_are_json_lines(server):
    _, rls, _ = server
    lines = [json.loads(l) for l in rls.log_text().splitlines() if l.strip()]
    start = [l for l in lines if l["fields"].get("message") == "meshwall-rls listening"]
    assert start and start[0]["level"] == "INFO" and start[0]["fields"]["grpc"] == f"127.0.0.1:{rls.port}"


@pytest.mark.parametrize("limits, field", [
    ("domain: edge\ndescriptors:\n  - key: user\n    rate_limit: {unit: fortnight, requests_per_unit: 5}\n",
     "descriptors[0].rate_limit.unit"),
    ("domain: edge\ndescriptors:\n  - key: user\n    rate_limit:\n      token_bucket: {max_tokens: 5, tokens_per_fill: 1, fill_interval: 5}\n",
     "descriptors[0].rate_limit.token_bucket.fill_interval"),
    ("domain: edge\ndescriptors:\n  - key: user\n    ratelimit: {unit: second, requests_per_unit: 5}\n",
     "descriptors[0].ratelimit"),
    ("domain: edge\ndescriptors:\n  - key: a\n  - key: a\n", "descriptors[1]"),
    ("descriptors: []\n", "domain"),
    ("domain: [unclosed\n", ""),
])
def test_a_bad_config_refuses_to_start_with_one_line_naming_the_field(limits, field):
    rls = rh.Rls(limits, "redis://127.0.0.1:1")
    p = subprocess.run(rls.args, capture_output=True, text=True, timeout=30)
    assert p.returncode == 2, p
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, lines
    entry = json.loads(lines[0])
    assert entry["level"] == "ERROR"
    msg = entry["fields"]["message"]
    assert msg.startswith(f"config error: {rls.config}: {field}"), msg
    assert not p.stdout


def test_sigterm_finishes_in_flight_requests_then_exits():
    redis = rh.Redis().start()
    rls = rh.Rls(LIMITS, redis.url, "--redis-timeout", "3s", "--drain-delay", "0.5s").start()
    probe = rh.Probe(rls.port)
    try:
        assert probe.ask(req("warm"))["overall_code"] == "OK"
        assert redis.cli("CLIENT", "PAUSE", "1200", "ALL") == "OK"
        answer = {}
        t = threading.Thread(target=lambda: answer.update(probe.ask(req("in-flight"))))
        t.start()
        time.sleep(0.3)
        t0 = time.monotonic()
        rls.kill(signal.SIGTERM)
        time.sleep(0.2)
        assert rls.http("/readyz") == (503, "draining\n")   # during --drain-delay
        t.join(timeout=10)
        assert answer.get("overall_code") == "OK", answer   # the in-flight request finished
        assert rls.proc.wait(timeout=10) == 0
        assert time.monotonic() - t0 < 5
        log = rls.log_text()
        assert '"shutting down: NOT_SERVING, finishing in-flight requests"' in log and '"signal":"SIGTERM"' in log
        assert '"meshwall-rls stopped"' in log
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", rls.port), timeout=1).close()
    finally:
        probe.close()
        rls.stop()
        redis.stop()
