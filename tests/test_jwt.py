"""`jwt` filter against the real Envoy (envoy/jwt.yaml with a test configuration, --concurrency 2).

One Envoy serves the module. Providers: `local` (inline JWKS with every key type), `remote`
(JWKS fetched from a local HTTP server through the `jwks` cluster, rotated during the tests),
`down` (JWKS cluster pointing at a closed port).
"""

from __future__ import annotations

import base64
import copy
import json
import threading
import time

import pytest

import harness
from jwt_tokens import ALGS, P256_N, Keyring, b64, b64d, claims

LOCAL_ISS = "https://local.test"
REMOTE_ISS = "https://remote.test"
DOWN_ISS = "https://down.test"
PLUGIN = "meshwall.jwt"


class JwksServer:
    """A JWKS endpoint whose document and status the tests change; counts fetches."""

    def __init__(self, doc: dict):
        self.doc = doc
        self.status = 200
        self.hits = 0
        self.lock = threading.Lock()
        self.srv = harness.EchoServer(handler=self.handle)

    def handle(self, method, path, headers, body):
        with self.lock:
            self.hits += 1
            if path != "/.well-known/jwks.json":
                return 404, [], b""
            return self.status, [("Content-Type", "application/json")], json.dumps(self.doc).encode()


def plugin_config(local: Keyring) -> dict:
    claim_headers = [
        {"header_name": "x-user-id", "claim_name": "sub"},
        {"header_name": "x-user-roles", "claim_name": "roles"},
        {"header_name": "x-tenant", "claim_name": "org.tenant"},
    ]
    return {
        "providers": {
            "local": {
                "issuer": LOCAL_ISS,
                "audiences": ["api", "api2"],
                "local_jwks": {"inline_string": json.dumps(local.jwks())},
                "claim_to_headers": claim_headers,
                "forward_payload_header": "x-jwt-payload",
            },
            "remote": {
                "issuer": REMOTE_ISS,
                "audiences": ["api"],
                "remote_jwks": {
                    "http_uri": {"uri": "http://jwks.test/.well-known/jwks.json", "cluster": "jwks", "timeout": "1s"},
                    "cache_duration": "600s",
                    "failed_refetch_duration": "1s",
                    "refetch_min_interval": "1s",
                },
                "claim_to_headers": [{"header_name": "x-user-id", "claim_name": "sub"}],
            },
            "down": {
                "issuer": DOWN_ISS,
                "remote_jwks": {
                    "http_uri": {"uri": "http://down.test/.well-known/jwks.json", "cluster": "jwks_down",
                                 "timeout": "500ms"},
                    "failed_refetch_duration": "1s",
                },
            },
        },
        "rules": [
            {"match": {"path": "/healthz"}},
            {"match": {"prefix": "/public/"}, "requires": {"provider_name": "local"}, "allow_missing": True},
            {"match": {"prefix": "/admin/"}, "requires": {"provider_name": "local"},
             "claims": [{"name": "roles", "contains": "admin"}]},
            {"match": {"prefix": "/orders", "methods": ["POST", "DELETE"]}, "requires": {"provider_name": "local"},
             "claims": [{"name": "scope", "contains": "orders:write"}]},
            {"match": {"safe_regex": {"regex": "/tenants/[a-z]+/billing"}}, "requires": {"provider_name": "local"},
             "claims": [{"name": "org.tier", "equals": 3}]},
            {"match": {"prefix": "/remote/"}, "requires": {"provider_name": "remote"}},
            {"match": {"prefix": "/down/"}, "requires": {"provider_name": "down"}},
            {"match": {"prefix": "/api/"}, "requires": {"provider_name": "local"}},
        ],
        "bypass_cors_preflight": True,
    }


class Env:
    pass


