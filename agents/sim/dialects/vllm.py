"""The simulated vLLM (V1, 0.32): ``vllm serve`` flags, its metric families and its log lines.

Family names and order, HELP texts, label sets and bucket bounds are those of the real vLLM 0.32.0
exposition kept in tests/data/metrics/vllm-0.32-cpu.loaded.prom: engine series carry ``engine="0"``
and ``model_name=<served name>`` (``vllm:admission_rejections`` has ``model_name`` only, and
``vllm:cache_config_info`` carries the cache settings as labels), rendered as prometheus_client does in
single-process mode.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from agents.engines.vllm import TTFT_BUCKETS_S as TTFT_S
from agents.sim.config import SimConfig
from agents.sim.dialects._common import HelpTable, declare_each, mmss
from agents.sim.dialects.base import Dialect
from agents.sim.exposition import Registry
from agents.sim.model import Gauges, ModelConfig
from agents.sim.sink import Log, Route, TableSink

PREFIX = "vllm:"

VLLM_BOOLEAN_FLAGS = frozenset(
    {
        "--enforce-eager",
        "--trust-remote-code",
        "--disable-log-requests",
        "--enable-log-requests",
        "--no-enable-log-requests",
        "--enable-chunked-prefill",
        "--no-enable-chunked-prefill",
        "--disable-custom-all-reduce",
        "--enable-auto-tool-choice",
        "--kv-cache-metrics",
        "--disable-frontend-multiprocessing",
        "--enable-lora",
        "--disable-fastapi-docs",
        "--enable-sleep-mode",
        "--async-scheduling",
        "--enable-expert-parallel",
        "--enable-server-load-tracking",
        "--skip-tokenizer-init",
        "--enable-prompt-tokens-details",
        "--disable-uvicorn-access-log",
        "--headless",
        "--enable-force-include-usage",
    }
)


def buckets_1_2_5(limit: int) -> list[float]:
    """vLLM's ``build_1_2_5_buckets``: 1, 2, 5, 10, 20, 50, ... up to ``limit``."""
    out: list[float] = []
    exponent = 0
    while True:
        for mantissa in (1, 2, 5):
            value = mantissa * 10**exponent
            if value > limit:
                return out
            out.append(float(value))
        exponent += 1


# --- metric tables, in vLLM 0.32's order ------------------------------------------------------

REQUEST_S = (
    0.3,
    0.5,
    0.8,
    1.0,
    1.5,
    2.0,
    2.5,
    5.0,
    10.0,
    15.0,
    20.0,
    30.0,
    40.0,
    50.0,
    60.0,
    120.0,
    240.0,
    480.0,
    960.0,
    1920.0,
    7680.0,
)
ITL_S = (
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.4,
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
)
ITERATION_TOKENS = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)

