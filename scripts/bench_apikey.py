"""The `apikey` scenario of `make bench`: the per-request cost of checking an API key against
10,000 consumers, next to no filter and to Envoy's native `api_key_auth` with the same keys.

Register it in scripts/bench_scenarios.py SCENARIOS (`"apikey": scenario_apikey`). Every request
carries the key of another consumer (1,000 of the 10,000 in turn, through a wrk Lua script), so no
lookup is served from a cache; the `10 consumers` variant shows that the cost does not grow with
the number of consumers (one SHA-256, one hash-map lookup, one constant-time comparison).
"""

from __future__ import annotations

import hashlib

from bench_scenarios import Load, Variant, wasm_filter

CONSUMERS = 10_000
ROTATION = 1_000   # distinct keys the load cycles through


def bench_key(i: int) -> str:
    return f"bench-key-{i:05d}-{(i * 2654435761) % 2**32:08x}"


def apikey_config(n: int) -> dict:
    """meshwall.apikey with `n` consumers (keys as SHA-256 digests), the key from `x-api-key`,
    removed before the upstream; the consumer's name and group as headers; a key on every route."""
    return {"consumers": [{"name": f"app-{i:05d}", "groups": [f"tier-{i % 4}"],
                           "keys": ["sha256:" + hashlib.sha256(bench_key(i).encode()).hexdigest()]}
                          for i in range(n)]}


def native_api_key_auth(n: int) -> dict:
    """Envoy's api_key_auth with the same keys (in clear: it has no digest form), the client name
    forwarded in x-consumer-name, the key hidden from the upstream."""
    return {"name": "envoy.filters.http.api_key_auth", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.api_key_auth.v3.ApiKeyAuth",
        "credentials": [{"key": bench_key(i), "client": f"app-{i:05d}"} for i in range(n)],
        "key_sources": [{"header": "x-api-key"}],
        "forwarding": {"header": "x-consumer-name", "hide_credentials": True}}}


def rotating_keys(n: int) -> Load:
    """wrk sends the keys of `min(n, ROTATION)` consumers spread over the `n`, in turn."""
    count = min(n, ROTATION)
    step = max(n // count, 1)
    table = ",\n".join(f'  "{bench_key(i * step)}"' for i in range(count))
    return Load(lua="local keys = {\n" + table + "\n}\nlocal i = 0\n"
                    "request = function()\n  i = i % #keys + 1\n"
                    '  return wrk.format("GET", "/bench", {["x-api-key"] = keys[i]})\nend\n')


def scenario_apikey(mode):
    load = rotating_keys(CONSUMERS)
    return (f"API key check on every request, {CONSUMERS:,} consumers (keys as SHA-256 digests), "
            f"{ROTATION:,} distinct keys in turn",
            [Variant("no filter", load=load),
             Variant(f"native api_key_auth {CONSUMERS:,}", [native_api_key_auth(CONSUMERS)], load=load),
             Variant("meshwall.apikey 10", [wasm_filter("apikey", apikey_config(10))], load=rotating_keys(10)),
             Variant(f"meshwall.apikey {CONSUMERS:,}", [wasm_filter("apikey", apikey_config(CONSUMERS))], load=load)])
