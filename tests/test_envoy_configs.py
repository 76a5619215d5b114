"""Every shipped envoy/*.yaml passes `envoy --mode validate` (with the built .wasm modules)."""

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
        assert fn.startswith("target/wasm32-wasip1/release/meshwall_") and fn.endswith(".wasm")
        assert p["configuration"]["@type"] == "type.googleapis.com/google.protobuf.StringValue"


def test_demo_chain_uses_each_filters_example_config():
    """envoy/demo.yaml (make run) runs each filter with its own example's configuration, in
    chain order, headers first; the documented differences: jwt lets POST /login through without
    a token, validate passes unknown paths."""
    demo = harness.load_config("demo")
    names = [p["name"] for p in harness.wasm_filters(demo)]
    order = ["meshwall.headers", "meshwall.jwt", "meshwall.ratelimit", "meshwall.validate"]
    assert names[0] == "meshwall.headers"
    assert names == [n for n in order if n in names]
    for name in names:
        example = harness.plugin_config(harness.load_config(name.split(".")[1]), name)
        ours = harness.plugin_config(demo, name)
        if name == "meshwall.validate":
            assert ours.pop("unknown_path") == "pass"
        if name == "meshwall.jwt":
            assert ours["rules"].pop(0) == {"match": {"path": "/login", "methods": ["POST"]}}
        assert ours == example, name
