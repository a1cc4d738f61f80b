"""StateBadge: an engine or host state as a coloured " HUNG " badge; state_tone for table cells."""

from __future__ import annotations

import re
from typing import Final

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

from .tone import Tone

STATE_TONES: Final[dict[str, Tone]] = {
    # engine states (DESIGN "Engine states")
    "ready": "ok",
    "starting": "info",
    "stopping": "info",
    "degraded": "warn",
    "backoff": "warn",
    "exited": "warn",
    "hung": "crit",
    "failed": "crit",
    "stopped": "dim",
    # host states (console fleet reducer); "unreachable" is also a watched engine's (listening, no HTTP answer)
    "fresh": "ok",
    "stale": "stale",
    "unreachable": "crit",
    "unauthorized": "crit",
    "incompatible": "error",
}


DERIVED_STATE_TONES: Final[dict[str, Tone]] = {
    # states a presenter derives, never sent by an agent
    "crash-loop": "crit",  # an engine with an active CRASH_LOOP alert, between crashes
}


def state_tone(state: str | None) -> Tone:
    """The tone of an engine, host or derived state; "dim" for None or an unknown (future) state."""
    key = (state or "").lower()
    return STATE_TONES.get(key) or DERIVED_STATE_TONES.get(key, "dim")


def state_class(state: str | None) -> str:
    """The CSS class for ``state``: ``-<state>`` (lower case, unsafe characters replaced by "-")."""
    return "-" + (re.sub(r"[^a-z0-9_-]", "-", (state or "").lower()) or "unknown")


_BY_TONE: Final[dict[str, str]] = {
    "ok": "background: $success-muted; color: $text-success;",
    "info": "background: $primary-muted; color: $text-primary;",
    "warn": "background: $warning-muted; color: $text-warning;",
    "crit": "background: $error; color: $text;",
    "error": "background: $error-muted; color: $text-error;",
    "stale": "background: $panel; color: $text-muted; text-style: bold italic;",
    "dim": "background: $panel; color: $text-muted;",
}


def _css() -> str:
    rules = [
        "StateBadge { width: auto; height: 1; text-style: bold; background: $panel; color: $text-muted; }"
    ]
    for tone, body in _BY_TONE.items():
        tones = {**STATE_TONES, **DERIVED_STATE_TONES}
        selectors = ", ".join(f"StateBadge.{state_class(s)}" for s, t in tones.items() if t == tone)
        if selectors:
            rules.append(f"{selectors} {{ {body} }}")
    return "\n".join(rules)


class StateBadge(Static):
    """Shows ``state`` upper-cased with a space either side (" HUNG "); the class ``-<state>`` (e.g.
    ``-hung``) carries the colour, so app CSS can restyle any state. Unknown states look like "stopped"."""

    DEFAULT_CSS = _css()

    state: reactive[str] = reactive("", always_update=True)

    def __init__(
        self, state: str = "", *, name: str | None = None, id: str | None = None, classes: str | None = None
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.state = state

    def watch_state(self, old: str, new: str) -> None:
        self.remove_class(state_class(old))
        self.add_class(state_class(new))
        self.update(Text(f" {new.upper() or '—'} "))
