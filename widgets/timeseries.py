"""TimeSeries: a small line chart of recent history (textual-plotext), fed whole series at a time."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from rich.align import Align
from rich.text import Text
from textual.app import RenderResult
from textual.color import Color, ColorParseError
from textual.reactive import reactive
from textual_plotext import PlotextPlot

from .tone import component_style

RGB = tuple[int, int, int]
_PALETTE_SIZE = 6
_TICK_STEPS_S = (5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400)


@dataclass(frozen=True, slots=True)
class Series:
    """One line. ``points`` are (x, y): x in seconds relative to now (negative = the past, 0 = now);
    y None (or NaN) is a gap: the line breaks there. ``color``: a theme variable ("success",
    "$warning") or any Textual colour ("red", "#ff8800"); None picks the next palette colour."""

    name: str
    points: tuple[tuple[float, float | None], ...]
    color: str | None = None


def split_runs(points: Sequence[tuple[float, float | None]], window_s: float) -> list[list[tuple[float, float]]]:
    """The unbroken runs of ``points`` inside [-window_s, 0], in x order (gaps: None/NaN y)."""
    runs: list[list[tuple[float, float]]] = []
    current: list[tuple[float, float]] = []
    for x, y in sorted(points, key=lambda p: p[0]):
        if not -window_s <= x <= 0:
            continue
        if y is None or (isinstance(y, float) and math.isnan(y)):
            if current:
                runs.append(current)
            current = []
        else:
            current.append((x, float(y)))
    if current:
        runs.append(current)
    return runs


def time_ticks(window_s: float) -> tuple[list[float], list[str]]:
    """At most ~6 x ticks over [-window_s, 0], labelled "-15m", "-30s", ..., "now"."""
    step = next((s for s in _TICK_STEPS_S if window_s / s <= 6), _TICK_STEPS_S[-1])
    ticks = [-float(i * step) for i in range(int(window_s // step), -1, -1)]
    return ticks, [_ago(-t) for t in ticks]


def _ago(seconds: float) -> str:
    if seconds == 0:
        return "now"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"-{int(seconds // size)}{unit}"
    return f"-{int(seconds)}s"


def _fmt(value: float) -> str:
    return f"{value:.3g}"


class TimeSeries(PlotextPlot):
    """Line chart of ``series`` over the last ``window_s`` seconds, with an optional dashed ``target``.

    The plot is only declared in ``plot()`` on the widget's own ``self.plt``. Colours come from the
    theme through component classes: ``time-series--color-1`` … ``-6`` (the palette for series
    without a colour: $primary, $accent, $success, $text-secondary, $foreground, $text-warning),
    ``time-series--target`` ($error) and ``time-series--note`` (the text shown when there is no data).
    ``note`` ("STALE 12s", "SIMULATED") is appended to the title; with nothing to draw, the widget shows
    the title and the note (or "no data") instead of a plot.
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        *(f"time-series--color-{i}" for i in range(1, _PALETTE_SIZE + 1)),
        "time-series--target",
        "time-series--note",
    }
    DEFAULT_CSS = """
    TimeSeries { height: 1fr; min-height: 6; }
    TimeSeries > .time-series--color-1 { color: $primary; }
    TimeSeries > .time-series--color-2 { color: $accent; }
    TimeSeries > .time-series--color-3 { color: $success; }
    TimeSeries > .time-series--color-4 { color: $text-secondary; }
    TimeSeries > .time-series--color-5 { color: $foreground; }
    TimeSeries > .time-series--color-6 { color: $text-warning; }
    TimeSeries > .time-series--target { color: $error; }
    TimeSeries > .time-series--note { color: $text-muted; text-style: italic; }
    """

    series: reactive[tuple[Series, ...]] = reactive(())
    target: reactive[float | None] = reactive(None)
    title: reactive[str] = reactive("")
    y_label: reactive[str] = reactive("")
    window_s: reactive[float] = reactive(900.0)
    note: reactive[str | None] = reactive(None)
    y_min: reactive[float | None] = reactive(None)

    def __init__(
        self,
        title: str = "",
        *,
        y_label: str = "",
        window_s: float = 900.0,
        y_min: float | None = None,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.set_reactive(TimeSeries.title, title)
        self.set_reactive(TimeSeries.y_label, y_label)
        self.set_reactive(TimeSeries.window_s, float(window_s))
        self.set_reactive(TimeSeries.y_min, y_min)

    def has_data(self) -> bool:
        """Whether any series has a point inside the window."""
        return any(split_runs(s.points, self.window_s) for s in self.series)

    def render(self) -> RenderResult:
        has_data = self.has_data()
        if not has_data or self.size.width < 12 or self.size.height < 5:
            return self._placeholder(has_data)
        self.plt.clear_figure()
        self.plot()
        return super().render()

    def plot(self) -> None:
        """Declare the plot on ``self.plt`` from the reactives (no I/O, no global plotext)."""
        plt, window = self.plt, max(float(self.window_s), 1.0)
        ys: list[float] = []
        for index, series in enumerate(self.series):
            color = self.color_of(series.color, index)
            for run_no, run in enumerate(split_runs(series.points, window)):
                xs, values = zip(*run, strict=True)
                ys.extend(values)
                plt.plot(list(xs), list(values), color=color, label=series.name if run_no == 0 else None)
        if self.target is not None:
            ys.append(self.target)
            color = self._component_rgb("time-series--target")
            plt.plot([-window, 0.0], [self.target] * 2, marker="-", color=color, label=f"target {_fmt(self.target)}")
        plt.ylim(*self._y_range(ys))
        plt.xlim(-window, 0.0)
        plt.xticks(*time_ticks(window))
        plt.title(" · ".join(part for part in (self.title, self.note or "") if part))
        if self.y_label:
            plt.ylabel(self.y_label)

    def _y_range(self, ys: list[float]) -> tuple[float, float]:
        low = min(ys) if self.y_min is None else float(self.y_min)
        high = max(ys)
        if high <= low:
            high = low + (abs(low) * 0.1 or 1.0)
        return low, high + (high - low) * 0.05

    def _placeholder(self, has_data: bool) -> RenderResult:
        """Title and note (or "no data"), centred: no data, or too small for axes."""
        note = self.note or ("" if has_data else "no data")
        parts = [Text(self.title)] if self.title else []
        if note:
            parts.append(Text(note, style=component_style(self, "time-series--note")))
        return Align.center(Text(" · ").join(parts), vertical="middle")

    def _component_rgb(self, name: str) -> RGB:
        _, background = self.background_colors
        return (background + self.get_component_styles(name).color).rgb

    def color_of(self, color: str | None, index: int) -> RGB:
        """The RGB plotext gets for a series colour (theme variable or colour string) or palette slot."""
        if color:
            value = self.app.theme_variables.get(color.removeprefix("$"), color)
            try:
                return Color.parse(value).rgb
            except ColorParseError:
                pass
        return self._component_rgb(f"time-series--color-{index % _PALETTE_SIZE + 1}")
