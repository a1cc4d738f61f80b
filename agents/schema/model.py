"""The wire schema's objects: one frozen, slotted dataclass per JSON object, in wire (field) order.

Sequences are tuples; a value the source does not provide is ``None`` (JSON ``null``), never 0 or a string;
units live in key names. Stdlib only; re-exported by :mod:`agents.schema`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import Any

from agents.schema.vocab import HISTORY_SCHEMA, SCHEMA

_FROZEN = {"frozen": True, "slots": True, "kw_only": True}


def _versioned(expected: str) -> Any:
    """The ``schema`` field: checked first on decode, before anything else is looked at."""
    return field(default=expected, metadata={"version": expected})


@dataclass(**_FROZEN)
class HostStats:
    cpu_pct: float | None = None
    mem_used_bytes: int | None = None
    mem_total_bytes: int | None = None


@dataclass(**_FROZEN)
class GpuProcess:
    pid: int
    mem_bytes: int | None = None
    engine_id: str | None = None  # None: not in any supervised engine's process tree


@dataclass(**_FROZEN)
class GpuInfo:
    index: int
    uuid: str | None = None
    name: str | None = None
    mem_used_bytes: int | None = None
    mem_total_bytes: int | None = None
    util_pct: float | None = None
    temp_c: float | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    ecc_uncorrected: int | None = None
    xid_last: int | None = None
    throttle_reasons: tuple[str, ...] = ()
    processes: tuple[GpuProcess, ...] = ()


@dataclass(**_FROZEN)
class LastExit:
    code: int | None = None  # exit status when the process exited by itself
    signal: int | None = None  # signal number when it was killed by a signal
    at: str | None = None  # RFC 3339 UTC
    stderr_tail: tuple[str, ...] = ()


QuantileBucket = tuple[float, float | None]
"""(lower, upper) bounds of one histogram bucket; upper None: the open ``+Inf`` bucket."""

WIDE_BUCKET_RATIO = 1.5


def wide_bucket(bucket: QuantileBucket) -> bool:
    """Whether a percentile interpolated in ``bucket`` says nothing its bounds do not: the bucket is open
    (upper None or inf), starts at 0, or its upper bound is at least 1.5 × its lower one. Readers show such
    a percentile as its bound ("≤100ms"), and TTFT_SLO does not fire on it while the bucket holds the
    target."""
    lo, hi = bucket
    return hi is None or hi == float("inf") or lo <= 0 or hi >= WIDE_BUCKET_RATIO * lo


@dataclass(**_FROZEN)
class EngineStats:
    """Normalized engine statistics; rates are per second, percentiles over a recent window."""

    requests_running: float | None = None
    requests_waiting: float | None = None
    kv_cache_usage: float | None = None  # 0..1; None where the engine has no such gauge (TGI)
    preemptions_per_s: float | None = None
    prompt_tokens_per_s: float | None = None
    generation_tokens_per_s: float | None = None
    ttft_p50_s: float | None = None
    ttft_p95_s: float | None = None
    ttft_p99_s: float | None = None
    itl_p95_s: float | None = None
    e2e_p95_s: float | None = None
    queue_time_p95_s: float | None = None
    request_errors_per_s: float | None = None
    prefix_cache_hit_rate: float | None = None
    # additive (schema 1 extras)
    itl_p50_s: float | None = None
    itl_p99_s: float | None = None
    e2e_p50_s: float | None = None
    e2e_p99_s: float | None = None
    queue_time_p50_s: float | None = None
    queue_time_p99_s: float | None = None
    preemptions_in_window: float | None = None  # preemptions counted over percentile_window_s
    requests_waiting_capacity: float | None = None  # vLLM num_requests_waiting_by_reason{reason="capacity"}
    requests_waiting_deferred: float | None = None  # vLLM num_requests_waiting_by_reason{reason="deferred"}
    rate_window_s: float | None = None  # the span the per-second rates were measured over (a few scrapes)
    percentile_window_s: float | None = None  # the span percentiles and window counts were measured over
    # The histogram bucket each percentile above was interpolated in: {"ttft_p95_s": [0.0, 0.1]} (lower,
    # upper; upper None: the +Inf bucket). None: not reported (older agents, Prometheus sources); a
    # percentile without an entry has no known bucket. Readers show one inside a wide bucket as its bound.
    quantile_buckets: dict[str, QuantileBucket] | None = None


PERCENTILE_KEYS: tuple[str, ...] = tuple(
    f.name for f in fields(EngineStats) if re.fullmatch(r"[a-z][a-z0-9_]*_p[0-9]+_s", f.name)
)
"""The stats keys that are histogram percentiles, in wire order: the keys ``quantile_buckets`` may hold."""


@dataclass(**_FROZEN)
class Health:
    http_ok: bool | None = None
    http_status: int | None = None
    latency_s: float | None = None
    checked_at: str | None = None
    error: str | None = None  # additive: why it failed ("no complete response within 2s", "HTTP 503 …")


@dataclass(**_FROZEN)
class Canary:
    ok: bool | None = None
    ttft_s: float | None = None
    error: str | None = None
    at: str | None = None


@dataclass(**_FROZEN)
class Alert:
    code: str
    severity: str  # one of SEVERITIES (a reader tolerates others: severity_rank gives -1)
    since: str | None = None
    summary: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)  # JSON values only
    # additive: how often this alert was raised in the agent's history window (> 1: it flaps); the alert
    # clears only after its condition was false for alert_clear_s (hysteresis)
    raised_count: int = 1


@dataclass(**_FROZEN)
class EngineEvent:
    """One state transition of a supervised engine."""

    at: str
    state: str
    reason: str | None = None
    exit_code: int | None = None
    signal: int | None = None


@dataclass(**_FROZEN)
class Loading:
    """Progress of an engine in ``starting``: time since launch and the last lines of its log."""

    elapsed_s: float | None = None
    log_tail: tuple[str, ...] = ()


@dataclass(**_FROZEN)
class ActionAvailability:
    """Additive: per action of ``POST /v1/engines/{id}/{action}``, None when the agent runs it (state
    permitting: a start of a running engine is still a 409) or the reason it refuses it, e.g. a watched
    engine without ``restart_command``, or an engine the launch policy refused."""

    start: str | None = None
    stop: str | None = None
    restart: str | None = None


@dataclass(**_FROZEN)
class WatchInfo:
    """Additive: how the agent sees an engine it watches but did not start (``managed = false``)."""

    listener: str | None = None  # "127.0.0.1:8001": the listening socket found on its port; None: none seen
    owner: str | None = None  # the name of the process owning that socket; None when it cannot be seen
    kind_seen: str | None = None  # the engine kind its /metrics names identify; None until identified
    kind_error: str | None = None  # set when what serves the port is not an engine of the configured kind
    unobserved: tuple[str, ...] = ()  # what the agent cannot observe about it and why, one line each


@dataclass(**_FROZEN)
class SloWindow:
    """One burn-rate window of SLO_BURN: the error rate over ``window_s`` divided by the allowed one."""

    window_s: float | None = None
    burn_rate: float | None = None  # None: no request finished in the window (zero traffic never burns)


@dataclass(**_FROZEN)
class SloStatus:
    """Additive: the engine's TTFT objective from ``[slo]`` and its error budget."""

    ttft_s: float | None = None
    objective: float | None = (
        None  # e.g. 0.99: that share of requests must see their first token within ttft_s
    )
    source: str | None = (
        None  # "histogram": the engine's TTFT histogram; "canary": the agent's own canary timings
    )
    budget_left: float | None = None  # fraction of the error budget left over the longest window
    windows: tuple[SloWindow, ...] = ()
    problem: str | None = None  # why the objective cannot be judged or can never alert (stated at start)


