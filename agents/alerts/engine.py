"""EngineRules: one engine's alert state machine. It keeps the short history, runs the built-in checks
(:mod:`agents.alerts.checks`) and the extra rules on each observation, and settles what fires into alerts
under hysteresis (see :mod:`agents.alerts`)."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from agents.alerts.checks import EngineChecks
from agents.alerts.observation import EngineObservation, Rule, ThresholdSettings
from agents.alerts.text import severity_key
from agents.schema import SERVING_STATES, Alert

# alerts that judge a serving engine's live health: they clear at once when it stops serving
_LIVE_CODES = frozenset(
    {
        "ENGINE_HUNG",
        "HEALTH_LIES",
        "METRICS_STALE",
        "METRICS_UNREACHABLE",
        "KV_PRESSURE",
        "PREEMPTION_STORM",
        "QUEUE_GROWING",
        "TTFT_SLO",
        "HOST_RAM_LEAK",
    }
)
_CLEAR_AT_ONCE = frozenset({"ENGINE_DOWN"})  # its end is an event (ready again), not a noisy condition
_STOPPED_BY_OPERATOR_FROM = frozenset({"exited", "backoff", "failed"})  # -> stopped: an operator stop


@dataclass(slots=True)
class _Active:
    since: str
    alert: Alert
    false_since: float | None = None  # monotonic time its condition stopped holding (hysteresis)


@dataclass(slots=True)
class EngineRules(EngineChecks):
    """Stateful evaluator for one engine; feed it one observation per collector tick."""

    thresholds: ThresholdSettings
    history_s: float = 900.0
    extra_rules: Sequence[Rule] = ()
    _obs: deque[EngineObservation] = field(default_factory=deque)
    _active: dict[str, _Active] = field(default_factory=dict)
    _raises: dict[str, deque[float]] = field(default_factory=dict)  # code -> monotonic times it was raised
    firing: frozenset[str] = frozenset()  # codes whose condition holds at the latest observation
    _progress_t: float | None = None  # last time the token counter moved (or work stopped being pending)
    _moved_t: float | None = None  # last time the token counter moved
    _moved_scrape_t: float | None = None  # the time of the scrape that last showed it moving
    _last_tokens: float | None = None
    _serving_since: float | None = None  # start of the current uninterrupted serving stretch
    _last_serving_t: float | None = None
    _prev_state: str | None = None
    _down_since: float | None = None  # ENGINE_DOWN: when the serving engine went down
    _exit_seen: float | None = None  # the journal's latest exit as of the previous observation
    _scrape_fail_since: float | None = None

    def evaluate(self, obs: EngineObservation) -> tuple[Alert, ...]:
        self._remember(obs)
        firing: dict[str, tuple[str, str, dict[str, Any]]] = {}
        for rule in (
            self._down,
            self._hung,
            self._health_lies,
            self._metrics,
            self._kv_pressure,
            self._preemption_storm,
            self._queue_growing,
            self._ttft,
            self._crash_loop,
            self._ram_leak,
            self._exposed,
        ):
            found = rule(obs)
            if found is not None:
                firing[found[0]] = found[1:]  # type: ignore[assignment]
        history = tuple(self._obs)
        for extra in self.extra_rules:
            found = extra(obs, history, self.thresholds)
            if found is not None:
                firing[found[0]] = found[1:]  # type: ignore[assignment]
        return self._settle(obs, firing)

    def progressing(self, obs: EngineObservation) -> bool:
        """The token counter moved within ``hung_after_s`` (probe safety: never hung, never restarted)."""
        return self._moved_t is not None and obs.t - self._moved_t < self.thresholds.hung_after_s

    def extra_value(self, name: str) -> Any:
        """The first non-None attribute ``name`` of the extra rules (e.g. ``kv_eta_s``), for the snapshot."""
        for rule in self.extra_rules:
            value = getattr(rule, name, None)
            if value is not None:
                return value
        return None

    # --- bookkeeping -----------------------------------------------------------------------------
    def _remember(self, obs: EngineObservation) -> None:
        self._obs.append(obs)
        while self._obs and obs.t - self._obs[0].t > self.history_s:
            self._obs.popleft()
        self._track_down(obs)
        if obs.state not in SERVING_STATES:
            self._progress_t = None
            self._moved_t = None
            self._moved_scrape_t = None
            self._last_tokens = None
            self._serving_since = None
            return
        self._serving_since = obs.t if self._serving_since is None else self._serving_since
        self._last_serving_t = obs.t
        moved = (
            obs.tokens_total is not None
            and self._last_tokens is not None
            and obs.tokens_total != self._last_tokens
        )
        if obs.tokens_total is not None:
            self._last_tokens = obs.tokens_total
        if moved:
            self._moved_t = obs.t
            self._moved_scrape_t = obs.last_scrape_ok_t
        if self._progress_t is None or moved or not self._work_pending(obs):
            self._progress_t = obs.t

    def _track_down(self, obs: EngineObservation) -> None:
        """Down: the engine left a serving state for anything but an operator stop. Either a tick saw it
        serving and the next one not, or the journal shows an exit from a serving state that no tick saw
        (it became ready and died between two ticks)."""
        prev, self._prev_state = self._prev_state, obs.state
        fresh_exit = obs.exited_t is not None and obs.exited_t != self._exit_seen
        self._exit_seen = obs.exited_t
        if obs.state in SERVING_STATES:
            self._down_since = None
        elif obs.state != "stopping" and (
            prev in SERVING_STATES or (fresh_exit and obs.exited_from in SERVING_STATES)
        ):
            since = obs.t
            last = self._last_serving_t if self._last_serving_t is not None else -math.inf
            if obs.exited_t is not None and last - 1.0 <= obs.exited_t <= obs.t:
                since = obs.exited_t  # the supervisor saw the exit before this tick did
            self._down_since = since
        elif obs.state == "stopping" or (obs.state == "stopped" and prev in _STOPPED_BY_OPERATOR_FROM):
            self._down_since = None  # the operator took it down

    def _settle(
        self, obs: EngineObservation, firing: Mapping[str, tuple[str, str, dict[str, Any]]]
    ) -> tuple[Alert, ...]:
        self.firing = frozenset(firing)
        clear_s = self.thresholds.alert_clear_s
        serving = obs.state in SERVING_STATES
        for code, (severity, summary, evidence) in firing.items():
            act = self._active.get(code)
            if act is None:
                raises = self._raises.setdefault(code, deque())
                raises.append(obs.t)
                act = self._active[code] = _Active(obs.wall, Alert(code=code, severity=severity))
            act.false_since = None
            act.alert = Alert(
                code=code,
                severity=severity,
                since=act.since,
                summary=summary,
                evidence=evidence,
                raised_count=self._raised(code, obs.t),
            )
        out = []
        for code, act in list(self._active.items()):
            if code not in firing:
                act.false_since = obs.t if act.false_since is None else act.false_since
                held = obs.t - act.false_since
                if held >= clear_s or code in _CLEAR_AT_ONCE or (not serving and code in _LIVE_CODES):
                    del self._active[code]
                    continue
                evidence = {**act.alert.evidence, "condition_false_for_s": round(held, 1)}
                act.alert = replace(act.alert, evidence=evidence, raised_count=self._raised(code, obs.t))
            out.append(act.alert)
        return tuple(sorted(out, key=severity_key))

    def _raised(self, code: str, now: float) -> int:
        raises = self._raises.get(code) or deque()
        while raises and now - raises[0] > self.history_s:
            raises.popleft()
        return max(1, len(raises))
