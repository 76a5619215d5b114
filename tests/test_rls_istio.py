"""Istio manifests for fleet-wide limits (istio/rls/): meshwall-rls and Redis in the mesh
(meshwall-rls.yaml), the DestinationRule that keeps its cluster HTTP/2, a ServiceEntry for a
meshwall-rls outside the mesh, and the gateway's WasmPlugin with global rules
(ratelimit-global.yaml; its TrafficExtension form in istio/rls/traffic-extensions/).

What is checked: the WasmPlugin and TrafficExtension against Istio's vendored CRDs; the plugin's
`cluster` is the name istiod gives the Service's (or ServiceEntry's) gRPC port
(`outbound|<port>||<host>`), and that port is one istiod makes HTTP/2; the Deployment's flags
and the ConfigMap's limits are accepted by the real meshwall-rls; and the plugin, as istiod and
istio-agent hand it to the gateway, runs in the real Envoy against real meshwall-rls and Redis
through a cluster of that name: admissions, 429, the unlimited value, and 503 when Redis stops.
(The ServiceEntry and DestinationRule CRDs are not vendored: their fields are checked here by
what istiod reads, not by schema.)

  python3 tests/test_rls_istio.py    # rewrites istio/rls/traffic-extensions/ from the WasmPlugin
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402
import istio_translate as tr  # noqa: E402
from istio_crd import CRD_PATH, TE_CRD_PATH, WasmPluginValidator, load_docs  # noqa: E402

RLS_DIR = harness.ROOT / "istio" / "rls"
PLUGIN = RLS_DIR / "ratelimit-global.yaml"
TE_PLUGIN = RLS_DIR / tr.TE_DIR_NAME / "ratelimit-global.yaml"
REGISTRY = "registry.example.com/meshwall"


def te_text() -> str:
    """The TrafficExtension form of istio/rls/ratelimit-global.yaml, as committed."""
    out = tr.traffic_extension_manifest(PLUGIN.read_text(encoding="utf-8"), "rls/ratelimit-global")
    return (out.replace("`python3 tests/istio_translate.py`", "`python3 tests/test_rls_istio.py`")
            .replace("(tests/test_istio.py\n# checks", "(tests/test_rls_istio.py\n# checks"))


def docs(name: str) -> list:
    return load_docs(RLS_DIR / name)


def find(documents: list, kind: str, name: str) -> dict:
    [doc] = [d for d in documents if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def plugin_config() -> dict:
    [wp] = load_docs(PLUGIN)
    return wp["spec"]["pluginConfig"]


def port_protocol(port: dict) -> str:
    """istiod's protocol of a Kubernetes Service port (pkg/config/kube/conversion.go
    ConvertProtocol): appProtocol if set, else the port name; its prefix before `-` decides."""
    name = (port.get("appProtocol") or port.get("name") or "").lower()
    if name.startswith("grpc-web"):
        return "GRPC-Web"
    return {"grpc": "GRPC", "http2": "HTTP2", "http": "HTTP", "tcp": "TCP"}.get(name.split("-")[0], "Unsupported")


def in_mesh_host_and_port() -> tuple:
    """(FQDN, port) of the meshwall-rls Service's gRPC port."""
    svc = find(docs("meshwall-rls.yaml"), "Service", "meshwall-rls")
    [grpc] = [p for p in svc["spec"]["ports"] if port_protocol(p) == "GRPC"]
    return f"{svc['metadata']['name']}.{svc['metadata']['namespace']}.svc.cluster.local", grpc["port"]


# --- the manifests, as the API server and istiod read them -----------------------------------------

def test_wasmplugin_is_valid_for_istios_crd():
    [wp] = load_docs(PLUGIN)
    assert WasmPluginValidator(CRD_PATH).errors(wp) == []
    assert wp["metadata"]["name"] == "meshwall-ratelimit", "the same plugin as istio/ratelimit.yaml: one or the other"


def test_traffic_extension_is_the_wasmplugin():
    assert TE_PLUGIN.read_text(encoding="utf-8") == te_text(), f"{TE_PLUGIN} is stale: python3 tests/test_rls_istio.py"
    [wp], [te] = load_docs(PLUGIN), load_docs(TE_PLUGIN)
    assert WasmPluginValidator(TE_CRD_PATH).errors(te) == []
    assert te == tr.traffic_extension_from_wasmplugin(wp, synthetic=False)
    assert tr.plugin_config(te) == tr.plugin_config(wp)


