"""What istiod (and istio-agent) make of WasmPlugin and TrafficExtension manifests: the Envoy config a
gateway ends up with.

Matched against istio/istio, the last revision before WasmPlugin was folded into TrafficExtension
(parent of commit 9a028a975ce; the TrafficExtension code at HEAD keeps the same translation):
- pilot/pkg/model/extensions.go `buildPluginConfig`: PluginConfig.name = "<namespace>.<name>",
  root_id = spec.pluginName, configuration = the pluginConfig Struct as JSON in a
  google.protobuf.StringValue (left unset when pluginConfig is empty), failStrategy FAIL_OPEN /
  FAIL_CLOSE (the enum's zero value, so also the default) / FAIL_RELOAD → failure_policy
  FAIL_OPEN / FAIL_CLOSED / FAIL_RELOAD; url without scheme means oci://.
- same file, `buildVMConfig`: runtime envoy.wasm.runtime.v8; environment_variables.key_values gets
  ISTIO_META_WASM_IMAGE_PULL_SECRET / _IMAGE_PULL_POLICY / ISTIO_META_WASM_RESOURCE_VERSION for the agent,
  and vmConfig.env: INLINE (the enum's zero value) → key_values[name] = value, HOST → host_env_keys.
  No vm_id is set. `buildDataSource`: file:// → local filename (the URL minus "file://"), else a
  remote data source {http_uri {uri, timeout 30s, cluster "_"}, sha256}.
- pilot/pkg/networking/core/extension/wasmplugin.go: each plugin becomes an HTTP filter named
  "extensions.istio.io/wasmplugin/<namespace>.<name>" whose config arrives over ECDS (here it is put
  inline: same PluginConfig, no control plane needed).
- pilot/pkg/networking/core/listener_builder.go: AUTHN plugins, Istio's authn filter, AUTHZ plugins,
  RBAC, STATS plugins, UNSPECIFIED_PHASE plugins, ..., router. pilot/pkg/model/push_context.go
  `sortByPriority`: within a phase, higher priority first, no priority = lowest (MinInt32), stable
  (ties keep creation order: here, document order).
- pkg/wasm/convert.go `rewriteVMConfig` (istio-agent): pulls the remote module (checking sha256
  against the OCI manifest digest, pkg/wasm/cache.go + imagefetcher.go), rewrites the code to a local
  file, strips the ISTIO_META_* variables and drops environment_variables if nothing is left.
- pilot/pkg/networking/util/proxy_headers.go: server_name "istio-envoy" with OVERWRITE by default;
  ProxyConfig proxyHeaders.server.disabled=true → PASS_THROUGH (what the headers filter needs to
  remove `Server`).

Clusters a plugin calls (proxy-wasm dispatch_http_call names an Envoy cluster, which must exist in the
gateway's config): istiod names a service's outbound cluster `outbound|<port>|<subset>|<host>`
(pilot/pkg/model/service.go `BuildSubsetKey`), e.g. `outbound|443||idp.example.com` for a
ServiceEntry host idp.example.com port 443. A DestinationRule `tls.mode: SIMPLE` gives that cluster an
UpstreamTlsContext (TLS originated by the proxy; `sni`, `subjectAltNames`, `caCertificates`).

TrafficExtension (Istio >= 1.30, istio/istio tags 1.30.0 … 1.31.0-rc.0, same code at master):
- pilot/pkg/config/kube/extensions/translate.go `translateWasmPlugin`: istiod turns every WasmPlugin
  into a synthetic TrafficExtension named "<name>~istio-translated-wasmplugin" (selector, targetRefs
  with the deprecated targetRef merged in, phase — same enum numbers, UNSPECIFIED_PHASE becomes
  UNSPECIFIED —, priority, match → spec; url, sha256, imagePullPolicy, imagePullSecret,
  pluginConfig, pluginName, failStrategy, vmConfig, type → spec.wasm; verificationKey is not
  copied). The rest of istiod only handles TrafficExtensions: `traffic_extension_from_wasmplugin`.
- pilot/pkg/model/extensions.go `TrafficExtensionWrapper.buildWasmConfig` / `buildVMConfig` /
  `buildDataSource`: the PluginConfig of before, field by field (name "<namespace>.<name>",
  root_id, configuration, vm_config, failure_policy); `ResourceName`
  "extensions.istio.io/trafficextension/<namespace>.<name>" is the HTTP filter's (and its ECDS
  resource's) name (pilot/pkg/networking/core/extension/extensionfilter.go
  `toEnvoyHTTPTrafficExtension`). So a WasmPlugin `meshwall-headers` is, on Istio >= 1.30, the filter
  "extensions.istio.io/trafficextension/istio-system.meshwall-headers~istio-translated-wasmplugin",
  and a TrafficExtension `meshwall-headers` the filter "…/trafficextension/istio-system.meshwall-headers".
- pilot/pkg/model/push_context.go `sortByPriority` and listener_builder.go
  `PopAppendHTTPTrafficExtension` (AUTHN, AUTHZ, STATS, UNSPECIFIED): the same order as before, for
  translated WasmPlugins and TrafficExtensions together (ties: creation time).
- Neither API has a field for PluginConfig.allow_on_headers_stop_iteration, and buildWasmConfig sets
  only the fields above: a plugin cannot hold the request headers while it reads the body.

A document here is either kind: `wasmplugin_spec` maps a TrafficExtension's spec to the WasmPlugin
spec it is equivalent to (the inverse of translateWasmPlugin), and everything below works on that.
A WasmPlugin document given as is gets the names of Istio < 1.30 ("extensions.istio.io/wasmplugin/…");
`traffic_extension_from_wasmplugin(wp)` gives what Istio >= 1.30 makes of it.

Workload selection (networking selectors, pilot/pkg/model/extensions.go `matchTrafficSelectors`):
the plugin's namespace must be the proxy's or the root namespace; spec.selector.matchLabels ⊆
the proxy's labels; a `match` entry matches when its mode is UNDEFINED/CLIENT_AND_SERVER or the
listener's (a gateway is CLIENT) and its ports are empty or contain the listener port.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import tarfile
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import urlsplit

import yaml

ROOT_NAMESPACE = "istio-system"
PHASE_ORDER = ["AUTHN", "AUTHZ", "STATS", "UNSPECIFIED_PHASE"]
FAILURE_POLICY = {"FAIL_CLOSE": "FAIL_CLOSED", "FAIL_OPEN": "FAIL_OPEN", "FAIL_RELOAD": "FAIL_RELOAD"}
INT32_MIN = -(2 ** 31)
AGENT_ENV_PREFIX = "ISTIO_META_"

WASMPLUGIN_FILTER_PREFIX = "extensions.istio.io/wasmplugin/"        # Istio < 1.30
TRAFFIC_EXTENSION_FILTER_PREFIX = "extensions.istio.io/trafficextension/"  # Istio >= 1.30
SYNTHETIC_MARKER = "~istio-translated-wasmplugin"
# translateWasmPlugin: the WasmPlugin fields that go to spec.wasm (verificationKey is not among them),
# and those that stay in spec.
TE_WASM_FIELDS = ("url", "sha256", "imagePullPolicy", "imagePullSecret", "pluginConfig", "pluginName",
                  "failStrategy", "vmConfig", "type")
TE_SPEC_FIELDS = ("selector", "targetRefs", "phase", "priority", "match")
TE_API_VERSION = "extensions.istio.io/v1alpha1"


class Gateway:
    """The proxy the plugins are selected for: an ingress gateway pod (listener class CLIENT)."""

    def __init__(self, namespace: str = "istio-system", labels: Optional[dict] = None, port: int = 8080,
                 server_header_disabled: bool = True):
        self.namespace = namespace
        self.labels = labels if labels is not None else {"istio": "ingressgateway", "app": "istio-ingressgateway"}
        self.port = port
        self.server_header_disabled = server_header_disabled


def protojson_struct(value) -> str:
    """pluginConfig (a google.protobuf.Struct) as protojson prints it: numbers are doubles (an
    integral value prints without a fraction below 1e21), keys in order (we sort them)."""
    def norm(v):
        if isinstance(v, bool) or v is None or isinstance(v, str):
            return v
        if isinstance(v, (int, float)):
            f = float(v)
            return int(f) if f.is_integer() and abs(f) < 1e21 else f
        if isinstance(v, dict):
            return {k: norm(x) for k, x in v.items()}
        if isinstance(v, list):
            return [norm(x) for x in v]
        raise TypeError(f"not representable in a Struct: {type(v).__name__}")

    return json.dumps(norm(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def traffic_extension_from_wasmplugin(wp: dict, synthetic: bool = True) -> dict:
    """What Istio >= 1.30 makes of a WasmPlugin (translateWasmPlugin): a TrafficExtension named
    "<name>~istio-translated-wasmplugin" (`synthetic=False`: under the WasmPlugin's own name, the
    TrafficExtension an operator writes instead)."""
    spec = wp["spec"]
    if "verificationKey" in spec:
        raise ValueError("translateWasmPlugin drops verificationKey")
    te_spec = {}
    for k in TE_SPEC_FIELDS:
        if k == "targetRefs" and not spec.get("targetRefs") and spec.get("targetRef"):
            te_spec[k] = [spec["targetRef"]]
        elif k == "match" and spec.get("match"):
            te_spec[k] = [{f: m[f] for f in ("mode", "ports") if f in m} for m in spec["match"] if m is not None]
        elif k in spec and spec[k] is not None and spec[k] != []:
            te_spec[k] = spec[k]
    if te_spec.get("phase") == "UNSPECIFIED_PHASE":
        te_spec["phase"] = "UNSPECIFIED"
    te_spec["wasm"] = {k: spec[k] for k in TE_WASM_FIELDS if k in spec}
    meta = {"name": wp["metadata"]["name"] + (SYNTHETIC_MARKER if synthetic else ""),
            "namespace": wp["metadata"].get("namespace", "default")}
    return {"apiVersion": TE_API_VERSION, "kind": "TrafficExtension", "metadata": meta, "spec": te_spec}


def wasmplugin_spec(doc: dict) -> dict:
    """The WasmPlugin spec a document stands for: a WasmPlugin's own; for a TrafficExtension with
    `wasm`, the WasmPlugin spec translateWasmPlugin turns into it (every WasmConfig field is the
    WasmPlugin field of the same name and meaning; phase UNSPECIFIED is UNSPECIFIED_PHASE)."""
    kind = doc.get("kind", "WasmPlugin")
    if kind == "WasmPlugin":
        return doc["spec"]
    if kind != "TrafficExtension":
        raise ValueError(f"not a WasmPlugin or TrafficExtension: {kind}")
    spec = doc["spec"]
    if "wasm" not in spec:
        raise ValueError("only TrafficExtensions with `wasm` are modelled here (not `lua`)")
    out = {k: spec[k] for k in TE_SPEC_FIELDS if k in spec}
    if out.get("phase") == "UNSPECIFIED":
        out["phase"] = "UNSPECIFIED_PHASE"
    out.update(spec["wasm"])
    return out


def resource_name(doc: dict) -> str:
    """The HTTP filter's name (= its ECDS resource name) istiod gives a document."""
    ns = doc["metadata"].get("namespace", "default")
    prefix = TRAFFIC_EXTENSION_FILTER_PREFIX if doc.get("kind") == "TrafficExtension" else WASMPLUGIN_FILTER_PREFIX
    return f"{prefix}{ns}.{doc['metadata']['name']}"


