"""Console screens, plus the two small pieces they share: ``ToneLine`` (a line of toned text parts) and
``EngineActions`` (the r/s/S bindings on "the selected engine", with their availability check)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.widgets import Static

from widgets.tone import Tone, component_style, tone_class, tone_classes, tone_css

if TYPE_CHECKING:
    from console.app import LlmConsole


class ToneLine(Static):
    """One line of (text, tone) parts; tones come from the theme like every table cell's."""

    COMPONENT_CLASSES: ClassVar[set[str]] = tone_classes("tone-line")
    DEFAULT_CSS = "ToneLine { height: auto; }\n" + tone_css("ToneLine", "tone-line")

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


ENGINE_ACTIONS = {"restart": "Restart", "stop": "Stop", "start": "Start"}
ENGINE_ACTION_BINDINGS: list[BindingType] = [
    Binding("r", "engine('restart')", "Restart", id="engine.restart"),
    Binding("s", "engine('stop')", "Stop", id="engine.stop"),
    Binding("S", "engine('start')", "Start", id="engine.start"),
]


class EngineActions:
    """Mixin for screens with a selected engine: ``selected_engine()`` → (host, engine) or None."""

    app: LlmConsole

    def selected_engine(self) -> tuple[str, str] | None:
        raise NotImplementedError

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "engine":
            target = self.selected_engine()
            if target is None:
                return None  # shown greyed: no engine selected
            return None if self.app.source.action_block(target[0]) is not None else True
        return True

    def action_engine(self, verb: str) -> None:
        target = self.selected_engine()
        if target is not None:
            self.app.request_action(target[0], target[1], verb)


__all__ = ["ENGINE_ACTIONS", "ENGINE_ACTION_BINDINGS", "EngineActions", "ToneLine"]
