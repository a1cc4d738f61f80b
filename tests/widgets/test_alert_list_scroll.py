"""AlertList in a short panel: focusable, the keys move through every alert and scroll it into view;
a flapping alert says how often it was raised."""

from __future__ import annotations

from textual.app import App, ComposeResult

from widgets import AlertItem, AlertList

ALERTS = tuple(
    AlertItem(
        f"CODE_{i}", "critical" if i == 0 else "warning", f"summary {i}", "12:00:00", f"h/e{i}", {"n": i}
    )
    for i in range(4)
)
FLAPPING = AlertItem("QUEUE_GROWING", "warning", "queue grows", "12:01:00", "h/e", {}, raised_count=5)


class ShortApp(App[None]):
    CSS = "AlertList { height: auto; max-height: 8; }"

    def compose(self) -> ComposeResult:
        yield AlertList(ALERTS)


async def test_every_alert_is_reachable_in_a_short_panel(text_of) -> None:
    app = ShortApp()
    async with app.run_test(size=(60, 20)) as pilot:
        alerts = app.query_one(AlertList)
        await pilot.pause()
        assert alerts.outer_size.height == 8 and alerts.max_scroll_y > 0  # 4 alerts do not fit: it scrolls
        assert alerts.can_focus
        alerts.focus()
        await pilot.pause()
        assert alerts.has_focus and alerts.highlighted == 0
        await pilot.press("down", "down", "down")
        await pilot.pause()
        assert alerts.highlighted == 3 and alerts.scroll_y > 0
        assert "CODE_3" in text_of(alerts)  # the last one is on screen now
        await pilot.press("home")
        await pilot.pause()
        assert alerts.highlighted == 0 and alerts.scroll_y == 0


async def test_a_flapping_alert_says_how_often_it_was_raised(text_of) -> None:
    app = ShortApp()
    async with app.run_test(size=(80, 20)) as pilot:
        alerts = app.query_one(AlertList)
        alerts.alerts = (FLAPPING, ALERTS[0])
        await pilot.pause()
        text = text_of(alerts)
        assert "QUEUE_GROWING" in text and "raised 5×" in text
        assert "CODE_0" in text and text.count("raised") == 1  # raised once: nothing added
