"""Soak tests run only when asked (``-m soak`` or LLMCONSOLE_SOAK=1): ``.ci/run`` runs them as their own stage."""

from __future__ import annotations

import os

import pytest

SOAK_ENV = "LLMCONSOLE_SOAK"


def _selected(config: pytest.Config) -> bool:
    if os.environ.get(SOAK_ENV, "").strip() not in ("", "0"):
        return True
    expr = (config.getoption("markexpr", "") or "").replace(" ", "")
    return "soak" in expr and "notsoak" not in expr


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _selected(config):
        return
    skip = pytest.mark.skip(reason=f"soak test (10 min): run with `-m soak` or {SOAK_ENV}=1")
    for item in items:
        if item.get_closest_marker("soak") is not None:
            item.add_marker(skip)
