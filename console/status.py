"""``llmconsole status [--config PATH | --prometheus URL [--match M]] [--json]``: one poll, for scripts.

Every configured source is polled once: the direct hosts and each ``[[console.prometheus]]``; with
``--prometheus URL`` only that server (Prometheus, Thanos, VictoriaMetrics), whose ``llmconsole_*``
series of the scrape job ``--match`` selects (default ``job="llmconsole"``) are the fleet.

Exit code: 0 when every host answered, every engine is ready and no alert is critical; 1 otherwise
(an unreachable, unauthorized or incompatible host, an engine not ready, a critical alert, a source that
failed); 2 for bad input or config. A host whose answer cannot be read is that host's error line; the
others still print. A source that failed as a whole is one line (stderr, the table's notes, ``problems``).
Warnings about the console's own setup (a token file others can read) go to stderr (and ``warnings``).

The table uses the same presenters as the console. Plain text has no colours, so values that are not
live (stale stats) are prefixed with "~" and explained under the table; JSON gives stats only when live.
A TTFT p95 the agent read inside a wide histogram bucket shows the bucket's bound ("≤100ms"), explained
under the table too; JSON keeps the number and the agent's ``quantile_buckets``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from agents.schema import Alert, stats_are_live, to_dict
from agents.tomltables import ConfigError
from console.fleet import FleetSource, one_line
from console.fleetargs import add_fleet_arguments, fleet_config
from console.launch import PROG
from console.settings import ConsoleConfig
from console.source import build_fleet_source
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
    add_fleet_arguments(p, "status")
    p.add_argument(
        "--prometheus",
        metavar="URL",
        help="read the fleet from this Prometheus-compatible server instead of the configured sources",
    )
    p.add_argument(
        "--match",
        metavar="MATCHERS",
        help='with --prometheus: the agents\' series (default: job="llmconsole")',
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


async def poll_fleet(
    config: ConsoleConfig, source: FleetSource | None = None
) -> tuple[FleetState, list[str]]:
    """One poll of every source: the reduced state and one line per source that failed."""
    src = source or build_fleet_source(config, fetch_history=False, full=True, one_shot=True)
    try:
        results = await src.poll()
        problems = src.problems()
    finally:
        await src.aclose()
    now = time.monotonic()
    return apply(FleetState.initial(config, now), results, now, time.time()), problems


async def poll_once(config: ConsoleConfig, source: FleetSource | None = None) -> FleetState:
    return (await poll_fleet(config, source))[0]


def exit_code(state: FleetState, problems: Sequence[str] = ()) -> int:
    if problems:
        return 1
    if any(a.alert.severity == "critical" for a in state.alerts):
        return 1
    for h in state.hosts.values():
        if h.status != "fresh" or h.snapshot is None:
            return 1
        if any(e.state != "ready" for e in h.snapshot.engines):
            return 1
    return 0


def render_table(state: FleetState, problems: Sequence[str] = ()) -> str:
    view = fleet_table(state, state.now)
    keys = [k for k, _ in FLEET_COLUMNS]
    header = [label for _, label in FLEET_COLUMNS]
    # agent-supplied text goes through one_line: no escape sequence or newline reaches the terminal
    lines = [
        [
            one_line(("~" + c.display) if c.tone == "stale" and c.display else c.display, 200)
            for c in view.rows[k]
        ]
        for k in view.order
    ]
    widths = [
        max(len(header[i]), *(len(r[i]) for r in lines)) if lines else len(header[i])
        for i in range(len(keys))
    ]

    def fmt(cells: list[str]) -> str:
        out = [
            c.rjust(w) if k in RIGHT_COLUMNS else c.ljust(w)
            for c, w, k in zip(cells, widths, keys, strict=True)
        ]
        return "  ".join(out).rstrip()

    text = [fmt(header)] + [fmt(r) for r in lines]
    notes = [one_line(p) for p in problems]
    if any(c.startswith("~") for r in lines for c in r):
        notes.append("~ = not live: the last known value of a stale or unreachable source")
    ttft = keys.index("ttft")
    if any(r[ttft].lstrip("~")[:1] in ("≤", ">") for r in lines):
        notes.append("≤X / >X = a TTFT p95 inside a wide histogram bucket: at most X / above X")
    for h in state.hosts.values():
        if h.error is not None and h.status == "unauthorized":
            notes.append(f"{h.name}: {h.error.message}")  # "h1: not authorized (HTTP 401): check …"
        elif h.error is not None:
            notes.append(f"{h.name}: {h.status}: {h.error.message}")
    for a in state.alerts:
        if not a.console:
            notes.append(
                one_line(f"{a.alert.severity.upper():8} {a.alert.code} {a.where}: {a.alert.summary}")
            )
    return "\n".join(text + ([""] + notes if notes else []))


def _alert(a: Alert) -> dict[str, Any]:
    return {
        "code": a.code,
        "severity": a.severity,
        "since": a.since,
        "summary": a.summary,
        "evidence": a.evidence,
    }


def _host_json(h: HostState) -> dict[str, Any]:
    snap = h.snapshot
    engines = []
    for e in snap.engines if snap else ():
        live = h.live and stats_are_live(e, snap.interval_s if snap else None)
        engines.append(
            {
                "id": e.id,
                "kind": e.kind,
                "model": e.model,
                "state": e.state,
                "simulated": e.simulated,
                "restarts": e.restarts,
                "gpus": list(e.gpus),
                "stats_live": live,
                "stats_age_s": e.stats_age_s,
                "stats": to_dict(e.stats) if live and e.stats is not None else None,
                "alerts": [_alert(a) for a in e.alerts],
            }
        )
    return {
        "name": h.name,
        "status": h.status,
        "error": None if h.error is None else {"kind": h.error.kind, "message": h.error.message},
        "rtt_s": h.rtt_s,
        "route": h.route,
        "agent_version": snap.agent_version if snap else None,
        "gpu_source": snap.gpu_source if snap else None,
        "seq": snap.seq if snap else None,
        "taken_at": snap.taken_at if snap else None,
        "alerts": [_alert(a) for a in h.alerts] + [_alert(a) for a in (snap.alerts if snap else ())],
        "engines": engines,
    }


def warnings(state: FleetState) -> list[str]:
    """The console-side warnings of every host (each once)."""
    return list(dict.fromkeys(w for h in state.hosts.values() for w in h.warnings))


def render_json(state: FleetState, problems: Sequence[str] = ()) -> str:
    hosts = [_host_json(h) for h in state.hosts.values()]
    severities: dict[str, int] = {}
    for a in state.alerts:
        severities[a.alert.severity] = severities.get(a.alert.severity, 0) + 1
    doc = {
        "schema": STATUS_SCHEMA,
        "exit_code": exit_code(state, problems),
        "alerts": severities,
        "hosts": hosts,
        "warnings": warnings(state),
        "problems": [one_line(p) for p in problems],
    }
    return json.dumps(doc, indent=2)


def _config(args: argparse.Namespace) -> ConsoleConfig:
    """The config to poll; ConfigError (one line) for bad input."""
    config = fleet_config(args, "status")
    url, match = getattr(args, "prometheus", None), getattr(args, "match", None)
    if url is None:
        if match is not None:
            raise ConfigError("--match only applies with --prometheus URL")
        return config
    from console.promsource import config_for_url

    try:
        entry = config_for_url(url, match)
    except ValueError as exc:
        raise ConfigError(f"--prometheus: {exc}" if not str(exc).startswith("--") else str(exc)) from None
    return replace(config, hosts=(), prometheus=(entry,))


def _usage_error(message: str, as_json: bool) -> int:
    """Bad input: one line on stderr, exit 2 — and with ``--json`` a JSON document on stdout as well."""
    if as_json:
        sys.stdout.write(
            json.dumps({"schema": STATUS_SCHEMA, "exit_code": 2, "error": one_line(message)}, indent=2) + "\n"
        )
    sys.stderr.write(f"{PROG} status: {message}\n")
    return 2


def run(args: argparse.Namespace) -> int:
    try:
        config = _config(args)
    except ConfigError as exc:
        return _usage_error(str(exc), args.json)
    if not config.hosts and not config.prometheus:
        return _usage_error(
            f"no hosts configured: add [[console.hosts]] or [[console.prometheus]], or try `{PROG} demo`",
            args.json,
        )
    state, problems = asyncio.run(poll_fleet(config))
    for w in warnings(state):
        sys.stderr.write(f"{PROG} status: warning: {w}\n")
    for p in problems:
        sys.stderr.write(f"{PROG} status: {one_line(p)}\n")
    sys.stdout.write((render_json(state, problems) if args.json else render_table(state, problems)) + "\n")
    return exit_code(state, problems)


__all__ = [
    "add_parser",
    "exit_code",
    "poll_fleet",
    "poll_once",
    "render_json",
    "render_table",
    "run",
    "warnings",
]
