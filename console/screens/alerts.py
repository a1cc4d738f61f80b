"""Alerts: every active and recently cleared alert in the fleet, root cause first, newest fault first.

Alerts of one engine that describe one fault are grouped, the cause leading and its consequences indented
under it; a flapping alert is one row with its count (console.views.alerts).

Enter jumps to the alert's engine (or its host row); ``a`` acknowledges the highlighted alert (an
acknowledged alert stays listed, dimmed; a new occurrence, with a new ``since``, is not acknowledged)."""

from __future__ import annotations

from typing import Any, ClassVar

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Footer

from console.messages import AcknowledgeRequested, EngineChosen, HostChosen
from console.screens import FleetStateScreen, ToneLine
from console.state import FleetAlert, FleetState
from console.views import AlertEntry, alert_detail, alert_entries, entry_cells
from widgets.keyed_table import KeyedTable

ALERT_COLUMNS = (
    ("since", "SINCE"),
    ("severity", "SEVERITY"),
    ("code", "CODE"),
    ("where", "WHERE"),
    ("status", "STATUS"),
    ("summary", "SUMMARY"),
)
ALERT_PRIORITY = {"since": 2, "severity": 1}
"""A narrow terminal drops SINCE, then SEVERITY (the code's colour says it); code, where, status and the
summary stay (the line under the table repeats the whole summary)."""


class AlertsScreen(FleetStateScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "acknowledge", "Acknowledge", id="alerts.acknowledge"),
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._by_key: dict[str, FleetAlert] = {}
        self._entries: dict[str, AlertEntry] = {}

    def compose(self) -> ComposeResult:
        yield ToneLine(id="alerts-title")
        yield KeyedTable(id="alerts-table", fixed_columns=1)
        yield ToneLine(id="alert-detail")
        yield Footer()

    @property
    def table(self) -> KeyedTable:
        return self.query_one("#alerts-table", KeyedTable)

    def on_mount(self) -> None:
        self.table.set_columns(ALERT_COLUMNS, priorities=ALERT_PRIORITY)
        self.watch_fleet()
        self.table.focus()

    def redraw(self, state: FleetState) -> None:
        entries = alert_entries(state)
        self._entries = {e.key: e for e in entries}
        self._by_key = {e.key: e.alert for e in entries}
        self.table.sync({e.key: entry_cells(state, e) for e in entries})
        active = len(state.alerts)
        self.query_one("#alerts-title", ToneLine).set_parts(
            [
                (
                    f"ALERTS  {active} active · {len(state.recent)} cleared in the last 15 min",
                    "info" if active else "ok",
                )
            ]
        )
        self._detail()

    def _detail(self) -> None:
        alert = self.highlighted
        key = self.table.cursor_key
        entry = self._entries.get(key) if key is not None else None
        self.query_one("#alert-detail", ToneLine).set_parts(
            alert_detail(alert, entry) if alert else [("no alerts", "ok")]
        )

    @property
    def highlighted(self) -> FleetAlert | None:
        key = self.table.cursor_key
        return self._by_key.get(key) if key is not None else None

    def on_keyed_table_row_highlighted(self, _: KeyedTable.RowHighlighted) -> None:
        self._detail()
        self.refresh_bindings()

    def on_keyed_table_row_chosen(self, message: KeyedTable.RowChosen) -> None:
        alert = self._by_key.get(message.key)
        if alert is None:
            return
        if alert.engine is not None:
            self.post_message(EngineChosen(alert.host, alert.engine))
        else:
            self.post_message(HostChosen(alert.host))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "acknowledge":
            alert = self.highlighted
            if alert is None or not alert.active:
                return False  # nothing to acknowledge on this row: not offered in the footer
            return None if self.console.fleet.is_acknowledged(alert) else True  # greyed once done
        return True

    def on_key(self, event: events.Key) -> None:
        """The acknowledge key on a row with nothing to acknowledge says so instead of doing nothing."""
        if not any(b.action == "acknowledge" for b in self._bindings.key_to_bindings.get(event.key, ())):
            return
        if self.check_action("acknowledge", ()) is False:
            event.stop()
            event.prevent_default()
            alert = self.highlighted
            what = (
                "no alert selected" if alert is None else f"{alert.alert.code} on {alert.where} has cleared"
            )
            self.app.notify(f"acknowledge: {what}; only active alerts are acknowledged", severity="warning")

    def action_acknowledge(self) -> None:
        alert = self.highlighted
        if alert is not None and alert.active:
            self.post_message(AcknowledgeRequested(alert))
