"""``llmconsole status [--config PATH] [--json]``: one poll of every host, for scripts and tickets.

Exit code: 0 when every host answered, every engine is ready and no alert is critical; 1 otherwise
(an unreachable or incompatible host, an engine not ready, a critical alert); 2 for bad input or config.

The table uses the same presenters as the console. Plain text has no colours, so values that are not
live (stale stats) are prefixed with "~" and explained under the table; JSON gives stats only when live.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from agents.config import ConfigError
from agents.schema import Alert, stats_are_live, to_dict
from console.launch import PROG, resolve_config
from console.settings import ConsoleConfig
from console.source import HttpFleetSource
from console.state import FleetState, HostState, apply
from console.views import FLEET_COLUMNS, RIGHT_COLUMNS, fleet_table

STATUS_SCHEMA = "llmconsole.status/1"


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "status",
        help="one-shot fleet table (or JSON) for scripts and tickets",
        description="Poll every configured host once and print hosts, engines, key stats and alerts. "
        "Exit 0: all engines ready, no critical alert; 1: anything else; 2: bad config.",
    )
    p.add_argument("--config", metavar="PATH", help="config file (default: the usual search order)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


async def poll_once(config: ConsoleConfig, source: HttpFleetSource | None = None) -> FleetState:
    src = source or HttpFleetSource(config, fetch_history=False)
    try:
        results = await src.poll()
    finally:
        await src.aclose()
    now = time.monotonic()
    return apply(FleetState.initial(config, now), results, now, time.time())


def exit_code(state: FleetState) -> int:
    if any(a.alert.severity == "critical" for a in state.alerts):
        return 1
    for h in state.hosts.values():
        if h.status != "fresh" or h.snapshot is None:
            return 1
        if any(e.state != "ready" for e in h.snapshot.engines):
            return 1
    return 0


def render_table(state: FleetState) -> str:
    view = fleet_table(state, state.now)
    keys = [k for k, _ in FLEET_COLUMNS]
    header = [label for _, label in FLEET_COLUMNS]
    lines = [[("~" + c.display) if c.tone == "stale" else c.display for c in view.rows[k]] for k in view.order]
    widths = [max(len(header[i]), *(len(r[i]) for r in lines)) if lines else len(header[i]) for i in range(len(keys))]

    def fmt(cells: list[str]) -> str:
        out = [c.rjust(w) if k in RIGHT_COLUMNS else c.ljust(w) for c, w, k in zip(cells, widths, keys, strict=True)]
        return "  ".join(out).rstrip()

    text = [fmt(header)] + [fmt(r) for r in lines]
    notes = []
    if any(c.startswith("~") for r in lines for c in r):
        notes.append("~ = not live: the last known value of a stale or unreachable source")
    for h in state.hosts.values():
        if h.error is not None:
            notes.append(f"{h.name}: {h.status}: {h.error.message}")
    for a in state.alerts:
        if not a.console:
            notes.append(f"{a.alert.severity.upper():8} {a.alert.code} {a.where}: {a.alert.summary}")
    return "\n".join(text + ([""] + notes if notes else []))


def _alert(a: Alert) -> dict[str, Any]:
    return {"code": a.code, "severity": a.severity, "since": a.since, "summary": a.summary, "evidence": a.evidence}


def _host_json(h: HostState) -> dict[str, Any]:
    snap = h.snapshot
    engines = []
    for e in snap.engines if snap else ():
        live = h.live and stats_are_live(e, snap.interval_s if snap else None)
        engines.append({
            "id": e.id, "kind": e.kind, "model": e.model, "state": e.state, "simulated": e.simulated,
            "restarts": e.restarts, "gpus": list(e.gpus), "stats_live": live, "stats_age_s": e.stats_age_s,
            "stats": to_dict(e.stats) if live and e.stats is not None else None,
            "alerts": [_alert(a) for a in e.alerts],
        })  # fmt: skip
    return {
        "name": h.name, "status": h.status,
        "error": None if h.error is None else {"kind": h.error.kind, "message": h.error.message},
        "rtt_s": h.rtt_s, "agent_version": snap.agent_version if snap else None,
        "gpu_source": snap.gpu_source if snap else None, "seq": snap.seq if snap else None,
        "taken_at": snap.taken_at if snap else None,
        "alerts": [_alert(a) for a in h.alerts] + [_alert(a) for a in (snap.alerts if snap else ())],
        "engines": engines,
    }  # fmt: skip


def render_json(state: FleetState) -> str:
    hosts = [_host_json(h) for h in state.hosts.values()]
    severities: dict[str, int] = {}
    for a in state.alerts:
        severities[a.alert.severity] = severities.get(a.alert.severity, 0) + 1
    doc = {"schema": STATUS_SCHEMA, "exit_code": exit_code(state), "alerts": severities, "hosts": hosts}
    return json.dumps(doc, indent=2)


def run(args: argparse.Namespace) -> int:
    try:
        config = resolve_config(getattr(args, "config", None) or getattr(args, "console_config", None))
    except ConfigError as exc:
        sys.stderr.write(f"{PROG} status: {exc}\n")
        return 2
    if not config.hosts:
        sys.stderr.write(f"{PROG} status: no hosts configured: add [[console.hosts]] or try `{PROG} demo`\n")
        return 2
    state = asyncio.run(poll_once(config))
    sys.stdout.write((render_json(state) if args.json else render_table(state)) + "\n")
    return exit_code(state)


__all__ = ["add_parser", "exit_code", "poll_once", "render_json", "render_table", "run"]