@dataclass(**_FROZEN)
class BenchmarkMarker:
    """Additive: a benchmark announced to the agent (``llmconsole bench``) is running against the engine."""

    run_id: str
    started_at: str  # RFC 3339
    client: str | None = None  # who announced it (the API peer)
    workload: str | None = None  # one line: "poisson 4 req/s, 256→128 tokens"


@dataclass(**_FROZEN)
class EngineSnapshot:
    id: str
    kind: str
    model: str | None = None
    state: str
    pid: int | None = None
    port: int | None = None
    gpus: tuple[int, ...] = ()
    restarts: int | None = None
    uptime_s: float | None = None
    last_exit: LastExit | None = None
    stats_age_s: float | None = None
    stats: EngineStats | None = None
    health: Health | None = None
    canary: Canary | None = None
    alerts: tuple[Alert, ...] = ()
    # additive keys (schema 1 extras)
    simulated: bool = False  # the engine is llmconsole's simulated engine, not a real one
    served_model_name: str | None = None
    events: tuple[EngineEvent, ...] = ()  # recent transitions, oldest first
    loading: Loading | None = None  # set while state is "starting"
    rss_bytes: int | None = None
    managed: bool = True  # False: the agent watches it but did not start it and never signals it
    actions: ActionAvailability | None = None  # None: not reported (older agents; every action as before)
    watch: WatchInfo | None = None  # set for a watched engine (managed False)
    client_connections: int | None = None  # established TCP connections to the engine's port (from /proc)
    kv_eta_s: float | None = (
        None  # seconds until KV usage reaches 100 % at its recent trend; None: not rising
    )
    slo: SloStatus | None = None
    benchmark: BenchmarkMarker | None = None


