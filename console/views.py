"""Presenters: FleetState → cells and text for the screens. Pure (no Textual, no I/O, no clock).

The rendering rule (DESIGN "Quality bar", reliability.md §4.2) is decided here, once:

| data                                   | cell                                             |
|----------------------------------------|--------------------------------------------------|
| live value                             | the number, tone "live" (threshold tones on top) |
| live zero                              | "0", tone "zero"                                 |
| live null, unsupported (TGI KV gauge)  | "n/a", tone "unsupported"                        |
| live null, nothing in the window       | "—", tone "missing"                              |
| stats not live / host stale or down    | the last value, tone "stale", never a health tone; the age is in the state cell |
| scrape failed (running engine, no stats) | "ERR", tone "error"                            |
| engine not running                     | "—", tone "missing"                              |

Simulated engines and GPUs say SIMULATED.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from agents.schema import Alert, EngineSnapshot, GpuInfo, HostSnapshot, severity_rank, stats_are_live
from console.state import FleetAlert, FleetState, HostState
from widgets.badge import state_tone
from widgets.tone import Cell, Tone, sort_value

FLEET_COLUMNS: tuple[tuple[str, str], ...] = (
    ("name", "HOST / ENGINE"),
    ("state", "STATE"),
    ("kind", "KIND"),
    ("model", "MODEL"),
    ("gpus", "GPUS"),
    ("kv", "KV"),
    ("queue", "RUN/WAIT"),
    ("ttft", "TTFT p95"),
    ("gen", "GEN tok/s"),
    ("restarts", "RESTARTS"),
    ("alerts", "ALERTS"),
)
RIGHT_COLUMNS = frozenset({"kv", "queue", "ttft", "gen", "restarts"})
SORTABLE = ("name", "state", "alerts", "ttft", "kv", "queue", "gen", "restarts", "model", "kind")
DESCENDING = frozenset({"state", "alerts", "ttft", "kv", "queue", "gen", "restarts"})  # worst / biggest first
RUNNING_STATES = frozenset({"ready", "degraded", "hung"})
_STATE_RANK = {"failed": 9, "hung": 8, "exited": 7, "backoff": 6, "degraded": 5, "starting": 4, "stopping": 3,
               "stopped": 2, "ready": 1}  # fmt: skip
_HOST_RANK = {"unreachable": 9, "unauthorized": 9, "incompatible": 8, "stale": 7, "pending": 3, "fresh": 1}
_SEVERITY_TONE: dict[str, Tone] = {"critical": "crit", "warning": "warn", "info": "info"}
GiB = 1024**3


# --- small formatters ------------------------------------------------------------------------------


def age_text(seconds: float | None) -> str:
    """47s, 3m12s, 2h05m, 3d; "?" for None."""
    if seconds is None:
        return "?"
    s = int(max(0.0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d"


def seconds_text(value: float) -> str:
    """A latency: 164ms, 1.24s, 12s."""
    if value < 1.0:
        return f"{value * 1000:.0f}ms"
    return f"{value:.2f}s" if value < 10 else f"{value:.0f}s"


def rate_text(value: float) -> str:
    """A rate or count: 0, 7.5, 184, 1.9k, 12k, 1.2M."""
    if value == 0:
        return "0"
    for limit, div, suffix in ((1e6, 1e6, "M"), (1e3, 1e3, "k")):
        if abs(value) >= limit:
            v = value / div
            return f"{v:.1f}{suffix}" if abs(v) < 10 else f"{v:.0f}{suffix}"
    return f"{value:.1f}" if abs(value) < 10 and value != int(value) else f"{value:.0f}"


def gib(value: int | float | None) -> str:
    return "?" if value is None else f"{value / GiB:.0f}"


def model_name(e: EngineSnapshot) -> str:
    if e.served_model_name:
        return e.served_model_name
    if e.model:
        return PurePosixPath(e.model).name or e.model
    return ""


def wall_clock(epoch: float | None) -> str:
    """HH:MM:SS (UTC) of a wall-clock time, for "since" texts."""
    if epoch is None:
        return "?"
    s = int(epoch) % 86400
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


# --- data state of one engine ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EngineView:
    """How to show one engine's numbers: ``live`` (plain), or stale with ``age``; ``error`` when a
    running engine has no stats (its scrape failed)."""

    live: bool
    age: float | None  # seconds the shown stats are old (None: unknown)
    error: bool
    running: bool


def engine_view(h: HostState, e: EngineSnapshot, now: float) -> EngineView:
    snap = h.snapshot
    running = e.state in RUNNING_STATES
    interval = snap.interval_s if snap is not None else None
    stats_live = stats_are_live(e, interval)
    host_age = h.age(now) or 0.0
    age = None if e.stats_age_s is None else e.stats_age_s + host_age
    if not h.live:
        return EngineView(False, host_age + (e.stats_age_s or 0.0), e.stats is None and running, running)
    return EngineView(stats_live, age, e.stats is None and running, running)


def metric_cell(
    value: float | None, view: EngineView, fmt: str, *, unsupported: bool = False, tone: Tone | None = None
) -> Cell:
    """One stat cell under the rendering rule (see the module docstring)."""
    if view.error:
        return _cell("ERR", "error", None)
    if value is None:
        return _cell("", "unsupported" if unsupported and view.live else "missing", None)
    text = _format(value, fmt)
    if not view.live:
        return Cell(text, "stale", value)
    if value == 0:
        return Cell(text, "zero", 0.0)
    return Cell(text, tone or "live", value)


def _format(value: float, fmt: str) -> str:
    if fmt == "pct":
        return f"{value * 100:.0f}%"
    if fmt == "s":
        return seconds_text(value)
    return rate_text(value)


# --- rows ---------------------------------------------------------------------------------------------


def engine_gpus(
    snap: HostSnapshot | None, e: EngineSnapshot, by_index: Mapping[int, GpuInfo] | None = None
) -> tuple[str, float | None]:
    """"0,1 61/160G" (memory used/total summed over the engine's GPUs) and the used fraction."""
    idx = ",".join(map(str, e.gpus)) or "-"
    if by_index is None:
        by_index = {g.index: g for g in snap.gpus} if snap is not None else {}
    gpus = [by_index[i] for i in e.gpus if i in by_index]
    if not gpus:
        return idx, None
    used = total = 0
    for g in gpus:
        if g.mem_used_bytes is None or g.mem_total_bytes is None:
            return idx, None
        used += g.mem_used_bytes
        total += g.mem_total_bytes
    return f"{idx} {gib(used)}/{gib(total)}G", used / max(1, total)


def alerts_cell(alerts: Sequence[Alert], acknowledged: int = 0) -> Cell:
    """Most severe first: "ENGINE_HUNG +1"; tone of the worst; "dim" when all are acknowledged."""
    if not alerts:
        return Cell("", "live", 0)
    ordered = sorted(alerts, key=lambda a: -severity_rank(a.severity))
    worst = ordered[0]
    text = worst.code + (f" +{len(ordered) - 1}" if len(ordered) > 1 else "")
    tone: Tone = "dim" if acknowledged >= len(ordered) else _SEVERITY_TONE.get(worst.severity, "info")
    return Cell(text, tone, (severity_rank(worst.severity) + 1) * 100 + len(ordered))


def gpu_source_cell(source: str | None) -> Cell:
    if source is None:
        return Cell("", "missing", None)
    if source == "simulated":
        return Cell("SIMULATED", "simulated", source)
    if source.startswith("unavailable"):
        return Cell(source, "warn", source)
    return Cell(source, "live", source)


def host_state_cell(h: HostState, now: float) -> Cell:
    rank = _HOST_RANK.get(h.status, 0)
    if h.status == "fresh":
        return Cell("fresh", "ok", rank)
    if h.status == "stale":
        return Cell(f"stale {age_text(h.age(now))}", "stale", rank)
    if h.status == "unreachable":
        return Cell(f"unreachable {age_text(h.status_age(now))}", "crit", rank)
    if h.status == "unauthorized":
        code = f" ({h.error.status})" if h.error is not None and h.error.status is not None else ""
        return Cell(f"not authorized{code}", "crit", rank)
    if h.status == "incompatible":
        found = h.error.found_schema if h.error else None
        version = found.rsplit("/", 1)[-1] if found and "/" in found else "?"
        return Cell(f"incompatible v{version}", "error", rank)
    return Cell("connecting", "dim", rank)


_CELLS: dict[tuple[str, str, object], Cell] = {}
_CELLS_MAX = 200_000


def _cell(text: str, tone: Tone = "live", key: float | str | None = None) -> Cell:
    """A shared Cell for (text, tone, key): most cells repeat from tick to tick (names, states, models),
    so the fleet table reuses them instead of building 55,000 new ones per tick."""
    k = (text, tone, key)
    c = _CELLS.get(k)
    if c is None:
        if len(_CELLS) >= _CELLS_MAX:
            _CELLS.clear()
        c = _CELLS[k] = Cell(text, tone, key)
    return c


_MODEL_NAMES: dict[tuple[str | None, str | None], str] = {}


def _model(e: EngineSnapshot) -> str:
    k = (e.served_model_name, e.model)
    name = _MODEL_NAMES.get(k)
    if name is None:
        if len(_MODEL_NAMES) > 10_000:
            _MODEL_NAMES.clear()
        name = _MODEL_NAMES[k] = model_name(e)
    return name


def engine_row(
    h: HostState, e: EngineSnapshot, now: float, state: FleetState, gpus_by_index: Mapping[int, GpuInfo] | None = None
) -> list[Cell]:
    snap = h.snapshot
    view = engine_view(h, e, now)
    cfg = state.config.thresholds
    st = e.stats
    live = h.live
    rank = _STATE_RANK.get(e.state, 0)
    if not live:
        state_cell = _cell(f"{e.state} ({age_text(h.age(now))} ago)", "stale", rank)
    elif not view.live and not view.error and st is not None and view.running:
        state_cell = _cell(f"{e.state} (stats {age_text(view.age)})", state_tone(e.state), rank)
    else:
        state_cell = _cell(e.state, state_tone(e.state), rank)
    muted: Tone = "live" if live else "stale"
    kind = _cell(f"{e.kind} SIMULATED" if e.simulated else e.kind, "simulated" if e.simulated and live else muted, e.kind)
    gpus_text, gpu_frac = engine_gpus(snap, e, gpus_by_index)
    kv_value = st.kv_cache_usage if st else None
    kv_tone: Tone | None = None
    if kv_value is not None and kv_value >= cfg.kv_pressure:
        kv_tone = "crit"
    elif kv_value is not None and kv_value >= 0.9 * cfg.kv_pressure:
        kv_tone = "warn"
    ttft = st.ttft_p95_s if st else None
    ttft_tone: Tone | None = "crit" if ttft is not None and ttft > cfg.ttft_p95_s else None
    restarts = e.restarts
    if restarts is None:
        restarts_cell = _cell("", "missing", None)
    else:
        restarts_cell = _cell(str(restarts), "stale" if not live else ("warn" if restarts else "zero"), restarts)
    if e.alerts:
        acked = sum(1 for a in e.alerts if (h.name, e.id, a.code, a.since or "") in state.acknowledged)
        alerts = alerts_cell(e.alerts, acked)
        alerts = _cell(alerts.text, alerts.tone if live else "stale", alerts.sort_key)
    else:  # the absence of alerts on a host that is not live is not live either
        alerts = _cell("", "live" if live else "stale", 0)
    model = _model(e)
    return [
        _cell("  " + e.id, muted, f"{h.name}/{e.id}"),
        state_cell,
        kind,
        _cell(model, muted, model),
        _cell(gpus_text, muted, gpu_frac),  # the host row says where GPU data comes from (SIMULATED)
        metric_cell(kv_value, view, "pct", unsupported=True, tone=kv_tone),
        _queue_cell(st.requests_running if st else None, st.requests_waiting if st else None, view),
        metric_cell(ttft, view, "s", tone=ttft_tone),
        metric_cell(st.generation_tokens_per_s if st else None, view, "rate"),
        restarts_cell,
        alerts,
    ]


def _queue_cell(running: float | None, waiting: float | None, view: EngineView) -> Cell:
    if view.error:
        return _cell("ERR", "error", None)
    if running is None and waiting is None:
        return _cell("", "missing", None)
    text = f"{rate_text(running) if running is not None else 'n/a'}/{rate_text(waiting) if waiting is not None else 'n/a'}"
    key = (running or 0) + (waiting or 0)
    if not view.live:
        return Cell(text, "stale", key)
    if key == 0:
        return Cell(text, "zero", 0)
    return Cell(text, "warn" if waiting else "live", key)


def host_row(h: HostState, now: float, state: FleetState) -> list[Cell]:
    snap = h.snapshot
    engines = snap.engines if snap else ()
    gpus = snap.gpus if snap else ()
    n_gpus = len(gpus)
    used = sum(g.mem_used_bytes or 0 for g in gpus)
    total = sum(g.mem_total_bytes or 0 for g in gpus)
    gpu_text = f"{n_gpus} GPU{'s' if n_gpus != 1 else ''}" + (f" {gib(used)}/{gib(total)}G" if total else "")
    tone: Tone = "live" if h.live else "stale"
    alerts = list(h.alerts) + (list(snap.alerts) if snap else [])
    acked = sum(1 for a in alerts if (h.name, "", a.code, a.since or "") in state.acknowledged)
    live = [e for e in engines if h.live and stats_are_live(e, snap.interval_s if snap else None)]
    gen = [e.stats.generation_tokens_per_s for e in live if e.stats and e.stats.generation_tokens_per_s is not None]
    gen_cell = Cell("", "missing", None)
    if gen:
        coverage = "" if len(gen) == len(engines) else f" ({len(gen)}/{len(engines)})"
        gen_cell = Cell(rate_text(sum(gen)) + coverage, "live", sum(gen))
    restarts = sum(e.restarts or 0 for e in engines)
    src = gpu_source_cell(snap.gpu_source if snap else None)
    meta = f"{len(engines)} engine{'s' if len(engines) != 1 else ''}"
    if snap is not None and snap.agent_version:
        meta += f" · agent {snap.agent_version}"
    if h.route:
        meta += f" · {h.route}"
    return [
        Cell(h.name, "live", h.name),
        host_state_cell(h, now),
        src if h.live or src.tone == "missing" else Cell(src.text, "stale", src.sort_key),
        Cell(meta if snap else (h.route or ""), "dim", len(engines)),
        Cell(gpu_text if snap else "", tone, used / total if total else None),
        Cell("", "live", None),
        Cell("", "live", None),
        Cell("", "live", None),
        gen_cell,
        Cell(str(restarts) if engines else "", "dim", restarts),
        alerts_cell(alerts, acked),
    ]


# --- filtering ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Term:
    field: str  # "text" | "state" | "alert" | "host" | "kind" | "model"
    value: str
    negate: bool = False


FILTER_FIELDS = ("state", "alert", "host", "kind", "model")


def parse_filter(text: str) -> tuple[Term, ...]:
    """``state:hung alert:KV_PRESSURE host:gpu01 kind:vllm -state:ready !text`` → terms (ANDed)."""
    terms = []
    for word in text.split():
        negate = word[0] in "-!" and len(word) > 1
        if negate:
            word = word[1:]
        name, sep, value = word.partition(":")
        if sep and name.lower() in FILTER_FIELDS and value:
            terms.append(Term(name.lower(), value.lower(), negate))
        else:
            terms.append(Term("text", word.lower(), negate))
    return tuple(terms)


def _like(pattern: str, text: str) -> bool:
    text = text.lower()
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatchcase(text, pattern)
    return pattern in text


def _term_matches(t: Term, h: HostState, e: EngineSnapshot | None) -> bool:
    if t.field == "host":
        return _like(t.value, h.name)
    if t.field == "state":  # an engine's state is only known while its host is live
        return (e is not None and h.live and e.state.lower() == t.value) or h.status == t.value
    if t.field == "kind":
        return e is not None and e.kind.lower() == t.value
    if t.field == "model":
        return e is not None and any(_like(t.value, m) for m in (e.model or "", e.served_model_name or ""))
    if t.field == "alert":
        codes = [a.code.lower() for a in h.alerts] + [a.code.lower() for a in (h.snapshot.alerts if h.snapshot else ())]
        if e is not None:
            codes += [a.code.lower() for a in e.alerts]
        return any(c.startswith(t.value) for c in codes)
    hay = [h.name] + ([e.id, e.kind, e.model or "", e.served_model_name or "", e.state] if e is not None else [h.status])
    return any(_like(t.value, x) for x in hay)


def matches(terms: Sequence[Term], h: HostState, e: EngineSnapshot | None) -> bool:
    """Whether an engine row (or a host without engines, ``e`` None) passes every term."""
    return all(_term_matches(t, h, e) != t.negate for t in terms)


# --- the fleet table ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FleetTable:
    rows: dict[str, list[Cell]]
    order: list[str]
    groups: frozenset[str]
    engine_keys: frozenset[str] = field(default_factory=frozenset)


def engine_key(host: str, engine: str) -> str:
    return f"{host}/{engine}"


def split_key(key: str) -> tuple[str, str | None]:
    """"host/engine" → (host, engine); "host" → (host, None). Host names have no "/"."""
    host, sep, engine = key.partition("/")
    return host, (engine if sep else None)


def fleet_table(state: FleetState, now: float, query: str = "", sort: str = "name", reverse: bool = False) -> FleetTable:
    """Rows keyed "host" and "host/engine": each host (a group row) above its engines. ``sort`` orders
    the hosts by their row's key (host rows aggregate their engines' worst value) and the engines
    within each host; ``query`` is a filter (parse_filter); a host shows if it or any engine passes."""
    terms = parse_filter(query)
    col = next((i for i, (k, _) in enumerate(FLEET_COLUMNS) if k == sort), 0)
    descending = (sort in DESCENDING) != reverse
    groups: list[tuple[str, list[Cell], list[tuple[str, list[Cell]]]]] = []
    for h in state.hosts.values():
        snap = h.snapshot
        engines = [e for e in (snap.engines if snap else ()) if not terms or matches(terms, h, e)]
        if terms and not engines and (snap is not None and snap.engines or not matches(terms, h, None)):
            continue
        host_cells = host_row(h, now, state)
        by_index = {g.index: g for g in snap.gpus} if snap is not None else {}
        engine_rows = [(f"{h.name}/{e.id}", engine_row(h, e, now, state, by_index)) for e in engines]
        if sort != "name" and engine_rows:
            host_cells[col] = _aggregate(host_cells[col], [cells[col] for _, cells in engine_rows], descending)
        groups.append((h.name, host_cells, engine_rows))
    if sort != "name" or reverse:
        groups.sort(key=lambda g: _key(g[1][col], descending), reverse=False)
        for _, _, engine_rows in groups:
            engine_rows.sort(key=lambda r: _key(r[1][col], descending))
    rows: dict[str, list[Cell]] = {}
    engine_keys = []
    for name, cells, engine_rows in groups:
        rows[name] = cells
        for key, ecells in engine_rows:
            rows[key] = ecells
            engine_keys.append(key)
    return FleetTable(rows, list(rows), frozenset(g[0] for g in groups), frozenset(engine_keys))


def _key(cell: Cell, descending: bool) -> tuple[int, float | str]:
    group, value = sort_value(cell)
    if descending and group == 0:
        return (0, -value)  # type: ignore[operator]
    if descending and group == 1:
        return (1, "".join(chr(0x10FFFF - ord(c)) for c in str(value)))
    return (group, value)


def _aggregate(host_cell: Cell, cells: Iterable[Cell], descending: bool) -> Cell:
    """A host row's sort key for an engine column: the worst (first in sort order) of its engines."""
    best = min((c for c in cells), key=lambda c: _key(c, descending), default=None)
    if best is None or best.sort_key is None:
        return host_cell
    if host_cell.sort_key is not None and _key(host_cell, descending) <= _key(best, descending):
        return host_cell
    return Cell(host_cell.text, host_cell.tone, best.sort_key)


# --- header counts ----------------------------------------------------------------------------------------


def header_counts(state: FleetState) -> list[Cell]:
    """"HOSTS 3 fresh · 1 stale  ENGINES 9 ready · 1 hung  ALERTS 2 critical · 1 warning" as cells."""
    hosts: dict[str, int] = {}
    engines: dict[str, int] = {}
    for h in state.hosts.values():
        hosts[h.status] = hosts.get(h.status, 0) + 1
        if h.snapshot is not None:
            for e in h.snapshot.engines:
                label = e.state if h.live else "unknown"
                engines[label] = engines.get(label, 0) + 1
    severities: dict[str, int] = {}
    for a in state.alerts:
        if a.key not in state.acknowledged:
            severities[a.alert.severity] = severities.get(a.alert.severity, 0) + 1
    out: list[Cell] = []

    def section(title: str, counts: Mapping[str, int], order: Sequence[str], tone_of) -> None:  # noqa: ANN001
        out.append(Cell(f"{title} ", "dim"))
        items = sorted(counts.items(), key=lambda kv: (order.index(kv[0]) if kv[0] in order else len(order), kv[0]))
        if not items:
            out.append(Cell("none", "dim"))
        for i, (name, n) in enumerate(items):
            if i:
                out.append(Cell(" · ", "dim"))
            out.append(Cell(f"{n} {name}", tone_of(name)))
        out.append(Cell("   ", "live"))

    section("HOSTS", hosts, ("unreachable", "unauthorized", "incompatible", "stale", "pending", "fresh"),
            lambda s: host_state_cell(HostState("", status=s), 0).tone)  # fmt: skip
    section("ENGINES", engines, (*_STATE_RANK, "unknown"),
            lambda s: "stale" if s == "unknown" else state_tone(s))  # fmt: skip
    section("ALERTS", severities, ("critical", "warning", "info"), lambda s: _SEVERITY_TONE.get(s, "info"))
    return out[:-1]


# --- engine detail ---------------------------------------------------------------------------------------


def gpu_process_lines(snap: HostSnapshot, gpu: GpuInfo) -> list[tuple[str, Tone]]:
    """"pid 41877  71.0 GiB  llama70b" per process; processes of no engine are "orphan" (warn)."""
    out: list[tuple[str, Tone]] = []
    for p in gpu.processes:
        mem = "?" if p.mem_bytes is None else f"{p.mem_bytes / GiB:.1f} GiB"
        owner = p.engine_id or "orphan"
        out.append((f"pid {p.pid:<8} {mem:>10}  {owner}", "warn" if p.engine_id is None else "live"))
    return out


def gpu_summary(gpu: GpuInfo) -> str:
    """"util 93%  67°C  612/700 W  throttled: sw_power_cap" with n/a for what the GPU does not report."""
    util = "n/a" if gpu.util_pct is None else f"{gpu.util_pct:.0f}%"
    temp = "n/a" if gpu.temp_c is None else f"{gpu.temp_c:.0f}°C"
    if gpu.power_w is None:
        power = "n/a"
    else:
        power = f"{gpu.power_w:.0f}" + (f"/{gpu.power_limit_w:.0f}" if gpu.power_limit_w is not None else "") + " W"
    text = f"util {util}  {temp}  {power}"
    if gpu.throttle_reasons:
        text += "  throttled: " + ", ".join(gpu.throttle_reasons)
    if gpu.ecc_uncorrected:
        text += f"  ECC {gpu.ecc_uncorrected}"
    if gpu.xid_last is not None:
        text += f"  Xid {gpu.xid_last}"
    return text


def event_lines(e: EngineSnapshot) -> list[tuple[str, Tone]]:
    """The engine's state history, newest first: "03:18:51 ready  health 200 and canary ok"."""
    out: list[tuple[str, Tone]] = []
    for ev in reversed(e.events):
        at = ev.at[11:19] if len(ev.at) >= 19 else ev.at
        detail = []
        if ev.exit_code is not None:
            detail.append(f"exit code {ev.exit_code}")
        if ev.signal is not None:
            detail.append(f"signal {ev.signal}")
        if ev.reason:
            detail.append(ev.reason)
        out.append((f"{at} {ev.state:<9} {'  '.join(detail)}", state_tone(ev.state)))
    return out


def engine_summary(h: HostState, e: EngineSnapshot, now: float) -> list[tuple[str, Tone]]:
    """The detail screen's header line parts."""
    view = engine_view(h, e, now)
    parts: list[tuple[str, Tone]] = [(f" {e.state.upper()} ", state_tone(e.state) if h.live else "stale")]
    parts.append((f"  {h.name}/{e.id}  {e.kind}", "live"))
    if e.simulated:
        parts.append(("  SIMULATED", "simulated"))
    parts.append((f"  model {e.served_model_name or e.model or '?'}", "live"))
    if e.pid is not None:
        parts.append((f"  pid {e.pid}", "dim"))
    if e.port is not None:
        parts.append((f"  port {e.port}", "dim"))
    if e.uptime_s is not None:
        parts.append((f"  up {age_text(e.uptime_s)}", "dim"))
    if e.restarts:
        parts.append((f"  restarts {e.restarts}", "warn"))
    if not h.live:
        parts.append((f"  host {h.status}: values {age_text(h.age(now))} old", "stale"))
    elif not view.live and e.stats is not None:
        parts.append((f"  stats stale {age_text(view.age)}", "stale"))
    elif view.error:
        parts.append(("  stats: scrape failed", "error"))
    if e.last_exit is not None:
        le = e.last_exit
        how = f"signal {le.signal}" if le.signal is not None else f"code {le.code}"
        parts.append((f"  last exit {how}", "warn"))
    return parts


def graph_note(h: HostState, e: EngineSnapshot, now: float) -> str | None:
    """What the graphs' titles say about their data: STALE with the age, SIMULATED."""
    notes = []
    view = engine_view(h, e, now)
    if not h.live:
        notes.append(f"{h.status.upper()} {age_text(h.age(now))}")
    elif not view.running and e.stats is None:
        notes.append(f"{e.state.upper()}: no stats")
    elif view.error:
        notes.append("ERR: metrics scrape failed")
    elif not view.live:
        notes.append(f"STATS STALE {age_text(view.age)}")
    if e.simulated:
        notes.append("SIMULATED")
    return " · ".join(notes) or None


def host_status_line(state: FleetState, key: str | None, block: str | None = None) -> list[tuple[str, Tone]]:
    """The status line under the fleet table for the highlighted row: reachability with the error
    text (the reason behind an ERR or UNREACHABLE), partial-collection errors, why actions are off."""
    if key is None:
        return [("no hosts match", "dim")]
    host, engine = split_key(key)
    h = state.hosts.get(host)
    if h is None:
        return [(key, "dim")]
    now = state.now
    parts: list[tuple[str, Tone]] = [(f"{key}  ", "info")]
    if h.status == "unreachable":
        since = f"since {wall_clock(h.since_wall)} " if h.since_wall is not None else ""
        msg = h.error.message if h.error else "no answer"
        parts.append((f"UNREACHABLE {since}({age_text(h.status_age(now))}): {msg}", "crit"))
        if h.snapshot is not None:
            parts.append((f"  · values shown are {age_text(h.age(now))} old", "stale"))
    elif h.status == "unauthorized":
        parts.append((f"NOT AUTHORIZED: {h.error.message if h.error else '?'}", "crit"))
        if h.snapshot is not None:
            parts.append((f"  · values shown are {age_text(h.age(now))} old", "stale"))
    elif h.status == "incompatible":
        parts.append((f"INCOMPATIBLE: {h.error.message if h.error else '?'}", "error"))
    elif h.status == "stale":
        parts.append((f"STALE: newest snapshot {age_text(h.age(now))} old (stale after {state.config.stale_after_s:g}s)", "stale"))
    elif h.status == "pending":
        parts.append(("connecting…", "dim"))
    else:
        rtt = f"rtt {h.rtt_s * 1000:.0f}ms · " if h.rtt_s is not None else ""
        seq = f"seq {h.snapshot.seq} · " if h.snapshot else ""
        parts.append((f"fresh · {seq}{rtt}received {age_text(h.age(now))} ago", "ok"))
    snap = h.snapshot
    if engine is not None and snap is not None:
        e = snap.engine(engine)
        if e is not None:
            worst = sorted(e.alerts, key=lambda a: -severity_rank(a.severity))
            if worst:
                parts.append((f"  · {worst[0].code}: {worst[0].summary}", _SEVERITY_TONE.get(worst[0].severity, "info")))
            elif engine_view(h, e, now).error:
                parts.append(("  · ERR: no stats from the engine's metrics endpoint", "error"))
    elif snap is not None and snap.errors and h.live:
        parts.append((f"  · ERR {snap.errors[0]}" + (f" (+{len(snap.errors) - 1})" if len(snap.errors) > 1 else ""), "error"))
    if block:
        parts.append((f"  · {block}", "dim"))
    parts.extend((f"  · warning: {w}", "warn") for w in h.warnings)
    return parts


def live_engine_fields(state: FleetState) -> list[dict[str, object]]:
    """Keyword arguments for console.calc.live.LiveEngine, one per engine in the fleet: tokens/s
    (prompt + generation) only when live (a stale number is never offered as live)."""
    out: list[dict[str, object]] = []
    for h in state.hosts.values():
        snap = h.snapshot
        if snap is None:
            continue
        for e in snap.engines:
            gpus = [g for g in snap.gpus if g.index in e.gpus]
            tps = None
            if h.live and e.stats is not None and stats_are_live(e, snap.interval_s):
                gen, prompt = e.stats.generation_tokens_per_s, e.stats.prompt_tokens_per_s
                tps = None if gen is None and prompt is None else (gen or 0.0) + (prompt or 0.0)
            out.append({
                "host": h.name, "engine": e.id, "model": e.served_model_name or e.model, "gpu_count": len(e.gpus),
                "gpu_name": gpus[0].name if gpus else None, "tokens_per_s": tps,
                "simulated": e.simulated or snap.gpu_source == "simulated",
            })  # fmt: skip
    return out


def alert_rows(state: FleetState) -> tuple[dict[str, list[Cell]], dict[str, FleetAlert]]:
    """The alerts table: active alerts (newest first), then recently cleared ones (newest first)."""
    rows: dict[str, list[Cell]] = {}
    by_key: dict[str, FleetAlert] = {}
    for a in state.all_alerts():
        key = "\x1f".join(a.key) + ("" if a.active else "\x1fcleared")
        n = 2
        while key in rows:
            key, n = f"{key}#{n}", n + 1
        acked = state.is_acknowledged(a)
        sev: Tone = _SEVERITY_TONE.get(a.alert.severity, "info")
        if not a.active:
            status, tone = f"cleared {age_text(state.now - (a.cleared_at or state.now))} ago", "dim"
        elif acked:
            status, tone = "acknowledged", "dim"
        else:
            status, tone = "active", sev
        text_tone: Tone = "live" if tone == sev else "dim"
        rows[key] = [
            Cell(alert_time(a) or "?", text_tone, a.alert.since or ""),
            Cell(a.alert.severity.upper(), tone, severity_rank(a.alert.severity)),
            Cell(a.alert.code, tone, a.alert.code),
            Cell(a.where, text_tone, a.where),
            Cell(status, tone, status),
            Cell(a.alert.summary, text_tone, a.alert.summary),
        ]
        by_key[key] = a
    return rows, by_key


def alert_detail(a: FleetAlert) -> list[tuple[str, Tone]]:
    """One alert's evidence, for the line under the alerts table."""
    parts: list[tuple[str, Tone]] = [(f"{a.where}  {a.alert.code}", _SEVERITY_TONE.get(a.alert.severity, "info"))]
    if a.console:
        parts.append(("  (raised by the console)", "dim"))
    parts.append((f"  since {a.alert.since or '?'}", "dim"))
    if a.alert.evidence:
        evidence = "  ".join(f"{k}={_evidence_value(v)}" for k, v in a.alert.evidence.items())
        parts.append(("\nevidence: " + evidence, "live"))
    return parts


def _evidence_value(v: object) -> str:
    if v is None:
        return "null"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list | tuple):
        return ",".join(_evidence_value(x) for x in v)
    return str(v)


def alert_time(a: FleetAlert) -> str:
    s = a.alert.since or ""
    return s[11:19] if len(s) >= 19 else s


__all__ = [
    "FLEET_COLUMNS", "RIGHT_COLUMNS", "alert_detail", "alert_rows", "SORTABLE", "EngineView", "FleetTable", "Term", "age_text", "alert_time",
    "alerts_cell", "engine_gpus", "engine_key", "engine_row", "engine_summary", "engine_view", "event_lines",
    "fleet_table", "gpu_process_lines", "gpu_source_cell", "gpu_summary", "graph_note", "header_counts", "host_row",
    "host_state_cell", "host_status_line", "live_engine_fields", "matches", "metric_cell", "model_name", "parse_filter", "rate_text", "seconds_text",
    "split_key", "wall_clock",
]  # fmt: skip
