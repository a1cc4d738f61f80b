"""A confirmation before an engine action: names the host, the engine and the model; returns a bool."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

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
        self, verb: str, host: str, engine: str, model: str | None, kind: str | None = None, *, managed: bool = True
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
            what = WHAT_HAPPENS.get(self.verb, "") if self.managed else WATCHED_WHAT_HAPPENS.format(verb=self.verb)
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
