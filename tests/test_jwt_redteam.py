"""Red-team check of the jwt filter against the real Envoy (`--concurrency 2`).

An independent set of valid and attack tokens (tests/jwt_redteam_gen.py, `cryptography` only) is
run through the shipped envoy/jwt.yaml: same providers, rules and options, with the inline
provider's JWKS replaced by keys generated here and the remote provider's JWKS served by a local
server. Every valid token of the 12 algorithms must reach the upstream; every attack must get a
401 from the filter with `error="invalid_token"`, without the token in the reply or in the log.
"""

from __future__ import annotations

import json
import time
import urllib.parse

import pytest

import harness
from jwt_redteam_gen import ALGS, P256_N, P384_N, b64u_decode, int_bytes, rsa_jwk
from jwt_redteam_cases import (ATTACKER, ATTACKER_HITS, ATTACKER_PORT, ATTACKS, INLINE, MISSING, PATH, R_ISS, REMOTE,
                               SENT, VALID, claims, good, resign, sig_of)
import jwt_redteam_sigs  # noqa: F401,E402  (registers more VALID and ATTACKS cases)


# --------------------------------------------------------------------------------------------
# Envoy
# --------------------------------------------------------------------------------------------
def _jwks_handler(method, path, headers, body):
    return 200, [("Content-Type", "application/json")], json.dumps(REMOTE.jwks()).encode()


def _attacker_handler(method, path, headers, body):
    ATTACKER_HITS.append(path)
    doc = {"keys": [dict(rsa_jwk(ATTACKER.rsa.public_key(), k)) for k in ("rsa-1", "attacker")]}
    return 200, [("Content-Type", "application/json")], json.dumps(doc).encode()


# Every test runs against both signature paths: `host` (Envoy's verify_signature, BoringSSL,
# for RS256/384/512 and ES256/384) and `wasm` (jwt-simple in the module for every algorithm).
@pytest.fixture(scope="module", params=["host", "wasm"])
def env(echo, request):
    cfg = harness.load_config("jwt")
    plugin = harness.plugin_config(cfg, "meshwall.jwt")
    plugin["verifier"] = request.param
    inline = plugin["providers"]["example-inline"]
    inline["local_jwks"] = {"inline_jwks": INLINE.jwks()}
    # a query parameter as a second source, to send two different tokens in one request
    inline["from_headers"] = [{"name": "authorization", "value_prefix": "Bearer "}]
    inline["from_params"] = ["access_token"]
    harness.set_plugin_config(cfg, "meshwall.jwt", plugin)
    with harness.EchoServer(_jwks_handler) as jwks, harness.EchoServer(_attacker_handler) as atk:
        ATTACKER_PORT[0] = atk.port
        with harness.Envoy(cfg, concurrency=2, echo_port=echo.port, upstreams={"jwks": jwks.port}) as e:
            # wait for the remote JWKS to be fetched
            deadline = time.monotonic() + 30
            while True:
                r = e.request("GET", PATH, {"Authorization": "Bearer " + good("RS256", True, REMOTE,
                                                                            payload=claims(remote=True))})
                if r.status == 200 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert r.status == 200, r
            e.verifier = request.param
            yield e
            log = e.log_text()
    # nothing of any attack token was ever logged
    leaked = [s for s in SENT if s in log]
    assert not leaked, f"token material in the Envoy log: {leaked[:3]}"


# Each attack is built once per session, so both paths judge the very same bytes: some cases
# (a truncated signature, say) are malformed or merely wrong depending on the random signature.
_BUILT: dict = {}


def _request_of(name, build):
    if name not in _BUILT:
        _BUILT[name] = build()
    out = _BUILT[name]
    if isinstance(out, dict):
        return out["path"], out["headers"]
    return PATH, [("Authorization", "Bearer " + out)]


def _token_pieces(path, headers):
    pieces = set()
    values = [v for _, v in headers] + [urllib.parse.unquote(path)]
    for v in values:
        for word in v.replace("=", " ").replace("&", " ").replace(",", " ").split():
            for piece in word.split("."):
                if len(piece) >= 16:
                    pieces.add(piece)
    return pieces


def _assert_problem(r, status):
    assert r.status == status, r
    assert r.header("content-type") == "application/problem+json", r
    assert r.header("server") != "meshwall-echo", r           # answered by the filter, not the upstream
    assert r.json()["status"] == status


