"""``llmconsole replay BUNDLE``: the console on a recorded incident bundle, or its status at one moment.

::

    llmconsole replay BUNDLE [--at TIME]                 the console, cursor at TIME (default: the end)
    llmconsole replay BUNDLE --status [--at TIME] [--json]   the fleet table (or JSON) as recorded at TIME

The bundle is verified first (every file's SHA-256, the schema's major version); a bad bundle is one line
and exit 2. Exit codes of ``--status`` are those of ``llmconsole status`` at that moment (0: every engine
ready and no critical alert; 1: anything else).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from agents.bundle_files import BundleError
from console.bundle_read import load_bundle
from console.launch import PROG
from console.replay import ReplayError, ReplaySource, parse_at
from console.settings import ConsoleConfig
from console.state import FleetState, apply
from console.status import exit_code, render_json, render_table


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "replay",
        help="replay an incident bundle in the console (or print its status at a moment)",
        description="Open a bundle written by `llmconsole bundle` in the console, with a time cursor: "
        "[ ] one recorded moment back/forward, { } one minute, space play/pause. Actions are disabled. "
        "--status prints the fleet table (or --json) as recorded at --at instead; exit codes as `status`.",
    )
    p.add_argument("bundle", metavar="BUNDLE", help="a .tar.gz written by `llmconsole bundle`")
    p.add_argument(
        "--at",
        metavar="TIME",
        default="end",
        help="start, end (default), an RFC 3339 time, +OFFSET from the start or -OFFSET from the end "
        "(+90s, +2m, -1h5m)",
    )
    p.add_argument("--status", action="store_true", help="print the fleet as recorded at --at and exit")
    p.add_argument("--json", action="store_true", help="with --status: print JSON")


def _fail(message: str, as_json: bool) -> int:
    if as_json:
        sys.stdout.write(
            json.dumps({"schema": "llmconsole.status/1", "exit_code": 2, "error": message}) + "\n"
        )
    sys.stderr.write(f"{PROG} replay: {message}\n")
    return 2


def open_source(path: str, at: str) -> ReplaySource:
    """The verified bundle as a replay source with its cursor at ``at``; BundleError/ReplayError on bad input."""
    p = Path(path)
    if not p.is_file():
        raise ReplayError(f"{path}: no such file")
    source = ReplaySource(load_bundle(p), name=p.name)
    source.seek(parse_at(at, source.start, source.end))
    return source


async def status_at(source: ReplaySource, config: ConsoleConfig) -> FleetState:
    results = await source.poll()
    return apply(FleetState.initial(config, source.clock()), results, source.clock(), source.wall())


def run(args: argparse.Namespace) -> int:
    as_json = bool(args.json)
    if as_json and not args.status:
        return _fail("--json applies only with --status", as_json)
    try:
        source = open_source(args.bundle, args.at)
    except (BundleError, ReplayError) as exc:
        return _fail(str(exc), as_json)
    config = ConsoleConfig()
    if args.status:
        state = asyncio.run(status_at(source, config))
        problems = source.problems()
        out = (
            render_json(state, problems) if as_json else f"{source.label()}\n{render_table(state, problems)}"
        )
        sys.stdout.write(out + "\n")
        return exit_code(state, problems)
    from console.replay_app import ReplayApp

    return int(ReplayApp(source, config, title=f"llmconsole replay {Path(args.bundle).name}").run() or 0)


__all__ = ["add_parser", "open_source", "run", "status_at"]
