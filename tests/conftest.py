import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402


@pytest.fixture(scope="session")
def echo():
    with harness.EchoServer() as srv:
        yield srv


@pytest.fixture
def start_envoy(echo):
    """start_envoy(cfg, **kw) -> a started harness.Envoy, stopped after the test."""
    started = []

    def _start(cfg, **kw):
        kw.setdefault("echo_port", echo.port)
        e = harness.Envoy(cfg, **kw).start()
        started.append(e)
        return e

    yield _start
    for e in started:
        e.stop()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    harness.STARTED_IN_TEST.clear()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        seen = set()
        for e in list(harness.STARTED_IN_TEST) + list(harness.LIVE):
            if id(e) in seen:
                continue
            seen.add(id(e))
            report.sections.append((f"envoy log ({e.log_path})", e.log_tail(200)))