def test_plugin_calls_the_cluster_istiod_builds_for_the_rls_service():
    host, port = in_mesh_host_and_port()
    assert plugin_config()["rate_limit_service"]["cluster"] == tr.outbound_cluster_name(host, port) \
        == "outbound|8081||meshwall-rls.ratelimit.svc.cluster.local"
    # The port reaches the container's gRPC listener.
    objs = docs("meshwall-rls.yaml")
    svc = find(objs, "Service", "meshwall-rls")
    [sp] = [p for p in svc["spec"]["ports"] if p["port"] == port]
    dep = find(objs, "Deployment", "meshwall-rls")
    assert svc["spec"]["selector"] == dep["spec"]["template"]["metadata"]["labels"]
    [c] = dep["spec"]["template"]["spec"]["containers"]
    assert sp["targetPort"] in [p["containerPort"] for p in c["ports"]]
    args = c["args"]
    assert args[args.index("--grpc-addr") + 1] == f"0.0.0.0:{sp['targetPort']}"


def test_rls_cluster_is_http2():
    # istiod (cluster_builder.go setUpstreamProtocol) gives a port of protocol GRPC/HTTP2 the http2
    # options; shouldH2Upgrade upgrades on `h2UpgradePolicy: UPGRADE` unless useClientProtocol is set.
    host, port = in_mesh_host_and_port()
    svc = find(docs("meshwall-rls.yaml"), "Service", "meshwall-rls")
    [sp] = [p for p in svc["spec"]["ports"] if p["port"] == port]
    assert port_protocol(sp) == "GRPC"
    [dr] = docs("destination-rule.yaml")
    assert dr["kind"] == "DestinationRule" and dr["spec"]["host"] == host
    assert dr["metadata"]["namespace"] == svc["metadata"]["namespace"]
    http = dr["spec"]["trafficPolicy"]["connectionPool"]["http"]
    assert http["h2UpgradePolicy"] == "UPGRADE" and not http.get("useClientProtocol")


def test_service_entry_for_an_rls_outside_the_mesh():
    se = find(docs("service-entry.yaml"), "ServiceEntry", "meshwall-rls-external")
    dr = find(docs("service-entry.yaml"), "DestinationRule", "meshwall-rls-external")
    [host] = se["spec"]["hosts"]
    [p] = se["spec"]["ports"]
    assert p["protocol"] == "GRPC", "istiod builds an HTTP/2 cluster only for a GRPC/HTTP2 port"
    assert se["spec"]["resolution"] in ("DNS", "STATIC") and se["spec"]["location"] == "MESH_EXTERNAL"
    assert dr["spec"]["host"] == host
    assert dr["spec"]["trafficPolicy"]["connectionPool"]["http"]["h2UpgradePolicy"] == "UPGRADE"
    # The cluster name the file tells operators to put in the plugin.
    name = tr.outbound_cluster_name(host, p["number"])
    assert name in (RLS_DIR / "service-entry.yaml").read_text()
    assert name in PLUGIN.read_text()


