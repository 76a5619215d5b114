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


# With MESHWALL_FORM=suite (the second integration run of `make test`) every chain of meshwall
# modules runs as the suite module. These tests are about the per-policy modules themselves, so
# they run in the modules form only; what they prove for the suite is proven elsewhere.
MODULES_ONLY = {
    "test_bad_config_is_refused_naming_the_field":
        "each module's own error line; the suite names the section (tests/test_suite.py)",
    "test_not_json_config_is_refused": "each module's own error line (tests/test_suite.py)",
    "test_per_consumer_daily_quota_with_ratelimit":
        "asserts the two-module chain; the suite's per-consumer quota: filters/suite tests",
    "test_a_real_browser_on_another_port": "rewrites the cors module's config after start",
}


def pytest_collection_modifyitems(config, items):
    if harness.FORM != "suite":
        return
    for item in items:
        reason = MODULES_ONLY.get(item.originalname or item.name)
        if reason:
            item.add_marker(pytest.mark.skip(reason=f"modules form only: {reason}"))
