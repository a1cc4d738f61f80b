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

Reading and writing rules: :mod:`agents.schema.codec`.

This package is imported as ``agents.schema`` everywhere; its parts are
:mod:`~agents.schema.vocab` (names, enumerations, errors, versions, timestamps),
:mod:`~agents.schema.model` (the dataclasses) and :mod:`~agents.schema.codec` (JSON in and out).
"""

from __future__ import annotations

from agents.schema.codec import (
    from_dict,
    from_json,
    history_from_dict,
    history_from_json,
    history_to_dict,
    history_to_json,
    to_dict,
    to_json,
)
from agents.schema.model import (
    PERCENTILE_KEYS,
    STALE_AFTER_INTERVALS,
    WIRE_TYPES,
    ActionAvailability,
    Alert,
    BenchmarkMarker,
    Canary,
    EngineEvent,
    EngineSnapshot,
    EngineStats,
    GpuInfo,
    GpuProcess,
    Health,
    History,
    HostSnapshot,
    HostStats,
    LastExit,
    Loading,
    QuantileBucket,
    SloStatus,
    SloWindow,
    WatchInfo,
    stats_are_live,
    wide_bucket,
)
from agents.schema.vocab import (
    ACTIONS,
    ALERT_CODES,
    ALIVE_STATES,
    CANARY_MARK,
    CONSOLE_ALERT_CODES,
    ENGINE_KINDS,
    ENGINE_STATES,
    HISTORY_SCHEMA,
    HISTORY_SCHEMA_NAME,
    SCHEMA,
    SCHEMA_MAJOR,
    SCHEMA_NAME,
    SERVING_STATES,
    SEVERITIES,
    SchemaError,
    SchemaMismatch,
    epoch_or_none,
    is_compatible,
    parse_rfc3339,
    parse_version,
    rfc3339,
    severity_rank,
    worst_severity,
)

__all__ = [
    "ACTIONS",
    "ALERT_CODES",
    "ALIVE_STATES",
    "CANARY_MARK",
    "CONSOLE_ALERT_CODES",
    "ENGINE_KINDS",
    "ENGINE_STATES",
    "HISTORY_SCHEMA",
    "HISTORY_SCHEMA_NAME",
    "PERCENTILE_KEYS",
    "SCHEMA",
    "SERVING_STATES",
    "SCHEMA_MAJOR",
    "SCHEMA_NAME",
    "SEVERITIES",
    "WIRE_TYPES",
    "ActionAvailability",
    "Alert",
    "BenchmarkMarker",
    "Canary",
    "EngineEvent",
    "EngineSnapshot",
    "EngineStats",
    "GpuInfo",
    "GpuProcess",
    "Health",
    "History",
    "HostSnapshot",
    "HostStats",
    "LastExit",
    "Loading",
    "QuantileBucket",
    "SloStatus",
    "SloWindow",
    "WatchInfo",
    "SchemaError",
    "SchemaMismatch",
    "from_dict",
    "from_json",
    "history_from_dict",
    "history_from_json",
    "history_to_dict",
    "history_to_json",
    "STALE_AFTER_INTERVALS",
    "is_compatible",
    "parse_rfc3339",
    "epoch_or_none",
    "parse_version",
    "rfc3339",
    "severity_rank",
    "stats_are_live",
    "wide_bucket",
    "to_dict",
    "to_json",
    "worst_severity",
]
