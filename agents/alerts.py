"""Silent-failure rules: turn what the collector observed into alerts with evidence.

Pure and clock-free: every observation carries the monotonic time ``t`` it was taken at and the wall time
``wall`` used only for display (``since``). One ``EngineRules`` per supervised engine keeps the short
history the rules need; ``host_alerts`` evaluates host-level rules on one poll.

Rules never read a stale value as live: when the last scrape failed, rules that need live stats are not
evaluated (their alert is dropped) and METRICS_STALE / METRICS_UNREACHABLE says why.
"""

from __future__ import annotations

import ipaddress
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from agents.schema import SERVING_STATES, Alert


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


@dataclass(slots=True)
class _Active:
    since: str
    alert: Alert


@dataclass(slots=True)
class EngineRules:
    """Stateful evaluator for one engine; feed it one observation per collector tick."""

    thresholds: ThresholdSettings
    history_s: float = 900.0
    _obs: deque[EngineObservation] = field(default_factory=deque)
    _active: dict[str, _Active] = field(default_factory=dict)
    _progress_t: float | None = None  # last time the token counter moved (or work stopped being pending)
    _last_tokens: float | None = None
    _kv_since: float | None = None
    _storm_since: float | None = None
    _scrape_fail_since: float | None = None

    def evaluate(self, obs: EngineObservation) -> tuple[Alert, ...]:
        self._remember(obs)
        firing: dict[str, tuple[str, str, dict[str, Any]]] = {}
        for rule in (
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
        return self._settle(obs, firing)

    # --- bookkeeping -----------------------------------------------------------------------------
    def _remember(self, obs: EngineObservation) -> None:
        self._obs.append(obs)
        while self._obs and obs.t - self._obs[0].t > self.history_s:
            self._obs.popleft()
        if obs.state not in SERVING_STATES:
            self._progress_t = None
            self._last_tokens = None
            return
        moved = obs.tokens_total is not None and self._last_tokens is not None and obs.tokens_total != self._last_tokens
        if obs.tokens_total is not None:
            self._last_tokens = obs.tokens_total
        if self._progress_t is None or moved or not self._work_pending(obs):
            self._progress_t = obs.t

    def _settle(self, obs: EngineObservation, firing: Mapping[str, tuple[str, str, dict[str, Any]]]) -> tuple[Alert, ...]:
        for code in list(self._active):
            if code not in firing:
                del self._active[code]
        out = []
        for code, (severity, summary, evidence) in firing.items():
            since = self._active[code].since if code in self._active else obs.wall
            alert = Alert(code=code, severity=severity, since=since, summary=summary, evidence=evidence)
            self._active[code] = _Active(since, alert)
            out.append(alert)
        return tuple(sorted(out, key=_severity_key))

    @staticmethod
    def _work_pending(obs: EngineObservation) -> bool:
        running = obs.stats.get("requests_running") or 0
        waiting = obs.stats.get("requests_waiting") or 0
        canary_stuck = obs.canary_in_flight_s is not None or (obs.canary_ok is False)
        return (obs.scrape.ok and (running + waiting) > 0) or canary_stuck

    # --- rules: each returns (code, severity, summary, evidence) or None ------------------------------
    def _hung(self, obs: EngineObservation):
        if obs.state not in SERVING_STATES or self._progress_t is None or not self._work_pending(obs):
            return None
        stalled = obs.t - self._progress_t
        if stalled < self.thresholds.hung_after_s:
            return None
        return (
            "ENGINE_HUNG",
            "critical",
            f"no token progress for {stalled:.0f}s with work pending",
            {
                "no_progress_for_s": round(stalled, 1),
                "hung_after_s": self.thresholds.hung_after_s,
                "requests_running": obs.stats.get("requests_running") if obs.scrape.ok else None,
                "requests_waiting": obs.stats.get("requests_waiting") if obs.scrape.ok else None,
                "tokens_total": obs.tokens_total,
                "canary_error": obs.canary_error,
                "canary_in_flight_s": obs.canary_in_flight_s,
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
                "canary_error": obs.canary_error or f"in flight for {obs.canary_in_flight_s:.0f}s",
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
        kv = obs.stats.get("kv_cache_usage") if obs.scrape.ok else None
        if kv is None or kv < self.thresholds.kv_pressure:
            self._kv_since = None
            return None
        self._kv_since = obs.t if self._kv_since is None else self._kv_since
        held = obs.t - self._kv_since
        if held < self.thresholds.kv_pressure_for_s:
            return None
        return (
            "KV_PRESSURE",
            "warning",
            f"KV cache {kv:.0%} full for {held:.0f}s",
            {"kv_cache_usage": kv, "threshold": self.thresholds.kv_pressure, "for_s": round(held, 1)},
        )

    def _preemption_storm(self, obs: EngineObservation):
        rate = obs.stats.get("preemptions_per_s") if obs.scrape.ok else None
        kv = obs.stats.get("kv_cache_usage") if obs.scrape.ok else None
        pressured = kv is None or kv >= self.thresholds.kv_pressure  # engines without a KV gauge: rate alone
        if rate is None or rate <= 0 or not pressured:
            self._storm_since = None
            return None
        self._storm_since = obs.t if self._storm_since is None else self._storm_since
        held = obs.t - self._storm_since
        if held < self.thresholds.preemption_storm_for_s:
            return None
        return (
            "PREEMPTION_STORM",
            "warning",
            f"{rate:.2f} preemptions/s for {held:.0f}s under KV pressure",
            {"preemptions_per_s": rate, "kv_cache_usage": kv, "for_s": round(held, 1)},
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
            f"TTFT p95 {p95 * 1000:.0f} ms above target {self.thresholds.ttft_p95_s * 1000:.0f} ms",
            {"ttft_p95_s": p95, "target_s": self.thresholds.ttft_p95_s, "ttft_p50_s": obs.stats.get("ttft_p50_s")},
        )

    def _crash_loop(self, obs: EngineObservation):
        window = self.thresholds.crash_loop_window_s
        recent = [t for t in obs.restart_times if obs.t - t <= window]
        if len(recent) < self.thresholds.crash_loop_restarts:
            return None
        return (
            "CRASH_LOOP",
            "critical",
            f"{len(recent)} restarts in {window:.0f}s",
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
) -> tuple[Alert, ...]:
    """Host-level alerts from one GPU poll. ``previous`` (by code) keeps each alert's ``since``.
    ``state_errors``: engine id -> why its last state-file write failed (STATE_WRITE_FAILED)."""
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
    orphans = [
        {"gpu": g.index, "pid": pid, "mem_bytes": mem, "process": describe(pid)}
        for g in gpus
        for pid, mem in g.processes
        if pid not in known
    ]
    if orphans:
        held = sum(o["mem_bytes"] or 0 for o in orphans)
        found.append(
            (
                "ORPHAN_GPU_MEMORY",
                "critical",
                f"{len(orphans)} process(es) outside any supervised engine hold {held / 2**30:.1f} GiB of GPU memory",
                {"processes": orphans},
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
