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
from textual.widgets import Input, TextArea

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
from console.screens.confirm import ConfirmScreen
from console.screens.engine import EngineScreen
from console.screens.fleet import FleetScreen
from console.screens.help import HelpScreen
from console.settings import ConsoleConfig
from console.state import FleetAlert, FleetState, acknowledge, apply
from console.views import live_engine_fields, model_name

Clock = Callable[[], float]


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
        Binding("1", "switch_mode('fleet')", "Fleet", id="app.fleet"),
        Binding("2", "switch_mode('alerts')", "Alerts", id="app.alerts"),
        Binding("c", "calculator", "Calculator", id="app.calculator"),
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
    ) -> None:
        super().__init__()
        self.source, self.config = source, config
        self.clock, self.wall = clock, wall
        self.keymap: dict[str, str] = dict(keymap or {})
        self._state = FleetState.initial(config, clock())
        self.set_reactive(LlmConsole.fleet, self._state)
        self._poll = poll
        self.actions_sent: list[ActionResult] = []
        if title:
            self.title = title

    def on_mount(self) -> None:
        if self.keymap:
            self.set_keymap(self.keymap)
        if self._poll:
            self.poll_loop()

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

    async def open_engine(self, host: str, engine: str) -> None:
        """Show one engine's detail screen (from anywhere: the fleet mode's stack gets it)."""
        if self.current_mode != "fleet":
            await self.switch_mode("fleet")
        while isinstance(self.screen, EngineScreen | HelpScreen):
            self.pop_screen()
        fleet = self.screen
        if isinstance(fleet, FleetScreen):
            fleet.select(f"{host}/{engine}")
        await self.push_screen(EngineScreen(host, engine))

    async def show_fleet_row(self, host: str) -> None:
        if self.current_mode != "fleet":
            await self.switch_mode("fleet")
        while isinstance(self.screen, EngineScreen | HelpScreen):
            self.pop_screen()
        if isinstance(self.screen, FleetScreen):
            self.screen.select(host)

    def action_help(self) -> None:
        sections = [
            (
                "everywhere",
                [*self.BINDINGS, Binding(self.COMMAND_PALETTE_BINDING, "command_palette", "Command palette")],
            ),
            ("fleet", FleetScreen.BINDINGS),
            ("engine detail", EngineScreen.BINDINGS),
            ("alerts", AlertsScreen.BINDINGS),
            ("confirmation", ConfirmScreen.BINDINGS),
        ]
        self.push_screen(HelpScreen(sections, self.keymap))

    def action_calculator(self) -> None:
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
        self.push_screen(CalcScreen(live_engines=live, config=calc))

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
        result = await self.source.action(host, engine, verb)
        self.actions_sent.append(result)
        if result.outcome == "accepted":
            state = f" (state {result.state})" if result.state else ""
            self.notify(f"{verb} {host}/{engine}: accepted{state}", severity="information")
        elif result.outcome == "unknown":
            self.notify(f"{verb} {host}/{engine}: UNKNOWN — {result.message}", severity="warning", timeout=10)
        else:
            self.notify(f"{verb} {host}/{engine} refused: {result.message}", severity="error", timeout=10)
        self.post_message(ActionFinished(result))
        return result


__all__ = ["LlmConsole"]
