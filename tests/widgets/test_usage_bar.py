"""UsageBar: text, stacked cells, clamping and the over flag, unknown totals, tone colours."""

from __future__ import annotations

from textual.app import App, ComposeResult

from widgets import Segment, UsageBar
from widgets.usage_bar import FILL, FREE, UNKNOWN, segment_cells


class BarApp(App[None]):
    def compose(self) -> ComposeResult:
        yield UsageBar([Segment("used", 61.2)], 80.0, label="GPU0", unit="GiB")


def test_segment_cells_add_up_and_clamp() -> None:
    assert segment_cells([25.0, 25.0], 100.0, 10) == [2, 3]  # edges at round(2.5)=2 and 5
    assert sum(segment_cells([1.0, 1.0, 1.0], 3.0, 10)) == 10  # cumulative rounding never loses a cell
    assert segment_cells([60.0, 60.0], 100.0, 10) == [6, 4]  # over the total: clamped to the width
    assert segment_cells([-5.0, 50.0], 100.0, 10) == [0, 5]
    assert segment_cells([1.0], 0.0, 10) == [0]


async def test_text_and_bar_cells(text_of) -> None:
    app = BarApp()
    async with app.run_test(size=(40, 3)) as pilot:
        bar = app.query_one(UsageBar)
        await pilot.pause()
        line = text_of(bar)
        assert line.startswith("GPU0 ") and line.endswith(" 61.2/80.0 GiB")
        width = 40 - len("GPU0 ") - len(" 61.2/80.0 GiB")
        assert line.count(FILL) == round(61.2 / 80 * width) and line.count(FILL) + line.count(FREE) == width
        assert not bar.has_class("-over")
        bar.label_width = 10
        await pilot.pause()
        assert text_of(bar).startswith("GPU0       ")  # padded to 10 cells, then the gap


async def test_over_total_is_clamped_and_flagged(text_of) -> None:
    app = BarApp()
    async with app.run_test(size=(40, 3)) as pilot:
        bar = app.query_one(UsageBar)
        bar.segments = (Segment("weights", 50.0, "info"), Segment("kv", 40.0, "warn"))
        await pilot.pause()
        line = text_of(bar)
        assert "90.0/80.0 GiB OVER" in line and FREE not in line
        assert bar.over and bar.has_class("-over")
        over = next(seg for seg in bar.render_line(0) if "OVER" in seg.text)
        assert over.style.color == bar.get_component_rich_style("usage-bar--over").color and over.style.bold
        bar.total = 100.0
        await pilot.pause()
        assert not bar.has_class("-over") and "OVER" not in text_of(bar)


async def test_unknown_total_missing_data_and_percent(text_of) -> None:
    app = BarApp()
    async with app.run_test(size=(40, 3)) as pilot:
        bar = app.query_one(UsageBar)
        bar.total = None
        await pilot.pause()
        line = text_of(bar)
        assert "61.2 GiB / unknown" in line and FILL not in line and UNKNOWN in line
        bar.segments = ()
        await pilot.pause()
        empty = text_of(bar)
        assert empty.endswith("— GiB") and UNKNOWN in empty and FREE not in empty  # not "0 used"
        bar.set_reactive(UsageBar.unit, "")
        bar.segments, bar.total, bar.percent = (Segment("kv", 0.614, "ok"),), 1.0, True
        await pilot.pause()
        assert text_of(bar).endswith(" 61%")
        bar.show_text = False
        await pilot.pause()
        assert "61%" not in text_of(bar)


async def test_segment_tones_get_distinct_colours_and_a_legend(text_of) -> None:
    app = BarApp()
    async with app.run_test(size=(60, 4)) as pilot:
        bar = app.query_one(UsageBar)
        bar.segments = (
            Segment("weights", 20.0, "info"),
            Segment("kv", 20.0, "ok"),
            Segment("other", 20.0, "crit"),
        )
        bar.show_legend = True
        await pilot.pause()
        colours = {seg.style.color for seg in bar.render_line(0) if seg.text and set(seg.text) == {FILL}}
        assert len(colours) == 3
        assert bar.size.height == 2 and "weights 20.0" in text_of(bar).splitlines()[1]
