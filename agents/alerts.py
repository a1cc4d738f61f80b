"""Silent-failure rules: turn what the collector observed into alerts with evidence.

Pure and clock-free: every observation carries the monotonic time ``t`` it was taken at and the wall time
``wall`` used only for display (``since``). One ``EngineRules`` per supervised engine keeps the short
history the rules need; ``host_alerts`` evaluates host-level rules on one poll.

Rules never read a stale value as live: when the last scrape failed, rules that need live stats are not
evaluated and METRICS_STALE / METRICS_UNREACHABLE says why.

Rules judge windows, not single samples: KV pressure from the share of KV samples at or above the threshold
over ``kv_pressure_for_s`` (vLLM's gauge swings between 0 and 100 % within seconds under a storm), a
preemption storm from the preemption count over ``preemption_storm_for_s``.

Hysteresis: an alert clears only after its condition was false for ``alert_clear_s`` (ENGINE_DOWN at once,
when the engine is ready again; the live-health alerts at once when the engine stops serving). ``since`` is
the first raise of the current episode; ``raised_count`` counts the raises within ``history_s`` (a
flapping condition reads as one alert with a count). ``firing`` holds the codes whose condition holds now:
the engine's state follows those, never a held alert.

``extra_rules``: further pure rules (agents/silent.py), each ``rule(obs, history, thresholds)`` returning
``(code, severity, summary, evidence)`` or None, evaluated with the built-ins under the same hysteresis.
"""

from __future__ import annotations

import ipaddress
import math
import signal as _signal
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from agents.schema import SERVING_STATES, Alert
from agents.schema.units import age, duration


class ThresholdSettings(Protocol):
    ttft_p95_s: float
    hung_after_s: float
    kv_pressure: float
    kv_pressure_for_s: float
    preemption_storm_for_s: float
    queue_growing_intervals: int
    crash_loop_restarts: int
    crash_loop_window_s: float
    metrics_stale_after_s: float
    ram_leak_mb_per_min: float
    ram_leak_window_s: float
    alert_clear_s: float


Finding = tuple[str, str, str, dict[str, Any]]  # (code, severity, summary, evidence)
Rule = Callable[["EngineObservation", Sequence["EngineObservation"], ThresholdSettings], Finding | None]

KV_PRESSURE_QUANTILE = 0.9  # KV_PRESSURE: this quantile of the window's KV samples at or above kv_pressure
STORM_MIN_PER_S = 0.2  # PREEMPTION_STORM: at least this many preemptions per second of the window ...
STORM_MIN_COUNT = 2  # ... and at least this many
# alerts that judge a serving engine's live health: they clear at once when it stops serving
_LIVE_CODES = frozenset({
    "ENGINE_HUNG", "HEALTH_LIES", "METRICS_STALE", "METRICS_UNREACHABLE", "KV_PRESSURE", "PREEMPTION_STORM",
    "QUEUE_GROWING", "TTFT_SLO", "HOST_RAM_LEAK",
})  # fmt: skip
_CLEAR_AT_ONCE = frozenset({"ENGINE_DOWN"})  # its end is an event (ready again), not a noisy condition
_STOPPED_BY_OPERATOR_FROM = frozenset({"exited", "backoff", "failed"})  # -> stopped: an operator stop


@dataclass(frozen=True, slots=True)
class ScrapeOutcome:
    ok: bool
    error: str | None = None
    reachable: bool = True  # False: no HTTP response at all (refused, reset, connect timeout)


