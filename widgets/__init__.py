"""Pure, data-in Textual widgets for the console: no I/O, no timers; user intent leaves as messages.

Never imports agents, console, httpx, pynvml or psutil (tests/test_import_hygiene.py enforces it).
"""

from __future__ import annotations

from .alert_list import AlertItem, AlertList, format_evidence
from .badge import StateBadge, state_tone
from .keyed_table import KeyedTable
from .log_view import LogView
from .timeseries import Series, TimeSeries
from .tone import Cell, Tone
from .usage_bar import Segment, UsageBar

__all__ = [
    "AlertItem",
    "AlertList",
    "Cell",
    "KeyedTable",
    "LogView",
    "Segment",
    "Series",
    "StateBadge",
    "TimeSeries",
    "Tone",
    "UsageBar",
    "format_evidence",
    "state_tone",
]
