"""``llmconsole bench TARGET``: benchmark an engine — an URL, or ``HOST/ENGINE`` of the fleet.

    llmconsole bench http://127.0.0.1:8000 --concurrency 4 --max-requests 200
    llmconsole bench gpu01/llama --rate 8 --burstiness 0.5 --workload prefix-repetition --json
    llmconsole bench http://127.0.0.1:8000 --sweep 1,2,4,8 --output sweep.json
    llmconsole bench http://127.0.0.1:8000 --slo ttft_p99=0.5,tpot_p99=0.05 --duration 60
    llmconsole bench --compare A.json B.json

Every run is bounded (``--max-requests``, ``--duration``, ``--drain``, ``--request-timeout``, all with
defaults). Ctrl-C (or SIGTERM) stops at once and still prints and saves what finished (exit 130); a second
Ctrl-C abandons. Exit 0 when at least one request completed, 1 when none did, 2 for bad input (including
an unreachable target or one that is not OpenAI-compatible), always as one line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

from console.bench import result as results
from console.bench.announce import AnnounceError, Announcer
from console.bench.options import add_parser
from console.bench.planning import Plan, UsageError, plan
from console.bench.say import PROG, say
from console.bench.session import Session
from console.bench.slo import SloError
from console.bench.target import Target, TargetError, check_openai, close_quietly, resolve
from console.bench.workload import WorkloadError
from console.fleetargs import chosen


def _workload_line(p: Plan) -> str:
    """One line for the engine detail: "random 1024→128 tokens; concurrency 4"."""
    w = p.workload.describe()
    size = (
        f"{w['input_len']}→{w['output_len']} tokens"
        if "input_len" in w
        else f"{w.get('prefix_count')}×{w.get('prefix_len')}-token prefixes +{w.get('suffix_len')}→{w['output_len']}"
        if w["kind"] == "prefix-repetition"
        else f"prompts file →{w['output_len']} tokens"
    )
    loads = (
        ", ".join(s.label() for s in p.shapes[:3]) + (" …" if len(p.shapes) > 3 else "")
        if p.shapes
        else "SLO search"
    )
    return f"{w['kind']} {size}; {loads}"


def _announced_params(p: Plan) -> dict[str, Any]:
    return {
        "workload": p.workload.describe(),
        "bounds": p.bounds.describe(),
        "loads": [s.describe() for s in p.shapes],
        "objectives": len(p.objectives),
    }


async def _bench(args: argparse.Namespace, p: Plan) -> tuple[int, dict[str, Any] | None]:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    main = asyncio.current_task()
    presses = 0

    def on_signal() -> None:
        nonlocal presses
        presses += 1
        if presses == 1:
            stop.set()
            say("stopping: keeping the results so far (Ctrl-C again to abandon)")
        elif main is not None:
            main.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    target: Target | None = None
    session: Session | None = None
    announcer: Announcer | None = None
    try:
        api_key = os.environ.get(args.api_key_env) if args.api_key_env else None
        target = await resolve(
            p.target,
            chosen(args, "bench", "config"),
            args.metrics_url,
            api_key,
            ssh=chosen(args, "bench", "ssh"),
        )
        await check_openai(target, args.model)
        session = Session(args, p, target, stop)
        await session.prepare()
        if target.fleet is not None and target.agent_route is not None:  # load on production: tell the agent
            announcer = Announcer(
                target.agent_route,
                target.agent_token,
                target.fleet["engine"],
                _workload_line(session.plan),
                _announced_params(session.plan),
            )
            await announcer.start()
        mode, runs = await session.runs()
        doc = session.document(mode, runs)
    except (TargetError, WorkloadError, AnnounceError) as exc:
        say(f"error: {exc}")
        return 2, None
    finally:
        if announcer is not None:
            await announcer.end()
        if session is not None:
            await session.aclose()
        await close_quietly(target)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    if stop.is_set():
        return 130, doc
    return (0 if any(r.get("completed") for r in runs) else 1), doc


def run(args: argparse.Namespace) -> int:
    if args.compare:
        return _compare(args)
    try:
        p = plan(args)
    except (UsageError, SloError, WorkloadError, ValueError) as exc:
        say(f"error: {exc}")
        return 2
    try:
        code, doc = asyncio.run(_bench(args, p))
    except (KeyboardInterrupt, asyncio.CancelledError):
        say("abandoned")
        return 130
    if doc is None:
        return code
    text = results.dumps(doc)
    if args.output:
        try:
            Path(args.output).expanduser().write_text(text + "\n", encoding="utf-8")
        except OSError as exc:
            say(f"error: cannot write {args.output}: {exc.strerror or exc}")
            code = 2
    sys.stdout.write((text if args.json else results.table(doc)) + "\n")
    if code == 1:
        say("no request completed: see the errors above")
    return code


def _compare(args: argparse.Namespace) -> int:
    if args.target:
        say("error: --compare takes two result files and no TARGET")
        return 2
    try:
        a, b = (results.load(path) for path in args.compare)
    except results.ResultError as exc:
        say(f"error: {exc}")
        return 2
    if args.json:
        rows = results.compare_rows(a, b)
        doc = {
            "schema": "llmconsole.bench-compare/1",
            "a": args.compare[0],
            "b": args.compare[1],
            "rows": rows,
        }
        sys.stdout.write(results.dumps(doc) + "\n")
    else:
        sys.stdout.write(results.compare_text(a, b, *args.compare) + "\n")
    return 0


__all__ = ["PROG", "add_parser", "plan", "run"]
