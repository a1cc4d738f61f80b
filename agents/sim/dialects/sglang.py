"""The simulated SGLang: ``sglang.launch_server`` flags, its metric families and its log lines.

Family names and bucket bounds follow SGLang 0.5.23 (``sglang/srt/observability/metrics_collector.py``
of its wheel; tests/e2e/test_sglang_drift_guard.py checks every name and bound against it): scheduler
families carry ``engine_type="unified"``, ``model_name``, ``pp_rank`` and ``tp_rank``; tokenizer-side
families carry ``model_name`` only. prometheus_client renders them in multiprocess mode (no
``_created`` series).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from agents.engines.sglang import TTFT_BUCKETS_S as TTFT_S
from agents.sim.config import SimConfig
from agents.sim.dialects._common import HelpTable, declare_each, mmss
from agents.sim.dialects.base import Dialect
from agents.sim.exposition import Registry
from agents.sim.model import Gauges
from agents.sim.sink import Log, Route, TableSink

PREFIX = "sglang:"

SGLANG_BOOLEAN_FLAGS = frozenset(
    {
        "--trust-remote-code",
        "--enable-torch-compile",
        "--disable-cuda-graph",
        "--enable-dp-attention",
        "--skip-server-warmup",
        "--enable-cache-report",
        "--log-requests",
        "--enable-mixed-chunk",
        "--disable-overlap-schedule",
        "--enable-p2p-check",
        "--show-time-cost",
        "--enable-metrics-for-all-schedulers",
        "--enable-lora",
        "--disable-cuda-graph-padding",
        "--collect-tokens-histogram",
        "--enable-deterministic-inference",
        "--skip-tokenizer-init",
    }
)

# --- metric tables, in the order they are rendered ---------------------------------------------

SCHEDULER_GAUGES: HelpTable = (
    ("num_running_reqs", "The number of running requests."),
    ("num_used_tokens", "The number of used tokens."),
    ("token_usage", "The token usage."),
    ("gen_throughput", "The generation throughput (token/s)."),
    ("num_queue_reqs", "The number of requests in the waiting queue."),
    ("num_grammar_queue_reqs", "The number of requests in the grammar waiting queue."),
    ("cache_hit_rate", "The prefix cache hit rate."),
    ("max_total_num_tokens", "Maximum total number of tokens in the KV cache pool."),
    ("num_retracted_reqs", "The number of retracted requests."),
    ("is_cuda_graph", "Whether the batch is using CUDA graph."),
)
RETRACTION_COUNTERS: HelpTable = (
    ("num_retracted_requests", "Total number of retracted requests."),
    ("num_retracted_input_tokens", "Total number of retracted input tokens."),
    ("num_retracted_output_tokens", "Total number of retracted output tokens."),
)
QUEUE_S = (
    0.0,
    0.001,
    0.005,
    0.010,
    0.050,
    0.1,
    0.2,
    0.5,
    1,
    2,
    3,
    4,
    5,
    10,
    15,
    20,
    30,
    40,
    50,
    60,
    70,
    80,
    90,
    100,
    200,
    300,
    400,
    500,
    600,
    700,
    800,
    900,
    1000,
    1200,
    1400,
    1600,
    1800,
    2000,
    2500,
    3000,
)
TOKENIZER_COUNTERS: HelpTable = (
    ("prompt_tokens", "Number of prefill tokens processed."),
    ("generation_tokens", "Number of generation tokens processed."),
    ("cached_tokens", "Number of cached prompt tokens."),
    ("num_requests", "Number of requests processed."),
    ("num_so_requests", "Number of structured output requests processed."),
    ("num_aborted_requests", "Number of requests aborted."),
)
E2E_S = (0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400, 600, 1200, 1800, 2400)
ITL_S = (
    0.002,
    0.004,
    0.006,
    0.008,
    0.010,
    0.015,
    0.020,
    0.025,
    0.030,
    0.035,
    0.040,
    0.060,
    0.080,
    0.100,
    0.200,
    0.400,
    0.600,
    0.800,
    1.000,
    2.000,
    4.000,
    6.000,
    8.000,
)
TOKENIZER_HISTOGRAMS = (
    ("time_to_first_token_seconds", "Histogram of time to first token in seconds.", TTFT_S),
    ("inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", ITL_S),
    ("e2e_request_latency_seconds", "Histogram of End-to-end request latency in seconds", E2E_S),
)

# The model's neutral events -> (family, "S" for the scheduler labels or "T" for the tokenizer's).
OBSERVE_ROUTES: Mapping[str, tuple[str, str]] = {
    "ttft": ("time_to_first_token_seconds", "T"),
    "itl": ("inter_token_latency_seconds", "T"),
    "e2e": ("e2e_request_latency_seconds", "T"),
    "queue_time": ("queue_time_seconds", "S"),
}
INC_ROUTES: Mapping[str, tuple[str, str]] = {
    # the tokenizer manager counts tokens when a request finishes
    "finished_prompt_tokens": ("prompt_tokens", "T"),
    "finished_generation_tokens": ("generation_tokens", "T"),
    "finished_cached_tokens": ("cached_tokens", "T"),
    "requests_finished": ("num_requests", "T"),
    "aborted": ("num_aborted_requests", "T"),
    "preemptions": ("num_retracted_requests", "S"),
    "preempted_input_tokens": ("num_retracted_input_tokens", "S"),
    "preempted_output_tokens": ("num_retracted_output_tokens", "S"),
}


def _build_registry(S: Mapping[str, str], T: Mapping[str, str], kv_tokens: int, created: float) -> Registry:
    r = Registry("python_mp", created)
    for name, help_text in SCHEDULER_GAUGES:
        r.add(PREFIX + name, "gauge", help_text).set(S, 0)
    r[PREFIX + "max_total_num_tokens"].set(S, kv_tokens)
    declare_each(r, "counter", PREFIX, RETRACTION_COUNTERS, S, created)
    r.add(
        PREFIX + "queue_time_seconds", "histogram", "Histogram of queueing time in seconds.", QUEUE_S
    ).declare(S, created)
    declare_each(r, "counter", PREFIX, TOKENIZER_COUNTERS, T, created)
    for name, help_text, bounds in TOKENIZER_HISTOGRAMS:
        r.add(PREFIX + name, "histogram", help_text, bounds).declare(T, created)
    return r


def _routes(
    S: Mapping[str, str], T: Mapping[str, str]
) -> tuple[dict[str, list[Route]], dict[str, list[Route]]]:
    labels = {"S": S, "T": T}
    observe = {event: [(PREFIX + name, labels[side])] for event, (name, side) in OBSERVE_ROUTES.items()}
    inc = {event: [(PREFIX + name, labels[side])] for event, (name, side) in INC_ROUTES.items()}
    return observe, inc


class SglangMetrics(TableSink):
    """SGLang: scheduler-side labels (engine_type, model_name, pp_rank, tp_rank) vs tokenizer-side
    (model_name); multiprocess exposition; scheduler gauges latched on prefill batches, every
    ``decode_log_interval`` decode batches and when the engine idles (as SGLang logs its stats)."""

    decode_log_interval = 40

    def __init__(self, cfg: SimConfig, created: float, log: Log) -> None:
        self.S = S = {"engine_type": "unified", "model_name": cfg.served_name, "pp_rank": "0", "tp_rank": "0"}
        T = {"model_name": cfg.served_name}
        super().__init__(_build_registry(S, T, cfg.model_config.kv_tokens, created), *_routes(S, T), log)
        self._decodes = 0
        self._gen_since = 0
        self._retracted_since = 0
        self._cached_since = 0  # prefix-cache hit tokens of the requests admitted since the last prefill log
        self._last_log_t: float | None = None

    def inc(self, name: str, amount: float = 1.0) -> None:
        super().inc(name, amount)
        if name == "generation_tokens":
            self._gen_since += int(amount)
        elif name == "preemptions":
            self._retracted_since += int(amount)
        elif name == "prefix_hits":
            self._cached_since += int(amount)

    def iteration(self, gauges: Gauges, prefill_tokens: int, decode_tokens: int, now: float) -> None:
        if self._last_log_t is None:
            self._last_log_t = now
        if prefill_tokens:
            cached, self._cached_since = self._cached_since, 0
            self.set_gauges(gauges)
            self.registry["sglang:cache_hit_rate"].set(self.S, cached / (cached + prefill_tokens))
            self.log(
                _sglang_line(
                    f"Prefill batch. #new-seq: {max(1, gauges.running - decode_tokens)}, #new-token: {prefill_tokens}, "
                    f"#cached-token: {cached}, token usage: {gauges.kv_usage:.2f}, #running-req: {decode_tokens}, "
                    f"#queue-req: {gauges.waiting}",
                    tp=True,
                )
            )
            return
        self._decodes += 1
        if self._decodes % self.decode_log_interval == 0:
            elapsed = max(now - self._last_log_t, 1e-9)
            throughput = self._gen_since / elapsed
            self._gen_since, self._last_log_t = 0, now
            self.set_gauges(gauges)
            self.registry["sglang:gen_throughput"].set(self.S, throughput)
            self.registry["sglang:cache_hit_rate"].set(self.S, 0.0)
            self.log(
                _sglang_line(
                    f"Decode batch. #running-req: {gauges.running}, #token: {gauges.kv_used}, token usage: "
                    f"{gauges.kv_usage:.2f}, cuda graph: True, gen throughput (token/s): {throughput:.2f}, "
                    f"#queue-req: {gauges.waiting}",
                    tp=True,
                )
            )

    def idle(self, gauges: Gauges, now: float) -> None:
        self.set_gauges(gauges)
        self.registry["sglang:gen_throughput"].set(self.S, 0.0)

    def set_gauges(self, gauges: Gauges) -> None:
        r, S = self.registry, self.S
        r["sglang:num_running_reqs"].set(S, gauges.running)
        r["sglang:num_queue_reqs"].set(S, gauges.waiting)
        r["sglang:num_used_tokens"].set(S, gauges.kv_used)
        r["sglang:token_usage"].set(S, round(gauges.kv_usage, 2))
        r["sglang:num_retracted_reqs"].set(S, self._retracted_since)
        r["sglang:is_cuda_graph"].set(S, 1.0 if gauges.running else 0.0)
        self._retracted_since = 0


# --- the dialect ------------------------------------------------------------------------------


def _sglang_line(msg: str, tp: bool = False) -> str:
    stamp = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    return f"[{stamp}{' TP0' if tp else ''}] {msg}"


class Sglang(Dialect):
    name = "sglang"
    title = "SGLang"
    default_port = 30000
    listens_while_loading = True
    has_health_generate = True
    boolean_flags = SGLANG_BOOLEAN_FLAGS

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--model-path", dest="model_path", help="model (SGLang's --model-path)")
        parser.add_argument(
            "--enable-metrics", action="store_true", help="serve /metrics (else 404, as SGLang)"
        )
        parser.add_argument("--max-running-requests", dest="max_num_seqs", type=int, help="= --max-num-seqs")
        parser.add_argument("--context-length", dest="max_model_len", type=int, help="= --max-model-len")
        parser.add_argument("--disable-radix-cache", action="store_true", help="no prefix (radix) cache")

    def resolve(self, ns: argparse.Namespace) -> dict[str, Any]:
        if ns.model_path and ns.model and ns.model_path != ns.model:
            raise ValueError(f"model given twice: --model-path {ns.model_path!r} and --model {ns.model!r}")
        model = ns.model_path or ns.model or "sim-model"
        return {
            "model": model,
            "served_name": ns.served_model_name or model,
            "metrics_enabled": bool(ns.enable_metrics),
            "metrics_port": None,
            "log_stats": True,
            "prefix_caching": not ns.disable_radix_cache,
        }

    def make_metrics(self, cfg: SimConfig, created: float, log: Log) -> TableSink:
        return SglangMetrics(cfg, created, log)

    def boot_lines(self, cfg: SimConfig) -> list[str]:
        return [
            _sglang_line(
                f"server_args=ServerArgs(model_path='{cfg.model}', served_model_name='{cfg.served_name}', "
                f"host='{cfg.host}', port={cfg.port}, enable_metrics={cfg.metrics_enabled}, "
                f"context_length={cfg.model_config.max_model_len})"
            ),
            _sglang_line(f"Load weight begin. avail mem={cfg.gpu_mem_gib + 60:.2f} GB", tp=True),
        ]

    def loading_line(self, cfg: SimConfig, done: int, total: int, elapsed: float) -> str:
        pct = int(100 * done / total) if total else 100
        return (
            f"Loading safetensors checkpoint shards: {pct:3d}% Completed | {done}/{total} "
            f"[{mmss(elapsed)}<?, ?it/s]"
        )

    def loaded_lines(self, cfg: SimConfig, load_s: float) -> list[str]:
        mc = cfg.model_config
        return [
            _sglang_line(
                f"Load weight end. type=LlamaForCausalLM, dtype=torch.bfloat16, avail mem=60.00 GB, "
                f"mem usage={cfg.gpu_mem_gib * 0.8:.2f} GB.",
                tp=True,
            ),
            _sglang_line(f"KV Cache is allocated. #tokens: {mc.kv_tokens}", tp=True),
            _sglang_line(
                f"max_total_num_tokens={mc.kv_tokens}, max_running_requests={mc.max_num_seqs}, "
                f"context_len={mc.max_model_len}",
                tp=True,
            ),
        ]

    def listening_lines(self, cfg: SimConfig) -> list[str]:
        return [f"INFO:     Uvicorn running on {cfg.url} (Press CTRL+C to quit)"]

    def ready_lines(self, cfg: SimConfig) -> list[str]:
        return [
            _sglang_line('INFO:     127.0.0.1 - "GET /get_model_info HTTP/1.1" 200 OK'),
            _sglang_line("The server is fired up and ready to roll!"),
        ]

    def crash_lines(self, cfg: SimConfig) -> list[str]:
        return [
            _sglang_line("Scheduler hit an exception: Traceback (most recent call last):", tp=True),
            _sglang_line("RuntimeError: SIMULATED fault (llmconsole sim-engine --fault crash)", tp=True),
            _sglang_line("Received sigquit from a child process. It usually means the child failed."),
        ]

    def start_fail_lines(self, cfg: SimConfig) -> list[str]:
        return [
            _sglang_line("Scheduler hit an exception: Traceback (most recent call last):", tp=True),
            "RuntimeError: Not enough memory. Please try to increase --mem-fraction-static.",
            _sglang_line("Received sigquit from a child process. It usually means the child failed."),
        ]

    def shutdown_lines(self, cfg: SimConfig) -> list[str]:
        return ["INFO:     Shutting down", "INFO:     Application shutdown complete."]
