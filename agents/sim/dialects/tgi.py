"""The simulated TGI (v3 router): ``text-generation-launcher`` flags, its metric families and log lines.

TGI's router registers its metrics with the Rust ``metrics`` crate and renders them with
metrics-exporter-prometheus: no model label, counters without ``_total``, and a family appears only
once one of its series has been touched (the gauges are set at warm-up).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from agents.sim.config import SimConfig
from agents.sim.dialects.base import Dialect
from agents.sim.exposition import Registry
from agents.sim.model import Gauges, ModelConfig
from agents.sim.sink import Log, Route, TableSink

TGI_BOOLEAN_FLAGS = frozenset(
    {
        "--json-output",
        "--disable-custom-kernels",
        "--trust-remote-code",
        "--disable-grammar-support",
        "--enable-prefill-logprobs",
        "--disable-crash-reports",
    }
)


def tgi_duration_buckets() -> list[float]:
    """TGI's 35 geometric duration buckets: 0.0001 multiplied by 1.5 before each push."""
    value, out = 0.0001, []
    for _ in range(35):
        value *= 1.5
        out.append(value)
    return out


NO_LABELS: Mapping[str, str] = {}
# The model's neutral events -> the families they feed (all without labels).
OBSERVE_ROUTES: dict[str, list[Route]] = {
    "e2e": [("tgi_request_duration", NO_LABELS)],
    "queue_time": [("tgi_request_queue_duration", NO_LABELS)],
    "inference_time": [("tgi_request_inference_duration", NO_LABELS)],
    "tpot": [("tgi_request_mean_time_per_token_duration", NO_LABELS)],
    "prompt_len": [("tgi_request_input_length", NO_LABELS)],
    "gen_len": [("tgi_request_generated_tokens", NO_LABELS)],
    "max_tokens": [("tgi_request_max_new_tokens", NO_LABELS)],
}
INC_ROUTES: dict[str, list[Route]] = {
    "received": [("tgi_request_count", NO_LABELS)],
    "requests_finished": [("tgi_request_success", NO_LABELS)],
    "rejected:validation": [("tgi_request_count", NO_LABELS), ("tgi_request_failure", {"err": "validation"})],
}


def _build_registry(mc: ModelConfig, created: float) -> Registry:
    r = Registry("rust", created)
    mlen = mc.max_model_len
    max_input = mlen - 1
    dur = tgi_duration_buckets()
    input_b = [(max_input / 100.0) * (x + 1) for x in range(100)]
    total_b = [(mlen / 100.0) * (x + 1) for x in range(100)]
    r.add("tgi_request_count", "counter", "Total number of requests")
    r.add("tgi_request_success", "counter", "Number of successful requests")
    r.add("tgi_request_failure", "counter", "Number of failed requests")
    r.add("tgi_queue_size", "gauge", "Current queue size").set(NO_LABELS, 0)
    r.add("tgi_batch_current_size", "gauge", "Current batch size").set(NO_LABELS, 0)
    r.add("tgi_batch_current_max_tokens", "gauge", "Maximum tokens for the current batch").set(NO_LABELS, 0)
    # No HELP line: TGI registers this gauge's description under the name "tgi_batch_total_tokens".
    r.add("tgi_batch_max_total_tokens", "gauge", None).set(NO_LABELS, mc.kv_tokens)
    r.add("tgi_request_duration", "histogram", "Request duration", dur)
    r.add("tgi_request_queue_duration", "histogram", "Time spent in the queue per request", dur)
    r.add("tgi_request_inference_duration", "histogram", "Request inference duration", dur)
    r.add("tgi_request_mean_time_per_token_duration", "histogram", "Mean time per token per request", dur)
    r.add("tgi_request_input_length", "histogram", "Input token length per request", input_b)
    r.add("tgi_request_generated_tokens", "histogram", "Generated tokens per request", total_b)
    r.add("tgi_request_max_new_tokens", "histogram", "Maximum new tokens per request", total_b)
    return r


class TgiMetrics(TableSink):
    """TGI v3 router metrics: no model label, counters without ``_total``, Rust exposition; series
    appear once touched (gauges are set at warm-up)."""

    def __init__(self, cfg: SimConfig, created: float, log: Log) -> None:
        super().__init__(_build_registry(cfg.model_config, created), OBSERVE_ROUTES, INC_ROUTES, log)

    def set_gauges(self, gauges: Gauges) -> None:
        r = self.registry
        r["tgi_queue_size"].set({}, gauges.waiting)
        r["tgi_batch_current_size"].set({}, gauges.running)
        r["tgi_batch_current_max_tokens"].set({}, gauges.kv_used)