def selected(wp: dict, gw: Gateway) -> bool:
    ns = wp["metadata"].get("namespace", "default")
    if ns not in (gw.namespace, ROOT_NAMESPACE):
        return False
    spec = wasmplugin_spec(wp)
    if spec.get("targetRef") or spec.get("targetRefs"):
        return False  # attaches to Gateway API resources / services, not to a labelled pod
    want = (spec.get("selector") or {}).get("matchLabels") or {}
    if any(gw.labels.get(k) != v for k, v in want.items()):
        return False
    if spec.get("type", "HTTP") not in ("HTTP", "UNSPECIFIED_PLUGIN_TYPE"):
        return False
    matches = spec.get("match") or []
    if not matches:
        return True
    for m in matches:
        mode_ok = m.get("mode", "UNDEFINED") in ("UNDEFINED", "CLIENT_AND_SERVER", "CLIENT")
        ports = [p.get("number") for p in m.get("ports") or []]
        if mode_ok and (not ports or gw.port in ports):
            return True
    return False


def plugin_config(wp: dict) -> dict:
    """istiod's PluginConfig for one WasmPlugin or TrafficExtension (before istio-agent), as Envoy
    YAML/JSON."""
    meta, spec = wp["metadata"], wasmplugin_spec(wp)
    ns = meta.get("namespace", "default")
    url = spec["url"]
    scheme = urlsplit(url).scheme or "oci"
    if scheme == "file":
        code = {"local": {"filename": url[len("file://"):]}}
    else:
        u = url if urlsplit(url).scheme else f"oci://{url}"
        code = {"remote": {"http_uri": {"uri": u, "timeout": "30s", "cluster": "_"},
                           "sha256": spec.get("sha256", "")}}
    key_values = {}
    if spec.get("imagePullSecret"):
        key_values["ISTIO_META_WASM_IMAGE_PULL_SECRET"] = spec["imagePullSecret"]
    if spec.get("imagePullPolicy", "UNSPECIFIED_POLICY") != "UNSPECIFIED_POLICY":
        key_values["ISTIO_META_WASM_IMAGE_PULL_POLICY"] = spec["imagePullPolicy"]
    key_values["ISTIO_META_WASM_RESOURCE_VERSION"] = meta.get("resourceVersion", "")
    env = {"key_values": key_values}
    entries = (spec.get("vmConfig") or {}).get("env") or []
    if entries:
        env["host_env_keys"] = [e["name"] for e in entries if e.get("valueFrom", "INLINE") == "HOST"]
        for e in entries:
            if e.get("valueFrom", "INLINE") == "INLINE":
                key_values[e["name"]] = e.get("value", "")
    cfg = {
        "name": f"{ns}.{meta['name']}",
        "vm_config": {"runtime": "envoy.wasm.runtime.v8", "code": code, "environment_variables": env},
        "failure_policy": FAILURE_POLICY[spec.get("failStrategy", "FAIL_CLOSE")],
    }
    if spec.get("pluginName"):
        cfg["root_id"] = spec["pluginName"]
    if spec.get("pluginConfig"):
        cfg["configuration"] = {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                "value": protojson_struct(spec["pluginConfig"])}
    return cfg


