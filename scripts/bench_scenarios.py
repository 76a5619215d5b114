"""The scenarios of `make bench`, as data: each is a description and a list of variants (the first
is the reference the others are compared with), built for a mode (`direct` or `proxied`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Optional

import harness

WASM = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
ROUTER = {"name": "envoy.filters.http.router",
          "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
                           "suppress_envoy_headers": True}}
# Headers a backend leaks, added to every answer so the headers policy has work to do.
LEAKY = ["server", "x-powered-by", "x-aspnet-version", "x-runtime"]
OWASP = [("strict-transport-security", "max-age=63072000; includeSubDomains"),
         ("x-content-type-options", "nosniff"), ("x-frame-options", "DENY"),
         ("referrer-policy", "no-referrer"),
         ("content-security-policy", "default-src 'none'; frame-ancestors 'none'"),
         ("cross-origin-resource-policy", "same-origin"),
         ("x-permitted-cross-domain-policies", "none")]


@dataclass
class Load:
    """What wrk sends: headers, and optionally a method/body/path or a whole Lua script."""
    headers: list = field(default_factory=list)
    method: Optional[str] = None
    body: Optional[str] = None
    path: str = "/bench"
    lua: Optional[str] = None


@dataclass
class Variant:
    label: str
    filters: list = field(default_factory=list)  # http_filters before the router
    route_extra: dict = field(default_factory=dict)  # extra route fields (native header options)
    load: Load = field(default_factory=Load)


def listener(name, http_filters, routes):
    hcm = {"@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
           "stat_prefix": name, "server_header_transformation": "PASS_THROUGH",
           "route_config": {"name": name, "virtual_hosts": [{"name": name, "domains": ["*"], "routes": routes}]},
           "http_filters": http_filters + [ROUTER]}
    return {"name": name, "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                            "typed_config": hcm}]}]}


def bootstrap(listeners, clusters=()):
    return {"admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
            "static_resources": {"listeners": listeners, "clusters": list(clusters)}}


def backend_cluster():
    return {"name": "backend", "type": "STATIC", "connect_timeout": "1s",
            "load_assignment": {"cluster_name": "backend", "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 1}}}}]}]}}


def leaky_answer():
    return {"direct_response": {"status": 200, "body": {"inline_string": '{"ok":true}'}},
            "response_headers_to_add": [{"header": {"key": k, "value": "x"}} for k in LEAKY]}


def backend_bootstrap():
    """The backend of `proxied` mode: an Envoy answering with leaky headers."""
    return bootstrap([listener("backend", [], [{"match": {"prefix": "/"}, **leaky_answer()}])])


def front(http_filters, route_extra=None, direct=False):
    """The Envoy under test: `direct` answers itself (with the leaky headers), else forwards."""
    route = {"match": {"prefix": "/"}}
    if direct:
        route.update(leaky_answer())
    else:
        route["route"] = {"cluster": "backend"}
    extra = dict(route_extra or {})
    if direct and "response_headers_to_add" in extra:
        route["response_headers_to_add"] = route["response_headers_to_add"] + extra.pop("response_headers_to_add")
    route.update(extra)
    return bootstrap([listener("front", http_filters, [route])], [backend_cluster()])


def wasm_filter(name, config, module=None):
    """A meshwall module; `module` defaults to meshwall_<name>.wasm (the suite is meshwall.wasm)."""
    text = config if isinstance(config, str) else json.dumps(config)
    return {"name": f"meshwall.{name}", "typed_config": {"@type": WASM, "config": {
        "name": f"meshwall.{name}", "root_id": f"meshwall.{name}",
        "allow_on_headers_stop_iteration": True,
        "vm_config": {"vm_id": f"meshwall.{name}", "runtime": "envoy.wasm.runtime.v8",
                      "code": {"local": {"filename": str(harness.MODULE_DIR / f"{module or f'meshwall_{name}'}.wasm")}}},
        "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": text}}}}


def suite_filter(sections):
    return wasm_filter("suite", sections, module="meshwall")


# -- native equivalents ------------------------------------------------------------------------
NATIVE_HEADERS_ROUTE = {
    "response_headers_to_remove": LEAKY,
    "response_headers_to_add": [{"header": {"key": k, "value": v}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
                                for k, v in OWASP]
    + [{"header": {"key": "cache-control", "value": "no-store"}, "append_action": "ADD_IF_ABSENT"}],
}
BIG_BUCKET = {"max_tokens": 1_000_000_000, "tokens_per_fill": 1_000_000_000, "fill_interval": "1s"}


def native_local_ratelimit():
    return {"name": "envoy.filters.http.local_ratelimit", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
        "stat_prefix": "bench", "token_bucket": BIG_BUCKET,
        "filter_enabled": {"runtime_key": "rl_enabled", "default_value": {"numerator": 100, "denominator": "HUNDRED"}},
        "filter_enforced": {"runtime_key": "rl_enforced", "default_value": {"numerator": 100, "denominator": "HUNDRED"}}}}


RATELIMIT_GLOBAL = {"rules": [{"name": "all", "key": [{"generic_key": {"descriptor_value": "all"}}],
                               "token_bucket": BIG_BUCKET}], "enable_ratelimit_headers": False}
RATELIMIT_PER_IP = {"rules": [{"name": "per-ip", "key": [{"remote_address": {}}], "token_bucket": BIG_BUCKET}],
                    "enable_ratelimit_headers": False}


def jwt_setup(alg, rotate):
    """Native jwt_authn and meshwall.jwt configs with the same inline JWKS and semantics (issuer,
    audience, sub → x-user-id, token removed, 1,000-entry cache), and the load: one token on every
    request (`rotate=False`, the cache path) or 4,000 distinct tokens in turn (every request
    verifies a signature)."""
    from jwt_tokens import Keyring, claims  # tests/ is on sys.path

    keys = Keyring(prefix="bench-")
    jwks = keys.jwks(with_hmac=False)
    iss, aud = "https://issuer.bench.example", "bench"
    tokens = [keys.sign(alg, claims(iss, aud=aud, sub=f"user-{i}", lifetime=7200)) for i in range(4000 if rotate else 1)]
    native = {"name": "envoy.filters.http.jwt_authn", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
        "providers": {"bench": {
            "issuer": iss, "audiences": [aud], "local_jwks": {"inline_string": json.dumps(jwks)},
            "claim_to_headers": [{"header_name": "x-user-id", "claim_name": "sub"}],
            "jwt_cache_config": {"jwt_cache_size": 1000}}},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "bench"}}]}}
    ours = {"providers": {"bench": {
                "issuer": iss, "audiences": [aud], "local_jwks": {"inline_jwks": jwks},
                "claim_to_headers": [{"header_name": "x-user-id", "claim_name": "sub"}]}},
            "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "bench"}}],
            "jwt_cache_size": 1000}
    if rotate:
        # every request verifies: no shared verified-token table either (scenario jwt-shared has it)
        ours["shared_cache_size"] = 0
        table = ",\n".join(f'  "{t}"' for t in tokens)
        # `init` starts where this variant's previous wrk run stopped (scripts/bench.py `wrk`).
        load = Load(lua="local tokens = {\n" + table + "\n}\nlocal i = 0\n"
                        "init = function(args)\n  i = (tonumber(args[1]) or 0) % #tokens\nend\n"
                        "request = function()\n  i = i % #tokens + 1\n"
                        '  return wrk.format("GET", "/bench", {["Authorization"] = "Bearer " .. tokens[i]})\nend\n')
    else:
        load = Load(headers=[f"Authorization: Bearer {tokens[0]}"])
    return native, ours, load


def validate_sample():
    return harness.plugin_config(harness.load_config("validate"), "meshwall.validate")


# -- scenarios ---------------------------------------------------------------------------------
def scenario_headers(mode):
    return ("response header cleanup + OWASP security headers",
            [Variant("native route headers", route_extra=NATIVE_HEADERS_ROUTE),
             Variant("no filter"),
             Variant("meshwall.headers", [wasm_filter("headers", {})]),
             Variant("suite: headers only", [suite_filter({"headers": {}})])])


def scenario_ratelimit(mode):
    return ("token bucket check on every request (bucket never empty)",
            [Variant("native local_ratelimit", [native_local_ratelimit()]),
             Variant("no filter"),
             Variant("meshwall.ratelimit global", [wasm_filter("ratelimit", RATELIMIT_GLOBAL)]),
             Variant("meshwall.ratelimit per-ip", [wasm_filter("ratelimit", RATELIMIT_PER_IP)])])


def _jwt(alg, rotate):
    native, ours, load = jwt_setup(alg, rotate)
    variants = [Variant(f"native jwt_authn {alg}", [native], load=load),
                Variant("no filter", load=load),
                Variant(f"meshwall.jwt {alg}", [wasm_filter("jwt", ours)], load=load)]
    if rotate and alg in ("RS256", "ES256"):
        # the default (`verifier: auto`) checks these on the host; the same in the module, beside it
        variants.append(Variant(f"meshwall.jwt {alg} verifier: wasm",
                                [wasm_filter("jwt", dict(ours, verifier="wasm"))], load=load))
    return variants


def scenario_jwt_cached(mode):
    return ("JWT check, the same ES256 token on every request (verified-token cache)", _jwt("ES256", False))


def scenario_jwt_es256(mode):
    return ("JWT verification, 4,000 distinct ES256 tokens in turn (every request misses the cache)", _jwt("ES256", True))


def scenario_jwt_rs256(mode):
    return ("JWT verification, 4,000 distinct RS256 tokens in turn (every request misses the cache)", _jwt("RS256", True))


def scenario_jwt_shared(mode):
    """What the table shared by all workers costs and saves, in one worker: 4,000 ES256 tokens in
    turn through a 1,000-entry LRU (always a miss), with no table, with one holding every token
    (each request then reads what another worker would have verified), and with a 16-slot one
    (each request a table miss plus a write: the overhead on tokens no worker has seen)."""
    native, ours, load = jwt_setup("ES256", True)
    return ("JWT shared verified-token table: 4,000 ES256 tokens in turn, per-worker LRU of 1,000",
            [Variant("native jwt_authn ES256", [native], load=load),
             Variant("meshwall.jwt no shared table", [wasm_filter("jwt", ours)], load=load),
             Variant("meshwall.jwt shared 16384 (hits)", [wasm_filter("jwt", dict(ours, shared_cache_size=16384))], load=load),
             Variant("meshwall.jwt shared 16 (misses)", [wasm_filter("jwt", dict(ours, shared_cache_size=16))], load=load),
             Variant("meshwall.jwt LRU 8192 (hits)", [wasm_filter("jwt", dict(ours, jwt_cache_size=8192))], load=load)])


def scenario_jwt_shared_2w(mode):
    """The table between workers: two workers, 4,000 ES256 tokens in turn over several
    connections (Envoy spreads them over both workers), each worker's LRU too small to keep
    them. Without the table every worker verifies every token it meets; with it a token one
    worker verified is read by the other."""
    native, ours, load = jwt_setup("ES256", True)
    return ("JWT shared verified-token table, 2 workers: 4,000 ES256 tokens in turn, per-worker LRU of 1,000",
            [Variant("native jwt_authn ES256", [native], load=load),
             Variant("meshwall.jwt no shared table", [wasm_filter("jwt", ours)], load=load),
             Variant("meshwall.jwt shared 16384", [wasm_filter("jwt", dict(ours, shared_cache_size=16384))], load=load)])


scenario_jwt_shared_2w.concurrency = 2
scenario_jwt_shared_2w.modes = ("direct",)


def scenario_jwt_ps256(mode):
    return ("JWT verification, 4,000 distinct PS256 tokens in turn (module only: the host has no RSA-PSS)", _jwt("PS256", True))


def scenario_jwt_eddsa(mode):
    return ("JWT verification, 4,000 distinct EdDSA tokens in turn (module only: the host has no Ed25519)", _jwt("EdDSA", True))


ORDER_BODY = json.dumps({
    "petId": 4711, "quantity": 3, "shipDate": "2025-06-01T12:30:00Z",
    "notes": "Leave at the back door; the dog is friendly. Call before delivery, please.",
    "customer": {"id": "c-0042", "name": "Ada Lovelace", "email": "ada@example.com",
                 "address": {"street": "12 Analytical Row", "city": "London", "zip": "NW1 2AB", "country": "GB"}},
    "lines": [{"sku": f"SKU-{i:04d}", "title": f"Chew toy model {i}", "qty": i % 3 + 1,
               "price": {"amount": 4.99 + i, "currency": "EUR"}} for i in range(6)],
    "tags": ["gift", "express", "fragile"], "coupon": None, "gift": True})


def scenario_validate(mode):
    load = Load(headers=["Content-Type: application/json"], method="POST", body=ORDER_BODY,
                path="/v1/orders?dry_run=true&ids=1|2|3")
    return (f"POST /v1/orders with a {len(ORDER_BODY)}-byte JSON body, the spec of envoy/validate.yaml",
            [Variant("no filter", load=load),
             Variant("meshwall.validate", [wasm_filter("validate", validate_sample())], load=load),
             Variant("suite: validate only", [suite_filter({"validate": validate_sample()})], load=load)])


def chain_sections(jwt_cfg):
    """The four policies as the full chain configures them: headers, jwt, ratelimit, validate
    (a spec declaring GET /bench, so validate routes and checks every request)."""
    spec = {"openapi": "3.1.0", "info": {"title": "bench", "version": "1"},
            "paths": {"/bench": {"get": {"parameters": [{"name": "x-user-id", "in": "header", "schema": {"type": "string"}}],
                                         "responses": {"200": {"description": "ok"}}}}}}
    return {"headers": {}, "jwt": jwt_cfg, "ratelimit": RATELIMIT_GLOBAL, "validate": {"spec": spec}}


def scenario_chain(mode):
    native_jwt, ours_jwt, load = jwt_setup("ES256", False)
    sections = chain_sections(ours_jwt)
    modules = [wasm_filter(name, sections[name]) for name in ("headers", "jwt", "ratelimit", "validate")]
    return ("full chain: headers + cached ES256 jwt + ratelimit (+ validate routing for meshwall)",
            [Variant("native chain", [native_jwt, native_local_ratelimit()], route_extra=NATIVE_HEADERS_ROUTE, load=load),
             Variant("no filter", load=load),
             Variant("meshwall: four modules", modules, load=load),
             Variant("meshwall: suite module", [suite_filter(sections)], load=load),
             Variant("suite without validate", [suite_filter({k: v for k, v in sections.items() if k != "validate"})], load=load)])


def scenario_suite7(mode):
    """All seven policies on in the suite module: the chain's four plus access (a private-network
    allow list), cors (an allowed origin on every request) and apikey (10,000 consumers, the key
    of one on every request), against the seven as separate modules and the native chain (which has no
    equivalent of access, cors, apikey and validate)."""
    from bench_apikey import apikey_config, bench_key

    native_jwt, ours_jwt, load = jwt_setup("ES256", False)
    sections = chain_sections(ours_jwt)
    sections["access"] = {"allow": ["127.0.0.0/8", "10.0.0.0/8"], "deny": ["10.66.0.0/16"]}
    sections["cors"] = {"default": {"allow_origin_string_match": [{"exact": "https://app.example.com"}],
                                    "allow_methods": "GET, POST", "allow_credentials": True}}
    sections["apikey"] = apikey_config(10_000)
    order = ["headers", "access", "cors", "jwt", "apikey", "ratelimit", "validate"]
    load7 = Load(headers=load.headers + ["Origin: https://app.example.com", f"x-api-key: {bench_key(7)}"])
    modules = [wasm_filter(n, sections[n]) for n in order]
    return ("all seven policies: headers, access, cors, cached ES256 jwt, apikey (10,000 consumers), ratelimit, validate",
            [Variant("native chain", [native_jwt, native_local_ratelimit()], route_extra=NATIVE_HEADERS_ROUTE, load=load7),
             Variant("no filter", load=load7),
             Variant("meshwall: seven modules", modules, load=load7),
             Variant("meshwall: suite, all seven", [suite_filter({n: sections[n] for n in order})], load=load7)])


def floor_filter(label, steps, module="meshwall_bench_floor_sdk"):
    """The bench-only floor module (scripts/bench_floor) doing `steps`, one ABI call each."""
    return Variant(label, [wasm_filter("floor", steps, module=module)])


def scenario_floor(mode):
    """What any Wasm filter costs in this Envoy before doing anything, and what each ABI call
    adds (scripts/bench_floor, built by bench.py), beside the native chain's whole overhead and
    the suite module. Every variant gets the chain's load (a cached ES256
    token), so the native chain and the suite do their full work."""
    native_jwt, ours_jwt, load = jwt_setup("ES256", False)
    variants = [
        Variant("no filter"),
        Variant("native chain", [native_jwt, native_local_ratelimit()], route_extra=NATIVE_HEADERS_ROUTE),
        floor_filter("empty, no SDK (2 exports)", "", module="meshwall_bench_floor_raw"),
        floor_filter("empty, SDK", ""),
        floor_filter("+ read request headers", "read"),
        floor_filter("+ 1 metric increment", "read,metric"),
        floor_filter("+ 1 shared-data read", "read,metric,shared"),
        floor_filter("+ set 1 response header", "read,metric,shared,set"),
        floor_filter("+ read response headers", "read,metric,shared,set,resp"),
        floor_filter("empty + 1 get_property", "property"),
        floor_filter("empty + set 12 resp. headers", "set12"),
        floor_filter("empty + 12 headers, 1 map call", "map12"),
        Variant("meshwall: suite module", [suite_filter(chain_sections(ours_jwt))]),
    ]
    for v in variants:
        v.load = load
    return ("the floor: an empty proxy-wasm filter and single ABI calls, against no filter", variants)


from bench_apikey import scenario_apikey  # noqa: E402  (it imports Variant, Load, wasm_filter from here)

SCENARIOS = {"floor": scenario_floor, "chain": scenario_chain, "suite7": scenario_suite7, "apikey": scenario_apikey, "headers": scenario_headers, "jwt-cached": scenario_jwt_cached,
             "jwt-es256": scenario_jwt_es256, "jwt-rs256": scenario_jwt_rs256, "jwt-ps256": scenario_jwt_ps256, "jwt-eddsa": scenario_jwt_eddsa, "jwt-shared": scenario_jwt_shared, "jwt-shared-2w": scenario_jwt_shared_2w, "ratelimit": scenario_ratelimit,
             "validate": scenario_validate}

from bench_ratelimit_global import scenario_ratelimit_global  # noqa: E402  (starts Redis + meshwall-rls: its `services`)

SCENARIOS["ratelimit-global"] = scenario_ratelimit_global
