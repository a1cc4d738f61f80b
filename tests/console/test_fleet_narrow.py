"""The fleet and alerts screens at 80×24, 100×30 and 160×48 on the recorded fleet (tests/data/fleet): which
columns a narrow terminal keeps, the frozen name column, root cause first, crash loops and ``alert:any``.

Snapshot images (pytest-textual-snapshot) of the narrow fleet and of the grouped alerts; update after an
intended change with ``--snapshot-update`` and look at the images."""

from __future__ import annotations

import pytest
from textual.widgets import Input

from console.app import LlmConsole
from console.fixturesource import FixtureFleetSource
from console.screens.alerts import AlertsScreen
from console.screens.fleet import FleetScreen
from console.settings import ConsoleConfig, HostConfig
from console.views import FLEET_COLUMNS, fleet_table
from tests.console.conftest import FLEET

REQUIRED = {"name", "state", "alerts", "kv", "queue"}
COL = {k: i for i, (k, _) in enumerate(FLEET_COLUMNS)}


def recorded() -> LlmConsole:
    src = FixtureFleetSource.from_dir(FLEET)
    hosts = tuple(
        HostConfig(name=h.name, url=f"http://127.0.0.1:{9300 + i}") for i, h in enumerate(src.hosts)
    )
    return LlmConsole(src, ConsoleConfig(hosts=hosts), clock=src.clock, wall=src.wall, poll=False)


async def settle(pilot) -> None:
    for _ in range(12):
        await pilot.app.poll_once()
    await pilot.pause()
    for box in pilot.app.screen.query(Input):
        box.cursor_blink = False


def status_text(screen: FleetScreen) -> str:
    return str(screen.query_one("#status").render())


@pytest.mark.parametrize(
    ("size", "shown"),
    [
        ((80, 24), ("name", "state", "kv", "queue", "alerts")),
        ((100, 30), ("name", "state", "kv", "queue", "ttft", "gen", "alerts")),
        ((160, 48), ("name", "state", "kind", "model", "kv", "queue", "ttft", "gen", "restarts", "alerts")),
    ],
)
async def test_columns_by_priority_at_each_size(size: tuple[int, int], shown: tuple[str, ...]) -> None:
    app = recorded()
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, FleetScreen)
        table = screen.table
        assert table.visible_columns == shown and set(shown) >= REQUIRED
        width = sum(table.columns[k].get_render_width(table) for k in shown)  # type: ignore[index]
        assert width <= size[0] or set(shown) == REQUIRED  # what is shown fits (unless only the required)
        hidden = table.hidden_columns
        assert set(hidden) | set(shown) == {k for k, _ in FLEET_COLUMNS}
        labels = dict(FLEET_COLUMNS)
        text = status_text(screen)
        for key in hidden:
            assert labels[key].split()[0] in text, (key, text)
        if not hidden:
            assert "hidden" not in text
        view = fleet_table(app.fleet, app.fleet.now)
        for key in view.order:  # what is drawn is what the presenters say, column by column
            for col in shown:
                drawn, cell = table.get_cell(key, col).cell, view.rows[key][COL[col]]
                assert (drawn.display, drawn.tone) == (cell.display, cell.tone), (key, col)


async def test_resizing_brings_columns_back_and_keeps_the_cursor() -> None:
    app = recorded()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        screen = app.screen
        screen.select("gpu02/phi-crash")
        await pilot.resize_terminal(160, 48)
        await pilot.pause()
        assert "ttft" in screen.table.visible_columns and screen.table.cursor_key == "gpu02/phi-crash"
        assert "TTFT" not in status_text(screen)  # the status line follows: only GPUS is hidden now
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        assert "ttft" not in screen.table.visible_columns and screen.table.cursor_key == "gpu02/phi-crash"
        assert "hidden: KIND MODEL GPUS TTFT GEN RESTARTS" in status_text(screen)


