"""Console screens, plus the small pieces they share: ``ToneLine`` (a line of toned text parts),
``FleetStateScreen`` (redraw on each new FleetState while visible) and ``EngineActions`` (the r/s/S
bindings on "the selected engine", with their availability check: ``action_reason``).

Screens never import the App (console.app): they read the fleet through ``console.messages.ConsoleView``
and ask for everything else (open an engine, show a host, an engine action, an acknowledgement) by
posting the messages of console.messages, which bubble up to the App.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, cast

from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.dom import DOMNode
from textual.screen import Screen
from textual.widgets import Static

from agents.schema import ACTIONS
from console.messages import ActionRequested, ConsoleView
from console.state import FleetState
from console.views import action_refusal
from widgets.tone import SALIENT_RULES, Tone, component_style, tone_class, tone_classes, tone_css


def console_view(node: DOMNode) -> ConsoleView:
    """The App a screen or widget runs in, as the read-only view screens may use."""
    return cast(ConsoleView, node.app)


class ToneLine(Static):
    """One line of (text, tone) parts; tones come from the theme like every table cell's."""

    COMPONENT_CLASSES: ClassVar[set[str]] = tone_classes("tone-line")
    DEFAULT_CSS = "ToneLine { height: auto; }\n" + tone_css("ToneLine", "tone-line", SALIENT_RULES)

    def __init__(self, parts: Sequence[tuple[str, Tone]] = (), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._parts: tuple[tuple[str, Tone], ...] = tuple(parts)

    @property
    def parts(self) -> tuple[tuple[str, Tone], ...]:
        return self._parts

    @property
    def plain(self) -> str:
        return "".join(text for text, _ in self._parts)

    def set_parts(self, parts: Sequence[tuple[str, Tone]]) -> None:
        parts = tuple(parts)
        if parts != self._parts:
            self._parts = parts
            self.refresh(layout=True)

    def render(self) -> Text:
        out = Text(no_wrap=False, end="")
        for text, tone in self._parts:
            name = tone_class("tone-line", tone)
            out.append(text, component_style(self, name) if name else None)
        return out


class FleetStateScreen(Screen[None]):
    """A screen drawn from the App's FleetState: ``redraw(state)`` on each new state while it is the
    current screen; a hidden screen redraws once when shown again."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._dirty = False

    @property
    def console(self) -> ConsoleView:
        return console_view(self)

    def watch_fleet(self) -> None:
        """Start following the App's ``fleet`` (call from on_mount); draws the current state now."""
        self.watch(self.app, "fleet", self._on_fleet, init=True)

    def _on_fleet(self, state: FleetState) -> None:
        if not self.is_current:
            self._dirty = True  # hidden: redraw when shown again
            return
        self.redraw(state)

    def on_screen_resume(self) -> None:
        if self._dirty:
            self._dirty = False
            self.redraw(self.console.fleet)

    def redraw(self, state: FleetState) -> None:
        raise NotImplementedError


ENGINE_ACTION_KEYS = {"restart": "r", "stop": "s", "start": "S"}  # footer and palette order: restart first
ENGINE_ACTIONS = {verb: verb.capitalize() for verb in ENGINE_ACTION_KEYS if verb in ACTIONS}
ENGINE_ACTION_BINDINGS: list[BindingType] = [
    Binding(ENGINE_ACTION_KEYS[verb], f"engine('{verb}')", label, id=f"engine.{verb}")
    for verb, label in ENGINE_ACTIONS.items()
]


_VERB_OF_ACTION = {f"engine('{verb}')": verb for verb in ENGINE_ACTIONS}


def action_reason(view: ConsoleView, host: str, engine: str, verb: str) -> str | None:
    """Why ``verb`` on host/engine is not available, or None: the host's own reason first (no operator
    token, a read-only Prometheus host, a replay), then the engine's agent's (its snapshot's
    ``actions``: e.g. a watched engine without ``restart_command``)."""
    block = view.source.action_block(host)
    if block is not None:
        return block
    return action_refusal(view.fleet.engine(host, engine), verb)


NO_ENGINE = "select an engine row: start, stop and restart act on one engine, not on a host"


class EngineActions:
    """Mixin for screens with a selected engine: ``selected_engine()`` → (host, engine) or None. An
    action key posts ``ActionRequested``; the App confirms it and sends it once. The footer shows the
    action keys only on an engine row; an action that is not available there is greyed; a key that does
    nothing (a host row, a greyed action) says why in a notification instead of doing nothing."""

    def selected_engine(self) -> tuple[str, str] | None:
        raise NotImplementedError

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "engine":
            target = self.selected_engine()
            if target is None:
                return False  # hidden: a host row (or nothing) is selected
            verb = str(parameters[0]) if parameters else ""
            blocked = action_reason(console_view(cast(DOMNode, self)), target[0], target[1], verb)
            return None if blocked is not None else True
        return True

    def _engine_verb(self, key: str) -> str | None:
        """The engine action this screen binds to ``key`` (after the keymap), shown or not."""
        for node, bindings in cast(Screen[None], self)._binding_chain:
            if node is self:
                for b in bindings.key_to_bindings.get(key, ()):
                    if b.action in _VERB_OF_ACTION:
                        return _VERB_OF_ACTION[b.action]
        return None

    def on_key(self, event: events.Key) -> None:
        """An action key that would do nothing (greyed, or hidden on a host row) tells why. Runs before
        the bindings: a key event reaches the screen on its way to the App, where they are checked."""
        active = cast(Screen[None], self).active_bindings.get(event.key)
        if active is not None and active.enabled:
            return
        verb = self._engine_verb(event.key)
        if verb is None:
            return
        target = self.selected_engine()
        if target is None:
            message = f"{verb}: {NO_ENGINE}"
        else:
            reason = action_reason(console_view(cast(DOMNode, self)), target[0], target[1], verb)
            if reason is None:
                return
            message = f"{verb} {target[0]}/{target[1]}: {reason}"
        event.stop()
        event.prevent_default()
        cast(DOMNode, self).app.notify(message, severity="warning")

    def action_engine(self, verb: str) -> None:
        target = self.selected_engine()
        if target is not None:
            cast(DOMNode, self).post_message(ActionRequested(target[0], target[1], verb))


__all__ = [
    "ENGINE_ACTIONS",
    "ENGINE_ACTION_BINDINGS",
    "ENGINE_ACTION_KEYS",
    "NO_ENGINE",
    "EngineActions",
    "FleetStateScreen",
    "ToneLine",
    "action_reason",
    "console_view",
]
