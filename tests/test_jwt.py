"""`jwt` filter against the real Envoy (envoy/jwt.yaml with a test configuration, --concurrency 2).

One Envoy serves the module. Providers: `local` (inline JWKS with every key type), `remote`
(JWKS fetched from a local HTTP server through the `jwks` cluster, rotated during the tests),
`down` (JWKS cluster pointing at a closed port).
"""

from __future__ import annotations

import copy
import json
import threading
import time
import urllib.parse

import pytest

import harness
import jwt_attacks
from jwt_tokens import ALGS, Keyring, b64, b64d, claims

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
                "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
                "from_cookies": ["session"],
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
            {"match": {"prefix": "/reports/", "methods": ["GET"]}, "requires": {"provider_name": "local"},
             "claims": [{"name": "roles", "contains": "admin"}]},
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
    assert env.envoy.stat("meshwall.jwt.jwks_fetch_ok") == 1


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


ATTACK_NAMES = jwt_attacks.NAMES


@pytest.fixture(scope="module")
def attacks(env):
    a = jwt_attacks.build(env.local, LOCAL_ISS)
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
        assert sum(v for k, v in stats.items() if k.endswith(f"meshwall.jwt.denied.reason.{reason}")) > 0, reason


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
    assert wait_for(lambda: env.envoy.stat("meshwall.jwt.jwks_fetch_failed") >= 1)
    assert env.envoy.stat("meshwall.jwt.denied.reason.jwks_unavailable") >= 1
    assert "no JWKS loaded yet" in env.envoy.log_text()
    # Retried after failed_refetch_duration (1s), still failing.
    n = env.envoy.stat("meshwall.jwt.jwks_fetch_failed")
    assert wait_for(lambda: env.envoy.stat("meshwall.jwt.jwks_fetch_failed") > n)
    assert_401(get(env, "/down/x", tok), "Jwks not available")


def test_remote_jwks_answering_errors_keeps_last_good_keys(env):
    tok = env.k1.sign("ES256", claims(REMOTE_ISS, jti="keep"))
    assert get(env, "/remote/x", tok).status == 200
    env.jwks.status = 503
    try:
        failed = env.envoy.stat("meshwall.jwt.jwks_fetch_failed")
        # An unknown kid asks for a refetch, which fails (503).
        stranger = Keyring(prefix="k4-").sign("ES256", claims(REMOTE_ISS))
        time.sleep(1.1)
        assert get(env, "/remote/x", stranger).status == 401
        assert wait_for(lambda: env.envoy.stat("meshwall.jwt.jwks_fetch_failed") > failed)
        assert get(env, "/remote/x", env.k1.sign("ES256", claims(REMOTE_ISS, jti="after"))).status == 200
    finally:
        env.jwks.status = 200


# ---------------------------------------------------------------- metrics, cache, config


def prometheus_samples(envoy) -> dict:
    """`/stats/prometheus` samples as {'name{labels}': value} (`name` alone without labels)."""
    out = {}
    for line in envoy.admin("/stats/prometheus").decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name.removesuffix("{}")] = float(value)
    return out


def test_metrics_are_exported(env):
    tok = local_token(env, jti="cache-me")
    for _ in range(4):
        assert get(env, "/api/x", tok).status == 200
    assert_401(get(env, "/api/x"))
    stats = env.envoy.stats()
    names = [k for k in stats if "meshwall.jwt." in k]
    for n in ["allowed", "denied.reason.missing", "denied.reason.bad_signature", "denied.reason.expired",
              "cache_hit", "cache_miss", "jwks_fetch_ok", "jwks_fetch_failed", "ambiguous.reason.path_params"]:
        assert any(k == "wasmcustom.meshwall.jwt." + n for k in names), n
    # 4 requests over 2 workers: at least 2 are cache hits.
    assert env.envoy.stat("meshwall.jwt.cache_hit") >= 2
    # Prometheus: one counter per decision, the reason as a label (the example's stats_tags).
    prom = prometheus_samples(env.envoy)
    missing = env.envoy.stat("meshwall.jwt.denied.reason.missing")
    assert missing >= 1 and prom['meshwall_jwt_denied{reason="missing"}'] == missing
    assert prom["meshwall_jwt_allowed"] == env.envoy.stat("meshwall.jwt.allowed") >= 4
    assert prom['meshwall_jwt_ambiguous{reason="path_params"}'] == env.envoy.stat(
        "meshwall.jwt.ambiguous.reason.path_params")
    families = {k.split("{")[0] for k in prom if k.startswith("meshwall_jwt_")}
    assert families == {"meshwall_jwt_allowed", "meshwall_jwt_denied", "meshwall_jwt_ambiguous",
                        "meshwall_jwt_cache_hit", "meshwall_jwt_cache_miss", "meshwall_jwt_jwks_fetch_ok",
                        "meshwall_jwt_jwks_fetch_failed", "meshwall_jwt_signature_checks_host",
                        "meshwall_jwt_signature_checks_wasm", "meshwall_jwt_shared_cache_hit",
                        "meshwall_jwt_shared_cache_miss"} | {
                        "meshwall_jwt_verifier_host_" + a.lower() for a in ALGS}, families
    reasons = {k.split('"')[1] for k in prom if k.startswith("meshwall_jwt_denied{")}
    assert {"missing", "expired", "bad_signature", "jwks_unavailable", "forbidden"} <= reasons, reasons
    assert all(k.startswith('meshwall_jwt_denied{reason="') for k in prom if k.startswith("meshwall_jwt_denied"))


