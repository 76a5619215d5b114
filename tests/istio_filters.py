"""The one table of filters that tests/test_istio.py covers: adding a filter is one entry in FILTERS
(plus its istio/<name>.yaml manifest). Each entry says how to check, against the running Envoy, that
the plugin does what its manifest's pluginConfig asks, and which request it answers locally (used to
prove, in the full chain, that `headers` also cleans the local replies of the plugins after it).
A plugin that calls other services (jwt: the IdP's JWKS) also says how to stand them up for the test
and which clusters istiod would give the gateway for them. The suite module (`suite`: every policy in
one plugin, one section of its pluginConfig per policy) is probed with the entries of its sections.
"""

from __future__ import annotations

import hashlib
import json
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional
from urllib.parse import urlsplit

import istio_translate as tr
from istio_idp import JWKS_PATH, running_idp
from jwt_tokens import Keyring, b64d, claims

# The `owasp_api` preset of filters/headers/src/config.rs (values as documented there).
OWASP_API = {
    "strict-transport-security": "max-age=63072000; includeSubDomains",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
    "cross-origin-resource-policy": "same-origin",
    "x-permitted-cross-domain-policies": "none",
    "cache-control": "no-store",
}
# Among filters/headers' default `response_headers_to_remove`.
DEFAULT_REMOVED = ["server", "x-powered-by", "x-aspnet-version", "x-envoy-upstream-service-time"]


@dataclass
class Mesh:
    """What a plugin needs around it: `clusters` = the Envoy clusters istiod would add to the gateway
    for the services it calls (pointing at test servers), `state` = whatever the probes need."""
    clusters: list = field(default_factory=list)
    state: object = None


@contextmanager
def no_mesh(cfg: dict) -> Iterator[Mesh]:
    yield Mesh()


@dataclass(frozen=True)
class FilterCase:
    # probe(envoy, plugin_config, mesh) asserts, against the running Envoy, the behaviour the config asks for.
    probe: Callable
    # local_reply(envoy, plugin_config, mesh) -> Resp: sends what makes this plugin answer by itself
    # and returns that answer (asserting it is the plugin's own reply). Used in the full chain, where
    # the plugins before it let such requests through.
    local_reply: Optional[Callable] = None
    # mesh(plugin_config) -> context manager yielding a Mesh (started before Envoy, stopped after).
    mesh: Callable = no_mesh
    # credentials(envoy, plugin_config, mesh) -> headers that get a request through this plugin
    # (added, in the full chain, to the requests meant for the plugins after it).
    credentials: Optional[Callable] = None
    # upstream(upstream_headers, plugin_config, mesh) asserts what the upstream got from this plugin
    # for a request that carried every credential ({lower-case name: [values]}).
    upstream: Optional[Callable] = None


def is_problem(r, status: int) -> bool:
    return r.status == status and r.header("content-type") == "application/problem+json"


def assert_headers_applied(r, cfg: dict) -> None:
    """The response carries what the `headers` plugin configured by `cfg` must produce."""
    if cfg.get("security_headers", "owasp_api") == "owasp_api":
        excluded = {x.lower() for x in cfg.get("security_headers_exclude", [])}
        for name, value in OWASP_API.items():
            if name not in excluded:
                assert r.header_all(name) == [value], f"{name}: {r}"
    for opt in cfg.get("response_headers_to_add", []):
        assert opt["header"]["value"] in r.header_all(opt["header"]["key"]), r
    removed = cfg.get("response_headers_to_remove", DEFAULT_REMOVED)
    for name in removed:
        assert r.header(name) is None, f"{name} leaked: {r}"
    for prefix in cfg.get("response_header_prefixes_to_remove", []):
        leaked = [k for k, _ in r.headers if k.startswith(prefix.lower())]
        assert not leaked, f"{leaked} leaked: {r}"


