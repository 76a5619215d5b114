"""meshwall-rls behind the real Envoy's NATIVE global rate limit filter (envoy/rls/envoy.yaml):
exactness across a fleet (2 Envoys × 2 workers, 2 replicas, 1 Redis), refill over time, and
faults (Redis stopped and restarted, a replica killed, a server slower than Envoy's timeout).
"""

import math
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

import harness
import rls_harness as rh

LIMITS = """
domain: edge
descriptors:
  - key: user
    rate_limit:
      token_bucket: {max_tokens: 50, tokens_per_fill: 1, fill_interval: 24h}
  - key: user
    value: refill-*
    rate_limit:
      token_bucket: {max_tokens: 5, tokens_per_fill: 5, fill_interval: 1s}
  - key: user
    value: window-*
    rate_limit: {unit: second, requests_per_unit: 3}
"""


def uid(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def get(envoy, user: str):
    return envoy.request("GET", "/", {"x-user-id": user}, timeout=10)


def statuses(jobs, threads: int = 24) -> list:
    """(envoy, user) pairs sent concurrently → (user, status) in order."""
    with ThreadPoolExecutor(threads) as ex:
        return list(ex.map(lambda j: (j[1], get(j[0], j[1]).status), jobs))


@pytest.fixture
def fleet(echo):
    """1 Redis, 2 meshwall-rls replicas, 2 Envoys (2 workers each, failure_mode_deny)."""
    redis = rh.Redis().start()
    # 1 s rather than the example's 250 ms, and the Redis deadline below it (docs/rls.md) rather
    # than the 100 ms default: the fleet shares two cores with the load, and a call that timed
    # out would be a 503 (and perhaps charged), not a decision.
    replicas = [rh.Rls(LIMITS, redis.url, "--redis-timeout", "800ms").start() for _ in range(2)]
    envoys = [harness.Envoy(rh.envoy_config([r.port for r in replicas], timeout="1s"), echo_port=echo.port,
                            concurrency=2).start() for _ in range(2)]
    yield redis, replicas, envoys
    for e in envoys:
        e.stop()
    for r in replicas:
        r.stop()
    redis.stop()


def test_fleet_admits_exactly_the_bucket_per_key(fleet):
    redis, replicas, envoys = fleet
    users = [uid(f"fleet{i}-") for i in range(3)]
    jobs = [(envoys[i % 2], users[i % 3]) for i in range(600)]
    got = statuses(jobs)
    for u in users:
        codes = [s for (w, s) in got if w == u]
        assert len(codes) == 200
        assert codes.count(200) == 50, (u, {c: codes.count(c) for c in set(codes)})
        assert codes.count(429) == 150
    # Both replicas decided, and between them every request exactly once.
    oks = [r.metric('meshwall_rls_decisions_total{domain="edge",code="ok"}') for r in replicas]
    overs = [r.metric('meshwall_rls_decisions_total{domain="edge",code="over_limit"}') for r in replicas]
    assert all(o + v > 0 for o, v in zip(oks, overs)), (oks, overs)
    assert sum(oks) == 150 and sum(overs) == 450
    # Envoy's own counters agree.
    assert sum(e.stat("ratelimit.over_limit") for e in envoys) == 450
    # 429s carry the draft headers Envoy builds from the descriptor statuses.
    r = get(envoys[0], users[0])
    assert r.status == 429 and r.header("x-ratelimit-limit", ) and r.header("x-ratelimit-remaining") == "0"


def test_refill_admits_at_the_bucket_rate(fleet):
    _, _, envoys = fleet
    user = uid("refill-")
    seen = []
    t0 = time.monotonic()
    while time.monotonic() - t0 < 3.4:
        t = time.monotonic() - t0
        seen.append((t, get(envoys[len(seen) % 2], user).status))
        time.sleep(0.01)
    admitted = [t for t, s in seen if s == 200]
    assert {s for _, s in seen} <= {200, 429}
    first, last = admitted[0], seen[-1][0]
    # Full at the first request (5), then 5 more at every whole second after it.
    lo = 5 * (1 + math.floor(last - first - 0.1))
    hi = 5 * (1 + math.floor(last - first + 0.1))
    assert lo <= len(admitted) <= hi, (len(admitted), lo, hi, last - first)
    # And per interval: exactly 5 admissions in each second since the first (the fill lands
    # within ±0.1 s of the whole second on the client's clock).
    for k in range(3):
        assert first + k + 0.9 < last
        n = sum(1 for t in admitted if first + k - 0.1 <= t < first + k + 0.9)
        assert n == 5, (k, n, [round(t - first, 3) for t in admitted])


def test_fixed_window_admits_per_second(fleet):
    _, _, envoys = fleet
    user = uid("window-")
    seen = []
    t0 = time.time()
    while time.time() - t0 < 2.5:
        seen.append((time.time(), get(envoys[len(seen) % 2], user).status))
        time.sleep(0.01)
    admitted = sum(1 for _, s in seen if s == 200)
    seconds = {int(t) for t, _ in seen}
    assert 3 * (len(seconds) - 1) <= admitted <= 3 * len(seconds), (admitted, len(seconds))


def test_redis_stopped_deny_gives_503_allow_gives_200_and_restart_recovers(fleet, echo):
    redis, replicas, envoys = fleet
    allow = harness.Envoy(rh.envoy_config([r.port for r in replicas], failure_mode_deny=False),
                          echo_port=echo.port).start()
    default_status = harness.Envoy(rh.envoy_config([r.port for r in replicas], status_on_error=False),
                                   echo_port=echo.port).start()
    try:
        user = uid("fault-")
        assert [get(envoys[0], user).status for _ in range(3)] == [200] * 3
        redis.stop()
        deny = [get(envoys[i % 2], user).status for i in range(10)]
        assert deny == [503] * 10, deny                      # status_on_error: 503
        assert [get(default_status, user).status for _ in range(3)] == [500] * 3   # Envoy's default
        allowed = [get(allow, user).status for _ in range(10)]
        assert allowed == [200] * 10, allowed
        assert allow.stat("ratelimit.failure_mode_allowed") == 10
        assert allow.stat("ratelimit.error") == 10
        unavailable = sum(r.metric("meshwall_rls_unavailable_total") for r in replicas)
        # 23 requests while Redis is down: each got its failure-mode status above; nearly all were
        # answered UNAVAILABLE by a replica (on a loaded machine one may reach Envoy's 1 s timeout
        # first, while the replica still waits for its Redis connection).
        assert unavailable >= 20, unavailable
        errors = sum(r.metric('meshwall_rls_redis_errors_total{kind="connection"}') +
                     r.metric('meshwall_rls_redis_errors_total{kind="timeout"}') for r in replicas)
        assert errors >= unavailable, (errors, unavailable)   # every UNAVAILABLE had its Redis error
        assert replicas[0].http("/readyz")[0] == 503

        # Back, on the same port: no restart of Envoy or meshwall-rls. (Redis ran without
        # persistence here, so the counters start afresh.)
        redis.start()
        deadline = time.monotonic() + 15
        probe = uid("probe-")
        while not all(get(envoys[i % 2], probe).status == 200 for i in range(8)):
            assert time.monotonic() < deadline, "limits did not come back after the Redis restart"
            time.sleep(0.2)
            probe = uid("probe-")
        fresh = uid("after-")
        got = statuses([(envoys[i % 2], fresh) for i in range(70)], threads=8)
        codes = [s for _, s in got]
        assert codes.count(200) == 50 and codes.count(429) == 20, codes
        assert replicas[1].http("/readyz")[0] == 200
    finally:
        allow.stop()
        default_status.stop()


def test_a_killed_replica_leaves_traffic_to_the_other(fleet):
    _, replicas, envoys = fleet
    warm = uid("warm-")
    statuses([(envoys[i % 2], warm) for i in range(20)])
    replicas[0].kill()
    user = uid("kill-")
    got = statuses([(envoys[i % 2], user) for i in range(120)], threads=8)
    codes = [s for _, s in got]
    assert set(codes) <= {200, 429}, {c: codes.count(c) for c in set(codes)}
    assert codes.count(200) == 50
    assert replicas[1].metric('meshwall_rls_decisions_total{domain="edge",code="over_limit"}') >= 70


def test_a_server_slower_than_the_timeout_gets_the_failure_mode_within_it(echo):
    redis = rh.Redis().start()
    rls = rh.Rls(LIMITS, redis.url, "--redis-timeout", "3s").start()
    deny = harness.Envoy(rh.envoy_config([rls.port], timeout="0.25s"), echo_port=echo.port).start()
    allow = harness.Envoy(rh.envoy_config([rls.port], timeout="0.25s", failure_mode_deny=False),
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
            assert took < 0.25 + 1.25, took      # Envoy's timeout, not the server's 3 s
        assert allow.stat("ratelimit.failure_mode_allowed") == 1
    finally:
        deny.stop()
        allow.stop()
        rls.stop()
        redis.stop()