@dataclass(**_FROZEN)
class HostSnapshot:
    schema: str = _versioned(SCHEMA)
    host: str
    agent_version: str | None = None
    seq: int
    taken_at: str  # RFC 3339 UTC
    interval_s: float | None = None
    gpu_source: str | None = None  # "nvml" | "simulated" | "unavailable: <reason>"
    host_stats: HostStats | None = None
    gpus: tuple[GpuInfo, ...] = ()
    engines: tuple[EngineSnapshot, ...] = ()
    alerts: tuple[Alert, ...] = ()  # host-level
    errors: tuple[str, ...] = ()  # partial-collection failures, one line each
    boot_id: str | None = None

    def engine(self, engine_id: str) -> EngineSnapshot | None:
        """The engine with this id, or None."""
        return next((e for e in self.engines if e.id == engine_id), None)


@dataclass(**_FROZEN)
class History:
    """``GET /v1/history``: one host's recent snapshots, oldest first."""

    schema: str = _versioned(HISTORY_SCHEMA)
    host: str
    snapshots: tuple[HostSnapshot, ...] = ()


WIRE_TYPES: tuple[type, ...] = (
    HostStats,
    GpuProcess,
    GpuInfo,
    LastExit,
    EngineStats,
    SloWindow,
    SloStatus,
    BenchmarkMarker,
    Health,
    Canary,
    Alert,
    EngineEvent,
    Loading,
    ActionAvailability,
    WatchInfo,
    EngineSnapshot,
    HostSnapshot,
    History,
)

# --- reading helpers -----------------------------------------------------------------------------

STALE_AFTER_INTERVALS = 3.0  # stats older than this many collection intervals are not live


def stats_are_live(
    engine: EngineSnapshot, interval_s: float | None, stale_after_s: float | None = None
) -> bool:
    """Whether an engine's stats may be shown (or exported) as live values: they exist, their age is
    known, and it is at most ``stale_after_s`` (default: STALE_AFTER_INTERVALS × ``interval_s``,
    with 1 s when the interval is unknown). A stale number is never shown as live."""
    if engine.stats is None or engine.stats_age_s is None:
        return False
    limit = stale_after_s if stale_after_s is not None else STALE_AFTER_INTERVALS * (interval_s or 1.0)
    return engine.stats_age_s <= limit
