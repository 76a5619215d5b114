"""The one table of filters that the Istio tests (tests/test_istio.py, tests/test_istio_envoy.py) cover:
adding a filter is one entry in FILTERS (plus its istio/<name>.yaml manifest and its probes in
tests/istio_probes.py or tests/istio_probes_credentials.py). Each entry says how to check, against the running Envoy, that
the plugin does what its manifest's pluginConfig asks, and which request it answers locally (used to
prove, in the full chain, that `headers` also cleans the local replies of the plugins after it).
A plugin that calls other services (jwt: the IdP's JWKS) also says how to stand them up for the test
and which clusters istiod would give the gateway for them. The suite module (`suite`: every policy in
one plugin, one section of its pluginConfig per policy) is probed with the entries of its sections.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

from istio_probes import (Mesh, assert_headers_applied, access_reply, cors_reply, is_problem, no_mesh, preflight,
                          probe_access, probe_cors, probe_headers, probe_ratelimit, probe_validate, prometheus,
                          ratelimit_reply, upstream_headers, validate_reply)
from istio_probes_credentials import (apikey_credentials, apikey_reply, apikey_upstream, jwt_credentials, jwt_mesh,
                                      jwt_reply, jwt_upstream, probe_apikey, probe_jwt)

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
    up = upstream_headers(r)
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
        r = envoy.request("OPTIONS", "/istio/cors-probe", preflight("https://not-allowed.invalid"))
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
