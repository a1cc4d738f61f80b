"""Cells: the small formatters and the rendering rule of one value (see console.views for the table).

Pure: no Textual, no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from agents.schema import (
    SERVING_STATES,
    Alert,
    EngineSnapshot,
    EngineStats,
    severity_rank,
    stats_are_live,
    wide_bucket,
)
from agents.schema.units import age, duration
from console.state import HostState
from console.views.rootcause import group_alerts
from widgets.tone import Cell, Tone

GiB = 1024**3
RUNNING_STATES = SERVING_STATES  # the wire schema's name: started up, health and progress judged
CRASH_LOOP_STATE = "crash-loop"  # shown for an engine with an active CRASH_LOOP, whatever its momentary state
STATE_RANK: dict[str, float] = {
    "failed": 9,
    CRASH_LOOP_STATE: 8.5,
    "hung": 8,
    "unreachable": 7.5,  # a watched engine listening but not answering HTTP: just below hung
    "exited": 7,
    "backoff": 6,
    "degraded": 5,
    "starting": 4,
    "stopping": 3,
    "stopped": 2,
    "ready": 1,
}
HOST_RANK = {"unreachable": 9, "unauthorized": 9, "incompatible": 8, "stale": 7, "pending": 3, "fresh": 1}
SEVERITY_TONE: dict[str, Tone] = {"critical": "crit", "warning": "warn", "info": "info"}


# --- small formatters ------------------------------------------------------------------------------


def age_text(seconds: float | None) -> str:
    """47s, 3m12s, 2h05m, 3d04h; "?" for None: ``agents.schema.units.age``, the one rule."""
    return age(seconds)


def seconds_text(value: float | None) -> str:
    """A latency: 164ms, 1.24s, 38s, 3m12s: ``agents.schema.units.duration``, the one rule."""
    return duration(value)


def quantile_text(value: float | None, bucket: tuple[float, float | None] | None = None) -> str:
    """A percentile read from a histogram, without false precision.

    ``bucket``: the (lower, upper) bounds of the histogram bucket the percentile was interpolated in (upper
    None or inf: the open last bucket), as the agent sends them in ``stats.quantile_buckets``. When the
    bucket is wide (``agents.schema.wide_bucket``: upper ≥ 1.5 × lower, or lower 0) the interpolated number
    says nothing the bucket does not: "≤100ms" (">10s" in the open bucket). A narrow bucket, or no bucket
    known (an older agent, a Prometheus source), shows the number by the one duration rule."""
    if value is None:
        return duration(None)
    if bucket is not None and wide_bucket(bucket):
        lo, hi = bucket
        return f">{duration(lo)}" if hi is None or hi == float("inf") else f"≤{duration(hi)}"
    return duration(value)


def quantile_bucket(stats: EngineStats | None, key: str) -> tuple[float, float | None] | None:
    """The bucket the agent says the percentile ``key`` ("ttft_p95_s") was interpolated in; None when
    it does not say (no stats, an older agent, a Prometheus source, a percentile without a histogram)."""
    buckets = stats.quantile_buckets if stats is not None else None
    return buckets.get(key) if buckets else None


def rate_text(value: float) -> str:
    """A rate or count: 0, 7.5, 184, 1.9k, 12k, 1.2M."""
    if value == 0:
        return "0"
    a = abs(value)
    if a >= 1e6:
        v = value / 1e6
        return f"{v:.1f}M" if abs(v) < 10 else f"{v:.0f}M"
    if a >= 1e3:
        v = value / 1e3
        return f"{v:.1f}k" if abs(v) < 10 else f"{v:.0f}k"
    return f"{value:.1f}" if a < 10 and value != int(value) else f"{value:.0f}"


def gib(value: int | float | None) -> str:
    return "?" if value is None else f"{value / GiB:.0f}"


def model_name(e: EngineSnapshot) -> str:
    if e.served_model_name:
        return e.served_model_name
    if e.model:
        return PurePosixPath(e.model).name or e.model
    return ""


def wall_clock(epoch: float | None) -> str:
    """HH:MM:SS (UTC) of a wall-clock time, for "since" texts."""
    if epoch is None:
        return "?"
    s = int(epoch) % 86400
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


# --- data state of one engine ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EngineView:
    """How to show one engine's numbers: ``live`` (plain), or stale with ``age``; ``error`` when a
    running engine has no stats (its scrape failed)."""

    live: bool
    age: float | None  # seconds the shown stats are old (None: unknown)
    error: bool
    running: bool


def engine_view(h: HostState, e: EngineSnapshot, now: float) -> EngineView:
    snap = h.snapshot
    running = e.state in RUNNING_STATES
    interval = snap.interval_s if snap is not None else None
    stats_live = stats_are_live(e, interval)
    host_age = h.age(now) or 0.0
    age = None if e.stats_age_s is None else e.stats_age_s + host_age
    if not h.live:
        return EngineView(False, host_age + (e.stats_age_s or 0.0), e.stats is None and running, running)
    return EngineView(stats_live, age, e.stats is None and running, running)


def metric_cell(
    value: float | None, view: EngineView, fmt: str, *, unsupported: bool = False, tone: Tone | None = None
) -> Cell:
    """One stat cell under the rendering rule (see console.views)."""
    return value_cell(value, view.live, view.error, fmt, unsupported=unsupported, tone=tone)


def value_cell(
    value: float | None,
    live: bool,
    error: bool,
    fmt: str,
    *,
    unsupported: bool = False,
    tone: Tone | None = None,
    previous: Cell | None = None,
    bucket: tuple[float, float | None] | None = None,
) -> Cell:
    """``metric_cell`` on the view's two flags (the fleet table's hot path). ``previous``: this cell as
    last presented; it is returned again when the value, tone and text are the same. ``bucket``: for a
    percentile (fmt "s"), the histogram bucket it was interpolated in: the text is ``quantile_text``'s."""
    if error:
        return shared_cell("ERR", "error", None)
    if value is None:
        return shared_cell("", "unsupported" if unsupported and live else "missing", None)
    look: Tone = "stale" if not live else ("zero" if value == 0 else (tone or "live"))
    if previous is not None and (previous.sort_key != value or previous.tone != look):
        previous = None  # only a cell of the same value and tone may be presented again
    if bucket is not None and fmt == "s":
        text = quantile_text(value, bucket)
        if previous is not None and previous.text == text:
            return previous
    elif previous is not None and value != 0 and previous.text[:1] not in _BUCKET_MARKS:
        return previous  # an unchanged number: not formatted again (zeros, even -0.0, are formatted)
    elif fmt == "pct":
        text = f"{value * 100:.0f}%"
    elif fmt == "s":
        text = seconds_text(value)
    else:
        text = rate_text(value)
    if look == "zero":
        return shared_cell(text, "zero", 0.0)
    return Cell(text, look, value)


