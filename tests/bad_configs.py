"""The bad-config matrix (tests/test_bad_config_matrix.py): for each policy, wrong configurations
made from the policy's shipped one (envoy/<policy>.yaml) by one change each, grouped by error
class, with the field the one error line must name; and for each policy a probe, a request the
shipped configuration refuses (or marks), which proves the filter still runs.

A case is (class, change, field): `change` takes the shipped configuration (parsed JSON) and
returns the bad one — a dict, or `Raw(text)` for configurations that are not a JSON object with
unique keys. `field` is what the line names after "field `" (the suite puts `<policy>.` first).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Callable, Optional

from cryptography.hazmat.primitives.asymmetric import rsa

from jwt_tokens import b64


@dataclass(frozen=True)
class Raw:
    """A configuration given as text (not JSON, or JSON with a repeated key)."""
    text: str


def _walk_to(cfg, path: str):
    node, keys = cfg, [k.replace("~1", "/").replace("~0", "~") for k in path.split("/")]
    for k in keys[:-1]:
        node = node[int(k)] if isinstance(node, list) else node[k]
    last = keys[-1]
    return node, (int(last) if isinstance(node, list) else last)


def put(path: str, value) -> Callable:
    """Sets `path` (keys and list indices separated by `/`, `~1` for a `/` in a key, as in a JSON
    pointer) to `value`, adding the key if absent."""
    def change(cfg):
        cfg = copy.deepcopy(cfg)
        node, k = _walk_to(cfg, path)
        node[k] = copy.deepcopy(value)
        return cfg
    return change


def drop(path: str) -> Callable:
    def change(cfg):
        cfg = copy.deepcopy(cfg)
        node, k = _walk_to(cfg, path)
        del node[k]
        return cfg
    return change


def both(*changes) -> Callable:
    def change(cfg):
        for c in changes:
            cfg = c(cfg)
        return cfg
    return change


def repeated_key(key: str, first, second) -> Callable:
    """The shipped configuration with `key` written twice (serde would keep the last)."""
    def change(cfg):
        rest = {k: v for k, v in cfg.items() if k != key}
        inner = json.dumps(rest)[1:-1]
        return Raw("{" + f'"{key}": {json.dumps(first)}, "{key}": {json.dumps(second)}' +
                   (", " + inner if inner else "") + "}")
    return change


def not_json(_cfg):
    return Raw("security_headers: owasp_api\n")


def _rsa_jwk(bits: int) -> dict:
    n = rsa.generate_private_key(public_exponent=65537, key_size=bits).public_key().public_numbers().n
    return {"kty": "RSA", "kid": f"rsa-{bits}", "alg": "RS256", "use": "sig",
            "n": b64(n.to_bytes((n.bit_length() + 7) // 8, "big")), "e": "AQAB"}


HS_31_BYTES = {"kty": "oct", "kid": "hs", "alg": "HS256", "k": b64(b"0123456789abcdef0123456789abcde")}
INLINE_KEYS = "providers/example-inline/local_jwks/inline_jwks/keys"
REMOTE = "providers/demo-idp/remote_jwks"


def _huge_spec(cfg):
    """The shipped spec with 3,000 more paths (half a megabyte), one of them broken at the end (the whole document
    is compiled; nothing of it is skipped because it is big)."""
    cfg = copy.deepcopy(cfg)
    paths = cfg["spec"]["paths"]
    for i in range(3_000):
        paths[f"/bulk/{i}/{{id}}"] = {"get": {"parameters": [
            {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
            "responses": {"200": {"description": "ok"}}}}
    paths["/bulk/last/{id}"] = {"get": {"parameters": [
        {"name": "id", "in": "path", "required": True, "schema": {"type": "nope"}}],
        "responses": {"200": {"description": "ok"}}}}
    return cfg


# policy -> [(class, change, field)]
CASES = {
    "headers": [
        ("unknown_field", put("security_header", "none"), "security_header"),
        ("wrong_type", put("request_headers_to_remove", "x-internal-debug"), "request_headers_to_remove"),
        ("invalid_value", put("security_headers", "strict"), "security_headers"),
        ("invalid_name", put("request_headers_to_remove", ["x-ok", "bad header"]), "request_headers_to_remove[1]"),
        ("forbidden_name", put("response_headers_to_remove", ["transfer-encoding"]), "response_headers_to_remove[0]"),
        ("conflicting", put("security_headers_exclude", ["x-not-in-the-preset"]), "security_headers_exclude[0]"),
        ("control_chars", put("response_headers_to_add", [{"header": {"key": "x-a", "value": "a\r\nb: c"}}]),
         "response_headers_to_add[0]"),
        ("repeated_key", repeated_key("security_headers", "owasp_api", "none"), "security_headers"),
        ("not_json", not_json, None),
    ],
    "access": [
        ("unknown_field", put("rules/0/allowed", ["127.0.0.1"]), "rules[0].allowed"),
        ("wrong_type", put("deny", "10.66.0.0/16"), "deny"),
        ("out_of_range", put("rules/0/allow/2", "10.0.0.0/33"), "rules[0].allow[2]"),
        ("out_of_range_number", put("client_ip", {"xff_num_trusted_hops": -1}), "client_ip.xff_num_trusted_hops"),
        ("host_bits_set", put("allow/2", "10.1.2.3/8"), "allow[2]"),
        ("invalid_regex", put("rules/0/match", {"regex": "/internal/(["}), "rules[0].match"),
        ("missing_required", drop("rules/1/match"), "rules[1]"),
        ("repeated_key", repeated_key("deny", ["10.66.0.0/16"], []), "deny"),
    ],
    "cors": [
        ("unknown_field", put("default/allow_origins", ["https://app.example.com"]), "default.allow_origins"),
        ("wrong_type", put("default/allow_credentials", "yes"), "default.allow_credentials"),
        ("invalid_regex", put("default/allow_origin_string_match/2/safe_regex/regex", "https://(pr-"),
         "default.allow_origin_string_match[2]"),
        ("conflicting", put("rules/0/allow_credentials", True), "rules[0]"),
        ("out_of_range", put("default/max_age", "-600"), "default.max_age"),
        ("invalid_origin", put("default/allow_origin_string_match/0/exact", "https://app.example.com/path"),
         "default.allow_origin_string_match[0]"),
        ("invalid_method", put("default/allow_methods", "GET, P O S T"), "default.allow_methods"),
    ],
    "jwt": [
        ("unknown_field", put("providers/demo-idp/audience", "meshwall-demo"), "providers.demo-idp.audience"),
        ("wrong_type", put("providers/example-inline/audiences", "api.example.com"), "providers.example-inline.audiences"),
        ("weak_hs_key", put(INLINE_KEYS, [HS_31_BYTES]), "providers.example-inline.local_jwks.inline_jwks.keys[0]"),
        ("weak_rsa_key", put(INLINE_KEYS, [_rsa_jwk(1024)]), "providers.example-inline.local_jwks.inline_jwks.keys[0]"),
        ("weak_rsa_key_2047", put(INLINE_KEYS, [_rsa_jwk(2047)]),
         "providers.example-inline.local_jwks.inline_jwks.keys[0]"),
        ("missing_required", drop(f"{REMOTE}/http_uri/cluster"), "providers.demo-idp.remote_jwks.http_uri"),
        ("out_of_range", put(f"{REMOTE}/cache_duration", "0s"), "providers.demo-idp.remote_jwks.cache_duration"),
        ("bad_duration", put(f"{REMOTE}/http_uri/timeout", "2 seconds"), "providers.demo-idp.remote_jwks.http_uri.timeout"),
        ("unknown_reference", put("rules/2/requires", {"requires_any": ["demo-idp", "no-such-provider"]}), "rules[2]"),
        ("duplicate_name", put("providers/demo-idp/claim_to_headers/1/header_name", "x-user-id"),
         "providers.demo-idp.claim_to_headers[1]"),
        ("invalid_regex", put("rules/0/match", {"regex": "/healthz("}), "rules[0].match"),
        ("huge_number", put("max_token_bytes", 2 ** 40), "max_token_bytes"),
        ("negative", put("providers/demo-idp/max_lifetime_seconds", -1), "providers.demo-idp.max_lifetime_seconds"),
        ("repeated_key", repeated_key("realm", "a", "b"), "realm"),
    ],
    "apikey": [
        ("unknown_field", put("consumers/0/group", ["partner"]), "consumers[0].group"),
        ("wrong_type", put("consumers", {"mobile-app": {}}), "consumers"),
        ("missing_required", drop("consumers/2/name"), "consumers[2]"),
        ("weak_key", put("consumers/2/keys", ["sha256:c09ea259"]), "consumers[2].keys[0]"),
        ("duplicate_name", put("consumers/2/name", "mobile-app"), "consumers[2].name"),
        ("duplicate_key", put("consumers/2/keys", ["sha256:277d8d24a7dcb25ec6598bdb03c1a7458ae2c877e29c975ebf4daf0636424446"]),
         "consumers[2].keys[0]"),
        ("invalid_name", put("consumer_header", "x consumer"), "consumer_header"),
        ("invalid_regex", put("rules/2/match", {"regex": "/admin/(["}), "rules[2].match"),
        ("conflicting", put("rules/0/groups", ["admin"]), "rules[0].groups"),
    ],
    "ratelimit": [
        ("unknown_field", put("rules/0/token_bucket/burst", 10), "rules[0].token_bucket.burst"),
        ("wrong_type", put("rules/1/token_bucket/max_tokens", "5"), "rules[1].token_bucket.max_tokens"),
        ("out_of_range", put("rules/1/token_bucket/max_tokens", 0), "rules[1].token_bucket"),
        ("out_of_range_huge", put("rules/1/token_bucket/max_tokens", 2 ** 64), "rules[1].token_bucket.max_tokens"),
        ("negative", put("rules/0/token_bucket/tokens_per_fill", -1), "rules[0].token_bucket.tokens_per_fill"),
        ("bad_duration", put("rules/0/token_bucket/fill_interval", "1 minute"), "rules[0].token_bucket.fill_interval"),
        ("duplicate_name", put("rules/1/name", "per-ip"), "rules[1].name"),
        ("missing_required", drop("rules/1/key"), "rules[1]"),
        ("huge_table", put("table", {"shards": 100_000_000, "slots_per_shard": 16}), "table"),
        ("invalid_regex", put("rules/1/match", {"regex": "/login(["}), "rules[1].match"),
    ],
    "validate": [
        ("unknown_field", put("max_body_byte", 10), "max_body_byte"),
        ("wrong_type", put("max_body_bytes", "1MiB"), "max_body_bytes"),
        ("out_of_range", put("json_limits", {"max_depth": 0}), "json_limits.max_depth"),
        ("broken_openapi", put("spec/paths/~1pets", {"get": {"parameters": [{"name": "limit", "in": "query",
                                                                                "schema": {"type": "nope"}}]}}),
         "spec"),
        ("dangling_ref", put("spec/paths/~1pets/post/requestBody/content/application~1json/schema",
                             {"$ref": "#/components/schemas/Nope"}), "spec"),
        ("invalid_regex", put("spec/components/schemas/NewPet/properties/name/pattern", "([a-z"), "spec"),
        ("not_openapi", put("spec", "swagger: '2.0'\ninfo: {title: x, version: '1'}\npaths: {}\n"), "spec"),
        ("huge_openapi", _huge_spec, "spec"),
        ("invalid_enum", put("unknown_path", "sometimes"), "unknown_path"),
        ("huge_number", put("max_body_bytes", 2 ** 40), "max_body_bytes"),
    ],
}


# The suite's own errors: (class, sections change, field) on envoy/suite.yaml's sections.
SUITE_CASES = [
    ("unknown_section", put("firewall", {}), "firewall"),
    ("wrong_type_section", put("jwt", []), "jwt"),
    ("conflicting", put("jwt/bypass_cors_preflight", True), "jwt.bypass_cors_preflight"),
    ("conflicting_apikey", put("apikey/bypass_cors_preflight", True), "apikey.bypass_cors_preflight"),
]


@dataclass(frozen=True)
class Probe:
    """A request the shipped configuration answers in a way only a running filter does."""
    method: str
    path: str
    headers: tuple = ()
    source_ip: Optional[str] = None
    status: int = 0
    header: Optional[tuple] = None          # (name, value): the reply must carry it
    reaches_upstream: bool = False


PROBES = {
    "headers": Probe("GET", "/hello", status=200, header=("x-content-type-options", "nosniff"), reaches_upstream=True),
    "access": Probe("GET", "/internal/users", source_ip="127.0.0.2", status=403),
    "cors": Probe("OPTIONS", "/api/items", (("Origin", "https://app.example.com"),
                                           ("Access-Control-Request-Method", "PUT")), status=204),
    "jwt": Probe("GET", "/api/orders", status=401),
    "apikey": Probe("GET", "/orders", status=401),
    "ratelimit": Probe("GET", "/hello", status=200, header=("ratelimit", None), reaches_upstream=True),
    "validate": Probe("GET", "/v1/pets?limit=500", status=400),
}
