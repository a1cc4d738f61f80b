"""The engine adapter contract. Every difference between vLLM, SGLang and TGI lives behind it.

The supervisor, collector, probe and console never branch on an engine's kind: they ask its adapter.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field

from agents.metrics.model import Histogram, MetricSet

# Logical names every adapter fills (None where the engine has no such metric).
# requests_waiting_capacity / _deferred: the waiting requests split by why they wait (vLLM's
# num_requests_waiting_by_reason, newest versions only): for scheduling capacity, or deferred by a
# transient constraint (LoRA budget, KV transfer, blocked status).
GAUGES = (
    "requests_running",
    "requests_waiting",
    "kv_cache_usage",
    "requests_waiting_capacity",
    "requests_waiting_deferred",
)
# requests: finished requests, whatever the outcome (stop, length, abort, error), since start.
COUNTERS = (
    "prompt_tokens",
    "generation_tokens",
    "preemptions",
    "request_errors",
    "prefix_cache_hits",
    "prefix_cache_queries",
    "requests",
)
HISTOGRAMS = ("ttft", "itl", "e2e", "queue_time")

# The gauge llmconsole's simulated engine adds to its exposition, whichever engine it imitates.
SIMULATED_MARKER = "llmconsole_simulated"


@dataclass(frozen=True, slots=True)
class Reading:
    """One scrape of one engine, normalized to logical names; counters and histograms are cumulative.

    ``gauges``/``counters``/``histograms`` have exactly the keys of GAUGES/COUNTERS/HISTOGRAMS; a value
    is None when the engine (or this version of it) does not expose the metric. ``models`` lists the
    served model names seen. ``parts`` keeps the per-(model_name, data-parallel engine) readings that
    were aggregated into this one, keyed ``"<model>/<engine>"`` (empty when there is only one part).
    """

    kind: str
    gauges: Mapping[str, float | None]
    counters: Mapping[str, float | None]
    histograms: Mapping[str, Histogram | None]
    models: tuple[str, ...] = ()
    parts: Mapping[str, Reading] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LaunchSpec:
    """What an adapter needs to build an engine's command line: a subset of one ``[[agent.engines]]``."""

    id: str
    model: str
    port: int
    host: str = "127.0.0.1"
    served_model_name: str | None = None
    gpus: tuple[int, ...] = ()
    command: tuple[str, ...] | None = None  # replaces the adapter's default command prefix
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    metrics_port: int | None = None  # TGI's separate --prometheus-port; None lets the adapter choose


@dataclass(frozen=True, slots=True)
class DangerousSwitch:
    """A launch flag or environment variable that opens an engine up, with why and where that is documented.

    A flag (``name`` starts with "-") is dangerous when present, bare or as ``--flag=value``; with
    ``prefix`` every flag whose name starts with ``name`` is (a family such as ``--ngrok-*``). A variable
    is dangerous when set to anything but an "off" value ("", "0", "false", "no", "off"); with ``expect``
    it is an opt-out the launch sets, dangerous when set to any other value.
    """

    name: str
    reason: str
    source: str | None = None  # a public page documenting the switch; None when there is none
    prefix: bool = False
    expect: str | None = None

    @property
    def is_flag(self) -> bool:
        return self.name.startswith("-")


class EngineAdapter(ABC):
    """One per engine kind. Pure: no I/O, no clocks."""

    kind: str  # "vllm" | "sglang" | "tgi"
    display: str  # the engine's name for people: "vLLM"
    package: str  # its Python distribution, as advisories name it: "vllm", "text-generation-inference"
    default_port: int
    # Logical metrics (GAUGES/COUNTERS/HISTOGRAMS names) this engine never exposes, in any version:
    # their None means "not exposed by this engine", not "missing from this scrape".
    unsupported: frozenset[str] = frozenset()
    # The built-in ways to start it (the launch guard's default allow-list): programs matched by file
    # name and run with any arguments, and server modules a Python interpreter may run with ``-m``.
    executables: tuple[str, ...] = ()
    python_modules: tuple[str, ...] = ()
    bind_flags: tuple[str, ...] = ("--host",)  # the flag(s) naming the address the API listens on
    # Log lines that announce the engine's version, the version in group 1 (none: the version is not logged).
    version_patterns: tuple[re.Pattern[str], ...] = ()

    # --- safety -------------------------------------------------------------------------------
    @abstractmethod
    def dangerous_switches(self) -> tuple[DangerousSwitch, ...]:
        """This engine's flags and environment variables that weaken its safety (code execution,
        unauthenticated endpoints, prompts in logs, tunnels, telemetry opt-outs overridden)."""

    @abstractmethod
    def secret_env_names(self) -> tuple[str, ...]:
        """Environment variables the engine reads its own credentials from (API key first); () if none."""

    def version_from_log(self, line: str) -> str | None:
        """The engine version one log line announces, or None."""
        for pattern in self.version_patterns:
            m = pattern.search(line)
            if m:
                return m.group(1)
        return None

    # --- launch -------------------------------------------------------------------------------
    @abstractmethod
    def argv(self, spec: LaunchSpec) -> list[str]:
        """The full argv (command prefix + model + host/port + engine flags + spec.args)."""

    @abstractmethod
    def env(self, spec: LaunchSpec, base: Mapping[str, str]) -> dict[str, str]:
        """``base`` (already scrubbed by the caller) plus GPU selection, offline/telemetry opt-outs, spec.env."""

    @abstractmethod
    def health_url(self, spec: LaunchSpec) -> str: ...

    @abstractmethod
    def metrics_url(self, spec: LaunchSpec) -> str: ...

    def completions_url(self, spec: LaunchSpec) -> str:
        return f"http://{url_host(spec.host)}:{spec.port}/v1/completions"

    # --- metrics ------------------------------------------------------------------------------
    @abstractmethod
    def wanted(self) -> frozenset[str]:
        """Every sample name ``read`` may look at (the parser may skip all others)."""

    @abstractmethod
    def read(self, metrics: MetricSet) -> Reading:
        """Map one parsed exposition onto logical names, aggregating labels the engine splits on."""

    @abstractmethod
    def detect(self, metrics: MetricSet) -> float:
        """How strongly this exposition looks like this engine's (0 = not at all, 1 = certainly)."""

    def scrape_names(self) -> frozenset[str]:
        """What a scrape of this engine parses: ``wanted()`` plus the simulated engine's marker."""
        return self.wanted() | {SIMULATED_MARKER}

    def is_simulated(self, metrics: MetricSet) -> bool:
        """True when the exposition comes from llmconsole's simulated engine imitating this engine."""
        return metrics.has(SIMULATED_MARKER)


def url_host(host: str) -> str:
    """The address to *connect* to for an engine bound to ``host`` (wildcards map to loopback)."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
