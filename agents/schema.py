"""The wire schema ``llmconsole.snapshot/1``: the contract between the agent and the console.

Stdlib only. One frozen, slotted dataclass per JSON object; sequences are tuples; a value the source
does not provide is ``None`` (JSON ``null``), never 0 or a string. Units live in key names.

Version rule
    A schema string is ``<name>/<major>`` or ``<name>/<major>.<minor>`` (e.g. ``llmconsole.snapshot/1``,
    ``llmconsole.snapshot/1.1``). A minor version only *adds* optional keys (or new values of open
    enumerations such as states and alert codes), so a reader loads every minor version of its major
    and ignores what it does not know. Renaming or removing a key, or changing its meaning, bumps the
    major; a reader raises :class:`SchemaMismatch` for any other major or any other name (the console
    shows such a host as ``incompatible``).

Reading rules (``from_dict`` / ``from_json``)
    Unknown keys are ignored at every level; a missing optional key takes its default (``None``, ``()``
    or ``False``); ``null`` for a list means an empty list; a wrong type raises :class:`SchemaError`
    naming the JSON path (``engines[1].stats.ttft_p95_s: expected number or null, got 'abc'``). ``NaN``
    and ``Infinity`` literals read as ``null``. Numbers keep their JSON type (an int stays an int).

Writing rules (``to_dict`` / ``to_json``)
    Keys in dataclass order; non-finite floats become ``null`` (NaN/Inf never go on the wire).

Decoders and encoders are generated once per class at import time (as :mod:`dataclasses` does for
``__init__``), so decoding costs no per-field reflection: the console decodes 1,000 hosts per tick.
"""

from __future__ import annotations

import json
import math
import re
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from datetime import UTC, datetime
from types import NoneType, UnionType
from typing import Any, TypeVar

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
)
# Groups of ENGINE_STATES (an engine in a state of a later minor version is in neither):
ALIVE_STATES = frozenset({"starting", "ready", "degraded", "hung", "stopping"})  # its process tree runs
SERVING_STATES = frozenset({"ready", "degraded", "hung"})  # started up; health and progress are judged
ACTIONS = ("start", "stop", "restart")  # what POST /v1/engines/{id}/{action} accepts
ENGINE_KINDS = ("vllm", "sglang", "tgi")
SEVERITIES = ("info", "warning", "critical")  # ascending

