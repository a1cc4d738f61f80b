"""Alerts: the alerts table (active newest first, then recently cleared) and one alert's evidence line.

Pure: no I/O, no clock. Evidence is formatted by ``widgets.alert_list.format_evidence``, the one
definition the engine screen's AlertList uses too.
"""

from __future__ import annotations

from agents.schema import severity_rank
from console.state import FleetAlert, FleetState
from console.views.cells import SEVERITY_TONE, age_text
from widgets.alert_list import format_evidence
from widgets.tone import Cell, Tone


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
        sev: Tone = SEVERITY_TONE.get(a.alert.severity, "info")
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
    """One alert's evidence, for the line under the alerts table (every pair, none left out)."""
    parts: list[tuple[str, Tone]] = [
        (f"{a.where}  {a.alert.code}", SEVERITY_TONE.get(a.alert.severity, "info"))
    ]
    if a.console:
        parts.append(("  (raised by the console)", "dim"))
    parts.append((f"  since {a.alert.since or '?'}", "dim"))
    if a.alert.evidence:
        parts.append(("\nevidence: " + format_evidence(a.alert.evidence, limit=None), "live"))
    return parts


def alert_time(a: FleetAlert) -> str:
    s = a.alert.since or ""
    return s[11:19] if len(s) >= 19 else s


__all__ = ["alert_detail", "alert_rows", "alert_time"]
