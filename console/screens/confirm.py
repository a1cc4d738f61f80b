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


class ConfirmScreen(ModalScreen[bool]):
    """``y`` / the action button confirms; ``n``, Escape or Cancel cancels (the default focus)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Confirm", id="confirm.yes"),
        Binding("n,escape", "answer(False)", "Cancel", id="confirm.no"),
    ]

    def __init__(self, verb: str, host: str, engine: str, model: str | None, kind: str | None = None) -> None:
        super().__init__()
        self.verb, self.host, self.engine, self.model, self.kind = verb, host, engine, model, kind

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box"):
            yield Static(f"{self.verb.capitalize()} engine {self.engine} on {self.host}?", id="confirm-title")
            yield Static(
                f"host    {self.host}\nengine  {self.engine}"
                + (f" ({self.kind})" if self.kind else "")
                + f"\nmodel   {self.model or 'unknown'}",
                id="confirm-target",
            )
            yield Static(WHAT_HAPPENS.get(self.verb, ""), id="confirm-what")
            with Horizontal(id="confirm-buttons"):
                yield Button(f"{self.verb.capitalize()} (y)", variant="error", id="confirm-yes")
                yield Button("Cancel (n)", variant="primary", id="confirm-no")

    def on_mount(self) -> None:
        self.query_one("#confirm-no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm-yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
