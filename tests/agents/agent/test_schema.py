"""The wire schema llmconsole.snapshot/1: golden files (loaded forever), reading rules, round trips."""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from pathlib import Path
from types import NoneType, UnionType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents import schema
from agents.schema import (
    ALERT_CODES,
    ENGINE_STATES,
    SCHEMA,
    EngineSnapshot,
    EngineStats,
    History,
    HostSnapshot,
    SchemaError,
    SchemaMismatch,
    from_dict,
    from_json,
    to_dict,
    to_json,
)

GOLDEN = Path(__file__).resolve().parents[2] / "data" / "snapshots" / "v1"


def golden(name: str) -> str:
    return (GOLDEN / f"{name}.json").read_text()


# --- golden files ---------------------------------------------------------------------------------


def test_full_host_round_trips_exactly() -> None:
    text = golden("full")
    snap = from_json(text)
    # every key of the golden file is a schema key, in wire order: decode + encode reproduces it
    assert to_dict(snap) == json.loads(text)
    assert list(to_dict(snap)["engines"][0]) == list(json.loads(text)["engines"][0])
    assert from_json(to_json(snap)) == snap


def test_full_host_content() -> None:
    snap = from_json(golden("full"))
    assert snap.schema == SCHEMA and snap.host == "gpu01" and snap.seq == 48213
    assert [g.index for g in snap.gpus] == [0, 1]
    assert isinstance(snap.gpus, tuple) and isinstance(snap.gpus[1].throttle_reasons, tuple)
    assert snap.gpus[1].processes[2].engine_id is None  # an orphan holds memory
    vllm, sglang, tgi = snap.engines
    assert (vllm.kind, vllm.state, sglang.kind, sglang.state, tgi.kind) == (
        "vllm",
        "ready",
        "sglang",
        "hung",
        "tgi",
    )
    assert vllm.stats is not None and vllm.stats.ttft_p95_s == 0.164
    assert tgi.stats is not None and tgi.stats.kv_cache_usage is None and tgi.stats.preemptions_per_s is None
    codes = [a.code for a in sglang.alerts]
    assert codes == ["ENGINE_HUNG", "HEALTH_LIES"]
    assert sglang.alerts[0].evidence["no_progress_s"] == 47.0
    assert sglang.health is not None and sglang.health.http_status == 200
    assert sglang.canary is not None and sglang.canary.ok is False
    assert sglang.last_exit is not None and sglang.last_exit.signal == 9 and sglang.last_exit.code is None
    assert [e.state for e in sglang.events][-1] == "hung"
    assert snap.engine("mistral-tgi") is tgi and snap.engine("nope") is None
    assert {a.code for a in snap.alerts} == {"GPU_THERMAL", "ORPHAN_GPU_MEMORY"}


def test_minimal_host_without_gpus_or_engines() -> None:
    text = golden("minimal")
    snap = from_json(text)
    assert snap.gpu_source == "unavailable: NVML library not found"
    assert snap.gpus == () and snap.engines == () and snap.boot_id is None
    assert snap.errors == ("nvml: NVML Shared Library Not Found",)
    assert to_dict(snap) == json.loads(text)


def test_host_from_the_future_loads_and_drops_unknown_keys() -> None:
    text = golden("future")
    snap = from_json(text)
    assert snap.schema == "llmconsole.snapshot/1.3"
    assert snap.agent_version is None  # missing optional key
    assert snap.host_stats is not None and snap.host_stats.cpu_pct == 12.0
    engine = snap.engines[0]
    assert engine.state == "draining"  # open enumeration: a new state still loads
    assert engine.simulated is True
    assert engine.stats is not None and engine.stats.ttft_p95_s == 0.1 and engine.stats.itl_p95_s is None
    assert engine.loading is not None and engine.loading.log_tail == ("Loading safetensors",)
    alert = engine.alerts[0]
    assert (alert.code, alert.severity) == ("SPEC_DECODE_SLOW", "page")
    assert schema.severity_rank(alert.severity) == -1
    assert alert.evidence == {"nested": {"deep": [1, 2, {"x": None}]}}
    out = to_dict(snap)
    for unknown in ("datacenter", "power_budget_w"):
        assert unknown not in out
    assert "lora_adapters" not in out["engines"][0] and "nvlink" not in out["gpus"][0]
    assert "spec_decode_acceptance" not in out["engines"][0]["stats"]
    # quantile_buckets: only the known percentile keys are read; a later key, whatever its shape, is dropped
    assert engine.stats.quantile_buckets == {"ttft_p95_s": (0.0, 0.1)}
    assert out["engines"][0]["stats"]["quantile_buckets"] == {"ttft_p95_s": [0.0, 0.1]}
    assert "runbook_url" not in out["engines"][0]["alerts"][0]
    assert from_json(to_json(snap)) == snap


