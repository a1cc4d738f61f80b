"""Where each source of series keeps what the rules need (:class:`Dialect`, data only: the agent's
normalized names, vLLM's and SGLang's own), the SLO and the fixed thresholds the rules are built with,
and the engines' default TTFT bucket boundaries an SLO threshold must be one of."""

from __future__ import annotations

import math
from dataclasses import dataclass

from prometheus_client.utils import floatToGoString

from agents.engines.sglang import TTFT_BUCKETS_S as SGLANG_TTFT
from agents.engines.vllm import TTFT_BUCKETS_S as VLLM_TTFT

AGENT_JOB = "llmconsole"  # the scrape job name the rules expect for the agents

# Multi-window, multi-burn-rate paging (SRE Workbook "Alerting on SLOs", 30-day SLO): (long, short, factor).
BURN_WINDOWS: tuple[tuple[str, str, float], ...] = (("1h", "5m", 14.4), ("6h", "30m", 6.0))
RATIO_WINDOWS = ("5m", "30m", "1h", "6h")
FAST_BURN = max(f for _, _, f in BURN_WINDOWS)

# Default TTFT histogram boundaries of vLLM and SGLang: the SLO threshold must be one of them.
DEFAULT_TTFT_BUCKETS: dict[str, tuple[float, ...]] = {"vLLM": VLLM_TTFT, "SGLang": SGLANG_TTFT}


@dataclass(frozen=True)
class SLO:
    """TTFT objective: ``objective`` of requests get their first token within ``ttft_s`` (a bucket boundary)."""

    ttft_s: float = 1.0
    objective: float = 0.99

    @property
    def le(self) -> str:
        """The bucket's ``le`` label value, in float form (``1.0``, never ``1``)."""
        return floatToGoString(self.ttft_s)

    @property
    def budget(self) -> float:
        return 1.0 - self.objective


@dataclass(frozen=True)
class Thresholds:
    """Fixed knobs of the engine rules (windows are PromQL durations)."""

    stall_window: str = "2m"
    stall_for: str = "1m"
    admission_window: str = "5m"
    admission_for: str = "1m"
    admission_kv_free_below: float = 0.5
    kv_pressure: float = 0.95
    kv_window: str = "2m"
    kv_for: str = "5m"
    preemptions_per_5m: float = 10
    preemption_for: str = "5m"
    queue_window: str = "10m"
    queue_growth: float = 10  # waiting requests gained over queue_window (least-squares trend)
    queue_for: str = "5m"
    burn_for: str = "2m"  # the short window already debounces; this only skips one-evaluation blips
    unmeasurable_for: str = "10m"
    agent_alert_for: str = "1m"
    agent_alert_keep_firing_for: str = "5m"
    agent_down_for: str = "2m"


@dataclass(frozen=True)
class Dialect:
    """Where one source keeps each concept: metric names (alternatives, newest first) and label names."""

    source: str
    title: str
    engine_by: tuple[str, ...]  # the labels that identify one engine
    model_label: str
    where: str  # how an annotation names the engine
    running: tuple[str, ...]
    waiting: tuple[str, ...]
    kv: tuple[str, ...]
    generation: tuple[str, ...]
    prompt: tuple[str, ...]
    progress: tuple[str, ...]  # other counters whose increase shows the engine is moving
    preemptions: tuple[str, ...]
    ttft: str  # histogram base name
    record_prefix: str  # metric part of recorded series names
    preemption_word: str = "preemptions"
    rank_label: str | None = None  # per-rank scheduler series: max within a rank group, then sum
    host_label: str | None = None  # record a per-host TTFT p95 too
    requests: str | None = None  # finished requests (any outcome), cumulative: request rate recordings
    errors: str | None = None  # failed requests, cumulative: with ``requests``, the error ratio recording


LLMCONSOLE = Dialect(
    source="llmconsole",
    title="llmconsole agent (normalized)",
    engine_by=("host", "engine", "kind", "model"),
    model_label="model",
    where="{{ $labels.engine }} ({{ $labels.kind }}, {{ $labels.model }}) on {{ $labels.host }}",
    running=("llmconsole_engine_requests_running",),
    waiting=("llmconsole_engine_requests_waiting",),
    kv=("llmconsole_engine_kv_cache_usage_ratio",),
    generation=("llmconsole_engine_generation_tokens_total",),
    prompt=("llmconsole_engine_prompt_tokens_total",),
    # SGLang counts tokens when a request finishes; its ITL histogram's count moves per streamed chunk
    progress=("llmconsole_engine_itl_seconds_count",),
    preemptions=("llmconsole_engine_preemptions_total",),
    ttft="llmconsole_engine_ttft_seconds",
    record_prefix="llmconsole_engine_ttft",
    host_label="host",
    requests="llmconsole_engine_requests_total",
    errors="llmconsole_engine_request_errors_total",
)
VLLM = Dialect(
    source="vllm",
    title="vLLM scraped directly",
    engine_by=("instance", "job", "model_name"),
    model_label="model_name",
    where="vLLM {{ $labels.instance }} ({{ $labels.model_name }})",
    running=("vllm:num_requests_running",),
    waiting=("vllm:num_requests_waiting",),
    kv=("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),  # the older name is gone in newest vLLM
    generation=("vllm:generation_tokens_total",),
    prompt=("vllm:prompt_tokens_total",),
    progress=(),
    preemptions=("vllm:num_preemptions_total",),
    ttft="vllm:time_to_first_token_seconds",
    record_prefix="vllm_ttft",
)
SGLANG = Dialect(
    source="sglang",
    title="SGLang scraped directly (--enable-metrics)",
    engine_by=("instance", "job", "model_name"),
    model_label="model_name",
    where="SGLang {{ $labels.instance }} ({{ $labels.model_name }})",
    running=("sglang:num_running_reqs", "sglang:num_requests_running"),  # late-2024 names second
    waiting=("sglang:num_queue_reqs", "sglang:num_requests_waiting"),
    kv=("sglang:token_usage",),
    generation=("sglang:generation_tokens_total",),
    prompt=("sglang:prompt_tokens_total",),
    # Token counters move only when a request finishes; the ITL histogram's count moves per streamed chunk.
    progress=("sglang:inter_token_latency_seconds_count",),
    preemptions=("sglang:num_retracted_requests_total",),
    ttft="sglang:time_to_first_token_seconds",
    record_prefix="sglang_ttft",
    preemption_word="retractions",
    rank_label="dp_rank",  # scheduler gauges come once per TP/PP rank: max within a DP rank, sum across
)
DIALECTS = (LLMCONSOLE, VLLM, SGLANG)


def bucket_note(slo: SLO) -> str | None:
    """A note when the SLO threshold is not a default TTFT bucket of every engine with a TTFT histogram."""
    missing = [
        name
        for name, buckets in DEFAULT_TTFT_BUCKETS.items()
        if not any(math.isclose(slo.ttft_s, b) for b in buckets)
    ]
    if not missing:
        return None
    return (
        f'{slo.le} s is not a default TTFT bucket of {" or ".join(missing)}; engines without a bucket at le="{slo.le}" '
        "raise LLMTTFTSLOUnmeasurable instead of being judged"
    )
