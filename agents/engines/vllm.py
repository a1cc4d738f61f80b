"""vLLM (V1, with the V0/early-V1 names it still emits or used to): launch and metric normalization.

Metric names and their history as in vLLM's metrics design doc
(https://github.com/vllm-project/vllm/blob/main/docs/design/metrics.md); flags as in the ``vllm serve``
reference (https://docs.vllm.ai/en/stable/cli/serve/). Every engine series carries ``model_name`` and
``engine`` (the data-parallel engine index); older versions have ``model_name`` only, which means a
single engine, index "0".
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from agents.engines._aggregate import Layout, Part, histogram_names, part_reading, prefix_share
from agents.engines._common import HttpEngineAdapter
from agents.engines._launch import Flag, assemble, drop_flag
from agents.engines.base import DangerousSwitch, LaunchSpec, Reading
from agents.metrics.model import MetricSet

PREFIX = "vllm:"
# vllm:time_to_first_token_seconds's bucket bounds (the real vLLM 0.32.0 exposition kept in
# tests/data/metrics/vllm-0.32-cpu.loaded.prom): an SLO's TTFT target must be one of them to be judged.
TTFT_BUCKETS_S = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
    160.0,
    640.0,
    2560.0,
)

# Logical name -> exposed names, preferred first (newer name, then the one it replaced).
GAUGE_NAMES: Mapping[str, tuple[str, ...]] = {
    "requests_running": ("vllm:num_requests_running",),
    "requests_waiting": ("vllm:num_requests_waiting",),
    # A fraction 0..1 despite "perc". gpu_cache_usage_perc: deprecated in 0.9, gone in the newest.
    "kv_cache_usage": ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
}
COUNTER_NAMES: Mapping[str, tuple[str, ...]] = {
    "prompt_tokens": ("vllm:prompt_tokens_total",),
    "generation_tokens": ("vllm:generation_tokens_total",),
    "preemptions": ("vllm:num_preemptions_total",),
}
# Finished requests by finished_reason (stop, length, abort, error, repetition): all of them summed are
# the "requests" counter; the "error" reason alone is request_errors ("abort" is the client's doing).
FINISHED = "vllm:request_success_total"
# Newest only: the waiting requests split by reason; the reasons sum to num_requests_waiting.
WAITING_BY_REASON = "vllm:num_requests_waiting_by_reason"
WAITING_REASONS: Mapping[str, str] = {
    "requests_waiting_capacity": "capacity",
    "requests_waiting_deferred": "deferred",
}
# Hits and queries must come from the same generation: the new pair counts tokens, the deprecated
# gpu_prefix_cache_* pair counts blocks. Only their ratio is used, so either unit is fine.
PREFIX_CACHE_PAIRS = (
    ("vllm:prefix_cache_hits_total", "vllm:prefix_cache_queries_total"),
    ("vllm:gpu_prefix_cache_hits_total", "vllm:gpu_prefix_cache_queries_total"),
)
HISTOGRAM_NAMES: Mapping[str, tuple[str, ...]] = {
    "ttft": ("vllm:time_to_first_token_seconds",),
    "itl": ("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"),
    "e2e": ("vllm:e2e_request_latency_seconds",),
    "queue_time": ("vllm:request_queue_time_seconds",),
}
# Not read: vllm:iteration_tokens_total is a *histogram* despite its "_total" suffix.

LAYOUT = Layout(model_label="model_name", engine_label="engine")

HOST = Flag(("--host",))
PORT = Flag(("--port",))
MODEL = Flag(("--model",))
SERVED = Flag(("--served-model-name",), many=True)

CLI_DOC = "https://docs.vllm.ai/en/stable/cli/serve/"
SECURITY_DOC = "https://docs.vllm.ai/en/stable/usage/security/"
ENV_DOC = "https://docs.vllm.ai/en/stable/configuration/env_vars/"
USAGE_STATS_DOC = "https://docs.vllm.ai/en/stable/usage/usage_stats/"
_CODE = "runs Python code shipped in the model directory (auto_map); CVE-2026-22807, CVE-2026-27893"
_PROMPTS = "logs every request's prompt (PHI) into the engine log"
SWITCHES = (
    DangerousSwitch("--trust-remote-code", _CODE, CLI_DOC),
    DangerousSwitch(
        "--middleware", "imports an arbitrary Python path into the API server (code execution)", CLI_DOC
    ),
    DangerousSwitch(
        "--enable-tokenizer-info-endpoint",
        "serves tokenizer internals on an unauthenticated endpoint",
        CLI_DOC,
    ),
    DangerousSwitch("--enable-log-requests", _PROMPTS, CLI_DOC),
    DangerousSwitch(
        "VLLM_SERVER_DEV_MODE",
        'enables /collective_rpc, /sleep, /reset_prefix_cache ("never in production")',
        SECURITY_DOC,
    ),
    DangerousSwitch(
        "VLLM_ALLOW_INSECURE_SERIALIZATION", "allows pickle deserialization between processes", ENV_DOC
    ),
    DangerousSwitch("VLLM_TORCH_PROFILER_DIR", "enables the profiler endpoints", ENV_DOC),
    DangerousSwitch("VLLM_PLUGINS", "loads plugin code into the engine", ENV_DOC),
    DangerousSwitch(
        "VLLM_NO_USAGE_STATS",
        "overrides the telemetry/hub opt-out (VLLM_NO_USAGE_STATS=1): the engine may call out of the machine",
        USAGE_STATS_DOC,
        expect="1",
    ),
)
# "vLLM API server version X" (API server start); "Initializing a V1 LLM engine (vX)" (engine start).
VERSION_PATTERNS = (
    re.compile(r"vLLM API server version ([0-9][0-9A-Za-z.+-]*)"),
    re.compile(r"Initializing a V1 LLM engine \(v([0-9][0-9A-Za-z.+-]*)\)"),
)


def _wanted() -> frozenset[str]:
    names = {n for names in (*GAUGE_NAMES.values(), *COUNTER_NAMES.values()) for n in names}
    names.update((FINISHED, WAITING_BY_REASON))
    names.update(n for pair in PREFIX_CACHE_PAIRS for n in pair)
    names.update(histogram_names(n for names in HISTOGRAM_NAMES.values() for n in names))
    return frozenset(names)


WANTED = _wanted()  # every sample name read() looks at


class VllmAdapter(HttpEngineAdapter):
    kind = "vllm"
    display = "vLLM"
    package = "vllm"
    WANTED = WANTED
    LAYOUT = LAYOUT
    # 200 while the API process thinks the engine is alive; it runs no forward pass.
    health_path = "/health"
    default_port = 8000
    # Logical metrics this engine never exposes, in any version (their values are always None).
    unsupported: frozenset[str] = frozenset()
    executables = ("vllm",)
    python_modules = ("vllm.entrypoints.openai.api_server", "vllm.entrypoints.cli.main")
    bind_flags = HOST.names
    version_patterns = VERSION_PATTERNS

    # --- safety ---------------------------------------------------------------------------------------
    def dangerous_switches(self) -> tuple[DangerousSwitch, ...]:
        return SWITCHES

    def secret_env_names(self) -> tuple[str, ...]:
        return ("VLLM_API_KEY",)  # read like --api-key; it protects the /v1 routes only

    # --- launch ---------------------------------------------------------------------------------------
    def argv(self, spec: LaunchSpec) -> list[str]:
        """``vllm serve MODEL`` by default; a custom prefix (e.g. ``python -m
        vllm.entrypoints.openai.api_server``, which has no positional model) gets ``--model MODEL``."""
        if spec.command:
            prefix = [*spec.command, MODEL.name, spec.model]
        else:
            prefix = ["vllm", "serve", spec.model]
        managed = [(HOST, spec.host), (PORT, str(spec.port)), (SERVED, spec.served_model_name)]
        # The model comes from spec.model, exactly once: a --model in args is dropped.
        return assemble(prefix, managed, [], drop_flag(spec.args, MODEL))

    # --- metrics --------------------------------------------------------------------------------------
    def _read_part(self, metrics: MetricSet, part: Part) -> Reading:
        gauges = {
            name: LAYOUT.scalar(metrics, names, part, across=max if name == "kv_cache_usage" else sum)
            for name, names in GAUGE_NAMES.items()
        }
        for name, reason in WAITING_REASONS.items():
            gauges[name] = LAYOUT.labelled(metrics, WAITING_BY_REASON, part, "reason", reason)
        counters = {name: LAYOUT.scalar(metrics, names, part) for name, names in COUNTER_NAMES.items()}
        # 0 when the family is there without an "error" series (older versions had no such reason).
        counters["request_errors"] = LAYOUT.scalar(
            metrics, (FINISHED,), part, where=lambda labels: labels.get("finished_reason") == "error"
        )
        counters["requests"] = LAYOUT.scalar(metrics, (FINISHED,), part)  # every finished_reason
        counters["prefix_cache_hits"] = counters["prefix_cache_queries"] = None
        for hits, queries in PREFIX_CACHE_PAIRS:
            h, q = LAYOUT.scalar(metrics, (hits,), part), LAYOUT.scalar(metrics, (queries,), part)
            if h is not None or q is not None:
                counters["prefix_cache_hits"], counters["prefix_cache_queries"] = h, q
                break
        histograms = {name: LAYOUT.histogram(metrics, names, part) for name, names in HISTOGRAM_NAMES.items()}
        return part_reading(self.kind, part, gauges, counters, histograms)

    def detect(self, metrics: MetricSet) -> float:
        return prefix_share(metrics, PREFIX)
