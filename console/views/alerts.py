"""Alerts: the alerts table (root cause first, newest fault first; then recently cleared) and one alert's
evidence line.

Active alerts of one engine (or one host) that describe one fault are grouped (console.views.rootcause):
the cause leads, its consequences follow indented ("└ HEALTH_LIES"). A flapping alert is one row with its
count: the agent's ``raised_count``, or the occurrences the console saw clear in its window, whichever is
larger ("active · flapping ×5"); its earlier cleared occurrences are not listed again.

Pure: no I/O, no clock. Evidence is formatted by ``widgets.alert_list.format_evidence``, the one
definition the engine screen's AlertList uses too.
"""

from __future__ import annotations

from dataclasses import dataclass

from agents.schema import severity_rank
from console.state import FleetAlert, FleetState
from console.views.cells import SEVERITY_TONE, age_text
from console.views.rootcause import group_items
from widgets.alert_list import format_evidence
from widgets.tone import Cell, Tone

Where = tuple[str, str, str]  # host, engine ("" for host level), code


@dataclass(frozen=True, slots=True)
class AlertEntry:
    """One row of the alerts table: ``depth`` 0 for a cause (or a cleared alert), ≥ 1 for a consequence;
    ``count`` how often it was raised (> 1: it flaps); ``cause`` the alert that leads its group."""

    key: str
    alert: FleetAlert
    depth: int = 0
    count: int = 1
    cause: FleetAlert | None = None


def _where(a: FleetAlert) -> Where:
    return (a.host, a.engine or "", a.alert.code)


def _since(a: FleetAlert) -> str:
    return a.alert.since or ""


def alert_entries(state: FleetState) -> list[AlertEntry]:
    """Active alerts grouped by fault (groups newest first, by their newest alert; the cause first, then
    its consequences in tree order), then cleared alerts newest first, one per host/engine/code."""
    recent_by: dict[Where, list[FleetAlert]] = {}
    for a in state.recent:
        recent_by.setdefault(_where(a), []).append(a)
    by_place: dict[tuple[str, str], list[FleetAlert]] = {}
    for a in state.alerts:
        by_place.setdefault((a.host, a.engine or ""), []).append(a)
    groups: list[tuple[str, list[tuple[int, FleetAlert, FleetAlert]]]] = []
    for alerts in by_place.values():
        for cause, below in group_items(
            alerts, lambda a: a.alert.code, lambda a: severity_rank(a.alert.severity)
        ):
            members = [(0, cause, cause)] + [(d, a, cause) for d, a in below]
            groups.append((max(_since(a) for _, a, _ in members), members))
    groups.sort(key=lambda g: g[0], reverse=True)  # stable: equal times keep the reducer's order
    out: list[AlertEntry] = []
    keys: set[str] = set()
    for _, members in groups:
        for depth, a, cause in members:
            count = max(a.alert.raised_count, 1 + len(recent_by.get(_where(a), ())))
            out.append(AlertEntry(_key(a, keys), a, depth, count, None if cause is a else cause))
    active = {_where(a) for a in state.alerts}
    for where, occurrences in recent_by.items():
        if where in active:
            continue  # folded into the active row's count
        newest = occurrences[0]
        count = max(max(o.alert.raised_count for o in occurrences), len(occurrences))
        out.append(AlertEntry(_key(newest, keys), newest, 0, count))
    return out


def _key(a: FleetAlert, taken: set[str]) -> str:
    key = "\x1f".join(a.key) + ("" if a.active else "\x1fcleared")
    base, n = key, 2
    while key in taken:
        key, n = f"{base}#{n}", n + 1
    taken.add(key)
    return key


def alert_rows(state: FleetState) -> tuple[dict[str, list[Cell]], dict[str, FleetAlert]]:
    """The alerts table (see ``alert_entries``) as cells, and each row's alert."""
    rows: dict[str, list[Cell]] = {}
    by_key: dict[str, FleetAlert] = {}
    for entry in alert_entries(state):
        rows[entry.key] = entry_cells(state, entry)
        by_key[entry.key] = entry.alert
    return rows, by_key


def entry_cells(state: FleetState, entry: AlertEntry) -> list[Cell]:
    """SINCE, SEVERITY, CODE (indented under its cause), WHERE, STATUS (with the flapping count), SUMMARY."""
    a = entry.alert
    acked = state.is_acknowledged(a)
    sev: Tone = SEVERITY_TONE.get(a.alert.severity, "info")
    if not a.active:
        status, tone = f"cleared {age_text(state.now - (a.cleared_at or state.now))} ago", "dim"
    elif acked:
        status, tone = "acknowledged", "dim"
    else:
        status, tone = "active", sev
    if entry.count > 1:
        status += f" · flapping ×{entry.count}"
    text_tone: Tone = "live" if tone == sev else "dim"
    code = ("  " * (entry.depth - 1) + "└ " if entry.depth else "") + a.alert.code
    return [
        Cell(alert_time(a) or "?", text_tone, a.alert.since or ""),
        Cell(a.alert.severity.upper(), tone, severity_rank(a.alert.severity)),
        Cell(code, tone, a.alert.code),
        Cell(a.where, text_tone, a.where),
        Cell(status, tone, status),
        Cell(a.alert.summary, text_tone, a.alert.summary),
    ]


def alert_detail(a: FleetAlert, entry: AlertEntry | None = None) -> list[tuple[str, Tone]]:
    """One alert's evidence, for the line under the alerts table (every pair, none left out); with its
    table ``entry``, what caused it and how often it was raised."""
    parts: list[tuple[str, Tone]] = [
        (f"{a.where}  {a.alert.code}", SEVERITY_TONE.get(a.alert.severity, "info"))
    ]
    if entry is not None and entry.cause is not None:
        parts.append((f"  consequence of {entry.cause.alert.code}", "info"))
    if a.console:
        parts.append(("  (raised by the console)", "dim"))
    parts.append((f"  since {a.alert.since or '?'}", "dim"))
    if entry is not None and entry.count > 1:
        parts.append((f"  raised {entry.count}× recently (flapping)", "warn"))
    if a.alert.summary:
        parts.append(("\n" + a.alert.summary, "live"))
    if a.alert.evidence:
        parts.append(("\nevidence: " + format_evidence(a.alert.evidence, limit=None), "live"))
    return parts


def alert_time(a: FleetAlert) -> str:
    s = a.alert.since or ""
    return s[11:19] if len(s) >= 19 else s


__all__ = ["AlertEntry", "alert_detail", "alert_entries", "alert_rows", "alert_time", "entry_cells"]
