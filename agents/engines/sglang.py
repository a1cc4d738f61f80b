"""SGLang: launch and metric normalization, for the current names and the ones they replaced.

Metric names and labels as in SGLang's production-metrics reference
(https://github.com/sgl-project/sglang/blob/main/docs/references/production_metrics.md) and its
collector; flags as in its server arguments (SERVER_ARGS below). Metrics exist only with
``--enable-metrics``. Scheduler series carry ``tp_rank``/``pp_rank`` (and ``dp_rank`` with data
parallelism, ``moe_ep_rank`` in newer versions): each rank of one scheduler reports the same numbers, so
inside one ``dp_rank`` the ranks are replicas (max), and data-parallel ranks add up (sum).
Tokenizer-side series (tokens, TTFT, ITL, e2e) carry ``model_name`` only; without a ``dp_rank`` a series
is counted under dp rank "0" (they are totals for the whole server).
"""

from __future__ import annotations

from collections.abc import Mapping

from agents.engines._aggregate import Layout, Part, histogram_names, part_reading, prefix_share
from agents.engines._common import HttpEngineAdapter
from agents.engines._launch import Flag, assemble, drop_flag
from agents.engines.base import DangerousSwitch, LaunchSpec, Reading
from agents.metrics.model import MetricSet

PREFIX = "sglang:"
# sglang:time_to_first_token_seconds's default bucket bounds (SGLang 0.5.23's metrics collector;
# ``--bucket-time-to-first-token`` overrides them; tests/e2e/test_sglang_drift_guard.py checks them).
TTFT_BUCKETS_S = (0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400)

GAUGE_NAMES: Mapping[str, tuple[str, ...]] = {
    "requests_running": ("sglang:num_running_reqs", "sglang:num_requests_running"),
    "requests_waiting": ("sglang:num_queue_reqs", "sglang:num_requests_waiting"),
    "kv_cache_usage": ("sglang:token_usage",),  # fraction 0..1 of the KV pool's tokens
}
COUNTER_NAMES: Mapping[str, tuple[str, ...]] = {
    "prompt_tokens": ("sglang:prompt_tokens_total",),
    "generation_tokens": ("sglang:generation_tokens_total",),
    # Retractions are SGLang's preemptions. The older sglang:num_retracted_reqs is a *gauge* (retracted
    # in the last batch), not a count since start: it cannot be rated, so it is not read.
    "preemptions": ("sglang:num_retracted_requests_total",),
}
# Finished requests (incremented in observe_one_finished_request). Late-2024 versions had
# request_success_total{finished_reason} instead: summed over the reasons, the same count.
FINISHED_NAMES = ("sglang:num_requests_total", "sglang:request_success_total")
# Prefix-cache hit rate from counters: cached prompt tokens over all prompt tokens. The
# sglang:cache_hit_rate gauge is reset to 0 by every decode log and is not usable.
CACHED_TOKENS = "sglang:cached_tokens_total"
PROMPT_TOKENS = "sglang:prompt_tokens_total"
HISTOGRAM_NAMES: Mapping[str, tuple[str, ...]] = {
    "ttft": ("sglang:time_to_first_token_seconds",),
    # ITL is observed in bulk (bucket += new tokens, sum += interval); quantiles from buckets are fine.
    "itl": ("sglang:inter_token_latency_seconds", "sglang:time_per_output_token_seconds"),
    "e2e": ("sglang:e2e_request_latency_seconds",),
    "queue_time": ("sglang:queue_time_seconds",),
}

LAYOUT = Layout(
    model_label="model_name",
    engine_label="dp_rank",
    replica_labels=frozenset({"tp_rank", "pp_rank", "moe_ep_rank"}),
)

HOST = Flag(("--host",))
PORT = Flag(("--port",))
MODEL = Flag(("--model-path", "--model"))
SERVED = Flag(("--served-model-name",))
ENABLE_METRICS = Flag(("--enable-metrics",))

