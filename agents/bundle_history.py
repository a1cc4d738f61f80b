"""What a bundle derives from the recorded snapshots: alert history with evidence, probe results.

Pure functions over HostSnapshots in time order (the collector's ring). An alert is one incident from the
snapshot it first appears in (``raised``, with the evidence then) to the first snapshot without it
(``cleared``, with the last evidence seen); one still active at the end of the window is ``active``. An
incident is keyed by where it is (host or engine), its code and its ``since``. Health checks and canaries
are listed once each (keyed by their own timestamps), with their timings.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from agents.schema import Alert, HostSnapshot

Key = tuple[str | None, str, str | None]  # (engine id or None for the host, code, since)


def _alert_row(transition: str, snap: HostSnapshot, engine: str | None, alert: Alert) -> dict[str, Any]:
    return {
        "at": snap.taken_at,
        "seq": snap.seq,
        "transition": transition,
        "scope": "engine" if engine else "host",
        "engine": engine,
        "code": alert.code,
        "severity": alert.severity,
        "since": alert.since,
        "summary": alert.summary,
        "evidence": alert.evidence,
    }


def _alerts_of(snap: HostSnapshot, engine: str | None) -> Iterable[tuple[str | None, Alert]]:
    for a in snap.alerts:
        yield None, a
    for e in snap.engines:
        if engine is None or e.id == engine:
            for a in e.alerts:
                yield e.id, a


def alert_history(snapshots: Sequence[HostSnapshot], engine: str | None = None) -> list[dict[str, Any]]:
    """Alert transitions over ``snapshots`` (oldest first): raised / cleared / active, with evidence.
    ``engine``: only that engine's alerts (host-level alerts are always kept)."""
    rows: list[dict[str, Any]] = []
    open_: dict[Key, tuple[str | None, Alert]] = {}
    last: HostSnapshot | None = None
    for snap in snapshots:
        seen: dict[Key, tuple[str | None, Alert]] = {}
        for eid, alert in _alerts_of(snap, engine):
            key = (eid, alert.code, alert.since)
            seen[key] = (eid, alert)
            if key not in open_:
                rows.append(_alert_row("raised", snap, eid, alert))
        for key, (eid, alert) in open_.items():
            if key not in seen:
                rows.append(_alert_row("cleared", snap, eid, alert))
        open_, last = seen, snap
    if last is not None:
        rows.extend(_alert_row("active", last, eid, alert) for eid, alert in open_.values())
    return rows


def probe_history(snapshots: Sequence[HostSnapshot], engine_id: str) -> list[dict[str, Any]]:
    """Every distinct health check and canary of ``engine_id`` over ``snapshots``, with timings."""
    rows: list[dict[str, Any]] = []
    seen_health: set[str] = set()
    seen_canary: set[str] = set()
    for snap in snapshots:
        e = next((x for x in snap.engines if x.id == engine_id), None)
        if e is None:
            continue
        h = e.health
        if h is not None and h.checked_at and h.checked_at not in seen_health:
            seen_health.add(h.checked_at)
            rows.append(
                {
                    "probe": "health",
                    "at": h.checked_at,
                    "ok": h.http_ok,
                    "http_status": h.http_status,
                    "latency_s": h.latency_s,
                    "error": h.error,
                    "engine_state": e.state,
                }
            )
        c = e.canary
        if c is not None and c.at and c.at not in seen_canary:
            seen_canary.add(c.at)
            rows.append(
                {
                    "probe": "canary",
                    "at": c.at,
                    "ok": c.ok,
                    "ttft_s": c.ttft_s,
                    "error": c.error,
                    "engine_state": e.state,
                    "prompt": "ping",
                    "max_tokens": 1,
                }
            )
    rows.sort(key=lambda r: r["at"])
    return rows


def window_facts(snapshots: Sequence[HostSnapshot], requested_s: float, kept_s: float) -> dict[str, Any]:
    """The window a bundle covers: asked for, kept by the agent, and what the snapshots span."""
    first = snapshots[0] if snapshots else None
    last = snapshots[-1] if snapshots else None
    facts: dict[str, Any] = {
        "requested_s": requested_s,
        "from": first.taken_at if first else None,
        "to": last.taken_at if last else None,
        "snapshots": len(snapshots),
        "interval_s": last.interval_s if last else None,
        "first_seq": first.seq if first else None,
        "last_seq": last.seq if last else None,
    }
    if requested_s > kept_s:
        facts["limited_by"] = f"the agent keeps {kept_s:g} s of history (history_s)"
    return facts
