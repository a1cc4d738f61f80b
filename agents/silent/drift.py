"""LATENCY_DRIFT: TTFT p95 per load bin against the same bin's baseline, learned after the engine became
ready."""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from agents.schema.units import duration
from agents.silent.common import Finding, SilentThresholds, is_serving, live_stat

if TYPE_CHECKING:
    from agents.alerts import EngineObservation

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
        if not is_serving(obs):
            self._reset()
            return None
        if self._ready_t is None:
            self._ready_t = obs.t
        if not obs.scrape.ok:
            return None
        self._learn(obs, thresholds)
        span = min(
            self.window_s, thresholds.drift_baseline_s
        )  # never judged over more than the baseline took
        for recent in self._recent.values():
            while recent and recent[0][0] < obs.t - span:
                recent.popleft()
        return self._judge(thresholds)

    def _learn(self, obs: EngineObservation, thresholds: SilentThresholds) -> None:
        if obs.last_scrape_ok_t is not None and obs.last_scrape_ok_t == self._last_scrape_t:
            return  # the same scrape as last tick
        self._last_scrape_t = obs.last_scrape_ok_t
        p95, running = live_stat(obs, "ttft_p95_s"), live_stat(obs, "requests_running")
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