def test_v2_host_is_a_mismatch_not_a_crash() -> None:
    with pytest.raises(SchemaMismatch) as info:
        from_json(golden("v2"))
    assert info.value.found == "llmconsole.snapshot/2"
    assert isinstance(info.value, SchemaError) and isinstance(info.value, ValueError)
    assert str(info.value).startswith("schema: incompatible schema 'llmconsole.snapshot/2'")


def test_history_golden() -> None:
    text = golden("history")
    hist = schema.history_from_json(text)
    assert hist.schema == schema.HISTORY_SCHEMA and hist.host == "cpu-box"
    assert [s.seq for s in hist.snapshots] == [1, 2]
    assert json.loads(schema.history_to_json(hist.host, hist.snapshots)) == json.loads(text)
    assert schema.history_to_dict(hist.host, hist.snapshots) == json.loads(text)


# --- version rule -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "version", ["llmconsole.snapshot/1", "llmconsole.snapshot/1.1", "llmconsole.snapshot/1.42"]
)
def test_minor_versions_load(version: str) -> None:
    data = json.loads(golden("minimal"))
    data["schema"] = version
    assert from_dict(data).schema == version


@pytest.mark.parametrize(
    ("version", "found"),
    [
        ("llmconsole.snapshot/2", "llmconsole.snapshot/2"),
        ("llmconsole.snapshot/10", "llmconsole.snapshot/10"),
        ("llmconsole.snapshot/0.9", "llmconsole.snapshot/0.9"),
        ("llmconsole.snapshot/1.x", "llmconsole.snapshot/1.x"),
        ("llmconsole.history/1", "llmconsole.history/1"),
        ("prometheus/1", "prometheus/1"),
        (5, 5),
        (None, None),
    ],
)
def test_other_schemas_are_mismatches(version: Any, found: Any) -> None:
    data = json.loads(golden("minimal"))
    data["schema"] = version
    with pytest.raises(SchemaMismatch) as info:
        from_dict(data)
    assert info.value.found == found


def test_missing_schema_is_a_mismatch() -> None:
    data = json.loads(golden("minimal"))
    del data["schema"]
    with pytest.raises(SchemaMismatch) as info:
        from_dict(data)
    assert info.value.found is None and "missing schema" in str(info.value)


def test_schema_is_checked_before_types() -> None:
    """A v2 document with types v1 would reject still reports the mismatch."""
    with pytest.raises(SchemaMismatch):
        from_dict({"schema": "llmconsole.snapshot/2", "seq": "x", "engines": 3})


def test_parse_version_and_compatibility() -> None:
    assert schema.parse_version("llmconsole.snapshot/1.2") == ("llmconsole.snapshot", 1, 2)
    assert schema.parse_version("llmconsole.snapshot/1") == ("llmconsole.snapshot", 1, 0)
    assert schema.parse_version("snapshot v1") is None
    assert schema.is_compatible("llmconsole.snapshot/1.9")
    assert not schema.is_compatible("llmconsole.snapshot/2.0")
    assert not schema.is_compatible(1)


# --- path-precise errors ----------------------------------------------------------------------------


def _set(data: Any, path: tuple[Any, ...], value: Any) -> None:
    for step in path[:-1]:
        data = data[step]
    if value is _DELETE:
        del data[path[-1]]
    else:
        data[path[-1]] = value


_DELETE = object()