def agent_rewrite(cfg: dict, fetch: Callable[[str, str], bytes], module_dir: Path) -> dict:
    """istio-agent's step: fetch remote code (fetch(uri, sha256) → module bytes), write it to a file,
    point the config at it, strip ISTIO_META_* variables."""
    out = json.loads(json.dumps(cfg))
    vm = out["vm_config"]
    remote = vm["code"].get("remote")
    if remote is not None:
        data = fetch(remote["http_uri"]["uri"], remote.get("sha256", ""))
        path = module_dir / (hashlib.sha256(data).hexdigest() + ".wasm")
        path.write_bytes(data)
        vm["code"] = {"local": {"filename": str(path)}}
    env = vm.get("environment_variables")
    if env is not None:
        kv = {k: v for k, v in env.get("key_values", {}).items() if not k.startswith(AGENT_ENV_PREFIX)}
        if kv:
            env["key_values"] = kv
        else:
            env.pop("key_values", None)
        if not env.get("host_env_keys"):
            env.pop("host_env_keys", None)
        if not env:
            del vm["environment_variables"]
    return out


def ordered(plugins: list) -> list:
    """Plugins in filter-chain order: by phase, then priority (higher first), stable."""
    def prio(wp):
        p = wasmplugin_spec(wp).get("priority")
        return INT32_MIN if p is None else p

    out = []
    for phase in PHASE_ORDER:
        in_phase = [wp for wp in plugins if wasmplugin_spec(wp).get("phase", "UNSPECIFIED_PHASE") == phase]
        out += sorted(in_phase, key=prio, reverse=True)  # sorted() is stable
    return out


