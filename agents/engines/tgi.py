"""Text Generation Inference (TGI v3): launch and metric normalization.

Metrics as in TGI's metrics reference
(https://huggingface.co/docs/text-generation-inference/reference/metrics), flags as in its launcher
reference (LAUNCHER_DOC below). TGI exports with
Rust ``metrics-exporter-prometheus``: counters have **no** ``_total`` suffix, there is **no** model label
(one model per server), and there is no KV-cache, prefix-cache, preemption or TTFT metric at all, so
those logical values are always None.

Series appear lazily: a counter or histogram is exposed only after its first increment. Once
``tgi_request_count`` (incremented on entry of every route) shows the router is counting requests, a
missing failure counter or token histogram therefore means "none yet" and reads as 0; before that, as
None.
"""

from __future__ import annotations

from collections.abc import Mapping

from agents.engines._aggregate import Layout, Part, histogram_names, part_reading, prefix_share
from agents.engines._common import HttpEngineAdapter
from agents.engines._launch import Flag, assemble, drop_flag
from agents.engines.base import DangerousSwitch, LaunchSpec, Reading
from agents.metrics.model import MetricSet

PREFIX = "tgi_"

GAUGE_NAMES: Mapping[str, tuple[str, ...]] = {
    "requests_running": ("tgi_batch_current_size",),  # size of the running batch; 0 when it empties
    "requests_waiting": ("tgi_queue_size",),
}
REQUEST_COUNT = "tgi_request_count"  # counts requests on *entry*: in-flight ones included
SUCCESSES = "tgi_request_success"  # finished requests = successes + failures
FAILURES = "tgi_request_failure"  # {err=overloaded|validation|template|incomplete|dropped|generation}
# Token counters are the _sum of per-request histograms (input length at validation; generated tokens
# on success only).
COUNTER_NAMES: Mapping[str, tuple[str, ...]] = {
    "prompt_tokens": ("tgi_request_input_length_sum",),
    "generation_tokens": ("tgi_request_generated_tokens_sum",),
}
HISTOGRAM_NAMES: Mapping[str, tuple[str, ...]] = {
    # No "ttft": TGI has no time-to-first-token metric. Its own dashboard approximates it from queue
    # time + prefill duration, which is not the same thing, so ttft stays None rather than guessed.
    "itl": ("tgi_request_mean_time_per_token_duration",),  # per-request mean time per output token
    "e2e": ("tgi_request_duration",),
    "queue_time": ("tgi_request_queue_duration",),
}

LAYOUT = Layout()  # no model or engine labels: one part

MODEL = Flag(("--model-id",))
HOST = Flag(("--hostname",))
PORT = Flag(("--port", "-p"))
SERVED = Flag(("--served-model-name",))
PROMETHEUS_PORT = Flag(("--prometheus-port",))

LAUNCHER_DOC = "https://huggingface.co/docs/text-generation-inference/reference/launcher"
SWITCHES = (
    DangerousSwitch(
        "--trust-remote-code", "runs Python code shipped in the model directory (auto_map)", LAUNCHER_DOC
    ),
    DangerousSwitch("--ngrok", "opens a public ngrok tunnel to the engine", LAUNCHER_DOC, prefix=True),
)


def metrics_port(spec: LaunchSpec) -> int:
    """TGI's second Prometheus listener (default 9000 would collide between engines on one host).

    ``spec.metrics_port`` when given, else ``port + 10000`` (or ``port - 10000`` above 55535), so every
    engine's API port maps to a distinct metrics port.
    """
    if spec.metrics_port is not None:
        return spec.metrics_port
    return spec.port + 10000 if spec.port + 10000 <= 65535 else spec.port - 10000


def _wanted() -> frozenset[str]:
    names = {n for names in (*GAUGE_NAMES.values(), *COUNTER_NAMES.values()) for n in names}
    names.update((REQUEST_COUNT, SUCCESSES, FAILURES))
    names.update(histogram_names(n for names in HISTOGRAM_NAMES.values() for n in names))
    return frozenset(names)


