"""The built-in per-engine rules, each judging one observation against the engine's recent history:
ENGINE_DOWN, ENGINE_HUNG, HEALTH_LIES, METRICS_STALE / METRICS_UNREACHABLE, KV_PRESSURE, PREEMPTION_STORM,
QUEUE_GROWING, TTFT_SLO, CRASH_LOOP, HOST_RAM_LEAK, EXPOSED_LISTENER. :class:`EngineChecks` is the part
of :class:`~agents.alerts.engine.EngineRules` that holds them and the sample windows they read; the state
they read is kept by EngineRules."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import Any

from agents.alerts.observation import EngineObservation, ThresholdSettings
from agents.alerts.text import addr, exit_text, is_loopback, pending_kind_of, signal_name
from agents.schema import SERVING_STATES, wide_bucket
from agents.schema.units import age, duration

KV_PRESSURE_QUANTILE = 0.9  # KV_PRESSURE: this quantile of the window's KV samples at or above kv_pressure
STORM_MIN_PER_S = 0.2  # PREEMPTION_STORM: at least this many preemptions per second of the window ...
STORM_MIN_COUNT = 2  # ... and at least this many


class EngineChecks:
    """The rules and sample windows of :class:`~agents.alerts.engine.EngineRules` (which keeps the state)."""

    __slots__ = ()
    thresholds: ThresholdSettings
    _obs: deque[EngineObservation]
    _progress_t: float | None
    _moved_scrape_t: float | None
    _serving_since: float | None
    _down_since: float | None
    _scrape_fail_since: float | None

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
        how = exit_text(obs.exit_code, obs.exit_signal)
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
                "exit_signal": signal_name(obs.exit_signal),
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
        pending_kind = pending_kind_of(obs, running, waiting)
        pending = {
            "canary only": "only the canary is pending (the engine reports no requests)",
            "canary": "the canary is pending (request counts unknown)",
        }
        pending_text = pending.get(pending_kind, "with work pending")
        return (
            "ENGINE_HUNG",
            "critical",
            f"no token progress for {age(stalled)}; {pending_text}"
            if pending_kind != "requests"
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
                "canary_in_flight_s": None
                if obs.canary_in_flight_s is None
                else round(obs.canary_in_flight_s, 1),
                "health_http_status": obs.health_status,
            },
        )

    def _health_lies(self, obs: EngineObservation):
        if obs.state not in SERVING_STATES or obs.health_ok is not True:
            return None
        stuck = obs.canary_in_flight_s is not None and obs.canary_in_flight_s > self.thresholds.hung_after_s
        if obs.canary_ok is not False and not stuck:
            return None
        if self._saturated(obs, stuck):
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

    def _saturated(self, obs: EngineObservation, stuck: bool) -> bool:
        """The canary was only slow (it timed out, or is still waiting) while the engine's latest scrape,
        still fresh, shows its token counter moving: a saturated engine that queues the canary behind real
        work, not a health check that lies (QUEUE_GROWING and TTFT_SLO report saturation). A canary that
        failed any other way (an error answer, a refused connection, a stream without a token) always
        counts; so does a slow one once the scrapes stop or show the counter flat."""
        slow = stuck or (obs.canary_ok is False and obs.canary_timed_out_after_s is not None)
        scraped = obs.last_scrape_ok_t
        if not slow or scraped is None or self._moved_scrape_t != scraped:
            return False
        return obs.t - scraped < self.thresholds.metrics_stale_after_s

    def _metrics(self, obs: EngineObservation):
        if obs.state not in SERVING_STATES or obs.scrape.ok:
            self._scrape_fail_since = None
            return None
        self._scrape_fail_since = obs.t if self._scrape_fail_since is None else self._scrape_fail_since
        since_ok = obs.t - (
            obs.last_scrape_ok_t if obs.last_scrape_ok_t is not None else self._scrape_fail_since
        )
        if since_ok < self.thresholds.metrics_stale_after_s:
            return None  # the snapshot already marks the stats stale by their age; alert once it persists
        age = None if obs.last_scrape_ok_t is None else round(obs.t - obs.last_scrape_ok_t, 1)
        evidence = {
            "error": obs.scrape.error,
            "last_ok_age_s": age,
            "failing_for_s": round(obs.t - self._scrape_fail_since, 1),
        }
        if not obs.scrape.reachable:
            return (
                "METRICS_UNREACHABLE",
                "warning",
                f"metrics endpoint unreachable: {obs.scrape.error}",
                evidence,
            )
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
            f"KV cache ≥ {kv['threshold']:.0%} in {kv['samples_at_or_above']} of {kv['samples']} samples "
            f"over {age(span)} (max {kv['kv_max']:.0%}, p90 {kv['kv_p90']:.0%})",
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
        pressured = (
            kv is None or kv["kv_max"] >= self.thresholds.kv_pressure
        )  # engines without a KV gauge: count alone
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
            if (
                recent
                and o.last_scrape_ok_t is not None
                and o.last_scrape_ok_t == recent[-1].last_scrape_ok_t
            ):
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
        """TTFT p95 above target. A p95 interpolated in a wide bucket that holds the target (SGLang's first
        bucket is 0–100 ms) is not known to be above it: no alert until the bucket's lower bound is."""
        p95 = obs.stats.get("ttft_p95_s") if obs.scrape.ok else None
        target = self.thresholds.ttft_p95_s
        if p95 is None or p95 <= target:
            return None
        bucket = obs.quantile_buckets.get("ttft_p95_s")
        wide = bucket is not None and wide_bucket(bucket)
        if wide and bucket[0] < target:
            return None
        shown = duration(p95)
        if wide:
            lo, hi = bucket
            shown = (
                f">{duration(lo)}" if hi is None or hi == math.inf else f"in {duration(lo)}–{duration(hi)}"
            )
        return (
            "TTFT_SLO",
            "warning",
            f"TTFT p95 {shown} above target {duration(target)}",
            {
                "ttft_p95_s": p95,
                "target_s": target,
                "ttft_p50_s": obs.stats.get("ttft_p50_s"),
                "window_s": obs.stats.get("percentile_window_s"),
                "ttft_p95_bucket_s": list(bucket) if bucket is not None else None,
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
        pts = [
            (o.t, o.rss_bytes)
            for o in self._obs
            if o.rss_bytes is not None and o.state in SERVING_STATES and obs.t - o.t <= span
        ]
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
            {
                "rss_bytes": pts[-1][1],
                "mib_per_min": round(slope, 2),
                "span_s": round(pts[-1][0] - pts[0][0]),
            },
        )

    def _exposed(self, obs: EngineObservation):
        # listeners: (pid, ip, port) or (pid, ip, port, what) where the collector classified the port
        exposed = [tuple(item) for item in obs.listeners if not is_loopback(item[1])]
        if not exposed:
            return None
        rows = []
        for item in exposed:
            row: dict[str, Any] = {"pid": item[0], "ip": item[1], "port": item[2]}
            if len(item) > 3 and item[3]:
                row["what"] = item[3]
            rows.append(row)
        shown = ", ".join(
            f"{addr(r['ip'], r['port'])}"
            + (f" ({str(r['what']).split(' (', 1)[0].split(';', 1)[0]})" if "what" in r else "")
            for r in rows[:3]
        )
        more = f" and {len(rows) - 3} more" if len(rows) > 3 else ""
        return (
            "EXPOSED_LISTENER",
            "warning",
            f"{len(rows)} listener(s) on non-loopback addresses: {shown}{more}",
            {"listeners": rows},
        )


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