def http_filters(plugins: list, gw: Gateway, fetch: Callable[[str, str], bytes], module_dir: Path) -> list:
    """The gateway's HTTP filters for these WasmPlugins / TrafficExtensions (Istio's own non-wasm
    filters left out)."""
    filters = []
    for wp in ordered([p for p in plugins if selected(p, gw)]):
        filters.append({
            "name": resource_name(wp),
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                             "config": agent_rewrite(plugin_config(wp), fetch, module_dir)},
        })
    filters.append({"name": "envoy.filters.http.router",
                    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}})
    return filters


def outbound_cluster_name(host: str, port: int, subset: str = "") -> str:
    """istiod's name for the outbound cluster of `host`:`port` (BuildSubsetKey)."""
    return f"outbound|{port}|{subset}|{host}"


def external_tls_cluster(host: str, port: int, endpoint: tuple, ca_file: str) -> dict:
    """The gateway's cluster for a ServiceEntry (hosts [host], ports [{number: port}]) with a
    DestinationRule `tls: {mode: SIMPLE, sni: host, subjectAltNames: [host], caCertificates: ca_file}`:
    the proxy originates TLS, sends SNI `host` and checks the server's certificate.

    Only what matters to a plugin's callout is reproduced: the name, the endpoint and the TLS
    settings. istiod resolves the host by DNS (`resolution: DNS` → STRICT_DNS) and delivers the CA
    over SDS; here the endpoint is a fixed local address (`endpoint` = (ip, port)) and the CA a file.
    """
    name = outbound_cluster_name(host, port)
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "10s",  # Istio's default connectTimeout
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {
            "address": {"socket_address": {"address": endpoint[0], "port_value": endpoint[1]}}}}]}]},
        "transport_socket": {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "sni": host,
                "common_tls_context": {"validation_context": {
                    "trusted_ca": {"filename": str(ca_file)},
                    "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": host}}],
                }},
            },
        },
    }


