"""The e2e stage: real vLLM engines on this machine's CPU, supervised by a real `llmconsole agent`.

Tests marked ``e2e`` are skipped unless selected: ``pytest -m e2e tests/e2e`` (or ``LLMCONSOLE_E2E=1``).
So the normal ``pytest -q`` stays fast. When selected, set-up runs (installing the vLLM virtualenv
into the cache the first time) and a set-up failure FAILS the tests: it is never a skip.
"""

from __future__ import annotations

import os
import sys

import pytest

from tests.e2e.support import timings
from tests.e2e.support.cache import SetupError

E2E_ENV = "LLMCONSOLE_E2E"


def e2e_selected(config: pytest.Config) -> bool:
    if os.environ.get(E2E_ENV, "").strip() not in ("", "0"):
        return True
    expr = (config.getoption("markexpr", "") or "").replace(" ", "")
    return "e2e" in expr and "note2e" not in expr


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if e2e_selected(config):
        return
    skip = pytest.mark.skip(reason=f"real-vLLM e2e test: run with `-m e2e` or {E2E_ENV}=1")
    for item in items:
        if item.get_closest_marker("e2e") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def vllm_env():
    """The cached vLLM virtualenv and tiny model (built on first use); failing set-up fails the tests."""
    from tests.e2e.support.prepare import prepare
    from tests.e2e.support.rig import kill_orphans

    try:
        got = prepare()
    except SetupError as exc:
        failure = str(exc)
    else:
        failure = None
    if failure is not None:
        pytest.fail(f"e2e set-up failed (not skipped): {failure}", pytrace=False)
    kill_orphans(got.python.parent.parent)  # engines left by an earlier run whose test process died
    timings.record("set-up (prepare(); ~0 when cached)", got.setup_s)
    return got


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    lines = timings.lines()
    if lines:
        terminalreporter.section("e2e timings")
        for line in lines:
            terminalreporter.write_line(line)
    sys.stderr.flush()
