"""No bad configuration ever serves: every case of tests/bad_configs.py (policy × error class), in
both forms (the policy's own module, and the suite module with the policy as its section), through
the real Envoy, two ways:

- at start-up (the bad configuration in the bootstrap): Envoy exits, with one error line naming
  the field;
- as a listener update (LDS from a watched file, replaced by an atomic rename, the way a config
  agent or istio-agent delivers it) to an Envoy serving the shipped configuration: Envoy rejects
  the update, with one error line naming the field, keeps the old listener version, and the old
  filter still refuses the policy's probe request (a bad configuration never leaves a gap where
  requests pass unfiltered).

Each policy's own test file checks its error messages in detail; this file checks every class for
every policy and form, in one place.
"""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest

import harness
from bad_configs import CASES, PROBES, SUITE_CASES, Raw, not_json
from lds_support import ACCEPTED, REJECTED, LdsEnvoy, with_plugin_config

FORMS = ["module", "suite"]
CASE_LIST = [(policy, klass, change, field) for policy, cases in CASES.items() for klass, change, field in cases]
CASE_IDS = [f"{p}-{k}" for p, k, _, _ in CASE_LIST]
# Start-up refusals cost an Envoy start each (several seconds for validate and the suite on a busy
# machine): by default the unknown field (module form) and one compile-time error per policy (both
# forms); MESHWALL_MATRIX=full runs every case in both forms (~140 starts). Every case, in both
# forms, runs as a listener update.
STARTUP_SAMPLE = {("headers", "invalid_name"), ("access", "out_of_range"), ("cors", "invalid_regex"),
                  ("jwt", "weak_rsa_key"), ("apikey", "duplicate_name"), ("ratelimit", "out_of_range"),
                  ("validate", "broken_openapi")}
FULL = os.environ.get("MESHWALL_MATRIX") == "full"
STARTUP_CASES = [(c, form) for c in CASE_LIST for form in FORMS
                 if FULL or (c[0], c[1]) in STARTUP_SAMPLE or (c[1] == "unknown_field" and form == "module")]


def upstreams(policy: str) -> dict:
    # jwt's remote JWKS cluster points at a closed port: no key is fetched, none is needed here.
    return {"jwks": harness.free_port()} if policy == "jwt" else {}


def base_config(policy: str, form: str) -> dict:
    cfg = harness.load_config(policy)
    if form == "suite":
        assert harness.as_suite(cfg), policy
    return cfg


def plugin_name(policy: str, form: str) -> str:
    return "meshwall.suite" if form == "suite" else f"meshwall.{policy}"


def bad_text(cfg: dict, policy: str, form: str, change) -> str:
    """The configuration text of the wasm plugin with `change` applied to the policy's part."""
    name = plugin_name(policy, form)
    whole = harness.plugin_config(cfg, name)
    if change is not_json:
        return not_json(whole).text
    part = whole if form == "module" else whole[policy]
    bad = change(part)
    if form == "module":
        return bad.text if isinstance(bad, Raw) else json.dumps(bad)
    if isinstance(bad, Raw):
        others = json.dumps({k: v for k, v in whole.items() if k != policy})[1:-1]
        return "{" + f'"{policy}": {bad.text}' + (", " + others if others else "") + "}"
    whole[policy] = bad
    return json.dumps(whole)


def error_lines(log: str, policy: str, form: str) -> list:
    return [ln for ln in log.splitlines() if f"{plugin_name(policy, form)}: invalid configuration" in ln]


def assert_names_the_field(lines: list, policy: str, form: str, klass: str, field) -> None:
    assert len(lines) == 1, lines
    if field is None:
        return
    if form == "suite" and klass == "repeated_key":
        # serde names the object that holds the repeated key: the section, then the key.
        assert f"field `{policy}`: duplicate field `{field}`" in lines[0], lines[0]
        return
    prefix = f"{policy}." if form == "suite" else ""
    assert f"field `{prefix}{field}" in lines[0], lines[0]


def assert_probe(e: harness.Envoy, policy: str) -> None:
    """The policy's probe gets the answer only a running filter with the shipped config gives."""
    p = PROBES[policy]
    r = harness.http_request(e.port, p.method, p.path, list(p.headers), source_ip=p.source_ip)
    assert r.status == p.status, (policy, r)
    if p.header:
        name, value = p.header
        assert r.header(name) is not None and (value is None or r.header(name) == value), (policy, r)
    if not p.reaches_upstream:
        assert r.header("content-type") != "application/json", ("reached the upstream", r)


def skip_if_form_is_forced(form: str) -> None:
    if harness.FORM == "suite" and form == "module":
        pytest.skip("MESHWALL_FORM=suite turns every module chain into the suite")