def probe_headers(envoy, cfg: dict, mesh=None) -> None:
    leaky = [("x-echo-header", "Server: upstream/1.0"), ("x-echo-header", "X-Powered-By: PHP/8"),
             ("x-echo-header", "X-AspNet-Version: 4.0"), ("x-echo-header", "X-Envoy-Debug: on")]
    for prefix in cfg.get("response_header_prefixes_to_remove", []):
        leaky.append(("x-echo-header", f"{prefix}probe: 1"))
    internal = [(h, "1") for h in cfg.get("request_headers_to_remove", [])]
    internal += [(p + "probe", "1") for p in cfg.get("request_header_prefixes_to_remove", [])]
    r = envoy.request("GET", "/istio/probe", leaky + internal + [("x-keep", "yes")])
    assert r.status == 200, r
    assert_headers_applied(r, cfg)
    seen = {k for k, _ in r.json()["headers"]}
    assert "x-keep" in seen
    for h, _ in internal:
        assert h.lower() not in seen, f"{h} reached the upstream"
    # Envoy's own local reply (no virtual host for this authority) goes through the plugin too.
    r = envoy.request("GET", "/", {"Host": "unknown.example"})
    assert r.status == 404, r
    assert_headers_applied(r, cfg)


def prometheus(envoy) -> dict:
    """`/stats/prometheus` (what Istio's :15090 serves and :15020 merges) as {name: value}."""
    out = {}
    for line in envoy.admin("/stats/prometheus").decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name.split("{", 1)[0]] = float(value)
    return out


def probe_validate(envoy, cfg: dict, mesh=None) -> None:
    # The probes follow the pet store API of istio/validate.yaml (the same document as envoy/validate.yaml).
    assert "/pets" in cfg["spec"]["paths"]
    before = prometheus(envoy)
    r = envoy.request("GET", "/v1/pets?limit=5")
    assert r.status == 200 and r.json()["path"] == "/v1/pets?limit=5", r
    r = envoy.request("GET", "/v1/pets?limit=500")
    assert r.status == 400 and r.header("content-type") == "application/problem+json", r
    assert [e["pointer"] for e in r.json()["errors"]] == ["#/query/limit"]
    r = envoy.request("GET", "/v1/owners")
    assert r.status == 404 and r.json()["status"] == 404, r
    r = envoy.request("PUT", "/v1/pets")
    assert r.status == 405, r
    # The plugin's metrics reach Prometheus under their own names (Envoy's `wasmcustom.` namespace is
    # dropped), through Istio's stats inclusion list; Istio's bootstrap has none of the examples'
    # stats_tags (istio/README.md, Metrics), so the labels stay in the name.
    after = prometheus(envoy)
    for m in ["meshwall_validate_rejected_status_404_reason_unknown_path",
              "meshwall_validate_rejected_status_405_reason_method_not_allowed"]:
        assert after[m] - before.get(m, 0) == 1, m


def validate_reply(envoy, cfg: dict, mesh=None):
    # A path the OpenAPI document does not have: 404 from the plugin.
    assert "/nowhere-in-the-spec" not in cfg["spec"]["paths"]
    r = envoy.request("GET", "/v1/nowhere-in-the-spec")
    assert is_problem(r, 404) and "no API operation" in r.json()["detail"], r
    return r


def _smallest_rule(cfg: dict) -> dict:
    """The rule with the fewest tokens that names one path (and maybe methods)."""
    rules = [r for r in cfg["rules"] if r.get("match", {}).get("path") and not r.get("shadow")]
    return min(rules, key=lambda r: r["token_bucket"]["max_tokens"])


def ratelimit_reply(envoy, cfg: dict, mesh=None):
    # Spend what is left of the bucket of the smallest rule: then the plugin answers 429 (whatever
    # the filters after it answered before). At most max_tokens + 1 requests.
    rule = _smallest_rule(cfg)
    method = (rule["match"].get("methods") or ["GET"])[0]
    for _ in range(rule["token_bucket"]["max_tokens"] + 1):
        r = envoy.request(method, rule["match"]["path"])
        if r.status == 429:
            break
    assert is_problem(r, 429) and r.json()["violated_policies"] == [rule["name"]], r
    assert int(r.header("retry-after")) > 0
    return r


