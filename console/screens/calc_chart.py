"""The calculator's cost chart: monthly cost (USD) against tokens/day, from a ``console.calc.present.Chart``.

Self-hosting steps up one deployment per capacity, each API is a line, the break-even crossings and the
capacity limit are marked. Not a pure widget (it reads ``Chart`` and ``legend_labels``), hence here.
"""

from __future__ import annotations

from typing import ClassVar

from rich.align import Align
from rich.text import Text
from textual.app import RenderResult
from textual.reactive import reactive
from textual_plotext import PlotextPlot

from console.calc.present import Chart, legend_labels
from widgets.timeseries import nice_ticks, tick_label
from widgets.tone import component_style


class CostChart(PlotextPlot):
    """Monthly cost (USD) against tokens/day (millions): self-hosting, each API, the break-even crossings
    and the capacity limit. The plot is declared in ``plot()`` on ``self.plt`` only."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "cost-chart--self-host",
        "cost-chart--capacity",
        "cost-chart--crossing",
        "cost-chart--note",
        "cost-chart--volume",
        *(f"cost-chart--api-{i}" for i in range(1, 5)),
    }
    DEFAULT_CSS = """
    CostChart { height: 16; }
    CostChart > .cost-chart--self-host { color: $primary; }
    CostChart > .cost-chart--capacity { color: $error; }
    CostChart > .cost-chart--crossing { color: $foreground; }
    CostChart > .cost-chart--note { color: $text-muted; text-style: italic; }
    CostChart > .cost-chart--volume { color: $text-muted; }
    CostChart > .cost-chart--api-1 { color: $accent; }
    CostChart > .cost-chart--api-2 { color: $success; }
    CostChart > .cost-chart--api-3 { color: $secondary; }
    CostChart > .cost-chart--api-4 { color: $text-warning; }
    """

    chart: reactive[Chart | None] = reactive(None)
    _drawn: tuple[object, RenderResult] | None = None  # the last plot, and what it was drawn for

    def render(self) -> RenderResult:
        if self.chart is None or self.size.width < 20 or self.size.height < 6:
            note = "no chart: fix the form" if self.chart is None else "too small for the chart"
            return Align.center(
                Text(note, style=component_style(self, "cost-chart--note")), vertical="middle"
            )
        # a repaint of the same chart at the same size and colours (a screen switch, a scroll) reuses the plot
        key = (self.chart, self.size, self.app.theme, self.background_colors)
        if self._drawn is None or self._drawn[0] != key:
            self.plt.clear_figure()
            self.plot()
            self._drawn = (key, super().render())
        return self._drawn[1]

    def plot(self) -> None:
        c, plt = self.chart, self.plt
        assert c is not None
        m = 1e6
        # round ticks (0, 2k, 4k …; 0, 25, 50 …) with the axes ending on the last one
        x_max = c.x_max / m  # the lines end there: the x axis too, its ticks the round ones inside it
        x_ticks = [t for t in nice_ticks(0.0, x_max, 5) if t <= x_max * (1 + 1e-9)]
        y_ticks = nice_ticks(0.0, c.y_max, 4)
        y_max = y_ticks[-1]
        labels = legend_labels([name for name, _ in c.apis])
        for i, ((_, pts), label) in enumerate(zip(c.apis, labels, strict=True)):
            xs, ys = zip(*pts, strict=True)
            plt.plot(
                [x / m for x in xs],
                list(ys),
                color=self._rgb(f"api-{i % 4 + 1}"),
                label=label,
                marker="braille",
            )
        if c.capacity is not None and c.capacity <= c.x_max:
            capacity = [c.capacity / m] * 2
            plt.plot(
                capacity, [0, y_max], color=self._rgb("capacity"), label=c.capacity_label, marker="braille"
            )
        if c.self_host:  # drawn last: on top of the API lines it crosses
            xs, ys = zip(*c.self_host, strict=True)
            plt.plot(
                [x / m for x in xs],
                list(ys),
                color=self._rgb("self-host"),
                label="self-host",
                marker="braille",
            )
        elif c.unservable_cost is not None:  # what the GPUs cost although they cannot serve the model
            cost = [c.unservable_cost] * 2
            plt.plot(
                [0, c.x_max / m],
                cost,
                color=self._rgb("capacity"),
                label="GPU cost (cannot serve)",
                marker="-",
            )
        if c.crossings:  # one legend entry: each point sits on its API's line, in that line's colour key
            xs = [x / m for _, x, _ in c.crossings]
            plt.scatter(
                xs,
                [y for _, _, y in c.crossings],
                color=self._rgb("crossing"),
                marker="●",
                label="break-even",
            )
        for ticks, set_ticks in ((x_ticks, plt.xticks), (y_ticks, plt.yticks)):
            step = ticks[1] - ticks[0] if len(ticks) > 1 else abs(ticks[0]) or 1.0
            set_ticks(ticks, [tick_label(t, step) for t in ticks])
        plt.xlim(0, x_max)
        plt.ylim(0, y_max)
        plt.xlabel("million tokens/day")
        plt.title("monthly cost, USD" + (f" · {c.note}" if c.note else ""))
        if c.volume is not None and c.volume <= c.x_max:
            plt.plot(
                [c.volume / m] * 2,
                [0, y_max],
                color=self._rgb("volume"),
                label="your volume",
                marker="braille",
            )

    def _rgb(self, part: str) -> tuple[int, int, int]:
        _, background = self.background_colors
        return (background + self.get_component_styles(f"cost-chart--{part}").color).rgb