@pytest.fixture(scope="module")
def env():
    e = Env()
    e.local = Keyring(prefix="local-")
    e.k1 = Keyring(prefix="k1-")
    e.k2 = Keyring(prefix="k2-")
    e.jwks = JwksServer(e.k1.jwks(with_hmac=False))
    cfg = harness.load_config("jwt")
    harness.set_plugin_config(cfg, PLUGIN, plugin_config(e.local))
    clusters = cfg["static_resources"]["clusters"]
    down = copy.deepcopy(next(c for c in clusters if c["name"] == "jwks"))
    down["name"] = down["load_assignment"]["cluster_name"] = "jwks_down"
    clusters.append(down)
    with harness.EchoServer() as echo, e.jwks.srv:
        upstreams = {"jwks": e.jwks.srv.port, "jwks_down": harness.free_port()}
        with harness.Envoy(cfg, concurrency=2, echo_port=echo.port, upstreams=upstreams) as envoy:
            e.envoy = envoy
            yield e


def get(env, path, token=None, headers=None, method="GET"):
    hs = list(headers or [])
    if token is not None:
        hs.append(("Authorization", f"Bearer {token}"))
    return env.envoy.request(method, path, hs)


def upstream(resp) -> dict:
    """Request headers the echo upstream received: name → [values]."""
    out: dict = {}
    for k, v in resp.json()["headers"]:
        out.setdefault(k, []).append(v)
    return out


