"""The agents' ``llmconsole_*`` series, as a Prometheus query API returns them, turned into snapshots.

Pure: no I/O. :func:`read_fleet` builds one :class:`~agents.schema.HostSnapshot` per host from the
instant vectors of one refresh (the families of ``agents/exporter.py``; the name tables below are checked
against it by the tests), :func:`read_history` builds the recent past of some hosts from a range matrix,
and :func:`rule_alerts` adds the alerts a Prometheus evaluates (``/api/v1/alerts``) to the agents' own.

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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any

from agents.schema import (
    SCHEMA,
    Alert,
    EngineSnapshot,
    EngineStats,
    GpuInfo,
    HostSnapshot,
    HostStats,
    parse_rfc3339,
    rfc3339,
)

P = "llmconsole_"
# Host families: metric -> HostSnapshot/HostStats field.
HOST_VALUES = {
    "snapshot_seq": "seq",
    "snapshot_timestamp_seconds": "taken_at",
    "host_cpu_percent": "cpu_pct",
    "host_memory_used_bytes": "mem_used_bytes",
    "host_memory_total_bytes": "mem_total_bytes",
}
HOST_INFO = "host_info"
# Engine families beyond info/state: metric suffix (after llmconsole_engine_) -> EngineStats key.
ENGINE_STATS = {
    "requests_running": "requests_running",
    "requests_waiting": "requests_waiting",
    "requests_waiting_capacity": "requests_waiting_capacity",
    "requests_waiting_deferred": "requests_waiting_deferred",
    "kv_cache_usage_ratio": "kv_cache_usage",
    "prompt_tokens_per_second": "prompt_tokens_per_s",
    "generation_tokens_per_second": "generation_tokens_per_s",
    "preemptions_per_second": "preemptions_per_s",
    "request_errors_per_second": "request_errors_per_s",
    "prefix_cache_hit_ratio": "prefix_cache_hit_rate",
    "ttft_p50_seconds": "ttft_p50_s",
    "ttft_p95_seconds": "ttft_p95_s",
    "ttft_p99_seconds": "ttft_p99_s",
    "itl_p95_seconds": "itl_p95_s",
    "e2e_p95_seconds": "e2e_p95_s",
    "queue_time_p95_seconds": "queue_time_p95_s",
}
ENGINE_OTHER = {"restarts_total": "restarts", "rss_bytes": "rss_bytes", "uptime_seconds": "uptime_s"}
GPU_VALUES = {
    "memory_used_bytes": "mem_used_bytes",
    "memory_total_bytes": "mem_total_bytes",
    "utilization_percent": "util_pct",
    "temperature_celsius": "temp_c",
    "power_watts": "power_w",
    "power_limit_watts": "power_limit_w",
    "ecc_uncorrected_errors": "ecc_uncorrected",
}
INT_FIELDS = frozenset({"seq", "mem_used_bytes", "mem_total_bytes", "ecc_uncorrected", "restarts", "rss_bytes"})
ALERTS = "alerts_active"
# The stats the console graphs (console.state.METRICS), by exported suffix: what a backfill reads.
GRAPHED = ("requests_running", "requests_waiting", "kv_cache_usage_ratio", "prompt_tokens_per_second",
           "generation_tokens_per_second", "ttft_p50_seconds", "ttft_p95_seconds")  # fmt: skip

Series = tuple[Mapping[str, str], float]  # labels (with __name__ where the server keeps it), value


def name_regex(names: Iterable[str]) -> str:
    """``llmconsole_(a|b|c)``: one ``__name__`` regex for several families (one query, not one each)."""
    return P + "(" + "|".join(names) + ")"


# What the console shows of every host at each refresh (fleet table, graphs, engine header, GPU memory and
# utilization); ``full`` reads every exported family (``status``, scripts).
LEAN_HOST = ("snapshot_seq", "snapshot_timestamp_seconds")
LEAN_ENGINE = (*GRAPHED, "restarts_total", "uptime_seconds")
LEAN_GPU = ("memory_used_bytes", "memory_total_bytes", "utilization_percent")


def host_names(full: bool = True) -> list[str]:
    return [HOST_INFO, *(HOST_VALUES if full else LEAN_HOST)]


def engine_value_names(full: bool = True) -> list[str]:
    return [f"engine_{s}" for s in ((*ENGINE_STATS, *ENGINE_OTHER) if full else LEAN_ENGINE)]


def gpu_names(full: bool = True) -> list[str]:
    return [f"gpu_{s}" for s in (GPU_VALUES if full else LEAN_GPU)]


def history_names() -> list[str]:
    return ["snapshot_seq", "snapshot_timestamp_seconds", *(f"engine_{s}" for s in GRAPHED)]


@dataclass
class Notes:
    """What was wrong with the series of one refresh, counted by kind with one example each."""

    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)

    def add(self, kind: str, example: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.examples.setdefault(kind, example)

    def lines(self) -> list[str]:
        return [f"{n} {kind} (e.g. {self.examples[kind]})" for kind, n in self.counts.items()]


def show_series(labels: Mapping[str, str], limit: int = 120) -> str:
    name = labels.get("__name__", "")
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    text = f"{name}{{{inner}}}"
    return text if len(text) <= limit else text[: limit - 1] + "…"


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


def _family(labels: Mapping[str, str], prefix: str) -> str | None:
    name = labels.get("__name__")
    return name[len(prefix):] if isinstance(name, str) and name.startswith(prefix) else None


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
        fam = _family(labels, P)
        if h is None or fam is None:
            continue
        if fam == HOST_INFO:
            h.labels = dict(labels)
        elif fam in HOST_VALUES:
            put(h.values, HOST_VALUES[fam], _value(v, labels, notes), labels)
    info_name = P + "engine_info"
    for labels, _v in engines:  # one info and one state series per engine: lookups inlined (hot at fleet scale)
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
    _gpu_values(fleet, gpus, notes, host_of, put)
    for labels, _v in alerts:
        h = host_of(labels)
        if h is None:
            continue
        code = labels.get("code")
        if not code:
            notes.add("alert series without a code ignored", show_series(labels))
            continue
        alert = Alert(code=code, severity=labels.get("severity") or "warning", summary=labels.get("summary", ""))
        h.alerts.append((labels.get("engine", ""), alert))
    return _snapshots(fleet, at, notes)


_ENGINE_FAMILIES = frozenset((*ENGINE_STATS, *ENGINE_OTHER))
_ENGINE_PREFIX = P + "engine_"


def _engine_of(h: _Host, labels: Mapping[str, str], notes: Notes) -> _Engine | None:
    eid = labels.get("engine")
    if not eid:
        notes.add("engine series without an engine label ignored", show_series(labels))
        return None
    e = h.engines.get(eid)
    if e is None:
        e = h.engines[eid] = _Engine()
    return e


def _engine_values(fleet: dict[str, _Host], values: Sequence[Series], notes: Notes,
                   host_of: Callable[[Mapping[str, str]], _Host | None]) -> None:  # fmt: skip
    """The engine values, the bulk of a refresh (ten per engine): one tight loop, no calls per series
    beyond dict lookups unless something is wrong."""
    isfinite, cut = math.isfinite, len(_ENGINE_PREFIX)
    for labels, v in values:
        get = labels.get
        h = fleet.get(get("host") or "") or host_of(labels)
        if h is None:
            continue
        name = get("__name__") or ""
        fam = name[cut:] if name.startswith(_ENGINE_PREFIX) else ""
        if fam not in _ENGINE_FAMILIES:
            continue
        e = h.engines.get(get("engine") or "") or _engine_of(h, labels, notes)
        if e is None:
            continue
        if fam in e.values:
            notes.add("duplicate series ignored (two targets report one host?)", show_series(labels))
            continue
        if not isfinite(v):
            notes.add("NaN/Inf values read as missing", show_series(labels))
            e.values[fam] = None
            continue
        e.values[fam] = v


def _gpu_values(fleet: dict[str, _Host], gpus: Sequence[Series], notes: Notes,
                host_of: Callable[[Mapping[str, str]], _Host | None],
                put: Callable[[dict[str, Any], str, float | None, Mapping[str, str]], None]) -> None:  # fmt: skip
    """The GPU values (a few per GPU): lookups inlined, GPU indexes parsed once per distinct label."""
    cut = len(P + "gpu_")
    indexes: dict[str | None, int | None] = {}
    for labels, v in gpus:
        get = labels.get
        h = fleet.get(get("host") or "") or host_of(labels)
        name = get("__name__") or ""
        key = GPU_VALUES.get(name[cut:]) if name.startswith(P + "gpu_") else None
        if h is None or key is None:
            continue
        text = get("gpu")
        index = indexes[text] if text in indexes else indexes.setdefault(text, _int_label(text))
        if index is None:
            notes.add("GPU series without a numeric gpu label ignored", show_series(labels))
            continue
        g = h.gpus.get(index)
        if g is None:
            g = h.gpus[index] = {"uuid": get("uuid") or None, "name": get("name") or None}
        put(g, key, _typed(key, _value(v, labels, notes)), labels)


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
        stats = HostStats(cpu_pct=hv.get("cpu_pct"), mem_used_bytes=_typed("mem_used_bytes", hv.get("mem_used_bytes")),
                          mem_total_bytes=_typed("mem_total_bytes", hv.get("mem_total_bytes")))  # fmt: skip
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
        schema=SCHEMA, host=name, agent_version=info.get("agent_version") or None, seq=seq, taken_at=taken_at,
        interval_s=None, gpu_source=info.get("gpu_source") or None, host_stats=stats, gpus=gpus,
        engines=tuple(engines), alerts=tuple(host_alerts), boot_id=info.get("boot_id") or None,
    )  # fmt: skip


@functools.lru_cache(maxsize=4096)
def _gpu_list(text: str) -> tuple[int, ...]:
    """``"0,1"`` -> (0, 1); most engines of a fleet share a handful of these texts."""
    return tuple(i for i in (_int_label(x) for x in text.split(",")) if i is not None)


def _engine(eid: str, e: _Engine, alerts: tuple[Alert, ...]) -> EngineSnapshot:
    info = e.info or {}
    v = e.values
    has_stats = any(v.get(k) is not None for k in ENGINE_STATS)
    stats = _new_stats(**{key: v.get(fam) for fam, key in ENGINE_STATS.items()}) if has_stats else None
    gpus = _gpu_list(info.get("gpus", ""))
    restarts, rss = _typed("restarts", v.get("restarts_total")), _typed("rss_bytes", v.get("rss_bytes"))
    return _new_engine(
        id=eid, kind=e.kind or info.get("kind") or "unknown", model=info.get("model_path") or e.model,
        state=e.state or "unknown", port=_int_label(info.get("port")), gpus=gpus,
        restarts=restarts, uptime_s=v.get("uptime_seconds"),
        stats_age_s=0.0 if has_stats else None, stats=stats, alerts=alerts,
        simulated=info.get("simulated") == "true", served_model_name=info.get("served_model_name") or None,
        rss_bytes=rss, managed=info.get("managed") != "false",  # agents before the label: managed
    )  # fmt: skip


# --- the recent past, for the graphs -----------------------------------------------------------------

Matrix = Sequence[tuple[Mapping[str, str], Sequence[tuple[float, float]]]]


def read_history(matrix: Matrix, wanted: set[str] | None = None) -> dict[str, list[HostSnapshot]]:
    """Per host, oldest first, one snapshot per distinct ``llmconsole_snapshot_seq`` in a range matrix of
    :func:`history_names` (engines carry only the graphed stats). ``wanted``: only these hosts."""
    seqs: dict[str, dict[float, float]] = {}
    taken: dict[str, dict[float, float]] = {}
    stats: dict[str, dict[tuple[str, str], dict[float, dict[str, float]]]] = {}
    kinds: dict[tuple[str, str], str] = {}
    for labels, points in matrix:
        host = labels.get("host")
        if not host or (wanted is not None and host not in wanted):
            continue
        fam = _family(labels, P)
        if fam == "snapshot_seq":
            seqs.setdefault(host, {}).update((t, v) for t, v in points if math.isfinite(v))
        elif fam == "snapshot_timestamp_seconds":
            taken.setdefault(host, {}).update((t, v) for t, v in points if math.isfinite(v))
        elif fam is not None and fam.startswith("engine_") and fam[7:] in GRAPHED and labels.get("engine"):
            key = ENGINE_STATS[fam[7:]]
            eng = (labels.get("kind") or "unknown", labels["engine"])
            kinds[(host, eng[1])] = eng[0]
            per_t = stats.setdefault(host, {}).setdefault(eng, {})
            for t, v in points:
                if math.isfinite(v):
                    per_t.setdefault(t, {})[key] = v
    out: dict[str, list[HostSnapshot]] = {}
    for host, by_t in seqs.items():
        snaps: dict[int, HostSnapshot] = {}
        for t in sorted(by_t):
            ts = taken.get(host, {}).get(t)
            if ts is None:
                continue
            engines = tuple(
                EngineSnapshot(id=eid, kind=kind, state="unknown", stats_age_s=0.0, stats=EngineStats(**vals))
                for (kind, eid), per_t in stats.get(host, {}).items() if (vals := per_t.get(t))
            )
            seq = int(by_t[t])
            snaps[seq] = HostSnapshot(schema=SCHEMA, host=host, seq=seq, taken_at=rfc3339(ts), engines=engines)
        out[host] = [snaps[k] for k in sorted(snaps)]
    return out


# --- alerts a Prometheus evaluates -------------------------------------------------------------------


def rule_alerts(
    snaps: dict[str, HostSnapshot], alerts: Sequence[Any], instances: Mapping[str, str], source: str
) -> tuple[dict[str, HostSnapshot], list[str]]:
    """The snapshots with Prometheus's firing alerts added where the agents do not already report the
    same (host, engine, code); ``host`` comes from the alert's labels, else from its ``instance``. Returns
    the new snapshots and what could not be placed."""
    notes = Notes()
    extra: dict[str, list[tuple[str, Alert]]] = {}
    for a in alerts:
        if not isinstance(a, dict) or a.get("state") != "firing":
            continue
        labels = a.get("labels") if isinstance(a.get("labels"), dict) else {}
        labels = {str(k): str(v) for k, v in labels.items()}
        host = labels.get("host") or instances.get(labels.get("instance", ""))
        if not host or host not in snaps:
            notes.add("firing alerts name no host of this fleet", show_series({"__name__": labels.get("alertname", "?"), **labels}))
            continue
        ann = a.get("annotations") if isinstance(a.get("annotations"), dict) else {}
        since = a.get("activeAt") if isinstance(a.get("activeAt"), str) else None
        try:
            since = rfc3339(parse_rfc3339(since)) if since else None
        except (ValueError, OverflowError, OSError):
            since = None
        name = labels.get("alertname", "")
        alert = Alert(
            code=labels.get("code") or name or "PROMETHEUS_ALERT", severity=labels.get("severity") or "warning",
            since=since, summary=str(ann.get("summary") or ann.get("description") or name),
            evidence={"source": "prometheus", "prometheus": source, "alertname": name},
        )  # fmt: skip
        extra.setdefault(host, []).append((labels.get("engine", ""), alert))
    out = dict(snaps)
    for host, found in extra.items():
        out[host] = _with_alerts(out[host], found)
    return out, notes.lines()


def _with_alerts(snap: HostSnapshot, found: list[tuple[str, Alert]]) -> HostSnapshot:
    have = {("", a.code) for a in snap.alerts} | {(e.id, a.code) for e in snap.engines for a in e.alerts}
    host_level = list(snap.alerts)
    per_engine: dict[str, list[Alert]] = {}
    ids = {e.id for e in snap.engines}
    for eid, a in found:
        if (eid, a.code) in have:
            continue  # the agent reports it already (LLMConsoleAgentAlert passes agent alerts through)
        have.add((eid, a.code))
        if eid in ids:
            per_engine.setdefault(eid, []).append(a)
        else:
            host_level.append(a)
    engines = tuple(replace(e, alerts=e.alerts + tuple(per_engine[e.id])) if e.id in per_engine else e
                    for e in snap.engines)  # fmt: skip
    return replace(snap, alerts=tuple(host_level), engines=engines)


__all__ = [
    "ENGINE_OTHER", "ENGINE_STATS", "GPU_VALUES", "GRAPHED", "HOST_VALUES", "FleetRead", "Notes", "engine_value_names",
    "gpu_names", "history_names", "host_names", "name_regex", "read_fleet", "read_history", "rule_alerts",
    "show_series",
]  # fmt: skip
