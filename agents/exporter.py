"""The agent's own Prometheus exposition (``GET /metrics``): ``llmconsole_*`` series in Prometheus's terms.

Two sources, both immutable objects read by reference (the exporter runs on the API thread, does no I/O):

* the latest HostSnapshot: lifecycle, host, GPU and alert series, plus the agent's precomputed values as
  gauges whose names say what they are (``…_per_second``, ``…_p95_seconds``: a rate or quantile over the
  agent's stats window, for one engine; not summable across a fleet);
* per engine, an :class:`EngineExport`: the normalized Reading of its latest successful scrape, exported as
  the engine's own cumulative counters (``…_total``) and histograms (``…_seconds_bucket/_sum/_count``, with
  the engine's bucket boundaries), so one PromQL expression works for vLLM, SGLang and TGI alike.

Every ``llmconsole_engine_*`` series carries ``host, engine, kind, model`` (``model`` = the served model
name, else the configured model). A value the source does not have is absent, never 0: a family an engine
does not expose (TGI: no TTFT histogram, no KV gauge) has no series for it. Stale stats (the snapshot's
``stats_are_live`` rule: failed scrapes) export neither gauges nor cumulative series. ``le`` is written in
float form (``"1.0"``): Prometheus 2.x stores it as written and 3.x normalizes to that form, so a rule's
``le="1.0"`` matches on both. Counter resets (an engine restarted) are left to Prometheus's rate().

``llmconsole_engine_state`` is a state set with only its active member: one series per engine, value 1,
labelled with the current state (not one 0/1 series per possible state, which made ~40 % of all series).
When the state changes the old series is no longer exposed and Prometheus's staleness handling ends it at
the next scrape, so ``llmconsole_engine_state{state="hung"} == 1`` and ``count by (state) (…)`` read as
before; ``absent``/``== 0`` tests on a state do not (there is no 0 series).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from agents.engines.base import Reading
from agents.metrics.model import Histogram
from agents.schema import EngineSnapshot, HostSnapshot, epoch_or_none, stats_are_live

ENGINE_LABELS = ["host", "engine", "kind", "model"]
GPU_LABELS = ["host", "gpu", "uuid", "name"]
ENGINE_INFO_LABELS = ("served_model_name", "version", "model_path", "gpus", "port", "simulated", "managed")
ALERT_LABELS = ["host", "engine", "code", "severity", "summary"]


@dataclass(frozen=True, slots=True)
class EngineExport:
    """What ``/metrics`` exports of one engine beyond its snapshot: the normalized Reading of its latest
    successful scrape (None before the first one, and after the engine's process changed) and its version
    when known (from its log; None otherwise)."""

    reading: Reading | None = None
    version: str | None = None


Exports = Callable[[], Mapping[str, EngineExport]]

# Precomputed per-engine values (snapshot stats): (metric suffix, stats key, help).
ENGINE_GAUGES = (
    ("requests_running", "requests_running", "Requests in the engine's running batch (latest scrape)."),
    ("requests_waiting", "requests_waiting", "Requests waiting in the engine's queue (latest scrape)."),
    (
        "requests_waiting_capacity",
        "requests_waiting_capacity",
        "Waiting requests held back for scheduling capacity (vLLM, newest versions).",
    ),
    (
        "requests_waiting_deferred",
        "requests_waiting_deferred",
        "Waiting requests deferred by a transient constraint: LoRA budget, KV transfer (vLLM, newest versions).",
    ),
    ("kv_cache_usage_ratio", "kv_cache_usage", "KV-cache usage, 0..1, of the fullest data-parallel engine."),
    (
        "prompt_tokens_per_second",
        "prompt_tokens_per_s",
        "Prompt tokens per second over the agent's rate window (the last few scrapes).",
    ),
    (
        "generation_tokens_per_second",
        "generation_tokens_per_s",
        "Generated tokens per second over the agent's rate window (the last few scrapes).",
    ),
    (
        "preemptions_per_second",
        "preemptions_per_s",
        "Preemptions (vLLM) / retractions (SGLang) per second over the agent's rate window (the last few scrapes).",
    ),
    (
        "request_errors_per_second",
        "request_errors_per_s",
        "Failed requests per second over the agent's rate window (the last few scrapes).",
    ),
    (
        "prefix_cache_hit_ratio",
        "prefix_cache_hit_rate",
        "Prefix-cache hits over queries, 0..1, over the agent's stats window.",
    ),
    ("ttft_p50_seconds", "ttft_p50_s", "Time to first token, median over the agent's stats window."),
    ("ttft_p95_seconds", "ttft_p95_s", "Time to first token, p95 over the agent's stats window."),
    ("ttft_p99_seconds", "ttft_p99_s", "Time to first token, p99 over the agent's stats window."),
    ("itl_p95_seconds", "itl_p95_s", "Inter-token latency, p95 over the agent's stats window."),
    ("e2e_p95_seconds", "e2e_p95_s", "End-to-end request latency, p95 over the agent's stats window."),
    ("queue_time_p95_seconds", "queue_time_p95_s", "Queue time, p95 over the agent's stats window."),
)
# EngineStats keys not exported as gauges: what Prometheus derives from the exported histograms and counters
# (histogram_quantile, increase) over a window of its own choosing, and the agent's window lengths.
STATS_NOT_EXPORTED = frozenset(
    {
        "itl_p50_s",
        "itl_p99_s",
        "e2e_p50_s",
        "e2e_p99_s",
        "queue_time_p50_s",
        "queue_time_p99_s",
        "preemptions_in_window",
        "rate_window_s",
        "percentile_window_s",
        "quantile_buckets",
    }
)
# The engine's own cumulative counters, normalized (Reading.counters): (metric name, logical name, help).
# "requests": requests the engine finished, any outcome (vLLM request_success_total summed over finished_reason,
# SGLang num_requests_total, TGI tgi_request_success + tgi_request_failure); no series where it is None.
ENGINE_COUNTERS = (
    ("generation_tokens", "generation_tokens", "Tokens generated, the engine's own counter."),
    ("prompt_tokens", "prompt_tokens", "Prompt tokens processed, the engine's own counter."),
    ("requests", "requests", "Requests the engine finished (any outcome), the engine's own counter."),
    (
        "request_errors",
        "request_errors",
        "Requests that failed in the engine (vLLM finished_reason=error, TGI failures).",
    ),
    ("preemptions", "preemptions", "Preemptions (vLLM) / retractions (SGLang), the engine's own counter."),
)
# The engine's own histograms, normalized (Reading.histograms), with its bucket boundaries.
ENGINE_HISTOGRAMS = (
    ("ttft_seconds", "ttft", "Time to first token, the engine's own histogram."),
    (
        "itl_seconds",
        "itl",
        "Inter-token latency (TGI: per-request mean time per token), the engine's own histogram.",
    ),
    ("e2e_seconds", "e2e", "End-to-end request latency, the engine's own histogram."),
    ("queue_time_seconds", "queue_time", "Time requests waited in the queue, the engine's own histogram."),
)
GPU_GAUGES = (
    ("memory_used_bytes", "mem_used_bytes", "GPU memory in use."),
    ("memory_total_bytes", "mem_total_bytes", "GPU memory in total."),
    ("utilization_percent", "util_pct", "GPU utilization."),
    ("temperature_celsius", "temp_c", "GPU temperature."),
    ("power_watts", "power_w", "GPU power draw."),
    ("power_limit_watts", "power_limit_w", "GPU enforced power limit."),
    ("ecc_uncorrected_errors", "ecc_uncorrected", "Uncorrected ECC errors (volatile)."),
)


class SnapshotCollector(Collector):
    """Renders the latest snapshot and engine exports; families without a series are left out."""

    def __init__(self, latest: Callable[[], HostSnapshot | None], exports: Exports | None = None) -> None:
        self._latest = latest
        self._exports = exports

    def collect(self) -> Iterator[Metric]:
        snap = self._latest()
        if snap is None:
            return
        exports = self._exports() if self._exports is not None else {}
        families = [*_host(snap), *_engines(snap, exports), _alerts(snap), *_gpus(snap)]
        yield from (f for f in families if f.samples)


def _engine_labels(host: str, e: EngineSnapshot) -> list[str]:
    return [host, e.id, e.kind, e.served_model_name or e.model or ""]


def _host_gauge(name: str, text: str, host: str, value: float | None) -> GaugeMetricFamily:
    fam = GaugeMetricFamily(name, text, labels=["host"])
    if value is not None:
        fam.add_metric([host], value)
    return fam


def _host(snap: HostSnapshot) -> Iterator[Metric]:
    host = snap.host
    info = GaugeMetricFamily(
        "llmconsole_host_info",
        "The agent and its host (value 1).",
        labels=["host", "agent_version", "gpu_source", "boot_id"],
    )
    info.add_metric([snap.host, snap.agent_version or "", snap.gpu_source or "", snap.boot_id or ""], 1.0)
    yield info
    yield _host_gauge("llmconsole_snapshot_seq", "Sequence number of the latest snapshot.", host, snap.seq)
    yield _host_gauge(
        "llmconsole_snapshot_timestamp_seconds",
        "When the latest snapshot was taken (Unix time).",
        host,
        epoch_or_none(snap.taken_at),
    )
    hs = snap.host_stats
    yield _host_gauge("llmconsole_host_cpu_percent", "Host CPU utilization.", host, hs and hs.cpu_pct)
    yield _host_gauge(
        "llmconsole_host_memory_used_bytes", "Host memory in use.", host, hs and hs.mem_used_bytes
    )
    yield _host_gauge(
        "llmconsole_host_memory_total_bytes", "Host memory in total.", host, hs and hs.mem_total_bytes
    )


def _engines(snap: HostSnapshot, exports: Mapping[str, EngineExport]) -> Iterator[Metric]:
    def gauge(suffix: str, text: str, extra: tuple[str, ...] = ()) -> GaugeMetricFamily:
        return GaugeMetricFamily(f"llmconsole_engine_{suffix}", text, labels=[*ENGINE_LABELS, *extra])

    info = gauge(
        "info",
        "The engine's identity (value 1): served name, version (when known), GPUs, whether the agent "
        "launched it (managed) or only watches it.",
        ENGINE_INFO_LABELS,
    )
    up = gauge("up", "1 when the engine is ready and serving.")
    state = gauge(
        "state", "The engine's current state (value 1; only the current state has a series).", ("state",)
    )
    restarts = CounterMetricFamily(
        "llmconsole_engine_restarts", "Restarts after unexpected exits.", labels=ENGINE_LABELS
    )
    rss = gauge("rss_bytes", "Resident memory of the engine's process tree.")
    uptime = gauge("uptime_seconds", "Seconds since the engine's current process started.")
    gauges = {key: gauge(suffix, text) for suffix, key, text in ENGINE_GAUGES}
    counters = {
        key: CounterMetricFamily(f"llmconsole_engine_{name}", text, labels=ENGINE_LABELS)
        for name, key, text in ENGINE_COUNTERS
    }
    hists = {
        key: HistogramMetricFamily(f"llmconsole_engine_{name}", text, labels=ENGINE_LABELS)
        for name, key, text in ENGINE_HISTOGRAMS
    }
    for e in snap.engines:
        labels = _engine_labels(snap.host, e)
        export = exports.get(e.id) or EngineExport()
        info.add_metric(labels + _info_values(e, export), 1.0)
        up.add_metric(labels, 1.0 if e.state == "ready" else 0.0)
        state.add_metric(labels + [e.state], 1.0)  # the active member only: staleness ends the old one
        if e.restarts is not None:
            restarts.add_metric(labels, e.restarts)
        if e.rss_bytes is not None:
            rss.add_metric(labels, e.rss_bytes)
        if e.uptime_s is not None:
            uptime.add_metric(labels, e.uptime_s)
        if not stats_are_live(e, snap.interval_s):
            continue  # stale stats are exported neither as gauges nor as the engine's counters
        for key, fam in gauges.items():
            value = getattr(e.stats, key)
            if value is not None:
                fam.add_metric(labels, value)
        reading = export.reading
        if reading is None:
            continue
        for key, fam in counters.items():
            value = reading.counters.get(key)
            if value is not None and math.isfinite(value) and value >= 0:
                fam.add_metric(labels, value)
        for key, fam in hists.items():
            _add_histogram(fam, labels, reading.histograms.get(key))
    yield from (info, up, state, restarts, rss, uptime, *gauges.values(), *counters.values(), *hists.values())


def _info_values(e: EngineSnapshot, export: EngineExport) -> list[str]:
    return [
        e.served_model_name or "",
        export.version or "",
        e.model or "",
        ",".join(str(g) for g in e.gpus),
        "" if e.port is None else str(e.port),
        "true" if e.simulated else "false",
        "true" if e.managed else "false",
    ]


def _add_histogram(fam: HistogramMetricFamily, labels: list[str], h: Histogram | None) -> None:
    """One histogram series with the engine's own bounds; left out when it cannot be a valid one (no
    ``+Inf`` bucket, a non-finite or decreasing count)."""
    if h is None or not h.has_inf or any(not math.isfinite(c) or c < 0 for c in h.cumulative):
        return
    if any(later < earlier for earlier, later in zip(h.cumulative, h.cumulative[1:], strict=False)):
        return
    count = h.count if math.isfinite(h.count) else h.cumulative[-1]
    keyed = dict(zip(ENGINE_LABELS, labels, strict=True))
    for bound, value in zip(h.bounds, h.cumulative, strict=True):
        fam.samples.append(Sample(fam.name + "_bucket", {**keyed, "le": floatToGoString(bound)}, value))
    fam.samples.append(Sample(fam.name + "_count", keyed, count))
    if math.isfinite(h.sum):
        fam.samples.append(Sample(fam.name + "_sum", keyed, h.sum))


def _alerts(snap: HostSnapshot) -> Metric:
    fam = GaugeMetricFamily(
        "llmconsole_alerts_active",
        "1 per active agent alert (engine empty for host alerts); summary is the alert's one-line evidence.",
        labels=ALERT_LABELS,
    )
    for a in snap.alerts:
        fam.add_metric([snap.host, "", a.code, a.severity, a.summary], 1.0)
    for e in snap.engines:
        for a in e.alerts:
            fam.add_metric([snap.host, e.id, a.code, a.severity, a.summary], 1.0)
    return fam


def _gpus(snap: HostSnapshot) -> Iterator[Metric]:
    fams = {
        key: GaugeMetricFamily(f"llmconsole_gpu_{suffix}", text, labels=GPU_LABELS)
        for suffix, key, text in GPU_GAUGES
    }
    for g in snap.gpus:
        labels = [snap.host, str(g.index), g.uuid or "", g.name or ""]
        for key, fam in fams.items():
            value = getattr(g, key)
            if value is not None:
                fam.add_metric(labels, value)
    yield from fams.values()


def make_registry(
    latest: Callable[[], HostSnapshot | None], exports: Exports | None = None
) -> CollectorRegistry:
    """A private registry over ``latest`` (the newest snapshot) and ``exports`` (engine id -> EngineExport)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(latest, exports))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