BAD = [
    (
        ("engines", 1, "stats", "ttft_p95_s"),
        "abc",
        "engines[1].stats.ttft_p95_s: expected number or null, got 'abc'",
    ),
    (("seq",), "7", "seq: expected integer, got '7'"),
    (("seq",), True, "seq: expected integer, got True"),
    (("seq",), _DELETE, "seq: missing required key"),
    (("host",), None, "host: expected string, got None"),
    (("gpus", 1, "processes", 0, "pid"), 1.5, "gpus[1].processes[0].pid: expected integer, got 1.5"),
    (("gpus", 0, "temp_c"), True, "gpus[0].temp_c: expected number or null, got True"),
    (("engines", 0, "gpus"), [0, "1"], "engines[0].gpus[1]: expected integer, got '1'"),
    (("engines", 0, "gpus"), "0", "engines[0].gpus: expected array or null, got '0'"),
    (
        ("engines", 2, "alerts", 0, "evidence"),
        [],
        "engines[2].alerts[0].evidence: expected object or null, got []",
    ),
    (
        ("engines", 0, "health", "http_ok"),
        "yes",
        "engines[0].health.http_ok: expected boolean or null, got 'yes'",
    ),
    (("engines",), {}, "engines: expected array or null, got {}"),
    (("engines", 1, "last_exit"), 3, "engines[1].last_exit: expected object, got 3"),
    (
        ("engines", 1, "last_exit", "stderr_tail", 1),
        None,
        "engines[1].last_exit.stderr_tail[1]: expected string, got None",
    ),
    (("engines", 0, "id"), _DELETE, "engines[0].id: missing required key"),
    (("engines", 0, "simulated"), "no", "engines[0].simulated: expected boolean or null, got 'no'"),
    (("engines", 1, "events", 3, "at"), 17, "engines[1].events[3].at: expected string, got 17"),
    (("errors",), ["ok", 5], "errors[1]: expected string, got 5"),
    (("alerts", 1, "severity"), _DELETE, "alerts[1].severity: missing required key"),
    (("host_stats",), [], "host_stats: expected object, got []"),
]


@pytest.mark.parametrize(("path", "value", "message"), BAD, ids=[m.split(":")[0] for _, _, m in BAD])
def test_bad_types_name_the_json_path(path: tuple[Any, ...], value: Any, message: str) -> None:
    data = json.loads(golden("full"))
    _set(data, path, value)
    with pytest.raises(SchemaError) as info:
        from_dict(data)
    assert not isinstance(info.value, SchemaMismatch)
    assert str(info.value) == message
    # the same through the JSON text path
    with pytest.raises(
        SchemaError, match=r"^" + message.split(":")[0].replace("[", r"\[").replace("]", r"\]")
    ):
        from_json(json.dumps(data))


def test_not_an_object_and_not_json() -> None:
    with pytest.raises(SchemaError, match=r"^expected object, got \[\]$"):
        from_json("[]")
    with pytest.raises(SchemaError, match="^invalid JSON: "):
        from_json("{not json")
    with pytest.raises(SchemaError, match="^invalid JSON: "):
        from_json(b"\xff\xfe{")


def test_long_bad_values_are_shortened() -> None:
    data = json.loads(golden("minimal"))
    data["seq"] = "x" * 500
    with pytest.raises(SchemaError) as info:
        from_dict(data)
    assert len(str(info.value)) < 120 and str(info.value).endswith("...")


def test_nested_classes_decode_on_their_own() -> None:
    stats = from_dict({"ttft_p95_s": 0.5, "future": 1}, EngineStats)
    assert stats == EngineStats(ttft_p95_s=0.5)
    with pytest.raises(TypeError):
        from_dict({}, dict)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        to_dict({"not": "a wire type"})


# --- NaN/Inf never on the wire ------------------------------------------------------------------------


def test_non_finite_values_become_null() -> None:
    nan, inf = float("nan"), float("inf")
    snap = HostSnapshot(
        host="h",
        seq=1,
        taken_at="2025-01-01T00:00:00Z",
        interval_s=inf,
        host_stats=schema.HostStats(cpu_pct=nan),
        gpus=(schema.GpuInfo(index=0, power_w=-inf),),
        engines=(
            EngineSnapshot(
                id="e",
                kind="vllm",
                state="ready",
                stats=EngineStats(ttft_p95_s=nan, kv_cache_usage=0.5),
                alerts=(
                    schema.Alert(
                        code="TTFT_SLO", severity="warning", evidence={"a": [nan, {"b": inf}], "c": 1.5}
                    ),
                ),
            ),
        ),
    )
    text = to_json(snap)
    assert "NaN" not in text and "Infinity" not in text
    back = from_json(text)
    assert back.interval_s is None and back.host_stats is not None and back.host_stats.cpu_pct is None
    assert back.gpus[0].power_w is None
    engine = back.engines[0]
    assert engine.stats == EngineStats(kv_cache_usage=0.5)
    assert engine.alerts[0].evidence == {"a": [None, {"b": None}], "c": 1.5}


