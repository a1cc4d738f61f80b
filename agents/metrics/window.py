"""Rates and windowed percentiles from cumulative engine readings.

Pure and stdlib only: the caller owns the (monotonic) clock and passes timestamps in. Percentiles are
computed from histogram bucket *deltas* over a recent window, never over an engine's lifetime. Two
windows: per-second rates over a short one (the last few scrapes, ``RATE_WINDOW_S``: an engine that stops
serving reads 0 tok/s within seconds), percentiles and window counts over the long one (``stats_window_s``);
the spans actually measured are reported as ``rate_window_s`` and ``percentile_window_s``.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import fields
from typing import TYPE_CHECKING, NamedTuple

from agents.metrics.model import Histogram, Labels
from agents.schema import EngineStats, QuantileBucket

if TYPE_CHECKING:  # agents.engines imports this module; a runtime import would be circular
    from agents.engines.base import Reading

# The snapshot's numeric ``stats`` keys, in contract order: defined once, by the wire schema. The one other
# key, ``quantile_buckets`` (the bucket of each percentile), is ``Derived.buckets``.
BUCKETS_KEY = "quantile_buckets"
STATS_KEYS: tuple[str, ...] = tuple(f.name for f in fields(EngineStats) if f.name != BUCKETS_KEY)

RATE_WINDOW_S = 4.0  # the agent's short window for per-second rates (a few scrapes at the 1 s interval)

_GAUGE_STATS = (
    ("requests_running", "requests_running"),
    ("requests_waiting", "requests_waiting"),
    ("kv_cache_usage", "kv_cache_usage"),
    ("requests_waiting_capacity", "requests_waiting_capacity"),  # adapters that split waiting by reason
    ("requests_waiting_deferred", "requests_waiting_deferred"),
)
_RATE_STATS = (
    ("preemptions_per_s", "preemptions"),
    ("prompt_tokens_per_s", "prompt_tokens"),
    ("generation_tokens_per_s", "generation_tokens"),
    ("request_errors_per_s", "request_errors"),
)
_QUANTILE_STATS = (
    ("ttft", (("ttft_p50_s", 0.50), ("ttft_p95_s", 0.95), ("ttft_p99_s", 0.99))),
    ("itl", (("itl_p50_s", 0.50), ("itl_p95_s", 0.95), ("itl_p99_s", 0.99))),
    ("e2e", (("e2e_p50_s", 0.50), ("e2e_p95_s", 0.95), ("e2e_p99_s", 0.99))),
    ("queue_time", (("queue_time_p50_s", 0.50), ("queue_time_p95_s", 0.95), ("queue_time_p99_s", 0.99))),
)

_INF = math.inf


# --- histograms ------------------------------------------------------------------------------------


def histogram_from_samples(
    buckets: Sequence[tuple[Labels | float | str, float]], sum_value: float | None, count_value: float | None
) -> Histogram:
    """Build a Histogram from one series' ``_bucket`` samples (any order) and its ``_sum``/``_count``.

    Each bucket is ``(labels, value)`` as parsed (the bound is read from ``le``) or ``(bound, value)``
    with the bound already a number or string. Buckets without a readable bound are ignored; a repeated bound keeps the last value. When the
    ``+Inf`` bucket is missing it is added from ``count_value`` (if known). A missing count is taken
    from the ``+Inf`` bucket; a missing sum is NaN (it is never used for percentiles).
    """
    by_bound: dict[float, float] = {}
    for where, value in buckets:
        if type(where) is float:
            bound = where
        else:
            le = where.get("le") if isinstance(where, Mapping) else where
            if le is None:
                continue
            try:
                bound = float(le)
            except (TypeError, ValueError):
                continue
        if bound == bound:  # not NaN
            by_bound[bound] = value
    if _INF not in by_bound and count_value is not None:
        by_bound[_INF] = count_value
    bounds = tuple(sorted(by_bound))
    cumulative = tuple(by_bound[b] for b in bounds)
    if count_value is None:
        count_value = by_bound.get(_INF, math.nan)
    return Histogram(
        bounds=bounds,
        cumulative=cumulative,
        sum=math.nan if sum_value is None else sum_value,
        count=count_value,
    )


def merge(*hists: Histogram | Iterable[Histogram | None] | None) -> Histogram | None:
    """Sum histograms (e.g. one per model or data-parallel engine); None when there are none.

    Called as ``merge(iterable)`` or ``merge(h1, h2, ...)``; None entries are skipped.

    Equal bounds: bucket-wise sum. Different bounds: the result has the union of the bounds and, at
    each bound ``b``, every histogram contributes its cumulative count at its own largest bound ``<= b``
    (its cumulative step function). Approximation: observations of a coarser histogram are placed at
    the upper bound of the bucket they fell in, so quantiles of the merge can read high by up to one of
    that histogram's bucket widths. A histogram without a ``+Inf`` bucket contributes its ``count`` there.
    """
    source = hists[0] if len(hists) == 1 and not isinstance(hists[0], Histogram | None) else hists
    items = [h for h in source if isinstance(h, Histogram)]  # type: ignore[union-attr]
    if not items:
        return None
    first = items[0]
    if len(items) == 1:
        return first
    total_sum = math.fsum(h.sum for h in items)
    total_count = math.fsum(h.count for h in items)
    if all(h.bounds == first.bounds for h in items):
        cumulative = tuple(math.fsum(column) for column in zip(*(h.cumulative for h in items), strict=True))
        return Histogram(first.bounds, cumulative, total_sum, total_count)
    bounds = sorted({b for h in items for b in h.bounds} | {_INF})
    cumulative = tuple(math.fsum(_step(h, b) for h in items) for b in bounds)
    return Histogram(tuple(bounds), cumulative, total_sum, total_count)


def _step(h: Histogram, bound: float) -> float:
    """Cumulative count of ``h`` at ``bound``: its value at its largest bound ``<= bound``, else 0."""
    if bound == _INF and not h.has_inf:
        return h.count if not math.isnan(h.count) else (h.cumulative[-1] if h.cumulative else 0.0)
    i = bisect.bisect_right(h.bounds, bound)
    return h.cumulative[i - 1] if i else 0.0


def delta(prev: Histogram | None, cur: Histogram) -> Histogram:
    """What ``cur`` observed since ``prev``; ``cur`` itself when there is no comparable ``prev``.

    A counter reset (count or any bucket went down; the engine restarted) or changed bounds make
    ``prev`` meaningless, so everything in ``cur`` counts as new.
    """
    if prev is None or prev.bounds != cur.bounds or cur.count < prev.count:
        return cur
    diff = []
    for now, before in zip(cur.cumulative, prev.cumulative, strict=True):
        if now < before:
            return cur
        diff.append(now - before)
    return Histogram(cur.bounds, tuple(diff), cur.sum - prev.sum, cur.count - prev.count)


def quantile_bucket(q: float, h: Histogram) -> tuple[float, QuantileBucket] | None:
    """The ``q``-quantile of ``h`` with Prometheus ``histogram_quantile`` semantics, and the bounds of the
    bucket it was read from: ``(value, (lower, upper))``.

    Linear interpolation inside the bucket holding rank ``q * observations``: ``lower`` is the bound
    below it, 0 for the first bucket (when its bound is <= 0, the bound itself is returned and the bucket
    is ``(bound, bound)``); a rank in the ``+Inf`` bucket returns the highest finite bound and the bucket
    ``(that bound, None)``. Cumulative counts are made monotonic first, as Prometheus does. None when
    there are no observations, no ``+Inf`` bucket, or fewer than two buckets. One deliberate difference:
    for ``q == 0`` empty leading buckets are skipped (Prometheus returns NaN there). Raises ValueError
    for ``q`` outside [0, 1] (a programming error, not bad input).
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile {q!r} is outside [0, 1]")
    bounds, counts = h.bounds, h.cumulative
    if len(bounds) < 2 or not h.has_inf:
        return None
    monotonic: list[float] = []
    highest = 0.0
    for c in counts:
        if c > highest:  # NaN never raises it
            highest = c
        monotonic.append(highest)
    observations = monotonic[-1]
    if not observations > 0 or math.isinf(observations):
        return None
    rank = q * observations
    b = next(i for i, c in enumerate(monotonic) if c >= rank and c > 0)
    if b == len(bounds) - 1:
        return bounds[-2], (bounds[-2], None)
    if b == 0 and bounds[0] <= 0:
        return bounds[0], (bounds[0], bounds[0])
    start = bounds[b - 1] if b > 0 else 0.0
    below = monotonic[b - 1] if b > 0 else 0.0
    in_bucket = monotonic[b] - below
    return start + (bounds[b] - start) * ((rank - below) / in_bucket), (start, bounds[b])


