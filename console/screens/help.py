"""Help: how to move around (``NAVIGATION``: the keys the tables, lists and panes answer themselves), then
every key binding of the console, generated from the BINDINGS of the app and its screens (with the app's
keymap applied), never hand-copied."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

FILTER_HELP = (
    "Filter (/): words are ANDed; plain text matches host, engine, model, kind and state; "
    "state:hung  state:crash-loop  alert:KV_PRESSURE  alert:any  host:gpu0*  kind:vllm  model:llama; "
    "prefix - or ! negates (-state:ready)."
)

# Keys handled by the widgets themselves (tables, lists, inputs) or by the app's j/k/g/G/1/2/c bindings:
# listed here so that help says how to move, not only what the actions are.
NAVIGATION: tuple[Binding, ...] = (
    Binding("up,down,j,k", "", "Move the cursor one row (or scroll the focused pane)"),
    Binding("g,G,home,end", "", "First row / last row (top / bottom of a pane)"),
    Binding("pageup,pagedown", "", "One page up / down"),
    Binding("left,right", "", "Scroll a wide table sideways"),
    Binding("enter", "", "Open the highlighted row: an engine's detail, or an alert's engine or host"),
    Binding("escape", "", "Back: close the detail, help or calculator; clear the filter; cancel a dialog"),
    Binding("tab,shift+tab", "", "Move the focus to the next / previous pane or field"),
    Binding("slash", "", "Filter the fleet table (see below)"),
    Binding("1,2,c", "", "Fleet, Alerts, Calculator: from anywhere, even from an engine's detail"),
    Binding("space", "", "Tick / untick the highlighted box (calculator)"),
)


def _bindings(bindings: Iterable[BindingType]) -> list[Binding]:
    out = []
    for b in bindings:
        if isinstance(b, Binding):
            out.append(b)
        elif isinstance(b, tuple):
            out.append(Binding(*b))
    return out


def binding_rows(
    app: App, sections: Sequence[tuple[str, Iterable[BindingType]]], keymap: dict[str, str]
) -> list[tuple[str, str, str, str]]:
    """(section, keys, description, binding id) for every binding, keys after the keymap."""
    rows = []
    for section, bindings in sections:
        for b in _bindings(bindings):
            keys = keymap.get(b.id, b.key) if b.id else b.key
            shown = ", ".join(app.get_key_display(Binding(k.strip(), b.action)) for k in keys.split(","))
            rows.append((section, shown, b.description or b.action, b.id or ""))
    return rows


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark", "dismiss", "Close", id="help.close"),
        # a modal screen hides the App's bindings: 1/2/c still go to their screen from here
        Binding("1", "app.go('fleet')", "Fleet", show=False),
        Binding("2", "app.go('alerts')", "Alerts", show=False),
        Binding("c", "app.go('calc')", "Calculator", show=False),
    ]

    def __init__(self, sections: Sequence[tuple[str, Iterable[BindingType]]], keymap: dict[str, str]) -> None:
        super().__init__()
        self.sections, self.keymap = sections, keymap

    def compose(self) -> ComposeResult:
        table = Table(title="llmconsole keys", expand=True, show_edge=False, header_style="bold")
        table.add_column("where")
        table.add_column("key")
        table.add_column("does")
        table.add_column("binding id (remap in a keymap)", style="dim")
        for row in self.rows():
            table.add_row(*row)
        with VerticalScroll(id="help-box"):
            yield Static(table, id="help-table")
            yield Static(Text(FILTER_HELP), id="help-filter")

    def rows(self) -> list[tuple[str, str, str, str]]:
        return binding_rows(self.app, self.sections, self.keymap)
