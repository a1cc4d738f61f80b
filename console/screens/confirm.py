"""A confirmation before an engine action (names the host, the engine and the model; returns a bool), and
``action_progress``: following an accepted action in the fleet updates until it has visibly taken effect."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from agents.schema import EngineSnapshot

WHAT_HAPPENS = {
    "restart": "The agent stops the engine's whole process tree (SIGTERM, then SIGKILL after its stop timeout), "
    "waits for GPU memory to be released and starts it again. In-flight requests fail.",
    "stop": "The agent stops the engine's whole process tree (SIGTERM, then SIGKILL) and does not restart it. "
    "In-flight requests fail.",
    "start": "The agent launches the engine with its configured command.",
}
WATCHED_WHAT_HAPPENS = (
    "This engine is watched, not started by the agent: the agent runs its configured {verb}_command "
    "(never a signal to the engine's processes). What it does to in-flight requests is up to that command."
)


class ConfirmScreen(ModalScreen[bool]):
    """``y`` / the action button confirms; ``n``, Escape or Cancel cancels (the default focus)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Confirm", id="confirm.yes"),
        Binding("n,escape", "answer(False)", "Cancel", id="confirm.no"),
    ]

    def __init__(
        self,
        verb: str,
        host: str,
        engine: str,
        model: str | None,
        kind: str | None = None,
        *,
        managed: bool = True,
    ) -> None:
        super().__init__()
        self.verb, self.host, self.engine, self.model, self.kind = verb, host, engine, model, kind
        self.managed = managed  # False: a watched engine, whose action is its configured command

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box"):
            yield Static(f"{self.verb.capitalize()} engine {self.engine} on {self.host}?", id="confirm-title")
            yield Static(
                f"host    {self.host}\nengine  {self.engine}"
                + (f" ({self.kind}{', watched' if not self.managed else ''})" if self.kind else "")
                + f"\nmodel   {self.model or 'unknown'}",
                id="confirm-target",
            )
            what = (
                WHAT_HAPPENS.get(self.verb, "")
                if self.managed
                else WATCHED_WHAT_HAPPENS.format(verb=self.verb)
            )
            yield Static(what, id="confirm-what")
            with Horizontal(id="confirm-buttons"):
                yield Button(f"{self.verb.capitalize()} (y)", variant="error", id="confirm-yes")
                yield Button("Cancel (n)", variant="primary", id="confirm-no")

    def on_mount(self) -> None:
        self.query_one("#confirm-no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm-yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


# -- after the agent accepted an action: follow the engine until the action has visibly taken effect

FOLLOW_TIMEOUT_S = 600.0  # an accepted action not visibly done by then is reported as such, once
GOAL_STATE = {"restart": "ready", "start": "ready", "stop": "stopped"}
GAVE_UP_STATES = frozenset({"failed"})


@dataclass(frozen=True, slots=True)
class PendingAction:
    """An accepted action whose effect is not yet seen in the fleet: ``pid`` before it was sent,
    ``left`` once the engine was seen out of its starting state (or with a new process)."""

    host: str
    engine: str
    verb: str
    pid: int | None
    since: float  # monotonic
    left: bool = False


def action_progress(
    p: PendingAction, e: EngineSnapshot | None, now: float
) -> tuple[PendingAction | None, tuple[str, str] | None]:
    """The pending action after one fleet update, and a notification (message, severity) when it is done,
    failed or overdue (the pending action is then None). A restart counts as done only once the engine
    was seen to leave its old process (a new pid, or any state other than ready) and is ready again."""
    where = f"{p.host}/{p.engine}"
    if e is None:
        if now - p.since > FOLLOW_TIMEOUT_S:
            return None, (f"{p.verb} {where}: not seen since the {p.verb} was accepted", "warning")
        return p, None
    goal = GOAL_STATE.get(p.verb, "ready")
    left = p.left or (e.pid is not None and p.pid is not None and e.pid != p.pid) or e.state != goal
    p = replace(p, left=left)
    if e.state in GAVE_UP_STATES:
        reason = next((ev.reason for ev in reversed(e.events) if ev.reason), None)
        return None, (f"{p.verb} {where}: FAILED" + (f": {reason}" if reason else ""), "error")
    if e.state == goal and (left or p.verb != "restart"):
        pid = f" (pid {e.pid})" if e.pid is not None and goal == "ready" else ""
        done = "ready again" if p.verb == "restart" else e.state
        return None, (f"{p.verb} {where}: {done}{pid}", "information")
    if now - p.since > FOLLOW_TIMEOUT_S:
        return None, (
            f"{p.verb} {where}: still {e.state} {FOLLOW_TIMEOUT_S / 60:.0f} min after it was accepted",
            "warning",
        )
    return p, None
