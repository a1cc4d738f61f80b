"""Fleet rows: one host row and one row per engine, as tuples of Cells in FLEET_COLUMNS order.

The fleet table is presented on every poll round for every engine of the fleet, so this is the
console's hot path: unchanged inputs give the very same row tuple (KeyedTable then skips it by
identity), repeated texts share their Cells, and the per-tick constants are looked up once.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import NamedTuple

from agents.schema import Alert, EngineSnapshot, GpuInfo, HostSnapshot, stats_are_live
from console.state import FleetState, HostState
from console.views.cells import (
    RUNNING_STATES,
    STATE_RANK,
    age_text,
    alerts_cell,
    data_age,
    engine_state,
    gib,
    gpu_source_cell,
    host_state_cell,
    model_name,
    quantile_bucket,
    rate_text,
    shared_cell,
    value_cell,
)
from widgets.badge import state_tone
from widgets.tone import Cell, Tone

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
COLUMN_PRIORITY: dict[str, int] = {
    # 0: always shown; a narrow terminal drops the highest numbers first (widgets.keyed_table)
    "name": 0,
    "state": 0,
    "alerts": 0,
    "kv": 0,
    "queue": 0,
    "ttft": 1,
    "gen": 2,
    "kind": 3,  # it says SIMULATED: kept before the model and GPU memory
    "model": 4,
    "restarts": 5,
    "gpus": 6,
}
"""How much each fleet column matters when the terminal is too narrow for all of them."""
NO_PROGRESS_CODES = frozenset(
    {"ENGINE_HUNG", "GPU_WEDGED", "FRONTEND_HUNG", "RANK_DIVERGENCE", "ADMISSION_STALLED"}
)
"""Alerts saying the engine makes no progress: its windowed TTFT and token rate are not current."""
Row = tuple[Cell, ...]


class RowInputs(NamedTuple):
    """What one fleet round holds constant for every row: the thresholds and the acknowledged alerts."""

    kv_pressure: float
    ttft_p95_s: float
    acknowledged: frozenset[tuple[str, str, str, str]]

    @classmethod
    def of(cls, state: FleetState) -> RowInputs:
        t = state.config.thresholds
        return cls(t.kv_pressure, t.ttft_p95_s, state.acknowledged)


# --- engine rows --------------------------------------------------------------------------------------


def engine_gpus(
    snap: HostSnapshot | None, e: EngineSnapshot, by_index: Mapping[int, GpuInfo] | None = None
) -> tuple[str, float | None]:
    """ "0,1 61/160G" (memory used/total summed over the engine's GPUs) and the used fraction."""
    if by_index is None:
        by_index = {g.index: g for g in snap.gpus} if snap is not None else {}
    used = total = 0
    found = False
    for i in e.gpus:
        g = by_index.get(i)
        if g is None:
            continue
        if g.mem_used_bytes is None or g.mem_total_bytes is None:
            return _gpu_ids(e.gpus), None
        found = True
        used += g.mem_used_bytes
        total += g.mem_total_bytes
    if not found:
        return _gpu_ids(e.gpus), None
    return _gpu_text(e.gpus, used, total), used / max(1, total)


_GPU_TEXT: dict[tuple[tuple[int, ...], int, int], str] = {}
_GPU_IDS: dict[tuple[int, ...], str] = {}
_MEMO_MAX = 20_000


def _gpu_ids(gpus: tuple[int, ...]) -> str:
    text = _GPU_IDS.get(gpus)
    if text is None:
        if len(_GPU_IDS) >= _MEMO_MAX:
            _GPU_IDS.clear()
        text = _GPU_IDS[gpus] = ",".join(map(str, gpus)) or "-"
    return text


def _gpu_text(gpus: tuple[int, ...], used: int, total: int) -> str:
    k = (gpus, used, total)
    text = _GPU_TEXT.get(k)
    if text is None:
        if len(_GPU_TEXT) >= _MEMO_MAX:
            _GPU_TEXT.clear()
        text = _GPU_TEXT[k] = f"{_gpu_ids(gpus)} {gib(used)}/{gib(total)}G"
    return text


_MODEL_NAMES: dict[tuple[str | None, str | None], str] = {}


def _model(e: EngineSnapshot) -> str:
    k = (e.served_model_name, e.model)
    name = _MODEL_NAMES.get(k)
    if name is None:
        if len(_MODEL_NAMES) >= _MEMO_MAX:
            _MODEL_NAMES.clear()
        name = _MODEL_NAMES[k] = model_name(e)
    return name


def _state_cell(
    h: HostState, e: EngineSnapshot, now: float, stats_live: bool, error: bool, *, frozen: bool = False
) -> Cell:
    """The state ("crash-loop" while CRASH_LOOP is active, see ``engine_state``); a host that is not live
    gives the host's one age ("ready (11s ago)", the host row says "unreachable (11s ago)"); ``frozen``: the
    engine makes no progress and some of its values are from before ("hung (values stale)")."""
    state = engine_state(e)
    rank = STATE_RANK.get(state, 0)
    if frozen and h.live:
        return shared_cell(f"{state} (values stale)", state_tone(state), rank)
    if not h.live:
        return shared_cell(f"{state} ({age_text(data_age(h, now))} ago)", "stale", rank)
    if _stats_age_shown(e, stats_live, error):
        age = None if e.stats_age_s is None else e.stats_age_s + (h.age(now) or 0.0)
        return shared_cell(f"{state} (stats {age_text(age)})", state_tone(state), rank)
    return shared_cell(state, state_tone(state), rank)


def _stats_age_shown(e: EngineSnapshot, stats_live: bool, error: bool) -> bool:
    """Whether the state cell says how old the stats are ("ready (stats 12s)"): they are not live."""
    return not stats_live and not error and e.stats is not None and e.state in RUNNING_STATES


def rows_are_timeless(h: HostState) -> bool:
    """Whether the host's rows look the same at any later moment until its state changes: it is fresh
    and no engine's state cell shows an age (fleet_table then keeps its rows while ``h`` is the same)."""
    snap = h.snapshot
    if not h.live or snap is None:
        return False
    interval = snap.interval_s
    for e in snap.engines:
        error = e.stats is None and e.state in RUNNING_STATES
        if _stats_age_shown(e, stats_are_live(e, interval), error):
            return False
    return True


def _kind_cell(e: EngineSnapshot, live: bool, muted: Tone) -> Cell:
    """ "vllm", "vllm SIMULATED", "vllm watched" (the agent watches it but did not start it)."""
    text = e.kind
    if e.simulated:
        text += " SIMULATED"
    if not e.managed:
        text += " watched"
    return shared_cell(text, "simulated" if e.simulated and live else muted, e.kind)


def _alerts_cell(h: HostState, e: EngineSnapshot, inputs: RowInputs) -> Cell:
    live = h.live
    if not e.alerts:  # the absence of alerts on a host that is not live is not live either
        return shared_cell("", "live" if live else "stale", 0)
    acked = sum(1 for a in e.alerts if (h.name, e.id, a.code, a.since or "") in inputs.acknowledged)
    cell = alerts_cell(e.alerts, acked)
    return shared_cell(cell.text, cell.tone if live else "stale", cell.sort_key)


def _queue_cell(running: float | None, waiting: float | None, live: bool, error: bool) -> Cell:
    """ "running/waiting" (queue lengths repeat: the cells are shared)."""
    if error:
        return shared_cell("ERR", "error", None)
    if running is None and waiting is None:
        return shared_cell("", "missing", None)
    text = f"{rate_text(running) if running is not None else 'n/a'}/{rate_text(waiting) if waiting is not None else 'n/a'}"
    key = (running or 0) + (waiting or 0)
    if not live:
        return shared_cell(text, "stale", key)
    if key == 0:
        return shared_cell(text, "zero", 0)
    return shared_cell(text, "warn" if waiting else "live", key)


def _no_progress(e: EngineSnapshot) -> bool:
    return e.state == "hung" or any(a.code in NO_PROGRESS_CODES for a in e.alerts)


def _kv_cell(kv: float | None, eta: float | None, tone: Tone | None, cell: Cell) -> Cell:
    """The KV cell, with when it fills at its trend when the agent says so: "97% →4m12s" (the agent's
    KV_EXHAUSTION_ETA alert says when that is too soon; the tone stays the usage's)."""
    if eta is None or kv is None or cell.tone in ("stale", "error", "missing", "unsupported"):
        return cell
    return shared_cell(f"{cell.text} →{age_text(eta)}", cell.tone, kv)


def _metric_cells(e: EngineSnapshot, live: bool, error: bool, inputs: RowInputs, previous: Row | None) -> Row:
    """KV (with its fill ETA), RUN/WAIT, TTFT p95 (its bucket's bound when the bucket is wide, see
    ``quantile_text``) and GEN tok/s; an unchanged value keeps its ``previous`` cell. An engine that
    makes no progress (hung, wedged) shows its windowed TTFT and a non-zero token
    rate as stale: they describe requests from before it stopped."""
    st = e.stats
    if st is None:
        kv = running = waiting = ttft = gen = None
    else:
        kv, running, waiting = st.kv_cache_usage, st.requests_running, st.requests_waiting
        ttft, gen = st.ttft_p95_s, st.generation_tokens_per_s
    ttft_bucket = quantile_bucket(st, "ttft_p95_s")  # a p95 inside a wide bucket shows the bound ("≤100ms")
    kv_tone: Tone | None = None
    if kv is not None and kv >= inputs.kv_pressure:
        kv_tone = "crit"
    elif kv is not None and kv >= 0.9 * inputs.kv_pressure:
        kv_tone = "warn"
    ttft_tone: Tone | None = "crit" if ttft is not None and ttft > inputs.ttft_p95_s else None
    p = previous or _NO_ROW
    frozen = live and _no_progress(e)
    prev_kv = p[5] if p[5] is None or "→" not in p[5].text else None  # never an ETA text for a plain value
    kv_cell = value_cell(kv, live, error, "pct", unsupported=True, tone=kv_tone, previous=prev_kv)
    return (
        _kv_cell(kv, e.kv_eta_s, kv_tone, kv_cell) if e.kv_eta_s is not None else kv_cell,
        _queue_cell(running, waiting, live, error),
        value_cell(ttft, live and not frozen, error, "s", tone=ttft_tone, previous=p[7], bucket=ttft_bucket),
        value_cell(gen, live and not (frozen and gen), error, "rate", previous=p[8]),
    )


_NO_ROW: tuple[None, ...] = (None,) * len(FLEET_COLUMNS)
_PREVIOUS: dict[str, Row] = {}  # row key -> the engine's row as last presented (see engine_row)
_PREVIOUS_SLACK = 1024


def forget_rows_except(keys: Collection[str]) -> None:
    """Drop remembered rows of engines no longer shown (fleet_table calls it when many have gone)."""
    if len(_PREVIOUS) > 2 * len(keys) + _PREVIOUS_SLACK:
        for key in [k for k in _PREVIOUS if k not in keys]:
            del _PREVIOUS[key]


def engine_row(
    h: HostState,
    e: EngineSnapshot,
    now: float,
    state: FleetState | RowInputs,
    gpus_by_index: Mapping[int, GpuInfo] | None = None,
) -> Row:
    """One engine's cells under the rendering rule (console.views). ``state`` may be the round's
    RowInputs (fleet_table passes them once per round).

    The row last presented for the same "host/engine" is remembered: a number equal to the one in it
    keeps its cell (not formatted again), and when every cell is the same the very same tuple is
    returned, so the table skips the row by identity. Both are the cells a fresh call would make."""
    inputs = state if isinstance(state, RowInputs) else RowInputs.of(state)
    key = f"{h.name}/{e.id}"
    previous = _PREVIOUS.get(key)
    snap = h.snapshot
    live = h.live
    error = e.stats is None and e.state in RUNNING_STATES
    stats_live = live and stats_are_live(e, snap.interval_s if snap is not None else None)
    muted: Tone = "live" if live else "stale"
    gpus_text, gpu_frac = engine_gpus(snap, e, gpus_by_index)
    restarts = e.restarts
    if restarts is None:
        restarts_cell = shared_cell("", "missing", None)
    else:
        restarts_cell = shared_cell(
            str(restarts), "stale" if not live else ("warn" if restarts else "zero"), restarts
        )
    model = _model(e)
    kv, queue, ttft, gen = _metric_cells(e, stats_live, error, inputs, previous)
    row = (
        shared_cell("  " + e.id, muted, key),
        _state_cell(h, e, now, stats_live, error, frozen=stats_live and "stale" in (ttft.tone, gen.tone)),
        _kind_cell(e, live, muted),
        shared_cell(model, muted, model),
        shared_cell(gpus_text, muted, gpu_frac),  # the host row says where GPU data comes from (SIMULATED)
        kv,
        queue,
        ttft,
        gen,
        restarts_cell,
        _alerts_cell(h, e, inputs),
    )
    if previous is not None and all(a is b for a, b in zip(row, previous, strict=True)):
        return previous
    _PREVIOUS[key] = row
    return row


# --- host rows ----------------------------------------------------------------------------------------

_BLANK = Cell("", "live", None)


def host_row(h: HostState, now: float, state: FleetState | RowInputs) -> Row:
    """A host's group row: its state, where GPU data comes from, its engines, GPU memory, the summed
    live generation rate, restarts and its own (host-level and console-side) alerts."""
    inputs = state if isinstance(state, RowInputs) else RowInputs.of(state)
    snap = h.snapshot
    engines = snap.engines if snap else ()
    gpus = snap.gpus if snap else ()
    n_gpus = len(gpus)
    used = sum(g.mem_used_bytes or 0 for g in gpus)
    total = sum(g.mem_total_bytes or 0 for g in gpus)
    gpu_text = f"{n_gpus} GPU{'s' if n_gpus != 1 else ''}" + (f" {gib(used)}/{gib(total)}G" if total else "")
    tone: Tone = "live" if h.live else "stale"
    alerts: Sequence[Alert] = h.alerts + snap.alerts if snap else h.alerts
    acked = sum(1 for a in alerts if (h.name, "", a.code, a.since or "") in inputs.acknowledged)
    restarts = sum(e.restarts or 0 for e in engines)
    src = gpu_source_cell(snap.gpu_source if snap else None)
    meta = f"{len(engines)} engine{'s' if len(engines) != 1 else ''}"
    watched = sum(1 for e in engines if not e.managed)
    if watched:
        meta += f" ({watched} watched)"
    if snap is not None and snap.agent_version:
        meta += f" · agent {snap.agent_version}"
    if h.route:
        meta += f" · {h.route}"
    return (
        shared_cell(h.name, "live", h.name),
        host_state_cell(h, now),
        src if h.live or src.tone == "missing" else Cell(src.text, "stale", src.sort_key),
        shared_cell(meta if snap else (h.route or ""), "dim", len(engines)),
        shared_cell(gpu_text if snap else "", tone, used / total if total else None),
        _BLANK,
        _BLANK,
        _BLANK,
        _host_gen_cell(h, snap),
        shared_cell(str(restarts) if engines else "", "dim", restarts),
        alerts_cell(alerts, acked),
    )


def _host_gen_cell(h: HostState, snap: HostSnapshot | None) -> Cell:
    """The summed generation rate of the host's engines whose stats are live ("62 (2/4 live)": how many)."""
    if snap is None or not h.live:
        return Cell("", "missing", None)
    gen = [
        e.stats.generation_tokens_per_s
        for e in snap.engines
        if e.stats is not None
        and e.stats.generation_tokens_per_s is not None
        and stats_are_live(e, snap.interval_s)
    ]
    if not gen:
        return Cell("", "missing", None)
    coverage = "" if len(gen) == len(snap.engines) else f" ({len(gen)}/{len(snap.engines)} live)"
    return Cell(rate_text(sum(gen)) + coverage, "live", sum(gen))


__all__ = [
    "COLUMN_PRIORITY",
    "FLEET_COLUMNS",
    "NO_PROGRESS_CODES",
    "RIGHT_COLUMNS",
    "Row",
    "RowInputs",
    "engine_gpus",
    "engine_row",
    "forget_rows_except",
    "host_row",
    "rows_are_timeless",
]