_BUCKET_MARKS = ("≤", ">")  # a text that shows a bucket, not the number: never reused for a plain number


_CELLS: dict[tuple[str, str, object], Cell] = {}
_CELLS_MAX = 200_000


def shared_cell(text: str, tone: Tone = "live", key: float | str | None = None) -> Cell:
    """A shared Cell for (text, tone, key): most cells repeat from tick to tick (names, states, models),
    so the fleet table reuses them instead of building tens of thousands of new ones per tick."""
    k = (text, tone, key)
    c = _CELLS.get(k)
    if c is None:
        if len(_CELLS) >= _CELLS_MAX:
            _CELLS.clear()
        c = _CELLS[k] = Cell(text, tone, key)
    return c


def alerts_cell(alerts: Sequence[Alert], acknowledged: int = 0) -> Cell:
    """Root cause first: the cause of the most severe fault, then how many other alerts ("KV_PRESSURE +3");
    tone of the worst alert; "dim" when all are acknowledged. See console.views.rootcause."""
    if not alerts:
        return Cell("", "live", 0)
    groups = group_alerts(alerts)
    worst = max(alerts, key=lambda a: severity_rank(a.severity))
    n = sum(len(g.alerts) for g in groups)
    text = groups[0].cause.code + (f" +{n - 1}" if n > 1 else "")
    tone: Tone = "dim" if acknowledged >= n else SEVERITY_TONE.get(worst.severity, "info")
    return Cell(text, tone, (severity_rank(worst.severity) + 1) * 100 + n)


