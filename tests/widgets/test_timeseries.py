"""TimeSeries: gaps, windows, empty data, the target line, theme colours."""

from __future__ import annotations

import math

from textual.app import App, ComposeResult
from textual.color import Color

from widgets import Series, TimeSeries
from widgets.timeseries import split_runs, time_ticks


class PlotApp(App[None]):
    CSS = "TimeSeries { height: 14; }"

    def compose(self) -> ComposeResult:
        yield TimeSeries("TTFT p95", y_label="s", window_s=600)


def test_split_runs_breaks_at_gaps_and_drops_points_outside_the_window() -> None:
    points = ((-700, 1.0), (-30, 2.0), (-20, None), (-10, 3.0), (-5, math.nan), (-1, 4.0), (5, 9.0))
    assert split_runs(points, 600) == [[(-30, 2.0)], [(-10, 3.0)], [(-1, 4.0)]]
    assert split_runs(((-2, 1.0), (-3, 0.0)), 600) == [[(-3, 0.0), (-2, 1.0)]]  # sorted by x; 0 is data
    assert split_runs(((-1, None),), 600) == []


def test_time_ticks_label_the_past_relative_to_now() -> None:
    assert time_ticks(900)[1] == ["-15m", "-10m", "-5m", "now"]
    ticks, labels = time_ticks(60)
    assert ticks == [-60, -50, -40, -30, -20, -10, 0]
    assert labels == ["-1m", "-50s", "-40s", "-30s", "-20s", "-10s", "now"]
    assert len(time_ticks(86400)[0]) <= 7


async def test_empty_and_all_gap_series_show_the_note(text_of) -> None:
    app = PlotApp()
    async with app.run_test(size=(70, 16)) as pilot:
        plot = app.query_one(TimeSeries)
        await pilot.pause()
        assert "no data" in text_of(plot)
        plot.series = (Series("p95", ((-5.0, None), (-1.0, None))),)
        plot.note = "no data yet"
        await pilot.pause()
        assert not plot.has_data() and "TTFT p95 · no data yet" in text_of(plot)
        plot.series = (Series("old", ((-5000.0, 1.0),)),)  # only outside the window
        await pilot.pause()
        assert "no data yet" in text_of(plot)


async def test_partial_data_with_gaps_and_a_target_line(text_of) -> None:
    app = PlotApp()
    async with app.run_test(size=(70, 16)) as pilot:
        plot = app.query_one(TimeSeries)
        plot.series = (
            Series("p95", ((-300.0, 0.1), (-200.0, None), (-100.0, 0.3), (0.0, 0.25))),
            Series("p50", ((-50.0, 0.05),), color="success"),
        )
        plot.target = 0.2
        plot.note = "STALE 12s"
        await pilot.pause()
        text = text_of(plot)
        assert "target 0.2" in text and "p95" in text and "p50" in text
        assert "TTFT p95 · STALE 12s" in text
        assert any(line.count("-") > 40 for line in text.splitlines())  # the dashed target line
        assert "now" in text and "-10m" in text


async def test_flat_single_point_and_tiny_sizes_do_not_crash(text_of) -> None:
    app = PlotApp()
    async with app.run_test(size=(70, 16)) as pilot:
        plot = app.query_one(TimeSeries)
        plot.series = (Series("flat", ((-10.0, 0.0), (-5.0, 0.0))),)
        plot.y_min = 0.0
        await pilot.pause()
        assert "flat" in text_of(plot)
        plot.series = (Series("one", ((-1.0, 5.0),)),)
        await pilot.pause()
        plot.styles.height = 3
        await pilot.pause()
        small = text_of(plot)
        assert "TTFT p95" in small and "no data" not in small  # too small for axes: just the title


async def test_colours_come_from_the_theme() -> None:
    app = PlotApp()
    async with app.run_test() as pilot:
        plot = app.query_one(TimeSeries)
        success = Color.parse(app.theme_variables["success"]).rgb
        assert plot.color_of("success", 0) == success == plot.color_of("$success", 3)
        assert plot.color_of("#102030", 0) == (16, 32, 48)
        first, second = plot.color_of(None, 0), plot.color_of(None, 1)
        assert first == Color.parse(app.theme_variables["primary"]).rgb and first != second
        assert plot.color_of("not-a-colour", 1) == second  # unknown names fall back to the palette
        app.theme = "nord"
        await pilot.pause()
        assert plot.color_of(None, 0) == Color.parse(app.theme_variables["primary"]).rgb != first