def probe_ratelimit(envoy, cfg: dict, mesh=None) -> None:
    rule = _smallest_rule(cfg)
    method = (rule["match"].get("methods") or ["GET"])[0]
    q = rule["token_bucket"]["max_tokens"]
    before = prometheus(envoy)
    for i in range(q):
        r = envoy.request(method, rule["match"]["path"])
        assert r.status == 200, r
        assert f'"{rule["name"]}";q={q};' in r.header("ratelimit-policy"), r
    ratelimit_reply(envoy, cfg)
    # another path is not limited by that rule
    assert envoy.request("GET", "/elsewhere").status == 200
    allowed, limited = (f"meshwall_ratelimit_{m}_rule_" + rule["name"].replace("-", "_") for m in ["allowed", "limited"])
    after = prometheus(envoy)
    assert after[allowed] - before.get(allowed, 0) == q
    assert after[limited] - before.get(limited, 0) == 1


# --- jwt ---------------------------------------------------------------------------------------------

def _remote_providers(cfg: dict) -> dict:
    return {n: p for n, p in cfg["providers"].items() if "remote_jwks" in p}


@contextmanager
def jwt_mesh(cfg: dict) -> Iterator[Mesh]:
    """One HTTPS JWKS server per remote provider, behind the cluster istiod makes of the
    ServiceEntry + DestinationRule of istio/README.md."""
    remote = _remote_providers(cfg)
    assert remote, "the manifest's providers fetch their JWKS from an identity provider"
    idps, clusters = {}, []
    with ExitStack() as stack:
        for name, p in remote.items():
            u = urlsplit(p["remote_jwks"]["http_uri"]["uri"])
            assert u.scheme == "https" and u.path == JWKS_PATH, u
            idp = stack.enter_context(running_idp(u.hostname))
            idps[name] = idp
            cluster = tr.external_tls_cluster(u.hostname, u.port or 443, ("127.0.0.1", idp.port), idp.ca_file)
            assert cluster["name"] == p["remote_jwks"]["http_uri"]["cluster"], \
                "the plugin must name the cluster istiod builds for the IdP's host and port"
            clusters.append(cluster)
        yield Mesh(clusters=clusters, state=idps)


def _scopes(cfg: dict) -> list:
    """Every scope a rule asks for (`contains` on the claim `scope`); other claim conditions are not
    used by the shipped manifests, so they are refused here rather than silently ignored."""
    out = []
    for rule in cfg.get("rules", []):
        for cond in rule.get("claims", []):
            assert cond["name"] == "scope" and "contains" in cond, f"extend jwt_token for {cond}"
            out.append(cond["contains"])
    return out


JWT_SUB = "alice"


def jwt_token(cfg: dict, mesh: Mesh, provider: Optional[str] = None, scope: Optional[str] = None,
              keys: Optional[Keyring] = None, alg: str = "ES256", sub: str = JWT_SUB) -> str:
    """A token the provider accepts, with every scope the rules ask for (unless `scope` is given)."""
    name = provider or sorted(_remote_providers(cfg))[0]
    p = cfg["providers"][name]
    idp = mesh.state[name]
    c = claims(p["issuer"], aud=p["audiences"][0], sub=sub,
               lifetime=min(600, p.get("max_lifetime_seconds", 600)),
               scope=" ".join(_scopes(cfg)) if scope is None else scope)
    # With another Keyring but this IdP's key ids: a forged token.
    return (keys or idp.keys).sign(alg, c, kid=idp.keys.kid(alg))


def _bearer(token: str) -> tuple:
    return ("Authorization", f"Bearer {token}")