def test_nan_literals_on_the_wire_read_as_null() -> None:
    data = json.loads(golden("minimal"))
    text = json.dumps(data).replace('"cpu_pct": 3.1', '"cpu_pct": NaN')
    assert "NaN" in text
    snap = from_json(text)
    assert snap.host_stats is not None and snap.host_stats.cpu_pct is None


# --- history ----------------------------------------------------------------------------------------------


def test_history_accepts_pre_encoded_snapshots() -> None:
    full, minimal = from_json(golden("full")), from_json(golden("minimal"))
    text = schema.history_to_json("gpu01", [full, to_json(minimal)])
    hist = schema.history_from_json(text)
    assert hist == History(host="gpu01", snapshots=(full, minimal))


def test_history_with_a_v2_snapshot_inside_names_it() -> None:
    data = json.loads(golden("history"))
    data["snapshots"][1]["schema"] = "llmconsole.snapshot/2"
    with pytest.raises(SchemaMismatch) as info:
        schema.history_from_dict(data)
    assert info.value.path == "snapshots[1].schema" and info.value.found == "llmconsole.snapshot/2"


def test_history_schema_is_checked() -> None:
    with pytest.raises(SchemaMismatch) as info:
        schema.history_from_dict({"schema": "llmconsole.history/2", "host": "h", "snapshots": []})
    assert info.value.found == "llmconsole.history/2"
    with pytest.raises(SchemaMismatch):
        schema.history_from_dict({"schema": SCHEMA, "host": "h", "snapshots": []})


# --- constants --------------------------------------------------------------------------------------------


def test_constants() -> None:
    assert ENGINE_STATES == (
        "stopped",
        "starting",
        "ready",
        "degraded",
        "hung",
        "exited",
        "backoff",
        "failed",
        "stopping",
        "unreachable",  # additive: a watched engine that listens but does not answer (managed = false)
    )
    assert schema.ENGINE_KINDS == ("vllm", "sglang", "tgi")
    design_codes = {
        "ENGINE_HUNG",
        "HEALTH_LIES",
        "QUEUE_GROWING",
        "KV_PRESSURE",
        "PREEMPTION_STORM",
        "TTFT_SLO",
        "CRASH_LOOP",
        "ORPHAN_GPU_MEMORY",
        "METRICS_STALE",
        "METRICS_UNREACHABLE",
        "GPU_XID",
        "GPU_ECC",
        "GPU_THERMAL",
        "HOST_RAM_LEAK",
        "EXPOSED_LISTENER",
        "AGENT_UNREACHABLE",
        "AGENT_STALE",
        "SCHEMA_MISMATCH",
    }
    added = {"DANGEROUS_FLAG", "ENGINE_ADVISORY"}  # additive codes of the exposure audit (README)
    added |= {"STATE_WRITE_FAILED"}  # additive: a state-file write failed (host-level)
    added |= {"AGENT_UNAUTHORIZED"}  # additive, console-side: the agent answered 401/403
    added |= {  # additive: silent failures that still answer 200, and the SLO burn (issue 14)
        "ENGINE_DOWN",
        "ADMISSION_STALLED",
        "GPU_WEDGED",
        "RANK_DIVERGENCE",
        "FRONTEND_HUNG",
        "WRONG_ANSWERS",
        "LATENCY_DRIFT",
        "SLO_BURN",
        "KV_EXHAUSTION_ETA",
    }
    assert set(ALERT_CODES) == design_codes | added
    assert all(isinstance(m, str) and m and "\n" not in m for m in ALERT_CODES.values())
    assert set(ALERT_CODES) >= schema.CONSOLE_ALERT_CODES


def test_actions_and_state_groups_are_defined_here_once() -> None:
    assert schema.ACTIONS == ("start", "stop", "restart")  # what POST /v1/engines/{id}/{action} accepts
    assert schema.SERVING_STATES < schema.ALIVE_STATES < set(ENGINE_STATES)
    assert set(ENGINE_STATES) - schema.ALIVE_STATES == {"stopped", "exited", "backoff", "failed"}
    assert {"ready", "degraded", "hung"} == schema.SERVING_STATES
    assert {"ACTIONS", "ALIVE_STATES", "SERVING_STATES", "ENGINE_STATES"} <= set(schema.__all__)