_MFU = "(for Model Flops Utilization calculations)"
MFU_COUNTERS: HelpTable = (
    ("estimated_flops_per_gpu", f"Estimated number of floating point operations per GPU {_MFU}."),
    ("estimated_read_bytes_per_gpu", f"Estimated number of bytes read from memory per GPU {_MFU}."),
    ("estimated_write_bytes_per_gpu", f"Estimated number of bytes written to memory per GPU {_MFU}."),
)
WAITING_BY_REASON_HELP = (
    "Number of waiting requests by reason. Reason labels: 'capacity' = waiting for scheduling capacity; "
    "'deferred' = deferred by transient constraints (LoRA budget, KV transfer, blocked status). "
    "Sum of all reasons equals vllm:num_requests_waiting."
)
SLEEP_STATE_HELP = (
    "Engine sleep state; awake = 0 means engine is sleeping; awake = 1 means engine is awake; "
    "weights_offloaded = 1 means sleep level 1; discard_all = 1 means sleep level 2."
)
TOKEN_COUNTERS: HelpTable = (
    ("prefix_cache_queries", "Prefix cache queries, in terms of number of queried tokens."),
    ("prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens."),
    (
        "external_prefix_cache_queries",
        "External prefix cache queries from KV connector cross-instance "
        "cache sharing, in terms of number of queried tokens.",
    ),
    (
        "external_prefix_cache_hits",
        "External prefix cache hits from KV connector cross-instance cache "
        "sharing, in terms of number of cached tokens.",
    ),
    ("mm_cache_queries", "Multi-modal cache queries, in terms of number of queried items."),
    ("mm_cache_hits", "Multi-modal cache hits, in terms of number of cached items."),
    ("num_preemptions", "Cumulative number of preemption from the engine."),
    ("prompt_tokens", "Number of prefill tokens processed."),
)
CACHED_BY_SOURCE_HELP = (
    "Prefix-cache hit tokens by the cache tier that supplied them: device (local HBM), host (offloaded "
    "to DRAM), disk, p2p (transferred from another vLLM instance) or external_unspecified. Counted at "
    "admission; sums to vllm:prefix_cache_hits + vllm:external_prefix_cache_hits."
)
TOKENS = None  # histogram bounds: the 1-2-5 token buckets up to max_model_len
HISTOGRAMS: tuple[tuple[str, str, Sequence[float] | None], ...] = (
    ("request_prompt_tokens", "Number of prefill tokens processed.", TOKENS),
    ("request_generation_tokens", "Number of generation tokens processed.", TOKENS),
    ("iteration_tokens_total", "Histogram of number of tokens per engine_step.", ITERATION_TOKENS),
    (
        "request_max_num_generation_tokens",
        "Histogram of maximum number of requested generation tokens.",
        TOKENS,
    ),
    ("request_params_n", "Histogram of the n request parameter.", (1, 2, 5, 10, 20)),
    ("request_params_max_tokens", "Histogram of the max_tokens request parameter.", TOKENS),
    ("time_to_first_token_seconds", "Histogram of time to first token in seconds.", TTFT_S),
    ("inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", ITL_S),
    (
        "request_time_per_output_token_seconds",
        "Histogram of time_per_output_token_seconds per request.",
        ITL_S,
    ),
    ("e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", REQUEST_S),
    ("request_queue_time_seconds", "Histogram of time spent in WAITING phase for request.", REQUEST_S),
    ("request_inference_time_seconds", "Histogram of time spent in RUNNING phase for request.", REQUEST_S),
    ("request_prefill_time_seconds", "Histogram of time spent in PREFILL phase for request.", REQUEST_S),
    ("request_decode_time_seconds", "Histogram of time spent in DECODE phase for request.", REQUEST_S),
    (
        "request_num_preemptions",
        "Histogram of the number of times a request was preempted.",
        (1, 2, 3, 4, 5, 10, 20),
    ),
    (
        "request_prefill_kv_computed_tokens",
        "Histogram of new KV tokens computed during prefill (excluding cached tokens).",
        TOKENS,
    ),
)

# The model's neutral events -> the families they feed (with the engine labels, plus any extra ones).
OBSERVE_ROUTES: Mapping[str, tuple[str, ...]] = {
    "ttft": ("time_to_first_token_seconds",),
    "itl": ("inter_token_latency_seconds",),
    "tpot": ("request_time_per_output_token_seconds",),
    "e2e": ("e2e_request_latency_seconds",),
    "queue_time": ("request_queue_time_seconds",),
    "inference_time": ("request_inference_time_seconds",),
    "prefill_time": ("request_prefill_time_seconds",),
    "decode_time": ("request_decode_time_seconds",),
    "prompt_len": ("request_prompt_tokens",),
    "gen_len": ("request_generation_tokens",),
    "max_tokens": ("request_max_num_generation_tokens", "request_params_max_tokens"),
    "n": ("request_params_n",),
    "req_preemptions": ("request_num_preemptions",),
    "iteration_tokens": ("iteration_tokens_total",),
    "prefill_computed": ("request_prefill_kv_computed_tokens",),
}
INC_ROUTES: Mapping[str, tuple[tuple[str, Mapping[str, str]], ...]] = {
    "prompt_tokens": (("prompt_tokens", {}),),
    "prompt_computed_tokens": (("prompt_tokens_by_source", {"source": "local_compute"}),),
    "prompt_cached_tokens": (("prompt_tokens_by_source", {"source": "local_cache_hit"}),),
    "generation_tokens": (("generation_tokens", {}),),
    "preemptions": (("num_preemptions", {}),),
    "prefix_queries": (("prefix_cache_queries", {}),),
    "prefix_hits": (
        ("prefix_cache_hits", {}),
        ("prompt_tokens_cached", {}),
        ("prompt_tokens_cached_by_source", {"source": "device"}),
    ),
    "finished:stop": (("request_success", {"finished_reason": "stop"}),),
    "finished:length": (("request_success", {"finished_reason": "length"}),),
}