def _protected_path(cfg: dict) -> str:
    path = "/istio/needs-a-token"
    for rule in cfg.get("rules", []):
        m = rule["match"]
        assert m.get("path") != path and not path.startswith(m.get("prefix", "\0")), rule
    return path


def _wait_for_jwks(envoy, cfg: dict, mesh: Mesh) -> None:
    """Until the JWKS is loaded, protected requests get 401 `Jwks not available` (fail closed); then
    the token passes jwt (and gets whatever the plugins after it answer)."""
    token = jwt_token(cfg, mesh)
    deadline = time.monotonic() + 20
    while True:
        r = envoy.request("GET", _protected_path(cfg), [_bearer(token)])
        if not (is_problem(r, 401) and (r.header("www-authenticate") or "").startswith("Bearer")):
            return
        assert r.json()["detail"] == "Jwks not available", r
        assert time.monotonic() < deadline, f"the JWKS never loaded: {[i.requests for i in mesh.state.values()]}"
        time.sleep(0.2)


def assert_bearer_401(r, cfg: dict, detail: str) -> None:
    realm = cfg.get("realm", "meshwall")
    assert is_problem(r, 401), r
    assert r.json()["detail"] == detail, r
    www = r.header("www-authenticate")
    assert www.startswith(f'Bearer realm="{realm}"'), www
    if detail != "Jwt is missing":
        assert f'error="invalid_token", error_description="{detail}"' in www, www


def _upstream_headers(r) -> dict:
    out: dict = {}
    for k, v in r.json()["headers"]:
        out.setdefault(k, []).append(v)
    return out


def probe_jwt(envoy, cfg: dict, mesh: Mesh) -> None:
    _wait_for_jwks(envoy, cfg, mesh)
    before = prometheus(envoy)
    path = _protected_path(cfg)
    [name] = sorted(_remote_providers(cfg))
    p = cfg["providers"][name]
    outputs = {m["header_name"] for m in p.get("claim_to_headers", [])}

    # A valid token: through, with the claims as headers; the token and spoofed claim headers are gone.
    token = jwt_token(cfg, mesh)
    spoofed = [(h, "root") for h in sorted(outputs)]
    r = envoy.request("GET", path, [_bearer(token)] + spoofed)
    assert r.status == 200, r
    up = _upstream_headers(r)
    payload = json.loads(b64d(token.split(".")[1]))
    for m in p.get("claim_to_headers", []):
        assert up.get(m["header_name"]) == [payload[m["claim_name"]]], (m, up)
    assert "authorization" not in up, "the token does not reach the upstream (forward: false)"

    # No token, a forged one (another key under the IdP's key id): 401 from the plugin.
    assert_bearer_401(envoy.request("GET", path, spoofed), cfg, "Jwt is missing")
    forged = jwt_token(cfg, mesh, keys=Keyring(prefix="forger-"))
    assert_bearer_401(envoy.request("GET", path, [_bearer(forged)]), cfg, "Jwt verification fails")
    # A rule's claim conditions: 403 for a valid token without the scope.
    scoped_rules = 0
    for rule in cfg.get("rules", []):
        if rule.get("claims") and rule["match"].get("prefix"):
            scoped_rules += 1
            method = (rule["match"].get("methods") or ["GET"])[0]
            r = envoy.request(method, rule["match"]["prefix"], [_bearer(jwt_token(cfg, mesh, scope="openid"))])
            assert is_problem(r, 403), r
            assert 'error="insufficient_scope"' in r.header("www-authenticate"), r
            r = envoy.request(method, rule["match"]["prefix"], [_bearer(token)])
            assert r.status == 200, r
    # A route without `requires`: no token needed, but claim headers are still stripped.
    for rule in cfg.get("rules", []):
        if "requires" not in rule and rule["match"].get("path"):
            r = envoy.request("GET", rule["match"]["path"], spoofed)
            assert r.status == 200, r
            assert not outputs & set(_upstream_headers(r)), r

    # The IdP saw one fetch (one per Envoy, not per worker), over TLS with its name as SNI and Host.
    idp = mesh.state[name]
    u = urlsplit(p["remote_jwks"]["http_uri"]["uri"])
    assert idp.fetches() == [("GET", JWKS_PATH, u.netloc)], idp.requests
    assert set(idp.sni) == {u.hostname}, idp.sni

    after = prometheus(envoy)

    def delta(metric):
        return after.get(metric, 0) - before.get(metric, 0)

    assert after["meshwall_jwt_jwks_fetch_ok"] == 1
    assert delta("meshwall_jwt_denied_reason_missing") == 1
    assert delta("meshwall_jwt_denied_reason_bad_signature") == 1
    assert delta("meshwall_jwt_denied_reason_forbidden") == scoped_rules
    assert delta("meshwall_jwt_allowed") == 1 + scoped_rules


