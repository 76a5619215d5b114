"""The probes of tests/istio_filters.py for the policies that need no credentials (headers, validate,
ratelimit, access, cors), and what every probe shares: the Mesh a plugin needs around it and the
checks of meshwall's replies."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

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


ACCESS_DETAIL = "access from this client address is not allowed"


def upstream_headers(r) -> dict:
    out: dict = {}
    for k, v in r.json()["headers"]:
        out.setdefault(k, []).append(v)
    return out


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


def preflight(origin, method="PUT"):
    return [("Origin", origin), ("Access-Control-Request-Method", method)]


def cors_reply(envoy, cfg, mesh=None):
    origin = _cors_origin(cfg)
    r = envoy.request("OPTIONS", "/istio/cors-probe", preflight(origin))
    assert r.status == 204 and r.header("access-control-allow-origin") == origin, r
    return r


def probe_cors(envoy, cfg, mesh=None):
    origin, d = _cors_origin(cfg), cfg["default"]
    r = cors_reply(envoy, cfg)
    assert r.header("access-control-allow-credentials") == ("true" if d.get("allow_credentials") else None), r
    assert r.header("access-control-max-age") == str(d["max_age"]), r
    r = envoy.request("OPTIONS", "/istio/cors-probe", preflight("https://not-allowed.invalid"))
    assert not [k for k, _ in r.headers if k.startswith("access-control-")], r
    wide = [("x-echo-header", "Access-Control-Allow-Origin: *")]
    r = envoy.request("GET", "/istio/cors-probe", [("Origin", origin)] + wide)
    assert r.status == 200 and r.header_all("access-control-allow-origin") == [origin], r
    assert "Origin" in [t.strip() for v in r.header_all("vary") for t in v.split(",")], r
    r = envoy.request("GET", "/istio/cors-probe", [("Origin", "https://not-allowed.invalid")] + wide)
    assert r.header("access-control-allow-origin") is None, r