# The stats Istio's bootstrap keeps by default (pkg/bootstrap/config.go, requiredEnvoyStatsMatcher*):
# only these reach /stats/prometheus on a real gateway. The `wasm` prefix keeps Envoy's
# `wasmcustom.*` stats, which is where plugin metrics live.
ISTIO_STATS_MATCHER = {"stats_matcher": {"inclusion_list": {"patterns": [
    *({"prefix": p} for p in ["cluster_manager", "listener_manager", "server", "cluster.xds-grpc", "wasm"]),
    *({"suffix": s} for s in ["rbac.allowed", "rbac.denied", "shadow_allowed", "shadow_denied", "downstream_cx_active"]),
    {"safe_regex": {"regex": r"vhost\..*\.route\..*"}},
]}}}


def bootstrap(plugins: list, gw: Gateway, fetch: Callable[[str, str], bytes], module_dir: Path,
              extra_clusters: Optional[list] = None) -> dict:
    """A static Envoy bootstrap shaped like the gateway's listener (ports rewritten by the harness)."""
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "outbound_0.0.0.0_8080",
        "route_config": {"name": "http.8080", "virtual_hosts": [{
            # An Istio Gateway's hosts become virtual hosts: other authorities get the router's local 404.
            "name": "api", "domains": ["localhost", "localhost:*", "127.0.0.1", "127.0.0.1:*"],
            "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "backend"}}]}]},
        "http_filters": http_filters(plugins, gw, fetch, module_dir),
        # pilot/pkg/networking/core/listener_builder.go, with meshConfig.pathNormalization at its
        # default (BASE): RFC 3986 normalisation, slashes not merged, escaped slashes kept; and
        # gateway.go: a gateway's listeners use the remote address (the TCP peer) as the client's.
        "normalize_path": True,
        "path_with_escaped_slashes_action": "KEEP_UNCHANGED",
        "use_remote_address": True,
    }
    if gw.server_header_disabled:
        hcm["server_header_transformation"] = "PASS_THROUGH"
    else:
        hcm["server_name"] = "istio-envoy"
        hcm["server_header_transformation"] = "OVERWRITE"
    clusters = [{"name": "backend", "type": "STATIC", "connect_timeout": "1s",
                 "load_assignment": {"cluster_name": "backend", "endpoints": [{"lb_endpoints": [{"endpoint": {
                     "address": {"socket_address": {"address": "127.0.0.1", "port_value": 8080}}}}]}]}}]
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 15000}}},
        "stats_config": ISTIO_STATS_MATCHER,
        "static_resources": {
            "listeners": [{"name": "0.0.0.0_8080",
                           "address": {"socket_address": {"address": "0.0.0.0", "port_value": gw.port}},
                           "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                                           "typed_config": hcm}]}]}],
            "clusters": clusters + list(extra_clusters or []),
        },
    }


# --- pulling from an OCI image layout (what the agent does against a registry) ------------------

def read_layout_image(layout: Path, ref: Optional[str] = None) -> tuple:
    """(manifest digest hex, manifest dict, blob reader) of the image tagged `ref` (or the only one)."""
    index = json.loads((layout / "index.json").read_text())
    manifests = index["manifests"]
    if ref is not None:
        manifests = [m for m in manifests if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == ref]
    if len(manifests) != 1:
        raise LookupError(f"{layout}: {len(manifests)} images match {ref!r}")

    def blob(digest: str) -> bytes:
        algo, hexd = digest.split(":", 1)
        data = (layout / "blobs" / algo / hexd).read_bytes()
        if hashlib.sha256(data).hexdigest() != hexd:
            raise ValueError(f"blob {digest} does not match its digest")
        return data

    desc = manifests[0]
    manifest = json.loads(blob(desc["digest"]))
    return desc["digest"].split(":", 1)[1], manifest, blob


def extract_compat_wasm(manifest: dict, blob: Callable[[str], bytes]) -> bytes:
    """The compat variant: last layer tar+gzip, the entry whose base name is plugin.wasm
    (pkg/wasm/imagefetcher.go extractOCIStandardImage / extractWasmPluginBinary)."""
    layer = manifest["layers"][-1]
    if layer["mediaType"] != "application/vnd.oci.image.layer.v1.tar+gzip":
        raise ValueError(f"layer media type {layer['mediaType']}")
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob(layer["digest"]))), mode="r:") as tar:
        for m in tar.getmembers():
            if Path(m.name).name == "plugin.wasm" and m.isfile():
                return tar.extractfile(m).read()
    raise LookupError("plugin.wasm not found in the layer")


