"""Navigation a k9s user expects, under Pilot on the recorded fleet: ``1``/``2``/``c`` reach their screen
from anywhere (an engine detail opened from Alerts included), Escape goes back, ``j``/``k``/``g``/``G``
move, help lists the navigation keys, and the engine action keys show (and act) only on an engine row."""

from __future__ import annotations

import time

from textual.widgets import SelectionList

from console.app import LlmConsole
from console.fixturesource import FixtureFleetSource
from console.screens import NO_ENGINE
from console.screens.alerts import AlertsScreen
from console.screens.calc import CalcScreen
from console.screens.confirm import ConfirmScreen
from console.screens.engine import EngineScreen
from console.screens.fleet import FleetScreen
from console.screens.help import NAVIGATION, HelpScreen
from console.settings import ConsoleConfig, HostConfig
from tests.console.conftest import FLEET

SIZE = (160, 45)


def recorded() -> LlmConsole:
    src = FixtureFleetSource.from_dir(FLEET)
    hosts = tuple(
        HostConfig(name=h.name, url=f"http://127.0.0.1:{9300 + i}") for i, h in enumerate(src.hosts)
    )
    return LlmConsole(src, ConsoleConfig(hosts=hosts), clock=src.clock, wall=src.wall, poll=False)


async def ready(app: LlmConsole, pilot, rounds: int = 12) -> None:  # noqa: ANN001
    for _ in range(rounds):
        await app.poll_once()
    await pilot.pause()


async def until(pilot, cond, what: str, timeout: float = 10.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await pilot.pause(0.05)


async def test_1_2_c_reach_their_screen_from_anywhere() -> None:
    app = recorded()
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, pilot)
        # Alerts → Enter on an engine's alert → its detail; then 1 is the fleet table itself, not the detail
        await pilot.press("2")
        await until(pilot, lambda: isinstance(app.screen, AlertsScreen), "the alerts screen")
        alerts = app.screen
        key = next(k for k, a in alerts._by_key.items() if a.engine == "llama-hang")
        alerts.table.select_key(key)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, EngineScreen), "the engine detail")
        await pilot.press("1")
        await until(pilot, lambda: isinstance(app.screen, FleetScreen), "the fleet table")
        assert app.current_mode == "fleet" and len(app.screen_stack) == 1
        assert app.screen.table.cursor_key == "gpu01/llama-hang"  # the row of the engine just seen
        # from a detail opened on the fleet: 2 is the alerts list, 1 the fleet again
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, EngineScreen), "the engine detail")
        await pilot.press("2")
        await until(pilot, lambda: isinstance(app.screen, AlertsScreen), "the alerts screen")
        await pilot.press("1")
        await until(pilot, lambda: isinstance(app.screen, FleetScreen), "the fleet table")
        # c from the alerts screen; Escape goes back there; c and 1 from the calculator
        await pilot.press("2", "c")
        await until(pilot, lambda: isinstance(app.screen, CalcScreen), "the calculator")
        calc = app.screen
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, AlertsScreen), "back to the alerts")
        await pilot.press("c")
        await until(pilot, lambda: app.screen is calc, "the same calculator (its form kept)")
        await pilot.press("1")
        await until(pilot, lambda: isinstance(app.screen, FleetScreen), "the fleet from the calculator")
        # help on top of the detail: 1 closes both
        await pilot.press("enter", "question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen), "help")
        await pilot.press("1")
        await until(pilot, lambda: isinstance(app.screen, FleetScreen), "the fleet from help")


async def test_j_k_g_G_move_the_cursor_like_less() -> None:
    app = recorded()
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, pilot)
        screen = app.screen
        assert isinstance(screen, FleetScreen)
        keys = screen.table.keys
        screen.table.select_key(keys[0])
        await pilot.press("j", "j")
        assert screen.table.cursor_key == keys[2]
        await pilot.press("k")
        assert screen.table.cursor_key == keys[1]
        await pilot.press("G")
        assert screen.table.cursor_key == keys[-1]
        await pilot.press("g")
        assert screen.table.cursor_key == keys[0]
        # in the filter box the same letters are text
        await pilot.press("slash", "g", "j")
        assert screen.filter_text == "gj"
        await pilot.press("escape")
        # in the calculator's list of APIs too
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, CalcScreen), "the calculator")
        apis = app.screen.query_one("#apis", SelectionList)
        apis.focus()
        apis.highlighted = 0
        await pilot.press("j", "j")
        assert apis.highlighted == 2
        await pilot.press("G")
        assert apis.highlighted == apis.option_count - 1


async def test_help_lists_the_navigation_keys() -> None:
    app = recorded()
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, pilot, 2)
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen), "help")
        rows = app.screen.rows()
        nav = [r for r in rows if r[0] == "navigation"]
        assert len(nav) == len(NAVIGATION)
        shown = " ".join(r[1] for r in nav)
        for key in ("⏎", "esc", "tab", "j", "k", "g", "G", "/", "1", "2", "c", "↑", "↓", "space"):
            assert key in shown.replace(",", " ").split(), key  # ⏎ is how Textual shows Enter
        assert {"app.down", "app.up", "app.top", "app.bottom", "app.fleet", "app.alerts"} <= {
            r[3] for r in rows
        }
        assert rows[0][0] == "navigation"  # how to move comes first


async def test_engine_keys_only_on_an_engine_row() -> None:
    app = recorded()
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, pilot)
        screen = app.screen
        assert isinstance(screen, FleetScreen)
        screen.select("gpu01")  # a host row
        await pilot.pause()
        assert screen.check_action("engine", ("restart",)) is False  # hidden from the footer
        assert "r" not in screen.active_bindings and "s" not in screen.active_bindings
        await pilot.press("r")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)
        assert any(NO_ENGINE in n.message and n.message.startswith("restart:") for n in app._notifications)
        screen.select("gpu01/llama-8b")  # an engine row (a replay: shown, greyed, and says why)
        await pilot.pause()
        assert screen.check_action("engine", ("restart",)) is None
        assert "r" in screen.active_bindings and not screen.active_bindings["r"].enabled
        before = len(app._notifications)
        await pilot.press("s")
        await pilot.pause()
        new = list(app._notifications)[before:]
        assert new and new[-1].message.startswith("stop gpu01/llama-8b:") and NO_ENGINE not in new[-1].message
