"""The agents' ``llmconsole_*`` families as the Prometheus source reads them: names, tiers, notes.

The name tables are ``agents/exporter.py``'s (the tests check them against it). A fleet refresh reads
two tiers (see :mod:`console.promsource`): the *fast* families, what the fleet table and graphs show of
every host, at every refresh; the *identity* families (:data:`IDENT_HOST`, :data:`IDENT_ENGINE`,
:data:`IDENT_GPU`: labels and constants such as a GPU's total memory), every few refreshes and whenever a
host's fast series say they changed. :class:`Notes` counts what was wrong with a refresh's series.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

P = "llmconsole_"
# Host families: metric -> HostSnapshot/HostStats field.
HOST_VALUES = {
    "snapshot_seq": "seq",
    "snapshot_timestamp_seconds": "taken_at",
    "host_cpu_percent": "cpu_pct",
    "host_memory_used_bytes": "mem_used_bytes",
    "host_memory_total_bytes": "mem_total_bytes",
}
HOST_INFO = "host_info"
# Engine families beyond info/state: metric suffix (after llmconsole_engine_) -> EngineStats key.
ENGINE_STATS = {
    "requests_running": "requests_running",
    "requests_waiting": "requests_waiting",
    "requests_waiting_capacity": "requests_waiting_capacity",
    "requests_waiting_deferred": "requests_waiting_deferred",
    "kv_cache_usage_ratio": "kv_cache_usage",
    "prompt_tokens_per_second": "prompt_tokens_per_s",
    "generation_tokens_per_second": "generation_tokens_per_s",
    "preemptions_per_second": "preemptions_per_s",
    "request_errors_per_second": "request_errors_per_s",
    "prefix_cache_hit_ratio": "prefix_cache_hit_rate",
    "ttft_p50_seconds": "ttft_p50_s",
    "ttft_p95_seconds": "ttft_p95_s",
    "ttft_p99_seconds": "ttft_p99_s",
    "itl_p95_seconds": "itl_p95_s",
    "e2e_p95_seconds": "e2e_p95_s",
    "queue_time_p95_seconds": "queue_time_p95_s",
}
ENGINE_OTHER = {"restarts_total": "restarts", "rss_bytes": "rss_bytes", "uptime_seconds": "uptime_s"}
GPU_VALUES = {
    "memory_used_bytes": "mem_used_bytes",
    "memory_total_bytes": "mem_total_bytes",
    "utilization_percent": "util_pct",
    "temperature_celsius": "temp_c",
    "power_watts": "power_w",
    "power_limit_watts": "power_limit_w",
    "ecc_uncorrected_errors": "ecc_uncorrected",
}
INT_FIELDS = frozenset(
    {"seq", "mem_used_bytes", "mem_total_bytes", "ecc_uncorrected", "restarts", "rss_bytes"}
)
ALERTS = "alerts_active"
# The stats the console graphs (console.state.METRICS), by exported suffix: what a backfill reads.
GRAPHED = (
    "requests_running",
    "requests_waiting",
    "kv_cache_usage_ratio",
    "prompt_tokens_per_second",
    "generation_tokens_per_second",
    "ttft_p50_seconds",
    "ttft_p95_seconds",
)

Series = tuple[Mapping[str, str], float]  # labels (with __name__ where the server keeps it), value

# What the console shows of every host at each refresh (fleet table, graphs, engine header, GPU memory and
# utilization); ``full`` reads every exported family (``status``, scripts).
LEAN_HOST = ("snapshot_seq", "snapshot_timestamp_seconds")
LEAN_ENGINE = (*GRAPHED, "restarts_total", "uptime_seconds")
LEAN_GPU = ("memory_used_bytes", "utilization_percent")
# Identity: labels and constants, read every few refreshes and when a host's fast series say they changed.
IDENT_HOST = (HOST_INFO,)
IDENT_ENGINE = ("engine_info",)
IDENT_GPU = ("memory_total_bytes",)
IDENT_NAMES = frozenset(P + n for n in (*IDENT_HOST, *IDENT_ENGINE, *(f"gpu_{s}" for s in IDENT_GPU)))


def name_regex(names: Iterable[str]) -> str:
    """``llmconsole_(a|b|c)``: one ``__name__`` regex for several families (one query, not one each)."""
    return P + "(" + "|".join(names) + ")"


def host_names(full: bool = True, ident: bool = True) -> list[str]:
    """Host-level families (``ident``: with ``host_info``)."""
    return [*(IDENT_HOST if ident else ()), *(HOST_VALUES if full else LEAN_HOST)]


def engine_value_names(full: bool = True) -> list[str]:
    return [f"engine_{s}" for s in ((*ENGINE_STATS, *ENGINE_OTHER) if full else LEAN_ENGINE)]


def gpu_names(full: bool = True, ident: bool = True) -> list[str]:
    """GPU families (``ident``: with the constant ones, :data:`IDENT_GPU`)."""
    if full:
        return [f"gpu_{s}" for s in GPU_VALUES]
    return [f"gpu_{s}" for s in (*LEAN_GPU, *(IDENT_GPU if ident else ()))]


def history_names() -> list[str]:
    return ["snapshot_seq", "snapshot_timestamp_seconds", *(f"engine_{s}" for s in GRAPHED)]


def family(labels: Mapping[str, str], prefix: str = P) -> str | None:
    """The series' name after ``prefix``; None for another name (or none)."""
    name = labels.get("__name__")
    return name[len(prefix) :] if isinstance(name, str) and name.startswith(prefix) else None


@dataclass
class Notes:
    """What was wrong with the series of one refresh, counted by kind with one example each."""

    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)

    def add(self, kind: str, example: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.examples.setdefault(kind, example)

    def lines(self) -> list[str]:
        return [f"{n} {kind} (e.g. {self.examples[kind]})" for kind, n in self.counts.items()]


def show_series(labels: Mapping[str, str], limit: int = 120) -> str:
    name = labels.get("__name__", "")
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    text = f"{name}{{{inner}}}"
    return text if len(text) <= limit else text[: limit - 1] + "…"


__all__ = [
    "ALERTS",
    "ENGINE_OTHER",
    "ENGINE_STATS",
    "GPU_VALUES",
    "GRAPHED",
    "HOST_INFO",
    "HOST_VALUES",
    "IDENT_ENGINE",
    "IDENT_GPU",
    "IDENT_HOST",
    "IDENT_NAMES",
    "INT_FIELDS",
    "LEAN_ENGINE",
    "LEAN_GPU",
    "LEAN_HOST",
    "P",
    "Notes",
    "Series",
    "engine_value_names",
    "family",
    "gpu_names",
    "history_names",
    "host_names",
    "name_regex",
    "show_series",
]