def quantile(q: float, h: Histogram) -> float | None:
    """The ``q``-quantile of ``h`` (see :func:`quantile_bucket`, the one definition), without its bucket."""
    got = quantile_bucket(q, h)
    return None if got is None else got[0]


def counter_delta(prev: float | None, cur: float | None) -> float | None:
    """Increase of a counter; after a reset (``cur < prev``) the whole ``cur``. None if either is unknown."""
    if prev is None or cur is None or math.isnan(prev) or math.isnan(cur):
        return None
    return cur if cur < prev else cur - prev


# --- stats -----------------------------------------------------------------------------------------


class Derived(NamedTuple):
    """One engine's derived ``stats``: the numbers (keys STATS_KEYS) and, per percentile key that has a
    value, the bounds of the histogram bucket it was interpolated in (the wire's ``quantile_buckets``)."""

    stats: dict[str, float | None]
    buckets: dict[str, QuantileBucket]


def derive(
    start: Reading | None,
    end: Reading,
    dt_s: float | None,
    rate_start: Reading | None = None,
    rate_dt_s: float | None = None,
) -> Derived:
    """The DESIGN.md ``stats`` of one engine from two readings ``dt_s`` seconds apart.

    Gauges come from ``end``. Percentiles (each with its bucket), ``preemptions_in_window`` and the
    prefix-cache hit rate are over ``start``..``end`` only (None, and no bucket, when nothing was observed
    in between, or without ``start``). Rates are over ``rate_start``..``end`` (``rate_dt_s`` apart) when
    given, else over ``start``..``end``; they need a span > 0. A histogram absent from ``start`` but
    present in ``end`` counts whole (it appeared within the window). ``rate_window_s`` and
    ``percentile_window_s`` are the spans used. Non-finite results are None (the wire format has no NaN).
    """
    stats: dict[str, float | None] = dict.fromkeys(STATS_KEYS)
    buckets: dict[str, QuantileBucket] = {}
    for key, gauge in _GAUGE_STATS:
        stats[key] = _finite(end.gauges.get(gauge))
    if start is None:
        return Derived(stats, buckets)
    if rate_start is None:
        rate_start, rate_dt_s = start, dt_s
    span = _span(rate_dt_s)
    if span is not None:
        stats["rate_window_s"] = span
        for key, counter in _RATE_STATS:
            increase = counter_delta(rate_start.counters.get(counter), end.counters.get(counter))
            stats[key] = None if increase is None else _finite(increase / span)
    stats["percentile_window_s"] = _span(dt_s)
    for hist_name, wanted in _QUANTILE_STATS:
        cur = end.histograms.get(hist_name)
        if cur is None:
            continue
        window = delta(start.histograms.get(hist_name), cur)
        for key, q in wanted:
            got = quantile_bucket(q, window)
            if got is not None and math.isfinite(got[0]) and math.isfinite(got[1][0]):
                stats[key], buckets[key] = got
    stats["preemptions_in_window"] = counter_delta(
        start.counters.get("preemptions"), end.counters.get("preemptions")
    )
    hits = counter_delta(start.counters.get("prefix_cache_hits"), end.counters.get("prefix_cache_hits"))
    queries = counter_delta(
        start.counters.get("prefix_cache_queries"), end.counters.get("prefix_cache_queries")
    )
    if hits is not None and queries:
        stats["prefix_cache_hit_rate"] = _finite(hits / queries)
    return Derived(stats, buckets)