# --- the dialect ------------------------------------------------------------------------------


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
        parser.add_argument(
            "--prometheus-port",
            dest="prometheus_port",
            type=int,
            default=9000,
            help="second listener serving /metrics (default 9000, as TGI)",
        )
        parser.add_argument("--max-total-tokens", dest="max_model_len", type=int, help="= --max-model-len")
        parser.add_argument("--max-batch-size", dest="max_num_seqs", type=int, help="= --max-num-seqs")

    def resolve(self, ns: argparse.Namespace) -> dict[str, Any]:
        if ns.model_id and ns.model and ns.model_id != ns.model:
            raise ValueError(f"model given twice: --model-id {ns.model_id!r} and --model {ns.model!r}")
        if not 0 <= ns.prometheus_port <= 65535:
            raise ValueError(f"--prometheus-port {ns.prometheus_port} is not a port")
        model = ns.model_id or ns.model or "bigscience/bloom-560m"
        return {
            "model": model,
            "served_name": ns.served_model_name or model,
            "metrics_enabled": True,
            "metrics_port": ns.prometheus_port,
            "log_stats": True,
        }

    def make_metrics(self, cfg: SimConfig, created: float, log: Log) -> TableSink:
        return TgiMetrics(cfg, created, log)

    def info(self, cfg: SimConfig) -> dict[str, Any] | None:
        mlen = cfg.model_config.max_model_len
        return {
            "model_id": cfg.model,
            "model_sha": None,
            "model_pipeline_tag": "text-generation",
            "max_concurrent_requests": 128,
            "max_best_of": 2,
            "max_stop_sequences": 4,
            "max_input_tokens": mlen - 1,
            "max_total_tokens": mlen,
            "validation_workers": 2,
            "max_client_batch_size": 4,
            "router": "text-generation-router",
            "version": "3.3.6",
            "sha": None,
            "docker_label": "llmconsole-sim (SIMULATED)",
        }

    def error_body(self, status: int, message: str, kind: str = "validation") -> dict[str, Any]:
        return {"error": message, "error_type": kind}

    def validation_status(self) -> int:
        return 422

    def boot_lines(self, cfg: SimConfig) -> list[str]:
        return [
            _tgi_line(
                f'Args {{ model_id: "{cfg.model}", hostname: "{cfg.host}", port: {cfg.port}, '
                f"prometheus_port: {cfg.metrics_port}, max_total_tokens: Some({cfg.model_config.max_model_len})"
                " }"
            ),
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
        return [
            _tgi_line("Warming up model", router),
            _tgi_line(f"Setting max batch total tokens to {cfg.model_config.kv_tokens}", router),
            _tgi_line("router/src/server.rs:2302: Connected", "text_generation_router::server"),
        ]

    def crash_lines(self, cfg: SimConfig) -> list[str]:
        return [
            _tgi_line(
                "Shard complete standard error output: RuntimeError: SIMULATED fault "
                "(llmconsole sim-engine --fault crash)",
                "shard-manager",
                "ERROR",
            )
            + " rank=0",
            _tgi_line("Shard 0 crashed", level="ERROR"),
            _tgi_line("Shutting down shards"),
            "Error: ShardFailed",
        ]

    def start_fail_lines(self, cfg: SimConfig) -> list[str]:
        return [
            _tgi_line("Error when initializing model", "text_generation_launcher", "ERROR"),
            _tgi_line("Shard 0 failed to start", level="ERROR"),
            _tgi_line("Shutting down shards"),
            "Error: ShardCannotStart",
        ]

    def shutdown_lines(self, cfg: SimConfig) -> list[str]:
        return [
            _tgi_line("Terminating webserver"),
            _tgi_line("Waiting for webserver to gracefully shutdown"),
            _tgi_line("webserver terminated"),
            _tgi_line("Shutting down shards"),
        ]

    def bind_error_lines(self, cfg: SimConfig, port: int, error: str) -> list[str]:
        return [
            _tgi_line(f"Webserver Crashed: could not bind port {port}: {error}", level="ERROR"),
            "Error: WebserverFailed",
        ]
