"""Tones by salience: critical is the most salient look in a table (bold, reversed: a solid error-coloured
block no other tone uses); SIMULATED has its own neutral look, never the warning colour."""

from __future__ import annotations

from textual.app import App, ComposeResult

from widgets import Cell, KeyedTable
from widgets.tone import SALIENT_RULES, STYLED_TONES, TONE_RULES


class Tones(App[None]):
    def compose(self) -> ComposeResult:
        yield KeyedTable()

    def on_mount(self) -> None:
        table = self.query_one(KeyedTable)
        table.set_columns([("t", "TONE")])
        table.sync({tone: [Cell(tone, tone)] for tone in STYLED_TONES})  # type: ignore[arg-type]


async def test_critical_is_the_only_reversed_bold_tone_and_simulated_is_not_warning() -> None:
    app = Tones()
    async with app.run_test(size=(40, 20)) as pilot:
        await pilot.pause()
        table = app.query_one(KeyedTable)
        styles = {tone: table.tone_style(tone) for tone in STYLED_TONES}
        crit = styles["crit"]
        assert crit.reverse and crit.bold
        assert [t for t, s in styles.items() if s.reverse] == ["crit"]  # nothing else looks like it
        assert styles["simulated"].color != styles["warn"].color
        assert styles["simulated"].color != styles["crit"].color and not styles["simulated"].reverse
        assert styles["warn"].color != crit.color and not styles["warn"].bold


def test_bars_keep_the_plain_rule() -> None:
    """Reversing a block glyph would empty it: the salient rule is an override for text widgets only."""
    assert "reverse" not in TONE_RULES["crit"] and "reverse" in SALIENT_RULES["crit"]
    assert "warning" not in TONE_RULES["simulated"] and "accent" not in TONE_RULES["simulated"]