async def test_the_name_column_stays_while_scrolling_sideways() -> None:
    app = recorded()
    async with app.run_test(size=(56, 24)) as pilot:  # narrower than even the required columns
        await settle(pilot)
        table = app.screen.table
        assert table.visible_columns == ("name", "state", "kv", "queue", "alerts") and table.max_scroll_x > 0
        y = 1 + table.keys.index("gpu02/phi-crash")
        before = table.render_line(y).text
        assert "phi-crash" in before and "crash-loop" in before
        await pilot.press("right")
        await pilot.pause()
        after = table.render_line(y).text
        assert (
            table.scroll_x > 0 and "phi-crash" in after and "crash-loop" not in after
        )  # STATE scrolled away
        assert after.index("phi-crash") == before.index("phi-crash")
        await pilot.press("left")
        await pilot.pause()
        assert table.scroll_x == 0


async def test_crash_loop_header_and_alert_any_filter() -> None:
    app = recorded()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        screen = app.screen
        row = screen.table.cells("gpu02/phi-crash")
        assert (row[COL["state"]].display, row[COL["state"]].tone) == ("crash-loop", "crit")
        counts = str(screen.query_one("#counts").render())
        assert "1 crash-loop" in counts
        await pilot.press("slash", *"alert:any", "enter")
        await pilot.pause()
        keys = screen.table.keys
        with_alerts = [
            f"{h.name}/{e.id}"
            for h in app.fleet.hosts.values()
            if h.snapshot is not None
            for e in h.snapshot.engines
            if e.alerts or h.alerts or h.snapshot.alerts
        ]
        assert with_alerts and set(with_alerts) <= set(keys)
        assert "gpu02/phi-crash" in keys and "gpu01/llama-8b" not in keys  # quiet engine of a quiet host
        await pilot.press("escape")
        await pilot.press("slash", *"-state:ready", "enter")
        await pilot.pause()
        assert "gpu02/phi-crash" in screen.table.keys  # never "ready" while it crash-loops


async def test_alerts_screen_groups_by_cause() -> None:
    app = recorded()
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, AlertsScreen)
        entries = list(screen._entries.values())
        hang = [e for e in entries if e.alert.engine == "llama-hang" and e.alert.active]
        assert [(e.depth, e.alert.alert.code) for e in hang] == [(0, "ENGINE_HUNG"), (1, "HEALTH_LIES")]
        drawn = screen.table.get_cell(hang[1].key, "code").cell.display
        assert drawn == "└ HEALTH_LIES"
        keys = list(screen.table.keys)
        assert keys.index(hang[1].key) == keys.index(hang[0].key) + 1  # the consequence right under its cause
        cleared = next(e for e in entries if not e.alert.active)
        screen.table.select_key(cleared.key)
        await pilot.pause()
        assert "a" not in screen.active_bindings  # nothing to acknowledge: not offered
        await pilot.press("a")
        await pilot.pause()
        assert not app.fleet.is_acknowledged(cleared.alert)
        assert any("has cleared" in str(n.message) for n in app._notifications)  # said, not silent
        screen.table.select_key(hang[0].key)
        await pilot.pause()
        assert screen.active_bindings["a"].enabled


@pytest.mark.parametrize(
    ("size", "shown"),
    [
        ((80, 24), ("code", "where", "status", "summary")),
        ((160, 48), ("since", "severity", "code", "where", "status", "summary")),
    ],
)
async def test_alerts_columns_at_each_size(size: tuple[int, int], shown: tuple[str, ...]) -> None:
    app = recorded()
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, AlertsScreen) and screen.table.visible_columns == shown
        detail = str(screen.query_one("#alert-detail").render())
        assert (
            screen.highlighted is not None and screen.highlighted.alert.summary in detail
        )  # the whole summary


def test_fleet_80x24(snap_compare) -> None:
    assert snap_compare(recorded(), terminal_size=(80, 24), run_before=settle)


def test_fleet_100x30(snap_compare) -> None:
    assert snap_compare(recorded(), terminal_size=(100, 30), run_before=settle)


def test_alerts_100x30(snap_compare) -> None:
    async def run_before(pilot) -> None:
        await settle(pilot)
        await pilot.press("2")
        await pilot.pause()

    assert snap_compare(recorded(), terminal_size=(100, 30), run_before=run_before)
