"""Progress-stall rules: ADMISSION_STALLED (requests wait while few or none run and generation crawls) and
FRONTEND_HUNG (the canary gets no answer while the engine reports nothing running or waiting)."""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from agents.schema.units import duration
from agents.silent.common import (
    Finding,
    Hold,
    Marker,
    SilentThresholds,
    is_serving,
    live_stat,
    num,
    progress_marker,
)

if TYPE_CHECKING:
    from agents.alerts import EngineObservation


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
    _hold: Hold = field(default_factory=Hold)
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
        if not is_serving(obs):
            self._reset(keep_peak=False)
            return None
        if obs.canary_at is not None and obs.canary_at != self._canary_at:
            self._canary_at = obs.canary_at
            if obs.canary_ok is True:
                self._canary_ok_t = obs.t  # a fresh request was admitted and answered
        if not obs.scrape.ok:
            return None
        running, waiting, kv = (
            live_stat(obs, k) for k in ("requests_running", "requests_waiting", "kv_cache_usage")
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
                live_stat(obs, "generation_tokens_per_s"),
                progress_marker(obs),
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
        kv = live_stat(obs, "kv_cache_usage")
        evidence: dict[str, Any] = {
            "requests_running": last.running,
            "requests_waiting": last.waiting,
            "peak_requests_running": self._peak,
            "kv_cache_usage": num(kv),
            "kv_pressure_threshold": thresholds.kv_pressure,
            "generation_tokens_per_s": num(rate),
            "rate_window_s": round(span, 1),
            "stalled_for_s": round(held, 1),
            "admission_stall_s": thresholds.admission_stall_s,
            "last_canary_ok_ago_s": None
            if self._canary_ok_t is None
            else round(obs.t - self._canary_ok_t, 1),
        }
        for key in ("requests_waiting_capacity", "requests_waiting_deferred"):
            value = live_stat(obs, key)
            if value is not None:
                evidence[key] = value
        kv_text = "KV n/a" if kv is None else f"KV {kv:.0%} used"
        summary = (
            f"{last.waiting:.0f} waiting, {last.running:.0f} running, {kv_text}, {rate:.2f} tok/s "
            f"for {duration(held)}: requests are not being admitted"
        )
        return (self.code, "critical", summary, evidence)


# --- FRONTEND_HUNG ----------------------------------------------------------------------------------------
_HTTP_ANSWER = re.compile(r"HTTP \d{3}\b")  # the canary's error when the engine answered with a status


@dataclass(slots=True)
class FrontendHung:
    code: ClassVar[str] = "FRONTEND_HUNG"
    in_flight_grace_s: float = 1.0
    _hold: Hold = field(default_factory=Hold)
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
        if not is_serving(obs):
            self._reset()
            return None
        if not obs.scrape.ok:
            return None
        running, waiting = live_stat(obs, "requests_running"), live_stat(obs, "requests_waiting")
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
            "canary_in_flight_s": num(obs.canary_in_flight_s, 1),
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
