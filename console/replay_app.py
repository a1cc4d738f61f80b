"""The console on a bundle: :class:`ReplayApp` is :class:`~console.app.LlmConsole` with a time cursor.

Keys: ``[`` / ``]`` one recorded moment back / forward, ``{`` / ``}`` one minute back / forward, ``space``
play or pause (one recorded moment per refresh). The header says REPLAY, the bundle, the cursor's time and
position. Moving back rebuilds the fleet state from the recording up to the cursor, so graphs and alert
history never run backwards. Actions are refused by the source.
"""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType

from console.app import LlmConsole
from console.replay import ReplaySource
from console.settings import ConsoleConfig
from console.state import FleetState

STEP_JUMP_S = 60.0


class ReplayApp(LlmConsole):
    BINDINGS: ClassVar[list[BindingType]] = [
        *LlmConsole.BINDINGS,
        Binding("left_square_bracket", "replay_step(-1)", "Back", id="replay.back"),
        Binding("right_square_bracket", "replay_step(1)", "Forward", id="replay.forward"),
        Binding("left_curly_bracket", "replay_jump(-60)", "-1 min", id="replay.back_minute"),
        Binding("right_curly_bracket", "replay_jump(60)", "+1 min", id="replay.forward_minute"),
        Binding("space", "replay_toggle", "Play/pause", id="replay.toggle"),
    ]

    def __init__(self, source: ReplaySource, config: ConsoleConfig, **kwargs: object) -> None:
        super().__init__(source, config, clock=source.clock, wall=source.wall, **kwargs)  # type: ignore[arg-type]
        self.replay = source
        self.sub_title = source.label()

    async def poll_once(self) -> FleetState:
        if self.replay.rewound and self._state.polls:
            self._state = FleetState.initial(self.config, self.clock())  # rebuilt from the recording
        state = await super().poll_once()
        self.sub_title = self.replay.label()
        return state

    async def _moved(self) -> None:
        await self.poll_once()

    async def action_replay_step(self, n: int) -> None:
        self.replay.step(n)
        await self._moved()

    async def action_replay_jump(self, seconds: float) -> None:
        self.replay.jump(seconds)
        await self._moved()

    async def action_replay_toggle(self) -> None:
        playing = self.replay.toggle()
        self.sub_title = self.replay.label()
        self.notify("replay playing" if playing else "replay paused", timeout=2)


__all__ = ["ReplayApp"]