ALERT_CODES: Mapping[str, str] = {
    "ENGINE_HUNG": "work pending and no token progress for hung_after_s (/health may still answer 200)",
    "HEALTH_LIES": "/health answers 200 but the 1-token canary completion fails or times out",
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
            reason = f"incompatible schema {_show(found)} (this reader understands {expected}.x)"
        super().__init__(reason, "schema")


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


def _show(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- the wire model -----------------------------------------------------------------------------

_FROZEN = {"frozen": True, "slots": True, "kw_only": True}


def _versioned(expected: str) -> Any:
    """The ``schema`` field: checked first on decode, before anything else is looked at."""
    return field(default=expected, metadata={"version": expected})


@dataclass(**_FROZEN)
class HostStats:
    cpu_pct: float | None = None
    mem_used_bytes: int | None = None
    mem_total_bytes: int | None = None


@dataclass(**_FROZEN)
class GpuProcess:
    pid: int
    mem_bytes: int | None = None
    engine_id: str | None = None  # None: not in any supervised engine's process tree


@dataclass(**_FROZEN)
class GpuInfo:
    index: int
    uuid: str | None = None
    name: str | None = None
    mem_used_bytes: int | None = None
    mem_total_bytes: int | None = None
    util_pct: float | None = None
    temp_c: float | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    ecc_uncorrected: int | None = None
    xid_last: int | None = None
    throttle_reasons: tuple[str, ...] = ()
    processes: tuple[GpuProcess, ...] = ()


@dataclass(**_FROZEN)
class LastExit:
    code: int | None = None  # exit status when the process exited by itself
    signal: int | None = None  # signal number when it was killed by a signal
    at: str | None = None  # RFC 3339 UTC
    stderr_tail: tuple[str, ...] = ()


@dataclass(**_FROZEN)
class EngineStats:
    """Normalized engine statistics; rates are per second, percentiles over a recent window."""

    requests_running: float | None = None
    requests_waiting: float | None = None
    kv_cache_usage: float | None = None  # 0..1; None where the engine has no such gauge (TGI)
    preemptions_per_s: float | None = None
    prompt_tokens_per_s: float | None = None
    generation_tokens_per_s: float | None = None
    ttft_p50_s: float | None = None
    ttft_p95_s: float | None = None
    ttft_p99_s: float | None = None
    itl_p95_s: float | None = None
    e2e_p95_s: float | None = None
    queue_time_p95_s: float | None = None
    request_errors_per_s: float | None = None
    prefix_cache_hit_rate: float | None = None


@dataclass(**_FROZEN)
class Health:
    http_ok: bool | None = None
    http_status: int | None = None
    latency_s: float | None = None
    checked_at: str | None = None
    error: str | None = None  # additive: why it failed ("no complete response within 2s", "HTTP 503 …")


@dataclass(**_FROZEN)
class Canary:
    ok: bool | None = None
    ttft_s: float | None = None
    error: str | None = None
    at: str | None = None


@dataclass(**_FROZEN)
class Alert:
    code: str
    severity: str  # one of SEVERITIES (a reader tolerates others: severity_rank gives -1)
    since: str | None = None
    summary: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)  # JSON values only


@dataclass(**_FROZEN)
class EngineEvent:
    """One state transition of a supervised engine."""

    at: str
    state: str
    reason: str | None = None
    exit_code: int | None = None
    signal: int | None = None


@dataclass(**_FROZEN)
class Loading:
    """Progress of an engine in ``starting``: time since launch and the last lines of its log."""

    elapsed_s: float | None = None
    log_tail: tuple[str, ...] = ()


@dataclass(**_FROZEN)
class EngineSnapshot:
    id: str
    kind: str
    model: str | None = None
    state: str
    pid: int | None = None
    port: int | None = None
    gpus: tuple[int, ...] = ()
    restarts: int | None = None
    uptime_s: float | None = None
    last_exit: LastExit | None = None
    stats_age_s: float | None = None
    stats: EngineStats | None = None
    health: Health | None = None
    canary: Canary | None = None
    alerts: tuple[Alert, ...] = ()
    # additive keys (schema 1 extras)
    simulated: bool = False  # the engine is llmconsole's simulated engine, not a real one
    served_model_name: str | None = None
    events: tuple[EngineEvent, ...] = ()  # recent transitions, oldest first
    loading: Loading | None = None  # set while state is "starting"
    rss_bytes: int | None = None


@dataclass(**_FROZEN)
class HostSnapshot:
    schema: str = _versioned(SCHEMA)
    host: str
    agent_version: str | None = None
    seq: int
    taken_at: str  # RFC 3339 UTC
    interval_s: float | None = None
    gpu_source: str | None = None  # "nvml" | "simulated" | "unavailable: <reason>"
    host_stats: HostStats | None = None
    gpus: tuple[GpuInfo, ...] = ()
    engines: tuple[EngineSnapshot, ...] = ()
    alerts: tuple[Alert, ...] = ()  # host-level
    errors: tuple[str, ...] = ()  # partial-collection failures, one line each
    boot_id: str | None = None

    def engine(self, engine_id: str) -> EngineSnapshot | None:
        """The engine with this id, or None."""
        return next((e for e in self.engines if e.id == engine_id), None)


@dataclass(**_FROZEN)
class History:
    """``GET /v1/history``: one host's recent snapshots, oldest first."""

    schema: str = _versioned(HISTORY_SCHEMA)
    host: str
    snapshots: tuple[HostSnapshot, ...] = ()


WIRE_TYPES: tuple[type, ...] = (
    HostStats, GpuProcess, GpuInfo, LastExit, EngineStats, Health, Canary, Alert, EngineEvent, Loading,
    EngineSnapshot, HostSnapshot, History,
)  # fmt: skip

# --- generated decoders/encoders ----------------------------------------------------------------

T = TypeVar("T")
_ABSENT = object()
_SCALARS: dict[type, tuple[str, str]] = {
    # python type -> (type test on variable `v`, name used in errors)
    bool: ("type(v) is bool", "boolean"),
    int: ("type(v) is int", "integer"),
    float: ("(type(v) is float or type(v) is int)", "number"),
    str: ("type(v) is str", "string"),
}


def _bad(key: str, expected: str, value: Any) -> SchemaError:
    return SchemaError(f"expected {expected}, got {_show(value)}", key)


def _missing(key: str) -> SchemaError:
    return SchemaError("missing required key", key)


def _check_version(value: Any, expected: str) -> str:
    if not is_compatible(value, expected):
        raise SchemaMismatch(None if value is _ABSENT else value, expected)
    return value


def _sub(decode: Callable[[Any], Any], value: Any, key: str) -> Any:
    try:
        return decode(value)
    except SchemaError as e:
        raise e.under(key) from None


def _sub_list(decode: Callable[[Any], Any], value: Any, key: str) -> tuple[Any, ...]:
    if type(value) is not list:
        raise _bad(key, "array or null", value)
    out: list[Any] = []
    append = out.append
    try:
        for item in value:
            append(decode(item))
    except SchemaError as e:
        raise e.under(f"{key}[{len(out)}]") from None
    return tuple(out)


def _make_scalar_list_checker(py: type) -> Callable[[Any, str], tuple[Any, ...]]:
    test, name = _SCALARS[py]
    src = (
        "def check(value, key):\n"
        "    if type(value) is not list:\n"
        "        raise _bad(key, 'array or null', value)\n"
        "    for i, v in enumerate(value):\n"
        f"        if not {test}:\n"
        f"            raise _bad(f'{{key}}[{{i}}]', {name!r}, v)\n"
        "    return tuple(value)\n"
    )
    scope: dict[str, Any] = {"_bad": _bad}
    exec(src, scope)  # noqa: S102 - generated from the fixed table above
    return scope["check"]


_SCALAR_LIST = {py: _make_scalar_list_checker(py) for py in _SCALARS}


def _json_object(value: Any, key: str) -> dict[str, Any]:
    if type(value) is not dict:
        raise _bad(key, "object or null", value)
    return value


def _finite_json(value: Any) -> Any:
    """A copy of a JSON value with non-finite floats replaced by None (tuples become lists)."""
    if type(value) is float:
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_json(v) for v in value]
    return value