def jwt_reply(envoy, cfg: dict, mesh: Mesh):
    # No token on a route that needs one: 401 from the plugin.
    r = envoy.request("GET", _protected_path(cfg))
    assert_bearer_401(r, cfg, "Jwt is missing")
    return r


def jwt_credentials(envoy, cfg: dict, mesh: Mesh) -> list:
    _wait_for_jwks(envoy, cfg, mesh)
    return [_bearer(jwt_token(cfg, mesh))]


def jwt_upstream(up: dict, cfg: dict, mesh: Mesh) -> None:
    # The token of jwt_credentials: its claims as headers, the token itself not forwarded.
    [name] = sorted(_remote_providers(cfg))
    claims_sent = {"sub": JWT_SUB, "scope": " ".join(_scopes(cfg))}
    for m in cfg["providers"][name].get("claim_to_headers", []):
        assert up.get(m["header_name"]) == [claims_sent[m["claim_name"]]], (m, up)
    assert "authorization" not in up, up


ACCESS_DETAIL = "access from this client address is not allowed"


def access_reply(envoy, cfg: dict, mesh=None):
    r = envoy.request("GET", "/internal/users", source_ip="127.0.0.2")
    assert is_problem(r, 403) and r.json()["detail"] == ACCESS_DETAIL, r
    assert b"127.0.0" not in r.body, "no address in the reply"
    return r


def probe_access(envoy, cfg: dict, mesh=None) -> None:
    [rule] = [r for r in cfg["rules"] if r["match"].get("prefix") == "/internal/"]
    assert "127.0.0.1" in rule["allow"] and "127.0.0.2" not in rule["allow"], rule
    before = prometheus(envoy)
    assert envoy.request("GET", "/istio/probe", source_ip="127.0.0.2").status == 200
    assert envoy.request("GET", "/internal/users").status == 200
    access_reply(envoy, cfg)
    r = envoy.request("GET", "/internal;x/users", source_ip="127.0.0.2")
    assert is_problem(r, 400) and r.json()["reason"] == "path_params", r
    after = prometheus(envoy)

    def delta(m):
        return after.get(m, 0) - before.get(m, 0)

    assert delta("meshwall_access_allowed") == 2
    assert delta("meshwall_access_denied_reason_not_allowed") == 1
    assert delta("meshwall_access_ambiguous_reason_path_params") == 1


def _cors_origin(cfg):
    return next(m["exact"] for m in cfg["default"]["allow_origin_string_match"]
                if m.get("exact") not in (None, "*", "null"))


def _preflight(origin, method="PUT"):
    return [("Origin", origin), ("Access-Control-Request-Method", method)]


def cors_reply(envoy, cfg, mesh=None):
    origin = _cors_origin(cfg)
    r = envoy.request("OPTIONS", "/istio/cors-probe", _preflight(origin))
    assert r.status == 204 and r.header("access-control-allow-origin") == origin, r
    return r


