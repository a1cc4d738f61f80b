"""Semantic tones: how a value looks, decided by presenters, coloured by the theme.

Rendering rule (DESIGN "Quality bar": live, stale, missing, unsupported, error and zero look different):

| tone          | looks like                                                           |
|---------------|----------------------------------------------------------------------|
| `live`        | normal text                                                          |
| `zero`        | normal text: 0 is a real reading, never shown as missing             |
| `stale`       | dim + italic; the presenter puts the age in the text ("12.3 (stale 8s)") |
| `missing`     | muted; an empty text is shown as "—"                                 |
| `unsupported` | muted; an empty text is shown as "n/a" (the source has no such value) |
| `error`       | the theme's error colour                                             |
| `ok` / `warn` / `crit` | success / warning / error colours (crit is also bold; text widgets show it reversed, see SALIENT_RULES) |
| `info`        | the theme's primary colour                                           |
| `dim`         | muted (secondary detail)                                             |
| `simulated`   | the theme's secondary colour: neutral, never the warning colour (label the text SIMULATED) |

Salience: critical is the most salient look on screen. Text widgets (tables, lines of text) pass
``SALIENT_RULES`` to ``tone_css``: a critical cell is bold and reversed (a solid error-coloured block), which
no other tone uses. Widgets that draw with block glyphs (bars) keep the plain rule (reversing a "█" would
empty it).

Widgets map a tone to the component class ``<widget>--<tone>`` (e.g. ``keyed-table--stale``) in their
DEFAULT_CSS, so the app's theme and CSS decide the colours. ``live`` and ``zero`` have no class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal, get_args

from rich.style import Style

if TYPE_CHECKING:
    from textual.widget import Widget

Tone = Literal[
    "live",
    "stale",
    "missing",
    "unsupported",
    "error",
    "zero",
    "ok",
    "warn",
    "crit",
    "info",
    "dim",
    "simulated",
]
TONES: Final[tuple[str, ...]] = get_args(Tone)
"""Every tone, in declaration order."""

STYLED_TONES: Final[tuple[str, ...]] = tuple(t for t in TONES if t not in ("live", "zero"))
"""Tones that carry a component class (``live`` and ``zero`` render as normal text)."""

PLACEHOLDERS: Final[dict[str, str]] = {"missing": "—", "unsupported": "n/a"}
"""Text shown for an empty cell of these tones."""


@dataclass(frozen=True, slots=True)
class Cell:
    """A table cell: display text, a semantic tone and an optional key for presenter-side sorting.

    ``sort_key`` is data for whoever orders rows (numbers and strings sort in separate groups,
    None last); KeyedTable itself keeps the order it is given.
    """

    text: str
    tone: Tone = "live"
    sort_key: float | str | None = None

    @property
    def display(self) -> str:
        """The text to show: the placeholder ("—", "n/a") when a missing/unsupported cell is empty."""
        if not self.text:
            return PLACEHOLDERS.get(self.tone, "")
        return self.text


def as_cell(value: Cell | str) -> Cell:
    """A plain string is a live cell (shown literally: no markup is parsed)."""
    return value if isinstance(value, Cell) else Cell(str(value))


def tone_class(prefix: str, tone: str) -> str | None:
    """The component class for ``tone`` in a widget whose classes start with ``prefix``; None for live/zero."""
    return f"{prefix}--{tone}" if tone in STYLED_TONES else None


def sort_value(cell: Cell) -> tuple[int, float | str]:
    """A total-order key for a cell: numbers, then strings, then None (never a TypeError)."""
    key = cell.sort_key
    if key is None:
        return (2, "")
    if isinstance(key, int | float):
        return (0, float(key))
    return (1, str(key))


TONE_RULES: Final[dict[str, str]] = {
    "stale": "text-style: dim italic;",
    "missing": "color: $text-muted;",
    "unsupported": "color: $text-muted;",
    "error": "color: $error;",
    "ok": "color: $success;",
    "warn": "color: $warning;",
    "crit": "color: $error; text-style: bold;",
    "info": "color: $primary;",
    "dim": "color: $text-muted;",
    "simulated": "color: $text-secondary;",
}
"""The default look of each styled tone, in theme variables (apps override per component class)."""

SALIENT_RULES: Final[dict[str, str]] = {"crit": "color: $error; text-style: bold reverse;"}
"""Overrides for text widgets: critical as a solid, bold error-coloured block (the most salient look)."""


def tone_css(widget: str, prefix: str, rules: dict[str, str] | None = None) -> str:
    """DEFAULT_CSS rules ``<widget> > .<prefix>--<tone> { ... }`` for every styled tone."""
    merged = {**TONE_RULES, **(rules or {})}
    return "\n".join(f"{widget} > .{prefix}--{tone} {{ {merged[tone]} }}" for tone in STYLED_TONES)


def tone_classes(prefix: str) -> set[str]:
    """The component class names for every styled tone of a widget."""
    return {f"{prefix}--{tone}" for tone in STYLED_TONES}


def component_style(widget: Widget, name: str) -> Style:
    """A component class as a Rich style without background (so cursors and highlights still show),
    with its colour blended against the widget's background (a partial style would drop the alpha of
    colours such as $text-muted)."""
    partial = widget.get_component_rich_style(name, partial=True)
    if partial.color is None:
        return partial
    return partial + Style(color=widget.get_component_rich_style(name).color)