# The verdict of every case on each path: (status, WWW-Authenticate, body). Pytest runs all the
# tests of one `env` parameter before the other's, so the second path's run compares each case
# with the first's: same status AND same reason (the challenge's error_description, the body).
VERDICTS: dict = {"host": {}, "wasm": {}}


def _same_verdict_on_both_paths(env, case, r):
    mine = (r.status, r.header("www-authenticate"), r.body if r.status != 200 else None)
    VERDICTS[env.verifier][case] = mine
    other = VERDICTS["wasm" if env.verifier == "host" else "host"].get(case)
    if other is not None:
        assert mine == other, f"{case}: {env.verifier} {mine} but the other path {other}"


SPOOFED = [("x-user-id", "spoofed"), ("x-user-roles", "admin"), ("x-tenant", "evil"), ("x-jwt-payload", "e30")]


def _upstream_headers(r) -> dict:
    out: dict = {}
    for k, v in r.json()["headers"]:
        out.setdefault(k, []).append(v.encode("latin-1").decode("utf-8"))   # echo decodes as latin-1
    return out


@pytest.mark.parametrize("name", list(VALID))
def test_valid_token_passes(env, name):
    build, sub = VALID[name]
    tok = build()
    r = env.request("GET", PATH, [("Authorization", "Bearer " + tok)] + SPOOFED)
    _same_verdict_on_both_paths(env, "valid:" + name, r)
    assert r.status == 200, r
    seen = _upstream_headers(r)
    assert "authorization" not in seen                      # forward: false
    assert seen.get("x-user-id") == [sub]                   # written by the filter, spoofed one gone
    payload = json.loads(b64u_decode(tok.split(".")[1]))
    roles = payload.get("roles")
    assert seen.get("x-user-roles") == ([",".join(roles)] if roles else None)
    if payload["iss"] == R_ISS:
        assert seen.get("x-jwt-payload") == [tok.split(".")[1]]
        assert "x-tenant" not in seen                       # no org.tenant claim
    else:                                                   # headers of the other provider: stripped
        assert "x-jwt-payload" not in seen and "x-tenant" not in seen


def test_valid_token_in_query_param(env):
    tok = good("PS384")
    r = env.request("GET", PATH + "?a=1&access_token=" + tok + "&b=2", SPOOFED)
    assert r.status == 200, r
    assert r.json()["path"] == PATH + "?a=1&b=2"            # the token is taken out of the query
    assert _upstream_headers(r).get("x-user-id") == ["alice"]


@pytest.mark.parametrize("method,path,headers", [
    ("GET", "/healthz", []),                                                     # no token needed
    ("GET", "/public/x", []),                                                    # allow_missing
    ("OPTIONS", "/admin/x", [("Origin", "https://a.example"), ("Access-Control-Request-Method", "DELETE")]),
])
def test_spoofed_claim_headers_never_reach_upstream(env, method, path, headers):
    r = env.request(method, path, headers + SPOOFED)
    assert r.status == 200, r
    seen = _upstream_headers(r)
    for h, _ in SPOOFED:
        assert h not in seen, (h, r)


@pytest.mark.parametrize("name", list(ATTACKS))
def test_attack_is_401(env, name):
    path, headers = _request_of(name, ATTACKS[name])
    pieces = _token_pieces(path, headers)
    SENT.extend(p for p in pieces if len(p) >= 24)
    r = env.request("GET", path, headers + [("x-user-id", "spoofed")])
    _same_verdict_on_both_paths(env, "attack:" + name, r)
    _assert_problem(r, 401)
    wa = r.header("www-authenticate") or ""
    assert wa.startswith('Bearer realm="meshwall"'), r
    if name in MISSING:
        assert "error=" not in wa, r
    else:
        assert 'error="invalid_token"' in wa, r
    blob = r.body.decode("utf-8", "replace") + " ".join(v for _, v in r.headers)
    echoed = [p for p in pieces if p in blob]
    assert not echoed, f"reply echoes token material: {echoed[:2]}"