# --- registry builders, one per group of families ---------------------------------------------


def _add_scheduler_gauges(r: Registry, L: Mapping[str, str]) -> None:
    r.add("vllm:num_requests_running", "gauge", "Number of requests in model execution batches.").set(L, 0)
    r.add("vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.").set(L, 0)
    by_reason = r.add("vllm:num_requests_waiting_by_reason", "gauge", WAITING_BY_REASON_HELP)
    for reason in ("capacity", "deferred"):
        by_reason.set({**L, "reason": reason}, 0)
    sleep = r.add("vllm:engine_sleep_state", "gauge", SLEEP_STATE_HELP)
    for state, value in (("awake", 1), ("weights_offloaded", 0), ("discard_all", 0)):
        sleep.set({**L, "sleep_state": state}, value)
    r.add("vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.").set(L, 0)


def _add_token_counters(r: Registry, L: Mapping[str, str], created: float) -> None:
    declare_each(r, "counter", PREFIX, TOKEN_COUNTERS, L, created)
    by_source = r.add("vllm:prompt_tokens_by_source", "counter", "Number of prompt tokens by source.")
    for source in ("local_compute", "local_cache_hit", "external_kv_transfer"):
        by_source.declare({**L, "source": source}, created)
    r.add(
        "vllm:prompt_tokens_cached", "counter", "Number of cached prompt tokens (local + external)."
    ).declare(L, created)
    cached_src = r.add("vllm:prompt_tokens_cached_by_source", "counter", CACHED_BY_SOURCE_HELP)
    for source in ("device", "host", "p2p", "disk", "external_unspecified"):
        cached_src.declare({**L, "source": source}, created)
    r.add("vllm:generation_tokens", "counter", "Number of generation tokens processed.").declare(L, created)


def _add_request_counters(r: Registry, L: Mapping[str, str], served_name: str, created: float) -> None:
    success = r.add("vllm:request_success", "counter", "Count of successfully processed requests.")
    for reason in ("stop", "length", "abort", "error", "repetition"):
        success.declare({**L, "finished_reason": reason}, created)
    rejections = r.add(
        "vllm:admission_rejections",
        "counter",
        "Number of admission attempts rejected by a queue limit, by reason.",
    )
    for reason in ("max_num_queued_reqs", "max_num_queued_tokens"):  # no engine label on this family
        rejections.declare({"model_name": served_name, "reason": reason}, created)


def _add_histograms(r: Registry, L: Mapping[str, str], created: float, max_model_len: int) -> None:
    tokens = buckets_1_2_5(max_model_len)
    for name, help_text, bounds in HISTOGRAMS:
        family = r.add(PREFIX + name, "histogram", help_text, tokens if bounds is TOKENS else bounds)
        family.declare(L, created)


