"""Istio packaging in the real Envoy: the OCI images from scripts/oci are reproducible and readable by
an independent tool (skopeo), and the manifests in istio/ (WasmPlugin and TrafficExtension forms, one
filter, the chain, the suite) work in Envoy the way istiod and istio-agent would configure them.
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
from pathlib import Path

import pytest

import harness
import istio_translate as tr
from istio_common import (CHAIN, FILTER_NAMES, FILTERS, ISTIO_DIR, POLICY_NAMES, REGISTRY, ROOT, SUITE, TE_DIR,
                          VERSION, module_file)
from istio_common import te_validator, validator  # noqa: F401 (pytest fixtures)
from istio_crd import load_docs
from istio_filters import SUITE_ORDER, combined_mesh, walk_chain


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
