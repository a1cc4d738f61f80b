"""Normalized stats of one engine exposition, or of two scrapes of it taken ``dt_s`` apart.

Pure: no I/O and no clocks. The caller scrapes (or reads files) and measures ``dt_s`` with a monotonic
clock; :func:`probe_texts` parses, detects the dialect, reads it through the engine's adapter and derives
the snapshot ``stats`` (rates and windowed percentiles need two scrapes).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from agents.engines import ADAPTERS, UnknownEngine, detect_kind, get_adapter
from agents.engines.base import Reading
from agents.metrics.model import Histogram, MetricSet
from agents.metrics.parse import parse
from agents.metrics.window import STATS_KEYS, derive_stats

# stat -> the logical Reading values it is computed from ("section.name").
STAT_SOURCES: dict[str, tuple[str, ...]] = {
    "requests_running": ("gauges.requests_running",),
    "requests_waiting": ("gauges.requests_waiting",),
    "kv_cache_usage": ("gauges.kv_cache_usage",),
    "preemptions_per_s": ("counters.preemptions",),
    "prompt_tokens_per_s": ("counters.prompt_tokens",),
    "generation_tokens_per_s": ("counters.generation_tokens",),
    "ttft_p50_s": ("histograms.ttft",),
    "ttft_p95_s": ("histograms.ttft",),
    "ttft_p99_s": ("histograms.ttft",),
    "itl_p95_s": ("histograms.itl",),
    "e2e_p95_s": ("histograms.e2e",),
    "queue_time_p95_s": ("histograms.queue_time",),
    "request_errors_per_s": ("counters.request_errors",),
    "prefix_cache_hit_rate": ("counters.prefix_cache_hits", "counters.prefix_cache_queries"),
}
INSTANT = frozenset(
    ("requests_running", "requests_waiting", "kv_cache_usage")
)  # gauges: one scrape is enough

NOT_EXPOSED = "not exposed by this engine"
NOT_IN_TEXT = "not in this exposition"
NEEDS_TWO = "needs two scrapes"
NOT_IN_FIRST = "not in the first scrape"
NO_TRAFFIC = "nothing observed between the scrapes"
NO_LOOKUPS = "no prefix-cache lookups between the scrapes"
WENT_BACK = "counter went backwards between the scrapes (engine restarted?)"


class ProbeError(ValueError):
    """Input the probe cannot work with; the message is one line."""


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What ``llmconsole probe`` reports. ``stats`` has exactly the keys of STATS_KEYS; ``null_reasons``
    says, for each None stat, why it is None."""

    engine: str
    models: tuple[str, ...]
    stats: dict[str, float | None]
    problems: list[str] = field(default_factory=list)
    null_reasons: dict[str, str] = field(default_factory=dict)
    scrapes: int = 1
    dt_s: float | None = None
    simulated: bool = False  # the exposition carries llmconsole's SIMULATED marker


def probe_texts(texts: Sequence[str | bytes], dt_s: float | None, engine: str = "auto") -> ProbeResult:
    """Stats of one exposition (gauges only; rates and percentiles None) or of two taken ``dt_s`` apart."""
    if len(texts) not in (1, 2):
        raise ProbeError(f"give one or two expositions, not {len(texts)}")
    if len(texts) == 2:
        if dt_s is None:
            raise ProbeError("two scrapes need the seconds between them")
        if not math.isfinite(dt_s) or dt_s <= 0:
            raise ProbeError(f"the time between scrapes must be a positive number of seconds, not {dt_s:g}")
    else:
        dt_s = None
    sets = [parse(text) for text in texts]
    problems: list[str] = []
    for i, metrics in enumerate(sets, 1):
        tag = f"scrape {i}: " if len(sets) == 2 else ""
        if not metrics.samples:
            what = "is empty" if "empty exposition" in metrics.problems else "holds no samples"
            raise ProbeError(f"{'the exposition' if len(sets) == 1 else f'scrape {i}'} {what}")
        problems += [tag + p for p in metrics.problems]
    kind = _kind(sets, engine, problems)
    adapter = get_adapter(kind)
    readings = [adapter.read(metrics) for metrics in sets]
    start, end = (readings[0], readings[1]) if len(readings) == 2 else (None, readings[0])
    if start is not None and _went_back(start, end):
        problems.append("counters went backwards between the scrapes (engine restarted, or scrapes swapped?)")
    stats = derive_stats(start, end, dt_s)
    stats = {key: stats.get(key) for key in STATS_KEYS}
    lacks = adapter.unsupported
    reasons = {key: _why_null(key, start, end, lacks) for key, value in stats.items() if value is None}
    simulated = any(adapter.is_simulated(metrics) for metrics in sets)
    return ProbeResult(kind, end.models, stats, problems, reasons, len(texts), dt_s, simulated)


def _kind(sets: Sequence[MetricSet], engine: str, problems: list[str]) -> str:
    """The engine kind to read with: detected ("auto") or forced, noting disagreements in problems."""
    detected = [detect_kind(metrics) for metrics in sets]
    if engine == "auto":
        if detected[0] is None:
            raise ProbeError("no vLLM, SGLang or TGI metric names found; pass --engine")
        if len(detected) == 2 and detected[1] != detected[0]:
            problems.append(
                f"scrape 2 looks like {detected[1] or 'no known engine'}, scrape 1 like {detected[0]}"
            )
        return detected[0]
    try:
        adapter = get_adapter(engine)
    except UnknownEngine as exc:
        raise ProbeError(str(exc)) from None
    if adapter.detect(sets[-1]) == 0:
        problems.append(f"no {engine} metric names found; its stats are null")
    elif detected[-1] not in (None, engine):
        problems.append(f"read as {engine} (forced), but the names look like {detected[-1]}")
    return engine


def _why_null(stat: str, start: Reading | None, end: Reading, lacks: frozenset[str]) -> str:
    """Why ``stat`` is None: the engine never has it, this exposition lacks it, or the window is empty."""
    sources = STAT_SOURCES.get(stat, ())
    if any(source.split(".", 1)[1] in lacks for source in sources):
        return NOT_EXPOSED
    if any(_value(end, source) is None for source in sources) or stat in INSTANT:
        return NOT_IN_TEXT
    if start is None:
        return NEEDS_TWO
    if any(_value(start, source) is None for source in sources):
        return NOT_IN_FIRST
    if any(_total(_value(end, s)) < _total(_value(start, s)) for s in sources):
        return WENT_BACK
    return NO_LOOKUPS if stat == "prefix_cache_hit_rate" else NO_TRAFFIC


def _went_back(start: Reading, end: Reading) -> bool:
    """True when any cumulative value of ``end`` is below the same value of ``start``."""
    pairs = [(start.counters[k], end.counters[k]) for k in start.counters] + [
        (start.histograms[k], end.histograms[k]) for k in start.histograms
    ]
    return any(a is not None and b is not None and _total(b) < _total(a) for a, b in pairs)


def _value(reading: Reading, source: str) -> float | Histogram | None:
    section, name = source.split(".", 1)
    return getattr(reading, section).get(name)


def _total(value: float | Histogram | None) -> float:
    """A cumulative value's size: a counter's value, a histogram's count."""
    if isinstance(value, Histogram):
        return value.count
    return 0.0 if value is None else value


def known_engines() -> tuple[str, ...]:
    """The values ``engine`` accepts besides "auto"."""
    return tuple(ADAPTERS)