@dataclass(frozen=True, slots=True)
class EngineObservation:
    """What the collector knows about one engine at one tick."""

    t: float  # monotonic seconds
    wall: str  # RFC 3339, for display only
    state: str  # supervisor state
    stats: Mapping[str, float | None]  # windowed stats; only meaningful when scrape.ok
    scrape: ScrapeOutcome
    tokens_total: float | None = None  # prompt + generation counter (cumulative): the progress marker
    last_scrape_ok_t: float | None = None
    health_ok: bool | None = None
    health_status: int | None = None
    canary_ok: bool | None = None  # result of the most recent finished canary
    canary_error: str | None = None
    canary_at: str | None = None
    canary_in_flight_s: float | None = None  # age of an unfinished canary
    restart_times: tuple[float, ...] = ()  # monotonic times of (re)starts after exits
    backoff_s: float | None = None
    rss_bytes: int | None = None
    listeners: tuple[tuple[int, str, int], ...] = ()  # (pid, ip, port) listening sockets of the tree
    # additive inputs of the silent-failure rules (None / () where the collector cannot see them)
    generation_tokens_total: float | None = None  # the engine's cumulative generation-token counter
    prompt_tokens_total: float | None = None  # the engine's cumulative prompt-token counter
    gpu_util_pct: tuple[float | None, ...] = ()  # utilization of the engine's GPUs (NVML), in its gpus order
    client_connections: int | None = None  # established TCP connections to the engine's port (/proc)
    golden: Mapping[str, Any] | None = None  # the golden canary's last verdict (agents/golden.py), if any
    preemptions_total: float | None = None  # the engine's cumulative preemption counter (PREEMPTION_STORM)
    health_error: str | None = None  # why the last health check failed
    exit_code: int | None = None  # the latest exit of the engine's process (ENGINE_DOWN); None: unknown
    exit_signal: int | None = None
    exited_t: float | None = None  # monotonic time of the latest recorded exit (the journal's "exited" event)


@dataclass(slots=True)
class _Active:
    since: str
    alert: Alert
    false_since: float | None = None  # monotonic time its condition stopped holding (hysteresis)