def probe_cors(envoy, cfg, mesh=None):
    origin, d = _cors_origin(cfg), cfg["default"]
    r = cors_reply(envoy, cfg)
    assert r.header("access-control-allow-credentials") == ("true" if d.get("allow_credentials") else None), r
    assert r.header("access-control-max-age") == str(d["max_age"]), r
    r = envoy.request("OPTIONS", "/istio/cors-probe", _preflight("https://not-allowed.invalid"))
    assert not [k for k, _ in r.headers if k.startswith("access-control-")], r
    wide = [("x-echo-header", "Access-Control-Allow-Origin: *")]
    r = envoy.request("GET", "/istio/cors-probe", [("Origin", origin)] + wide)
    assert r.status == 200 and r.header_all("access-control-allow-origin") == [origin], r
    assert "Origin" in [t.strip() for v in r.header_all("vary") for t in v.split(",")], r
    r = envoy.request("GET", "/istio/cors-probe", [("Origin", "https://not-allowed.invalid")] + wide)
    assert r.header("access-control-allow-origin") is None, r


# --- apikey -------------------------------------------------

# The demo keys of envoy/apikey.yaml and istio/apikey.yaml (the manifests hold only their digests).
APIKEY_DEMO_KEYS = ["demo-mobile-4f1c9e27b8", "demo-ops-9a3d5b61c0", "demo-batch-2e7f08d4a6"]


def _apikey_consumers(cfg: dict) -> dict:
    """Consumer name → (a key of it, its groups), for the consumers whose key is a demo key."""
    known = {"sha256:" + hashlib.sha256(k.encode()).hexdigest(): k for k in APIKEY_DEMO_KEYS}
    out = {}
    for c in cfg["consumers"]:
        keys = [known[k.lower()] for k in c["keys"] if k.lower() in known]
        if keys:
            out[c["name"]] = (keys[0], c.get("groups", []))
    assert out, "the manifest's consumers use the demo keys (tests/istio_filters.py APIKEY_DEMO_KEYS)"
    return out


def _apikey_header(cfg: dict) -> str:
    return (cfg.get("from_headers") or [{"name": "x-api-key"}])[0]["name"]


def _apikey_protected_path(cfg: dict) -> str:
    path = "/istio/needs-a-key"
    for rule in cfg.get("rules", []):
        m = rule["match"]
        assert m.get("path") != path and not path.startswith(m.get("prefix", "\0")), rule
    return path


def apikey_reply(envoy, cfg: dict, mesh=None):
    # No key on a route that needs one: 401 from the plugin.
    r = envoy.request("GET", _apikey_protected_path(cfg))
    assert is_problem(r, 401) and r.json()["detail"] == "API key is missing", r
    assert r.header("www-authenticate") == f'APIKey realm="{cfg.get("realm", "meshwall")}"', r
    return r


def _apikey_best_consumer(cfg: dict) -> str:
    """The demo consumer whose groups let it through the most group rules (in the chain, the
    requests meant for later plugins must get through every rule of apikey)."""
    consumers = _apikey_consumers(cfg)

    def passes(name):
        return sum(1 for r in cfg.get("rules", []) if r.get("groups") and set(consumers[name][1]) & set(r["groups"]))

    return max(consumers, key=passes)


def apikey_credentials(envoy, cfg: dict, mesh=None) -> list:
    key, _ = _apikey_consumers(cfg)[_apikey_best_consumer(cfg)]
    return [(_apikey_header(cfg), key)]


def apikey_upstream(up: dict, cfg: dict, mesh=None) -> None:
    # The consumer of apikey_credentials, told to the upstream; the key not forwarded.
    name = _apikey_best_consumer(cfg)
    groups = _apikey_consumers(cfg)[name][1]
    assert up.get(cfg.get("consumer_header", "x-consumer-name")) == [name], up
    assert up.get(cfg.get("groups_header", "x-consumer-groups")) == ([", ".join(groups)] if groups else None), up
    assert _apikey_header(cfg).lower() not in up, up


