"""The agent's own Prometheus exposition: ``llmconsole_*`` series read from the latest HostSnapshot.

A custom prometheus-client Collector on a private registry; each scrape of ``GET /metrics`` renders the
snapshot the collector last produced. A value the snapshot does not have (None) is omitted, never 0.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from agents import __version__
from agents.schema import ENGINE_STATES, EngineSnapshot, HostSnapshot, stats_are_live

ENGINE_LABELS = ["engine", "kind", "model"]
GPU_LABELS = ["gpu", "uuid", "name"]

# (metric suffix, stats key, help)
_ENGINE_GAUGES = (
    ("requests_running", "requests_running", "Requests in the engine's running batch."),
    ("requests_waiting", "requests_waiting", "Requests waiting in the engine's queue."),
    ("kv_cache_usage_ratio", "kv_cache_usage", "KV-cache usage, 0..1 (absent for engines without the gauge)."),
    ("prompt_tokens_per_second", "prompt_tokens_per_s", "Prompt tokens processed per second (agent-computed rate)."),
    ("generation_tokens_per_second", "generation_tokens_per_s", "Tokens generated per second (agent-computed rate)."),
    ("preemptions_per_second", "preemptions_per_s", "Preemptions (vLLM) / retractions (SGLang) per second."),
    ("request_errors_per_second", "request_errors_per_s", "Failed requests per second."),
    ("prefix_cache_hit_ratio", "prefix_cache_hit_rate", "Prefix-cache hit rate over the recent window."),
    ("itl_p95_seconds", "itl_p95_s", "Inter-token latency p95 over the recent window."),
    ("e2e_p95_seconds", "e2e_p95_s", "End-to-end request latency p95 over the recent window."),
    ("queue_time_p95_seconds", "queue_time_p95_s", "Queue time p95 over the recent window."),
)
_TTFT = (("0.5", "ttft_p50_s"), ("0.95", "ttft_p95_s"), ("0.99", "ttft_p99_s"))
_GPU_GAUGES = (
    ("memory_used_bytes", "mem_used_bytes", "GPU memory in use."),
    ("memory_total_bytes", "mem_total_bytes", "GPU memory in total."),
    ("utilization_percent", "util_pct", "GPU utilization."),
    ("temperature_celsius", "temp_c", "GPU temperature."),
    ("power_watts", "power_w", "GPU power draw."),
    ("power_limit_watts", "power_limit_w", "GPU enforced power limit."),
    ("ecc_uncorrected_errors", "ecc_uncorrected", "Uncorrected ECC errors (volatile)."),
)


class SnapshotCollector(Collector):
    def __init__(self, latest: Callable[[], HostSnapshot | None]) -> None:
        self._latest = latest

    def collect(self) -> Iterator[Metric]:
        snap = self._latest()
        info = InfoMetricFamily("llmconsole_agent", "The llmconsole agent.")
        info.add_metric([], {"version": __version__, "gpu_source": snap.gpu_source or "" if snap else "", "host": snap.host if snap else ""})
        yield info
        if snap is None:
            return
        seq = GaugeMetricFamily("llmconsole_snapshot_seq", "Sequence number of the latest snapshot.")
        seq.add_metric([], snap.seq)
        yield seq
        yield from _host(snap)
        yield from _engines(snap.engines, snap.interval_s)
        yield from _alerts(snap)
        yield from _gpus(snap)


def _labels(e: EngineSnapshot) -> list[str]:
    return [e.id, e.kind, e.served_model_name or e.model or ""]


def _host(snap: HostSnapshot) -> Iterator[Metric]:
    hs = snap.host_stats
    for name, value, text in (
        ("llmconsole_host_cpu_percent", hs and hs.cpu_pct, "Host CPU utilization."),
        ("llmconsole_host_memory_used_bytes", hs and hs.mem_used_bytes, "Host memory in use."),
        ("llmconsole_host_memory_total_bytes", hs and hs.mem_total_bytes, "Host memory in total."),
    ):
        if value is not None:
            fam = GaugeMetricFamily(name, text)
            fam.add_metric([], value)
            yield fam


def _engines(engines: tuple[EngineSnapshot, ...], interval_s: float | None) -> Iterator[Metric]:
    up = GaugeMetricFamily("llmconsole_engine_up", "1 when the engine is ready and serving.", labels=ENGINE_LABELS)
    state = GaugeMetricFamily("llmconsole_engine_state", "1 for the engine's current state.", labels=ENGINE_LABELS + ["state"])
    restarts = CounterMetricFamily("llmconsole_engine_restarts", "Restarts after unexpected exits.", labels=ENGINE_LABELS)
    rss = GaugeMetricFamily("llmconsole_engine_rss_bytes", "Resident memory of the engine's process tree.", labels=ENGINE_LABELS)
    ttft = GaugeMetricFamily(
        "llmconsole_engine_ttft_seconds", "Time to first token over the recent window.", labels=ENGINE_LABELS + ["quantile"]
    )
    gauges = {
        key: GaugeMetricFamily(f"llmconsole_engine_{suffix}", text, labels=ENGINE_LABELS) for suffix, key, text in _ENGINE_GAUGES
    }
    for e in engines:
        labels = _labels(e)
        up.add_metric(labels, 1.0 if e.state == "ready" else 0.0)
        for s in ENGINE_STATES:
            state.add_metric(labels + [s], 1.0 if e.state == s else 0.0)
        if e.restarts is not None:
            restarts.add_metric(labels, e.restarts)
        if e.rss_bytes is not None:
            rss.add_metric(labels, e.rss_bytes)
        if not stats_are_live(e, interval_s):
            continue  # stale stats are not exported as live values
        for key, fam in gauges.items():
            value = getattr(e.stats, key)
            if value is not None:
                fam.add_metric(labels, value)
        for q, key in _TTFT:
            value = getattr(e.stats, key)
            if value is not None:
                ttft.add_metric(labels + [q], value)
    yield from (up, state, restarts, rss, ttft, *gauges.values())


def _alerts(snap: HostSnapshot) -> Iterator[Metric]:
    fam = GaugeMetricFamily(
        "llmconsole_alerts_active", "Active alerts by code (engine empty for host alerts).", labels=["code", "severity", "engine"]
    )
    for a in snap.alerts:
        fam.add_metric([a.code, a.severity, ""], 1.0)
    for e in snap.engines:
        for a in e.alerts:
            fam.add_metric([a.code, a.severity, e.id], 1.0)
    yield fam


def _gpus(snap: HostSnapshot) -> Iterator[Metric]:
    fams = {key: GaugeMetricFamily(f"llmconsole_gpu_{suffix}", text, labels=GPU_LABELS) for suffix, key, text in _GPU_GAUGES}
    for g in snap.gpus:
        labels = [str(g.index), g.uuid or "", g.name or ""]
        for key, fam in fams.items():
            value = getattr(g, key)
            if value is not None:
                fam.add_metric(labels, value)
    yield from fams.values()


def make_registry(latest: Callable[[], HostSnapshot | None]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(latest))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
