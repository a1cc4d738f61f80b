"""What the alert rules read: one engine's observation at one tick, the scrape's outcome, the thresholds,
and the shape of a rule and its finding."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from agents.schema import QuantileBucket


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
    canary_timed_out_after_s: float | None = None  # the failed canary timed out after this long, else None
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
    exited_from: str | None = None  # the state the engine was in just before that exit (the journal's)
    # the histogram bucket each percentile in ``stats`` was interpolated in (stats.quantile_buckets)
    quantile_buckets: Mapping[str, QuantileBucket] = field(default_factory=dict)