def _add_cache_config_info(r: Registry, mc: ModelConfig) -> None:
    kv, block = mc.kv_tokens, 16
    info = {
        "block_size": str(block),
        "cache_dtype": "auto",
        "enable_prefix_caching": str(mc.prefix_caching),
        "engine": "0",
        "gpu_memory_utilization": "0.9",
        "kv_cache_size_tokens": str(kv),
        "num_gpu_blocks": str(kv // block),
        "num_gpu_blocks_override": "None",
        "num_cpu_blocks": "None",
        "kv_cache_max_concurrency": f"{kv / mc.max_model_len:.1f}",
        "prefix_caching_hash_algo": "sha256",
        "sliding_window": "None",
        "is_attention_free": "False",
    }
    r.add("vllm:cache_config_info", "gauge", "Information of the LLMEngine CacheConfig").set(info, 1.0)


def _routes(L: Mapping[str, str]) -> tuple[dict[str, list[Route]], dict[str, list[Route]]]:
    observe = {event: [(PREFIX + name, L) for name in names] for event, names in OBSERVE_ROUTES.items()}
    inc = {
        event: [(PREFIX + name, {**L, **extra}) for name, extra in routes]
        for event, routes in INC_ROUTES.items()
    }
    return observe, inc


class VllmMetrics(TableSink):
    """vLLM V1 (0.32) metrics: labels engine="0", model_name=<served>; single-process exposition."""

    def __init__(self, cfg: SimConfig, created: float, log: Log) -> None:
        self.L = L = {"engine": "0", "model_name": cfg.served_name}
        r = Registry("python", created)
        declare_each(r, "counter", PREFIX, MFU_COUNTERS, L, created)
        _add_scheduler_gauges(r, L)
        _add_token_counters(r, L, created)
        _add_request_counters(r, L, cfg.served_name, created)
        _add_histograms(r, L, created, cfg.model_config.max_model_len)
        _add_cache_config_info(r, cfg.model_config)
        super().__init__(r, *_routes(L), log)

    def set_gauges(self, gauges: Gauges) -> None:
        r, L = self.registry, self.L
        r["vllm:num_requests_running"].set(L, gauges.running)
        r["vllm:num_requests_waiting"].set(L, gauges.waiting)
        # the reasons sum to num_requests_waiting; a stalled scheduler defers (admission-stall fault)
        r["vllm:num_requests_waiting_by_reason"].set(
            {**L, "reason": "capacity"}, gauges.waiting - gauges.deferred
        )
        r["vllm:num_requests_waiting_by_reason"].set({**L, "reason": "deferred"}, gauges.deferred)
        r["vllm:kv_cache_usage_perc"].set(L, gauges.kv_usage)


# --- the dialect ------------------------------------------------------------------------------


def _engine_time() -> str:
    return datetime.now().strftime("%m-%d %H:%M:%S")


class Vllm(Dialect):
    name = "vllm"
    title = "vLLM"
    default_port = 8000
    has_tokenize = True
    boolean_flags = VLLM_BOOLEAN_FLAGS

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("model_pos", nargs="?", metavar="MODEL", help="model (as in `vllm serve MODEL`)")
        parser.add_argument("--disable-log-stats", action="store_true", help="no periodic throughput lines")
        parser.add_argument(
            "--enable-prefix-caching",
            action=argparse.BooleanOptionalAction,
            default=True,
            help="serve repeated prompt prefixes from the prefix cache (default on, as vLLM V1)",
        )

    def resolve(self, ns: argparse.Namespace) -> dict[str, Any]:
        if ns.model_pos and ns.model and ns.model_pos != ns.model:
            raise ValueError(f"model given twice: positional {ns.model_pos!r} and --model {ns.model!r}")
        model = ns.model_pos or ns.model or "sim-model"
        return {
            "model": model,
            "served_name": ns.served_model_name or model,
            "metrics_enabled": True,
            "metrics_port": None,
            "log_stats": not ns.disable_log_stats,
            "prefix_caching": ns.enable_prefix_caching,
        }

    def make_metrics(self, cfg: SimConfig, created: float, log: Log) -> TableSink:
        return VllmMetrics(cfg, created, log)

    def extra_metrics_text(self) -> str:
        from prometheus_client import REGISTRY, generate_latest

        return generate_latest(REGISTRY).decode()

    def error_body(self, status: int, message: str, kind: str = "validation") -> dict[str, Any]:
        names = {404: "NotFoundError"}
        return {
            "error": {
                "message": message,
                "type": names.get(status, "BadRequestError"),
                "param": None,
                "code": status,
            }
        }

    def _line(self, msg: str, where: str, who: str = "APIServer", level: str = "INFO") -> str:
        return f"({who} pid={os.getpid()}) {level} {_engine_time()} [{where}] {msg}"

    def _core(self, msg: str, where: str, level: str = "INFO") -> str:
        return self._line(msg, where, "EngineCore_DP0", level)

    def boot_lines(self, cfg: SimConfig) -> list[str]:
        return [
            self._line("vLLM API server version 0.32.0", "api_server.py:1839"),
            self._line(
                f"non-default args: {{'model': {cfg.model!r}, 'host': {cfg.host!r}, 'port': {cfg.port}}}",
                "utils.py:253",
            ),
            self._core(
                f"Initializing a V1 LLM engine (v0.32.0) with config: model={cfg.model!r}, "
                f"served_model_name={cfg.served_name}, max_seq_len={cfg.model_config.max_model_len}",
                "core.py:77",
            ),
        ]

    def loading_line(self, cfg: SimConfig, done: int, total: int, elapsed: float) -> str:
        pct = int(100 * done / total) if total else 100
        rate = f"{elapsed / done:.2f}s/it" if done else "?it/s"
        return (
            f"(EngineCore_DP0 pid={os.getpid()}) Loading safetensors checkpoint shards: {pct:3d}% Completed "
            f"| {done}/{total} [{mmss(elapsed)}<?, {rate}]"
        )

    def loaded_lines(self, cfg: SimConfig, load_s: float) -> list[str]:
        mc = cfg.model_config
        return [
            self._core(f"Loading weights took {load_s:.2f} seconds", "default_loader.py:267"),
            self._core(
                f"Model loading took {cfg.gpu_mem_gib * 0.8:.4f} GiB and {load_s + 0.1:.6f} seconds",
                "gpu_model_runner.py:2653",
            ),
            self._core(f"GPU KV cache size: {mc.kv_tokens:,} tokens", "kv_cache_utils.py:1087"),
            self._core(
                f"Maximum concurrency for {mc.max_model_len:,} tokens per request: "
                f"{mc.kv_tokens / mc.max_model_len:.2f}x",
                "kv_cache_utils.py:1091",
            ),
        ]

    def ready_lines(self, cfg: SimConfig) -> list[str]:
        routes = [
            "/health",
            "/metrics",
            "/tokenize",
            "/v1/models",
            "/v1/completions",
            "/v1/chat/completions",
            "/ping",
        ]
        posts = ("/tokenize", "/v1/completions", "/v1/chat/completions")
        lines = [
            self._line(f"Starting vLLM API server 0 on {cfg.url}", "api_server.py:1912"),
            self._line("Available routes are:", "launcher.py:46"),
        ]
        lines += [
            self._line(f"Route: {path}, Methods: {'POST' if path in posts else 'GET'}", "launcher.py:54")
            for path in routes
        ]
        pid = os.getpid()
        lines += [
            f"(APIServer pid={pid}) INFO:     Started server process [{pid}]",
            f"(APIServer pid={pid}) INFO:     Waiting for application startup.",
            f"(APIServer pid={pid}) INFO:     Application startup complete.",
        ]
        return lines

    def crash_lines(self, cfg: SimConfig) -> list[str]:
        return [
            self._core("EngineCore encountered a fatal error.", "core.py:710", "ERROR"),
            self._core("Traceback (most recent call last):", "core.py:710", "ERROR"),
            self._core(
                "RuntimeError: Worker failed with error 'SIMULATED fault (llmconsole sim-engine --fault "
                "crash)', please check the stack trace above for the root cause",
                "core.py:710",
                "ERROR",
            ),
            self._line("AsyncLLM output_handler failed.", "async_llm.py:480", level="ERROR"),
            self._line("Traceback (most recent call last):", "async_llm.py:480", level="ERROR"),
            "vllm.v1.engine.exceptions.EngineDeadError: EngineCore encountered an issue. See stack trace "
            "(above) for the root cause.",
            self._line("Shutting down FastAPI HTTP server.", "launcher.py:101"),
            "EngineDeadError: EngineCore encountered an issue. See stack trace (above) for the root cause.",
        ]

    def start_fail_lines(self, cfg: SimConfig) -> list[str]:
        return [
            self._core("EngineCore failed to start.", "core.py:779", "ERROR"),
            self._core("Traceback (most recent call last):", "core.py:779", "ERROR"),
            "ValueError: No common block size for 16.",
            "RuntimeError: Engine core initialization failed. See root cause above. "
            "Failed core proc(s): {'EngineCore_DP0': 1}",
        ]

    def shutdown_lines(self, cfg: SimConfig) -> list[str]:
        pid = os.getpid()
        return [
            self._line("Shutting down FastAPI HTTP server.", "launcher.py:101"),
            f"(APIServer pid={pid}) INFO:     Shutting down",
            f"(APIServer pid={pid}) INFO:     Application shutdown complete.",
        ]

    def stats_line(
        self, prompt_tps: float, gen_tps: float, gauges: Gauges, preemptions: int, hit_rate: float
    ) -> str | None:
        pre = f"Preemptions: {preemptions}, " if preemptions else ""
        deferred = f"Deferred: {gauges.deferred} reqs, " if gauges.deferred else ""
        return self._line(
            f"Engine 000: Avg prompt throughput: {prompt_tps:.1f} tokens/s, Avg generation throughput: "
            f"{gen_tps:.1f} tokens/s, Running: {gauges.running} reqs, Waiting: {gauges.waiting} reqs, "
            f"{deferred}{pre}"
            f"GPU KV cache usage: {100 * gauges.kv_usage:.1f}%, Prefix cache hit rate: {100 * hit_rate:.1f}%",
            "loggers.py:236",
        )