def test_stats_keys_in_contract_order() -> None:
    assert [f.name for f in dataclasses.fields(EngineStats)] == [
        "requests_running",
        "requests_waiting",
        "kv_cache_usage",
        "preemptions_per_s",
        "prompt_tokens_per_s",
        "generation_tokens_per_s",
        "ttft_p50_s",
        "ttft_p95_s",
        "ttft_p99_s",
        "itl_p95_s",
        "e2e_p95_s",
        "queue_time_p95_s",
        "request_errors_per_s",
        "prefix_cache_hit_rate",
        # additive keys, appended in the order they were added
        "itl_p50_s",
        "itl_p99_s",
        "e2e_p50_s",
        "e2e_p99_s",
        "queue_time_p50_s",
        "queue_time_p99_s",
        "preemptions_in_window",
        "requests_waiting_capacity",
        "requests_waiting_deferred",
        "rate_window_s",
        "percentile_window_s",
        "quantile_buckets",
    ]
    assert list(to_dict(EngineStats())) == [f.name for f in dataclasses.fields(EngineStats)]


def test_severity_order() -> None:
    assert [schema.severity_rank(s) for s in ("info", "warning", "critical")] == [0, 1, 2]
    assert schema.severity_rank(None) == schema.severity_rank("page") == -1
    assert schema.worst_severity(["info", "critical", "warning"]) == "critical"
    assert schema.worst_severity(["page", "info"]) == "info"
    assert schema.worst_severity([]) is None
    assert sorted(["critical", "info", "warning"], key=schema.severity_rank) == list(schema.SEVERITIES)


