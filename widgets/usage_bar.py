"""UsageBar: a one-line stacked bar ("▇▇▇▇▇▇░░░░ 61.2/80.0 GiB") drawn by a pure Rich renderable."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

from rich.console import Console, ConsoleOptions, RenderResult
from rich.style import Style
from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from .tone import Tone, component_style, tone_class, tone_classes, tone_css

FILL, FREE, UNKNOWN = "▇", "░", "·"


@dataclass(frozen=True, slots=True)
class Segment:
    """A stacked part of the bar: ``value`` in the bar's unit (negative counts as 0)."""

    label: str
    value: float
    tone: Tone = "info"


def segment_cells(values: Sequence[float], total: float, width: int) -> list[int]:
    """Cells per segment: cumulative rounding, so the parts always add up to the rounded sum
    (clamped to ``width`` when the values exceed ``total``)."""
    cells, edge, cumulative = [], 0, 0.0
    for value in values:
        cumulative += max(0.0, value)
        end = min(width, round(cumulative / total * width)) if total > 0 else 0
        cells.append(end - edge)
        edge = end
    return cells


class UsageBarRenderable:
    """Pure renderable: ``label`` + bar of coloured ``parts`` (cells, style) + ``text``, on one line
    (plus an optional ``legend`` line)."""

    def __init__(
        self,
        label: Text,
        parts: Sequence[tuple[float, Style]],
        total: float | None,
        text: Text,
        styles: Mapping[str, Style],
        legend: Text | None = None,
    ) -> None:
        self.label, self.parts, self.total, self.text = label, parts, total, text
        self.styles, self.legend = styles, legend

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        reserved = (
            self.label.cell_len + (1 if self.label else 0) + (self.text.cell_len + 1 if self.text else 0)
        )
        bar_width = max(1, width - reserved)
        line = Text(no_wrap=True, overflow="ellipsis")
        if self.label:
            line.append_text(self.label)
            line.append(" ")
        if self.total is None or self.total <= 0 or not self.parts:  # no data never looks like 0 used
            line.append(UNKNOWN * bar_width, self.styles["unknown"])
        else:
            cells = segment_cells([v for v, _ in self.parts], self.total, bar_width)
            for count, (_, style) in zip(cells, self.parts, strict=True):
                line.append(FILL * count, style)
            line.append(FREE * (bar_width - sum(cells)), self.styles["free"])
        if self.text:
            line.append(" ")
            line.append_text(self.text)
        yield line
        if self.legend is not None:
            yield self.legend


class UsageBar(Widget):
    """A stacked usage bar. ``total`` None or no segments shows a dotted "unknown" bar and muted text
    ("10.0 GiB / unknown", "— GiB"); a sum above
    ``total`` fills the bar, adds "OVER" to the text (``usage-bar--over``) and sets the ``-over`` class.

    Text: "61.2/80.0 GiB" (``percent`` → "76%"); ``show_legend`` adds a line "▇ weights 14.0 ▇ kv 50.0".
    Segment colours: component classes ``usage-bar--<tone>``; also ``usage-bar--free``,
    ``--unknown``, ``--text``, ``--over``, ``--label``.
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = tone_classes("usage-bar") | {
        f"usage-bar--{n}" for n in ("live", "zero", "free", "unknown", "text", "over", "label")
    }
    DEFAULT_CSS = (
        "UsageBar { height: auto; }\n"
        + tone_css(
            "UsageBar", "usage-bar", {"stale": "color: $text-muted;", "missing": "color: $text-disabled;"}
        )
        + """
    UsageBar > .usage-bar--live { color: $primary; }
    UsageBar > .usage-bar--zero { color: $primary; }
    UsageBar > .usage-bar--free { color: $text-disabled; }
    UsageBar > .usage-bar--unknown { color: $text-disabled; }
    UsageBar > .usage-bar--text { color: $foreground; }
    UsageBar > .usage-bar--over { color: $error; text-style: bold; }
    UsageBar > .usage-bar--label { color: $text-muted; }
    """
    )

    segments: reactive[tuple[Segment, ...]] = reactive(())
    total: reactive[float | None] = reactive(None)
    label: reactive[str] = reactive("")
    unit: reactive[str] = reactive("")
    show_text: reactive[bool] = reactive(True)
    percent: reactive[bool] = reactive(False)
    show_legend: reactive[bool] = reactive(False, layout=True)
    label_width: reactive[int | None] = reactive(None)
    """Pad (or cut) the label to this many cells so bars in a column line up."""

    def __init__(
        self,
        segments: Sequence[Segment] = (),
        total: float | None = None,
        *,
        label: str = "",
        unit: str = "",
        percent: bool = False,
        show_legend: bool = False,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.set_reactive(UsageBar.segments, tuple(segments))
        self.set_reactive(UsageBar.total, total)
        self.set_reactive(UsageBar.label, label)
        self.set_reactive(UsageBar.unit, unit)
        self.set_reactive(UsageBar.percent, percent)
        self.set_reactive(UsageBar.show_legend, show_legend)

    @property
    def used(self) -> float:
        """The sum of the segment values (negatives count as 0)."""
        return sum(max(0.0, s.value) for s in self.segments)

    @property
    def over(self) -> bool:
        """Whether the segments add up to more than ``total``."""
        return self.total is not None and self.used > self.total

    def watch_segments(self) -> None:
        self.set_class(self.over, "-over")

    def watch_total(self) -> None:
        self.set_class(self.over, "-over")

    def on_mount(self) -> None:
        self.set_class(self.over, "-over")

    def render(self) -> UsageBarRenderable:
        style = self._style
        parts = [
            (s.value, style(tone_class("usage-bar", s.tone) or f"usage-bar--{s.tone}")) for s in self.segments
        ]
        label = Text(self.label, style=style("usage-bar--label"))
        if self.label_width is not None:
            label.truncate(self.label_width, overflow="ellipsis", pad=True)
        styles = {"free": style("usage-bar--free"), "unknown": style("usage-bar--unknown")}
        return UsageBarRenderable(label, parts, self.total, self.text(), styles, self._legend(parts))

    def text(self) -> Text:
        """The value text after the bar (empty when ``show_text`` is off)."""
        if not self.show_text:
            return Text()
        unit = f" {self.unit}" if self.unit else ""
        if not self.segments:
            return Text(f"—{unit}", style=self._style("usage-bar--unknown"))
        if self.total is None:
            return Text(f"{self.used:.1f}{unit} / unknown", style=self._style("usage-bar--unknown"))
        if self.percent:
            body = f"{self.used / self.total:.0%}" if self.total > 0 else f"{self.used:.1f}{unit}"
        else:
            body = f"{self.used:.1f}/{self.total:.1f}{unit}"
        if self.over:
            return Text.assemble(
                (body, self._style("usage-bar--over")), (" OVER", self._style("usage-bar--over"))
            )
        return Text(body, style=self._style("usage-bar--text"))

    def _legend(self, parts: Sequence[tuple[float, Style]]) -> Text | None:
        if not self.show_legend or not self.segments:
            return None
        legend = Text(no_wrap=True, overflow="ellipsis")
        for segment, (_, seg_style) in zip(self.segments, parts, strict=True):
            if legend:
                legend.append("  ")
            legend.append(FILL, seg_style)
            legend.append(f" {segment.label} {max(0.0, segment.value):.1f}", self._style("usage-bar--label"))
        return legend

    def _style(self, name: str) -> Style:
        return component_style(self, name)