def test_high_s_ecdsa_is_accepted_like_jwt_simple(env):
    """ECDSA (r, n − s) verifies as well as (r, s) (RFC 7518 does not require low-s, and
    jwt-simple's p256/p384 verifiers accept both): the filter must answer it, not crash. A replay
    check must therefore never key on the signature bytes (the cache keys on the whole token)."""
    for alg, n, size in (("ES256", P256_N, 32), ("ES384", P384_N, 48)):
        t = good(alg)
        sig = sig_of(t)
        r, s = int.from_bytes(sig[:size], "big"), int.from_bytes(sig[size:], "big")
        high = resign(t, int_bytes(r, size) + int_bytes(n - s, size))
        res = env.request("GET", PATH, {"Authorization": "Bearer " + high})
        assert res.status == 200, res


def test_both_paths_were_compared(env):
    """Runs after the cases of this path: when the other path ran first, every case was compared."""
    other = VERDICTS["wasm" if env.verifier == "host" else "host"]
    if other:
        mine = VERDICTS[env.verifier]
        assert set(mine) == set(other), sorted(set(mine) ^ set(other))[:10]


def test_attacker_urls_never_fetched(env):
    for name in [n for n in ATTACKS if n.startswith(("jku-", "x5u-"))]:
        path, headers = _request_of(name, ATTACKS[name])
        assert env.request("GET", path, headers).status == 401
    time.sleep(1)
    assert ATTACKER_HITS == []


def test_envoy_survived_all_attacks(env):
    # runs last in this module: both workers still verify (several requests, fresh connections)
    for alg in ALGS:
        r = env.request("GET", PATH, {"Authorization": "Bearer " + good(alg)})
        assert r.status == 200, (alg, r)
    r = env.request("GET", "/admin/x", {"Authorization": "Bearer " + good("EdDSA", payload=claims(roles=["admin"]))})
    assert r.status == 200, r
    r = env.request("GET", "/admin/x", {"Authorization": "Bearer " + good("EdDSA", payload=claims(roles=["reader"]))})
    _assert_problem(r, 403)
    assert 'error="insufficient_scope"' in r.header("www-authenticate")
    assert env.stat("meshwall.jwt.allowed") > 0


HOST_ALGS = ["RS256", "RS384", "RS512", "ES256", "ES384"]


def test_signatures_checked_on_the_chosen_path(env):
    """`verifier: host`: RS* and ES* go to Envoy's crypto, PS*, EdDSA and HS* stay in the module
    (gauge `verifier_host_<alg>`, counters `signature_checks_host` / `_wasm`); `verifier: wasm`:
    everything in the module."""
    before_host = env.stat("meshwall.jwt.signature_checks_host")
    before_wasm = env.stat("meshwall.jwt.signature_checks_wasm")
    for alg in ALGS:
        host_alg = env.verifier == "host" and alg in HOST_ALGS
        assert env.stat("meshwall.jwt.verifier_host_" + alg.lower()) == (1 if host_alg else 0), alg  # one gauge, set by both workers
        r = env.request("GET", PATH, {"Authorization": "Bearer " + good(alg, payload=claims(jti=alg + str(time.time())))})
        assert r.status == 200, (alg, r)
        after_host = env.stat("meshwall.jwt.signature_checks_host")
        after_wasm = env.stat("meshwall.jwt.signature_checks_wasm")
        assert (after_host - before_host, after_wasm - before_wasm) == ((1, 0) if host_alg else (0, 1)), alg
        before_host, before_wasm = after_host, after_wasm


def test_one_verification_serves_both_workers(env):
    """The verified-token table shared by the workers (default `shared_cache_size`): 20 requests
    on fresh connections, spread over the 2 workers, cost one signature check in all."""
    tok = good("ES256", payload=claims(jti="shared-" + env.verifier))

    def checks():
        return env.stat("meshwall.jwt.signature_checks_host") + env.stat("meshwall.jwt.signature_checks_wasm")

    c0, hits0 = checks(), env.stat("meshwall.jwt.shared_cache_hit") + env.stat("meshwall.jwt.cache_hit")
    for _ in range(20):
        r = env.request("GET", PATH, {"Authorization": "Bearer " + tok})
        assert r.status == 200, r
    assert checks() - c0 == 1
    assert env.stat("meshwall.jwt.shared_cache_hit") + env.stat("meshwall.jwt.cache_hit") - hits0 == 19
