"""The three engine dialects the simulator speaks: vLLM, SGLang, TGI.

Each ``Dialect`` owns everything that differs between the real engines: its launch flags, its
metric names/types/labels/buckets (a ``TableSink`` subclass), its health semantics, its log lines
(loading, readiness, periodic stats, crash, start failure) and its error bodies. The runtime and the
HTTP app never branch on the dialect's name; they ask the dialect.

Sources: /work/shared/research/engines.md (§1 metrics, §2 health, §3 flags and log lines) and the real
vLLM 0.32 exposition in /work/shared/fixtures/engines/vllm-0.32-cpu.loaded.prom.
"""

from __future__ import annotations

import argparse
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from agents.sim.config import SimConfig
from agents.sim.exposition import Registry
from agents.sim.model import Gauges
from agents.sim.sink import Log, Route, TableSink


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


def tgi_duration_buckets() -> list[float]:
    """TGI's 35 geometric duration buckets: 0.0001 multiplied by 1.5 before each push."""
    value, out = 0.0001, []
    for _ in range(35):
        value *= 1.5
        out.append(value)
    return out


def _engine_time() -> str:
    return datetime.now().strftime("%m-%d %H:%M:%S")


class Dialect(ABC):
    """One engine's outward behaviour."""

    name: str
    title: str
    default_port: int
    listens_while_loading = False  # SGLang: listen during start-up, /health 503 until ready
    has_health_generate = False  # SGLang's /health_generate
    # engine boolean flags we do not implement (so the flag parser does not eat the next token)
    boolean_flags: frozenset[str] = frozenset()

    # --- launch flags -------------------------------------------------------------------------
    @abstractmethod
    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Add the real engine's flags that the simulator honours."""

    @abstractmethod
    def resolve(self, ns: argparse.Namespace) -> dict[str, Any]:
        """From parsed flags: model, served_name, metrics_enabled, metrics_port (others are common)."""

    # --- metrics ------------------------------------------------------------------------------
    @abstractmethod
    def make_metrics(self, cfg: SimConfig, created: float, log: Log) -> TableSink: ...

    def extra_metrics_text(self) -> str:
        """Text prepended to /metrics (process/python collectors where the engine has them)."""
        return ""

    # --- HTTP ---------------------------------------------------------------------------------
    def info(self, cfg: SimConfig) -> dict[str, Any] | None:
        """The JSON of ``GET /info`` (TGI), or None when the engine has no such route."""
        return None

    def error_body(self, status: int, message: str, kind: str = "validation") -> dict[str, Any]:
        names = {400: "BadRequestError", 404: "NotFoundError", 413: "BadRequestError", 422: "BadRequestError"}
        return {"object": "error", "message": message, "type": names.get(status, "BadRequestError"),
                "param": None, "code": status}

    def validation_status(self) -> int:
        return 400

    # --- logs ---------------------------------------------------------------------------------
    @abstractmethod
    def boot_lines(self, cfg: SimConfig) -> list[str]: ...

    @abstractmethod
    def loading_line(self, cfg: SimConfig, done: int, total: int, elapsed: float) -> str: ...

    @abstractmethod
    def loaded_lines(self, cfg: SimConfig, load_s: float) -> list[str]: ...

    def listening_lines(self, cfg: SimConfig) -> list[str]:
        """Lines when the socket is bound before loading finished (dialects that listen while loading)."""
        return []

    @abstractmethod
    def ready_lines(self, cfg: SimConfig) -> list[str]:
        """Lines printed once the engine serves; the last one is the engine's readiness line."""

    @abstractmethod
    def crash_lines(self, cfg: SimConfig) -> list[str]:
        """Lines printed when the engine dies at run time; the last one is the engine's last word."""

    @abstractmethod
    def start_fail_lines(self, cfg: SimConfig) -> list[str]: ...

    @abstractmethod
    def shutdown_lines(self, cfg: SimConfig) -> list[str]: ...

    def bind_error_lines(self, cfg: SimConfig, port: int, error: str) -> list[str]:
        return [f"OSError: [Errno 98] error while attempting to bind on address ('{cfg.host}', {port}): {error}"]

    def stats_line(self, prompt_tps: float, gen_tps: float, gauges: Gauges, preemptions: int,
                   hit_rate: float) -> str | None:
        """A periodic throughput line (vLLM's LoggingStatLogger), or None."""
        return None


# ============================================================================================
# vLLM
# ============================================================================================

