"""The one table of filters that tests/test_istio.py covers: adding a filter is one entry in FILTERS
(plus its istio/<name>.yaml manifest). Each entry says how to check, against the running Envoy, that
the plugin does what its manifest's pluginConfig asks, and which request it answers locally (used to
prove, in the full chain, that `headers` also cleans the local replies of the plugins after it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

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


@dataclass(frozen=True)
class FilterCase:
    # probe(envoy, plugin_config) asserts, against the running Envoy, the behaviour the config asks for.
    probe: Callable
    # local_reply(envoy, plugin_config) -> Resp: sends what makes this plugin answer by itself and
    # returns that answer (asserting it is the plugin's own reply). Used in the full chain, where
    # the plugins before it let such requests through.
    local_reply: Optional[Callable] = None


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


def probe_headers(envoy, cfg: dict) -> None:
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


def probe_validate(envoy, cfg: dict) -> None:
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
    # dropped), through Istio's stats inclusion list.
    after = prometheus(envoy)
    assert after["meshwall_validate_rejected_404"] - before.get("meshwall_validate_rejected_404", 0) == 1
    assert after["meshwall_validate_rejected_405"] - before.get("meshwall_validate_rejected_405", 0) == 1


def validate_reply(envoy, cfg: dict):
    # A path the OpenAPI document does not have: 404 from the plugin.
    assert "/nowhere-in-the-spec" not in cfg["spec"]["paths"]
    r = envoy.request("GET", "/v1/nowhere-in-the-spec")
    assert is_problem(r, 404) and "no API operation" in r.json()["detail"], r
    return r


def _smallest_rule(cfg: dict) -> dict:
    """The rule with the fewest tokens that names one path (and maybe methods)."""
    rules = [r for r in cfg["rules"] if r.get("match", {}).get("path") and not r.get("shadow")]
    return min(rules, key=lambda r: r["token_bucket"]["max_tokens"])


def ratelimit_reply(envoy, cfg: dict):
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


def probe_ratelimit(envoy, cfg: dict) -> None:
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
    metric = "meshwall_ratelimit_rule_" + rule["name"].replace("-", "_")
    after = prometheus(envoy)
    assert after[metric + "_allowed"] - before.get(metric + "_allowed", 0) == q
    assert after[metric + "_limited"] - before.get(metric + "_limited", 0) == 1


FILTERS: dict[str, FilterCase] = {
    "headers": FilterCase(probe=probe_headers),
    "ratelimit": FilterCase(probe=probe_ratelimit, local_reply=ratelimit_reply),
    "validate": FilterCase(probe=probe_validate, local_reply=validate_reply),
}