@pytest.fixture(scope="module")
def serving(echo):
    """serving(policy, form): an LdsEnvoy with the shipped configuration, one per policy and form."""
    started = {}

    def get(policy: str, form: str) -> LdsEnvoy:
        key = (policy, form)
        if key not in started:
            e = LdsEnvoy(base_config(policy, form), echo_port=echo.port, upstreams=upstreams(policy))
            started[key] = e.start()
        return started[key]

    yield get
    for e in started.values():
        e.stop()


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("policy, klass, change, field", CASE_LIST, ids=CASE_IDS)
def test_a_bad_listener_update_is_rejected_and_the_old_config_keeps_serving(serving, policy, klass, change,
                                                                             field, form):
    skip_if_form_is_forced(form)
    e = serving(policy, form)
    assert_probe(e, policy)
    version = e.listener_version()
    assert version is not None
    text = bad_text(base_config(policy, form), policy, form, change)
    assert e.update(with_plugin_config(e.listeners, plugin_name(policy, form), text)) == REJECTED
    assert_names_the_field(error_lines(e.last_update_log, policy, form), policy, form, klass, field)
    assert e.listener_version() == version
    assert_probe(e, policy)
    assert e.proc.poll() is None


@pytest.mark.parametrize("case, form", STARTUP_CASES, ids=[f"{c[0]}-{c[1]}-{f}" for c, f in STARTUP_CASES])
def test_envoy_refuses_to_start_with_a_bad_config(echo, case, form):
    skip_if_form_is_forced(form)
    policy, klass, change, field = case
    cfg = base_config(policy, form)
    harness.set_plugin_config(cfg, plugin_name(policy, form), bad_text(cfg, policy, form, change))
    e = harness.Envoy(cfg, echo_port=echo.port, upstreams=upstreams(policy), expect_fail=True).start()
    assert e.exit_code not in (None, 0), e.log_tail()
    assert_names_the_field(error_lines(e.log_text(), policy, form), policy, form, klass, field)


@pytest.fixture(scope="module")
def suite_demo(echo):
    """envoy/suite.yaml (the demo chain as the suite module) with its listener from LDS."""
    with LdsEnvoy(harness.load_config("suite"), echo_port=echo.port, upstreams={"jwks": harness.free_port()}) as e:
        yield e


@pytest.mark.parametrize("klass, change, field", SUITE_CASES, ids=[c[0] for c in SUITE_CASES])
def test_a_bad_suite_update_is_rejected_and_the_demo_chain_keeps_serving(suite_demo, klass, change, field):
    e = suite_demo
    assert e.request("GET", "/hello").status == 401
    sections = change(harness.plugin_config(harness.load_config("suite"), "meshwall.suite"))
    assert e.update(with_plugin_config(e.listeners, "meshwall.suite", json.dumps(sections))) == REJECTED
    lines = error_lines(e.last_update_log, "suite", "suite")
    assert len(lines) == 1 and f"field `{field}" in lines[0], lines
    r = e.request("GET", "/hello")
    assert r.status == 401 and r.header("x-content-type-options") == "nosniff", r


def test_a_good_update_is_accepted_and_served(serving):
    """The control: the same path with a valid change is applied, so a rejection is not a harness artefact."""
    e = serving("headers", "module")
    cfg = harness.plugin_config(base_config("headers", "module"), "meshwall.headers")
    cfg["security_headers_exclude"] = ["x-content-type-options"]
    assert e.update(with_plugin_config(e.listeners, "meshwall.headers", json.dumps(cfg))) == ACCEPTED
    for _ in range(300):   # the new listener serves once its workers' VMs are warm
        r = e.request("GET", "/hello")
        if r.header("x-content-type-options") is None:
            break
        time.sleep(0.1)
    assert r.status == 200 and r.header("x-content-type-options") is None, r
    assert r.header("x-powered-by") is None, "the new config still cleans responses"
    assert e.update(e.listeners) == ACCEPTED
    assert_probe(e, "headers")


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("damage", ["truncated", "not_wasm"])
def test_an_update_to_a_broken_module_is_rejected(serving, tmp_path, form, damage):
    """A module that cannot start (a truncated download, a file that is not Wasm) never serves."""
    skip_if_form_is_forced(form)
    e = serving("jwt", form)
    name = plugin_name("jwt", form)
    listeners = with_plugin_config(e.listeners, name, json.dumps(
        harness.plugin_config(base_config("jwt", form), name)))
    plugin = next(p for p in harness.wasm_filters({"l": listeners}) if p["name"] == name)
    code = plugin["vm_config"]["code"]["local"]
    broken = tmp_path / "broken.wasm"
    if damage == "truncated":
        data = open(code["filename"], "rb").read()
        broken.write_bytes(data[: len(data) // 2])
    else:
        broken.write_bytes(b"\0asm\x01\0\0\0" + b"\xff" * 64)
    code["filename"] = str(broken)
    version = e.listener_version()
    assert e.update(listeners) == REJECTED, e.log_tail()
    assert e.listener_version() == version
    assert_probe(e, "jwt")
    shutil.rmtree(tmp_path, ignore_errors=True)