VLLM_BOOLEAN_FLAGS = frozenset({
    "--enable-prefix-caching", "--no-enable-prefix-caching", "--enforce-eager", "--trust-remote-code",
    "--disable-log-requests", "--enable-log-requests", "--no-enable-log-requests", "--enable-chunked-prefill",
    "--no-enable-chunked-prefill", "--disable-custom-all-reduce", "--enable-auto-tool-choice",
    "--kv-cache-metrics", "--disable-frontend-multiprocessing", "--enable-lora", "--disable-fastapi-docs",
    "--enable-sleep-mode", "--async-scheduling", "--enable-expert-parallel", "--enable-server-load-tracking",
    "--skip-tokenizer-init", "--enable-prompt-tokens-details", "--disable-uvicorn-access-log",
    "--headless", "--enable-force-include-usage",
})


class VllmMetrics(TableSink):
    """vLLM V1 (0.32) metrics: labels engine="0", model_name=<served>; single-process exposition."""

    def __init__(self, cfg: SimConfig, created: float, log: Log) -> None:
        L = {"engine": "0", "model_name": cfg.served_name}
        r = Registry("python", created)
        self.L = L
        mlen = cfg.model_config.max_model_len
        tok_buckets = buckets_1_2_5(mlen)
        req_s = [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
                 480.0, 960.0, 1920.0, 7680.0]
        itl_s = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
                 40.0, 80.0]
        ttft_s = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                  20.0, 40.0, 80.0, 160.0, 640.0, 2560.0]
        mfu = "(for Model Flops Utilization calculations)"
        for name, what in (("estimated_flops_per_gpu", "Estimated number of floating point operations per GPU"),
                           ("estimated_read_bytes_per_gpu", "Estimated number of bytes read from memory per GPU"),
                           ("estimated_write_bytes_per_gpu", "Estimated number of bytes written to memory per GPU")):
            r.add(f"vllm:{name}", "counter", f"{what} {mfu}.").declare(L, created)
        r.add("vllm:num_requests_running", "gauge", "Number of requests in model execution batches.").set(L, 0)
        r.add("vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.").set(L, 0)
        by_reason = r.add(
            "vllm:num_requests_waiting_by_reason", "gauge",
            "Number of waiting requests by reason. Reason labels: 'capacity' = waiting for scheduling capacity; "
            "'deferred' = deferred by transient constraints (LoRA budget, KV transfer, blocked status). "
            "Sum of all reasons equals vllm:num_requests_waiting.")
        for reason in ("capacity", "deferred"):
            by_reason.set({**L, "reason": reason}, 0)
        sleep = r.add("vllm:engine_sleep_state", "gauge",
                      "Engine sleep state; awake = 0 means engine is sleeping; awake = 1 means engine is awake; "
                      "weights_offloaded = 1 means sleep level 1; discard_all = 1 means sleep level 2.")
        for state, value in (("awake", 1), ("weights_offloaded", 0), ("discard_all", 0)):
            sleep.set({**L, "sleep_state": state}, value)
        r.add("vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.").set(L, 0)
        counters = (
            ("prefix_cache_queries", "Prefix cache queries, in terms of number of queried tokens."),
            ("prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens."),
            ("external_prefix_cache_queries", "External prefix cache queries from KV connector cross-instance "
             "cache sharing, in terms of number of queried tokens."),
            ("external_prefix_cache_hits", "External prefix cache hits from KV connector cross-instance cache "
             "sharing, in terms of number of cached tokens."),
            ("mm_cache_queries", "Multi-modal cache queries, in terms of number of queried items."),
            ("mm_cache_hits", "Multi-modal cache hits, in terms of number of cached items."),
            ("num_preemptions", "Cumulative number of preemption from the engine."),
            ("prompt_tokens", "Number of prefill tokens processed."),
        )
        for name, help_text in counters:
            r.add(f"vllm:{name}", "counter", help_text).declare(L, created)
        by_source = r.add("vllm:prompt_tokens_by_source", "counter", "Number of prompt tokens by source.")
        for source in ("local_compute", "local_cache_hit", "external_kv_transfer"):
            by_source.declare({**L, "source": source}, created)
        r.add("vllm:prompt_tokens_cached", "counter",
              "Number of cached prompt tokens (local + external).").declare(L, created)
        cached_src = r.add(
            "vllm:prompt_tokens_cached_by_source", "counter",
            "Prefix-cache hit tokens by the cache tier that supplied them: device (local HBM), host (offloaded "
            "to DRAM), disk, p2p (transferred from another vLLM instance) or external_unspecified. Counted at "
            "admission; sums to vllm:prefix_cache_hits + vllm:external_prefix_cache_hits.")
        for source in ("device", "host", "p2p", "disk", "external_unspecified"):
            cached_src.declare({**L, "source": source}, created)
        r.add("vllm:generation_tokens", "counter", "Number of generation tokens processed.").declare(L, created)
        success = r.add("vllm:request_success", "counter", "Count of successfully processed requests.")
        for reason in ("stop", "length", "abort", "error", "repetition"):
            success.declare({**L, "finished_reason": reason}, created)
        rejections = r.add("vllm:admission_rejections", "counter",
                           "Number of admission attempts rejected by a queue limit, by reason.")
        for reason in ("max_num_queued_reqs", "max_num_queued_tokens"):
            rejections.declare({"model_name": cfg.served_name, "reason": reason}, created)
        hists = (
            ("request_prompt_tokens", "Number of prefill tokens processed.", tok_buckets),
            ("request_generation_tokens", "Number of generation tokens processed.", tok_buckets),
            ("iteration_tokens_total", "Histogram of number of tokens per engine_step.",
             [1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384]),
            ("request_max_num_generation_tokens", "Histogram of maximum number of requested generation tokens.",
             tok_buckets),
            ("request_params_n", "Histogram of the n request parameter.", [1, 2, 5, 10, 20]),
            ("request_params_max_tokens", "Histogram of the max_tokens request parameter.", tok_buckets),
            ("time_to_first_token_seconds", "Histogram of time to first token in seconds.", ttft_s),
            ("inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", itl_s),
            ("request_time_per_output_token_seconds", "Histogram of time_per_output_token_seconds per request.",
             itl_s),
            ("e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", req_s),
            ("request_queue_time_seconds", "Histogram of time spent in WAITING phase for request.", req_s),
            ("request_inference_time_seconds", "Histogram of time spent in RUNNING phase for request.", req_s),
            ("request_prefill_time_seconds", "Histogram of time spent in PREFILL phase for request.", req_s),
            ("request_decode_time_seconds", "Histogram of time spent in DECODE phase for request.", req_s),
            ("request_num_preemptions", "Histogram of the number of times a request was preempted.",
             [1, 2, 3, 4, 5, 10, 20]),
            ("request_prefill_kv_computed_tokens",
             "Histogram of new KV tokens computed during prefill (excluding cached tokens).", tok_buckets),
        )
        for name, help_text, bounds in hists:
            r.add(f"vllm:{name}", "histogram", help_text, bounds).declare(L, created)
        kv = cfg.model_config.kv_tokens
        block = 16
        info = {
            "block_size": str(block), "cache_dtype": "auto", "enable_prefix_caching": "True",
            "engine": "0", "gpu_memory_utilization": "0.9", "kv_cache_size_tokens": str(kv),
            "num_gpu_blocks": str(kv // block), "num_gpu_blocks_override": "None", "num_cpu_blocks": "None",
            "kv_cache_max_concurrency": f"{kv / mlen:.1f}", "prefix_caching_hash_algo": "sha256",
            "sliding_window": "None", "is_attention_free": "False",
        }
        r.add("vllm:cache_config_info", "gauge", "Information of the LLMEngine CacheConfig").set(info, 1.0)
        v = "vllm:"
        observe: dict[str, list[Route]] = {
            "ttft": [(v + "time_to_first_token_seconds", L)],
            "itl": [(v + "inter_token_latency_seconds", L)],
            "tpot": [(v + "request_time_per_output_token_seconds", L)],
            "e2e": [(v + "e2e_request_latency_seconds", L)],
            "queue_time": [(v + "request_queue_time_seconds", L)],
            "inference_time": [(v + "request_inference_time_seconds", L)],
            "prefill_time": [(v + "request_prefill_time_seconds", L)],
            "decode_time": [(v + "request_decode_time_seconds", L)],
            "prompt_len": [(v + "request_prompt_tokens", L)],
            "gen_len": [(v + "request_generation_tokens", L)],
            "max_tokens": [(v + "request_max_num_generation_tokens", L), (v + "request_params_max_tokens", L)],
            "n": [(v + "request_params_n", L)],
            "req_preemptions": [(v + "request_num_preemptions", L)],
            "iteration_tokens": [(v + "iteration_tokens_total", L)],
            "prefill_computed": [(v + "request_prefill_kv_computed_tokens", L)],
        }
        inc: dict[str, list[Route]] = {
            "prompt_tokens": [(v + "prompt_tokens", L)],
            "prompt_computed_tokens": [(v + "prompt_tokens_by_source", {**L, "source": "local_compute"})],
            "prompt_cached_tokens": [(v + "prompt_tokens_by_source", {**L, "source": "local_cache_hit"})],
            "generation_tokens": [(v + "generation_tokens", L)],
            "preemptions": [(v + "num_preemptions", L)],
            "prefix_queries": [(v + "prefix_cache_queries", L)],
            "prefix_hits": [(v + "prefix_cache_hits", L), (v + "prompt_tokens_cached", L),
                            (v + "prompt_tokens_cached_by_source", {**L, "source": "device"})],
            "finished:stop": [(v + "request_success", {**L, "finished_reason": "stop"})],
            "finished:length": [(v + "request_success", {**L, "finished_reason": "length"})],
        }
        super().__init__(r, observe, inc, log)

    def set_gauges(self, gauges: Gauges) -> None:
        r, L = self.registry, self.L
        r["vllm:num_requests_running"].set(L, gauges.running)
        r["vllm:num_requests_waiting"].set(L, gauges.waiting)
        r["vllm:num_requests_waiting_by_reason"].set({**L, "reason": "capacity"}, gauges.waiting)
        r["vllm:kv_cache_usage_perc"].set(L, gauges.kv_usage)


class Vllm(Dialect):
    name = "vllm"
    title = "vLLM"
    default_port = 8000
    boolean_flags = VLLM_BOOLEAN_FLAGS

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("model_pos", nargs="?", metavar="MODEL", help="model (as in `vllm serve MODEL`)")
        parser.add_argument("--disable-log-stats", action="store_true", help="no periodic throughput lines")

    def resolve(self, ns: argparse.Namespace) -> dict[str, Any]:
        if ns.model_pos and ns.model and ns.model_pos != ns.model:
            raise ValueError(f"model given twice: positional {ns.model_pos!r} and --model {ns.model!r}")
        model = ns.model_pos or ns.model or "sim-model"
        return {"model": model, "served_name": ns.served_model_name or model, "metrics_enabled": True,
                "metrics_port": None, "log_stats": not ns.disable_log_stats}

    def make_metrics(self, cfg: SimConfig, created: float, log: Log) -> TableSink:
        return VllmMetrics(cfg, created, log)

    def extra_metrics_text(self) -> str:
        from prometheus_client import REGISTRY, generate_latest

        return generate_latest(REGISTRY).decode()

    def error_body(self, status: int, message: str, kind: str = "validation") -> dict[str, Any]:
        names = {404: "NotFoundError"}
        return {"error": {"message": message, "type": names.get(status, "BadRequestError"), "param": None,
                          "code": status}}

    def _line(self, msg: str, where: str, who: str = "APIServer", level: str = "INFO") -> str:
        return f"({who} pid={os.getpid()}) {level} {_engine_time()} [{where}] {msg}"

    def _core(self, msg: str, where: str, level: str = "INFO") -> str:
        return self._line(msg, where, "EngineCore_DP0", level)

    def boot_lines(self, cfg: SimConfig) -> list[str]:
        return [
            self._line("vLLM API server version 0.32.0", "api_server.py:1839"),
            self._line(f"non-default args: {{'model': {cfg.model!r}, 'host': {cfg.host!r}, 'port': {cfg.port}}}",
                       "utils.py:253"),
            self._core(f"Initializing a V1 LLM engine (v0.32.0) with config: model={cfg.model!r}, "
                       f"served_model_name={cfg.served_name}, max_seq_len={cfg.model_config.max_model_len}",
                       "core.py:77"),
        ]

    def loading_line(self, cfg: SimConfig, done: int, total: int, elapsed: float) -> str:
        pct = int(100 * done / total) if total else 100
        rate = f"{elapsed / done:.2f}s/it" if done else "?it/s"
        return (f"(EngineCore_DP0 pid={os.getpid()}) Loading safetensors checkpoint shards: {pct:3d}% Completed "
                f"| {done}/{total} [{_mmss(elapsed)}<?, {rate}]")

    def loaded_lines(self, cfg: SimConfig, load_s: float) -> list[str]:
        mc = cfg.model_config
        return [
            self._core(f"Loading weights took {load_s:.2f} seconds", "default_loader.py:267"),
            self._core(f"Model loading took {cfg.gpu_mem_gib * 0.8:.4f} GiB and {load_s + 0.1:.6f} seconds",
                       "gpu_model_runner.py:2653"),
            self._core(f"GPU KV cache size: {mc.kv_tokens:,} tokens", "kv_cache_utils.py:1087"),
            self._core(f"Maximum concurrency for {mc.max_model_len:,} tokens per request: "
                       f"{mc.kv_tokens / mc.max_model_len:.2f}x", "kv_cache_utils.py:1091"),
        ]

    def ready_lines(self, cfg: SimConfig) -> list[str]:
        routes = ["/health", "/metrics", "/v1/models", "/v1/completions", "/v1/chat/completions", "/ping"]
        lines = [self._line(f"Starting vLLM API server 0 on {cfg.url}", "api_server.py:1912"),
                 self._line("Available routes are:", "launcher.py:46")]
        lines += [self._line(f"Route: {path}, Methods: GET" if path not in ("/v1/completions",
                                                                            "/v1/chat/completions")
                             else f"Route: {path}, Methods: POST", "launcher.py:54") for path in routes]
        pid = os.getpid()
        lines += [f"(APIServer pid={pid}) INFO:     Started server process [{pid}]",
                  f"(APIServer pid={pid}) INFO:     Waiting for application startup.",
                  f"(APIServer pid={pid}) INFO:     Application startup complete."]
        return lines

    def crash_lines(self, cfg: SimConfig) -> list[str]:
        return [
            self._core("EngineCore encountered a fatal error.", "core.py:710", "ERROR"),
            self._core("Traceback (most recent call last):", "core.py:710", "ERROR"),
            self._core("RuntimeError: Worker failed with error 'SIMULATED fault (llmconsole sim-engine --fault "
                       "crash)', please check the stack trace above for the root cause", "core.py:710", "ERROR"),
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
        return [self._line("Shutting down FastAPI HTTP server.", "launcher.py:101"),
                f"(APIServer pid={pid}) INFO:     Shutting down",
                f"(APIServer pid={pid}) INFO:     Application shutdown complete."]

    def stats_line(self, prompt_tps: float, gen_tps: float, gauges: Gauges, preemptions: int,
                   hit_rate: float) -> str | None:
        pre = f"Preemptions: {preemptions}, " if preemptions else ""
        return self._line(
            f"Engine 000: Avg prompt throughput: {prompt_tps:.1f} tokens/s, Avg generation throughput: "
            f"{gen_tps:.1f} tokens/s, Running: {gauges.running} reqs, Waiting: {gauges.waiting} reqs, {pre}"
            f"GPU KV cache usage: {100 * gauges.kv_usage:.1f}%, Prefix cache hit rate: {100 * hit_rate:.1f}%",
            "loggers.py:236")


# ============================================================================================
# SGLang
# ============================================================================================

SGLANG_BOOLEAN_FLAGS = frozenset({
    "--trust-remote-code", "--disable-radix-cache", "--enable-torch-compile", "--disable-cuda-graph",
    "--enable-dp-attention", "--skip-server-warmup", "--enable-cache-report", "--log-requests",
    "--enable-mixed-chunk", "--disable-overlap-schedule", "--enable-p2p-check", "--show-time-cost",
    "--enable-metrics-for-all-schedulers", "--enable-lora", "--disable-cuda-graph-padding",
    "--collect-tokens-histogram", "--enable-deterministic-inference", "--skip-tokenizer-init",
})


class SglangMetrics(TableSink):
    """SGLang: scheduler-side labels (engine_type, model_name, pp_rank, tp_rank) vs tokenizer-side
    (model_name); multiprocess exposition; scheduler gauges latched on prefill batches, every
    ``decode_log_interval`` decode batches and when the engine idles (as SGLang logs its stats)."""

    decode_log_interval = 40

    def __init__(self, cfg: SimConfig, created: float, log: Log) -> None:
        S = {"engine_type": "unified", "model_name": cfg.served_name, "pp_rank": "0", "tp_rank": "0"}
        T = {"model_name": cfg.served_name}
        self.S = S
        r = Registry("python_mp", created)
        s = "sglang:"
        gauges = (
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
        for name, help_text in gauges:
            r.add(s + name, "gauge", help_text).set(S, 0)
        r[s + "max_total_num_tokens"].set(S, cfg.model_config.kv_tokens)
        for name, help_text in (
            ("num_retracted_requests", "Total number of retracted requests."),
            ("num_retracted_input_tokens", "Total number of retracted input tokens."),
            ("num_retracted_output_tokens", "Total number of retracted output tokens."),
        ):
            r.add(s + name, "counter", help_text).declare(S, created)
        queue_b = [0.0, 0.1, 0.2, 0.5, 1, 2, 3, 4, 5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 100, 200, 300, 400,
                   500, 600, 700, 800, 900, 1000, 1200, 1400, 1600, 1800, 2000, 2500, 3000]
        r.add(s + "queue_time_seconds", "histogram", "Histogram of queueing time in seconds.",
              queue_b).declare(S, created)
        for name, help_text in (
            ("prompt_tokens", "Number of prefill tokens processed."),
            ("generation_tokens", "Number of generation tokens processed."),
            ("cached_tokens", "Number of cached prompt tokens."),
            ("num_requests", "Number of requests processed."),
            ("num_so_requests", "Number of structured output requests processed."),
            ("num_aborted_requests", "Number of requests aborted."),
        ):
            r.add(s + name, "counter", help_text).declare(T, created)
        ttft_b = [0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400]
        e2e_b = [0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400, 600, 1200, 1800, 2400]
        itl_b = [0.002, 0.004, 0.006, 0.008, 0.010, 0.015, 0.020, 0.025, 0.030, 0.035, 0.040, 0.060, 0.080,
                 0.100, 0.200, 0.400, 0.600, 0.800, 1.000, 2.000, 4.000, 6.000, 8.000]
        r.add(s + "time_to_first_token_seconds", "histogram", "Histogram of time to first token in seconds.",
              ttft_b).declare(T, created)
        r.add(s + "inter_token_latency_seconds", "histogram", "Histogram of inter-token latency in seconds.",
              itl_b).declare(T, created)
        r.add(s + "e2e_request_latency_seconds", "histogram", "Histogram of End-to-end request latency in seconds",
              e2e_b).declare(T, created)
        observe: dict[str, list[Route]] = {
            "ttft": [(s + "time_to_first_token_seconds", T)],
            "itl": [(s + "inter_token_latency_seconds", T)],
            "e2e": [(s + "e2e_request_latency_seconds", T)],
            "queue_time": [(s + "queue_time_seconds", S)],
        }
        inc: dict[str, list[Route]] = {
            # the tokenizer manager counts tokens when a request finishes
            "finished_prompt_tokens": [(s + "prompt_tokens", T)],
            "finished_generation_tokens": [(s + "generation_tokens", T)],
            "finished_cached_tokens": [(s + "cached_tokens", T)],
            "requests_finished": [(s + "num_requests", T)],
            "aborted": [(s + "num_aborted_requests", T)],
            "preemptions": [(s + "num_retracted_requests", S)],
            "preempted_input_tokens": [(s + "num_retracted_input_tokens", S)],
            "preempted_output_tokens": [(s + "num_retracted_output_tokens", S)],
        }
        super().__init__(r, observe, inc, log)
        self._decodes = 0
        self._gen_since = 0
        self._retracted_since = 0
        self._last_log_t: float | None = None

    def inc(self, name: str, amount: float = 1.0) -> None:
        super().inc(name, amount)
        if name == "generation_tokens":
            self._gen_since += int(amount)
        elif name == "preemptions":
            self._retracted_since += int(amount)

    def iteration(self, gauges: Gauges, prefill_tokens: int, decode_tokens: int, now: float) -> None:
        if self._last_log_t is None:
            self._last_log_t = now
        if prefill_tokens:
            self.set_gauges(gauges)
            self.log(_sglang_line(
                f"Prefill batch. #new-seq: {max(1, gauges.running - decode_tokens)}, #new-token: {prefill_tokens}, "
                f"#cached-token: 0, token usage: {gauges.kv_usage:.2f}, #running-req: {decode_tokens}, "
                f"#queue-req: {gauges.waiting}", tp=True))
            return
        self._decodes += 1
        if self._decodes % self.decode_log_interval == 0:
            elapsed = max(now - self._last_log_t, 1e-9)
            throughput = self._gen_since / elapsed
            self._gen_since, self._last_log_t = 0, now
            self.set_gauges(gauges)
            self.registry["sglang:gen_throughput"].set(self.S, throughput)
            self.registry["sglang:cache_hit_rate"].set(self.S, 0.0)
            self.log(_sglang_line(
                f"Decode batch. #running-req: {gauges.running}, #token: {gauges.kv_used}, token usage: "
                f"{gauges.kv_usage:.2f}, cuda graph: True, gen throughput (token/s): {throughput:.2f}, "
                f"#queue-req: {gauges.waiting}", tp=True))

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
        parser.add_argument("--enable-metrics", action="store_true", help="serve /metrics (else 404, as SGLang)")
        parser.add_argument("--max-running-requests", dest="max_num_seqs", type=int, help="= --max-num-seqs")
        parser.add_argument("--context-length", dest="max_model_len", type=int, help="= --max-model-len")

    def resolve(self, ns: argparse.Namespace) -> dict[str, Any]:
        if ns.model_path and ns.model and ns.model_path != ns.model:
            raise ValueError(f"model given twice: --model-path {ns.model_path!r} and --model {ns.model!r}")
        model = ns.model_path or ns.model or "sim-model"
        return {"model": model, "served_name": ns.served_model_name or model,
                "metrics_enabled": bool(ns.enable_metrics), "metrics_port": None, "log_stats": True}

    def make_metrics(self, cfg: SimConfig, created: float, log: Log) -> TableSink:
        return SglangMetrics(cfg, created, log)

    def boot_lines(self, cfg: SimConfig) -> list[str]:
        return [
            _sglang_line(f"server_args=ServerArgs(model_path='{cfg.model}', served_model_name='{cfg.served_name}', "
                         f"host='{cfg.host}', port={cfg.port}, enable_metrics={cfg.metrics_enabled}, "
                         f"context_length={cfg.model_config.max_model_len})"),
            _sglang_line(f"Load weight begin. avail mem={cfg.gpu_mem_gib + 60:.2f} GB", tp=True),
        ]

    def loading_line(self, cfg: SimConfig, done: int, total: int, elapsed: float) -> str:
        pct = int(100 * done / total) if total else 100
        return (f"Loading safetensors checkpoint shards: {pct:3d}% Completed | {done}/{total} "
                f"[{_mmss(elapsed)}<?, ?it/s]")

    def loaded_lines(self, cfg: SimConfig, load_s: float) -> list[str]:
        mc = cfg.model_config
        return [
            _sglang_line(f"Load weight end. type=LlamaForCausalLM, dtype=torch.bfloat16, avail mem=60.00 GB, "
                         f"mem usage={cfg.gpu_mem_gib * 0.8:.2f} GB.", tp=True),
            _sglang_line(f"KV Cache is allocated. #tokens: {mc.kv_tokens}", tp=True),
            _sglang_line(f"max_total_num_tokens={mc.kv_tokens}, max_running_requests={mc.max_num_seqs}, "
                         f"context_len={mc.max_model_len}", tp=True),
        ]

    def listening_lines(self, cfg: SimConfig) -> list[str]:
        return [f"INFO:     Uvicorn running on {cfg.url} (Press CTRL+C to quit)"]

    def ready_lines(self, cfg: SimConfig) -> list[str]:
        return [_sglang_line("INFO:     127.0.0.1 - \"GET /get_model_info HTTP/1.1\" 200 OK"),
                _sglang_line("The server is fired up and ready to roll!")]

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


# ============================================================================================
# TGI
# ============================================================================================

TGI_BOOLEAN_FLAGS = frozenset({
    "--json-output", "--disable-custom-kernels", "--trust-remote-code", "--disable-grammar-support",
    "--enable-prefill-logprobs", "--disable-crash-reports",
})


class TgiMetrics(TableSink):
    """TGI v3 router metrics: no model label, counters without ``_total``, Rust exposition; series
    appear once touched (gauges are set at warm-up)."""

    def __init__(self, cfg: SimConfig, created: float, log: Log) -> None:
        r = Registry("rust", created)
        mlen = cfg.model_config.max_model_len
        max_input = mlen - 1
        dur = tgi_duration_buckets()
        input_b = [(max_input / 100.0) * (x + 1) for x in range(100)]
        total_b = [(mlen / 100.0) * (x + 1) for x in range(100)]
        N: dict[str, str] = {}
        r.add("tgi_request_count", "counter", "Total number of requests")
        r.add("tgi_request_success", "counter", "Number of successful requests")
        r.add("tgi_request_failure", "counter", "Number of failed requests")
        r.add("tgi_queue_size", "gauge", "Current queue size").set(N, 0)
        r.add("tgi_batch_current_size", "gauge", "Current batch size").set(N, 0)
        r.add("tgi_batch_current_max_tokens", "gauge", "Maximum tokens for the current batch").set(N, 0)
        r.add("tgi_batch_max_total_tokens", "gauge", None).set(N, cfg.model_config.kv_tokens)
        r.add("tgi_request_duration", "histogram", "Request duration", dur)
        r.add("tgi_request_queue_duration", "histogram", "Time spent in the queue per request", dur)
        r.add("tgi_request_inference_duration", "histogram", "Request inference duration", dur)
        r.add("tgi_request_mean_time_per_token_duration", "histogram", "Mean time per token per request", dur)
        r.add("tgi_request_input_length", "histogram", "Input token length per request", input_b)
        r.add("tgi_request_generated_tokens", "histogram", "Generated tokens per request", total_b)
        r.add("tgi_request_max_new_tokens", "histogram", "Maximum new tokens per request", total_b)
        observe: dict[str, list[Route]] = {
            "e2e": [("tgi_request_duration", N)],
            "queue_time": [("tgi_request_queue_duration", N)],
            "inference_time": [("tgi_request_inference_duration", N)],
            "tpot": [("tgi_request_mean_time_per_token_duration", N)],
            "prompt_len": [("tgi_request_input_length", N)],
            "gen_len": [("tgi_request_generated_tokens", N)],
            "max_tokens": [("tgi_request_max_new_tokens", N)],
        }
        inc: dict[str, list[Route]] = {
            "received": [("tgi_request_count", N)],
            "requests_finished": [("tgi_request_success", N)],
            "rejected:validation": [("tgi_request_count", N), ("tgi_request_failure", {"err": "validation"})],
        }
        super().__init__(r, observe, inc, log)

    def set_gauges(self, gauges: Gauges) -> None:
        r = self.registry
        r["tgi_queue_size"].set({}, gauges.waiting)
        r["tgi_batch_current_size"].set({}, gauges.running)
        r["tgi_batch_current_max_tokens"].set({}, gauges.kv_used)


def _tgi_line(msg: str, target: str = "text_generation_launcher", level: str = "INFO") -> str:
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return f"{stamp} {level:>5} {target}: {msg}"


class Tgi(Dialect):
    name = "tgi"
    title = "TGI"
    default_port = 3000
    boolean_flags = TGI_BOOLEAN_FLAGS

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--model-id", dest="model_id", help="model (TGI's --model-id)")
        parser.add_argument("--hostname", dest="host", help="= --host")
        parser.add_argument("--prometheus-port", dest="prometheus_port", type=int, default=9000,
                            help="second listener serving /metrics (default 9000, as TGI)")
        parser.add_argument("--max-total-tokens", dest="max_model_len", type=int, help="= --max-model-len")
        parser.add_argument("--max-batch-size", dest="max_num_seqs", type=int, help="= --max-num-seqs")

    def resolve(self, ns: argparse.Namespace) -> dict[str, Any]:
        if ns.model_id and ns.model and ns.model_id != ns.model:
            raise ValueError(f"model given twice: --model-id {ns.model_id!r} and --model {ns.model!r}")
        if not 0 <= ns.prometheus_port <= 65535:
            raise ValueError(f"--prometheus-port {ns.prometheus_port} is not a port")
        model = ns.model_id or ns.model or "bigscience/bloom-560m"
        return {"model": model, "served_name": ns.served_model_name or model, "metrics_enabled": True,
                "metrics_port": ns.prometheus_port, "log_stats": True}

    def make_metrics(self, cfg: SimConfig, created: float, log: Log) -> TableSink:
        return TgiMetrics(cfg, created, log)

    def info(self, cfg: SimConfig) -> dict[str, Any] | None:
        mlen = cfg.model_config.max_model_len
        return {"model_id": cfg.model, "model_sha": None, "model_pipeline_tag": "text-generation",
                "max_concurrent_requests": 128, "max_best_of": 2, "max_stop_sequences": 4,
                "max_input_tokens": mlen - 1, "max_total_tokens": mlen, "validation_workers": 2,
                "max_client_batch_size": 4, "router": "text-generation-router", "version": "3.3.6",
                "sha": None, "docker_label": "llmconsole-sim (SIMULATED)"}

    def error_body(self, status: int, message: str, kind: str = "validation") -> dict[str, Any]:
        return {"error": message, "error_type": kind}

    def validation_status(self) -> int:
        return 422

    def boot_lines(self, cfg: SimConfig) -> list[str]:
        return [
            _tgi_line(f"Args {{ model_id: \"{cfg.model}\", hostname: \"{cfg.host}\", port: {cfg.port}, "
                      f"prometheus_port: {cfg.metrics_port}, max_total_tokens: Some({cfg.model_config.max_model_len})"
                      " }"),
            _tgi_line(f"Starting check and download process for {cfg.model}"),
            _tgi_line(f"Successfully downloaded weights for {cfg.model}"),
            _tgi_line("Starting shard", "text_generation_launcher") + " rank=0",
        ]

    def loading_line(self, cfg: SimConfig, done: int, total: int, elapsed: float) -> str:
        return _tgi_line("Waiting for shard to be ready...") + " rank=0"

    def loaded_lines(self, cfg: SimConfig, load_s: float) -> list[str]:
        return [_tgi_line(f"Shard ready in {load_s:.2f}s") + " rank=0", _tgi_line("Starting Webserver")]

    def ready_lines(self, cfg: SimConfig) -> list[str]:
        router = "text_generation_router_v3"
        return [_tgi_line("Warming up model", router),
                _tgi_line(f"Setting max batch total tokens to {cfg.model_config.kv_tokens}", router),
                _tgi_line("router/src/server.rs:2302: Connected", "text_generation_router::server")]

    def crash_lines(self, cfg: SimConfig) -> list[str]:
        return [_tgi_line("Shard complete standard error output: RuntimeError: SIMULATED fault "
                          "(llmconsole sim-engine --fault crash)", "shard-manager", "ERROR") + " rank=0",
                _tgi_line("Shard 0 crashed", level="ERROR"),
                _tgi_line("Shutting down shards"),
                "Error: ShardFailed"]

    def start_fail_lines(self, cfg: SimConfig) -> list[str]:
        return [_tgi_line("Error when initializing model", "text_generation_launcher", "ERROR"),
                _tgi_line("Shard 0 failed to start", level="ERROR"),
                _tgi_line("Shutting down shards"),
                "Error: ShardCannotStart"]

    def shutdown_lines(self, cfg: SimConfig) -> list[str]:
        return [_tgi_line("Terminating webserver"), _tgi_line("Waiting for webserver to gracefully shutdown"),
                _tgi_line("webserver terminated"), _tgi_line("Shutting down shards")]

    def bind_error_lines(self, cfg: SimConfig, port: int, error: str) -> list[str]:
        return [_tgi_line(f"Webserver Crashed: could not bind port {port}: {error}", level="ERROR"),
                "Error: WebserverFailed"]


def _mmss(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 60:02d}:{s % 60:02d}"


DIALECTS: Mapping[str, Dialect] = {d.name: d for d in (Vllm(), Sglang(), Tgi())}
NAMES: Sequence[str] = tuple(DIALECTS)


def get(name: str) -> Dialect:
    return DIALECTS[name]


def now_wall() -> float:
    """Wall-clock seconds for ``_created`` samples (display timestamps only)."""
    return time.time()
