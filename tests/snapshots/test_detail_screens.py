"""Snapshot images of the engine detail on the recorded fleet (tests/data/fleet) at the three terminal
sizes an on-call engineer meets: 80×24 (the compact layout: alerts first, sparklines), 100×30 and
160×48 (graphs with round axes and target lines beside the alerts and numbers panels).

Update after an intended change with ``pytest tests/snapshots/test_detail_screens.py --snapshot-update``
and look at the images before committing them."""

from __future__ import annotations

from pathlib import Path

import pytest

from console.app import LlmConsole
from console.fixturesource import FixtureFleetSource
from console.settings import ConsoleConfig, HostConfig

FLEET = Path(__file__).resolve().parents[1] / "data" / "fleet"


def recorded_app() -> LlmConsole:
    src = FixtureFleetSource.from_dir(FLEET)
    hosts = tuple(
        HostConfig(name=h.name, url=f"http://127.0.0.1:{9300 + i}") for i, h in enumerate(src.hosts)
    )
    return LlmConsole(src, ConsoleConfig(hosts=hosts), clock=src.clock, wall=src.wall, poll=False)


def opened(host: str, engine: str):
    async def run_before(pilot) -> None:
        app = pilot.app
        for _ in range(12):
            await app.poll_once()
        await pilot.pause()
        await app.open_engine(host, engine)
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()

    return run_before


@pytest.mark.parametrize("size", [(80, 24), (100, 30), (160, 48)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_hung_engine_detail(snap_compare, size) -> None:
    assert snap_compare(recorded_app(), terminal_size=size, run_before=opened("gpu01", "llama-hang"))


@pytest.mark.parametrize("size", [(80, 24), (100, 30)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_kv_pressure_engine_detail(snap_compare, size) -> None:
    assert snap_compare(recorded_app(), terminal_size=size, run_before=opened("gpu02", "llama-kv"))
