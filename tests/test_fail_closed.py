"""What Envoy 1.40 does when a Wasm VM fails, per `failure_policy`, proven with a module that fails on
demand (tests/fault_module, test-only) in front of an upstream that records every request that
arrives (tests/raw_upstream.py). A request the module filtered carries `x-fault-module: passed`;
one that reaches the upstream without it went through unfiltered. docs/failure-modes.md explains
what each outcome means for each meshwall policy.

With one worker (`--concurrency 1`) every request meets the same VM, so "every later request"
means exactly that.
"""

from __future__ import annotations

import subprocess
import time

import pytest

import harness
from raw_upstream import RawUpstream

FAULT_DIR = harness.ROOT / "tests" / "fault_module"
FAULT_TARGET = "target/fault-module"
FAULT_WASM = f"{FAULT_TARGET}/wasm32-wasip1/release/meshwall_fault.wasm"
PLUGIN = "meshwall.fault"


@pytest.fixture(scope="session")
def fault_module():
    """Builds the test-only module (its own Cargo workspace and target dir: never in `make build`)."""
    subprocess.run(["cargo", "build", "--quiet", "--release", "--locked", "--target", "wasm32-wasip1",
                    "--target-dir", str(harness.ROOT / FAULT_TARGET)], cwd=FAULT_DIR, check=True)
    assert (harness.ROOT / FAULT_WASM).exists()
    return FAULT_WASM


@pytest.fixture(scope="module")
def upstream():
    with RawUpstream() as up:
        yield up


def fault_config(policy, configuration: str = "ok") -> dict:
    """envoy/headers.yaml with its filter replaced by the fault module, `failure_policy` set
    (None: left out, Envoy's default)."""
    cfg = harness.load_config("headers")
    f = harness.http_connection_managers(cfg)[0]["http_filters"][0]
    f["name"] = PLUGIN
    c = f["typed_config"]["config"]
    c["name"] = c["root_id"] = c["vm_config"]["vm_id"] = PLUGIN
    c["vm_config"]["code"]["local"]["filename"] = FAULT_WASM
    c["configuration"]["value"] = configuration
    if policy is not None:
        c["failure_policy"] = policy
    return cfg


def send(e, up, path: str):
    """(status, what arrived upstream: the x-fault-module value of each arrival)."""
    mark = up.mark()
    r = e.request("GET", path)
    return r.status, [a.header("x-fault-module") for a in up.since(mark)]


def vm_stats(e) -> dict:
    """Every Wasm stat of Envoy but the remote-load cache (VMs created/active, reloads)."""
    return {k: v for k, v in e.stats().items() if k.startswith("wasm.") and ".remote_load" not in k}


def reloads(e) -> dict:
    st = e.stats()
    return {k: st.get(f"wasm.{PLUGIN}.vm_reload_{k}", 0) for k in ("backoff", "success", "failure")}


@pytest.mark.parametrize("fault", ["/trap", "/oom"])
@pytest.mark.parametrize("policy", ["FAIL_CLOSED", None])
def test_fail_closed_a_vm_that_fails_at_runtime_answers_503_to_every_later_request(
        start_envoy, fault_module, upstream, policy, fault):
    e = start_envoy(fault_config(policy), upstreams={"backend": upstream.port}, concurrency=1)
    assert send(e, upstream, "/before") == (200, ["passed"])
    assert send(e, upstream, "/deny") == (403, [])
    before = vm_stats(e)
    assert send(e, upstream, fault) == (503, [])
    for i in range(20):
        assert send(e, upstream, f"/after/{i}") == (503, []), "nothing reaches the upstream"
    time.sleep(1.5)   # longer than FAIL_RELOAD's first backoff: FAIL_CLOSED never restarts the VM
    assert send(e, upstream, "/later") == (503, [])
    assert reloads(e) == {"backoff": 0, "success": 0, "failure": 0}
    assert vm_stats(e) == before, "no Envoy stat counts a runtime VM failure: the log line does"
    assert "Uncaught RuntimeError: unreachable" in e.log_text()


@pytest.mark.parametrize("fault", ["/trap", "/oom"])
def test_fail_open_a_vm_that_fails_at_runtime_lets_every_later_request_through_unfiltered(
        start_envoy, fault_module, upstream, fault):
    """The contrast: why no meshwall example uses FAIL_OPEN."""
    e = start_envoy(fault_config("FAIL_OPEN"), upstreams={"backend": upstream.port}, concurrency=1)
    assert send(e, upstream, "/before") == (200, ["passed"])
    assert send(e, upstream, fault) == (503, []), "the request that trapped is still answered 503"
    assert send(e, upstream, "/after") == (200, [None]), "unfiltered"
    assert send(e, upstream, "/deny") == (200, [None]), "a request the filter refuses now passes"


@pytest.mark.parametrize("fault", ["/trap", "/oom"])
def test_fail_reload_answers_503_until_a_new_vm_runs_then_filters_again(start_envoy, fault_module, upstream, fault):
    e = start_envoy(fault_config("FAIL_RELOAD"), upstreams={"backend": upstream.port}, concurrency=1)
    assert send(e, upstream, fault) == (503, [])
    seen, deadline = [], time.monotonic() + 15
    while time.monotonic() < deadline:
        status, arrived = send(e, upstream, "/after")
        seen.append(status)
        assert (status, arrived) in [(503, []), (200, ["passed"])], "never unfiltered"
        if status == 200:
            break
        time.sleep(0.1)
    assert seen[0] == 503 and seen[-1] == 200, seen
    assert reloads(e)["success"] == 1 and reloads(e)["backoff"] >= 1
    assert send(e, upstream, "/deny") == (403, []), "the new VM filters"
    assert send(e, upstream, fault) == (503, []), "and can fail again"


@pytest.mark.parametrize("policy", ["FAIL_CLOSED", "FAIL_OPEN", "FAIL_RELOAD", None])
def test_a_plugin_whose_configure_fails_is_refused_at_start_up_whatever_the_policy(fault_module, upstream, policy):
    e = harness.Envoy(fault_config(policy, "fail-configure"), upstreams={"backend": upstream.port},
                      expect_fail=True).start()
    assert e.exit_code not in (None, 0)
    assert "Plugin meshwall.fault failed to load" in e.log_text()


@pytest.mark.parametrize("configuration", ["fail-on-workers", "trap-on-workers"])
@pytest.mark.parametrize("policy", ["FAIL_CLOSED", "FAIL_OPEN", "FAIL_RELOAD"])
def test_envoy_skips_a_plugin_that_configures_on_the_main_thread_but_not_on_the_workers(
        start_envoy, fault_module, upstream, policy, configuration):
    """An Envoy 1.40 limit, whatever `failure_policy` says: the config check (main thread) passed,
    the workers' copies failed `on_configure` ("Failed to configure thread-local Wasm plugin"), and
    requests then pass with no filter at all. meshwall's configure reads only the configuration
    (plus, for ratelimit, its fixed shared-data table), so it gives the same answer on every
    thread; docs/failure-modes.md lists what to watch."""
    e = start_envoy(fault_config(policy, configuration), upstreams={"backend": upstream.port}, concurrency=2)
    for _ in range(5):
        assert send(e, upstream, "/deny") == (200, [None])
    assert "Failed to configure thread-local Wasm plugin" in e.log_text()