def test_the_deployments_flags_and_the_configmaps_limits_are_accepted_by_meshwall_rls(tmp_path):
    import rls_harness as rh
    rh.build()
    objs = docs("meshwall-rls.yaml")
    limits = find(objs, "ConfigMap", "meshwall-rls-limits")["data"]["limits.yaml"]
    (tmp_path / "limits.yaml").write_text(limits)
    [c] = find(objs, "Deployment", "meshwall-rls")["spec"]["template"]["spec"]["containers"]
    args = list(c["args"])
    args[args.index("--config") + 1] = str(tmp_path / "limits.yaml")
    r = subprocess.run([str(rh.TARGET / "meshwall-rls"), *args, "--check-config"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "config ok: 1 domain(s)" in r.stdout + r.stderr
    # A wrong flag in the Deployment would stop the pod the same way.
    bad = subprocess.run([str(rh.TARGET / "meshwall-rls"), *args, "--redis-timeuot", "1s", "--check-config"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0
    # The ConfigMap's domain and keys are what the plugin's global rules send.
    import yaml
    doc = yaml.safe_load(limits)
    conf = plugin_config()
    assert doc["domain"] == conf["rate_limit_service"]["domain"]
    sent = set()
    for rule in conf["rules"]:
        if rule.get("global"):
            [part] = rule["key"]
            sent.add(part["request_headers"]["descriptor_key"] if "request_headers" in part else next(iter(part)))
    assert sent == {d["key"] for d in doc["descriptors"]}


# --- the plugin in the real Envoy, as istiod + istio-agent configure the gateway --------------------

def istio_grpc_cluster(name: str, connect_timeout: str) -> dict:
    """The parts of istiod's outbound cluster a plugin's gRPC call depends on: its name, HTTP/2
    (the gRPC port), the DestinationRule's connect timeout and http2MaxRequests. istiod delivers
    the endpoints over EDS; here they are static (the port is set through `upstreams`)."""
    ms = int(connect_timeout[:-2]) if connect_timeout.endswith("ms") else int(float(connect_timeout[:-1]) * 1000)
    return {"name": name, "type": "STATIC", "connect_timeout": f"{ms / 1000}s",  # Go duration → proto JSON
            "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}}}},
            "circuit_breakers": {"thresholds": [{"max_requests": 4096}]},
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": 1}}}}]}]}}


@pytest.fixture(scope="module")
def fetch(tmp_path_factory):
    """istio-agent's pull of the ratelimit image, from the layout scripts/oci writes."""
    out = tmp_path_factory.mktemp("oci")
    r = subprocess.run(["python3", str(harness.ROOT / "scripts" / "oci"), "--out", str(out),
                        "--wasm-dir", str(harness.MODULE_DIR), "ratelimit"],
                       cwd=harness.ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return tr.layout_fetcher({f"{REGISTRY}/ratelimit": out / "ratelimit"})


@pytest.mark.parametrize("path", [PLUGIN, TE_PLUGIN], ids=["WasmPlugin", "TrafficExtension"])
def test_global_rules_work_in_envoy_through_the_istio_cluster(path, fetch, echo, tmp_path):
    import rls_harness as rh
    [doc] = load_docs(path)
    conf = tr.wasmplugin_spec(doc)["pluginConfig"]
    cluster = conf["rate_limit_service"]["cluster"]
    [dr] = docs("destination-rule.yaml")
    limits = find(docs("meshwall-rls.yaml"), "ConfigMap", "meshwall-rls-limits")["data"]["limits.yaml"]
    redis = rh.Redis().start()
    rls = rh.Rls(limits, redis.url).start()
    try:
        cfg = tr.bootstrap([copy.deepcopy(doc)], tr.Gateway(), fetch, tmp_path, extra_clusters=[
            istio_grpc_cluster(cluster, dr["spec"]["trafficPolicy"]["connectionPool"]["tcp"]["connectTimeout"])])
        [wasm] = harness.wasm_filters(cfg)
        assert wasm["root_id"] == "meshwall.ratelimit"
        with harness.Envoy(cfg, echo_port=echo.port, upstreams={cluster: rls.port}) as envoy:
            def get(user):
                return envoy.request("GET", "/", {"x-user-id": user}, timeout=10)

            # per-user: a bucket of 5 in meshwall-rls (the ConfigMap), shared by every gateway pod.
            assert [get("alice").status for _ in range(6)] == [200] * 5 + [429]
            over = get("alice")
            assert over.status == 429 and int(over.header("retry-after")) >= 1
            assert [get("bob").status for _ in range(5)] == [200] * 5, "one bucket per user"
            assert all(get("ops").status == 200 for _ in range(8)), "`unlimited` for (user, ops)"
            assert rls.metric('meshwall_rls_decisions_total{domain="edge",code="over_limit"}') >= 2
            # failure_mode deny: meshwall-rls answers UNAVAILABLE without Redis → 503, never 200.
            redis.stop()
            assert get("carol").status == 503
    finally:
        rls.stop()
        redis.stop()


def test_without_authority_the_istio_cluster_name_is_refused_at_load(fetch, echo, tmp_path):
    # Envoy would send `outbound|8081||…` as :authority and the server reset every call (a 503
    # for every request); the filter refuses the configuration instead, naming the field.
    [doc] = load_docs(PLUGIN)
    del doc["spec"]["pluginConfig"]["rate_limit_service"]["authority"]
    cluster = doc["spec"]["pluginConfig"]["rate_limit_service"]["cluster"]
    cfg = tr.bootstrap([doc], tr.Gateway(), fetch, tmp_path, extra_clusters=[istio_grpc_cluster(cluster, "250ms")])
    e = harness.Envoy(cfg, echo_port=echo.port, expect_fail=True).start()
    try:
        assert e.exit_code not in (None, 0), e.log_tail()
        lines = [ln for ln in e.log_text().splitlines() if "meshwall.ratelimit: invalid configuration" in ln]
        assert lines, e.log_tail()
        assert "rate_limit_service.authority" in lines[0], lines[0]
    finally:
        e.stop()


if __name__ == "__main__":
    TE_PLUGIN.parent.mkdir(exist_ok=True)
    TE_PLUGIN.write_text(te_text(), encoding="utf-8")
    print(f"wrote {TE_PLUGIN}")