def test_weak_key_config_is_refused_by_envoy():
    cfg = harness.load_config("jwt")
    harness.set_plugin_config(cfg, PLUGIN, {"providers": {"p": {"local_jwks": {"inline_jwks": {"keys": [
        {"kty": "oct", "k": b64(b"short-secret")}]}}}}})
    with harness.Envoy(cfg, expect_fail=True) as e:
        assert e.exit_code not in (None, 0)
        assert "providers.p.local_jwks.inline_jwks.keys[0].k" in e.log_text()


# ---------------------------------------------------------------- the canonical request view
#
# The shipped envoy/jwt.yaml as it is (its plugin configuration, its connection-manager path and
# header-name settings), with the demo-idp JWKS served here; and the same with those settings left
# at Envoy's defaults (no normalize_path, merge_slashes or escaped-slash handling, underscores in
# header names allowed), where only the filter stands between these requests and the backend. Requests go out with
# http.client, which sends the request target byte for byte.

DEMO_ISS, DEMO_AUD = "http://127.0.0.1:8081", "meshwall-demo"
HCM_PATH_SETTINGS = ("normalize_path", "merge_slashes", "path_with_escaped_slashes_action")
REASONS = {"path_not_origin_form", "path_fragment", "path_bad_escape", "path_encoded_slash", "path_backslash",
           "path_encoded_control", "path_double_encoding", "path_params", "path_dot_segment_params",
           "path_encoded_dot_segment", "header_spelling", "repeated_header", "repeated_cookie", "repeated_param"}


@pytest.fixture(scope="module", params=["shipped-hcm", "envoy-default-hcm"])
def shipped(request):
    e = Env()
    e.mode = request.param
    e.keys = Keyring(prefix="demo-")
    jwks = JwksServer(e.keys.jwks(with_hmac=False))
    cfg = harness.load_config("jwt")
    if e.mode == "envoy-default-hcm":
        for listener in cfg["static_resources"]["listeners"]:
            for chain in listener["filter_chains"]:
                for f in chain["filters"]:
                    hcm = f["typed_config"]
                    for k in HCM_PATH_SETTINGS:
                        hcm.pop(k, None)
                    hcm.get("common_http_protocol_options", {}).pop("headers_with_underscores_action", None)
    with harness.EchoServer() as echo, jwks.srv:
        with harness.Envoy(cfg, concurrency=2, echo_port=echo.port, upstreams={"jwks": jwks.srv.port}) as envoy:
            e.envoy = envoy
            e.reader = e.keys.sign("ES256", claims(DEMO_ISS, aud=DEMO_AUD, roles=["dev"]))
            e.admin = e.keys.sign("ES256", claims(DEMO_ISS, aud=DEMO_AUD, roles=["admin"]))
            assert wait_for(lambda: get(e, "/api/x", e.reader).status == 200), "demo-idp JWKS never loaded"
            yield e


def assert_refused(r):
    """A 400 that never reached the upstream: the filter's problem reply naming the reason, or
    Envoy's own refusal of the request line."""
    assert r.status == 400, (r.status, r.body)
    if r.header("content-type") == "application/problem+json":
        assert r.json()["reason"] in REASONS, r.body
    else:
        assert b"headers" not in r.body, "the echo upstream answered"


# The shipped rules exempt `/public/` (token optional) and protect `/admin/` (roles ∋ admin).
ADMIN_VIA_PUBLIC = [
    "/public/%2e%2e;/admin/x", "/public/%2E%2E;/admin/x", "/public/..;/admin/x", "/public/..;x=1/admin/x",
    "/public/x/..;/..;/admin/x", "/public/%2e%2e/admin/x", "/public/.%2e/admin/x", "/public/%2e./admin/x",
    "/public/../admin/x", "/public/./../admin/x", "/public/a/../../admin/x", "/public/..%2fadmin/x",
    "/public%2f..%2fadmin/x", "/public/..%5cadmin/x", "/public/..\\admin/x", "/public/%252e%252e/admin/x",
    "/public/;/../admin/x", "/public/.;/../admin/x", "/public/%2e%2e%3b/admin/x", "/public/..%00/admin/x",
]


