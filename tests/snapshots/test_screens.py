"""Snapshot images of the console screens on the recorded fleet (tests/data/fleet): deterministic —
the fixture's own clock, a fixed replay of 12 poll rounds, a fixed terminal size, no cursor blink.

Update after an intended change with ``pytest tests/snapshots/test_screens.py --snapshot-update`` and
look at the images before committing them."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Input

from console.app import LlmConsole
from console.fixturesource import FixtureFleetSource
from console.settings import ConsoleConfig, HostConfig

FLEET = Path(__file__).resolve().parents[1] / "data" / "fleet"
SIZE = (160, 45)


def recorded_app() -> LlmConsole:
    src = FixtureFleetSource.from_dir(FLEET)
    hosts = tuple(
        HostConfig(name=h.name, url=f"http://127.0.0.1:{9300 + i}") for i, h in enumerate(src.hosts)
    )
    return LlmConsole(src, ConsoleConfig(hosts=hosts), clock=src.clock, wall=src.wall, poll=False)


async def settle(pilot) -> None:
    app = pilot.app
    for _ in range(12):
        await app.poll_once()
    await pilot.pause()
    for box in app.screen.query(Input):
        box.cursor_blink = False


async def open_engine(pilot, host: str, engine: str) -> None:
    await settle(pilot)
    await pilot.app.open_engine(host, engine)
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def test_fleet(snap_compare) -> None:
    assert snap_compare(recorded_app(), terminal_size=SIZE, run_before=settle)


def test_fleet_unreachable_host_selected(snap_compare) -> None:
    async def run_before(pilot) -> None:
        await settle(pilot)
        pilot.app.screen.select("gpu04")
        await pilot.pause()

    assert snap_compare(recorded_app(), terminal_size=SIZE, run_before=run_before)


def test_fleet_filtered_and_sorted(snap_compare) -> None:
    async def run_before(pilot) -> None:
        await settle(pilot)
        await pilot.press("slash", *"-state:ready", "enter", "o", "o")
        await pilot.pause()

    assert snap_compare(recorded_app(), terminal_size=SIZE, run_before=run_before)


def test_engine_detail_with_graphs(snap_compare) -> None:
    async def run_before(pilot) -> None:
        await open_engine(pilot, "gpu02", "llama-kv")

    assert snap_compare(recorded_app(), terminal_size=SIZE, run_before=run_before)


def test_engine_detail_on_unreachable_host(snap_compare) -> None:
    async def run_before(pilot) -> None:
        await open_engine(pilot, "gpu04", "qwen-c")

    assert snap_compare(recorded_app(), terminal_size=SIZE, run_before=run_before)


def test_engine_detail_loading(snap_compare) -> None:
    async def run_before(pilot) -> None:
        await open_engine(pilot, "gpu02", "big-70b")

    assert snap_compare(recorded_app(), terminal_size=SIZE, run_before=run_before)


def test_alerts(snap_compare) -> None:
    async def run_before(pilot) -> None:
        await settle(pilot)
        await pilot.press("2")
        await pilot.pause()

    assert snap_compare(recorded_app(), terminal_size=SIZE, run_before=run_before)


def test_help(snap_compare) -> None:
    async def run_before(pilot) -> None:
        await settle(pilot)
        await pilot.press("question_mark")
        await pilot.pause()

    assert snap_compare(recorded_app(), terminal_size=SIZE, run_before=run_before)