def _finite(x: Any) -> Any:
    return x if type(x) is not float or math.isfinite(x) else None


def _analyse(hint: Any) -> tuple[str, Any, bool]:
    """A field's type as (shape, detail, optional): shape is scalar|object|list|json."""
    optional = False
    if isinstance(hint, UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not NoneType]
        optional = len(args) != len(typing.get_args(hint))
        if len(args) != 1:
            raise TypeError(f"unsupported union {hint}")
        hint = args[0]
    if hint in _SCALARS:
        return "scalar", hint, optional
    if hint in _DECODERS or hint in WIRE_TYPES:
        return "object", hint, optional
    origin = typing.get_origin(hint)
    if origin is tuple:
        (item, _ellipsis) = typing.get_args(hint)
        return "list", item, optional
    if origin is dict:
        return "json", None, optional
    raise TypeError(f"unsupported wire type {hint}")


_DECODERS: dict[type, Callable[[Any], Any]] = {}
_ENCODERS: dict[type, Callable[[Any], dict[str, Any]]] = {}


def _build(cls: type) -> None:
    """Generate ``decode(d) -> cls`` and ``encode(obj) -> dict`` for one wire dataclass."""
    hints = typing.get_type_hints(cls)
    scope: dict[str, Any] = {
        "cls": cls, "_bad": _bad, "_missing": _missing, "_sub": _sub, "_sub_list": _sub_list,
        "_json_object": _json_object, "_ABSENT": _ABSENT, "_check_version": _check_version,
        "_finite": _finite, "_finite_json": _finite_json, "_show": _show, "SchemaError": SchemaError,
        "_new": object.__new__,
    }  # fmt: skip
    dec = [
        "def decode(d):",
        "    if type(d) is not dict:",
        "        raise SchemaError(f'expected object, got {_show(d)}')",
    ]
    dec.append("    g = d.get")
    enc: dict[str, str] = {}  # key -> expression encoding it
    # the version field is checked before any other (a v2 document must not fail on types first)
    flist = sorted(fields(cls), key=lambda f: "version" not in f.metadata)
    for n, f in enumerate(flist):
        key, var = f.name, f"v{n}"
        scope[f"_set{n}"] = getattr(cls, key).__set__  # slot descriptor, see the end
        if "version" in f.metadata:
            scope[f"_expected{n}"] = f.metadata["version"]
            dec.append(f"    {var} = _check_version(g({key!r}, _ABSENT), _expected{n})")
            enc[key] = f"o.{key}"
            continue
        shape, detail, optional = _analyse(hints[key])
        required = f.default is MISSING and f.default_factory is MISSING
        if shape == "scalar":
            test, name = _SCALARS[detail]
            test = test.replace("(v)", f"({var})")
            if required:
                dec += [
                    f"    {var} = g({key!r}, _ABSENT)",
                    f"    if not {test}:",
                    f"        raise _missing({key!r}) if {var} is _ABSENT else _bad({key!r}, {name!r}, {var})",
                ]
            else:
                default = f.default
                scope[f"_default{n}"] = default
                expected = f"{name} or null" if optional else name
                dec += [f"    {var} = g({key!r})"]
                if default is None:
                    dec += [f"    if {var} is not None and not {test}:"]
                    dec += [f"        raise _bad({key!r}, {expected!r}, {var})"]
                else:  # e.g. simulated: bool = False, summary: str = ""; null reads as the default
                    dec += [f"    if {var} is None:", f"        {var} = _default{n}", f"    elif not {test}:"]
                    dec += [f"        raise _bad({key!r}, {name!r} + ' or null', {var})"]
            enc[key] = f"_finite(o.{key})" if detail is float else f"o.{key}"
        elif shape == "object":
            _build_if_needed(detail)
            scope[f"_dec{n}"] = _DECODERS[detail]
            scope[f"_enc{n}"] = _ENCODERS[detail]
            dec += [f"    {var} = g({key!r})"]
            if required:
                dec += [f"    if {var} is None:", f"        raise _missing({key!r})"]
                dec += [f"    {var} = _sub(_dec{n}, {var}, {key!r})"]
                enc[key] = f"_enc{n}(o.{key})"
            else:
                dec += [f"    if {var} is not None:", f"        {var} = _sub(_dec{n}, {var}, {key!r})"]
                enc[key] = f"None if o.{key} is None else _enc{n}(o.{key})"
        elif shape == "list":
            dec += [f"    {var} = g({key!r})", f"    if {var} is None:", f"        {var} = ()"]
            if detail in _SCALARS:
                scope[f"_chk{n}"] = _SCALAR_LIST[detail]
                dec += ["    else:", f"        {var} = _chk{n}({var}, {key!r})"]
                enc[key] = f"[_finite(x) for x in o.{key}]" if detail is float else f"list(o.{key})"
            else:
                _build_if_needed(detail)
                scope[f"_dec{n}"] = _DECODERS[detail]
                scope[f"_enc{n}"] = _ENCODERS[detail]
                dec += ["    else:", f"        {var} = _sub_list(_dec{n}, {var}, {key!r})"]
                enc[key] = f"[_enc{n}(x) for x in o.{key}]"
        else:  # json object (alert evidence)
            dec += [f"    {var} = g({key!r})", f"    if {var} is None:", f"        {var} = {{}}"]
            dec += ["    else:", f"        {var} = _json_object({var}, {key!r})"]
            enc[key] = f"_finite_json(o.{key})"
    # Build the instance without __init__: the frozen-dataclass __init__ sets each slot through
    # object.__setattr__ after argument binding, which doubles the decode cost; calling the slot
    # descriptors directly does the same assignments (every value is validated above).
    dec.append("    o = _new(cls)")
    dec += [f"    _set{n}(o, v{n})" for n in range(len(flist))]
    dec.append("    return o")
    body = ", ".join(f"{f.name!r}: {enc[f.name]}" for f in fields(cls))  # wire order = field order
    src = "\n".join(dec) + "\n\ndef encode(o):\n    return {" + body + "}\n"
    exec(compile(src, f"<llmconsole.schema {cls.__name__}>", "exec"), scope)  # noqa: S102
    _DECODERS[cls] = scope["decode"]
    _ENCODERS[cls] = scope["encode"]


