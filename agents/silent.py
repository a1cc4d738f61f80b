"""Silent-failure rules: the engine answers 200 while its users get nothing, or get it ever slower.

Each rule is a small callable object, one per engine (it keeps the little state it needs), called once per
collector tick as ``rule(obs, history, thresholds)`` with ``history`` the recent observations oldest first
(``obs`` last). It returns ``(code, severity, summary, evidence)`` or None. Pure: no clock and no I/O;
every time is the observation's monotonic ``t``. :func:`default_rules` builds a fresh set for one engine.

Shared conventions:

* Stats are only read from a good scrape. A failed scrape makes a rule that needs them answer None for
  that tick without forgetting how long its condition has held (METRICS_STALE says why); a gap longer than
  the rule's own bound starts the count again.
* *Progress* is any change of the engine's cumulative counters: ``generation_tokens_total``,
  ``prompt_tokens_total`` and the collector's broader ``tokens_total`` marker (which also moves with
  histogram observations, so engines that count tokens only when a request finishes still show work).
* Leaving the serving states forgets everything: a restarted engine starts from scratch.

The rules, their conditions and evidence:

ADMISSION_STALLED (critical)
    requests wait, few or none run (none, or fewer than the most this engine has run and at most
    ``few_running`` or a quarter of that peak), KV below ``kv_pressure`` on every sample (else it is
    KV_PRESSURE), for ``admission_stall_s``; over that window generation ran under
    ``min_tokens_per_s_per_running`` tok/s per running request, the running count did not rise, no canary
    completed, and the scheduler is alive (its gauges or counters moved: a frozen engine is ENGINE_HUNG).
GPU_WEDGED (critical)
    every GPU of the engine at ≥ ``busy_pct`` % utilization while requests run and nothing progresses,
    for ``gpu_wedge_s``.
RANK_DIVERGENCE (critical)
    an engine on two or more GPUs, one at ≥ ``busy_pct`` % and another under ``idle_pct`` %, with work
    pending and no progress, for ``rank_divergence_s``.
FRONTEND_HUNG (critical)
    the canary fails without an HTTP answer (timeout, no response) or stays in flight, while a good
    scrape shows nothing running and nothing waiting and ``/health`` answers OK, for ``frontend_hang_s``.
LATENCY_DRIFT (warning)
    TTFT p95 in a load bin (requests running 0-1, 2-3, 4-7, 8-15, 16+) reaches ``drift_factor`` × the
    same bin's baseline, learned over the first ``drift_baseline_s`` after the engine became ready; the
    current p95 is the median over the last ``window_s`` (300 s, or ``drift_baseline_s`` if shorter: a drift
    that ended stops counting as soon as it has left a window as long as the baseline's); both
    need ``min_samples`` samples (medians compared), and the rise must be at least ``min_increase_s``
    (a p95 read from histogram buckets can move by a bucket, up to 2×, on noise).
KV_EXHAUSTION_ETA (warning)
    KV usage trends up (Theil–Sen slope over the last ``window_s``, most pairs rising): seconds to 100 %
    under ``kv_eta_warn_s``. ``eta_s`` holds the estimate every tick, alert or not (None: flat, falling,
    too few samples) for the fleet row.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from agents.schema import SERVING_STATES
from agents.schema.units import duration

if TYPE_CHECKING:
    from agents.alerts import EngineObservation

Finding = tuple[str, str, str, dict[str, Any]]  # (code, severity, summary, evidence)
Marker = tuple[float | None, float | None, float | None]


class SilentThresholds(Protocol):
    kv_pressure: float
    admission_stall_s: float
    gpu_wedge_s: float
    rank_divergence_s: float
    frontend_hang_s: float
    drift_factor: float
    drift_baseline_s: float
    kv_eta_warn_s: float


class SilentRule(Protocol):
    code: ClassVar[str]

    def __call__(
        self, obs: EngineObservation, history: Sequence[EngineObservation], thresholds: SilentThresholds
    ) -> Finding | None: ...


# --- shared helpers --------------------------------------------------------------------------------------
def _serving(obs: EngineObservation) -> bool:
    return obs.state in SERVING_STATES


def _stat(obs: EngineObservation, key: str) -> float | None:
    value = obs.stats.get(key) if obs.scrape.ok else None
    return value if value is not None and math.isfinite(value) else None


def _marker(obs: EngineObservation) -> Marker:
    return (obs.generation_tokens_total, obs.prompt_tokens_total, obs.tokens_total)


def _num(value: float | None, nd: int = 3) -> float | None:
    return None if value is None else round(value, nd)


def _pct(values: Sequence[float | None]) -> list[float | None]:
    return [None if v is None else round(v, 1) for v in values]


def _canary_stuck(obs: EngineObservation) -> bool:
    return obs.canary_in_flight_s is not None or obs.canary_ok is False


@dataclass(slots=True)
class _Hold:
    """How long a condition has held: started at ``since``, last seen true at ``seen``."""

    since: float | None = None
    seen: float | None = None

    def hold(self, t: float, max_gap: float) -> float:
        if self.since is None or self.seen is None or t - self.seen > max_gap:
            self.since = t
        self.seen = t
        return t - self.since

    def reset(self) -> None:
        self.since = self.seen = None


# --- ADMISSION_STALLED -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _AdmissionSample:
    t: float
    running: float
    waiting: float
    generation_total: float | None
    generation_per_s: float | None
    marker: Marker


@dataclass(slots=True)
class AdmissionStalled:
    code: ClassVar[str] = "ADMISSION_STALLED"
    few_running: float = 4.0
    peak_share: float = 0.25
    min_tokens_per_s_per_running: float = 1.0
    _peak: float = 0.0
    _hold: _Hold = field(default_factory=_Hold)
    _window: deque[_AdmissionSample] = field(default_factory=deque)
    _canary_at: str | None = None
    _canary_ok_t: float | None = None

    def _reset(self, keep_peak: bool) -> None:
        self._hold.reset()
        self._window.clear()
        if not keep_peak:
            self._peak = 0.0
            self._canary_at = None
            self._canary_ok_t = None

    def _few(self, running: float) -> bool:
        if running <= 0:
            return True
        return running < self._peak and (
            running <= self.few_running or running <= self.peak_share * self._peak
        )

    def __call__(
        self, obs: EngineObservation, history: Sequence[EngineObservation], thresholds: SilentThresholds
    ) -> Finding | None:
        if not _serving(obs):
            self._reset(keep_peak=False)
            return None
        if obs.canary_at is not None and obs.canary_at != self._canary_at:
            self._canary_at = obs.canary_at
            if obs.canary_ok is True:
                self._canary_ok_t = obs.t  # a fresh request was admitted and answered
        if not obs.scrape.ok:
            return None
        running, waiting, kv = (
            _stat(obs, k) for k in ("requests_running", "requests_waiting", "kv_cache_usage")
        )
        if running is not None:
            self._peak = max(self._peak, running)
        stalled_now = (
            running is not None
            and waiting is not None
            and waiting > 0
            and running < waiting
            and self._few(running)
            and (kv is None or kv < thresholds.kv_pressure)
        )
        if not stalled_now:
            self._reset(keep_peak=True)
            return None
        span_s = thresholds.admission_stall_s
        held = self._hold.hold(obs.t, span_s)
        if held == 0:
            self._window.clear()
        self._window.append(
            _AdmissionSample(
                obs.t,
                running,
                waiting,
                obs.generation_tokens_total,
                _stat(obs, "generation_tokens_per_s"),
                _marker(obs),
            )
        )
        while len(self._window) > 1 and self._window[1].t <= obs.t - span_s:
            self._window.popleft()  # keep one sample at or before the window's start
        if held < span_s:
            return None
        return self._judge(obs, thresholds, held)

    def _judge(self, obs: EngineObservation, thresholds: SilentThresholds, held: float) -> Finding | None:
        window = list(self._window)
        first, last = window[0], window[-1]
        span = last.t - first.t
        if span <= 0:
            return None
        if first.generation_total is not None and last.generation_total is not None:
            if last.generation_total < first.generation_total:
                return None  # the counter went back: a restart, not a stall
            rate = (last.generation_total - first.generation_total) / span
        else:
            rates = [s.generation_per_s for s in window if s.generation_per_s is not None]
            if not rates:
                return None  # no measure of work done: no judgement
            rate = sum(rates) / len(rates)
        most_running = max(s.running for s in window)
        if rate >= self.min_tokens_per_s_per_running * max(1.0, most_running):
            return None  # requests are being served
        if last.running > first.running:
            return None  # admission is moving
        if self._canary_ok_t is not None and self._canary_ok_t > obs.t - thresholds.admission_stall_s:
            return None  # a canary got in and out within the window
        alive = last.marker != first.marker or len({(s.running, s.waiting) for s in window}) > 1
        if not alive:
            return None  # nothing moves at all: ENGINE_HUNG's case
        kv = _stat(obs, "kv_cache_usage")
        evidence: dict[str, Any] = {
            "requests_running": last.running,
            "requests_waiting": last.waiting,
            "peak_requests_running": self._peak,
            "kv_cache_usage": _num(kv),
            "kv_pressure_threshold": thresholds.kv_pressure,
            "generation_tokens_per_s": _num(rate),
            "rate_window_s": round(span, 1),
            "stalled_for_s": round(held, 1),
            "admission_stall_s": thresholds.admission_stall_s,
            "last_canary_ok_ago_s": None
            if self._canary_ok_t is None
            else round(obs.t - self._canary_ok_t, 1),
        }
        for key in ("requests_waiting_capacity", "requests_waiting_deferred"):
            value = _stat(obs, key)
            if value is not None:
                evidence[key] = value
        kv_text = "KV n/a" if kv is None else f"KV {kv:.0%} used"
        summary = (
            f"{last.waiting:.0f} waiting, {last.running:.0f} running, {kv_text}, {rate:.2f} tok/s "
            f"for {duration(held)}: requests are not being admitted"
        )
        return (self.code, "critical", summary, evidence)


# --- GPU_WEDGED / RANK_DIVERGENCE --------------------------------------------------------------------------
@dataclass(slots=True)
class _NoProgress:
    """How long a condition has held without any counter moving."""

    hold: _Hold = field(default_factory=_Hold)
    start: Marker | None = None

    def held(self, obs: EngineObservation, max_gap: float) -> float | None:
        marker = _marker(obs)
        if all(v is None for v in marker):
            self.reset()
            return None  # no counter to judge progress by
        if marker != self.start:
            self.hold.reset()
            self.start = marker
        return self.hold.hold(obs.t, max_gap)

    def reset(self) -> None:
        self.hold.reset()
        self.start = None


def _progress_evidence(obs: EngineObservation, held: float) -> dict[str, Any]:
    return {
        "generation_tokens_total": obs.generation_tokens_total,
        "prompt_tokens_total": obs.prompt_tokens_total,
        "no_progress_for_s": round(held, 1),
    }


@dataclass(slots=True)
class GpuWedged:
    code: ClassVar[str] = "GPU_WEDGED"
    busy_pct: float = 90.0
    _still: _NoProgress = field(default_factory=_NoProgress)

    def __call__(
        self, obs: EngineObservation, history: Sequence[EngineObservation], thresholds: SilentThresholds
    ) -> Finding | None:
        util = obs.gpu_util_pct
        if not _serving(obs) or not util or any(u is None for u in util):
            self._still.reset()
            return None
        if not obs.scrape.ok:
            return None
        running = _stat(obs, "requests_running")
        if running is None or running <= 0 or min(u for u in util if u is not None) < self.busy_pct:
            self._still.reset()
            return None
        held = self._still.held(obs, thresholds.gpu_wedge_s)
        if held is None or held < thresholds.gpu_wedge_s:
            return None
        evidence = {
            "gpu_util_pct": _pct(util),
            "busy_pct": self.busy_pct,
            "requests_running": running,
            **_progress_evidence(obs, held),
            "gpu_wedge_s": thresholds.gpu_wedge_s,
        }
        summary = (
            f"{'GPU' if len(util) == 1 else f'all {len(util)} GPUs'} ≥ {self.busy_pct:.0f} % busy with "
            f"{running:.0f} running and no token progress for {duration(held)}"
        )
        return (self.code, "critical", summary, evidence)


@dataclass(slots=True)
class RankDivergence:
    code: ClassVar[str] = "RANK_DIVERGENCE"
    busy_pct: float = 90.0
    idle_pct: float = 10.0
    _still: _NoProgress = field(default_factory=_NoProgress)

    def __call__(
        self, obs: EngineObservation, history: Sequence[EngineObservation], thresholds: SilentThresholds
    ) -> Finding | None:
        util = obs.gpu_util_pct
        known = [u for u in util if u is not None]
        if not _serving(obs) or len(known) < 2:
            self._still.reset()
            return None
        running, waiting = _stat(obs, "requests_running"), _stat(obs, "requests_waiting")
        queued = None if not obs.scrape.ok else (running or 0) + (waiting or 0)
        if queued is None and not _canary_stuck(obs):
            return None  # work unknown this tick
        pending = (queued or 0) > 0 or _canary_stuck(obs)
        if not pending or max(known) < self.busy_pct or min(known) >= self.idle_pct:
            self._still.reset()
            return None
        held = self._still.held(obs, thresholds.rank_divergence_s)
        if held is None or held < thresholds.rank_divergence_s:
            return None
        busy = [i for i, u in enumerate(util) if u is not None and u >= self.busy_pct]
        idle = [i for i, u in enumerate(util) if u is not None and u < self.idle_pct]
        evidence = {
            "gpu_util_pct": _pct(util),
            "busy_positions": busy,  # positions in the engine's gpus list
            "idle_positions": idle,
            "busy_pct": self.busy_pct,
            "idle_pct": self.idle_pct,
            "requests_running": running,
            "requests_waiting": waiting,
            **_progress_evidence(obs, held),
            "rank_divergence_s": thresholds.rank_divergence_s,
        }
        summary = (
            f"GPU utilization diverges across the engine's {len(util)} GPUs ({max(known):.0f} % vs "
            f"{min(known):.0f} %) with no token progress for {duration(held)}: a collective hang"
        )
        return (self.code, "critical", summary, evidence)


# --- FRONTEND_HUNG ----------------------------------------------------------------------------------------
_HTTP_ANSWER = re.compile(r"HTTP \d{3}\b")  # the canary's error when the engine answered with a status


@dataclass(slots=True)
class FrontendHung:
    code: ClassVar[str] = "FRONTEND_HUNG"
    in_flight_grace_s: float = 1.0
    _hold: _Hold = field(default_factory=_Hold)
    _excess_min: int | None = None

    def _canary_failing(self, obs: EngineObservation) -> bool:
        unanswered = obs.canary_ok is False and not _HTTP_ANSWER.match(obs.canary_error or "")
        in_flight = obs.canary_in_flight_s is not None and obs.canary_in_flight_s >= self.in_flight_grace_s
        return unanswered or in_flight

    def _reset(self) -> None:
        self._hold.reset()
        self._excess_min = None

    def __call__(
        self, obs: EngineObservation, history: Sequence[EngineObservation], thresholds: SilentThresholds
    ) -> Finding | None:
        if not _serving(obs):
            self._reset()
            return None
        if not obs.scrape.ok:
            return None
        running, waiting = _stat(obs, "requests_running"), _stat(obs, "requests_waiting")
        idle = running == 0 and waiting == 0
        if not idle or obs.health_ok is not True or not self._canary_failing(obs):
            self._reset()
            return None
        held = self._hold.hold(obs.t, thresholds.frontend_hang_s)
        if held == 0:
            self._excess_min = None
        conns = obs.client_connections
        if conns is not None:
            excess = conns - int(running or 0) - int(waiting or 0)  # both 0 here: every connection is excess
            self._excess_min = excess if self._excess_min is None else min(self._excess_min, excess)
        if held < thresholds.frontend_hang_s:
            return None
        evidence = {
            "canary_error": obs.canary_error,
            "canary_in_flight_s": _num(obs.canary_in_flight_s, 1),
            "health_http_status": obs.health_status,
            "requests_running": running,
            "requests_waiting": waiting,
            "client_connections": conns,  # established TCP connections to the engine's port
            "connections_excess_min": self._excess_min,  # least excess over running + waiting while it held
            "hung_for_s": round(held, 1),
            "frontend_hang_s": thresholds.frontend_hang_s,
        }
        conn_text = "" if conns is None else f", {conns} client connection(s) open"
        summary = (
            f"canary gets no answer while the engine reports 0 running and 0 waiting and /health is OK "
            f"for {duration(held)}{conn_text}: requests never reach the scheduler"
        )
        return (self.code, "critical", summary, evidence)


# --- LATENCY_DRIFT ----------------------------------------------------------------------------------------
LOAD_BINS: tuple[tuple[int, int | None], ...] = ((0, 1), (2, 3), (4, 7), (8, 15), (16, None))


def load_bin(running: float) -> int:
    """The index in LOAD_BINS of a running-request count."""
    n = max(0, int(running))
    for i, (lo, hi) in enumerate(LOAD_BINS):
        if n >= lo and (hi is None or n <= hi):
            return i
    return len(LOAD_BINS) - 1


def bin_label(index: int) -> str:
    lo, hi = LOAD_BINS[index]
    return f"{lo}+" if hi is None else f"{lo}-{hi}"


@dataclass(slots=True)
class LatencyDrift:
    code: ClassVar[str] = "LATENCY_DRIFT"
    window_s: float = 300.0  # the current window compared with the baseline (at most drift_baseline_s)
    min_samples: int = 5
    min_increase_s: float = 0.05
    max_baseline_samples: int = 4096
    _ready_t: float | None = None
    _last_restart: float | None = None
    _last_scrape_t: float | None = None
    _baseline: dict[int, deque[float]] = field(default_factory=dict)
    _recent: dict[int, deque[tuple[float, float]]] = field(default_factory=dict)

    def _reset(self) -> None:
        self._ready_t = None
        self._last_scrape_t = None
        self._baseline.clear()
        self._recent.clear()

    def __call__(
        self, obs: EngineObservation, history: Sequence[EngineObservation], thresholds: SilentThresholds
    ) -> Finding | None:
        latest = max(obs.restart_times, default=None)  # the tuple also loses old entries: compare the newest
        if latest is not None and (self._last_restart is None or latest > self._last_restart):
            self._last_restart = latest
            self._reset()
        if not _serving(obs):
            self._reset()
            return None
        if self._ready_t is None:
            self._ready_t = obs.t
        if not obs.scrape.ok:
            return None
        self._learn(obs, thresholds)
        span = min(self.window_s, thresholds.drift_baseline_s)  # never judged over more than the baseline took
        for recent in self._recent.values():
            while recent and recent[0][0] < obs.t - span:
                recent.popleft()
        return self._judge(thresholds)

    def _learn(self, obs: EngineObservation, thresholds: SilentThresholds) -> None:
        if obs.last_scrape_ok_t is not None and obs.last_scrape_ok_t == self._last_scrape_t:
            return  # the same scrape as last tick
        self._last_scrape_t = obs.last_scrape_ok_t
        p95, running = _stat(obs, "ttft_p95_s"), _stat(obs, "requests_running")
        if p95 is None or running is None or self._ready_t is None:
            return
        index = load_bin(running)
        if obs.t - self._ready_t <= thresholds.drift_baseline_s:
            if obs.state == "ready":  # learn only from a healthy engine
                self._baseline.setdefault(index, deque(maxlen=self.max_baseline_samples)).append(p95)
        else:
            self._recent.setdefault(index, deque()).append((obs.t, p95))

    def _judge(self, thresholds: SilentThresholds) -> Finding | None:
        worst: tuple[float, int, float, float] | None = None
        for index, recent in self._recent.items():
            base = self._baseline.get(index)
            if base is None or len(base) < self.min_samples or len(recent) < self.min_samples:
                continue
            reference = statistics.median(base)
            current = statistics.median(p for _, p in recent)
            if reference <= 0 or current < thresholds.drift_factor * reference:
                continue
            if current - reference < self.min_increase_s:
                continue
            ratio = current / reference
            if worst is None or ratio > worst[0]:
                worst = (ratio, index, current, reference)
        if worst is None:
            return None
        ratio, index, current, reference = worst
        evidence = {
            "requests_running_bin": bin_label(index),
            "ttft_p95_s": round(current, 4),  # median of the window's p95 samples
            "baseline_ttft_p95_s": round(reference, 4),
            "ratio": round(ratio, 2),
            "drift_factor": thresholds.drift_factor,
            "samples": len(self._recent[index]),
            "baseline_samples": len(self._baseline[index]),
            "window_s": min(self.window_s, thresholds.drift_baseline_s),
            "drift_baseline_s": thresholds.drift_baseline_s,
        }
        summary = (
            f"TTFT p95 {duration(current)} at {bin_label(index)} running is {ratio:.1f}× its baseline "
            f"{duration(reference)} from after ready"
        )
        return (self.code, "warning", summary, evidence)


# --- KV_EXHAUSTION_ETA -------------------------------------------------------------------------------------
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
        if o.t < end - window_s or not _serving(o):
            break
        kv = _stat(o, "kv_cache_usage")
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
        trend = kv_trend(history, self.window_s) if _serving(obs) and obs.scrape.ok else None
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


# --- the set ------------------------------------------------------------------------------------------------
def default_rules() -> tuple[SilentRule, ...]:
    """A fresh set of the silent-failure rules for one engine (they keep per-engine state)."""
    return (
        AdmissionStalled(),
        GpuWedged(),
        RankDivergence(),
        FrontendHung(),
        LatencyDrift(),
        KvExhaustionEta(),
    )


def eta_of(rules: Sequence[object]) -> float | None:
    """The KV ETA held by the KvExhaustionEta among ``rules`` (None when there is none or no estimate)."""
    return next((r.eta_s for r in rules if isinstance(r, KvExhaustionEta)), None)


__all__ = [
    "LOAD_BINS",
    "AdmissionStalled",
    "Finding",
    "FrontendHung",
    "GpuWedged",
    "KvExhaustionEta",
    "KvTrend",
    "LatencyDrift",
    "RankDivergence",
    "SilentRule",
    "SilentThresholds",
    "bin_label",
    "default_rules",
    "eta_of",
    "kv_eta_s",
    "kv_trend",
    "load_bin",
    "theil_sen",
]
