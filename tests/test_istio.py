"""Istio packaging: the WasmPlugin manifests in istio/ and their TrafficExtension forms (Istio >= 1.30)
in istio/traffic-extensions/ are valid for Istio's real CRDs, work in the real Envoy the way istiod and
istio-agent would configure them, and the OCI images from scripts/oci are reproducible and readable by
an independent tool (skopeo).

The filters covered are the entries of tests/istio_filters.py FILTERS (every policy, and the suite
module that runs them all); each must have istio/<name>.yaml, istio/traffic-extensions/<name>.yaml, a
built module and an OCI image — nothing here is skipped because a file is missing.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import importlib.machinery
import importlib.util
import io
import json
import re
import shutil
import subprocess
import tarfile
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import harness
import istio_translate as tr
from istio_crd import CRD_PATH, RULES, ISTIO_DATA, TE_CRD_PATH, WasmPluginValidator, load_docs, strip_err
from istio_filters import FILTERS, SUITE, SUITE_ORDER, combined_mesh, walk_chain

ROOT = harness.ROOT
ISTIO_DIR = ROOT / "istio"
TE_DIR = ISTIO_DIR / tr.TE_DIR_NAME
CHAIN = ISTIO_DIR / "chain.yaml"
MANIFESTS = sorted(ISTIO_DIR.glob("*.yaml"))
TE_MANIFESTS = sorted(TE_DIR.glob("*.yaml"))
FILTER_NAMES = sorted(FILTERS)
POLICY_NAMES = [n for n in FILTER_NAMES if n != SUITE]  # the suite runs them all
REGISTRY = "registry.example.com/meshwall"
with open(ROOT / "Cargo.toml", "rb") as _f:
    VERSION = tomllib.load(_f)["workspace"]["package"]["version"]


def module_file(name: str) -> Path:
    """The module filters/<name> builds: <its [lib] name>.wasm (the suite's is meshwall.wasm), in
    target/wasm32-wasip1/release or MESHWALL_WASM_DIR (a snapshot, while the build is rerun)."""
    with open(ROOT / "filters" / name / "Cargo.toml", "rb") as f:
        return harness.MODULE_DIR / (tomllib.load(f)["lib"]["name"] + ".wasm")

VALID_FIXTURES = load_docs(ISTIO_DATA / "wasmplugin-valid.yaml")
INVALID_FIXTURES = load_docs(ISTIO_DATA / "wasmplugin-invalid.yaml")


def _doc_id(d) -> str:
    return d.get("metadata", {}).get("name", "?")


@pytest.fixture(scope="module")
def validator():
    return WasmPluginValidator(CRD_PATH)


@pytest.fixture(scope="module")
def te_validator():
    return WasmPluginValidator(TE_CRD_PATH)


# --- 1. the validator is Istio's CRD, and it is real ---------------------------------------------------

def test_fixtures_are_there():
    assert len(VALID_FIXTURES) >= 4 and len(INVALID_FIXTURES) >= 15


@pytest.mark.parametrize("doc", VALID_FIXTURES, ids=_doc_id)
def test_accepts_istios_valid_fixture(validator, doc):
    assert validator.errors(doc) == []


@pytest.mark.parametrize("doc", INVALID_FIXTURES, ids=[f"{i}-{_doc_id(d)}" for i, d in enumerate(INVALID_FIXTURES)])
def test_rejects_istios_invalid_fixture_for_its_reason(validator, doc):
    body, reason = strip_err(doc)
    assert reason, "every invalid fixture names its error"
    errors = validator.errors(body)
    assert errors, f"accepted: {body}"
    assert any(reason in e for e in errors), f"want {reason!r}, got {errors}"


def test_every_cel_rule_in_the_crd_is_implemented(validator):
    rules = validator.cel_rules()
    assert len(rules) >= 7
    assert set(rules) <= set(RULES)


def _wp(spec: dict, name: str = "p", namespace: str = "istio-system") -> dict:
    return {"apiVersion": "extensions.istio.io/v1alpha1", "kind": "WasmPlugin",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


URL = "oci://registry.example.com/meshwall/headers:0.1.0"


@pytest.mark.parametrize("spec, reason", [
    # CEL rules the fixtures do not reach
    ({"url": URL, "selector": {"matchLabels": {"a": "b"}}, "targetRefs": [{"kind": "Gateway", "name": "gw"}]},
     "only one of targetRefs or selector can be set"),
    ({"url": URL, "selector": {"matchLabels": {"a": "b"}}, "targetRef": {"kind": "Gateway", "name": "gw"}},
     "only one of targetRefs or selector can be set"),
    ({"url": URL, "targetRefs": [{"kind": "Gateway", "name": "gw", "namespace": "other"}]},
     "cross namespace referencing is not currently supported"),
    ({"url": URL, "selector": {"matchLabels": {"": "b"}}}, "key must not be empty"),
    ({"url": "ftp://example.com/x.wasm"}, "url must have schema one of"),
    ({"url": "s3://bucket/x.wasm"}, "url must have schema one of"),
    ({"url": "mailto:ops@example.com"}, "url must have schema one of"),
    # structural schema
    ({"url": URL, "sha256": "A" * 64}, "spec.sha256 in body should match"),
    ({"url": URL, "sha256": "sha256:" + "a" * 64}, "spec.sha256 in body should match"),
    ({"url": URL, "priority": 2 ** 31}, "spec.priority in body should be less than or equal to"),
    ({"url": URL, "priority": "10"}, "spec.priority in body must be of type integer"),
    ({"url": URL, "phase": "AUTHORIZATION"}, "spec.phase: Unsupported value"),
    ({"url": URL, "failStrategy": "FAIL_CLOSED"}, "spec.failStrategy: Unsupported value"),
    ({"url": URL, "pluginconfig": {"a": 1}}, 'unknown field(s): "spec.pluginconfig"'),
    ({"url": URL, "match": [{"ports": [{"number": 70000}]}]}, "spec.match[0].ports[0].number in body should be less"),
    ({"url": URL, "match": [{"ports": [{"number": 80}, {"number": 80}]}]}, "spec.match[0].ports[1]: Duplicate value"),
    ({"url": URL, "targetRefs": [{"kind": "Gateway", "name": "gw"}] * 17}, "spec.targetRefs: Too many"),
])
def test_rejects(validator, spec, reason):
    errors = validator.errors(_wp(spec))
    assert any(reason in e for e in errors), f"want {reason!r}, got {errors}"


@pytest.mark.parametrize("spec", [
    {"url": "oci://ghcr.io/org/filter:1.0"},
    {"url": "ghcr.io/org/filter:1.0"},  # no scheme = oci
    {"url": "ghcr.io/org/filter@sha256:" + "a" * 64},
    {"url": "https://example.com/filters/x.wasm", "sha256": "0" * 64},
    {"url": "file:///opt/filters/x.wasm"},
    {"url": URL, "priority": None},  # nullable
    {"url": URL, "priority": -5, "phase": "UNSPECIFIED_PHASE", "failStrategy": "FAIL_RELOAD"},
    {"url": URL, "targetRefs": [{"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "gw"}]},
    {"url": URL, "pluginConfig": {"anything": {"nested": [1, "two", None, True]}}},  # preserve-unknown-fields
])
def test_accepts(validator, spec):
    assert validator.errors(_wp(spec)) == []


# --- 2. the shipped manifests -------------------------------------------------------------------------

def test_every_filter_has_a_manifest_and_every_manifest_a_filter():
    per_filter = {p.stem for p in MANIFESTS if p != CHAIN}
    assert per_filter == set(FILTERS), "istio/<name>.yaml ⇔ an entry in tests/istio_filters.py FILTERS"
    assert [p.name for p in TE_MANIFESTS] == [p.name for p in MANIFESTS], \
        "istio/traffic-extensions/<name>.yaml ⇔ istio/<name>.yaml"


def test_every_policy_crate_is_covered_and_the_suite_runs_them_all():
    crates = {p.parent.name for p in (ROOT / "filters").glob("*/Cargo.toml")} - {"core"}
    assert crates == set(FILTERS), "a FILTERS entry (and manifests) per filter crate"
    assert sorted(SUITE_ORDER) == POLICY_NAMES


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_shipped_manifest_is_valid_for_the_crd(validator, path):
    docs = load_docs(path)
    assert docs
    for doc in docs:
        assert validator.errors(doc) == [], _doc_id(doc)


@pytest.mark.parametrize("name", FILTER_NAMES)
def test_filter_manifest_follows_conventions(name):
    docs = load_docs(ISTIO_DIR / f"{name}.yaml")
    assert len(docs) == 1
    wp = docs[0]
    spec = wp["spec"]
    assert wp["kind"] == "WasmPlugin"
    assert wp["metadata"]["name"] == f"meshwall-{name}"
    assert wp["metadata"]["namespace"] == "istio-system"
    assert spec["url"] == f"oci://{REGISTRY}/{name}:{VERSION}", "the image tag is the workspace version"
    assert spec["pluginName"] == f"meshwall.{name}"
    assert spec["failStrategy"] == "FAIL_CLOSE", "a security filter never fails open"
    assert spec["selector"]["matchLabels"] == {"istio": "ingressgateway"}
    assert isinstance(spec.get("pluginConfig"), dict) and spec["pluginConfig"]


# --- 3. what istiod makes of a manifest (no Envoy) ------------------------------------------------------

def _fixture(name: str) -> dict:
    return copy.deepcopy(next(d for d in VALID_FIXTURES if _doc_id(d) == name))


def test_translation_of_istios_full_fixture():
    cfg = tr.plugin_config(_fixture("full"))
    assert cfg == {
        "name": "default.full",
        "vm_config": {
            "runtime": "envoy.wasm.runtime.v8",
            "code": {"local": {"filename": "/opt/filters/openid.wasm"}},
            "environment_variables": {"key_values": {"ISTIO_META_WASM_RESOURCE_VERSION": ""}},
        },
        "failure_policy": "FAIL_CLOSED",
        "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                          "value": '{"openid_realm":"ingress","openid_server":"authn"}'},
    }


def test_translation_of_env_inline_and_host(tmp_path):
    cfg = tr.plugin_config(_fixture("env"))
    env = cfg["vm_config"]["environment_variables"]
    assert env["host_env_keys"] == ["test"]
    assert env["key_values"] == {"ISTIO_META_WASM_RESOURCE_VERSION": "", "test2": "test", "test3": "test"}
    assert "configuration" not in cfg, "no pluginConfig → no configuration"
    fetched = []
    local = tr.agent_rewrite(cfg, lambda uri, sha: fetched.append((uri, sha)) or b"\0asm\1\0\0\0", tmp_path)
    assert fetched == [("http://test", "")]
    assert local["vm_config"]["environment_variables"] == {"key_values": {"test2": "test", "test3": "test"},
                                                           "host_env_keys": ["test"]}
    assert Path(local["vm_config"]["code"]["local"]["filename"]).read_bytes() == b"\0asm\1\0\0\0"


@pytest.mark.parametrize("strategy, policy", [(None, "FAIL_CLOSED"), ("FAIL_CLOSE", "FAIL_CLOSED"),
                                              ("FAIL_OPEN", "FAIL_OPEN"), ("FAIL_RELOAD", "FAIL_RELOAD")])
def test_translation_of_fail_strategy(strategy, policy):
    spec = {"url": URL} | ({"failStrategy": strategy} if strategy else {})
    assert tr.plugin_config(_wp(spec))["failure_policy"] == policy


def test_translation_of_oci_url_pull_settings_and_plugin_name():
    cfg = tr.plugin_config(_wp({"url": "ghcr.io/org/f:1", "sha256": "ab" * 32, "pluginName": "root",
                                "imagePullPolicy": "Always", "imagePullSecret": "regcred",
                                "pluginConfig": {"n": 60, "ratio": 0.5, "big": 10 ** 20}}, name="f", namespace="apps"))
    assert cfg["name"] == "apps.f"
    assert cfg["root_id"] == "root"
    assert cfg["vm_config"]["code"] == {"remote": {
        "http_uri": {"uri": "oci://ghcr.io/org/f:1", "timeout": "30s", "cluster": "_"}, "sha256": "ab" * 32}}
    assert cfg["vm_config"]["environment_variables"]["key_values"] == {
        "ISTIO_META_WASM_IMAGE_PULL_SECRET": "regcred", "ISTIO_META_WASM_IMAGE_PULL_POLICY": "Always",
        "ISTIO_META_WASM_RESOURCE_VERSION": ""}
    assert json.loads(cfg["configuration"]["value"]) == {"n": 60, "ratio": 0.5, "big": 10 ** 20}


def test_filter_order_is_phase_then_priority():
    plugins = [_wp({"url": URL, **spec}, name=n) for n, spec in [
        ("unspecified", {}),
        ("stats", {"phase": "STATS", "priority": 1000}),
        ("authz-low", {"phase": "AUTHZ", "priority": -1}),
        ("authz-none", {"phase": "AUTHZ"}),
        ("authz-high", {"phase": "AUTHZ", "priority": 10}),
        ("authn-a", {"phase": "AUTHN", "priority": 5}),
        ("authn-b", {"phase": "AUTHN", "priority": 5}),  # tie: creation (document) order
        ("authn-top", {"phase": "AUTHN", "priority": 100}),
    ]]
    assert [p["metadata"]["name"] for p in tr.ordered(plugins)] == [
        "authn-top", "authn-a", "authn-b", "authz-high", "authz-low", "authz-none", "stats", "unspecified"]


def test_plugin_selection_for_the_gateway():
    gw = tr.Gateway()
    assert tr.selected(_wp({"url": URL, "selector": {"matchLabels": {"istio": "ingressgateway"}}}), gw)
    assert tr.selected(_wp({"url": URL}), gw)  # no selector: every workload of the namespace
    assert not tr.selected(_wp({"url": URL, "selector": {"matchLabels": {"app": "reviews"}}}), gw)
    assert not tr.selected(_wp({"url": URL}, namespace="apps"), gw)
    assert tr.selected(_wp({"url": URL}, namespace="apps"), tr.Gateway(namespace="apps"))
    assert not tr.selected(_wp({"url": URL, "match": [{"mode": "SERVER"}]}), gw)
    assert tr.selected(_wp({"url": URL, "match": [{"mode": "CLIENT", "ports": [{"number": 8080}]}]}), gw)
    assert not tr.selected(_wp({"url": URL, "match": [{"ports": [{"number": 8443}]}]}), gw)
    assert not tr.selected(_wp({"url": URL, "type": "NETWORK"}), gw)


def _callouts(node, at="pluginConfig"):
    """(where, uri, cluster) of every `http_uri` in a pluginConfig (the plugin's dispatch_http_call targets)."""
    if isinstance(node, dict):
        if isinstance(node.get("http_uri"), dict):
            yield at, node["http_uri"]["uri"], node["http_uri"]["cluster"]
        for k, v in node.items():
            yield from _callouts(v, f"{at}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _callouts(v, f"{at}[{i}]")


def test_callout_clusters_are_the_ones_istiod_builds_for_their_host():
    # In a mesh a plugin can only call a cluster istiod put in the gateway's config: for an external
    # host that is the ServiceEntry's cluster `outbound|<port>||<host>` (istio/README.md).
    found = []
    for path in MANIFESTS + TE_MANIFESTS:
        for doc in load_docs(path):
            for at, uri, cluster in _callouts(tr.wasmplugin_spec(doc).get("pluginConfig", {})):
                u = urlsplit(uri)
                assert u.scheme == "https", f"{path.name} {at}: the IdP is reached over TLS"
                want = tr.outbound_cluster_name(u.hostname, u.port or 443)
                assert cluster == want, f"{path.name} {at}: cluster {cluster!r}, istiod names it {want!r}"
                found.append(cluster)
    assert "outbound|443||idp.example.com" in found


# --- 4. OCI images (scripts/oci) ---------------------------------------------------------------------

def run_oci(out: Path, *names: str) -> dict:
    """Runs scripts/oci (no names: its default, every filter crate); returns {filter: manifest digest}
    from what it prints."""
    r = subprocess.run(["python3", str(ROOT / "scripts" / "oci"), "--out", str(out),
                        "--wasm-dir", str(harness.MODULE_DIR), *names],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    found = {}
    for line in r.stdout.splitlines():
        m = re.fullmatch(r"(\S+)\t(\S+):(\S+)\tsha256:([0-9a-f]{64})\t\(WasmPlugin spec.sha256: ([0-9a-f]{64})\)", line)
        assert m, line
        assert m.group(3) == VERSION and m.group(4) == m.group(5)
        found[m.group(1)] = m.group(4)
    if names:
        assert sorted(found) == sorted(names)
    return found


@pytest.fixture(scope="module")
def oci_images(tmp_path_factory):
    out = tmp_path_factory.mktemp("oci")
    digests = run_oci(out, *FILTER_NAMES)
    return out, digests


def _tree(d: Path) -> dict:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_oci_build_is_byte_for_byte_reproducible(oci_images, tmp_path):
    first_dir, first = oci_images
    again = run_oci(tmp_path, *FILTER_NAMES)
    assert again == first
    for name in FILTER_NAMES:
        assert _tree(tmp_path / name) == _tree(first_dir / name), name


def test_oci_by_default_packs_exactly_the_filters_covered_here(oci_images, tmp_path):
    # `make oci` runs scripts/oci without names: its filter list comes from the workspace (every
    # filters/<name> crate built as a cdylib), and it must be the list this file covers.
    assert run_oci(tmp_path) == oci_images[1]


def test_oci_refuses_a_module_that_is_not_built(tmp_path):
    r = subprocess.run(["python3", str(ROOT / "scripts" / "oci"), "--out", str(tmp_path),
                        "--wasm-dir", str(harness.MODULE_DIR), "no-such-filter"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "meshwall_no-such-filter.wasm" in r.stderr
    assert not any(tmp_path.iterdir())


def test_oci_packs_the_module_each_crate_builds():
    # scripts/oci finds a crate's module by its `[lib] name` (meshwall_<name>; the suite: meshwall).
    loader = importlib.machinery.SourceFileLoader("meshwall_oci", str(ROOT / "scripts" / "oci"))
    oci = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(oci)
    assert oci.all_filters() == FILTER_NAMES
    for name in FILTER_NAMES:
        assert oci.module_file(name) == module_file(name).name
        assert module_file(name).is_file(), f"{module_file(name)}: make build"
    assert oci.module_file(SUITE) == "meshwall.wasm"
    assert oci.module_file("no-such-filter") == "meshwall_no-such-filter.wasm"


def skopeo() -> str:
    path = shutil.which("skopeo")
    if path is None:
        if shutil.which("apt-get") is None:
            pytest.skip("skopeo is not installed and this system has no apt-get to install it")
        pytest.fail("skopeo missing: `apt-get install -y skopeo` (scripts/setup installs it)")
    return path


@pytest.mark.parametrize("name", FILTER_NAMES)
def test_oci_image_read_back_by_skopeo_holds_the_exact_module(oci_images, name, tmp_path):
    out, digests = oci_images
    layout = out / name
    wasm = module_file(name).read_bytes()
    ref = f"oci:{layout}:{VERSION}"

    info = json.loads(subprocess.run([skopeo(), "inspect", ref], capture_output=True, text=True,
                                     check=True, timeout=60).stdout)
    assert info["Digest"] == f"sha256:{digests[name]}", "the printed sha256 is the manifest digest"
    assert info["Architecture"] == "wasm" and info["Os"] == "wasip1"
    assert len(info["Layers"]) == 1

    raw = subprocess.run([skopeo(), "inspect", "--raw", ref], capture_output=True, check=True, timeout=60).stdout
    assert hashlib.sha256(raw).hexdigest() == digests[name]
    manifest = json.loads(raw)
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["annotations"]["module.wasm.image/variant"] == "compat"
    [layer] = manifest["layers"]
    assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    assert info["Layers"] == [layer["digest"]]

    # skopeo copies the image out of the layout, verifying every blob against its digest.
    copied = tmp_path / "copied"
    subprocess.run([skopeo(), "copy", "--quiet", ref, f"dir:{copied}"], check=True, timeout=120,
                   capture_output=True)
    blob = (copied / layer["digest"].split(":", 1)[1]).read_bytes()
    assert blob[:4] == b"\x1f\x8b\x08\x00", "gzip, no FNAME/FEXTRA/FCOMMENT flags"
    assert blob[4:8] == b"\0\0\0\0", "gzip MTIME is 0"
    tar_bytes = gzip.decompress(blob)
    with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
        [member] = tar.getmembers()
        assert member.name == "plugin.wasm" and member.isreg()
        assert (member.mode, member.uid, member.gid, member.mtime) == (0o644, 0, 0, 0)
        assert (member.uname, member.gname) == ("", "")
        assert tar.extractfile(member).read() == wasm
    config = json.loads((copied / manifest["config"]["digest"].split(":", 1)[1]).read_bytes())
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(tar_bytes).hexdigest()]


# --- 5. the manifests in the real Envoy, as istiod + istio-agent configure it ------------------------

@pytest.fixture(scope="module")
def fetch(oci_images):
    """istio-agent's pull, served from the layouts scripts/oci wrote (instead of a registry)."""
    out, _ = oci_images
    return tr.layout_fetcher({f"{REGISTRY}/{n}": out / n for n in FILTER_NAMES})


def _rolled_out(wp: dict, digests: dict) -> dict:
    """The manifest with (spec or spec.wasm).sha256 set to the image digest, as istio/README.md tells
    operators."""
    wp = copy.deepcopy(wp)
    spec = wp["spec"]["wasm"] if wp["kind"] == "TrafficExtension" else wp["spec"]
    name = spec["url"].rsplit("/", 1)[-1].split(":")[0]
    spec["sha256"] = digests[name]
    return wp


def _wasm_names(cfg: dict) -> list:
    hcm = cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    return [f["name"] for f in hcm["http_filters"]]


# A filter's name in the gateway's Envoy: WasmPlugin on Istio < 1.30, TrafficExtension (Istio >= 1.30).
FILTER_PREFIX = {"WasmPlugin": "extensions.istio.io/wasmplugin/istio-system.meshwall-",
                 "TrafficExtension": "extensions.istio.io/trafficextension/istio-system.meshwall-"}


@pytest.mark.parametrize("kind", ["WasmPlugin", "TrafficExtension"])
@pytest.mark.parametrize("name", FILTER_NAMES)
def test_manifest_works_in_envoy_as_istio_configures_it(name, kind, oci_images, fetch, echo, validator,
                                                        te_validator, tmp_path):
    [doc] = load_docs((ISTIO_DIR if kind == "WasmPlugin" else TE_DIR) / f"{name}.yaml")
    doc = _rolled_out(doc, oci_images[1])
    assert (validator if kind == "WasmPlugin" else te_validator).errors(doc) == []
    plugin_config = tr.wasmplugin_spec(doc)["pluginConfig"]
    with FILTERS[name].mesh(plugin_config) as mesh:
        cfg = tr.bootstrap([doc], tr.Gateway(), fetch, tmp_path, extra_clusters=mesh.clusters)
        assert _wasm_names(cfg) == [FILTER_PREFIX[kind] + name, "envoy.filters.http.router"]
        [plugin] = harness.wasm_filters(cfg)
        assert plugin["name"] == f"istio-system.meshwall-{name}"
        assert plugin["root_id"] == f"meshwall.{name}"
        assert plugin["failure_policy"] == "FAIL_CLOSED"
        assert "environment_variables" not in plugin["vm_config"], "the agent strips its ISTIO_META_* variables"
        module = Path(plugin["vm_config"]["code"]["local"]["filename"]).read_bytes()
        assert module == module_file(name).read_bytes(), "the agent pulled our module"
        with harness.Envoy(cfg, echo_port=echo.port) as envoy:
            FILTERS[name].probe(envoy, plugin_config, mesh)


def test_a_wrong_sha256_stops_the_rollout(oci_images, fetch, tmp_path):
    [wp] = load_docs(ISTIO_DIR / "headers.yaml")
    wp["spec"]["sha256"] = "0" * 64
    with pytest.raises(ValueError, match="does not match"):
        tr.bootstrap([wp], tr.Gateway(), fetch, tmp_path)


def test_without_server_header_passthrough_istio_envoy_is_put_back(oci_images, fetch, echo, tmp_path):
    # Why istio/README.md asks for proxyHeaders.server.disabled: with Istio's default (OVERWRITE,
    # "istio-envoy"), Envoy sets `Server` after the filters ran; everything else is still cleaned.
    [wp] = load_docs(ISTIO_DIR / "headers.yaml")
    cfg = tr.bootstrap([_rolled_out(wp, oci_images[1])], tr.Gateway(server_header_disabled=False), fetch, tmp_path)
    with harness.Envoy(cfg, echo_port=echo.port) as envoy:
        r = envoy.request("GET", "/x", [("x-echo-header", "X-Envoy-Upstream-Service-Time: 3")])
        assert r.status == 200
        assert r.header_all("server") == ["istio-envoy"]
        assert r.header("x-powered-by") is None and r.header("x-envoy-upstream-service-time") is None
        assert r.header("x-content-type-options") == "nosniff"


# --- 6. the full chain, and the suite -------------------------------------------------------------

# The documented order; headers first, to see every reply.
DESIGN_ORDER = ["headers", "access", "cors", "jwt", "apikey", "ratelimit", "validate"]
SUITE_YAML = ISTIO_DIR / "suite.yaml"


def _chain_filter(wp: dict) -> str:
    return tr.wasmplugin_spec(wp)["pluginName"].removeprefix("meshwall.")


def test_the_designed_order_is_the_suites():
    # filters/suite/src/policy.rs runs its sections in `ORDER`: the same order as the chain's plugins.
    src = (ROOT / "filters" / "suite" / "src" / "policy.rs").read_text()
    m = re.search(r"pub const ORDER: &\[&str\] = &\[(.*?)\];", src, re.S)
    assert m, "ORDER in filters/suite/src/policy.rs"
    assert re.findall(r'"([a-z]+)"', m.group(1)) == DESIGN_ORDER == SUITE_ORDER


def test_chain_has_every_filter_once():
    names = [_chain_filter(wp) for wp in load_docs(CHAIN)]
    assert sorted(names) == POLICY_NAMES, "istio/chain.yaml holds every policy of FILTERS, once"
    for wp in load_docs(CHAIN):
        single = load_docs(ISTIO_DIR / f"{_chain_filter(wp)}.yaml")[0]
        assert wp["metadata"] == single["metadata"], "same object names as the single-filter manifests"
        assert {k: v for k, v in wp["spec"].items() if k != "pluginConfig"} == \
            {k: v for k, v in single["spec"].items() if k != "pluginConfig"}


# The chain as istiod sees it: WasmPlugins (Istio < 1.30), the same WasmPlugins on Istio >= 1.30
# (translated into TrafficExtensions `<name>~istio-translated-wasmplugin`), TrafficExtensions.
CHAIN_FORMS = {
    "wasmplugin": lambda: load_docs(CHAIN),
    "wasmplugin-istio-1.30": lambda: [tr.traffic_extension_from_wasmplugin(wp) for wp in load_docs(CHAIN)],
    "trafficextension": lambda: load_docs(TE_DIR / CHAIN.name),
}


@pytest.mark.parametrize("form", CHAIN_FORMS)
def test_chain_order_is_the_designed_order(form, tmp_path):
    docs = CHAIN_FORMS[form]()
    cfg = tr.bootstrap(docs, tr.Gateway(), lambda uri, sha: b"\0asm\1\0\0\0", tmp_path)
    pattern = r"extensions\.istio\.io/[a-z]+/istio-system\.meshwall-([a-z]+)(~istio-translated-wasmplugin)?"
    got = [re.fullmatch(pattern, n) for n in _wasm_names(cfg)[:-1]]
    assert all(got), _wasm_names(cfg)
    assert [m.group(1) for m in got] == DESIGN_ORDER
    assert _wasm_names(cfg)[-1] == "envoy.filters.http.router"


@pytest.mark.parametrize("form", CHAIN_FORMS)
def test_chain_in_envoy_headers_cleans_the_local_replies_of_later_plugins(form, oci_images, fetch, echo, tmp_path):
    docs = [_rolled_out(wp, oci_images[1]) for wp in CHAIN_FORMS[form]()]
    by_filter = {_chain_filter(wp): tr.wasmplugin_spec(wp)["pluginConfig"] for wp in docs}
    with combined_mesh(by_filter) as mesh:
        cfg = tr.bootstrap(docs, tr.Gateway(), fetch, tmp_path, extra_clusters=mesh.clusters)
        with harness.Envoy(cfg, echo_port=echo.port) as envoy:
            walk_chain(envoy, by_filter, mesh.state, DESIGN_ORDER)


def test_suite_is_the_chain_in_one_plugin():
    [suite] = load_docs(SUITE_YAML)
    chain = {_chain_filter(wp): wp for wp in load_docs(CHAIN)}
    sections = suite["spec"]["pluginConfig"]
    # Each section is the pluginConfig of the same policy in chain.yaml — no difference: the one the
    # suite would need (no bypass_cors_preflight in jwt/apikey beside cors, which the suite refuses)
    # chain.yaml has too, because there cors also runs before them.
    assert list(sections) == DESIGN_ORDER, "every policy, in the order the suite runs them"
    assert sections == {n: wp["spec"]["pluginConfig"] for n, wp in chain.items()}
    for n in ("jwt", "apikey"):
        assert sections[n]["bypass_cors_preflight"] is False, n
    # In the chain's first place (headers: AUTHN 1000), so on the way back it sees every reply.
    first = chain[DESIGN_ORDER[0]]["spec"]
    assert (suite["spec"]["phase"], suite["spec"]["priority"]) == (first["phase"], first["priority"])


# --- 7. TrafficExtension (Istio >= 1.30) ----------------------------------------------------------------

def _te(spec: dict, name: str = "p") -> dict:
    return {"apiVersion": "extensions.istio.io/v1alpha1", "kind": "TrafficExtension",
            "metadata": {"name": name, "namespace": "istio-system"}, "spec": spec}


@pytest.mark.parametrize("spec, reason", [
    ({"wasm": {"url": URL}, "lua": {"inlineCode": "x"}}, "exactly one of wasm or lua must be set"),
    ({"selector": {"matchLabels": {"a": "b"}}}, "exactly one of wasm or lua must be set"),
    ({"wasm": {"url": URL}, "selector": {"matchLabels": {"a": "b"}}, "targetRefs": [{"kind": "Gateway", "name": "g"}]},
     "only one of targetRefs or selector can be set"),
    ({"wasm": {"url": "ftp://example.com/x.wasm"}}, "url must have schema one of"),
    ({"wasm": {"url": URL, "sha256": "sha256:" + "a" * 64}}, "spec.wasm.sha256 in body should match"),
    ({"wasm": {"url": URL}, "phase": "UNSPECIFIED_PHASE"}, "spec.phase: Unsupported value"),  # WasmPlugin's enum
    ({"wasm": {}}, "spec.wasm.url: Required value"),
    ({"url": URL}, 'unknown field(s): "spec.url"'),  # a WasmPlugin spec is not a TrafficExtension's
])
def test_te_crd_rejects(te_validator, spec, reason):
    errors = te_validator.errors(_te(spec))
    assert any(reason in e for e in errors), f"want {reason!r}, got {errors}"


@pytest.mark.parametrize("fixture", [_doc_id(d) for d in VALID_FIXTURES])
def test_istios_valid_wasmplugins_translate_to_valid_traffic_extensions(fixture, te_validator):
    wp = _fixture(fixture)
    te = tr.traffic_extension_from_wasmplugin(wp, synthetic=False)
    assert te_validator.errors(te) == []
    assert tr.wasmplugin_spec(te) == wp["spec"]
    synthetic = tr.traffic_extension_from_wasmplugin(wp)
    assert synthetic["metadata"]["name"] == f"{fixture}~istio-translated-wasmplugin"
    assert tr.plugin_config(synthetic) == tr.plugin_config(wp) | {"name": f"default.{synthetic['metadata']['name']}"}


def test_te_translation_details():
    te = tr.traffic_extension_from_wasmplugin(_wp({"url": URL, "targetRef": {"kind": "Gateway", "name": "gw"},
                                                   "phase": "UNSPECIFIED_PHASE", "type": "HTTP"}), synthetic=False)
    assert te["spec"] == {"targetRefs": [{"kind": "Gateway", "name": "gw"}], "phase": "UNSPECIFIED",
                          "wasm": {"url": URL, "type": "HTTP"}}
    assert tr.resource_name(te) == "extensions.istio.io/trafficextension/istio-system.p"
    assert tr.resource_name(_wp({"url": URL})) == "extensions.istio.io/wasmplugin/istio-system.p"
    with pytest.raises(ValueError, match="verificationKey"):
        tr.traffic_extension_from_wasmplugin(_wp({"url": URL, "verificationKey": "k"}))
    # Translated WasmPlugins and TrafficExtensions are ordered together, by phase then priority.
    mixed = [_te({"wasm": {"url": URL}, "phase": "UNSPECIFIED"}, name="te-none"),
             tr.traffic_extension_from_wasmplugin(_wp({"url": URL, "phase": "AUTHZ"}, name="wp-authz")),
             _te({"wasm": {"url": URL}, "phase": "AUTHN", "priority": 1}, name="te-authn")]
    assert [d["metadata"]["name"] for d in tr.ordered(mixed)] == [
        "te-authn", "wp-authz~istio-translated-wasmplugin", "te-none"]


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_traffic_extension_manifest_is_its_wasmplugin_manifest(path, te_validator):
    te_path = TE_DIR / path.name
    assert te_path.read_text() == tr.traffic_extension_manifest(path.read_text(), path.stem), \
        f"{te_path} is stale: run python3 tests/istio_translate.py"
    wps, tes = load_docs(path), load_docs(te_path)
    assert len(tes) == len(wps)
    for wp, te in zip(wps, tes):
        assert te_validator.errors(te) == [], _doc_id(te)
        assert te["metadata"] == wp["metadata"]
        assert tr.wasmplugin_spec(te) == wp["spec"], "TrafficExtension → the WasmPlugin spec it stands for"
        assert te == tr.traffic_extension_from_wasmplugin(wp, synthetic=False)
        # istiod gives the gateway the same PluginConfig for both (name included) …
        assert tr.plugin_config(te) == tr.plugin_config(wp)
        # … and on Istio >= 1.30 the WasmPlugin is that TrafficExtension under another name.
        synthetic = tr.traffic_extension_from_wasmplugin(wp)
        assert tr.wasmplugin_spec(synthetic) == tr.wasmplugin_spec(te)
        assert tr.resource_name(synthetic) == tr.resource_name(te) + "~istio-translated-wasmplugin"
