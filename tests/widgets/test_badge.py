"""StateBadge classes and text; state_tone for presenters."""

from __future__ import annotations

from textual.app import App, ComposeResult

from widgets import StateBadge, state_tone
from widgets.badge import STATE_TONES, state_class


class BadgeApp(App[None]):
    def compose(self) -> ComposeResult:
        yield StateBadge("ready")


def test_state_tone_covers_engine_and_host_states() -> None:
    engine = ["stopped", "starting", "ready", "degraded", "hung", "exited", "backoff", "failed", "stopping"]
    host = ["fresh", "stale", "unreachable", "unauthorized", "incompatible"]
    assert set(engine + host) == set(STATE_TONES)
    assert state_tone("ready") == "ok" and state_tone("HUNG") == "crit" and state_tone("stale") == "stale"
    assert state_tone("degraded") == "warn" and state_tone("incompatible") == "error"
    assert state_tone("quantum") == "dim" and state_tone(None) == "dim"
    assert state_class("Some State!") == "-some-state-" and state_class("") == "-unknown"


async def test_badge_swaps_its_state_class_and_text(text_of) -> None:
    app = BadgeApp()
    async with app.run_test(size=(20, 3)) as pilot:
        badge = app.query_one(StateBadge)
        await pilot.pause()
        assert badge.has_class("-ready") and text_of(badge) == " READY "
        ready_bg = badge.styles.background
        badge.state = "hung"
        await pilot.pause()
        assert badge.has_class("-hung") and not badge.has_class("-ready")
        assert text_of(badge) == " HUNG " and badge.styles.background != ready_bg
        badge.state = "[b]odd[/b]"  # never parsed as markup
        await pilot.pause()
        assert text_of(badge) == " [B]ODD[/B] " and not badge.has_class("-hung")