def _build_if_needed(cls: type) -> None:
    if cls not in _DECODERS:
        _build(cls)


for _cls in WIRE_TYPES:
    _build_if_needed(_cls)
del _cls


# --- public API -------------------------------------------------------------------------------


def to_dict(obj: Any) -> dict[str, Any]:
    """A wire dataclass as plain JSON data (lists for tuples, non-finite floats as None)."""
    try:
        encode = _ENCODERS[type(obj)]
    except KeyError:
        raise TypeError(f"not a wire type: {type(obj).__name__}") from None
    return encode(obj)


def from_dict(data: Any, cls: type[T] = HostSnapshot) -> T:  # type: ignore[assignment]
    """Decode plain JSON data into ``cls`` (default HostSnapshot) under the reading rules above."""
    try:
        decode = _DECODERS[cls]
    except KeyError:
        raise TypeError(f"not a wire type: {getattr(cls, '__name__', cls)}") from None
    return decode(data)


def _dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _nan_to_null(_constant: str) -> None:
    return None


def _loads(text: str | bytes) -> Any:
    try:
        return json.loads(text, parse_constant=_nan_to_null)
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
        raise SchemaError(f"invalid JSON: {e}") from None


def to_json(snapshot: HostSnapshot) -> str:
    """Compact JSON text of a snapshot (or any wire dataclass)."""
    return _dumps(to_dict(snapshot))


