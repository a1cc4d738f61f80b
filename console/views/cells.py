"""Cells: the small formatters and the rendering rule of one value (see console.views for the table).

Pure: no Textual, no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from agents.schema import SERVING_STATES, Alert, EngineSnapshot, severity_rank, stats_are_live
from console.state import HostState
from widgets.tone import Cell, Tone

GiB = 1024**3
RUNNING_STATES = SERVING_STATES  # the wire schema's name: started up, health and progress judged
STATE_RANK: dict[str, float] = {
    "failed": 9,
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
    """47s, 3m12s, 2h05m, 3d; "?" for None."""
    if seconds is None:
        return "?"
    s = int(max(0.0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d"


def seconds_text(value: float) -> str:
    """A latency: 164ms, 1.24s, 12s."""
    if value < 1.0:
        return f"{value * 1000:.0f}ms"
    return f"{value:.2f}s" if value < 10 else f"{value:.0f}s"


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
) -> Cell:
    """``metric_cell`` on the view's two flags (the fleet table's hot path). ``previous``: this cell as
    last presented; it is returned again when the value and tone are the same (its text is then too)."""
    if error:
        return shared_cell("ERR", "error", None)
    if value is None:
        return shared_cell("", "unsupported" if unsupported and live else "missing", None)
    look: Tone = "stale" if not live else ("zero" if value == 0 else (tone or "live"))
    if previous is not None and value != 0 and previous.sort_key == value and previous.tone == look:
        return previous  # an unchanged number: not formatted again (zeros, even -0.0, are formatted)
    if fmt == "pct":
        text = f"{value * 100:.0f}%"
    elif fmt == "s":
        text = seconds_text(value)
    else:
        text = rate_text(value)
    if look == "zero":
        return shared_cell(text, "zero", 0.0)
    return Cell(text, look, value)


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
    """Most severe first: "ENGINE_HUNG +1"; tone of the worst; "dim" when all are acknowledged."""
    if not alerts:
        return Cell("", "live", 0)
    ordered = sorted(alerts, key=lambda a: -severity_rank(a.severity))
    worst = ordered[0]
    text = worst.code + (f" +{len(ordered) - 1}" if len(ordered) > 1 else "")
    tone: Tone = "dim" if acknowledged >= len(ordered) else SEVERITY_TONE.get(worst.severity, "info")
    return Cell(text, tone, (severity_rank(worst.severity) + 1) * 100 + len(ordered))


def gpu_source_cell(source: str | None) -> Cell:
    if source is None:
        return Cell("", "missing", None)
    if source == "simulated":
        return Cell("SIMULATED", "simulated", source)
    if source.startswith("unavailable"):
        return Cell(source, "warn", source)
    return Cell(source, "live", source)


def host_state_cell(h: HostState, now: float) -> Cell:
    rank = HOST_RANK.get(h.status, 0)
    if h.status == "fresh":
        return shared_cell("fresh", "ok", rank)
    if h.status == "stale":
        return shared_cell(f"stale {age_text(h.age(now))}", "stale", rank)
    if h.status == "unreachable":
        return shared_cell(f"unreachable {age_text(h.status_age(now))}", "crit", rank)
    if h.status == "unauthorized":
        code = f" ({h.error.status})" if h.error is not None and h.error.status is not None else ""
        return shared_cell(f"not authorized{code}", "crit", rank)
    if h.status == "incompatible":
        found = h.error.found_schema if h.error else None
        version = found.rsplit("/", 1)[-1] if found and "/" in found else "?"
        return shared_cell(f"incompatible v{version}", "error", rank)
    return shared_cell("connecting", "dim", rank)


__all__ = [
    "GiB",
    "HOST_RANK",
    "RUNNING_STATES",
    "SEVERITY_TONE",
    "STATE_RANK",
    "EngineView",
    "age_text",
    "alerts_cell",
    "engine_view",
    "gib",
    "gpu_source_cell",
    "host_state_cell",
    "metric_cell",
    "model_name",
    "rate_text",
    "seconds_text",
    "shared_cell",
    "value_cell",
    "wall_clock",
]
