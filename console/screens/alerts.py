"""Alerts: every active and recently cleared alert in the fleet, newest first.

Enter jumps to the alert's engine (or its host row); ``a`` acknowledges the highlighted alert (an
acknowledged alert stays listed, dimmed; a new occurrence, with a new ``since``, is not acknowledged)."""

from __future__ import annotations

from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Footer

from console.screens import ToneLine
from console.state import FleetAlert, FleetState
from console.views import alert_detail, alert_rows
from widgets.keyed_table import KeyedTable

ALERT_COLUMNS = (("since", "SINCE"), ("severity", "SEVERITY"), ("code", "CODE"), ("where", "WHERE"),
                 ("status", "STATUS"), ("summary", "SUMMARY"))  # fmt: skip


class AlertsScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "acknowledge", "Acknowledge", id="alerts.acknowledge"),
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._dirty = False
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
        self.watch(self.app, "fleet", self._on_fleet, init=True)
        self.table.focus()

    def _on_fleet(self, state: FleetState) -> None:
        if not self.is_current:
            self._dirty = True
            return
        self.redraw(state)

    def on_screen_resume(self) -> None:
        if self._dirty:
            self._dirty = False
            self.redraw(self.app.fleet)

    def redraw(self, state: FleetState) -> None:
        rows, self._by_key = alert_rows(state)
        self.table.sync(rows)
        active = len(state.alerts)
        self.query_one("#alerts-title", ToneLine).set_parts(
            [(f"ALERTS  {active} active · {len(state.recent)} cleared in the last 15 min", "info" if active else "ok")]
        )
        self._detail()

    def _detail(self) -> None:
        alert = self.highlighted
        self.query_one("#alert-detail", ToneLine).set_parts(alert_detail(alert) if alert else [("no alerts", "ok")])

    @property
    def highlighted(self) -> FleetAlert | None:
        key = self.table.cursor_key
        return self._by_key.get(key) if key is not None else None

    def on_keyed_table_row_highlighted(self, _: KeyedTable.RowHighlighted) -> None:
        self._detail()
        self.refresh_bindings()

    async def on_keyed_table_row_chosen(self, message: KeyedTable.RowChosen) -> None:
        alert = self._by_key.get(message.key)
        if alert is None:
            return
        if alert.engine is not None:
            await self.app.open_engine(alert.host, alert.engine)
        else:
            await self.app.show_fleet_row(alert.host)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "acknowledge":
            alert = self.highlighted
            return None if alert is None or not alert.active or self.app.fleet.is_acknowledged(alert) else True
        return True

    def action_acknowledge(self) -> None:
        alert = self.highlighted
        if alert is not None and alert.active:
            self.app.acknowledge(alert)
