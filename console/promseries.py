"""The agents' ``llmconsole_*`` series, as a Prometheus query API returns them, turned into snapshots.

Pure: no I/O. :func:`read_fleet` builds one :class:`~agents.schema.HostSnapshot` per host from the
instant vectors of one refresh (the families of ``agents/exporter.py``, named in :mod:`console.promnames`
and checked against it by the tests). Split by concern, and re-exported here: the names and notes
(:mod:`console.promnames`), the recent past from a range matrix (:func:`read_history`,
:mod:`console.promhistory`) and the alerts a Prometheus evaluates (:func:`rule_alerts`,
:mod:`console.promalerts`).

Reading rules: a value the series do not have is None, never 0; NaN and ±Inf are read as missing and
counted; a series without ``host`` (or, for engine families, ``engine``) is left out and counted; a second
series for the same value (two targets reporting one host) is left out and counted. Each count becomes
part of the one line the source shows. Not exported, so None/empty here: pids, health and canary
results, last exits, events, GPU processes, alert evidence and ``since`` (rule alerts carry their
``activeAt``). The agent exports an engine's stats only while they are live, so an engine with stats
series gets ``stats_age_s`` 0 (relative to its snapshot, whose age comes from
``llmconsole_snapshot_timestamp_seconds``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from agents.schema import (
    SCHEMA,
    Alert,
    EngineSnapshot,
    EngineStats,
    GpuInfo,
    HostSnapshot,
    HostStats,
    rfc3339,
)
from console.promalerts import rule_alerts
from console.promhistory import read_history
from console.promnames import (
    ENGINE_OTHER,
    ENGINE_STATS,
    GPU_VALUES,
    GRAPHED,
    HOST_INFO,
    HOST_VALUES,
    INT_FIELDS,
    Notes,
    P,
    Series,
    engine_value_names,
    family,
    gpu_names,
    history_names,
    host_names,
    name_regex,
    show_series,
)


def _value(v: float, labels: Mapping[str, str], notes: Notes) -> float | None:
    if math.isfinite(v):
        return v
    notes.add("NaN/Inf values read as missing", show_series(labels))
    return None


def _typed(key: str, v: float | None) -> float | int | None:
    if v is None or key not in INT_FIELDS:
        return v
    return int(v) if abs(v) < 2**63 else None


def _constructor(cls: type) -> Callable[..., Any]:
    """``cls(**kw)`` for a frozen, slotted wire dataclass, without its ``__init__``'s ``object.__setattr__``
    per field (agents/schema/codec.py builds its decoders the same way): the slots are set through their
    descriptors. Same keyword-only signature and defaults; a refresh builds thousands of these."""
    scope: dict[str, Any] = {"_new": object.__new__, "_cls": cls, "_MISSING": MISSING}
    params, body = [], []
    for i, f in enumerate(fields(cls)):
        scope[f"_s{i}"] = getattr(cls, f.name).__set__
        if f.default is not MISSING:
            scope[f"_d{i}"] = f.default
            params.append(f"{f.name}=_d{i}")
        elif f.default_factory is not MISSING:
            scope[f"_f{i}"] = f.default_factory
            params.append(f"{f.name}=_MISSING")
            body.append(f"    if {f.name} is _MISSING:\n        {f.name} = _f{i}()")
        else:
            params.append(f.name)
        body.append(f"    _s{i}(o, {f.name})")
    src = f"def make(*, {', '.join(params)}):\n    o = _new(_cls)\n" + "\n".join(body) + "\n    return o\n"
    exec(compile(src, f"<promseries {cls.__name__}>", "exec"), scope)  # noqa: S102 - built from field names only
    return scope["make"]


_new_stats = _constructor(EngineStats)
_new_engine = _constructor(EngineSnapshot)
_new_gpu = _constructor(GpuInfo)


@dataclass
class _Host:
    labels: dict[str, str] = field(default_factory=dict)  # host_info's
    values: dict[str, float | None] = field(default_factory=dict)
    engines: dict[str, _Engine] = field(default_factory=dict)
    gpus: dict[int, dict[str, Any]] = field(default_factory=dict)
    alerts: list[tuple[str, Alert]] = field(default_factory=list)  # (engine or "", alert)
    instance: str | None = None


@dataclass
class _Engine:
    info: dict[str, str] | None = None
    state: str | None = None
    kind: str | None = None
    model: str | None = None
    values: dict[str, float | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FleetRead:
    """One refresh read: snapshots by host, each host's data age (the server's evaluation time minus
    ``llmconsole_snapshot_timestamp_seconds``), ``instance`` -> host, and what was wrong."""

    snapshots: dict[str, HostSnapshot]
    ages: dict[str, float]
    instances: dict[str, str]
    notes: list[str]


def read_fleet(
    at: float | None,
    hosts: Sequence[Series],
    engines: Sequence[Series],
    values: Sequence[Series],
    gpus: Sequence[Series],
    alerts: Sequence[Series],
) -> FleetRead:
    """Snapshots from one refresh's instant vectors (``at``: the server's evaluation time, Unix s).
    ``engines`` holds ``llmconsole_engine_info`` and ``llmconsole_engine_state == 1`` (told apart by the
    ``state`` label, as servers that drop ``__name__`` on comparisons still keep it)."""
    notes = Notes()
    fleet: dict[str, _Host] = {}

    def host_of(labels: Mapping[str, str]) -> _Host | None:
        name = labels.get("host")
        if not name:
            notes.add("series without a host label ignored", show_series(labels))
            return None
        h = fleet.get(name)
        if h is None:
            h = fleet[name] = _Host()
        if h.instance is None and labels.get("instance"):
            h.instance = labels["instance"]
        return h

    def put(target: dict[str, Any], key: str, value: float | None, labels: Mapping[str, str]) -> None:
        if key in target:
            notes.add("duplicate series ignored (two targets report one host?)", show_series(labels))
            return
        target[key] = value

    for labels, v in hosts:
        h = host_of(labels)
        fam = family(labels)
        if h is None or fam is None:
            continue
        if fam == HOST_INFO:
            h.labels = dict(labels)
        elif fam in HOST_VALUES:
            put(h.values, HOST_VALUES[fam], _value(v, labels, notes), labels)
    info_name = P + "engine_info"
    for (
        labels,
        _v,
    ) in engines:  # one info and one state series per engine: lookups inlined (hot at fleet scale)
        get = labels.get
        h = fleet.get(get("host") or "") or host_of(labels)
        if h is None:
            continue
        e = h.engines.get(get("engine") or "") or _engine_of(h, labels, notes)
        if e is None:
            continue
        if e.kind is None:
            e.kind = get("kind") or None
        if e.model is None:
            e.model = get("model") or None
        state = get("state")
        if state is not None:
            if e.state is not None:
                notes.add("duplicate series ignored (two targets report one host?)", show_series(labels))
            e.state = state
        elif get("__name__") == info_name or "model_path" in labels:
            e.info = labels
    _engine_values(fleet, values, notes, host_of)
    _gpu_values(fleet, gpus, notes, host_of)
    for labels, _v in alerts:
        h = host_of(labels)
        if h is None:
            continue
        code = labels.get("code")
        if not code:
            notes.add("alert series without a code ignored", show_series(labels))
            continue
        alert = Alert(
            code=code, severity=labels.get("severity") or "warning", summary=labels.get("summary", "")
        )
        h.alerts.append((labels.get("engine", ""), alert))
    return _snapshots(fleet, at, notes)


_ENGINE_FAMILIES = frozenset((*ENGINE_STATS, *ENGINE_OTHER))
_ENGINE_PREFIX = P + "engine_"
_ENGINE_FAMILY_OF = {_ENGINE_PREFIX + f: f for f in _ENGINE_FAMILIES}  # full name -> suffix
_GPU_KEY_OF = {f"{P}gpu_{s}": key for s, key in GPU_VALUES.items()}  # full name -> GpuInfo field
_DUPLICATE = "duplicate series ignored (two targets report one host?)"
_NOT_FINITE = "NaN/Inf values read as missing"


def _engine_of(h: _Host, labels: Mapping[str, str], notes: Notes) -> _Engine | None:
    eid = labels.get("engine")
    if not eid:
        notes.add("engine series without an engine label ignored", show_series(labels))
        return None
    e = h.engines.get(eid)
    if e is None:
        e = h.engines[eid] = _Engine()
    return e


def _engine_values(
    fleet: dict[str, _Host],
    values: Sequence[Series],
    notes: Notes,
    host_of: Callable[[Mapping[str, str]], _Host | None],
) -> None:
    """The engine values, the bulk of a refresh (nine per engine): one tight loop, one lookup by (host,
    engine) per series and no calls unless something is wrong (``v - v`` is 0 only for a finite v)."""
    flat = {(host, eid): e for host, h in fleet.items() for eid, e in h.engines.items()}
    family_of = _ENGINE_FAMILY_OF
    for labels, v in values:
        get = labels.get
        fam = family_of.get(get("__name__"))
        if fam is None:
            continue
        key = (get("host"), get("engine"))
        e = flat.get(key)
        if e is None:
            h = fleet.get(key[0] or "") or host_of(labels)
            e = _engine_of(h, labels, notes) if h is not None else None
            if e is None:
                continue
            flat[key] = e
        got = e.values
        if fam in got:
            notes.add(_DUPLICATE, show_series(labels))
        elif v - v == 0.0:
            got[fam] = v
        else:
            notes.add(_NOT_FINITE, show_series(labels))
            got[fam] = None


def _gpu_values(
    fleet: dict[str, _Host],
    gpus: Sequence[Series],
    notes: Notes,
    host_of: Callable[[Mapping[str, str]], _Host | None],
) -> None:
    """The GPU values (a few per GPU): one lookup by (host, gpu label) per series; the GPU's index is
    parsed once per GPU."""
    flat: dict[tuple[str | None, str | None], dict[str, Any]] = {}
    key_of = _GPU_KEY_OF
    for labels, v in gpus:
        get = labels.get
        key = key_of.get(get("__name__"))
        where = (get("host"), get("gpu"))
        g = flat.get(where)
        if g is None:
            h = fleet.get(where[0] or "") or host_of(labels)
            if h is None or key is None:
                continue
            index = _int_label(where[1])
            if index is None:
                notes.add("GPU series without a numeric gpu label ignored", show_series(labels))
                continue
            g = h.gpus.get(index)
            if g is None:
                g = h.gpus[index] = {"uuid": get("uuid") or None, "name": get("name") or None}
            flat[where] = g
        if key is None:
            continue
        if key in g:
            notes.add(_DUPLICATE, show_series(labels))
        elif v - v == 0.0:
            g[key] = (int(v) if abs(v) < 2**63 else None) if key in INT_FIELDS else v
        else:
            notes.add(_NOT_FINITE, show_series(labels))
            g[key] = None


def _int_label(text: str | None) -> int | None:
    try:
        return int(text) if text is not None and text.strip().isdigit() else None
    except ValueError:
        return None


def _snapshots(fleet: Mapping[str, _Host], at: float | None, notes: Notes) -> FleetRead:
    snaps: dict[str, HostSnapshot] = {}
    ages: dict[str, float] = {}
    instances: dict[str, str] = {}
    for name, h in fleet.items():
        if h.instance:
            instances[h.instance] = name
        seq, taken = h.values.get("seq"), h.values.get("taken_at")
        if seq is None or taken is None:
            missing = "llmconsole_snapshot_seq" if seq is None else "llmconsole_snapshot_timestamp_seconds"
            notes.add(f"hosts without {missing} left out", name)
            continue
        snap = _host_snapshot(name, h, int(seq), taken, notes)
        if snap is None:
            continue
        snaps[name] = snap
        ages[name] = max(0.0, at - taken) if at is not None else 0.0
    return FleetRead(snaps, ages, instances, notes.lines())


def _host_snapshot(name: str, h: _Host, seq: int, taken: float, notes: Notes) -> HostSnapshot | None:
    try:
        taken_at = rfc3339(taken)
    except (ValueError, OverflowError, OSError):
        notes.add("hosts with an impossible snapshot timestamp left out", name)
        return None
    hv = h.values
    stats = None
    if any(hv.get(k) is not None for k in ("cpu_pct", "mem_used_bytes", "mem_total_bytes")):
        stats = HostStats(
            cpu_pct=hv.get("cpu_pct"),
            mem_used_bytes=_typed("mem_used_bytes", hv.get("mem_used_bytes")),
            mem_total_bytes=_typed("mem_total_bytes", hv.get("mem_total_bytes")),
        )
    by_engine: dict[str, list[Alert]] = {}
    host_alerts: list[Alert] = []
    for eid, a in h.alerts:
        (by_engine.setdefault(eid, []) if eid in h.engines else host_alerts).append(a)
    engines = []
    for eid, e in sorted(h.engines.items()):
        if e.state is None:
            notes.add("engines without llmconsole_engine_state left out", f"{name}/{eid}")
            continue
        engines.append(_engine(eid, e, tuple(by_engine.get(eid, ()))))
    gpus = tuple(_new_gpu(index=i, **g) for i, g in sorted(h.gpus.items()))
    info = h.labels
    return HostSnapshot(
        schema=SCHEMA,
        host=name,
        agent_version=info.get("agent_version") or None,
        seq=seq,
        taken_at=taken_at,
        interval_s=None,
        gpu_source=info.get("gpu_source") or None,
        host_stats=stats,
        gpus=gpus,
        engines=tuple(engines),
        alerts=tuple(host_alerts),
        boot_id=info.get("boot_id") or None,
    )


@functools.lru_cache(maxsize=4096)
def _gpu_list(text: str) -> tuple[int, ...]:
    """``"0,1"`` -> (0, 1); most engines of a fleet share a handful of these texts."""
    return tuple(i for i in (_int_label(x) for x in text.split(",")) if i is not None)


_NO_INFO: dict[str, str] = {}


def _engine(eid: str, e: _Engine, alerts: tuple[Alert, ...]) -> EngineSnapshot:
    info = e.info or _NO_INFO
    v = e.values
    stats_of = ENGINE_STATS
    given = {stats_of[f]: x for f, x in v.items() if x is not None and f in stats_of}  # the rest: None
    restarts, rss = _typed("restarts", v.get("restarts_total")), _typed("rss_bytes", v.get("rss_bytes"))
    return _new_engine(
        id=eid,
        kind=e.kind or info.get("kind") or "unknown",
        model=info.get("model_path") or e.model,
        state=e.state or "unknown",
        port=_port(info.get("port")),
        gpus=_gpu_list(info.get("gpus", "")),
        restarts=restarts,
        uptime_s=v.get("uptime_seconds"),
        stats_age_s=0.0 if given else None,
        stats=_new_stats(**given) if given else None,
        alerts=alerts,
        simulated=info.get("simulated") == "true",
        served_model_name=info.get("served_model_name") or None,
        rss_bytes=rss,
        managed=info.get("managed") != "false",  # agents before the label: managed
    )


@functools.lru_cache(maxsize=4096)
def _port(text: str | None) -> int | None:
    return _int_label(text)


__all__ = [
    "ENGINE_OTHER",
    "ENGINE_STATS",
    "GPU_VALUES",
    "GRAPHED",
    "HOST_VALUES",
    "FleetRead",
    "Notes",
    "engine_value_names",
    "gpu_names",
    "history_names",
    "host_names",
    "name_regex",
    "read_fleet",
    "read_history",
    "rule_alerts",
    "show_series",
]
