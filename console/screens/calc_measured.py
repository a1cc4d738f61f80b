"""F7 on the calculator: the prompt for an ``llmconsole bench`` result to take the capacity from."""

from __future__ import annotations

import os
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from console.calc.errors import CalcError
from console.calc.measured import Measured, load_measured
from console.screens import ToneLine

UNLOAD = ""  # what the prompt answers for an empty path: back to the catalog estimate


class MeasuredPrompt(ModalScreen[Measured | str | None]):
    """F7: the path of an ``llmconsole bench`` result. Enter loads it (a bad file: one line here, the prompt
    stays), an empty path unloads it, Escape cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel", id="calc.measured.cancel")]
    DEFAULT_CSS = """
    MeasuredPrompt { align: center middle; }
    MeasuredPrompt #measured-box {
        width: 76; max-width: 100%; height: auto; padding: 0 1; border: round $primary; background: $panel;
    }
    MeasuredPrompt #measured-box Label { color: $text-muted; }
    MeasuredPrompt #measured-path { margin: 1 0 0 0; }
    """

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def compose(self) -> ComposeResult:
        with Vertical(id="measured-box"):
            yield Static("Capacity from an `llmconsole bench` result (JSON), not the catalog estimate")
            yield Input(self.path, placeholder="result.json", id="measured-path", compact=True)
            yield ToneLine(id="measured-error")
            yield Label("Enter: load · empty + Enter: unload · Esc: cancel")

    @on(Input.Submitted, "#measured-path")
    def _submitted(self, event: Input.Submitted) -> None:
        path = event.value.strip()
        if not path:
            self.dismiss(UNLOAD)
            return
        try:
            measured = load_measured(os.path.expanduser(path), "bench result")
        except CalcError as e:
            self.query_one("#measured-error", ToneLine).set_parts(
                [(f"✗ {' '.join(str(e).split())}", "error")]
            )
            return
        self.dismiss(measured)

    def action_cancel(self) -> None:
        self.dismiss(None)
