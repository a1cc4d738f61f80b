"""KV_EXHAUSTION_ETA: the robust (Theil–Sen) trend of KV usage and the seconds until it reaches 100 %."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from agents.schema.units import duration
from agents.silent.common import Finding, SilentThresholds, is_serving, live_stat

if TYPE_CHECKING:
    from agents.alerts import EngineObservation


@dataclass(frozen=True, slots=True)
class KvTrend:
    level: float  # the fitted usage now, 0..1
    slope_per_s: float
    eta_s: float
    points: int
    span_s: float


def theil_sen(points: Sequence[tuple[float, float]]) -> tuple[float, float, float] | None:
    """(slope, intercept, share of rising pairs among the pairs that change) of (t, y) points; None
    with fewer than two distinct times."""
    slopes: list[float] = []
    rising = changing = 0
    for i, (t0, y0) in enumerate(points):
        for t1, y1 in points[i + 1 :]:
            if t1 == t0:
                continue
            s = (y1 - y0) / (t1 - t0)  # points are in time order: t1 > t0
            slopes.append(s)
            if s != 0:
                changing += 1
                rising += s > 0
    if not slopes:
        return None
    slope = statistics.median(slopes)
    intercept = statistics.median(y - slope * t for t, y in points)
    return slope, intercept, (rising / changing if changing else 0.0)


RISE_FLOOR = 0.02  # samples within this of the window's low count as "before the rise"
DROP_BELOW_FIT = 0.15  # the latest sample this far below the fitted level ends the trend


def kv_trend(
    history: Sequence[EngineObservation],
    window_s: float = 180.0,
    min_points: int = 10,
    min_span_s: float = 30.0,
    min_rising_share: float = 0.6,
    max_points: int = 64,
) -> KvTrend | None:
    """KV usage's robust trend over the last ``window_s`` of good scrapes since the engine last became
    serving; None when flat or falling, too few samples, or no consistent rise (fewer than
    ``min_rising_share`` of the changing pairs rise)."""
    if not history:
        return None
    end = history[-1].t
    points: list[tuple[float, float]] = []
    seen_scrape: float | None = None
    for o in reversed(history):
        if o.t < end - window_s or not is_serving(o):
            break
        kv = live_stat(o, "kv_cache_usage")
        if kv is None or (o.last_scrape_ok_t is not None and o.last_scrape_ok_t == seen_scrape):
            continue
        seen_scrape = o.last_scrape_ok_t
        points.append((o.t, kv))
    points.reverse()
    if len(points) < min_points or points[-1][0] - points[0][0] < min_span_s:
        return None
    # Fit the current rise, not the idle minutes before it: from the last sample near the window's low
    # (when that still leaves enough points), so a ramp that began a minute ago is not diluted by the flat
    # start of the window and read as a slow drift.
    low = min(kv for _, kv in points)
    start = max(i for i, (_, kv) in enumerate(points) if kv <= low + RISE_FLOOR)
    if len(points) - start >= min_points and points[-1][0] - points[start][0] >= min_span_s:
        points = points[start:]
    if len(points) > max_points:  # evenly thinned: the fit costs n² pairs
        step = (len(points) - 1) / (max_points - 1)
        points = [points[round(i * step)] for i in range(max_points)]
    fit = theil_sen(points)
    if fit is None:
        return None
    slope, intercept, rising = fit
    if slope <= 0 or rising < min_rising_share:
        return None
    level = min(1.0, max(0.0, intercept + slope * end))
    if points[-1][1] < level - DROP_BELOW_FIT:  # KV fell away from the trend (requests finished): no ETA
        return None
    return KvTrend(level, slope, (1.0 - level) / slope, len(points), points[-1][0] - points[0][0])


def kv_eta_s(history: Sequence[EngineObservation], window_s: float = 180.0) -> float | None:
    """Seconds until KV usage reaches 100 % at its recent trend; None when not rising (or unknown)."""
    trend = kv_trend(history, window_s)
    return None if trend is None else trend.eta_s


@dataclass(slots=True)
class KvExhaustionEta:
    code: ClassVar[str] = "KV_EXHAUSTION_ETA"
    window_s: float = 180.0
    eta_s: float | None = None  # the latest estimate, alert or not (EngineSnapshot.kv_eta_s)

    @property
    def kv_eta_s(self) -> float | None:
        """The same estimate under the snapshot's name (``EngineRules.extra_value("kv_eta_s")``)."""
        return self.eta_s

    def __call__(
        self, obs: EngineObservation, history: Sequence[EngineObservation], thresholds: SilentThresholds
    ) -> Finding | None:
        trend = kv_trend(history, self.window_s) if is_serving(obs) and obs.scrape.ok else None
        self.eta_s = None if trend is None else round(trend.eta_s, 1)
        if trend is None or trend.eta_s >= thresholds.kv_eta_warn_s:
            return None
        evidence = {
            "kv_cache_usage": round(trend.level, 4),
            "rising_per_min": round(trend.slope_per_s * 60, 5),  # fraction of the KV cache per minute
            "eta_s": round(trend.eta_s, 1),
            "kv_eta_warn_s": thresholds.kv_eta_warn_s,
            "points": trend.points,
            "span_s": round(trend.span_s, 1),
        }
        summary = (
            f"KV cache {trend.level:.0%} used and rising {trend.slope_per_s * 6000:.1f} %/min: "
            f"full in {duration(trend.eta_s)}"
        )
        return (self.code, "warning", summary, evidence)