def is_crash_looping(e: EngineSnapshot) -> bool:
    """Whether the engine has an active CRASH_LOOP alert."""
    return any(a.code == "CRASH_LOOP" for a in e.alerts)


def engine_state(e: EngineSnapshot) -> str:
    """The state to show, count and filter by: "crash-loop" while CRASH_LOOP is active (a crash-looping
    engine reads "ready", "starting" or "backoff" between crashes), unless its momentary state already
    says worse and more precisely (failed, hung, unreachable: critical states that are never "ready")."""
    if STATE_RANK.get(e.state, 0) < STATE_RANK["unreachable"] and is_crash_looping(e):
        return CRASH_LOOP_STATE
    return e.state


def data_age(h: HostState, now: float) -> float | None:
    """How old a host's shown values are: since its newest snapshot arrived (since its status began when
    it never answered). The host row and its engines' rows show this one age."""
    seconds = h.age(now)
    return seconds if seconds is not None else h.status_age(now)


def gpu_source_cell(source: str | None) -> Cell:
    if source is None:
        return Cell("", "missing", None)
    if source == "simulated":
        return Cell("SIMULATED", "simulated", source)
    if source == "unavailable: disabled in config":  # gpu_source = "none": a choice, not a fault
        return Cell("no GPU data", "missing", source)
    if source.startswith("unavailable"):
        return Cell("GPUs: n/a", "warn", source)  # the full reason is in the detail and `status`
    return Cell(source, "live", source)


def host_state_cell(h: HostState, now: float) -> Cell:
    """fresh / "stale (8s ago)" / "unreachable (11s ago)": the age is ``data_age``, the one its engines say."""
    rank = HOST_RANK.get(h.status, 0)
    if h.status == "fresh":
        return shared_cell("fresh", "ok", rank)
    ago = (
        f"({age_text(data_age(h, now))} ago)"
        if h.received_at is not None
        else f"(for {age_text(data_age(h, now))})"
    )
    if h.status == "stale":
        return shared_cell(f"stale {ago}", "stale", rank)
    if h.status == "unreachable":
        return shared_cell(f"unreachable {ago}", "crit", rank)
    if h.status == "unauthorized":
        code = f" ({h.error.status})" if h.error is not None and h.error.status is not None else ""
        return shared_cell(f"not authorized{code}", "crit", rank)
    if h.status == "incompatible":
        found = h.error.found_schema if h.error else None
        version = found.rsplit("/", 1)[-1] if found and "/" in found else "?"
        return shared_cell(f"incompatible v{version}", "error", rank)
    return shared_cell("connecting", "dim", rank)


__all__ = [
    "CRASH_LOOP_STATE",
    "GiB",
    "HOST_RANK",
    "RUNNING_STATES",
    "SEVERITY_TONE",
    "STATE_RANK",
    "EngineView",
    "age_text",
    "alerts_cell",
    "data_age",
    "engine_state",
    "engine_view",
    "gib",
    "gpu_source_cell",
    "host_state_cell",
    "metric_cell",
    "is_crash_looping",
    "model_name",
    "quantile_bucket",
    "quantile_text",
    "rate_text",
    "seconds_text",
    "shared_cell",
    "value_cell",
    "wall_clock",
]