@pytest.mark.parametrize("path", ADMIN_VIA_PUBLIC)
def test_public_exemption_never_reaches_admin(shipped, path):
    """Refused (400), or judged as /admin/ (401 without a token, 403 without the role), or let
    through only when the upstream was asked for a /public/ path (Envoy resolved it so)."""
    for tok, denied in ((None, 401), (shipped.reader, 403)):
        r = get(shipped, path, tok)
        if r.status == 400:
            assert_refused(r)
        elif r.status == 200:
            seen = r.json()["path"]
            dots = [seg for seg in seen.split("?")[0].split("/") if urllib.parse.unquote(seg).split(";")[0] in (".", "..")]
            assert seen.startswith("/public/") and not dots, (shipped.mode, path, seen)
        else:
            assert r.status == denied, (shipped.mode, path, tok and "reader", r.status, r.body)


# (raw request target, its canonical form): the same verdict for every token, or refused.
SAME_AS_CANONICAL = [
    ("/%61dmin/x", "/admin/x"), ("/adm%69n/x?next=/public/", "/admin/x"), ("//admin//x", "/admin/x"),
    ("/admin/./x/", "/admin/x/"), ("/admin", "/admin/"), ("/healthz/", "/healthz"),
    ("/healthz?x=/../admin", "/healthz"), ("/admin/../healthz", "/healthz"), ("/public/x/..", "/public/"),
    ("/%70ublic/x", "/public/x"), ("/admin;jsessionid=1/x", "/admin/x"), ("/healthz;x", "/healthz"),
]


@pytest.mark.parametrize("raw,canonical", SAME_AS_CANONICAL)
def test_verdict_is_that_of_the_canonical_form(shipped, raw, canonical):
    for tok in (None, shipped.reader, shipped.admin):
        r, c = get(shipped, raw, tok), get(shipped, canonical, tok)
        if r.status == 400:
            assert_refused(r)
            continue
        assert r.status == c.status, (shipped.mode, raw, canonical, tok and tok[:12], r.status, c.status)


def test_lowercase_and_head_methods_meet_the_rules(shipped, env):
    # /api/orders: POST PUT PATCH DELETE need scope ∋ orders:write. A lower-case method is the
    # same method (Django and Flask upper-case it); Envoy may refuse it itself (400).
    for m in ("post", "Delete"):
        r = get(shipped, "/api/orders", shipped.reader, method=m)
        assert r.status in (400, 403), (m, r.status, r.body)
    # A rule naming GET applies to HEAD (servers answer HEAD with the GET handler).
    for m in ("GET", "HEAD"):
        r = get(env, "/reports/q1", local_token(env), method=m)
        assert r.status == 403, (m, r.status, r.body)
    admin = local_token(env, roles=["admin"])
    assert get(env, "/reports/q1", admin, method="HEAD").status == 200


@pytest.mark.parametrize("path", ["/healthz", "/public/x", "/api/x"])
@pytest.mark.parametrize("name", ["x_user_id", "X_User_Id", "x-user_roles", "x_jwt_payload"])
def test_written_header_in_another_spelling_is_refused(shipped, path, name):
    r = get(shipped, path, shipped.reader if path == "/api/x" else None, headers=[(name, "root")])
    assert_refused(r)
    if shipped.mode == "envoy-default-hcm" or r.header("content-type") == "application/problem+json":
        assert r.json()["reason"] == "header_spelling", r.body
    # In its own spelling it is stripped and replaced, as before.
    r = get(shipped, path, shipped.reader, headers=[("X-User-Id", "root")])
    assert r.status == 200 and upstream(r).get("x-user-id") != ["root"], r.body


def test_token_cookie_given_twice_is_refused(env):
    tok = local_token(env)
    r = get(env, "/public/x", headers=[("Cookie", f"session={tok}")])
    assert r.status == 200 and upstream(r)["x-user-id"] == ["alice"]
    assert "session" not in (upstream(r).get("cookie") or [""])[0], "the token cookie is removed"
    for hs in ([("Cookie", f"session={tok}; session={tok}")],
               [("Cookie", f"a=1; session={tok}"), ("Cookie", "session=x.y.z")],
               [("Cookie", f"Session={tok}")]):
        r = get(env, "/public/x", headers=hs)
        assert r.status == 400 and r.json()["reason"] == "repeated_cookie", (hs, r.status, r.body)
    assert env.envoy.stat("meshwall.jwt.ambiguous.reason.repeated_cookie") >= 3
