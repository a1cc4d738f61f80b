"""SparkRows: one line per metric ("TTFT p95 ▁▂▃▅▇█ 2.35s  target 200ms") for narrow terminals.

Each row bins its points into as many cells as fit and draws the highest value of each bin as a block
(▁…█); a bin with no data is blank, so a short history and gaps show as such. Cells above the row's
``target`` use the ``spark-rows--over`` colour, so a breached target reads at any size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from .tone import Tone, component_style, tone_class, tone_classes, tone_css

BLOCKS = "▁▂▃▄▅▆▇█"


@dataclass(frozen=True, slots=True)
class SparkRow:
    """One metric: ``points`` as in TimeSeries (x seconds relative to now, y None = gap); ``value`` is
    the current value's display text with its ``tone``; ``note`` follows it ("target 200ms", "STALE")."""

    label: str
    points: tuple[tuple[float, float | None], ...]
    value: str = ""
    tone: Tone = "live"
    target: float | None = None
    note: str = ""
    y_min: float | None = 0.0
    y_max: float | None = None


def bin_max(points: Sequence[tuple[float, float | None]], window_s: float, cells: int) -> list[float | None]:
    """The highest value per cell over [-window_s, 0] (cell 0 oldest); None where a cell has no data."""
    out: list[float | None] = [None] * max(0, cells)
    if cells <= 0 or window_s <= 0:
        return out
    for x, y in points:
        if y is None or (isinstance(y, float) and math.isnan(y)) or not -window_s <= x <= 0:
            continue
        i = min(cells - 1, int((x + window_s) / window_s * cells))
        current = out[i]
        out[i] = y if current is None else max(current, y)
    return out


def spark(values: Sequence[float | None], low: float, high: float) -> str:
    """Blocks for ``values`` scaled from ``low`` (▁) to ``high`` (█); None is a blank cell."""
    span = high - low
    out = []
    for v in values:
        if v is None:
            out.append(" ")
            continue
        level = 0 if span <= 0 else round((min(max(v, low), high) - low) / span * (len(BLOCKS) - 1))
        out.append(BLOCKS[level])
    return "".join(out)


def scale(values: Sequence[float | None], row: SparkRow) -> tuple[float, float]:
    """The row's vertical range: from ``y_min`` (else the lowest value) to the highest value or the
    target, capped at ``y_max``."""
    data = [v for v in values if v is not None]
    if row.target is not None:
        data.append(row.target)
    if not data:
        return (0.0, 1.0)
    low = min(data) if row.y_min is None else row.y_min
    high = max(data)
    if row.y_max is not None:
        high = min(high, row.y_max)
    return (low, high if high > low else low + 1.0)


class SparkRows(Widget):
    """Rows of label, sparkline, value and note; ``window_s`` is the span the sparklines cover.

    Component classes: ``spark-rows--label``, ``--bar``, ``--over`` (cells above the target),
    ``--note`` and one per tone for the value (``spark-rows--warn`` …)."""

    COMPONENT_CLASSES: ClassVar[set[str]] = tone_classes("spark-rows") | {
        f"spark-rows--{n}" for n in ("label", "bar", "over", "note")
    }
    DEFAULT_CSS = (
        "SparkRows { height: auto; }\n"
        + tone_css("SparkRows", "spark-rows")
        + """
    SparkRows > .spark-rows--label { color: $text-muted; }
    SparkRows > .spark-rows--bar { color: $primary; }
    SparkRows > .spark-rows--over { color: $error; }
    SparkRows > .spark-rows--note { color: $text-muted; }
    """
    )

    rows: reactive[tuple[SparkRow, ...]] = reactive((), layout=True)
    window_s: reactive[float] = reactive(900.0)
    label_width: reactive[int] = reactive(9)
    value_width: reactive[int] = reactive(8)

    def get_content_height(self, container: object, viewport: object, width: int) -> int:
        return max(1, len(self.rows))

    def render(self) -> Text:
        width = self.content_region.width or self.size.width
        out = Text(no_wrap=True, overflow="ellipsis", end="")
        notes = max((len(r.note) for r in self.rows), default=0)
        for n, row in enumerate(self.rows):
            if n:
                out.append("\n")
            out.append(row.label[: self.label_width].ljust(self.label_width) + " ", self._style("label"))
            note_w = notes + 1 if notes else 0
            cells = max(4, width - self.label_width - 1 - self.value_width - 1 - note_w)
            values = bin_max(row.points, self.window_s, cells)
            low, high = scale(values, row)
            bars = spark(values, low, high)
            for value, ch in zip(values, bars, strict=True):
                over = row.target is not None and value is not None and value > row.target
                out.append(ch, self._style("over" if over else "bar"))
            out.append(" ")
            name = tone_class("spark-rows", row.tone)
            out.append(row.value.rjust(self.value_width), self._style(name) if name else None)
            if row.note:
                out.append(" " + row.note, self._style("note"))
        return out

    def _style(self, name: str) -> Style:
        return component_style(self, name if name.startswith("spark-rows--") else f"spark-rows--{name}")