SERVER_ARGS = "https://github.com/sgl-project/sglang/blob/main/python/sglang/srt/server_args.py"
SWITCHES = (
    DangerousSwitch(
        "--trust-remote-code", "runs Python code shipped in the model directory (auto_map)", SERVER_ARGS
    ),
    DangerousSwitch("--log-requests", "logs every request's prompt (PHI) into the engine log", SERVER_ARGS),
)


def _wanted() -> frozenset[str]:
    names = {n for names in (*GAUGE_NAMES.values(), *COUNTER_NAMES.values()) for n in names}
    names.update((CACHED_TOKENS, PROMPT_TOKENS, *FINISHED_NAMES))
    names.update(histogram_names(n for names in HISTOGRAM_NAMES.values() for n in names))
    return frozenset(names)


WANTED = _wanted()  # every sample name read() looks at


class SglangAdapter(HttpEngineAdapter):
    kind = "sglang"
    display = "SGLang"
    package = "sglang"
    WANTED = WANTED
    LAYOUT = LAYOUT
    # Older versions: always 200. Newer: routed to /health_generate, which runs a 1-token generation
    # and answers 503 after SGLANG_HEALTH_CHECK_TIMEOUT (20 s) without output.
    health_path = "/health"
    default_port = 30000
    # Logical metrics this engine never exposes, in any version (their values are always None).
    # No waiting-by-reason split either.
    unsupported: frozenset[str] = frozenset(
        {"request_errors", "requests_waiting_capacity", "requests_waiting_deferred"}
    )
    python_modules = ("sglang.launch_server",)
    bind_flags = HOST.names
    # version_patterns: none; SGLang's start-up log names no version this adapter recognises.

    # --- safety ---------------------------------------------------------------------------------------
    def dangerous_switches(self) -> tuple[DangerousSwitch, ...]:
        return SWITCHES

    def secret_env_names(self) -> tuple[str, ...]:
        return ()  # --api-key / --admin-api-key are flags only

    # --- launch ---------------------------------------------------------------------------------------
    def argv(self, spec: LaunchSpec) -> list[str]:
        prefix = [*(spec.command or ("python", "-m", "sglang.launch_server")), MODEL.name, spec.model]
        managed = [(HOST, spec.host), (PORT, str(spec.port)), (SERVED, spec.served_model_name)]
        # Without --enable-metrics SGLang serves no /metrics at all.
        return assemble(prefix, managed, [(ENABLE_METRICS, None)], drop_flag(spec.args, MODEL))

    # --- metrics --------------------------------------------------------------------------------------
    def _read_part(self, metrics: MetricSet, part: Part) -> Reading:
        gauges = {
            name: LAYOUT.scalar(metrics, names, part, across=max if name == "kv_cache_usage" else sum)
            for name, names in GAUGE_NAMES.items()
        }
        gauges["requests_waiting_capacity"] = gauges["requests_waiting_deferred"] = None
        counters = {name: LAYOUT.scalar(metrics, names, part) for name, names in COUNTER_NAMES.items()}
        counters["requests"] = LAYOUT.scalar(metrics, FINISHED_NAMES, part)
        counters["request_errors"] = None  # no error counter; aborted requests are not errors
        prompt = LAYOUT.scalar(metrics, (PROMPT_TOKENS,), part)
        hits = LAYOUT.scalar(metrics, (CACHED_TOKENS,), part)
        if hits is None and prompt is not None and CACHED_TOKENS in metrics.types:
            # The counter is only incremented when a request had cached tokens, so before the first
            # hit its family is declared (# TYPE) with no sample: 0 hits so far, not "unknown".
            hits = 0.0
        # Queries only alongside hits: a hit rate needs both, and older versions have no cached counter.
        counters["prefix_cache_hits"] = hits
        counters["prefix_cache_queries"] = prompt if hits is not None else None
        histograms = {name: LAYOUT.histogram(metrics, names, part) for name, names in HISTOGRAM_NAMES.items()}
        return part_reading(self.kind, part, gauges, counters, histograms)

    def detect(self, metrics: MetricSet) -> float:
        return prefix_share(metrics, PREFIX)