@dataclass(slots=True)
class EngineRules:
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
    _last_tokens: float | None = None
    _serving_since: float | None = None  # start of the current uninterrupted serving stretch
    _last_serving_t: float | None = None
    _prev_state: str | None = None
    _down_since: float | None = None  # ENGINE_DOWN: when the serving engine went down
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
            self._last_tokens = None
            self._serving_since = None
            return
        self._serving_since = obs.t if self._serving_since is None else self._serving_since
        self._last_serving_t = obs.t
        moved = obs.tokens_total is not None and self._last_tokens is not None and obs.tokens_total != self._last_tokens
        if obs.tokens_total is not None:
            self._last_tokens = obs.tokens_total
        if moved:
            self._moved_t = obs.t
        if self._progress_t is None or moved or not self._work_pending(obs):
            self._progress_t = obs.t

    def _track_down(self, obs: EngineObservation) -> None:
        prev, self._prev_state = self._prev_state, obs.state
        if obs.state in SERVING_STATES:
            self._down_since = None
        elif prev in SERVING_STATES and obs.state != "stopping":
            since = obs.t
            last = self._last_serving_t if self._last_serving_t is not None else -math.inf
            if obs.exited_t is not None and last - 1.0 <= obs.exited_t <= obs.t:
                since = obs.exited_t  # the supervisor saw the exit before this tick did
            self._down_since = since
        elif obs.state == "stopping" or (obs.state == "stopped" and prev in _STOPPED_BY_OPERATOR_FROM):
            self._down_since = None  # the operator took it down

    def _settle(self, obs: EngineObservation, firing: Mapping[str, tuple[str, str, dict[str, Any]]]) -> tuple[Alert, ...]:
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
            act.alert = Alert(code=code, severity=severity, since=act.since, summary=summary, evidence=evidence,
                              raised_count=self._raised(code, obs.t))  # fmt: skip
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
        return tuple(sorted(out, key=_severity_key))

    def _raised(self, code: str, now: float) -> int:
        raises = self._raises.get(code) or deque()
        while raises and now - raises[0] > self.history_s:
            raises.popleft()
        return max(1, len(raises))

    @staticmethod
    def _work_pending(obs: EngineObservation) -> bool:
        running = obs.stats.get("requests_running") or 0
        waiting = obs.stats.get("requests_waiting") or 0
        canary_stuck = obs.canary_in_flight_s is not None or (obs.canary_ok is False)
        return (obs.scrape.ok and (running + waiting) > 0) or canary_stuck

    def _samples(self, obs: EngineObservation, span: float) -> list[EngineObservation]:
        """The distinct successful scrapes of the last ``span`` seconds (a tick that carried the previous
        sample, its scrape still in flight, counts once), oldest first."""
        out: list[EngineObservation] = []
        for o in reversed(self._obs):
            if obs.t - o.t > span:
                break
            if not o.scrape.ok:
                continue
            if out and o.last_scrape_ok_t is not None and o.last_scrape_ok_t == out[-1].last_scrape_ok_t:
                continue
            out.append(o)
        out.reverse()
        return out

    def _covered(self, obs: EngineObservation, span: float) -> bool:
        """The engine has been serving for the whole of the last ``span`` seconds."""
        return self._serving_since is not None and obs.t - self._serving_since >= span

    def _kv_window(self, obs: EngineObservation, span: float) -> dict[str, Any] | None:
        """KV usage over the last ``span`` seconds: max, p90, samples at or above the threshold."""
        kvs = [kv for o in self._samples(obs, span) if (kv := o.stats.get("kv_cache_usage")) is not None]
        if not kvs:
            return None
        ranked = sorted(kvs)
        p90 = ranked[max(0, math.ceil(KV_PRESSURE_QUANTILE * len(ranked)) - 1)]
        return {
            "kv_max": max(kvs),
            "kv_p90": p90,
            "kv_now": kvs[-1],
            "samples": len(kvs),
            "samples_at_or_above": sum(1 for kv in kvs if kv >= self.thresholds.kv_pressure),
            "threshold": self.thresholds.kv_pressure,
            "window_s": span,
        }

    # --- rules: each returns (code, severity, summary, evidence) or None ------------------------------
    def _down(self, obs: EngineObservation):
        if self._down_since is None or obs.state in SERVING_STATES:
            return None
        down_for = max(0.0, obs.t - self._down_since)
        how = _exit_text(obs.exit_code, obs.exit_signal)
        restart_in = obs.backoff_s if obs.state == "backoff" else None
        if restart_in is not None:
            then = f"restart in {duration(restart_in)}"
        elif obs.state == "starting":
            then = "restarting, not ready yet"
        elif obs.state == "failed":
            then = "not restarted (failed)"
        else:
            then = obs.state
        return (
            "ENGINE_DOWN",
            "critical",
            f"engine down for {age(down_for)}: {how}; {then}",
            {
                "state": obs.state,
                "exit": how,
                "exit_code": obs.exit_code,
                "exit_signal": _signal_name(obs.exit_signal),
                "down_for_s": round(down_for, 1),
                "next_restart_in_s": None if restart_in is None else round(restart_in, 1),
            },
        )

    def _hung(self, obs: EngineObservation):
        if obs.state not in SERVING_STATES or self._progress_t is None or not self._work_pending(obs):
            return None
        stalled = obs.t - self._progress_t
        if stalled < self.thresholds.hung_after_s:
            return None
        running = obs.stats.get("requests_running") if obs.scrape.ok else None
        waiting = obs.stats.get("requests_waiting") if obs.scrape.ok else None
        pending_kind = _pending_kind(obs, running, waiting)
        pending = {
            "canary only": "only the canary is pending (the engine reports no requests)",
            "canary": "the canary is pending (request counts unknown)",
        }
        pending_text = pending.get(pending_kind, "with work pending")
        return (
            "ENGINE_HUNG",
            "critical",
            f"no token progress for {age(stalled)}; {pending_text}" if pending_kind != "requests"
            else f"no token progress for {age(stalled)} with work pending",
            {
                "no_progress_for_s": round(stalled, 1),
                "hung_after_s": self.thresholds.hung_after_s,
                "requests_running": running,
                "requests_waiting": waiting,
                "pending": pending_kind,
                "generation_tokens_total": obs.generation_tokens_total,
                "prompt_tokens_total": obs.prompt_tokens_total,
                "canary_error": obs.canary_error,
                "canary_in_flight_s": None if obs.canary_in_flight_s is None else round(obs.canary_in_flight_s, 1),
                "health_http_status": obs.health_status,
            },
        )

    def _health_lies(self, obs: EngineObservation):
        if obs.state not in SERVING_STATES or obs.health_ok is not True:
            return None
        stuck = obs.canary_in_flight_s is not None and obs.canary_in_flight_s > self.thresholds.hung_after_s
        if obs.canary_ok is not False and not stuck:
            return None
        return (
            "HEALTH_LIES",
            "critical",
            f"/health answers {obs.health_status} but the canary completion fails",
            {
                "health_http_status": obs.health_status,
                "canary_error": obs.canary_error or f"in flight for {age(obs.canary_in_flight_s)}",
                "canary_at": obs.canary_at,
            },
        )

    def _metrics(self, obs: EngineObservation):
        if obs.state not in SERVING_STATES or obs.scrape.ok:
            self._scrape_fail_since = None
            return None
        self._scrape_fail_since = obs.t if self._scrape_fail_since is None else self._scrape_fail_since
        since_ok = obs.t - (obs.last_scrape_ok_t if obs.last_scrape_ok_t is not None else self._scrape_fail_since)
        if since_ok < self.thresholds.metrics_stale_after_s:
            return None  # the snapshot already marks the stats stale by their age; alert once it persists
        age = None if obs.last_scrape_ok_t is None else round(obs.t - obs.last_scrape_ok_t, 1)
        evidence = {"error": obs.scrape.error, "last_ok_age_s": age, "failing_for_s": round(obs.t - self._scrape_fail_since, 1)}
        if not obs.scrape.reachable:
            return ("METRICS_UNREACHABLE", "warning", f"metrics endpoint unreachable: {obs.scrape.error}", evidence)
        return ("METRICS_STALE", "warning", f"metrics scrape failed: {obs.scrape.error}", evidence)

    def _kv_pressure(self, obs: EngineObservation):
        span = self.thresholds.kv_pressure_for_s
        if not obs.scrape.ok or not self._covered(obs, span):
            return None
        kv = self._kv_window(obs, span)
        if kv is None or kv["kv_p90"] < self.thresholds.kv_pressure:
            return None
        return (
            "KV_PRESSURE",
            "warning",
            f"KV cache ≥ {kv['threshold']:.0%} in {kv['samples_at_or_above']} of {kv['samples']} samples over "
            f"{age(span)} (max {kv['kv_max']:.0%}, p90 {kv['kv_p90']:.0%})",
            kv,
        )

    def _preemption_storm(self, obs: EngineObservation):
        span = self.thresholds.preemption_storm_for_s
        if not obs.scrape.ok or not self._covered(obs, span):
            return None
        samples = [o for o in self._samples(obs, max(span, 1e-9)) if o.preemptions_total is not None]
        if len(samples) < 2:
            return None
        count = 0.0
        for a, b in zip(samples, samples[1:], strict=False):
            step = b.preemptions_total - a.preemptions_total  # type: ignore[operator]
            count += b.preemptions_total if step < 0 else step  # type: ignore[operator]  # a reset
        measured = samples[-1].t - samples[0].t
        needed = max(STORM_MIN_COUNT, STORM_MIN_PER_S * span)
        kv = self._kv_window(obs, span)
        pressured = kv is None or kv["kv_max"] >= self.thresholds.kv_pressure  # engines without a KV gauge: count alone
        if count < needed or not pressured:
            return None
        evidence: dict[str, Any] = {
            "preemptions_in_window": count,
            "window_s": round(measured, 1),
            "preemptions_per_s": round(count / measured, 3) if measured > 0 else None,
            "min_preemptions": needed,
        }
        if kv is not None:
            evidence |= {"kv_max": kv["kv_max"], "kv_p90": kv["kv_p90"], "kv_threshold": kv["threshold"]}
        return (
            "PREEMPTION_STORM",
            "warning",
            f"{count:.0f} preemptions in {age(measured)} under KV pressure"
            + (f" (KV max {kv['kv_max']:.0%})" if kv is not None else ""),
            evidence,
        )

    def _queue_growing(self, obs: EngineObservation):
        n = self.thresholds.queue_growing_intervals
        recent: list[EngineObservation] = []  # the last n + 1 samples, newest first; all scrapes must be ok
        for o in reversed(self._obs):
            if not o.scrape.ok:
                return None
            if recent and o.last_scrape_ok_t is not None and o.last_scrape_ok_t == recent[-1].last_scrape_ok_t:
                continue  # a tick that carried the previous sample (its scrape was still in flight)
            recent.append(o)
            if len(recent) == n + 1:
                break
        if len(recent) < n + 1:
            return None
        recent.reverse()
        waits = [o.stats.get("requests_waiting") for o in recent]
        gens = [o.stats.get("generation_tokens_per_s") for o in recent]
        if any(w is None for w in waits) or not all(b > a for a, b in zip(waits, waits[1:], strict=False)):
            return None
        known = [g for g in gens if g is not None]
        if known and known[-1] > 1.1 * max(known[0], 1e-9) + 1.0:
            return None  # throughput is rising with the queue: the engine is catching up
        return (
            "QUEUE_GROWING",
            "warning",
            f"waiting requests rose {waits[0]:.0f}→{waits[-1]:.0f} over {n} intervals with flat throughput",
            {"requests_waiting": waits, "generation_tokens_per_s": gens},
        )

    def _ttft(self, obs: EngineObservation):
        p95 = obs.stats.get("ttft_p95_s") if obs.scrape.ok else None
        if p95 is None or p95 <= self.thresholds.ttft_p95_s:
            return None
        return (
            "TTFT_SLO",
            "warning",
            f"TTFT p95 {duration(p95)} above target {duration(self.thresholds.ttft_p95_s)}",
            {
                "ttft_p95_s": p95,
                "target_s": self.thresholds.ttft_p95_s,
                "ttft_p50_s": obs.stats.get("ttft_p50_s"),
                "window_s": obs.stats.get("percentile_window_s"),
            },
        )

    def _crash_loop(self, obs: EngineObservation):
        window = self.thresholds.crash_loop_window_s
        recent = [t for t in obs.restart_times if obs.t - t <= window]
        if len(recent) < self.thresholds.crash_loop_restarts:
            return None
        return (
            "CRASH_LOOP",
            "critical",
            f"{len(recent)} restarts in {age(window)}",
            {"restarts_in_window": len(recent), "window_s": window, "next_backoff_s": obs.backoff_s},
        )

    def _ram_leak(self, obs: EngineObservation):
        span = self.thresholds.ram_leak_window_s
        pts = [(o.t, o.rss_bytes) for o in self._obs if o.rss_bytes is not None and o.state in SERVING_STATES and obs.t - o.t <= span]
        if len(pts) < 10 or pts[-1][0] - pts[0][0] < span / 2:
            return None
        slope = _slope(pts) * 60 / 2**20  # MiB per minute
        gens = [o.stats.get("generation_tokens_per_s") for o in self._obs if o.scrape.ok]
        gens = [g for g in gens if g is not None]
        if slope <= self.thresholds.ram_leak_mb_per_min or not _flat(gens):
            return None
        return (
            "HOST_RAM_LEAK",
            "warning",
            f"engine RSS grows {slope:.1f} MiB/min at flat load",
            {"rss_bytes": pts[-1][1], "mib_per_min": round(slope, 2), "span_s": round(pts[-1][0] - pts[0][0])},
        )

    def _exposed(self, obs: EngineObservation):
        # listeners: (pid, ip, port) or (pid, ip, port, what) where the collector classified the port
        exposed = [tuple(item) for item in obs.listeners if not _is_loopback(item[1])]
        if not exposed:
            return None
        rows = []
        for item in exposed:
            row: dict[str, Any] = {"pid": item[0], "ip": item[1], "port": item[2]}
            if len(item) > 3 and item[3]:
                row["what"] = item[3]
            rows.append(row)
        shown = ", ".join(
            f"{_addr(r['ip'], r['port'])}" + (f" ({str(r['what']).split(' (', 1)[0].split(';', 1)[0]})" if "what" in r else "")
            for r in rows[:3]
        )
        more = f" and {len(rows) - 3} more" if len(rows) > 3 else ""
        return (
            "EXPOSED_LISTENER",
            "warning",
            f"{len(rows)} listener(s) on non-loopback addresses: {shown}{more}",
            {"listeners": rows},
        )