def test_wire_objects_are_frozen_and_slotted() -> None:
    snap = from_json(golden("minimal"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.seq = 2  # type: ignore[misc]
    assert not hasattr(snap, "__dict__")


def test_rfc3339() -> None:
    assert schema.rfc3339(0) == "1970-01-01T00:00:00.000Z"
    assert schema.parse_rfc3339("2025-06-03T03:12:45.250Z") == pytest.approx(1748920365.25)
    assert schema.parse_rfc3339(schema.rfc3339(1748920365.25)) == pytest.approx(1748920365.25)
    with pytest.raises(ValueError):
        schema.parse_rfc3339("2025-06-03T03:12:45")  # no offset: ambiguous


# --- property: any snapshot round-trips; unknown keys never matter ---------------------------------------

_FINITE = st.floats(allow_nan=False, allow_infinity=False)
_ANY_FLOAT = st.floats()  # NaN and +-Inf included


def _json_values(floats: st.SearchStrategy[float]) -> st.SearchStrategy[Any]:
    return st.recursive(
        st.none() | st.booleans() | st.integers() | floats | st.text(max_size=8),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
        max_leaves=8,
    )


def _strategy(hint: Any, floats: st.SearchStrategy[float]) -> st.SearchStrategy[Any]:
    """A strategy from the dataclass annotations (independent of the schema's generated decoders)."""
    if isinstance(hint, UnionType) or typing.get_origin(hint) is typing.Union:
        (inner,) = [a for a in typing.get_args(hint) if a is not NoneType]
        return st.none() | _strategy(inner, floats)
    scalars = {
        int: st.integers(),
        float: floats | st.integers(),
        str: st.text(max_size=12),
        bool: st.booleans(),
    }
    if hint in scalars:
        return scalars[hint]
    if dataclasses.is_dataclass(hint):
        return _builds(hint, floats)
    origin = typing.get_origin(hint)
    if origin is tuple:
        return st.lists(_strategy(typing.get_args(hint)[0], floats), max_size=3).map(tuple)
    if hint == dict[str, schema.QuantileBucket]:
        return _buckets_strategy(floats)
    if origin is dict:
        return st.dictionaries(st.text(max_size=6), _json_values(floats), max_size=3)
    raise TypeError(hint)


def _buckets_strategy(floats: st.SearchStrategy[float]) -> st.SearchStrategy[Any]:
    """``quantile_buckets``: valid entries (lower ≤ upper, upper None for +Inf) of known percentile keys; with
    non-finite ``floats`` also entries the writer must leave out (NaN, inverted bounds, unknown keys)."""
    bound = st.floats(min_value=-1e9, max_value=1e9) | st.integers(-(10**9), 10**9)
    valid = st.tuples(bound, st.none() | st.floats(min_value=0, max_value=1e9)).map(
        lambda p: (p[0], None if p[1] is None else p[0] + p[1])
    )
    keys = st.sampled_from(schema.PERCENTILE_KEYS)
    if floats is _FINITE:
        return st.dictionaries(keys, valid, max_size=4)
    wild = st.tuples(floats | st.integers(), st.none() | floats | st.integers())
    return st.dictionaries(keys | st.text(max_size=5), valid | wild, max_size=4)


def _builds(cls: type, floats: st.SearchStrategy[float] = _FINITE) -> st.SearchStrategy[Any]:
    hints = typing.get_type_hints(cls)
    kwargs = {
        f.name: st.deferred(lambda h=hints[f.name]: _strategy(h, floats))
        for f in dataclasses.fields(cls)
        if f.name != "schema"
    }
    if cls is HostSnapshot:
        kwargs["schema"] = st.sampled_from([SCHEMA, "llmconsole.snapshot/1.7"])
    return st.builds(cls, **kwargs)


def _noisy(data: Any, extra: Any, *, in_evidence: bool = False) -> Any:
    """``data`` with an unknown key added to every object (``in_evidence``: also inside evidence)."""
    if isinstance(data, dict):
        out = {
            k: _noisy(v, extra, in_evidence=in_evidence) if k != "evidence" or in_evidence else v
            for k, v in data.items()
        }
        out["zz_future_key"] = extra
        return out
    if isinstance(data, list):
        return [_noisy(v, extra, in_evidence=in_evidence) for v in data]
    return data


_PROP = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_PROP
@given(_builds(HostSnapshot))
def test_round_trip_property(snap: HostSnapshot) -> None:
    assert from_json(to_json(snap)) == snap
    assert from_dict(to_dict(snap)) == snap


@_PROP
@given(_builds(HostSnapshot), _json_values(_FINITE))
def test_unknown_keys_ignored_property(snap: HostSnapshot, extra: Any) -> None:
    # evidence is a free-form object: keys there are data and stay; everywhere else they are dropped
    data = to_dict(snap)
    assert from_dict(_noisy(data, extra)) == snap
    assert from_json(json.dumps(_noisy(data, extra))) == snap


@_PROP
@given(_builds(HostSnapshot, _ANY_FLOAT))
def test_non_finite_floats_never_reach_the_wire(snap: HostSnapshot) -> None:
    text = to_json(snap)
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-finite constant {c} on the wire"))
    # every finite number survives the wire; every non-finite one arrives as None
    assert to_dict(from_json(text)) == to_dict(snap)
    assert not any(isinstance(x, float) and not math.isfinite(x) for x in _leaves(to_dict(snap)))


def _leaves(data: Any) -> list[Any]:
    if isinstance(data, dict):
        return [x for v in data.values() for x in _leaves(v)]
    if isinstance(data, list):
        return [x for v in data for x in _leaves(v)]
    return [data]


_FIELD_NAMES = sorted({f.name for cls in schema.WIRE_TYPES for f in dataclasses.fields(cls)})
_wire_key = st.sampled_from(_FIELD_NAMES) | st.text(max_size=4)
_garbage = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_wire_key, inner, max_size=6),
    max_leaves=25,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(_wire_key, _garbage, max_size=8),
    st.sampled_from([SCHEMA, "llmconsole.snapshot/1.1", None]),
)
def test_garbage_only_raises_schema_error(doc: dict[str, Any], version: str | None) -> None:
    if version is not None:
        doc["schema"] = version
    try:
        snap = from_dict(doc)
    except SchemaError as e:
        assert "\n" not in str(e)
    else:  # whatever loads re-encodes to the same wire data (NaN there has become null)
        assert to_dict(from_dict(to_dict(snap))) == to_dict(snap)


def test_stats_are_live() -> None:
    snap = from_json(golden("full"))
    engine = snap.engines[0]
    assert engine.stats_age_s == 0.21
    assert schema.stats_are_live(engine, snap.interval_s)
    old = dataclasses.replace(engine, stats_age_s=3.5)
    assert not schema.stats_are_live(old, 1.0)  # older than 3 intervals
    assert schema.stats_are_live(old, 2.0)  # within 3 intervals of 2 s
    assert schema.stats_are_live(old, 1.0, stale_after_s=5.0)
    assert not schema.stats_are_live(old, None)  # unknown interval: 3 s
    assert not schema.stats_are_live(dataclasses.replace(engine, stats_age_s=None), 1.0)
    assert not schema.stats_are_live(dataclasses.replace(engine, stats=None), 1.0)