def wait_for(fn, timeout=15.0, interval=0.2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    return last


def local_token(env, alg="ES256", kid=True, **extra):
    c = claims(LOCAL_ISS, aud="api", roles=["dev"], scope="orders:read", org={"tenant": "acme", "tier": 2})
    c.update(extra)
    return env.local.sign(alg, c, kid=kid)


def assert_401(resp, description=None):
    assert resp.status == 401, (resp.status, resp.body)
    www = resp.header("www-authenticate")
    assert www.startswith('Bearer realm="meshwall"'), www
    assert resp.header("content-type") == "application/problem+json"
    body = resp.json()
    assert body["status"] == 401 and body["title"] == "Unauthorized"
    if description is not None:
        assert body["detail"] == description, body
        assert f'error_description="{description}"' in www
        assert 'error="invalid_token"' in www


# ---------------------------------------------------------------- remote JWKS: first load


def test_remote_jwks_loaded_once_for_both_workers(env):
    tok = env.k1.sign("ES256", claims(REMOTE_ISS))
    r = wait_for(lambda: (lambda x: x if x.status == 200 else None)(get(env, "/remote/x", tok)))
    assert r is not None and r.status == 200, "remote JWKS never loaded"
    assert upstream(r)["x-user-id"] == ["alice"]
    # Both workers serve it (fresh connections spread over the workers)…
    for _ in range(12):
        assert get(env, "/remote/x", tok).status == 200
    # …from a single fetch: one per Envoy, not per worker.
    assert env.jwks.hits == 1
    assert env.envoy.stat("meshwall.jwt.jwks_fetch.ok") == 1


# ---------------------------------------------------------------- algorithms


@pytest.mark.parametrize("with_kid", [True, False], ids=["kid", "no-kid"])
@pytest.mark.parametrize("alg", ALGS)
def test_every_algorithm_verifies(env, alg, with_kid):
    tok = local_token(env, alg, kid=with_kid)
    r = get(env, "/api/items", tok)
    assert r.status == 200, (alg, r.body)
    up = upstream(r)
    assert up["x-user-id"] == ["alice"]
    assert "authorization" not in up, "forward defaults to false: the token must not reach the upstream"


# ---------------------------------------------------------------- attacks


def _attacks(env):
    k = env.local
    good = claims(LOCAL_ISS, aud="api")
    gtxt = json.dumps(good)
    es = k.sign("ES256", good)
    eh, ep, esig = es.split(".")
    sig = b64d(esig)
    n = P256_N.to_bytes(32, "big")
    now = int(time.time())
    evil = b"attacker-chosen-secret-32-bytes!!"
    deep = dict(good)
    nested: list = []
    cur = nested
    for _ in range(60):
        nxt: list = []
        cur.append(nxt)
        cur = nxt
    deep["x"] = nested
    tampered = dict(good, sub="admin")
    other = Keyring(prefix="local-")
    std_sig = base64.b64encode(sig).decode().rstrip("=")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return {
        "alg-none-empty-sig": f"{b64(json.dumps({'alg': 'none', 'typ': 'JWT'}))}.{b64(gtxt)}.",
        "alg-none-with-sig": f"{b64(json.dumps({'alg': 'none'}))}.{b64(gtxt)}.{esig}",
        "alg-None": f"{b64(json.dumps({'alg': 'None'}))}.{b64(gtxt)}.",
        "alg-NONE": f"{b64(json.dumps({'alg': 'NONE', 'kid': 'local-hmac'}))}.{b64(gtxt)}.{b64(bytes(32))}",
        "alg-nOnE": f"{b64(json.dumps({'alg': 'nOnE'}))}.{b64(gtxt)}.{esig}",
        "hs256-with-rsa-public-key-pem": k.sign_raw({"alg": "HS256", "kid": "local-rsa"}, good, secret=k.rsa_public_pem()),
        "hs256-with-rsa-public-key-no-kid": k.sign_raw({"alg": "HS256"}, good, secret=k.rsa_public_pem()),
        "hs256-naming-ec-key": k.sign_raw({"alg": "HS256", "kid": "local-p256"}, good),
        "rs256-naming-hmac-key": k.sign_raw({"alg": "RS256", "kid": "local-hmac"}, good),
        "es256-naming-rsa-key": k.sign_raw({"alg": "ES256", "kid": "local-rsa"}, good),
        "unknown-kid": k.sign_raw({"alg": "ES256", "kid": "nope"}, good),
        "kid-path-traversal": k.sign_raw({"alg": "HS256", "kid": "../../../../../dev/null"}, good, secret=b""),
        "kid-sql-injection": k.sign_raw({"alg": "HS256", "kid": "x' UNION SELECT 'a'--"}, good, secret=b"a"),
        "kid-not-a-string": k.sign_raw({"alg": "HS256", "kid": 1}, good),
        "embedded-jwk": other.sign_raw({"alg": "ES256", "jwk": other.jwks()["keys"][1]}, good),
        "embedded-jwk-with-our-kid": other.sign_raw({"alg": "ES256", "kid": "local-p256", "jwk": other.jwks()["keys"][1]}, good),
        "jku": k.sign_raw({"alg": "HS256", "jku": "http://127.0.0.1:1/jwks"}, good, secret=evil),
        "x5u": k.sign_raw({"alg": "HS256", "x5u": "http://127.0.0.1:1/cert"}, good, secret=evil),
        "x5c": other.sign_raw({"alg": "ES256", "x5c": ["MIIB"]}, good),
        "crit-unknown": k.sign_raw({"alg": "ES256", "kid": "local-p256", "crit": ["exp"], "exp": 1}, good),
        "crit-empty": k.sign_raw({"alg": "ES256", "kid": "local-p256", "crit": []}, good),
        "b64-false": k.sign_raw({"alg": "ES256", "kid": "local-p256", "b64": False, "crit": ["b64"]}, good),
        "expired": k.sign("ES256", dict(good, exp=now - 120)),
        "nbf-in-future": k.sign("ES256", dict(good, nbf=now + 300)),
        "iat-in-future": k.sign("ES256", dict(good, iat=now + 300)),
        "missing-exp": k.sign("ES256", {kk: v for kk, v in good.items() if kk != "exp"}),
        "wrong-iss": k.sign("ES256", dict(good, iss="https://evil.test")),
        "missing-iss": k.sign("ES256", {kk: v for kk, v in good.items() if kk != "iss"}),
        "wrong-aud": k.sign("ES256", dict(good, aud="other")),
        "empty-aud-array": k.sign("ES256", dict(good, aud=[])),
        "exp-as-string": k.sign("ES256", dict(good, exp=str(now + 600))),
        "aud-as-number": k.sign("ES256", dict(good, aud=7)),
        "aud-array-of-numbers": k.sign("ES256", dict(good, aud=[7])),
        "sub-as-object": k.sign("ES256", dict(good, sub={"id": 1})),
        "iss-as-array": k.sign("ES256", dict(good, iss=[LOCAL_ISS])),
        "payload-is-array": k.sign_raw({"alg": "ES256", "kid": "local-p256"}, "[1]"),
        "payload-not-json": k.sign_raw({"alg": "ES256", "kid": "local-p256"}, "hello"),
        "payload-invalid-utf8": f"{eh}.{b64(gtxt.encode()[:-2] + bytes([0xff]) + b'}')}.{esig}",
        "header-not-object": k.sign_raw('"ES256"', good, alg="ES256"),
        "duplicate-header-member": k.sign_raw('{"alg":"ES256","kid":"local-p256","alg":"ES256"}', good, alg="ES256"),
        "duplicate-alg-none-last": k.sign_raw('{"alg":"ES256","kid":"local-p256","alg":"none"}', good, alg="ES256"),
        "duplicate-claim": k.sign_raw({"alg": "ES256", "kid": "local-p256"}, gtxt[:-1] + ',"sub":"admin"}'),
        "duplicate-claim-iss": k.sign_raw({"alg": "ES256", "kid": "local-p256"},
                                          gtxt[:-1] + ',"iss":"https://evil.test"}'),
        "deeply-nested": k.sign("ES256", deep),
        "stripped-signature": f"{eh}.{ep}.",
        "two-segments": f"{eh}.{ep}",
        "extra-segment": f"{es}.{b64('x')}",
        "appended-signature-bytes": f"{eh}.{ep}.{b64(sig + bytes(1))}",
        "truncated-signature": f"{eh}.{ep}.{b64(sig[:-1])}",
        "padded-signature": f"{es}=",
        "padded-header": f"{eh}==.{ep}.{esig}",
        "non-url-base64": f"{eh}.{ep}.{std_sig}" if any(c in std_sig for c in "+/") else f"{eh}.{ep}.{esig}+",
        "re-encoded-signature": es[:-1] + alphabet[alphabet.index(es[-1]) ^ 1],
        "ecdsa-zero-signature": f"{eh}.{ep}.{b64(bytes(64))}",
        "ecdsa-r-s-equal-n": f"{eh}.{ep}.{b64(n + n)}",
        "ecdsa-r-zero": f"{eh}.{ep}.{b64(bytes(32) + sig[32:])}",
        "ecdsa-der-signature": f"{eh}.{ep}.{b64(k.der_ecdsa(f'{eh}.{ep}'.encode()))}",
        "payload-swapped": f"{eh}.{b64(json.dumps(tampered))}.{esig}",
        "signed-by-other-key-same-kid": other.sign("ES256", good),
        "hs256-wrong-secret": k.sign_raw({"alg": "HS256", "kid": "local-hmac"}, good, secret=evil),
        "jwe-five-segments": f"{b64(json.dumps({'alg': 'RSA-OAEP', 'enc': 'A256GCM'}))}.a.b.c.d",
        "oversized": k.sign("ES256", dict(good, pad="A" * 9000)),
        "garbage": "not-a-jwt",
        "empty": "",
    }


ATTACK_NAMES = [
    "alg-none-empty-sig", "alg-none-with-sig", "alg-None", "alg-NONE", "alg-nOnE",
    "hs256-with-rsa-public-key-pem", "hs256-with-rsa-public-key-no-kid", "hs256-naming-ec-key",
    "rs256-naming-hmac-key", "es256-naming-rsa-key", "unknown-kid", "kid-path-traversal", "kid-sql-injection",
    "kid-not-a-string", "embedded-jwk", "embedded-jwk-with-our-kid", "jku", "x5u", "x5c", "crit-unknown",
    "crit-empty", "b64-false", "expired", "nbf-in-future", "iat-in-future", "missing-exp", "wrong-iss",
    "missing-iss", "wrong-aud", "empty-aud-array", "exp-as-string", "aud-as-number", "aud-array-of-numbers",
    "sub-as-object", "iss-as-array", "payload-is-array", "payload-not-json", "payload-invalid-utf8",
    "header-not-object", "duplicate-header-member", "duplicate-alg-none-last", "duplicate-claim",
    "duplicate-claim-iss", "deeply-nested", "stripped-signature", "two-segments", "extra-segment",
    "appended-signature-bytes", "truncated-signature", "padded-signature", "padded-header", "non-url-base64",
    "re-encoded-signature", "ecdsa-zero-signature", "ecdsa-r-s-equal-n", "ecdsa-r-zero", "ecdsa-der-signature",
    "payload-swapped", "signed-by-other-key-same-kid", "hs256-wrong-secret", "jwe-five-segments", "oversized",
    "garbage", "empty",
]


@pytest.fixture(scope="module")
def attacks(env):
    a = _attacks(env)
    assert sorted(a) == sorted(ATTACK_NAMES)
    return a


@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_attack_is_refused(env, attacks, name):
    tok = attacks[name]
    r = get(env, "/api/items", tok, headers=[("x-user-id", "admin")])
    assert_401(r)
    assert 'error="invalid_token"' in r.header("www-authenticate")
    if tok:
        everything = r.body.decode(errors="replace") + repr(r.headers)
        assert tok not in everything and tok.split(".")[0] not in everything, "token echoed"


def test_attacks_reach_no_upstream_and_are_counted(env, attacks):
    before = env.envoy.stat("meshwall.jwt.allowed")
    for tok in attacks.values():
        assert get(env, "/api/items", tok).status == 401
    assert env.envoy.stat("meshwall.jwt.allowed") == before
    stats = env.envoy.stats()
    for reason in ["bad_signature", "unsupported_alg", "unknown_kid", "no_fitting_key", "expired", "malformed",
                   "bad_header", "bad_claims", "audience", "issuer", "too_large", "missing_exp", "not_yet_valid"]:
        assert sum(v for k, v in stats.items() if k.endswith(f"meshwall.jwt.denied.{reason}")) > 0, reason


# ---------------------------------------------------------------- replies and outputs


def test_missing_token_gets_a_bare_challenge(env):
    r = get(env, "/api/items")
    assert r.status == 401
    assert r.header("www-authenticate") == 'Bearer realm="meshwall"'
    assert r.json()["detail"] == "Jwt is missing"
    r = get(env, "/api/items", headers=[("Authorization", "Basic dXNlcjpwYXNz")])
    assert r.status == 401 and r.json()["detail"] == "Jwt is missing"


def test_specific_descriptions(env):
    now = int(time.time())
    assert_401(get(env, "/api/x", local_token(env, exp=now - 3600)), "Jwt is expired")
    assert_401(get(env, "/api/x", local_token(env, aud="nope")), "Audiences in Jwt are not allowed")
    assert_401(get(env, "/api/x", env.local.sign_raw({"alg": "ES256", "kid": "zz"}, claims(LOCAL_ISS))),
               "Jwt key id is unknown")


def test_claim_headers_reach_upstream_and_spoofs_never_do(env):
    tok = local_token(env, "RS256", roles=["admin", "dev"])
    spoof = [("x-user-id", "root"), ("X-User-Roles", "superuser"), ("x-tenant", "evil"), ("x-jwt-payload", "e30")]
    r = get(env, "/api/items", tok, headers=spoof)
    assert r.status == 200
    up = upstream(r)
    assert up["x-user-id"] == ["alice"]
    assert up["x-user-roles"] == ["admin,dev"]
    assert up["x-tenant"] == ["acme"]
    assert up["x-jwt-payload"] == [tok.split(".")[1]]
    assert json.loads(b64d(up["x-jwt-payload"][0]))["sub"] == "alice"
    assert "authorization" not in up
    # Claims absent from the token: the spoofed headers are removed, not passed on.
    c = claims(LOCAL_ISS, aud="api2", sub="bob")
    r = get(env, "/api/items", env.local.sign("EdDSA", c), headers=spoof)
    up = upstream(r)
    assert up["x-user-id"] == ["bob"]
    assert "x-user-roles" not in up and "x-tenant" not in up


@pytest.mark.parametrize("method,path,extra", [
    ("GET", "/healthz", []),
    ("GET", "/public/page", []),
    ("OPTIONS", "/admin/users", [("Origin", "https://app.test"), ("Access-Control-Request-Method", "DELETE")]),
])
def test_spoofed_headers_stripped_where_no_token_is_needed(env, method, path, extra):
    spoof = [("x-user-id", "root"), ("x-user-roles", "admin"), ("x-tenant", "evil"), ("x-jwt-payload", "e30")]
    r = env.envoy.request(method, path, spoof + extra)
    assert r.status == 200, r.body
    up = upstream(r)
    for name, _ in spoof:
        assert name not in up, f"{name} reached the upstream"


def test_two_different_tokens_refused(env):
    a, b = local_token(env), local_token(env, sub="bob")
    r = env.envoy.request("GET", "/api/x", [("Authorization", f"Bearer {a}"), ("Authorization", f"Bearer {b}")])
    assert_401(r, "more than one Jwt in the request")
    r = env.envoy.request("GET", "/api/x", [("Authorization", f"Bearer {a}"), ("Authorization", f"Bearer {a}")])
    assert r.status == 200


# ---------------------------------------------------------------- rules


def test_rules(env):
    admin = local_token(env, roles=["admin"], scope="orders:read orders:write", org={"tenant": "acme", "tier": 3})
    reader = local_token(env)
    expired = local_token(env, exp=int(time.time()) - 3600)
    cases = [
        ("GET", "/healthz", None, 200),
        ("GET", "/healthz", "garbage", 200),
        ("GET", "/public/a", None, 200),
        ("GET", "/public/a", reader, 200),
        ("GET", "/public/a", expired, 401),
        ("GET", "/public/a", "garbage", 401),
        ("GET", "/admin/users", None, 401),
        ("GET", "/admin/users", reader, 403),
        ("GET", "/admin/users", admin, 200),
        ("POST", "/orders/1", reader, 403),
        ("DELETE", "/orders/1", reader, 403),
        ("POST", "/orders/1", admin, 200),
        ("GET", "/orders/1", reader, 200),
        ("GET", "/tenants/acme/billing", reader, 403),
        ("GET", "/tenants/acme/billing", admin, 200),
        ("GET", "/elsewhere", None, 401),
        ("GET", "/elsewhere", reader, 200),
        ("OPTIONS", "/admin/users", None, 401),
    ]
    for method, path, tok, want in cases:
        r = get(env, path, tok, method=method)
        assert r.status == want, (method, path, tok and tok[:20], r.status, r.body)
        if want == 403:
            www = r.header("www-authenticate")
            assert 'error="insufficient_scope"' in www, www
            assert r.json()["title"] == "Forbidden"


# ---------------------------------------------------------------- remote JWKS: rotation, outage


def test_key_rotation_picked_up_through_unknown_kid(env):
    tok_old = env.k1.sign("ES256", claims(REMOTE_ISS))
    assert wait_for(lambda: get(env, "/remote/x", tok_old).status == 200)
    env.jwks.doc = {"keys": env.k1.jwks(with_hmac=False)["keys"] + env.k2.jwks(with_hmac=False)["keys"]}
    tok_new = env.k2.sign("RS256", claims(REMOTE_ISS, sub="carol"))
    hits = env.jwks.hits
    first = get(env, "/remote/x", tok_new)
    assert first.status in (200, 401)
    r = wait_for(lambda: (lambda x: x if x.status == 200 else None)(get(env, "/remote/x", tok_new)))
    assert r is not None and r.status == 200, "rotated key never picked up"
    assert upstream(r)["x-user-id"] == ["carol"]
    assert env.jwks.hits > hits
    # The old key still works (both keys are published).
    assert get(env, "/remote/x", tok_old).status == 200


def test_unknown_kid_refetch_is_rate_limited(env):
    stranger = Keyring(prefix="k3-")
    tok = stranger.sign("ES256", claims(REMOTE_ISS))
    time.sleep(1.2)  # let any earlier refetch interval pass
    hits = env.jwks.hits
    start = time.monotonic()
    for _ in range(40):
        assert_401(get(env, "/remote/x", tok), "Jwt key id is unknown")
    assert wait_for(lambda: env.jwks.hits > hits), "unknown kid never triggered a refetch"
    elapsed = time.monotonic() - start
    fetches = env.jwks.hits - hits
    # refetch_min_interval is 1s: at most one fetch per started second (+1 for the edge).
    assert 1 <= fetches <= int(elapsed) + 2, (fetches, elapsed)


def test_jwks_server_down_fails_closed(env):
    tok = env.k1.sign("ES256", claims(DOWN_ISS))
    r = get(env, "/down/x", tok)
    assert_401(r, "Jwks not available")
    assert wait_for(lambda: env.envoy.stat("meshwall.jwt.jwks_fetch.failed") >= 1)
    assert env.envoy.stat("meshwall.jwt.denied.jwks_unavailable") >= 1
    assert "no JWKS loaded yet" in env.envoy.log_text()
    # Retried after failed_refetch_duration (1s), still failing.
    n = env.envoy.stat("meshwall.jwt.jwks_fetch.failed")
    assert wait_for(lambda: env.envoy.stat("meshwall.jwt.jwks_fetch.failed") > n)
    assert_401(get(env, "/down/x", tok), "Jwks not available")


def test_remote_jwks_answering_errors_keeps_last_good_keys(env):
    tok = env.k1.sign("ES256", claims(REMOTE_ISS, jti="keep"))
    assert get(env, "/remote/x", tok).status == 200
    env.jwks.status = 503
    try:
        failed = env.envoy.stat("meshwall.jwt.jwks_fetch.failed")
        # An unknown kid asks for a refetch, which fails (503).
        stranger = Keyring(prefix="k4-").sign("ES256", claims(REMOTE_ISS))
        time.sleep(1.1)
        assert get(env, "/remote/x", stranger).status == 401
        assert wait_for(lambda: env.envoy.stat("meshwall.jwt.jwks_fetch.failed") > failed)
        assert get(env, "/remote/x", env.k1.sign("ES256", claims(REMOTE_ISS, jti="after"))).status == 200
    finally:
        env.jwks.status = 200


# ---------------------------------------------------------------- metrics, cache, config


def test_metrics_are_exported(env):
    tok = local_token(env, jti="cache-me")
    for _ in range(4):
        assert get(env, "/api/x", tok).status == 200
    stats = env.envoy.stats()
    names = [k for k in stats if "meshwall.jwt." in k]
    for n in ["allowed", "denied.missing", "denied.bad_signature", "cache.hit", "cache.miss", "jwks_fetch.ok",
              "jwks_fetch.failed"]:
        assert any(k.endswith("meshwall.jwt." + n) for k in names), n
    # 4 requests over 2 workers: at least 2 are cache hits.
    assert env.envoy.stat("meshwall.jwt.cache.hit") >= 2
    prom = env.envoy.admin("/stats/prometheus").decode()
    assert "meshwall_jwt_allowed" in prom or "meshwall.jwt.allowed" in prom


def test_weak_key_config_is_refused_by_envoy():
    cfg = harness.load_config("jwt")
    harness.set_plugin_config(cfg, PLUGIN, {"providers": {"p": {"local_jwks": {"inline_jwks": {"keys": [
        {"kty": "oct", "k": b64(b"short-secret")}]}}}}})
    with harness.Envoy(cfg, expect_fail=True) as e:
        assert e.exit_code not in (None, 0)
        assert "providers.p.local_jwks.inline_jwks.keys[0].k" in e.log_text()