# --- host-level rules ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class GpuFacts:
    index: int
    ecc_uncorrected: int | None
    xid_last: int | None
    throttle_reasons: tuple[str, ...]
    processes: tuple[tuple[int, int | None], ...]  # (pid, mem_bytes)


THERMAL_REASONS = frozenset({"hw_thermal_slowdown", "sw_thermal_slowdown", "hw_power_brake_slowdown", "hw_slowdown"})


def host_alerts(
    gpus: Sequence[GpuFacts],
    supervised_pids: Iterable[int],
    wall: str,
    previous: Mapping[str, Alert] | None = None,
    describe=lambda pid: None,
    state_errors: Mapping[str, str] | None = None,
    unobserved: Sequence[str] = (),
    visible: Callable[[int], bool] = lambda pid: True,
) -> tuple[Alert, ...]:
    """Host-level alerts from one GPU poll. ``previous`` (by code) keeps each alert's ``since``.
    ``state_errors``: engine id -> why its last state-file write failed (STATE_WRITE_FAILED).
    ``unobserved``: watched engines whose owner process cannot be seen; ``visible(pid)``: the agent can see
    the process. A GPU process outside every known tree is an orphan only when the agent can see it and no
    watched engine's owner is hidden; otherwise its owner is "not visible" (evidence, never an orphan)."""
    known = set(supervised_pids)
    found: list[tuple[str, str, str, dict[str, Any]]] = []
    if state_errors:
        ids = sorted(state_errors)
        shown = ", ".join(ids[:3]) + (f" and {len(ids) - 3} more" if len(ids) > 3 else "")
        found.append(
            (
                "STATE_WRITE_FAILED",
                "critical",
                f"state file not written for {shown}: {state_errors[ids[0]]}",
                {"engines": [{"engine": eid, "reason": state_errors[eid]} for eid in ids]},
            )
        )
    orphans: list[dict[str, Any]] = []
    hidden: list[dict[str, Any]] = []
    for g in gpus:
        for pid, mem in g.processes:
            if pid in known:
                continue
            if unobserved or not visible(pid):
                hidden.append({"gpu": g.index, "pid": pid, "mem_bytes": mem, "owner": "not visible"})
            else:
                orphans.append({"gpu": g.index, "pid": pid, "mem_bytes": mem, "process": describe(pid)})
    if orphans:
        held = sum(o["mem_bytes"] or 0 for o in orphans)
        evidence: dict[str, Any] = {"processes": orphans}
        if hidden:
            evidence["owner_not_visible"] = hidden
            evidence["unobserved_engines"] = list(unobserved)
        found.append(
            (
                "ORPHAN_GPU_MEMORY",
                "critical",
                f"{len(orphans)} process(es) outside any supervised engine hold {held / 2**30:.1f} GiB of GPU memory",
                evidence,
            )
        )
    xids = [{"gpu": g.index, "xid": g.xid_last} for g in gpus if g.xid_last is not None]
    if xids:
        found.append(("GPU_XID", "critical", f"critical Xid event on GPU {xids[0]['gpu']}", {"events": xids}))
    ecc = [{"gpu": g.index, "ecc_uncorrected": g.ecc_uncorrected} for g in gpus if g.ecc_uncorrected]
    if ecc:
        found.append(("GPU_ECC", "critical", f"uncorrected ECC errors on GPU {ecc[0]['gpu']}", {"gpus": ecc}))
    hot = [
        {"gpu": g.index, "reasons": sorted(THERMAL_REASONS.intersection(g.throttle_reasons))}
        for g in gpus
        if THERMAL_REASONS.intersection(g.throttle_reasons)
    ]
    if hot:
        found.append(("GPU_THERMAL", "warning", f"GPU {hot[0]['gpu']} throttled: {', '.join(hot[0]['reasons'])}", {"gpus": hot}))
    prev = previous or {}
    alerts = [
        Alert(code=c, severity=s, since=prev[c].since if c in prev else wall, summary=m, evidence=e) for c, s, m, e in found
    ]
    return tuple(sorted(alerts, key=_severity_key))