def layout_fetcher(layouts: dict) -> Callable[[str, str], bytes]:
    """fetch(uri, sha256) that serves `oci://REPO:TAG` from local layouts {REPO: layout dir}, checking
    `sha256` against the manifest digest as istio-agent does for OCI images."""
    def fetch(uri: str, want_sha: str) -> bytes:
        ref = uri[len("oci://"):] if uri.startswith("oci://") else uri
        repo, _, tag = ref.rpartition(":") if ":" in ref.rsplit("/", 1)[-1] else (ref, "", "latest")
        if repo not in layouts:
            raise LookupError(f"no local image for {uri}")
        digest, manifest, blob = read_layout_image(layouts[repo], tag)
        if want_sha and want_sha != digest:
            raise ValueError(f"module downloaded from {uri} has checksum {digest}, which does not match: {want_sha}")
        return extract_compat_wasm(manifest, blob)

    return fetch


# --- the TrafficExtension manifests (istio/traffic-extensions/), written from the WasmPlugin ones ----

TE_DIR_NAME = "traffic-extensions"
_SPEC_KEY = re.compile(r"^  ([A-Za-z][A-Za-z0-9]*):(?: |$)")


def te_header(name: str) -> list:
    """The comment lines put before a TrafficExtension manifest."""
    return [
        f"# TrafficExtension form (Istio >= 1.30) of istio/{name}.yaml: the same module, settings, phase and",
        "# priority; istiod gives the gateway the same Wasm filter. Written from that file by",
        f"# `python3 tests/istio_translate.py`: edit istio/{name}.yaml and rerun it (tests/test_istio.py",
        f"# checks that both agree). Apply this file or istio/{name}.yaml, not both: Istio would run the",
        "# plugin twice (it turns each WasmPlugin into a TrafficExtension `<name>~istio-translated-wasmplugin`",
        "# beside this one).",
        "#",
    ]