def probe_apikey(envoy, cfg: dict, mesh=None) -> None:
    before = prometheus(envoy)
    consumers = _apikey_consumers(cfg)
    header = _apikey_header(cfg)
    name_h = cfg.get("consumer_header", "x-consumer-name")
    groups_h = cfg.get("groups_header", "x-consumer-groups")
    path = _apikey_protected_path(cfg)
    spoofed = [(name_h, "root"), (groups_h, "admin")]
    # Each consumer's key: through, the upstream told who called (never what the client claimed),
    # without the key.
    for name, (key, groups) in consumers.items():
        r = envoy.request("GET", path, [(header, key)] + spoofed)
        assert r.status == 200, r
        up: dict = {}
        for k, v in r.json()["headers"]:
            up.setdefault(k, []).append(v)
        assert up[name_h] == [name], up
        assert up.get(groups_h) == ([", ".join(groups)] if groups else None), up
        assert header not in up, "the key does not reach the upstream"
    apikey_reply(envoy, cfg)
    r = envoy.request("GET", path, [(header, "not-a-configured-key")])
    assert is_problem(r, 401) and r.json()["detail"] == "API key is not valid", r
    # Group rules: 403 for a consumer outside the groups, 200 for one inside.
    forbidden = 0
    for rule in cfg.get("rules", []):
        if not rule.get("groups") or not rule["match"].get("prefix"):
            continue
        method = (rule["match"].get("methods") or ["GET"])[0]
        for name, (key, groups) in consumers.items():
            r = envoy.request(method, rule["match"]["prefix"], [(header, key)])
            if set(groups) & set(rule["groups"]):
                assert r.status == 200, (name, r)
            else:
                assert is_problem(r, 403), (name, r)
                forbidden += 1
    # Routes without a key: through, the consumer headers still stripped.
    for rule in cfg.get("rules", []):
        if rule.get("requires") is False and rule["match"].get("path"):
            r = envoy.request("GET", rule["match"]["path"], spoofed)
            assert r.status == 200 and not {name_h, groups_h} & {k for k, _ in r.json()["headers"]}, r
    after = prometheus(envoy)

    def delta(metric):
        return after.get(metric, 0) - before.get(metric, 0)

    assert delta("meshwall_apikey_denied_reason_missing") == 1
    assert delta("meshwall_apikey_denied_reason_invalid") == 1
    assert delta("meshwall_apikey_denied_reason_forbidden") == forbidden
    assert after["meshwall_apikey_consumers"] == len(cfg["consumers"])


# --- the chain (istio/chain.yaml) and the suite (istio/suite.yaml) --------------------------------------

SUITE = "suite"
# The suite's order (filters/suite/src/policy.rs ORDER), which is the Istio chain's phase/priority order.
SUITE_ORDER = ["headers", "access", "cors", "jwt", "apikey", "ratelimit", "validate"]
# A request every policy of the shipped chain lets through (with every credential): the pet store's
# GET /v1/pets (istio/validate.yaml).
THROUGH = ("GET", "/v1/pets?limit=5")


class With:
    """The Envoy, with `extra` headers on every request (the credentials of the plugins before)."""

    def __init__(self, envoy, extra: list):
        self.envoy, self.extra = envoy, list(extra)

    def request(self, method, path, headers=None, body=None, **kw):
        pairs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
        return self.envoy.request(method, path, pairs + self.extra, body, **kw)

    def __getattr__(self, name):
        return getattr(self.envoy, name)


