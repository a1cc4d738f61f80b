"""Data model shared by the exposition parser, the engine adapters and the window math.

Pure Python, stdlib only. Nothing here does I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

Labels = dict[str, str]


@dataclass(slots=True)
class MetricSet:
    """The result of parsing one Prometheus/OpenMetrics exposition.

    ``samples`` maps a *sample* name (``vllm:ttft_seconds_bucket``, ``tgi_queue_size``) to the list
    of ``(labels, value)`` pairs seen for it, in exposition order. Duplicate series keep the last value
    and are reported in ``problems``. ``types`` maps a *family* name (as written on its ``# TYPE``
    line) to its declared type. ``problems`` lists what was wrong with the text, one line each
    (``"line 12: ..."``); a non-empty list means the exposition was malformed (the agent treats such a
    scrape as failed, as Prometheus does), but everything that could be read is still here.
    """

    samples: dict[str, list[tuple[Labels, float]]] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    lines: int = 0

    def get(self, name: str) -> list[tuple[Labels, float]]:
        return self.samples.get(name, [])

    def has(self, name: str) -> bool:
        return name in self.samples

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True, slots=True)
class Histogram:
    """A cumulative Prometheus histogram: upper bounds (ascending, last is +Inf) and cumulative counts."""

    bounds: tuple[float, ...]
    cumulative: tuple[float, ...]
    sum: float
    count: float

    def __post_init__(self) -> None:
        if len(self.bounds) != len(self.cumulative):
            raise ValueError("bounds and cumulative counts differ in length")

    @property
    def has_inf(self) -> bool:
        return bool(self.bounds) and math.isinf(self.bounds[-1])
