"""TimeSeries: a small line chart of recent history (textual-plotext), fed whole series at a time.

Round y ticks (1, 2, 5 × 10^k steps), an optional ceiling (``y_max``: a percentage never reads 104.7),
and "collecting…" in the title while the data covers less than the window."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
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


def split_runs(
    points: Sequence[tuple[float, float | None]], window_s: float
) -> list[list[tuple[float, float]]]:
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


def nice_step(span: float, count: int) -> float:
    """The smallest round step (1, 2, 2.5 or 5 × 10^k) giving at most ``count`` + 1 intervals over ``span``."""
    raw = max(span, 1e-12) / (max(1, count) + 1)
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1.0, 2.0, 2.5, 5.0, 10.0) if m * power >= raw * (1 - 1e-9))


def nice_ticks(low: float, high: float, count: int = 4, ceiling: float | None = None) -> list[float]:
    """Round tick values from ``low`` up to the first tick at or above ``high`` (at most ``ceiling``):
    ``nice_ticks(0, 20.5)`` → [0, 5, 10, 15, 20, 25]; never values like 20.5 or 4027.8."""
    if ceiling is not None:
        high = min(high, ceiling)
    if high <= low:
        high = low + (abs(low) or 1.0)
    step = nice_step(high - low, count)
    start = math.floor(low / step + 1e-9) * step
    ticks = [start]
    while ticks[-1] < high - step * 1e-9:
        ticks.append(start + len(ticks) * step)
    ticks = [round(t, 12) for t in ticks]
    if ceiling is not None and ticks[-1] > ceiling:
        ticks = [t for t in ticks if t < ceiling] + [ceiling]
    return ticks


def tick_label(value: float, step: float) -> str:
    """A tick value with just the decimals its step needs: 0, 0.5, 1.5, 20, 4k, 2.5k, 1.2M."""
    a = abs(value)
    for size, suffix in ((1e6, "M"), (1e3, "k")):
        if a >= size and step >= size / 10:
            return tick_label(value / size, step / size) + suffix
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) if step > 0 else 0
    if decimals and not math.isclose(round(step, decimals), step, rel_tol=1e-6):
        decimals += 1  # 2.5, 0.25
    text = f"{value:.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if float(text) == 0 else text


def covered_s(series: Sequence[Series], window_s: float) -> float:
    """How far back the earliest point inside the window goes (0 without points)."""
    xs = [x for s in series for x, _ in s.points if -window_s <= x <= 0]
    return -min(xs) if xs else 0.0


def span_text(seconds: float) -> str:
    """A span for the "collecting…" note: 45s, 3m, 1h."""
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


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
    y_max: reactive[float | None] = reactive(None)
    """A ceiling for the axis (100 for a percentage): ticks and range never go above it."""

    def __init__(
        self,
        title: str = "",
        *,
        y_label: str = "",
        window_s: float = 900.0,
        y_min: float | None = None,
        y_max: float | None = None,
        y_format: Callable[[float], str] | None = None,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.set_reactive(TimeSeries.title, title)
        self.set_reactive(TimeSeries.y_label, y_label)
        self.set_reactive(TimeSeries.window_s, float(window_s))
        self.set_reactive(TimeSeries.y_min, y_min)
        self.set_reactive(TimeSeries.y_max, y_max)
        self.y_format = y_format
        """Formats tick and target values (e.g. a duration rule); None: round numbers ("0.5", "4k")."""

    def collecting(self) -> bool:
        """Whether the data covers less than the window (the console started, or the history is short)."""
        window = max(float(self.window_s), 1.0)
        covered = covered_s(self.series, window)
        return self.has_data() and covered < window - max(window * 0.02, 2.0)

    def full_title(self) -> str:
        """The title with the note and, while the window is not filled, "collecting… 3m of 15m"."""
        parts = [self.title, self.note or ""]
        if self.collecting():
            window = max(float(self.window_s), 1.0)
            parts.append(f"collecting… {span_text(covered_s(self.series, window))} of {span_text(window)}")
        return " · ".join(part for part in parts if part)

    def format_value(self, value: float, step: float | None = None) -> str:
        """A y value as the axis shows it."""
        if self.y_format is not None:
            return self.y_format(value)
        return tick_label(value, step) if step else _fmt(value)

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
            label = f"target {self.format_value(self.target)}"
            plt.plot([-window, 0.0], [self.target] * 2, marker="-", color=color, label=label)
        ticks = self.y_ticks(ys)
        step = ticks[1] - ticks[0] if len(ticks) > 1 else 0.0
        plt.ylim(ticks[0], ticks[-1])
        plt.yticks(ticks, [self.format_value(t, step) for t in ticks])
        plt.xlim(-window, 0.0)
        plt.xticks(*time_ticks(window))
        plt.title(self.full_title())
        if self.y_label:
            plt.ylabel(self.y_label)

    def y_ticks(self, ys: list[float]) -> list[float]:
        """Round ticks covering ``ys`` (from ``y_min`` when set, capped at ``y_max``), as many as fit."""
        low = min(ys) if self.y_min is None else float(self.y_min)
        count = max(2, min(5, (self.size.height - 4) // 2))
        return nice_ticks(low, max(ys), count, self.y_max)

    def _placeholder(self, has_data: bool) -> RenderResult:
        """Title and note (or "no data"), centred: no data, or too small for axes."""
        note = self.note or ("" if has_data else "no data")
        if has_data and self.collecting():
            note = " · ".join(x for x in (note, "collecting…") if x)
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