# --- stats.quantile_buckets: the bucket each percentile was interpolated in --------------------------------


def test_quantile_buckets_golden() -> None:
    """An SGLang engine under light load: every TTFT below SGLang's first bound (0.1 s), so p95 reads 95 ms;
    the bucket says it is anywhere in [0, 100 ms]. e2e p99 lies in the open +Inf bucket (upper null)."""
    text = golden("quantiles")
    snap = from_json(text)
    assert to_dict(snap) == json.loads(text) and from_json(to_json(snap)) == snap
    stats = snap.engines[0].stats
    assert stats is not None and stats.ttft_p95_s == 0.095
    buckets = stats.quantile_buckets
    assert buckets is not None and set(buckets) == set(schema.PERCENTILE_KEYS)
    assert buckets["ttft_p95_s"] == (0.0, 0.1) and buckets["e2e_p99_s"] == (2400.0, None)
    assert buckets["queue_time_p50_s"] == (0.0, 0.0)  # a first bound of 0: the percentile is that point
    assert all(isinstance(pair, tuple) for pair in buckets.values())


def test_quantile_buckets_older_agent_reads_none_and_writes_null() -> None:
    data = json.loads(golden("quantiles"))
    del data["engines"][0]["stats"]["quantile_buckets"]  # an agent from before the key
    stats = from_dict(data).engines[0].stats
    assert stats is not None and stats.quantile_buckets is None and stats.ttft_p95_s == 0.095
    assert to_dict(stats)["quantile_buckets"] is None
    assert from_dict({"quantile_buckets": None}, EngineStats).quantile_buckets is None
    assert (
        from_dict({"quantile_buckets": {}}, EngineStats).quantile_buckets == {}
    )  # reported: no bucket known


def test_percentile_keys_are_the_percentile_stats() -> None:
    percentiles = [f.name for f in dataclasses.fields(EngineStats) if "_p5" in f.name or "_p9" in f.name]
    assert tuple(percentiles) == schema.PERCENTILE_KEYS
    assert len(schema.PERCENTILE_KEYS) == 12 and "e2e_p99_s" in schema.PERCENTILE_KEYS


_QB = ("engines", 0, "stats", "quantile_buckets")
HOSTILE_BUCKETS = [
    ([[0, 0.1]], "engines[0].stats.quantile_buckets: expected object or null, got [[0, 0.1]]"),
    ("≤100ms", "engines[0].stats.quantile_buckets: expected object or null, got '≤100ms'"),
    (
        {"ttft_p95_s": 0.1},
        "engines[0].stats.quantile_buckets.ttft_p95_s: expected [lower, upper] or null, got 0.1",
    ),
    (
        {"ttft_p95_s": [0, 0.1, 0.2]},
        "engines[0].stats.quantile_buckets.ttft_p95_s: expected [lower, upper] or null, got [0, 0.1, 0.2]",
    ),
    (
        {"ttft_p95_s": {"lower": 0, "upper": 0.1}},
        "engines[0].stats.quantile_buckets.ttft_p95_s: expected [lower, upper] or null, got "
        "{'lower': 0, 'upper': 0.1}",
    ),
    (
        {"itl_p50_s": ["0", 0.1]},
        "engines[0].stats.quantile_buckets.itl_p50_s[0]: expected finite number, got '0'",
    ),
    (
        {"itl_p50_s": [True, 0.1]},
        "engines[0].stats.quantile_buckets.itl_p50_s[0]: expected finite number, got True",
    ),
    (
        {"itl_p50_s": [None, 0.1]},
        "engines[0].stats.quantile_buckets.itl_p50_s[0]: expected finite number, got None",
    ),
    (
        {"e2e_p99_s": [0.1, [0.2]]},
        "engines[0].stats.quantile_buckets.e2e_p99_s[1]: expected number or null, got [0.2]",
    ),
    (
        {"ttft_p99_s": [0.2, 0.1]},
        "engines[0].stats.quantile_buckets.ttft_p99_s: lower bound 0.2 above upper bound 0.1",
    ),
]