# --- helpers -----------------------------------------------------------------------------------------
_SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2}


def _severity_key(alert: Alert) -> tuple[int, str]:
    return (_SEVERITY_RANK.get(alert.severity, 3), alert.code)


def _pending_kind(obs: EngineObservation, running: float | None, waiting: float | None) -> str:
    """What work is pending: "requests"; "canary only" (the engine's counts hold at most the agent's own
    canary); "canary" when the counts are unknown (no live scrape) and the canary is stuck."""
    canary = obs.canary_in_flight_s is not None or obs.canary_ok is False
    if not canary:
        return "requests"
    if not obs.scrape.ok or (running is None and waiting is None):
        return "canary"
    pending = (running or 0) + (waiting or 0)
    return "canary only" if pending <= (1 if obs.canary_in_flight_s is not None else 0) else "requests"


def _signal_name(sig: int | None) -> str | None:
    if sig is None:
        return None
    try:
        return _signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def _exit_text(code: int | None, sig: int | None) -> str:
    """"killed by SIGKILL", "exited 3", or "exit status unknown" (a process that was not the agent's child)."""
    if sig is not None:
        return f"killed by {_signal_name(sig)}"
    if code is not None:
        return f"exited {code}"
    return "exit status unknown"


def _addr(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip.split("%")[0]).is_loopback
    except ValueError:
        return False


def _slope(points: Sequence[tuple[float, float]]) -> float:
    n = len(points)
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    den = sum((t - mx) ** 2 for t, _ in points)
    return 0.0 if den == 0 else sum((t - mx) * (v - my) for t, v in points) / den


def _flat(values: Sequence[float]) -> bool:
    """Load is flat when throughput varies little around its mean (idle counts as flat)."""
    if len(values) < 2:
        return True
    mean = sum(values) / len(values)
    if mean < 1e-9:
        return True
    spread = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5
    return spread / mean < 0.25