def from_json(text: str | bytes) -> HostSnapshot:
    """Decode ``GET /v1/snapshot`` text; raises SchemaError / SchemaMismatch."""
    return _DECODERS[HostSnapshot](_loads(text))


def history_to_dict(host: str, snapshots: Iterable[HostSnapshot]) -> dict[str, Any]:
    return {"schema": HISTORY_SCHEMA, "host": host, "snapshots": [to_dict(s) for s in snapshots]}


def history_to_json(host: str, snapshots: Iterable[HostSnapshot | str]) -> str:
    """``GET /v1/history`` text. Items may be snapshots or their already-encoded ``to_json`` text,
    so the agent can encode each snapshot once and keep the text in its ring buffer."""
    parts = [s if isinstance(s, str) else to_json(s) for s in snapshots]
    return f'{{"schema":{_dumps(HISTORY_SCHEMA)},"host":{_dumps(host)},"snapshots":[{",".join(parts)}]}}'


def history_from_dict(data: Any) -> History:
    return _DECODERS[History](data)


def history_from_json(text: str | bytes) -> History:
    """Decode ``GET /v1/history`` text; every snapshot in it is checked like ``from_json``."""
    return _DECODERS[History](_loads(text))


# --- reading helpers -----------------------------------------------------------------------------

STALE_AFTER_INTERVALS = 3.0  # stats older than this many collection intervals are not live


def stats_are_live(
    engine: EngineSnapshot, interval_s: float | None, stale_after_s: float | None = None
) -> bool:
    """Whether an engine's stats may be shown (or exported) as live values: they exist, their age is
    known, and it is at most ``stale_after_s`` (default: STALE_AFTER_INTERVALS × ``interval_s``,
    with 1 s when the interval is unknown). A stale number is never shown as live."""
    if engine.stats is None or engine.stats_age_s is None:
        return False
    limit = stale_after_s if stale_after_s is not None else STALE_AFTER_INTERVALS * (interval_s or 1.0)
    return engine.stats_age_s <= limit


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


__all__ = [
    "ACTIONS", "ALERT_CODES", "ALIVE_STATES", "CONSOLE_ALERT_CODES", "ENGINE_KINDS", "ENGINE_STATES",
    "HISTORY_SCHEMA", "SCHEMA", "SERVING_STATES",
    "SCHEMA_MAJOR", "SCHEMA_NAME", "SEVERITIES", "WIRE_TYPES",
    "Alert", "Canary", "EngineEvent", "EngineSnapshot", "EngineStats", "GpuInfo", "GpuProcess", "Health",
    "History", "HostSnapshot", "HostStats", "LastExit", "Loading", "SchemaError", "SchemaMismatch",
    "from_dict", "from_json", "history_from_dict", "history_from_json", "history_to_dict", "history_to_json",
    "STALE_AFTER_INTERVALS", "is_compatible", "parse_rfc3339", "parse_version", "rfc3339", "severity_rank",
    "stats_are_live", "to_dict", "to_json", "worst_severity",
]  # fmt: skip
