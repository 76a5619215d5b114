"""Every shipped envoy/*.yaml passes `envoy --mode validate` (with the built .wasm modules)."""

import json
import re

import pytest

import harness

# docker-compose.yaml sits beside the Envoy configs for users with Docker; it is not one of them.
CONFIGS = sorted(p for p in harness.ENVOY_DIR.glob("*.yaml") if p.name != "docker-compose.yaml")


def test_there_are_configs():
    assert any(p.name == "headers.yaml" for p in CONFIGS)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_validates(path):
    r = harness.validate_config(path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert f"'{path}' OK" in r.stdout + r.stderr


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_wasm_plugins_follow_conventions(path):
    cfg = harness.load_config(path.stem)
    plugins = harness.wasm_filters(cfg)
    for p in plugins:
        vm = p["vm_config"]
        assert vm["runtime"] == "envoy.wasm.runtime.v8"
        fn = vm["code"]["local"]["filename"]
        assert fn.startswith("target/wasm32-wasip1/release/meshwall") and fn.endswith(".wasm")
        assert p["configuration"]["@type"] == "type.googleapis.com/google.protobuf.StringValue"


# The labels the filters write into metric names (`meshwall.<filter>.<metric>.<label>.<value>…`,
# filters/core/src/metrics.rs), and the regex of each label's Envoy tag: it skips
# `wasmcustom.meshwall.<filter>.<metric>` and whole `.<label>.<value>` pairs, so only a label
# position is read as a label; group 1 is cut from the name, group 2 is the value.
METRIC_LABELS = ["reason", "rule", "status"]
TAG_REGEX = r"^wasmcustom\.meshwall\.[^.]+\.[^.]+(?:\.[^.]+\.[^.]+)*?(\.{}\.([^.]+))"
STATS_TAGS = [{"tag_name": label, "regex": TAG_REGEX.format(label)} for label in METRIC_LABELS]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_example_has_exactly_the_projects_stats_tags(path):
    """So that `/stats/prometheus` has `meshwall_jwt_denied{reason="expired"}` in every example."""
    assert harness.load_config(path.stem).get("stats_config") == {"stats_tags": STATS_TAGS}


def test_the_stats_tags_are_cores_labels():
    src = (harness.ROOT / "filters" / "core" / "src" / "metrics.rs").read_text()
    assert re.findall(r'Label::\w+ => "(\w+)",', src) == METRIC_LABELS
    assert f'r"{TAG_REGEX}"' in src


@pytest.mark.parametrize("name, metric, labels", [
    ("meshwall.jwt.denied.reason.expired", "meshwall.jwt.denied", {"reason": "expired"}),
    ("meshwall.validate.rejected.status.400.reason.invalid_body", "meshwall.validate.rejected",
     {"status": "400", "reason": "invalid_body"}),
    ("meshwall.ratelimit.limited.rule.reason", "meshwall.ratelimit.limited", {"rule": "reason"}),
    ("meshwall.x.reason.rule.status", "meshwall.x.reason", {"rule": "status"}),
    ("meshwall.jwt.allowed", "meshwall.jwt.allowed", {}),
])
def test_the_tags_take_labels_only_from_label_positions(name, metric, labels):
    # What Envoy does with each tag: the regex on the whole name, group 1 cut out, group 2 the value.
    full = "wasmcustom." + name
    cut, found = [], {}
    for tag in STATS_TAGS:
        m = re.search(tag["regex"], full)
        if m:
            cut.append(m.span(1))
            found[tag["tag_name"]] = m.group(2)
    kept = "".join(c for i, c in enumerate(full) if not any(a <= i < b for a, b in cut))
    assert (kept, found) == ("wasmcustom." + metric, labels)


def test_demo_chain_uses_each_filters_example_config():
    """envoy/demo.yaml (make run) runs each filter with its own example's configuration, in
    chain order, headers first; the documented differences: jwt lets POST /login through without
    a token and leaves CORS preflights to cors (which answers the allowed ones before it), apikey
    asks for a key only under /partner/ (so the jwt examples work without one), validate passes
    unknown paths."""
    demo = harness.load_config("demo")
    names = [p["name"] for p in harness.wasm_filters(demo)]
    order = [f"meshwall.{n}" for n in harness.SUITE_ORDER]
    assert names[0] == "meshwall.headers"
    assert names == [n for n in order if n in names]
    assert len(names) == len(order), "every policy is in the demo"
    for name in names:
        example = harness.plugin_config(harness.load_config(name.split(".")[1]), name)
        ours = harness.plugin_config(demo, name)
        if name == "meshwall.validate":
            assert ours.pop("unknown_path") == "pass"
        if name == "meshwall.jwt":
            assert ours["rules"].pop(0) == {"match": {"path": "/login", "methods": ["POST"]}}
            assert ours.pop("bypass_cors_preflight") is False
            example.pop("bypass_cors_preflight")
        if name == "meshwall.apikey":
            assert ours.pop("rules") == [{"match": {"prefix": "/partner/"}, "groups": ["partner"]}]
            assert ours.pop("default") == {"requires": False}
            assert ours.pop("bypass_cors_preflight") is False
            for k in ("rules", "default", "bypass_cors_preflight"):
                example.pop(k)
        assert ours == example, name


def test_suite_example_is_the_demo_chain_as_one_module():
    """envoy/suite.yaml: the demo chain's configurations as the sections of one suite module."""
    demo, suite = harness.load_config("demo"), harness.load_config("suite")
    assert harness.as_suite(demo), "the demo chain can be expressed as the suite"
    [ours] = harness.wasm_filters(suite)
    [want] = harness.wasm_filters(demo)
    assert ours["vm_config"]["code"]["local"]["filename"] == "target/wasm32-wasip1/release/meshwall.wasm"
    assert json.loads(ours["configuration"]["value"]) == json.loads(want["configuration"]["value"])
    assert ours["failure_policy"] == "FAIL_CLOSED" and ours["allow_on_headers_stop_iteration"] is True