def walk_chain(envoy, configs: dict, meshes: dict, order: list) -> None:
    """Through the chain of `configs` ({policy: its config}, run in `order`), as one plugin per policy
    (istio/chain.yaml) or as the suite's sections (istio/suite.yaml): each policy after `headers`
    answers its own local reply to a request carrying the credentials of the ones before, and
    `headers` is applied to that reply; a request with every credential reaches the upstream with
    what each policy tells it; the router's local reply is cleaned too; a preflight cors does not
    allow gets no further than the first policy that asks for credentials."""
    assert set(configs) <= set(order), sorted(set(configs) - set(order))
    headers_cfg = configs.get("headers")

    def cleaned(r):
        if headers_cfg is not None:
            assert_headers_applied(r, headers_cfg)

    later = [n for n in order if n in configs and n != "headers"]
    assert later, "the chain has policies after headers"
    credentials = []  # what the policies already passed want to see
    for name in later:
        case = FILTERS[name]
        assert case.local_reply is not None, f"FILTERS[{name!r}] needs a local_reply"
        cleaned(case.local_reply(With(envoy, credentials), configs[name], meshes[name]))
        if case.credentials is not None:
            credentials += case.credentials(envoy, configs[name], meshes[name])
    if "validate" in configs:
        assert "get" in configs["validate"]["spec"]["paths"]["/pets"], "THROUGH is an operation of the API"
    r = With(envoy, credentials).request(*THROUGH)
    assert r.status == 200 and r.json()["path"] == THROUGH[1], r
    up = _upstream_headers(r)
    for name in later:
        if FILTERS[name].upstream is not None:
            FILTERS[name].upstream(up, configs[name], meshes[name])
    cleaned(r)
    # The router's own local reply (no virtual host for this authority), for a request every policy
    # lets through.
    r = With(envoy, credentials).request(THROUGH[0], THROUGH[1], {"Host": "unknown.example"})
    assert r.status == 404 and r.body == b"", r
    cleaned(r)
    askers = [n for n in later if FILTERS[n].credentials is not None]
    if "cors" in configs and askers:
        # Preflights carry no credentials: one cors does not answer must not reach the upstream.
        r = envoy.request("OPTIONS", "/istio/cors-probe", _preflight("https://not-allowed.invalid"))
        assert is_problem(r, 401), r
        assert not [k for k, _ in r.headers if k.startswith("access-control-")], r
        for name in askers:
            assert configs[name].get("bypass_cors_preflight") is False, \
                f"{name}: with cors before it, bypass_cors_preflight lets refused preflights through"


@contextmanager
def combined_mesh(configs: dict) -> Iterator[Mesh]:
    """The mesh of every policy in `configs` at once ({policy: config}); state = {policy: Mesh}."""
    with ExitStack() as stack:
        meshes = {n: stack.enter_context(FILTERS[n].mesh(c)) for n, c in configs.items()}
        yield Mesh(clusters=[c for m in meshes.values() for c in m.clusters], state=meshes)


def probe_suite(envoy, cfg: dict, mesh: Mesh) -> None:
    walk_chain(envoy, cfg, mesh.state, SUITE_ORDER)
    # Each policy counts under its own names (meshwall_<policy>_…), as in its single-filter module.
    counted = {n.split("_")[1] for n, value in prometheus(envoy).items() if n.startswith("meshwall_") and value}
    assert set(cfg) - {"headers"} <= counted, sorted(counted)


FILTERS: dict[str, FilterCase] = {
    "headers": FilterCase(probe=probe_headers),
    "jwt": FilterCase(probe=probe_jwt, local_reply=jwt_reply, mesh=jwt_mesh, credentials=jwt_credentials,
                      upstream=jwt_upstream),
    "ratelimit": FilterCase(probe=probe_ratelimit, local_reply=ratelimit_reply),
    "validate": FilterCase(probe=probe_validate, local_reply=validate_reply),
    "access": FilterCase(probe=probe_access, local_reply=access_reply),
    "cors": FilterCase(probe=probe_cors, local_reply=cors_reply),
    "apikey": FilterCase(probe=probe_apikey, local_reply=apikey_reply, credentials=apikey_credentials,
                         upstream=apikey_upstream),
    SUITE: FilterCase(probe=probe_suite, mesh=combined_mesh),
}
