"""``LlmConsole``: the Textual app. It owns the poll loop and the FleetState; screens bind to it.

The source (all I/O) and the config are injected, so the same app runs on live agents
(HttpFleetSource), on recordings (FixtureFleetSource) and under Pilot. One poll round at a time: the
loop awaits each round, reduces it (console.state.apply) and posts ``FleetUpdated``; the ``fleet``
reactive then drives whichever screen is visible. Actions go through a ModalScreen confirmation and
are sent once: a failed or unanswered action is reported, never replayed.

Screens and palette commands never call the App: they post the messages of console.messages
(``EngineChosen``, ``HostChosen``, ``ActionRequested``, ``AcknowledgeRequested``), handled here.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from textual import work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.reactive import var
from textual.screen import Screen
from textual.widgets import Input, TextArea

from console import gcpolicy
from console.commands import FleetCommands
from console.fleet import ActionResult, FleetSource
from console.messages import (
    AcknowledgeRequested,
    ActionFinished,
    ActionRequested,
    EngineChosen,
    FleetUpdated,
    HostChosen,
)
from console.screens import action_reason
from console.screens.alerts import AlertsScreen
from console.screens.confirm import GOAL_STATE, ConfirmScreen, PendingAction, action_progress
from console.screens.engine import EngineScreen
from console.screens.fleet import FleetScreen
from console.screens.help import NAVIGATION, HelpScreen
from console.settings import ConsoleConfig
from console.state import FleetAlert, FleetState, acknowledge, apply
from console.views import live_engine_fields, model_name

Clock = Callable[[], float]
PRELOAD_AFTER_S = 2.0
MOVES = {  # j/k/g/G → the first of these the focused widget has
    "down": ("action_cursor_down", "action_scroll_down"),
    "up": ("action_cursor_up", "action_scroll_up"),
    "top": ("action_scroll_top", "action_first", "action_scroll_home"),
    "bottom": ("action_scroll_bottom", "action_last", "action_scroll_end"),
}


def _import_calculator() -> None:
    import console.screens.calc  # noqa: F401


class LlmConsole(App[int]):
    """The operations console. ``source``: where fleet data comes from; ``clock``: monotonic seconds
    (ages, staleness); ``wall``: wall-clock seconds (display timestamps only)."""

    CSS_PATH = "console.tcss"
    TITLE = "llmconsole"
    MODES: ClassVar[dict[str, Any]] = {"fleet": FleetScreen, "alerts": AlertsScreen}
    DEFAULT_MODE = "fleet"
    COMMANDS = App.COMMANDS | {FleetCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit", priority=True, id="app.quit"),
        Binding("question_mark", "help", "Help", id="app.help"),
        Binding("1", "go('fleet')", "Fleet", id="app.fleet"),
        Binding("2", "go('alerts')", "Alerts", id="app.alerts"),
        Binding("c", "go('calc')", "Calculator", id="app.calculator"),
        # less/k9s movement in whatever list or pane has the focus (a widget's own binding wins)
        Binding("j", "move('down')", "Down (like ↓)", show=False, id="app.down"),
        Binding("k", "move('up')", "Up (like ↑)", show=False, id="app.up"),
        Binding("g", "move('top')", "First row / top", show=False, id="app.top"),
        Binding("G", "move('bottom')", "Last row / bottom", show=False, id="app.bottom"),
    ]

    fleet: var[FleetState] = var(None, always_update=True)  # type: ignore[arg-type]

    def __init__(
        self,
        source: FleetSource,
        config: ConsoleConfig,
        *,
        clock: Clock = time.monotonic,
        wall: Clock = time.time,
        keymap: Mapping[str, str] | None = None,
        title: str | None = None,
        poll: bool = True,
        gc_policy: bool = False,
    ) -> None:
        """``gc_policy``: set this process's garbage collector for a long-running console
        (console.gcpolicy: process-wide, so only for the app a process runs, never in tests by default)."""
        super().__init__()
        self.source, self.config = source, config
        self.clock, self.wall = clock, wall
        self.keymap: dict[str, str] = dict(keymap or {})
        self._state = FleetState.initial(config, clock())
        self.set_reactive(LlmConsole.fleet, self._state)
        self._poll = poll
        self._gc_policy = gc_policy
        self.actions_sent: list[ActionResult] = []
        self.pending: dict[tuple[str, str], PendingAction] = {}  # accepted actions not yet seen done
        self._back_mode = "fleet"  # where Escape on the calculator returns to
        self.add_mode("calc", self._calculator_screen)
        if title:
            self.title = title

    def on_mount(self) -> None:
        if self.keymap:
            self.set_keymap(self.keymap)
        if self._gc_policy:
            gcpolicy.tune()
        if self._poll:
            self.poll_loop()
            self.set_timer(PRELOAD_AFTER_S, self._preload_calculator)

    def _preload_calculator(self) -> None:
        """Import the calculator (Textual plots, catalogs) off the UI thread while the operator reads the
        fleet, then build its screen in the calc mode's hidden stack, so that ``c`` only switches to it."""
        self.run_worker(self._preload, exit_on_error=False, group="preload")

    async def _preload(self) -> None:
        await asyncio.to_thread(_import_calculator)
        if "calc" not in self._screen_stacks:  # not opened meanwhile
            self._init_mode("calc")  # Textual's own start of a mode, without switching to it
        if self._gc_policy:
            gcpolicy.settle()  # the console is up: what is alive now is not walked again

    async def on_unmount(self) -> None:
        with contextlib.suppress(Exception):
            await self.source.aclose()

    # -- the poll loop (on the App, so switching screens never stops it)
    @work(exclusive=True, group="poll", exit_on_error=False, description="poll the fleet")
    async def poll_loop(self) -> None:
        while True:
            started = time.monotonic()
            await self.poll_once()
            await asyncio.sleep(max(0.0, self.config.refresh_s - (time.monotonic() - started)))

    async def poll_once(self) -> FleetState:
        """One round: poll, reduce, publish. A failing source is reported, and the loop goes on."""
        try:
            results = await self.source.poll()
        except Exception as exc:  # a bug in a source must not stop the console
            self.notify(f"poll failed: {exc}", severity="error", timeout=5)
            results = []
        self._state = apply(self._state, results, self.clock(), self.wall())
        self.post_message(FleetUpdated(self._state))
        return self._state

    def on_fleet_updated(self, message: FleetUpdated) -> None:
        self.fleet = message.state
        self._follow_actions(message.state)

    def _follow_actions(self, state: FleetState) -> None:
        """Tell the operator when an accepted action has taken effect (or failed, or is overdue)."""
        now = time.monotonic()
        for key, pending in list(self.pending.items()):
            still, note = action_progress(pending, state.engine(*key), now)
            if still is None:
                del self.pending[key]
            else:
                self.pending[key] = still
            if note is not None:
                self.notify(note[0], severity=note[1], timeout=10)  # type: ignore[arg-type]

    def _publish(self, state: FleetState) -> None:
        self._state = state
        self.fleet = state

    def acknowledge(self, alert: FleetAlert) -> None:
        self._publish(acknowledge(self._state, alert.key))

    # -- what screens and palette commands ask for (console.messages)
    async def on_engine_chosen(self, message: EngineChosen) -> None:
        await self.open_engine(message.host, message.engine)

    async def on_host_chosen(self, message: HostChosen) -> None:
        await self.show_fleet_row(message.host)

    def on_action_requested(self, message: ActionRequested) -> None:
        self.request_action(message.host, message.engine, message.verb)

    def on_acknowledge_requested(self, message: AcknowledgeRequested) -> None:
        self.acknowledge(message.alert)

    # -- navigation
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # "q" types into the filter box instead of quitting
        return not (action == "quit" and isinstance(self.focused, Input | TextArea))

    async def action_go(self, mode: str) -> None:
        """``1``/``2``/``c``: that screen itself, from anywhere (an engine detail or help on top of it closes)."""
        if mode == "calc" and not await self._calculator_available():
            return
        if self.current_mode != mode:
            if mode == "calc":
                self._back_mode = self.current_mode
            await self.switch_mode(mode)
        while len(self.screen_stack) > 1 and isinstance(self.screen, EngineScreen | HelpScreen):
            self.pop_screen()

    async def action_leave_calculator(self) -> None:
        """Escape on the calculator: back to the screen it was opened from."""
        await self.action_go(self._back_mode if self._back_mode != "calc" else "fleet")

    def action_move(self, where: str) -> None:
        """j/k/g/G: the focused list's cursor (or the focused pane's scroll) down, up, to the top, to the bottom."""
        widget = self.focused
        if widget is None:
            return
        for name in MOVES[where]:
            method = getattr(widget, name, None)
            if callable(method):
                method()
                return

    async def open_engine(self, host: str, engine: str) -> None:
        """Show one engine's detail screen (from anywhere: the fleet mode's stack gets it)."""
        await self.action_go("fleet")
        fleet = self.screen
        if isinstance(fleet, FleetScreen):
            fleet.select(f"{host}/{engine}")
        await self.push_screen(EngineScreen(host, engine))

    async def show_fleet_row(self, host: str) -> None:
        await self.action_go("fleet")
        if isinstance(self.screen, FleetScreen):
            self.screen.select(host)

    def action_help(self) -> None:
        sections = [
            ("navigation", NAVIGATION),
            (
                "everywhere",
                [*self.BINDINGS, Binding(self.COMMAND_PALETTE_BINDING, "command_palette", "Command palette")],
            ),
            ("fleet", FleetScreen.BINDINGS),
            ("engine detail", EngineScreen.BINDINGS),
            ("alerts", AlertsScreen.BINDINGS),
            ("confirmation", ConfirmScreen.BINDINGS),
        ]
        try:
            from console.screens.calc import CalcScreen
        except ImportError:  # a build without the calculator
            pass
        else:
            sections.append(("calculator", CalcScreen.BINDINGS))
        self.push_screen(HelpScreen(sections, self.keymap))

    async def action_calculator(self) -> None:
        await self.action_go("calc")

    async def _calculator_available(self) -> bool:
        try:
            _import_calculator()
        except ImportError as exc:
            self.notify(f"the calculator is not part of this build ({exc})", severity="warning")
            return False
        return True

    def _calculator_screen(self) -> Screen[None]:
        """The calculator mode's screen (built once, on the first ``c``; it keeps its form after that)."""
        from agents.tomltables import ConfigError
        from console.calc.live import LiveEngine
        from console.calc.settings import CalculatorConfig, load_calculator_config
        from console.screens.calc import CalcScreen

        calc = CalculatorConfig()  # [calculator] of the console's own config file: price overrides
        if self.config.source is not None:
            try:
                calc = load_calculator_config(self.config.source)
            except ConfigError as exc:
                self.notify(f"[calculator] ignored, built-in prices used: {exc}", severity="warning")
        live = lambda: [LiveEngine(**f) for f in live_engine_fields(self.fleet)]  # noqa: E731
        screen = CalcScreen(live_engines=live, config=calc)
        # Textual restyles every mounted screen when a new mode's screen comes up with an older CSS count
        # (for a theme change since); this one is new, styled as it mounts: skip that (it took ~1 s).
        screen._css_update_count = self._css_update_count
        return screen

    # -- actions: confirm, send once, report
    def request_action(self, host: str, engine: str, verb: str) -> None:
        block = action_reason(self, host, engine, verb)  # the host's reason, then the engine's agent's
        if block is not None:
            self.notify(f"{verb} {host}/{engine}: {block}", severity="warning")
            return
        e = self.fleet.engine(host, engine)
        model = (e.served_model_name or e.model) if e is not None else None

        def answered(yes: bool | None) -> None:
            if yes:
                self.send_action(host, engine, verb)

        self.push_screen(
            ConfirmScreen(
                verb,
                host,
                engine,
                model or (model_name(e) if e else None),
                e.kind if e else None,
                managed=e.managed if e is not None else True,
            ),
            answered,
        )

    @work(group="actions", exit_on_error=False, description="engine action")
    async def send_action(self, host: str, engine: str, verb: str) -> ActionResult:
        self.notify(f"{verb} {host}/{engine}: sent…", timeout=3)
        before = self.fleet.engine(host, engine)
        result = await self.source.action(host, engine, verb)
        self.actions_sent.append(result)
        if result.outcome == "accepted":
            goal = GOAL_STATE.get(verb, "ready")
            self.notify(f"{verb} {host}/{engine}: {verb} accepted — you will be told when it is {goal}")
            pid = before.pid if before is not None else None
            self.pending[(host, engine)] = PendingAction(host, engine, verb, pid, time.monotonic())
        elif result.outcome == "unknown":
            self.notify(f"{verb} {host}/{engine}: UNKNOWN — {result.message}", severity="warning", timeout=10)
        else:
            self.notify(f"{verb} {host}/{engine} refused: {result.message}", severity="error", timeout=10)
        self.post_message(ActionFinished(result))
        return result


__all__ = ["LlmConsole"]
