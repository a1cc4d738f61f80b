"""The console process's collector settings (console.gcpolicy): set on mount, what is alive frozen once
the console is up — only for an app started with ``gc_policy`` (the CLI's), never for others."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Iterator

import pytest

from console import gcpolicy
from console.app import LlmConsole
from console.fixturesource import FixtureFleetSource
from console.settings import ConsoleConfig
from tests.console.conftest import FLEET


@pytest.fixture
def restored_gc() -> Iterator[None]:
    before = gc.get_threshold()
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


def console(policy: bool) -> LlmConsole:
    src = FixtureFleetSource.from_dir(FLEET)
    return LlmConsole(src, ConsoleConfig(), clock=src.clock, wall=src.wall, gc_policy=policy)


async def settled(app: LlmConsole, deadline_s: float = 30.0) -> None:
    started = time.monotonic()
    while "calc" not in app._screen_stacks:  # the preload, after which the console settles
        assert time.monotonic() - started < deadline_s, "the console never finished starting"
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.1)


async def test_the_cli_console_tunes_and_freezes(restored_gc: None) -> None:
    app = console(True)
    async with app.run_test(size=(100, 30)):
        assert gc.get_threshold() == gcpolicy.THRESHOLDS
        await settled(app)
        assert gc.get_freeze_count() > 10_000  # the widgets, modules and catalogs alive then


async def test_other_apps_leave_the_collector_alone(restored_gc: None) -> None:
    before = gc.get_threshold()
    app = console(False)
    async with app.run_test(size=(100, 30)):
        await settled(app)
        assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_applied_for_a_measurement_is_undone_after_it(restored_gc) -> None:
    before = gc.get_threshold()
    with gcpolicy.applied() as settle:
        assert gc.get_threshold() == gcpolicy.THRESHOLDS
        settle()
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