@pytest.mark.parametrize(
    ("value", "message"), HOSTILE_BUCKETS, ids=[m.split(": ", 1)[1] for _, m in HOSTILE_BUCKETS]
)
def test_hostile_quantile_buckets_are_one_line_errors_naming_the_path(value: Any, message: str) -> None:
    data = json.loads(golden("quantiles"))
    _set(data, _QB, value)
    with pytest.raises(SchemaError) as info:
        from_dict(data)
    assert str(info.value) == message and "\n" not in str(info.value)
    with pytest.raises(SchemaError) as again:  # the same through the JSON text
        from_json(json.dumps(data))
    assert str(again.value) == message


def test_quantile_bucket_nan_and_infinity_read_by_the_reading_rules() -> None:
    """``NaN``/``Infinity`` read as null: an upper bound of Infinity is the open bucket; a lower bound that is
    not a finite number is an error."""

    def snapshot(buckets: str) -> str:
        engine = '{"id":"e","kind":"sglang","state":"ready","stats":{"quantile_buckets":' + buckets + "}}"
        return (
            '{"schema":"llmconsole.snapshot/1","host":"h","seq":1,"taken_at":"t","engines":[' + engine + "]}"
        )

    open_upper = from_json(snapshot('{"e2e_p99_s":[600,Infinity]}'))
    assert open_upper.engines[0].stats.quantile_buckets == {"e2e_p99_s": (600, None)}  # type: ignore[union-attr]
    for lower in ("NaN", "-Infinity"):
        with pytest.raises(SchemaError, match=r"ttft_p95_s\[0\]: expected finite number, got None$"):
            from_json(snapshot('{"ttft_p95_s":[' + lower + ",0.1]}"))
    # from Python data (no JSON parser in between) the same rules hold
    assert from_dict({"quantile_buckets": {"ttft_p95_s": [0.0, math.inf]}}, EngineStats).quantile_buckets == {
        "ttft_p95_s": (0.0, None)
    }
    with pytest.raises(SchemaError, match=r"expected finite number, got nan$"):
        from_dict({"quantile_buckets": {"ttft_p95_s": [math.nan, 0.1]}}, EngineStats)


def test_a_huge_quantile_buckets_object_costs_no_more_than_a_small_one() -> None:
    """10^6 unknown entries: ignored without being looked at (the reader reads the 12 known keys only)."""
    import timeit

    huge: dict[str, Any] = dict.fromkeys(map(str, range(1_000_000)), [0, 1])
    huge["ttft_p95_s"] = [0, 0.1]
    stats = from_dict({"quantile_buckets": huge}, EngineStats)
    assert stats.quantile_buckets == {"ttft_p95_s": (0, 0.1)}
    # the best of 5 runs (a busy machine may pause any one): far below one pass over 10^6 entries (~20 ms+)
    best = min(timeit.repeat(lambda: from_dict({"quantile_buckets": huge}, EngineStats), number=1, repeat=5))
    assert best < 0.005, best
    huge["ttft_p95_s"] = [1, 0]  # a bad known entry among them is still found
    with pytest.raises(
        SchemaError, match=r"^quantile_buckets\.ttft_p95_s: lower bound 1 above upper bound 0$"
    ):
        from_dict({"quantile_buckets": huge}, EngineStats)


def test_the_writer_never_writes_a_bucket_the_reader_refuses() -> None:
    stats = EngineStats(
        ttft_p95_s=0.095,
        quantile_buckets={
            "ttft_p95_s": (0.0, 0.1),
            "ttft_p99_s": (0.5, math.inf),  # +Inf as a float: written as null
            "ttft_p50_s": (0.2, 0.1),  # inverted: left out
            "itl_p50_s": (math.nan, 0.1),  # NaN lower: left out
            "itl_p95_s": (0.1, math.nan),  # NaN upper: left out (null would mean the open bucket)
            "tpot_p95_s": (0.0, 0.1),  # not a key of this schema: left out
        },
    )
    out = to_dict(stats)["quantile_buckets"]
    assert out == {"ttft_p95_s": [0.0, 0.1], "ttft_p99_s": [0.5, None]}
    assert list(out) == [k for k in schema.PERCENTILE_KEYS if k in out]  # wire order
    assert from_dict(to_dict(stats), EngineStats).quantile_buckets == {
        "ttft_p95_s": (0.0, 0.1),
        "ttft_p99_s": (0.5, None),
    }
