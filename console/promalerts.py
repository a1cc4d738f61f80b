"""The alerts a Prometheus evaluates (``/api/v1/alerts``), added to the agents' own in the snapshots.

Pure: no I/O. :func:`rule_alerts` places each firing alert on its host (from the alert's ``host`` label,
else its ``instance``) and engine, leaving out what an agent already reports (same host, engine, code).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from agents.schema import Alert, HostSnapshot, parse_rfc3339, rfc3339
from console.promnames import Notes, show_series


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
            shown = show_series({"__name__": labels.get("alertname", "?"), **labels})
            notes.add("firing alerts name no host of this fleet", shown)
            continue
        ann = a.get("annotations") if isinstance(a.get("annotations"), dict) else {}
        since = a.get("activeAt") if isinstance(a.get("activeAt"), str) else None
        try:
            since = rfc3339(parse_rfc3339(since)) if since else None
        except (ValueError, OverflowError, OSError):
            since = None
        name = labels.get("alertname", "")
        alert = Alert(
            code=labels.get("code") or name or "PROMETHEUS_ALERT",
            severity=labels.get("severity") or "warning",
            since=since,
            summary=str(ann.get("summary") or ann.get("description") or name),
            evidence={"source": "prometheus", "prometheus": source, "alertname": name},
        )
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
    engines = tuple(
        replace(e, alerts=e.alerts + tuple(per_engine[e.id])) if e.id in per_engine else e
        for e in snap.engines
    )
    return replace(snap, alerts=tuple(host_level), engines=engines)


__all__ = ["rule_alerts"]
