"""The console's per-engine time series: ``EngineSeries``, bounded float columns (console-monotonic x, one
column per stat in ``METRICS``, NaN for a gap) that the fleet state reducer (console/state.py) appends to and
the engine screen's charts read. Pure: no Textual, no I/O.
"""

from __future__ import annotations

import math
from array import array
from operator import attrgetter

from agents.schema import EngineStats

WINDOW_S = 900.0
METRICS: tuple[str, ...] = (
    "ttft_p50_s",
    "ttft_p95_s",
    "requests_running",
    "requests_waiting",
    "kv_cache_usage",
    "generation_tokens_per_s",
    "prompt_tokens_per_s",
)
_NAN = math.nan
_read_metrics = attrgetter(*METRICS)
_GAP = (None,) * len(METRICS)


class EngineSeries:
    """Bounded columns for one engine: console-monotonic x plus one float column per metric (NaN: gap).

    Append-only; points closer than ``min_step_s`` to the previous one are skipped (a 0.5 s agent history
    is thinned to the poll rate), and the oldest points are dropped beyond ``capacity``."""

    __slots__ = ("_cols", "_x", "capacity", "min_step_s")

    def __init__(self, capacity: int, min_step_s: float = 0.0) -> None:
        self.capacity = max(8, capacity)
        self.min_step_s = min_step_s
        self._x = array("d")
        self._cols = tuple(array("d") for _ in METRICS)

    def __len__(self) -> int:
        return len(self._x)

    @property
    def last_x(self) -> float | None:
        return self._x[-1] if self._x else None

    def append(self, x: float, stats: EngineStats | None) -> bool:
        """Add one point (``stats`` None: a gap). False if it is not after the last point."""
        if self._x and x - self._x[-1] < max(self.min_step_s, 1e-9):
            return False
        self._x.append(x)
        values = _read_metrics(stats) if stats is not None else _GAP
        for col, value in zip(self._cols, values, strict=True):
            col.append(_NAN if value is None else value)
        if len(self._x) > self.capacity + self.capacity // 4:  # amortised trimming
            drop = len(self._x) - self.capacity
            del self._x[:drop]
            for col in self._cols:
                del col[:drop]
        return True

    def points(
        self, metric: str, now: float, window_s: float = WINDOW_S, gap_s: float | None = None
    ) -> tuple[tuple[float, float | None], ...]:
        """(x relative to ``now`` (≤ 0), value or None) inside the window; a None point is inserted
        where consecutive samples are more than ``gap_s`` apart (missed polls are never bridged)."""
        col = self._cols[METRICS.index(metric)]
        xs = self._x
        lo = now - window_s
        out: list[tuple[float, float | None]] = []
        prev: float | None = None
        for i in range(len(xs)):
            x = xs[i]
            if x < lo:
                continue
            if gap_s is not None and prev is not None and x - prev > gap_s:
                out.append(((prev + x) / 2 - now, None))
            y = col[i]
            out.append((x - now, None if y != y else y))
            prev = x
        if gap_s is not None and prev is not None and now - prev > gap_s:
            out.append((min(0.0, prev + gap_s - now), None))  # no data since: the line stops
        return tuple(out)

    def latest(self, metric: str) -> float | None:
        """The newest value of ``metric`` (None for a gap or no data)."""
        if not self._x:
            return None
        y = self._cols[METRICS.index(metric)][-1]
        return None if y != y else y


__all__ = ["METRICS", "WINDOW_S", "EngineSeries"]