def derive_stats(
    start: Reading | None,
    end: Reading,
    dt_s: float | None,
    rate_start: Reading | None = None,
    rate_dt_s: float | None = None,
) -> dict[str, float | None]:
    """The numbers of :func:`derive` (keys STATS_KEYS), without the percentiles' buckets."""
    return derive(start, end, dt_s, rate_start, rate_dt_s).stats


def _span(dt_s: float | None) -> float | None:
    return dt_s if dt_s is not None and dt_s > 0 and math.isfinite(dt_s) else None


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


class Window:
    """Recent readings of one engine, for percentiles over the last ``window_s`` seconds and rates over
    the last ``rate_window_s`` (None: the same ``window_s``).

    ``add`` takes a monotonic timestamp from the caller (no clock is read here). ``stats`` compares the
    newest reading with the oldest one still within the window of it. When a gap (failed scrapes)
    leaves no other reading in the window, the newest older reading within ``max_age_s`` is used
    instead (a rate over a longer span beats none); ``max_age_s`` defaults to ``window_s``, i.e. no
    such fallback for percentiles. A rate whose short window holds no other reading (scrapes further
    apart than it) is measured from the newest older reading within ``max_age_s``. Memory is bounded by
    time and by ``max_readings``.
    """

    __slots__ = ("window_s", "max_age_s", "max_readings", "rate_window_s", "_items")

    def __init__(
        self,
        window_s: float = 60.0,
        max_age_s: float | None = None,
        max_readings: int = 4096,
        rate_window_s: float | None = None,
    ):
        if not window_s > 0:
            raise ValueError("window_s must be positive")
        if rate_window_s is not None and not rate_window_s > 0:
            raise ValueError("rate_window_s must be positive")
        self.window_s = float(window_s)
        self.max_age_s = max(self.window_s, float(max_age_s)) if max_age_s is not None else self.window_s
        self.max_readings = max(2, int(max_readings))
        self.rate_window_s = None if rate_window_s is None else min(float(rate_window_s), self.window_s)
        self._items: deque[tuple[float, Reading]] = deque()

    def __len__(self) -> int:
        return len(self._items)

    def add(self, t: float, reading: Reading) -> None:
        """Record ``reading`` taken at monotonic time ``t``; a ``t`` older than the newest restarts history."""
        items = self._items
        if items and t <= items[-1][0]:
            if t < items[-1][0]:
                items.clear()
            else:
                items.pop()
        items.append((t, reading))
        cutoff = t - self.max_age_s
        while items[0][0] < cutoff:
            items.popleft()
        while len(items) > self.max_readings:
            items.popleft()

    def reset(self) -> None:
        """Forget all history (the engine restarted)."""
        self._items.clear()

    def stats(self) -> dict[str, float | None]:
        """The numbers of ``derived()``; all None before the first reading."""
        return self.derived().stats

    def derived(self) -> Derived:
        """derive over the windows (numbers and percentiles' buckets); all None before the first reading."""
        items = self._items
        if not items:
            return Derived(dict.fromkeys(STATS_KEYS), {})
        t_end, end = items[-1]
        start_at = self._start(t_end, end, self.window_s)
        if start_at is None:
            return derive(None, end, None)
        if self.rate_window_s is None:
            return derive(start_at[1], end, t_end - start_at[0])
        rate_at = self._start(t_end, end, self.rate_window_s) or start_at
        return derive(start_at[1], end, t_end - start_at[0], rate_at[1], t_end - rate_at[0])

    def _start(self, t_end: float, end: Reading, span: float) -> tuple[float, Reading] | None:
        """The reading to measure from over ``span``: the oldest one within ``span`` of the newest that
        already has every counter the newest one has (engines create some counters lazily: TGI on its first
        request; a start without them would leave those rates None for a whole window), else the oldest
        within ``span``, else the newest older one within ``max_age_s``."""
        items = self._items
        have = [k for k, v in end.counters.items() if v is not None]
        fallback: tuple[float, Reading] | None = None
        earlier: tuple[float, Reading] | None = None
        for t, reading in items:
            if t >= t_end:
                break
            if t < t_end - span:
                earlier = (t, reading)
                continue
            fallback = fallback or (t, reading)
            if all(reading.counters.get(k) is not None for k in have):
                return (t, reading)
        if fallback is not None:
            return fallback
        if earlier is not None and earlier[0] >= t_end - self.max_age_s:
            return earlier
        return None
