"""The wire schema's names: schema strings and the version rule, the enumerations (engine states and their
groups, actions, engine kinds, severities, alert codes), the decoding errors and the timestamp format.

Stdlib only; re-exported by :mod:`agents.schema`, which every other module imports.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

SCHEMA_NAME = "llmconsole.snapshot"
SCHEMA_MAJOR = 1
SCHEMA = f"{SCHEMA_NAME}/{SCHEMA_MAJOR}"
HISTORY_SCHEMA_NAME = "llmconsole.history"
HISTORY_SCHEMA = f"{HISTORY_SCHEMA_NAME}/{SCHEMA_MAJOR}"

ENGINE_STATES = (
    "stopped",
    "starting",
    "ready",
    "degraded",
    "hung",
    "exited",
    "backoff",
    "failed",
    "stopping",
    "unreachable",  # additive: a watched engine (managed = false) listens but its health check gets no answer
)
# Groups of ENGINE_STATES (an engine in a state of a later minor version is in neither):
ALIVE_STATES = frozenset(
    {"starting", "ready", "degraded", "hung", "stopping", "unreachable"}
)  # its process tree runs
SERVING_STATES = frozenset({"ready", "degraded", "hung"})  # started up; health and progress are judged
ACTIONS = ("start", "stop", "restart")
# The agent's canary requests carry this query parameter, so its lines in an engine's access log can be told
# from users' requests (the console hides them by default).
CANARY_MARK = "llmconsole-canary"  # what POST /v1/engines/{id}/{action} accepts
ENGINE_KINDS = ("vllm", "sglang", "tgi")
SEVERITIES = ("info", "warning", "critical")  # ascending

ALERT_CODES: Mapping[str, str] = {
    "ENGINE_HUNG": "work pending and no token progress for hung_after_s (/health may still answer 200)",
    "HEALTH_LIES": "/health answers 200 but the 1-token canary completion fails, or times out while scrapes show no token progress",
    "QUEUE_GROWING": "waiting requests rise for several intervals while throughput stays flat",
    "KV_PRESSURE": "KV-cache usage at or above the kv_pressure threshold, sustained",
    "PREEMPTION_STORM": "preemptions (vLLM) / retractions (SGLang) every second, sustained, under KV pressure",
    "TTFT_SLO": "windowed TTFT p95 above the configured target",
    "CRASH_LOOP": "too many restarts within the crash-loop window; backoff is growing",
    "ORPHAN_GPU_MEMORY": "GPU memory held by processes outside every supervised engine's tree",
    "METRICS_STALE": "metrics scrapes keep failing (garbage, too large, too slow, HTTP error); values are not live",
    "METRICS_UNREACHABLE": "the metrics endpoint gives no HTTP response (refused, reset, silent); values are not live",
    "GPU_XID": "NVML reported an Xid (critical GPU) event",
    "GPU_ECC": "uncorrected ECC errors on a GPU",
    "GPU_THERMAL": "GPU clocks throttled for thermal or power reasons",
    "HOST_RAM_LEAK": "engine RSS grows steadily at flat load",
    "EXPOSED_LISTENER": "an engine's process tree listens on a non-loopback address",
    "DANGEROUS_FLAG": "the engine's argv/env carries a dangerous switch (--trust-remote-code, request logging, "
    "VLLM_SERVER_DEV_MODE, VLLM_ALLOW_INSECURE_SERIALIZATION, a non-loopback --host, a telemetry opt-out undone)",
    "ENGINE_ADVISORY": "the engine's version (from its log) is inside a known advisory range of the dated offline file",
    "ENGINE_DOWN": "a serving engine exited or was killed and is not ready again (exit code or signal, time down, next restart)",
    "ADMISSION_STALLED": "requests wait while few or none run and the KV cache is mostly free; admission makes no progress",
    "GPU_WEDGED": "the engine's GPUs are busy (≥ 90 % utilization) while requests run and its token counters are flat",
    "RANK_DIVERGENCE": "an engine on several GPUs has one busy (≥ 90 %) and another idle (< 10 %) without progress",
    "FRONTEND_HUNG": "the canary times out while the engine reports nothing running or waiting and /health answers 200",
    "WRONG_ANSWERS": "the golden canary's temperature-0 answer differs from its reference or between two runs",
    "LATENCY_DRIFT": "TTFT p95 at comparable load is drift_factor × its own baseline from after ready",
    "SLO_BURN": "the TTFT objective's error budget burns fast (multi-window multi-burn-rate)",
    "KV_EXHAUSTION_ETA": "KV-cache usage trends up and reaches 100 % within kv_eta_warn_s",
    "STATE_WRITE_FAILED": "the agent cannot write an engine's record in its state directory (read-only, full); "
    "that engine cannot be re-adopted after an agent restart",
    "AGENT_UNREACHABLE": "console: the agent did not answer (connection failed or timed out)",
    "AGENT_UNAUTHORIZED": "console: the agent refused the console's token (HTTP 401/403)",
    "AGENT_STALE": "console: the agent answers but its snapshot is old",
    "SCHEMA_MISMATCH": "console: the agent speaks an incompatible wire-schema version",
}
CONSOLE_ALERT_CODES = frozenset({"AGENT_UNREACHABLE", "AGENT_UNAUTHORIZED", "AGENT_STALE", "SCHEMA_MISMATCH"})

_SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}


def severity_rank(severity: str | None) -> int:
    """0 for info, 1 warning, 2 critical; -1 for None or an unknown (future) severity."""
    return _SEVERITY_RANK.get(severity, -1) if severity is not None else -1


def worst_severity(severities: Iterable[str | None]) -> str | None:
    """The most severe known severity among ``severities`` (None if there is none)."""
    best: str | None = None
    for sev in severities:
        if severity_rank(sev) > severity_rank(best):
            best = sev
    return best


# --- errors -------------------------------------------------------------------------------------


class SchemaError(ValueError):
    """A document that does not fit the schema; ``path`` is the JSON path of the offending value."""

    def __init__(self, reason: str, path: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.path = path

    def under(self, key: str) -> SchemaError:
        """Prefix the path with a parent key (``"stats"`` or ``"engines[1]"``); returns self."""
        if not self.path:
            self.path = key
        elif self.path.startswith("["):
            self.path = key + self.path
        else:
            self.path = f"{key}.{self.path}"
        return self

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}" if self.path else self.reason


class SchemaMismatch(SchemaError):
    """A document of another schema or another major version; ``found`` is its schema string (or None)."""

    def __init__(self, found: Any, expected: str = SCHEMA) -> None:
        self.found = found
        self.expected = expected
        if found is None:
            reason = f"missing schema key (expected {expected!r})"
        else:
            reason = f"incompatible schema {show(found)} (this reader understands {expected}.x)"
        super().__init__(reason, "schema")


def show(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, for error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- versions -----------------------------------------------------------------------------------

_VERSION_RE = re.compile(r"(?P<name>[a-z][a-z0-9_.-]*)/(?P<major>[0-9]+)(?:\.(?P<minor>[0-9]+))?")


def parse_version(schema: str) -> tuple[str, int, int] | None:
    """``"llmconsole.snapshot/1.2"`` → ``("llmconsole.snapshot", 1, 2)``; None if not of that shape."""
    m = _VERSION_RE.fullmatch(schema)
    if m is None:
        return None
    return m["name"], int(m["major"]), int(m["minor"] or 0)


def is_compatible(schema: Any, expected: str = SCHEMA) -> bool:
    """True if a reader of ``expected`` loads documents labelled ``schema`` (same name and major)."""
    if type(schema) is not str:
        return False
    found, want = parse_version(schema), parse_version(expected)
    return found is not None and want is not None and found[:2] == want[:2]


# --- timestamps (wall clock, for display only) ----------------------------------------------------


def rfc3339(epoch_s: float | None = None) -> str:
    """RFC 3339 UTC with milliseconds, e.g. ``2025-06-01T03:04:05.678Z`` (now if ``epoch_s`` is None)."""
    moment = datetime.now(UTC) if epoch_s is None else datetime.fromtimestamp(epoch_s, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_rfc3339(text: str) -> float:
    """Epoch seconds of an RFC 3339 timestamp with an offset or ``Z``; ValueError otherwise."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"timestamp without a UTC offset: {text!r}")
    return moment.timestamp()


def epoch_or_none(text: object) -> float | None:
    """Epoch seconds of an RFC 3339 timestamp with an offset or ``Z``; None when it is absent, not a string,
    unreadable, without an offset, or out of range (for readers that show what they can)."""
    if not text or not isinstance(text, str):
        return None
    try:
        return parse_rfc3339(text)
    except (ValueError, OverflowError):
        return None
