"""The probes of tests/istio_filters.py for the policies that ask for credentials (jwt: tokens from a
test IdP whose JWKS the gateway fetches; apikey: the demo keys of the manifests), with what each puts
in front of the upstream."""

from __future__ import annotations

import hashlib
import json
import time
from contextlib import ExitStack, contextmanager
from typing import Iterator, Optional
from urllib.parse import urlsplit

import istio_translate as tr
from istio_idp import JWKS_PATH, running_idp
from istio_probes import Mesh, is_problem, prometheus, upstream_headers
from jwt_tokens import Keyring, b64d, claims



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
    up = upstream_headers(r)
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
            assert not outputs & set(upstream_headers(r)), r

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
