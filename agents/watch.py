"""EngineWatch: everything the agent observes about one supervised engine, turned into an EngineSnapshot.

Per collector tick it starts a scrape of the engine's ``/metrics`` (total deadline, byte cap, all or
nothing) and a check of its health endpoint (deadline), keeps a canary (a 1-token streaming completion with
a hard timeout, every ``canary_interval_s`` while the engine serves: agents/watch_canary.py), feeds the
stats window and the alert rules, and tells the supervisor when health moves the engine between ready /
degraded / hung.

Probes never hold the host's tick: each runs as its own task on its own deadline, at most one of each kind
in flight. A tick waits for them at most ``PROBE_BUDGET`` × ``interval_s``; a probe still running then
keeps running, the snapshot carries the previous result, and the probe's outcome (its answer, or "no
complete response within …" when its deadline passes) lands in the next tick. So a hung engine costs the
host a bounded wait per tick, never its own deadlines.

Rates come from the last few scrapes (``RATE_WINDOW_S``, at least two intervals), percentiles and window
counts from ``stats_window_s`` (agents/metrics/window.py). The engine's state follows the alert conditions
that hold now (``EngineRules.firing``), never an alert held for hysteresis, and its reasons carry no live
counters (one history line per transition). Probe safety: while the token counters advance, a failing
/health degrades the engine with the reason ``health_failing_but_progressing: …`` and never makes it hung.
Per tick the collector hands in the host's GPU utilization (the engine's ``gpus`` are picked from it) and
the client connections to the engine's port; extra rules' estimates (``kv_eta_s``) reach the snapshot.

The watch also owns the engine's exposure audit and its cadence (agents/exposure_watch.py); the collector
only runs the audit's blocking read in its per-tick worker thread.

All HTTP goes through the agent's one small keep-alive client (agents/http1.py): the scrape and health
GETs, the readiness gate and the canary's streaming POST. The runtime builds the engine's adapter and
launch spec once and hands them in. Engine differences come from the adapter; nothing here branches on the
engine's kind.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from agents import bundle_scrapes, stacks
from agents.alerts import EngineObservation, EngineRules, Rule, ScrapeOutcome
from agents.benchmarks import BenchmarkBook
from agents.config import AgentConfig, EngineConfig
from agents.engines.base import EngineAdapter, LaunchSpec, Reading
from agents.exposure_watch import ExposureWatch
from agents.http1 import Http1Client
from agents.metrics.parse import parse
from agents.metrics.window import RATE_WINDOW_S, Window
from agents.schema import (
    Alert,
    EngineEvent,
    EngineSnapshot,
    EngineStats,
    Health,
    LastExit,
    Loading,
    QuantileBucket,
    rfc3339,
)
from agents.scrape import fetch
from agents.supervisor import EngineSupervisor
from agents.watch_canary import CanaryProbe
from agents.watch_extras import EngineExtras

SERVING = frozenset({"ready", "degraded", "hung"})
_PARSE_INLINE_BYTES = 256 * 1024  # bigger bodies are parsed in a worker thread
HEALTH_MAX_BYTES = 64 * 1024
PROBE_BUDGET = 0.25  # of interval_s: the longest a tick waits for this engine's probes
NOT_SERVING = ScrapeOutcome(ok=False, error="engine not serving", reachable=False)
FIRST_SCRAPE_PENDING = ScrapeOutcome(ok=False, error="first scrape still in flight", reachable=True)
AUDIT_LOG_LINES = 1000  # log lines searched for the engine's version


@dataclass(frozen=True, slots=True)
class _Scraped:
    """One finished scrape, not yet applied: ``t`` is the monotonic time it was started at."""

    t: float
    outcome: ScrapeOutcome
    reading: Reading | None = None
    simulated: bool = False


class EngineWatch:
    def __init__(
        self,
        config: EngineConfig,
        agent: AgentConfig,
        supervisor: EngineSupervisor,
        adapter: EngineAdapter,
        spec: LaunchSpec,
        http: Http1Client,
        clock: Callable[[], float] = time.monotonic,
        extra_rules: Sequence[Rule] = (),
        benchmarks: BenchmarkBook | None = None,
    ) -> None:
        # ``adapter`` and ``spec`` are the ones the runtime built the launch with; ``http`` is the agent's
        # one keep-alive client (scrape, health, canary). ``extra_rules``: further alert rules
        # (agents/silent/), evaluated with the built-ins (agents/alerts/).
        self.config, self.agent, self.supervisor, self.http = config, agent, supervisor, http
        self.clock = clock
        self.benchmarks = benchmarks  # benchmarks announced through the API (agents/benchmarks.py)
        self.adapter = adapter
        self.spec = spec
        self.exposure = ExposureWatch.of(config, supervisor.plan, adapter.metrics_url(spec))
        self.extras = EngineExtras(
            config, agent, adapter, spec, http
        )  # silent rules, golden canary, SLO burn
        rules = (*self.extras.rules(), *extra_rules)
        self.rules = EngineRules(agent.thresholds, history_s=agent.history_s, extra_rules=rules)
        # rates over the last few scrapes, percentiles and window counts over stats_window_s
        self.window = Window(agent.stats_window_s, rate_window_s=max(RATE_WINDOW_S, 2 * agent.interval_s))
        self.alerts: tuple[Alert, ...] = ()
        self._wanted = self.adapter.scrape_names()  # what read() looks at, and the simulated-engine marker
        self._stats: dict[str, float | None] | None = None
        self._buckets: dict[str, QuantileBucket] = {}  # the bucket of each percentile in _stats
        self._stats_t: float | None = None  # monotonic time of the scrape the stats come from
        self._tokens: float | None = None
        self._counters: Mapping[str, float | None] = {}  # the latest successful scrape's counters
        self._reading: Reading | None = (
            None  # the latest successful scrape's, for /metrics (agents/exporter.py)
        )
        self._simulated = False
        self._health: Health | None = None
        self._scrape_last: ScrapeOutcome | None = None  # the latest scrape that finished
        self._scrape_task: asyncio.Task[_Scraped] | None = None
        self._health_task: asyncio.Task[Health] | None = None
        self._canary = CanaryProbe(config, agent, adapter, spec, http, on_result=self.extras.on_canary)
        self._events_cache: tuple[EngineEvent, ...] = ()
        self._events_for: int | None = None  # the supervisor's events_total the cache was built at
        self._exited_t: float | None = None  # monotonic time of the latest "exited" event (ENGINE_DOWN)
        self._exited_from: str | None = None  # the state just before it
        self._pid_seen: int | None = None
        self._restart_times: list[float] = []
        self._restarts_seen = (
            supervisor.restarts
        )  # inherited restarts (re-adoption) are history, not a crash loop now

    @property
    def latest_reading(self) -> Reading | None:
        """The normalized Reading of the latest successful scrape of the engine's current process (None
        before the first one). Immutable and replaced whole, so another thread may read it (the exporter)."""
        return self._reading

    # --- readiness for the supervisor -----------------------------------------------------------------
    async def is_ready(self) -> bool:
        """The supervisor's start-up gate: the engine's health endpoint answers 200."""
        got = await fetch(
            self.http, self.adapter.health_url(self.spec), deadline_s=2.0, max_bytes=HEALTH_MAX_BYTES
        )
        return got.status == 200

    # --- exposure audit (its blocking read runs in the collector's worker thread) -------------------------
    def audit_job(self, now: float) -> Callable[[], None] | None:
        """When this engine's exposure audit is due: look for its version in its log now and return the
        blocking listener read, for the collector to run in its worker thread before this tick's
        ``observe``; else None."""
        sup = self.supervisor
        pids, state = tuple(sup.pids), sup.state
        if not self.exposure.due(now, pids, state):
            return None
        self.exposure.refresh_version(sup.log_tail(AUDIT_LOG_LINES))
        return partial(self.exposure.read_listeners, now, pids, state)

    # --- one collector tick ---------------------------------------------------------------------------
    async def observe(
        self,
        rss_bytes: int | None,
        gpu_util: Mapping[int, float | None] | None = None,
        client_connections: int | None = None,
    ) -> EngineSnapshot:
        """One tick. ``gpu_util``: the host's GPU poll, GPU index -> utilization % (the collector's);
        ``client_connections``: established TCP connections to the engine's port, where /proc shows them."""
        now = self.clock()
        sup = self.supervisor
        self._track_restarts(now)
        state = sup.state
        scrape = NOT_SERVING
        if state in SERVING or state == "starting":
            scrape = await self._probe(now)
            self._canary.drive(now, state in SERVING)
        else:
            self._health = None
            self._cancel_probes()
            self._canary.cancel()
        self.extras.drive_golden(now, state in SERVING, sup.pid)
        self._events()  # notes the latest exit's time for ENGINE_DOWN
        last = sup.last_exit or {}
        counters = self._counters
        obs = EngineObservation(
            t=now,
            wall=rfc3339(),
            state=state,
            stats=self._stats or {},
            scrape=scrape,
            tokens_total=self._tokens,
            last_scrape_ok_t=self._stats_t,
            health_ok=self._health.http_ok if self._health else None,
            health_status=self._health.http_status if self._health else None,
            canary_ok=self._canary.result.ok if self._canary.result else None,
            canary_error=self._canary.result.error if self._canary.result else None,
            canary_at=self._canary.result.at if self._canary.result else None,
            canary_in_flight_s=None if self._canary.started is None else now - self._canary.started,
            canary_timed_out_after_s=self._canary.timed_out_after_s,
            restart_times=tuple(self._restart_times),
            backoff_s=sup.backoff_remaining_s,
            rss_bytes=rss_bytes,
            listeners=self.exposure.listeners,
            generation_tokens_total=counters.get("generation_tokens"),
            prompt_tokens_total=counters.get("prompt_tokens"),
            gpu_util_pct=tuple((gpu_util or {}).get(i) for i in self.config.gpus)
            if gpu_util is not None
            else (),
            client_connections=client_connections,
            preemptions_total=counters.get("preemptions"),
            health_error=self._health.error if self._health else None,
            exit_code=last.get("code"),
            exit_signal=last.get("signal"),
            exited_t=self._exited_t,
            exited_from=self._exited_from,
            golden=self.extras.verdict,
            quantile_buckets=self._buckets if self._stats else {},
        )
        self.alerts = stacks.on_alerts(
            self, self.rules.evaluate(obs)
        )  # py-spy once per hang (agents/stacks.py)
        self._apply_health(state, obs)
        snap = self._snapshot(now, rss_bytes, self._events(), client_connections)
        exposure = self.exposure.alerts(rfc3339())
        if exposure:
            snap = replace(snap, alerts=tuple(sorted((*snap.alerts, *exposure), key=_severity_order)))
        return snap

    def _track_restarts(self, now: float) -> None:
        if self.supervisor.restarts > self._restarts_seen:
            self._restart_times.extend([now] * (self.supervisor.restarts - self._restarts_seen))
            self._restarts_seen = self.supervisor.restarts
        horizon = self.agent.thresholds.crash_loop_window_s
        self._restart_times = [t for t in self._restart_times if now - t <= horizon]
        if self.supervisor.pid != self._pid_seen:
            self._pid_seen = self.supervisor.pid
            self._cancel_probes()  # an answer of the old process must not land in the new one's window
            self.window.reset()  # a new process: its counters start over
            self._stats, self._stats_t, self._tokens = None, None, None
            self._counters = {}
            self._reading = None
            self._scrape_last = None

    # --- probes: own tasks, own deadlines; a tick waits at most its budget --------------------------------
    async def _probe(self, now: float) -> ScrapeOutcome:
        """Land what finished, start what is due, wait at most the budget, land again; the scrape outcome
        this tick reports (the previous one while a scrape is still in flight)."""
        self._land()
        if self._scrape_task is None:
            self._scrape_task = asyncio.create_task(self._scrape(now), name=f"scrape {self.config.id}")
        if self._health_task is None:
            self._health_task = asyncio.create_task(self._check_health(), name=f"health {self.config.id}")
        await asyncio.wait(
            (self._scrape_task, self._health_task), timeout=self.agent.interval_s * PROBE_BUDGET
        )
        self._land()
        return self._scrape_last or FIRST_SCRAPE_PENDING

    def _land(self) -> None:
        """Apply the finished probes' results (a probe that raised re-raises here, once)."""
        task, health = self._scrape_task, self._health_task
        if health is not None and health.done():
            self._health_task = None
            self._health = health.result()
        if task is not None and task.done():
            self._scrape_task = None
            got = task.result()
            if got.reading is not None:
                self._simulated = got.simulated
                self.window.add(got.t, got.reading)
                self._stats, self._buckets = self.window.derived()
                self._stats_t = got.t
                self._tokens = _progress(got.reading)
                self._counters = got.reading.counters
                self._reading = got.reading
                self.extras.on_scrape(got.t, got.reading)
            self._scrape_last = got.outcome

    def _cancel_probes(self) -> None:
        for task in (self._scrape_task, self._health_task):
            if task is not None:
                task.cancel()
        self._scrape_task, self._health_task = None, None

    async def _scrape(self, started: float) -> _Scraped:
        got = await fetch(
            self.http,
            self.adapter.metrics_url(self.spec),
            deadline_s=self.agent.scrape_timeout_s,  # type: ignore[arg-type]
            max_bytes=self.agent.metrics_max_bytes,
        )
        bundle_scrapes.record(
            self, got
        )  # the last raw scrapes, for incident bundles (agents/bundle_scrapes.py)
        if not got.ok:
            return _Scraped(started, ScrapeOutcome(ok=False, error=got.error, reachable=got.reachable))
        body = got.body or b""
        if len(body) > _PARSE_INLINE_BYTES:
            metrics = await asyncio.to_thread(parse, body, self._wanted)
        else:
            metrics = parse(body, self._wanted)
        if metrics.problems:
            first = metrics.problems[0]
            more = f" (+{len(metrics.problems) - 1} more)" if len(metrics.problems) > 1 else ""
            return _Scraped(
                started, ScrapeOutcome(ok=False, error=f"malformed exposition: {first}{more}", reachable=True)
            )
        reading = self.adapter.read(metrics)
        if not _has_data(reading):
            error = f"no {self.config.kind} metrics in the exposition"
            return _Scraped(started, ScrapeOutcome(ok=False, error=error, reachable=True))
        return _Scraped(started, ScrapeOutcome(ok=True), reading, self.adapter.is_simulated(metrics))

    async def _check_health(self) -> Health:
        deadline = min(2.0, self.agent.interval_s * 2)
        got = await fetch(
            self.http, self.adapter.health_url(self.spec), deadline_s=deadline, max_bytes=HEALTH_MAX_BYTES
        )
        return Health(
            http_ok=got.status == 200,
            http_status=got.status,
            latency_s=round(got.elapsed_s, 4) if got.status is not None else None,
            checked_at=rfc3339(),
            error=None if got.status == 200 else got.error,
        )

    async def close(self) -> None:
        tasks = [t for t in (self._canary.task, self._scrape_task, self._health_task) if t is not None]
        self._canary.cancel()
        self._cancel_probes()
        await self.extras.close()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # --- health → supervisor state ---------------------------------------------------------------------
    def _apply_health(self, state: str, obs: EngineObservation) -> None:
        """Move the engine between ready / degraded / hung by the conditions that hold now (``firing``),
        not by alerts held for hysteresis. Reasons carry no live counters: the journal gains an event only
        when the state or the reason's category changes. Probe safety: while the token counters advance,
        a failing or slow /health never makes the engine hung (nor restarted); the decision is the reason."""
        if state not in SERVING:
            return
        firing = self.rules.firing
        codes = {a.code: a for a in self.alerts if a.code in firing}
        if "ENGINE_HUNG" in codes:
            pending = codes["ENGINE_HUNG"].evidence.get("pending")
            why = {"canary only": "only the canary is pending", "canary": "the canary is pending"}
            self.supervisor.set_health("hung", f"no token progress: {why.get(str(pending), 'work pending')}")
        elif "HEALTH_LIES" in codes:
            self.supervisor.set_health(
                "degraded", "health lies: /health answers but the canary completion fails"
            )
        elif self._health is not None and not self._health.http_ok:
            why = self._health.error or f"HTTP {self._health.http_status}"
            if self.rules.progressing(obs):
                self.supervisor.set_health(
                    "degraded",
                    f"health_failing_but_progressing: /health failed ({why}) while tokens advance: not hung, not restarted",
                )
            else:
                self.supervisor.set_health("degraded", f"health check failed: {why}")
        else:
            self.supervisor.set_health("ready", "healthy")

    # --- snapshot -----------------------------------------------------------------------------------------
    def _events(self) -> tuple[EngineEvent, ...]:
        """The supervisor's last 20 events; rebuilt only when it recorded a new one (its journal only
        appends, counted by ``events_total``), not copied every tick. Also notes the latest exit's time."""
        sup = self.supervisor
        total = getattr(sup, "events_total", None)
        if total is None or total != self._events_for:
            recent = sup.events
            self._events_cache = tuple(
                EngineEvent(
                    at=e["at"],
                    state=e["state"],
                    reason=e.get("reason"),
                    exit_code=e.get("exit_code"),
                    signal=e.get("signal"),
                )
                for e in recent[-20:]
            )
            self._exited_t, self._exited_from = _latest_exit(recent)
            self._events_for = total
        return self._events_cache

    def _snapshot(
        self,
        now: float,
        rss_bytes: int | None,
        events: tuple[EngineEvent, ...],
        client_connections: int | None,
    ) -> EngineSnapshot:
        sup = self.supervisor
        info = sup.snapshot()
        last = sup.last_exit
        stats = None
        if self._stats is not None:
            numbers = {k: _round(v) for k, v in self._stats.items()}
            stats = EngineStats(**numbers, quantile_buckets=self._buckets)
        loading = None
        if info["state"] == "starting":
            loading = Loading(elapsed_s=_round(info["loading_elapsed_s"]), log_tail=tuple(sup.log_tail(10)))
        kv_eta = self.rules.extra_value("kv_eta_s")  # a KV-trend rule's estimate (agents/silent/), if any
        return EngineSnapshot(
            id=self.config.id,
            kind=self.config.kind,
            model=self.config.model,
            served_model_name=self.config.served_model_name,
            state=info["state"],
            pid=info["pid"],
            port=self.config.port,
            gpus=tuple(self.config.gpus),
            restarts=info["restarts"],
            uptime_s=_round(info["uptime_s"]),
            last_exit=None
            if last is None
            else LastExit(
                code=last.get("code"),
                signal=last.get("signal"),
                at=last.get("at"),
                stderr_tail=tuple(last.get("stderr_tail") or ()),
            ),
            stats_age_s=None if self._stats_t is None else round(now - self._stats_t, 3),
            stats=stats,
            health=self._health,
            canary=self._canary.result,
            alerts=self.alerts,
            simulated=self._simulated,
            events=events,
            loading=loading,
            rss_bytes=rss_bytes,
            managed=sup.managed,  # issue 13: watched engines (agents/supervisor/watched.py)
            actions=sup.actions,
            watch=sup.watch_info,
            client_connections=client_connections,
            kv_eta_s=None if kv_eta is None else _round(float(kv_eta), 1),
            slo=self.extras.slo_status(),
            benchmark=self.benchmarks.current(self.config.id, now) if self.benchmarks is not None else None,
        )


_SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2}


def _severity_order(alert: Alert) -> tuple[int, str]:
    return (_SEVERITY_RANK.get(alert.severity, 3), alert.code)


def _has_data(reading: Reading) -> bool:
    return any(
        v is not None
        for part in (reading.gauges, reading.counters, reading.histograms)
        for v in part.values()
    )


def _progress(reading: Reading) -> float | None:
    """A number that moves whenever the engine does work: token counters plus histogram observation counts."""
    parts = [reading.counters.get("prompt_tokens"), reading.counters.get("generation_tokens")]
    parts += [h.count for h in reading.histograms.values() if h is not None]
    known = [p for p in parts if p is not None]
    return sum(known) if known else None


def _round(v: float | None, nd: int = 6) -> float | None:
    return None if v is None else round(v, nd)


def _latest_exit(events: Sequence[Mapping[str, Any]]) -> tuple[float | None, str | None]:
    """The monotonic time of the journal's latest "exited" event and the state recorded just before it
    (None when that is not in the journal any more)."""
    for i in range(len(events) - 1, -1, -1):
        if events[i].get("state") == "exited":
            return events[i].get("mono"), (events[i - 1].get("state") if i > 0 else None)
    return None, None
