"""TimeSeries axes: round ticks, a capped axis, formatted values, "collecting…" until the window is
filled; SparkRows (the compact layout's graphs): binning, gaps, the target's colour, the value text."""

from __future__ import annotations

import math
import re

from textual.app import App, ComposeResult

from widgets import Series, TimeSeries
from widgets.spark_rows import BLOCKS, SparkRow, SparkRows, bin_max, spark
from widgets.timeseries import covered_s, nice_ticks, tick_label


def test_ticks_are_round_values_covering_the_data() -> None:
    for low, high in ((0, 20.5), (0, 4027.8), (3, 17.1), (0, 0.39), (0, 2.35), (0, 0.0123)):
        ticks = nice_ticks(low, high, 4)
        step = ticks[1] - ticks[0]
        assert ticks[0] <= low and ticks[-1] >= high, (low, high, ticks)
        mantissa = step / 10 ** math.floor(math.log10(step))
        assert round(mantissa, 6) in (1, 2, 2.5, 5), (low, high, step)
        assert len(ticks) <= 6
    assert [tick_label(t, 1000) for t in nice_ticks(0, 4027.8, 4)] == ["0", "1k", "2k", "3k", "4k", "5k"]
    assert [tick_label(t, 0.5) for t in nice_ticks(0, 2.35, 4)] == ["0", "0.5", "1", "1.5", "2", "2.5"]
    flat = nice_ticks(0, 0)  # flat zero data still has an axis
    assert flat[0] == 0 and flat[-1] == 1 and len(flat) >= 2


def test_a_ceiling_caps_the_axis() -> None:
    ticks = nice_ticks(0, 104.7, 4, ceiling=100)
    assert ticks[-1] == 100 and max(ticks) == 100
    assert nice_ticks(0, 97, 3, ceiling=100)[-1] == 100


def test_covered_span_counts_points_inside_the_window_only() -> None:
    s = (Series("a", ((-5000.0, 1.0), (-120.0, 1.0), (-1.0, None))), Series("b", ((-60.0, 2.0),)))
    assert covered_s(s, 900) == 120
    assert covered_s((), 900) == 0


class AxesApp(App[None]):
    CSS = "TimeSeries { height: 16; }"

    def compose(self) -> ComposeResult:
        yield TimeSeries("KV", y_label="%", window_s=900, y_min=0.0, y_max=100.0, id="kv")
        yield TimeSeries("TTFT", window_s=900, y_min=0.0, y_format=lambda v: f"{v * 1000:.0f}ms", id="ttft")


def _axis_labels(text: str) -> list[str]:
    return [m.group(1) for line in text.splitlines() if (m := re.match(r"\s*(\S+)┤", line))]


async def test_percent_axis_stops_at_100_and_tick_labels_are_round(text_of) -> None:
    app = AxesApp()
    async with app.run_test(size=(80, 40)) as pilot:
        kv = app.query_one("#kv", TimeSeries)
        kv.series = (Series("usage", tuple((-900.0 + i * 10, 96.0 + (i % 5)) for i in range(91))),)
        kv.target = 95.0
        await pilot.pause()
        labels = _axis_labels(text_of(kv))
        assert max(float(x) for x in labels) == 100  # data up to 100 with a 5 % margin: capped at 100
        assert all(re.fullmatch(r"\d+", x) for x in labels), labels  # no 104.7, no 20.5
        assert "collecting" not in text_of(kv)  # the full 15 minutes are there


async def test_formatted_values_and_collecting_until_the_window_is_filled(text_of) -> None:
    app = AxesApp()
    async with app.run_test(size=(80, 40)) as pilot:
        ttft = app.query_one("#ttft", TimeSeries)
        ttft.series = (Series("p95", tuple((-180.0 + i, 0.12 + 0.001 * (i % 7)) for i in range(181))),)
        ttft.target = 0.2
        await pilot.pause()
        text = text_of(ttft)
        assert ttft.collecting() and "collecting… 3m of 15m" in text
        assert "target 200ms" in text
        assert "0ms" in _axis_labels(text) and "200ms" in _axis_labels(text)
        ttft.series = (Series("p95", tuple((-900.0 + i * 5, 0.1) for i in range(181))),)
        await pilot.pause()
        assert not ttft.collecting() and "collecting" not in text_of(ttft)
        ttft.styles.height = 3  # too small for axes: the placeholder still says it
        ttft.series = (Series("p95", ((-30.0, 0.1), (-1.0, 0.1))),)
        await pilot.pause()
        assert "collecting…" in text_of(ttft)


def test_spark_bins_keep_the_highest_value_and_leave_gaps_blank() -> None:
    points = ((-100.0, 1.0), (-95.0, 3.0), (-50.0, None), (-10.0, 2.0), (5.0, 99.0), (-500.0, 99.0))
    assert bin_max(points, 100, 4) == [3.0, None, None, 2.0]
    assert spark([0.0, None, 5.0, 10.0], 0.0, 10.0) == BLOCKS[0] + " " + BLOCKS[4] + BLOCKS[-1]
    assert spark([200.0], 0.0, 100.0) == BLOCKS[-1]  # above the ceiling: full, never out of range


class SparkApp(App[None]):
    def compose(self) -> ComposeResult:
        yield SparkRows()


async def test_spark_rows_show_label_bars_value_and_target(text_of) -> None:
    app = SparkApp()
    async with app.run_test(size=(60, 6)) as pilot:
        sparks = app.query_one(SparkRows)
        sparks.window_s = 100
        over = tuple((-100.0 + i, 0.1 if i < 50 else 0.5) for i in range(101))
        sparks.rows = (
            SparkRow("TTFT p95", over, "500ms", "warn", 0.2, "target 200ms"),
            SparkRow("waiting", ((-10.0, 3.0),), "3"),
            SparkRow("KV", (), "—", "missing"),
        )
        await pilot.pause()
        lines = text_of(sparks).splitlines()
        assert len(lines) == 3 and sparks.size.height == 3
        assert lines[0].startswith("TTFT p95") and "500ms target 200ms" in lines[0]
        assert lines[1].startswith("waiting") and lines[1].rstrip().endswith("3")
        bars = lines[1][10:].split()[0]
        assert set(bars) <= set(BLOCKS)  # only the last bins hold data; the rest is blank
        assert lines[2].rstrip().endswith("—")
        # the cells above the target use the "over" style, the others the bar style
        strip = sparks.render_line(0)
        over_style = sparks.get_component_rich_style("spark-rows--over").color
        coloured = [seg.text for seg in strip if seg.style is not None and seg.style.color == over_style]
        assert coloured and all(set(t) <= set(BLOCKS) for t in coloured)
