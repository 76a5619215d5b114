"""Istio packaging, without Envoy: the WasmPlugin manifests in istio/ and their TrafficExtension forms
(Istio >= 1.30) in istio/traffic-extensions/ are valid for Istio's real CRDs, follow the conventions,
and translate as istiod translates them. tests/test_istio_envoy.py runs them in the real Envoy and
checks the OCI images.

The filters covered are the entries of tests/istio_filters.py FILTERS (every policy, and the suite
module that runs them all); each must have istio/<name>.yaml, istio/traffic-extensions/<name>.yaml, a
built module and an OCI image — nothing here is skipped because a file is missing.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import istio_translate as tr
from istio_common import (CHAIN, FILTER_NAMES, FILTERS, INVALID_FIXTURES, ISTIO_DIR, MANIFESTS, POLICY_NAMES,
                          REGISTRY, ROOT, TE_DIR, TE_MANIFESTS, VALID_FIXTURES, VERSION, doc_id)
from istio_common import te_validator, validator  # noqa: F401 (pytest fixtures)
from istio_crd import RULES, load_docs, strip_err
from istio_filters import SUITE_ORDER


# --- 1. the validator is Istio's CRD, and it is real ---------------------------------------------------

def test_fixtures_are_there():
    assert len(VALID_FIXTURES) >= 4 and len(INVALID_FIXTURES) >= 15


@pytest.mark.parametrize("doc", VALID_FIXTURES, ids=doc_id)
def test_accepts_istios_valid_fixture(validator, doc):
    assert validator.errors(doc) == []


@pytest.mark.parametrize("doc", INVALID_FIXTURES, ids=[f"{i}-{doc_id(d)}" for i, d in enumerate(INVALID_FIXTURES)])
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
        assert validator.errors(doc) == [], doc_id(doc)


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
    return copy.deepcopy(next(d for d in VALID_FIXTURES if doc_id(d) == name))


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


@pytest.mark.parametrize("fixture", [doc_id(d) for d in VALID_FIXTURES])
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
        assert te_validator.errors(te) == [], doc_id(te)
        assert te["metadata"] == wp["metadata"]
        assert tr.wasmplugin_spec(te) == wp["spec"], "TrafficExtension → the WasmPlugin spec it stands for"
        assert te == tr.traffic_extension_from_wasmplugin(wp, synthetic=False)
        # istiod gives the gateway the same PluginConfig for both (name included) …
        assert tr.plugin_config(te) == tr.plugin_config(wp)
        # … and on Istio >= 1.30 the WasmPlugin is that TrafficExtension under another name.
        synthetic = tr.traffic_extension_from_wasmplugin(wp)
        assert tr.wasmplugin_spec(synthetic) == tr.wasmplugin_spec(te)
        assert tr.resource_name(synthetic) == tr.resource_name(te) + "~istio-translated-wasmplugin"
