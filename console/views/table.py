"""The fleet table (host rows above their engines, filtered and sorted) and the header counts above it.

Pure: no Textual, no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from agents.schema import EngineSnapshot
from console.state import FleetState, HostState
from console.views.cells import SEVERITY_TONE, STATE_RANK, engine_state, host_state_cell
from console.views.filters import matches, parse_filter
from console.views.rows import (
    FLEET_COLUMNS,
    Row,
    RowInputs,
    engine_row,
    forget_rows_except,
    host_row,
    rows_are_timeless,
)
from widgets.badge import state_tone
from widgets.tone import Cell, Tone, sort_value

SORTABLE = ("name", "state", "alerts", "ttft", "kv", "queue", "gen", "restarts", "model", "kind")
DESCENDING = frozenset({"state", "alerts", "ttft", "kv", "queue", "gen", "restarts"})  # worst / biggest first


@dataclass(frozen=True, slots=True)
class FleetTable:
    rows: dict[str, Row]
    order: list[str]
    groups: frozenset[str]
    engine_keys: frozenset[str] = field(default_factory=frozenset)


def engine_key(host: str, engine: str) -> str:
    return f"{host}/{engine}"


def split_key(key: str) -> tuple[str, str | None]:
    """ "host/engine" → (host, engine); "host" → (host, None). Host names have no "/"."""
    host, sep, engine = key.partition("/")
    return host, (engine if sep else None)


Group = tuple[str, Row, list[tuple[str, Row]]]


def fleet_table(
    state: FleetState, now: float, query: str = "", sort: str = "name", reverse: bool = False
) -> FleetTable:
    """Rows keyed "host" and "host/engine": each host (a group row) above its engines. ``sort`` orders
    the hosts by their row's key (host rows aggregate their engines' worst value) and the engines
    within each host; ``query`` is a filter (parse_filter); a host shows if it or any engine passes."""
    terms = parse_filter(query)
    col = next((i for i, (k, _) in enumerate(FLEET_COLUMNS) if k == sort), 0)
    descending = (sort in DESCENDING) != reverse
    inputs = RowInputs.of(state)
    groups: list[Group] = []
    for h in state.hosts.values():
        snap = h.snapshot
        host_cells, all_rows = _host_rows(h, now, inputs)
        if terms:
            engine_rows = [(key, row) for e, key, row in all_rows if matches(terms, h, e)]
            if not engine_rows and (snap is not None and snap.engines or not matches(terms, h, None)):
                continue
        else:
            engine_rows = [(key, row) for _, key, row in all_rows]
        name = h.name
        if sort != "name" and engine_rows:
            top = _aggregate(host_cells[col], [cells[col] for _, cells in engine_rows], descending)
            host_cells = (*host_cells[:col], top, *host_cells[col + 1 :])
        groups.append((name, host_cells, engine_rows))
    if sort != "name" or reverse:
        groups.sort(key=lambda g: _key(g[1][col], descending), reverse=False)
        for _, _, engine_rows in groups:
            engine_rows.sort(key=lambda r: _key(r[1][col], descending))
    rows: dict[str, Row] = {}
    engine_keys = []
    for name, cells, engine_rows in groups:
        rows[name] = cells
        for key, ecells in engine_rows:
            rows[key] = ecells
            engine_keys.append(key)
    forget_rows_except(rows)
    if len(_HOST_ROWS) > len(state.hosts) + _HOST_ROWS_SLACK:
        for gone in [n for n in _HOST_ROWS if n not in state.hosts]:
            del _HOST_ROWS[gone]
    return FleetTable(rows, list(rows), frozenset(g[0] for g in groups), frozenset(engine_keys))


EngineRows = list[tuple[EngineSnapshot, str, Row]]
_HOST_ROWS: dict[str, tuple[HostState, RowInputs, Row, EngineRows]] = {}  # host -> its rows, while timeless
_HOST_ROWS_SLACK = 256


def _host_rows(h: HostState, now: float, inputs: RowInputs) -> tuple[Row, EngineRows]:
    """The host's row and each engine's (unfiltered, unsorted). A host whose state is the very same
    object as last round, with the same inputs, and whose rows show no age (rows_are_timeless) keeps
    them: between two scrapes most of a big fleet is such (bench/bench_prometheus.py)."""
    kept = _HOST_ROWS.get(h.name)
    if kept is not None and kept[0] is h and (kept[1] is inputs or kept[1] == inputs):
        return kept[2], kept[3]
    snap = h.snapshot
    host_cells = host_row(h, now, inputs)
    by_index = {g.index: g for g in snap.gpus} if snap is not None else {}
    name = h.name
    engine_rows = [
        (e, f"{name}/{e.id}", engine_row(h, e, now, inputs, by_index)) for e in (snap.engines if snap else ())
    ]
    if rows_are_timeless(h):
        _HOST_ROWS[name] = (h, inputs, host_cells, engine_rows)
    else:
        _HOST_ROWS.pop(name, None)
    return host_cells, engine_rows


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

_HOST_ORDER = ("unreachable", "unauthorized", "incompatible", "stale", "pending", "fresh")


def header_counts(state: FleetState) -> list[Cell]:
    """ "HOSTS 3 fresh · 1 stale  ENGINES 9 ready · 1 hung  ALERTS 2 critical · 1 warning" as cells."""
    hosts: dict[str, int] = {}
    engines: dict[str, int] = {}
    for h in state.hosts.values():
        hosts[h.status] = hosts.get(h.status, 0) + 1
        if h.snapshot is not None:
            for e in h.snapshot.engines:
                label = engine_state(e) if h.live else "unknown"  # crash-looping is never counted ready
                engines[label] = engines.get(label, 0) + 1
    severities: dict[str, int] = {}
    for a in state.alerts:
        if a.key not in state.acknowledged:
            severities[a.alert.severity] = severities.get(a.alert.severity, 0) + 1
    out: list[Cell] = []
    _section(out, "HOSTS", hosts, _HOST_ORDER, lambda s: host_state_cell(HostState("", status=s), 0).tone)
    _section(
        out,
        "ENGINES",
        engines,
        (*STATE_RANK, "unknown"),
        lambda s: "stale" if s == "unknown" else state_tone(s),
    )
    _section(
        out, "ALERTS", severities, ("critical", "warning", "info"), lambda s: SEVERITY_TONE.get(s, "info")
    )
    return out[:-1]


def _section(
    out: list[Cell],
    title: str,
    counts: Mapping[str, int],
    order: Sequence[str],
    tone_of: Callable[[str], Tone],
) -> None:
    out.append(Cell(f"{title} ", "dim"))
    items = sorted(
        counts.items(), key=lambda kv: (order.index(kv[0]) if kv[0] in order else len(order), kv[0])
    )
    if not items:
        out.append(Cell("none", "dim"))
    for i, (name, n) in enumerate(items):
        if i:
            out.append(Cell(" · ", "dim"))
        out.append(Cell(f"{n} {name}", tone_of(name)))
    out.append(Cell("   ", "live"))


__all__ = ["DESCENDING", "SORTABLE", "FleetTable", "engine_key", "fleet_table", "header_counts", "split_key"]