WANTED = _wanted()  # every sample name read() looks at


class TgiAdapter(HttpEngineAdapter):
    kind = "tgi"
    display = "TGI"
    package = "text-generation-inference"
    WANTED = WANTED
    LAYOUT = LAYOUT
    # Runs a real 1-token prefill after a generation error, with no timeout.
    health_path = "/health"
    # The launcher sends anonymous usage statistics unless --usage-stats/USAGE_STATS is "off".
    extra_env = {"USAGE_STATS": "off"}
    default_port = 3000
    # Logical metrics this engine never exposes, in any version (their values are always None).
    unsupported: frozenset[str] = frozenset(
        {
            "kv_cache_usage",
            "preemptions",
            "prefix_cache_hits",
            "prefix_cache_queries",
            "ttft",
            "requests_waiting_capacity",
            "requests_waiting_deferred",
        }
    )
    executables = ("text-generation-launcher",)
    bind_flags = HOST.names
    # version_patterns: none; the launcher's log names no version this adapter recognises.

    # --- safety ---------------------------------------------------------------------------------------
    def dangerous_switches(self) -> tuple[DangerousSwitch, ...]:
        return SWITCHES

    def secret_env_names(self) -> tuple[str, ...]:
        return ("API_KEY",)  # the launcher reads --api-key from API_KEY (and passes it on to the router)

    # --- launch ---------------------------------------------------------------------------------------
    def argv(self, spec: LaunchSpec) -> list[str]:
        prefix = [*(spec.command or ("text-generation-launcher",)), MODEL.name, spec.model]
        # --hostname always: TGI binds 0.0.0.0 by default, and clap also reads $HOSTNAME, which shells set.
        managed = [
            (HOST, spec.host),
            (PORT, str(spec.port)),
            (SERVED, spec.served_model_name),
            (PROMETHEUS_PORT, None if spec.metrics_port is None else str(spec.metrics_port)),
        ]
        defaults = [] if spec.metrics_port is not None else [(PROMETHEUS_PORT, str(metrics_port(spec)))]
        return assemble(prefix, managed, defaults, drop_flag(spec.args, MODEL))

    # --- metrics --------------------------------------------------------------------------------------
    def _read_part(self, metrics: MetricSet, part: Part) -> Reading:
        counting = metrics.has(REQUEST_COUNT)
        lazy_zero = 0.0 if counting else None
        gauges: dict[str, float | None] = {
            name: LAYOUT.scalar(metrics, names, part) for name, names in GAUGE_NAMES.items()
        }
        gauges["kv_cache_usage"] = None  # no KV-cache metric in TGI
        gauges["requests_waiting_capacity"] = gauges["requests_waiting_deferred"] = None
        counters: dict[str, float | None] = {}
        for name, names in COUNTER_NAMES.items():
            value = LAYOUT.scalar(metrics, names, part)
            counters[name] = lazy_zero if value is None else value
        errors = LAYOUT.scalar(metrics, (FAILURES,), part)  # summed over err
        counters["request_errors"] = lazy_zero if errors is None else errors
        # Finished requests: tgi_request_count would also count the ones still in flight.
        successes = LAYOUT.scalar(metrics, (SUCCESSES,), part)
        finished = [v for v in (successes, errors) if v is not None]
        counters["requests"] = sum(finished) if finished else lazy_zero
        counters["preemptions"] = None  # nearest signal: tgi_batch_concat{reason="backpressure"}
        counters["prefix_cache_hits"] = counters["prefix_cache_queries"] = None
        histograms = {name: LAYOUT.histogram(metrics, names, part) for name, names in HISTOGRAM_NAMES.items()}
        histograms["ttft"] = None
        return part_reading(self.kind, part, gauges, counters, histograms)

    def detect(self, metrics: MetricSet) -> float:
        return prefix_share(metrics, PREFIX)
