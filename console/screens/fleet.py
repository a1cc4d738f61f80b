"""The fleet screen: every host and engine in one keyed table, counts on top, a status line below."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.reactive import reactive
from textual.widgets import Footer, Input

from console.messages import EngineChosen
from console.screens import ENGINE_ACTION_BINDINGS, EngineActions, FleetStateScreen, ToneLine
from console.state import FleetState
from console.views import (
    COLUMN_PRIORITY,
    FLEET_COLUMNS,
    RIGHT_COLUMNS,
    SORTABLE,
    fleet_table,
    header_counts,
    host_status_line,
    split_key,
)
from widgets.keyed_table import KeyedTable


class FleetScreen(EngineActions, FleetStateScreen):
    """Enter opens an engine; ``/`` filters (``state:hung alert:KV alert:any host:gpu01 kind:vllm
    -state:ready``); ``o`` cycles the sort column, ``O`` reverses it. A narrow terminal drops the
    low-priority columns first (COLUMN_PRIORITY; the status line names them); the name column stays in
    place while the rest scroll sideways."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "filter", "Filter", id="fleet.filter"),
        Binding("o", "sort", "Sort", id="fleet.sort"),
        Binding("O", "sort_reverse", "Reverse sort", show=False, id="fleet.sort_reverse"),
        Binding("escape", "clear_filter", "Clear filter", show=False, id="fleet.clear_filter"),
        *ENGINE_ACTION_BINDINGS,
    ]

    filter_text: reactive[str] = reactive("")
    sort: reactive[str] = reactive("name")
    reverse: reactive[bool] = reactive(False)

    def compose(self) -> ComposeResult:
        yield ToneLine(id="counts")
        yield KeyedTable(id="fleet", fixed_columns=1)
        yield ToneLine(id="status")
        yield Input(
            placeholder="filter: text  state:hung  alert:any  alert:KV_PRESSURE  host:gpu01  kind:vllm  -state:ready",
            id="filter",
        )
        yield Footer()

    @property
    def table(self) -> KeyedTable:
        return self.query_one("#fleet", KeyedTable)

    def on_mount(self) -> None:
        self.table.set_columns(FLEET_COLUMNS, right=RIGHT_COLUMNS, priorities=COLUMN_PRIORITY)
        self.query_one("#filter", Input).display = False
        self.watch_fleet()
        self.table.focus()

    # -- data in
    def redraw(self, state: FleetState | None = None) -> None:
        state = state or self.console.fleet
        view = fleet_table(state, state.now, self.filter_text, self.sort, self.reverse)
        self.table.sync(view.rows, view.order, groups=view.groups)
        self.query_one("#counts", ToneLine).set_parts([(c.display, c.tone) for c in header_counts(state)])
        self._status(state)

    def _status(self, state: FleetState) -> None:
        key = self.table.cursor_key
        parts = host_status_line(
            state, key, self.console.source.action_block(split_key(key)[0]) if key else None
        )
        arrow = "↑" if (self.sort in ("name", "model", "kind")) != self.reverse else "↓"
        parts.append((f"   sort {self.sort} {arrow}", "dim"))
        if self.filter_text:
            parts.append((f"   filter: {self.filter_text}", "info"))
        hidden = self.table.hidden_columns
        if hidden:
            labels = dict(FLEET_COLUMNS)
            parts.append((f"   narrow, hidden: {' '.join(labels[k].split()[0] for k in hidden)}", "dim"))
        self.query_one("#status", ToneLine).set_parts(parts)

    def watch_filter_text(self) -> None:
        if self.is_mounted:
            self.redraw()

    def watch_sort(self) -> None:
        if self.is_mounted:
            self.redraw()

    def watch_reverse(self) -> None:
        if self.is_mounted:
            self.redraw()

    # -- selection
    def selected_engine(self) -> tuple[str, str] | None:
        key = self.table.cursor_key
        if key is None:
            return None
        host, engine = split_key(key)
        return (host, engine) if engine is not None else None

    def on_keyed_table_row_highlighted(self, _: KeyedTable.RowHighlighted) -> None:
        self._status(self.console.fleet)
        self.refresh_bindings()

    def on_resize(self) -> None:
        if self.is_mounted:
            self.call_after_refresh(self._status, self.console.fleet)  # the hidden columns may have changed

    def on_keyed_table_row_chosen(self, message: KeyedTable.RowChosen) -> None:
        host, engine = split_key(message.key)
        if engine is not None:
            self.post_message(EngineChosen(host, engine))

    # -- actions
    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()

    def on_input_changed(self, message: Input.Changed) -> None:
        self.filter_text = message.value.strip()

    def on_input_submitted(self, message: Input.Submitted) -> None:
        box = self.query_one("#filter", Input)
        box.display = bool(message.value.strip())
        self.table.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.value = ""
        box.display = False
        self.filter_text = ""
        self.table.focus()

    def action_sort(self) -> None:
        self.sort = (
            SORTABLE[(SORTABLE.index(self.sort) + 1) % len(SORTABLE)]
            if self.sort in SORTABLE
            else SORTABLE[0]
        )

    def action_sort_reverse(self) -> None:
        self.reverse = not self.reverse

    def select(self, key: str) -> bool:
        """Move the cursor to a row key ("host" or "host/engine"); clears a filter that hides it."""
        if key not in self.table.keys and self.filter_text:
            self.action_clear_filter()
        return self.table.select_key(key)