def _te_document(lines: list, name: str) -> list:
    """One YAML document of a WasmPlugin manifest, as text, → the TrafficExtension document: comments
    and layout kept, `kind` changed, the Wasm fields of spec moved (re-indented) under spec.wasm."""
    kinds = [i for i, line in enumerate(lines) if line == "kind: WasmPlugin"]
    specs = [i for i, line in enumerate(lines) if line == "spec:"]
    if len(kinds) != 1 or len(specs) != 1:
        raise ValueError(f"{name}: each document needs one `kind: WasmPlugin` and one `spec:` line at column 0")
    head = lines[:specs[0] + 1]
    head[kinds[0]] = "kind: TrafficExtension"
    # The comments' references to manifests point at their TrafficExtension forms.
    head = [re.sub(r"\bistio/([a-z0-9-]+)\.yaml", rf"istio/{TE_DIR_NAME}/\1.yaml", line) if line.startswith("#")
            else line for line in head]
    # spec's entries: a key at indent 2 with the lines under it; comments and blank lines just before
    # a key go with it.
    entries, pending = [], []
    for line in lines[specs[0] + 1:]:
        m = _SPEC_KEY.match(line)
        if m:
            entries.append([m.group(1), pending + [line]])
            pending = []
        elif not line.strip() or line.lstrip().startswith("#"):
            pending.append(line)
        elif line.startswith("   ") and entries:
            entries[-1][1] += pending + [line]
            pending = []
        else:
            raise ValueError(f"{name}: unexpected line in spec: {line!r}")
    out_spec, out_wasm = [], []
    for key, block in entries:
        if key in TE_SPEC_FIELDS:
            if key == "phase":
                block = [line.replace("UNSPECIFIED_PHASE", "UNSPECIFIED") for line in block]
            out_spec += block
        elif key in TE_WASM_FIELDS:
            out_wasm += [("  " + line) if line.strip() else "" for line in block]
        else:
            raise ValueError(f"{name}: spec.{key} has no TrafficExtension equivalent here")
    return head + out_spec + ["  wasm:"] + out_wasm + pending


def traffic_extension_manifest(text: str, name: str) -> str:
    """istio/<name>.yaml (WasmPlugins) → istio/traffic-extensions/<name>.yaml (TrafficExtensions). The
    result is checked against `traffic_extension_from_wasmplugin` of each document."""
    docs, cur = [], []
    for line in text.split("\n"):
        if line == "---":
            docs.append(cur)
            cur = []
        else:
            cur.append(line)
    docs.append(cur)
    out = "\n".join(te_header(name) + "\n---\n".join("\n".join(_te_document(d, name)) for d in docs).split("\n"))
    want = [traffic_extension_from_wasmplugin(d, synthetic=False) for d in yaml.safe_load_all(text) if d]
    got = [d for d in yaml.safe_load_all(out) if d]
    if got != want:
        raise AssertionError(f"{name}: the rewritten manifest is not the TrafficExtension of the WasmPlugin")
    return out


def write_traffic_extension_manifests(istio_dir: Path) -> list:
    """Writes istio/traffic-extensions/<name>.yaml for every istio/<name>.yaml; returns the paths."""
    out_dir = istio_dir / TE_DIR_NAME
    out_dir.mkdir(exist_ok=True)
    written = []
    for src in sorted(istio_dir.glob("*.yaml")):
        dest = out_dir / src.name
        dest.write_text(traffic_extension_manifest(src.read_text(encoding="utf-8"), src.stem), encoding="utf-8")
        written.append(dest)
    return written


if __name__ == "__main__":
    for p in write_traffic_extension_manifests(Path(__file__).resolve().parent.parent / "istio"):
        print(f"wrote {p}")
