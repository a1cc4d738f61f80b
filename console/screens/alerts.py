"""Alerts: every active and recently cleared alert in the fleet, newest first.

Enter jumps to the alert's engine (or its host row); ``a`` acknowledges the highlighted alert (an
acknowledged alert stays listed, dimmed; a new occurrence, with a new ``since``, is not acknowledged)."""

from __future__ import annotations

from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Footer

from console.messages import AcknowledgeRequested, EngineChosen, HostChosen
from console.screens import FleetStateScreen, ToneLine
from console.state import FleetAlert, FleetState
from console.views import alert_detail, alert_rows
from widgets.keyed_table import KeyedTable

ALERT_COLUMNS = (
    ("since", "SINCE"),
    ("severity", "SEVERITY"),
    ("code", "CODE"),
    ("where", "WHERE"),
    ("status", "STATUS"),
    ("summary", "SUMMARY"),
)


class AlertsScreen(FleetStateScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "acknowledge", "Acknowledge", id="alerts.acknowledge"),
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._by_key: dict[str, FleetAlert] = {}

    def compose(self) -> ComposeResult:
        yield ToneLine(id="alerts-title")
        yield KeyedTable(id="alerts-table")
        yield ToneLine(id="alert-detail")
        yield Footer()

    @property
    def table(self) -> KeyedTable:
        return self.query_one("#alerts-table", KeyedTable)

    def on_mount(self) -> None:
        self.table.set_columns(ALERT_COLUMNS)
        self.watch_fleet()
        self.table.focus()

    def redraw(self, state: FleetState) -> None:
        rows, self._by_key = alert_rows(state)
        self.table.sync(rows)
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
        self.query_one("#alert-detail", ToneLine).set_parts(
            alert_detail(alert) if alert else [("no alerts", "ok")]
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
            return (
                None
                if alert is None or not alert.active or self.console.fleet.is_acknowledged(alert)
                else True
            )
        return True

    def action_acknowledge(self) -> None:
        alert = self.highlighted
        if alert is not None and alert.active:
            self.post_message(AcknowledgeRequested(alert))
