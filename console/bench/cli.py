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
import contextlib
import math
import os
import random
import signal
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from console.bench import result as results
from console.bench.announce import AnnounceError, Announcer
from console.bench.enginewatch import EngineWatch
from console.bench.gpuwatch import GpuWatch
from console.bench.http import Client
from console.bench.load import Bounds, Runner, Shape, check_bounds, check_shape
from console.bench.progress import Progress
from console.bench.slo import DEFAULT_MAX_ERROR_RATE, Objective, RateSearch, SloError, goodput_check, verdict
from console.bench.slo import describe as describe_slo
from console.bench.slo import parse as parse_slo
from console.bench.stats import summarize
from console.bench.target import Target, TargetError, chars_per_token, check_openai, close_quietly, resolve
from console.bench.workload import (
    DEFAULT_CHARS_PER_TOKEN,
    KINDS,
    Prompts,
    RequestFormat,
    TextMaker,
    WorkloadError,
    WorkloadSpec,
)
from console.bench.workload import check as check_workload
from console.fleetargs import add_fleet_arguments, chosen

PROG = "llmconsole bench"
LONG_PROMPT_DEFAULT = 16384
LONG_PROMPT_SHARE = 0.9  # of the engine's max_model_len, when it says
CALIBRATION_CHARS = 4000


class UsageError(Exception):
    """Bad command line; one line."""


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "bench",
        help="benchmark an engine (URL or HOST/ENGINE): latency, throughput, goodput, engine metrics",
        description="Drive an OpenAI-compatible engine with generated load and report TTFT, ITL, TPOT (vLLM's "
        "definition), latency, throughput, goodput and the engine's own /metrics over the run. Always bounded; "
        "Ctrl-C keeps partial results.",
    )
    p.add_argument(
        "target", nargs="?", metavar="TARGET", help="http://host:port, or HOST/ENGINE of the fleet"
    )
    add_fleet_arguments(p, "bench")  # --config / --ssh: the fleet that HOST/ENGINE names
    p.add_argument("--compare", nargs=2, metavar=("A.json", "B.json"), help="print two results side by side")
    g = p.add_argument_group("request")
    g.add_argument(
        "--model", help="model to ask for (default: the engine's first, or the fleet's served name)"
    )
    g.add_argument(
        "--endpoint",
        choices=("completions", "chat"),
        default="completions",
        help="/v1/completions (default) or /v1/chat/completions",
    )
    g.add_argument(
        "--ignore-eos", action="store_true", help="ask for exactly --output-len tokens (vLLM, SGLang)"
    )
    g.add_argument("--api-key-env", metavar="NAME", help="environment variable holding the engine's API key")
    g = p.add_argument_group("load (one of)")
    g.add_argument(
        "--concurrency",
        type=int,
        metavar="N",
        help="closed loop: N requests in flight (default 1); "
        "with --rate or a rate sweep, at most N in flight",
    )
    g.add_argument("--rate", type=float, metavar="R", help="open loop: R requests/s, gamma arrivals")
    g.add_argument(
        "--burstiness",
        type=float,
        default=1.0,
        metavar="B",
        help="gamma shape of the arrivals: 1 = Poisson (default), <1 burstier, >1 smoother",
    )
    g.add_argument("--sweep", metavar="LIST", help="one run per value, e.g. 1,2,4,8 (see --sweep-over)")
    g.add_argument(
        "--sweep-over",
        choices=("concurrency", "rate"),
        default="concurrency",
        help="what --sweep values are (default concurrency)",
    )
    g.add_argument(
        "--slo",
        metavar="SPEC",
        help="e.g. ttft_p99=0.5,tpot_p99=0.05 (seconds): report goodput and "
        "find the highest rate meeting every objective (or the best --sweep value)",
    )
    g.add_argument(
        "--slo-start-rate", type=float, default=1.0, metavar="R", help="search start (default 1/s)"
    )
    g.add_argument("--slo-max-runs", type=int, default=8, metavar="N", help="search runs at most (default 8)")
    g.add_argument(
        "--slo-max-error-rate",
        type=float,
        default=DEFAULT_MAX_ERROR_RATE,
        metavar="F",
        help=f"a run with more failed requests misses the SLO (default {DEFAULT_MAX_ERROR_RATE})",
    )
    g = p.add_argument_group("workload (generated offline)")
    g.add_argument("--workload", choices=KINDS, default="random", help="default random")
    g.add_argument(
        "--input-len",
        type=int,
        metavar="TOKENS",
        help=f"prompt tokens (random 1024; long-prompt {LONG_PROMPT_SHARE * 100:.0f}%% of the engine's "
        f"max_model_len, else {LONG_PROMPT_DEFAULT})",
    )
    g.add_argument("--output-len", type=int, default=128, metavar="TOKENS", help="max_tokens (default 128)")
    g.add_argument(
        "--range-ratio", type=float, default=0.0, metavar="F", help="lengths uniform in ±F (default 0)"
    )
    g.add_argument(
        "--prefix-count", type=int, default=10, metavar="N", help="prefix-repetition: prefixes (10)"
    )
    g.add_argument(
        "--prefix-len", type=int, default=256, metavar="TOKENS", help="prefix-repetition: prefix (256)"
    )
    g.add_argument(
        "--suffix-len", type=int, default=256, metavar="TOKENS", help="prefix-repetition: suffix (256)"
    )
    g.add_argument(
        "--prompts-file", metavar="PATH", help='jsonl: one {"prompt": ...} or {"messages": [...]} per line'
    )
    g.add_argument(
        "--chars-per-token",
        type=float,
        metavar="F",
        help="length ratio without a tokenizer (default: "
        f"measured by the engine's /tokenize where it has one, else {DEFAULT_CHARS_PER_TOKEN})",
    )
    g.add_argument(
        "--seed",
        type=int,
        help="prompt and arrival seed (default: a fresh one, recorded in the result; "
        "a fixed seed repeats the same prompts, which a prefix cache remembers between runs)",
    )
    g = p.add_argument_group("bounds (every run)")
    g.add_argument(
        "--max-requests", type=int, default=1000, metavar="N", help="requests per run (default 1000)"
    )
    g.add_argument("--duration", type=float, default=300.0, metavar="S", help="seconds sending per run (300)")
    g.add_argument(
        "--drain",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds the last requests may finish in, then they are cancelled (30)",
    )
    g.add_argument("--request-timeout", type=float, default=300.0, metavar="S", help="per request (300)")
    g = p.add_argument_group("engine and output")
    g.add_argument("--metrics-url", metavar="URL", help="the engine's /metrics (default TARGET/metrics)")
    g.add_argument("--no-engine-metrics", action="store_true", help="do not scrape the engine's /metrics")
    g.add_argument("--metrics-interval", type=float, default=1.0, metavar="S", help="gauge sampling (1.0)")
    g.add_argument("--gpus", type=int, metavar="N", help="GPUs the engine uses (for per-GPU throughput)")
    g.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    g.add_argument("--output", metavar="PATH", help="also write the JSON result to PATH")
    g.add_argument(
        "--detailed", action="store_true", help="keep per-request arrays (ttfts, itls, ...) in JSON"
    )
    g.add_argument("--quiet", action="store_true", help="no live progress on stderr")


# --- the plan: everything checked before any request -------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Plan:
    target: str
    shapes: tuple[Shape, ...]  # empty: SLO search
    bounds: Bounds
    workload: WorkloadSpec
    objectives: tuple[Objective, ...]
    explicit_cpt: bool
    explicit_input_len: bool
    cap: int | None  # --concurrency with a rate


def _numbers(text: str, integer: bool) -> list[float]:
    out: list[float] = []
    for part in (p.strip() for p in text.split(",")):
        try:
            value = int(part) if integer else float(part)
        except ValueError:
            kind = "whole numbers" if integer else "numbers"
            raise UsageError(f"--sweep: {part!r} is not a number (give {kind} like 1,2,4,8)") from None
        if not (math.isfinite(value) and value > 0):
            raise UsageError(f"--sweep: values must be greater than 0, got {part}")
        out.append(value)
    if not out:
        raise UsageError("--sweep: give at least one value")
    return out


def _shapes(args: argparse.Namespace, objectives: tuple[Objective, ...]) -> tuple[Shape, ...]:
    b = args.burstiness
    if args.sweep is not None:
        if args.rate is not None:
            raise UsageError("give --sweep or --rate, not both")
        if args.sweep_over == "concurrency":
            if args.concurrency is not None:
                raise UsageError("--concurrency and --sweep of concurrencies: give one")
            return tuple(Shape(concurrency=int(v)) for v in _numbers(args.sweep, True))
        return tuple(
            Shape(concurrency=args.concurrency, rate=v, burstiness=b) for v in _numbers(args.sweep, False)
        )
    if objectives and args.rate is None:
        return ()  # search the rate
    if args.rate is not None:
        return (Shape(concurrency=args.concurrency, rate=args.rate, burstiness=b),)
    return (Shape(concurrency=args.concurrency or 1),)


def plan(args: argparse.Namespace) -> Plan:
    """Every check that needs no network; UsageError/SloError/WorkloadError/ValueError (one line)."""
    if not args.target:
        raise UsageError("give a TARGET (http://host:port or HOST/ENGINE), or --compare A.json B.json")
    objectives = parse_slo(args.slo) if args.slo is not None else ()
    if not 0 <= args.slo_max_error_rate <= 1:
        raise UsageError(f"--slo-max-error-rate must be between 0 and 1, got {args.slo_max_error_rate:g}")
    if args.slo_max_runs < 1 or not (math.isfinite(args.slo_start_rate) and args.slo_start_rate > 0):
        raise UsageError("--slo-max-runs must be 1 or more and --slo-start-rate greater than 0")
    shapes = _shapes(args, objectives)
    for shape in shapes or (
        Shape(concurrency=args.concurrency, rate=args.slo_start_rate, burstiness=args.burstiness),
    ):
        check_shape(shape)
    bounds = Bounds(args.max_requests, args.duration, args.drain, args.request_timeout)
    check_bounds(bounds)
    if args.gpus is not None and args.gpus < 1:
        raise UsageError(f"--gpus must be 1 or more, got {args.gpus}")
    if not (math.isfinite(args.metrics_interval) and args.metrics_interval >= 0.1):
        raise UsageError("--metrics-interval must be 0.1 s or more")
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1 << 31)
    input_len = (
        args.input_len
        if args.input_len is not None
        else (LONG_PROMPT_DEFAULT if args.workload == "long-prompt" else 1024)
    )
    spec = WorkloadSpec(
        args.workload,
        input_len,
        args.output_len,
        args.range_ratio,
        args.prefix_count,
        args.prefix_len,
        args.suffix_len,
        args.prompts_file,
        args.seed,
        args.chars_per_token or DEFAULT_CHARS_PER_TOKEN,
    )
    check_workload(spec)
    if spec.kind == "jsonl":
        first = Prompts(spec)  # reads and checks every line now
        if args.endpoint == "completions" and any(p.messages is not None for p in first.file_prompts):
            raise UsageError(f'{spec.path} has "messages" prompts: use --endpoint chat')
    if args.output:
        folder = Path(args.output).expanduser().resolve().parent
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            raise UsageError(f"--output: cannot write in {folder}")
    if args.api_key_env and not os.environ.get(args.api_key_env):
        raise UsageError(f"--api-key-env: ${args.api_key_env} is not set")
    return Plan(
        args.target,
        shapes,
        bounds,
        spec,
        objectives,
        args.chars_per_token is not None,
        args.input_len is not None,
        args.concurrency,
    )


# --- running ------------------------------------------------------------------------------------------------
class Session:
    """One benchmark: the target, the prompts, the runs."""

    def __init__(self, args: argparse.Namespace, p: Plan, target: Target, stop: asyncio.Event) -> None:
        self.args, self.plan, self.target, self.stop = args, p, target, stop
        self.client = Client(target.origin, target.headers)
        self.tokenization: dict[str, Any] = {}
        self.prompts: Prompts | None = None
        self.fmt: RequestFormat | None = None

    async def prepare(self) -> None:
        spec = self.plan.workload
        if self.plan.explicit_cpt:
            self.tokenization = {
                "source": "characters (--chars-per-token)",
                "chars_per_token": spec.chars_per_token,
            }
        else:
            sample = TextMaker(random.Random(spec.seed + 1)).text(CALIBRATION_CHARS)
            measured = await chars_per_token(self.target, sample)
            if measured is not None:
                spec = replace(spec, chars_per_token=measured)
                self.tokenization = {
                    "source": "the engine's tokenizer (POST /tokenize)",
                    "chars_per_token": measured,
                }
            else:
                self.tokenization = {
                    "source": "characters (no tokenizer at hand)",
                    "chars_per_token": spec.chars_per_token,
                }
        mlen = self.target.max_model_len
        if spec.kind == "long-prompt" and not self.plan.explicit_input_len and mlen:
            spec = replace(spec, input_len=max(1, int(mlen * LONG_PROMPT_SHARE) - spec.output_len))
        if mlen and spec.kind != "jsonl":
            longest = (
                spec.prefix_len + spec.suffix_len
                if spec.kind == "prefix-repetition"
                else math.ceil(spec.input_len * (1 + spec.range_ratio))
            )
            if longest + spec.output_len > mlen:
                _say(
                    f"warning: prompts of up to {longest} + {spec.output_len} tokens exceed the engine's "
                    f"max_model_len {mlen}: expect rejected requests"
                )
        self.plan = replace(self.plan, workload=spec)
        self.prompts = Prompts(spec)
        assert self.target.model is not None
        self.fmt = RequestFormat(
            self.args.endpoint, self.target.model, self.args.ignore_eos, self.target.prefix
        )

    async def one_run(self, shape: Shape) -> dict[str, Any]:
        assert self.prompts is not None and self.fmt is not None
        args = self.args
        watch = (
            None
            if args.no_engine_metrics
            else EngineWatch(self.target.metrics_url, self.target.kind, args.metrics_interval)
        )
        if watch is not None:
            await watch.begin()
        gpu_watch = None
        if self.target.fleet is not None and self.target.agent_route is not None:
            gpu_watch = GpuWatch(
                self.target.agent_route, self.target.agent_token, self.target.fleet["engine"]
            )
            gpu_watch.begin()
        runner = Runner(self.client, self.fmt, self.prompts, shape, self.plan.bounds, self.stop, args.seed)
        outcome = await runner.run(None if args.quiet else Progress(shape.label()))
        engine = await watch.end() if watch is not None else None
        gpu = await gpu_watch.end(outcome.ended - outcome.started) if gpu_watch is not None else None
        if watch is not None and watch.kind and self.target.kind is None:
            self.target.kind = watch.kind
        good = goodput_check(self.plan.objectives) if self.plan.objectives else None
        run: dict[str, Any] = {
            "load": shape.describe(),
            **summarize(outcome, good, args.detailed),
            "engine_metrics": engine,
        }
        if gpu is not None:
            energy = gpu["energy_j"]
            for key, tokens in (
                ("output_tokens_per_joule", run["total_output_tokens"]),
                ("total_tokens_per_joule", run["total_input_tokens"] + run["total_output_tokens"]),
            ):
                gpu[key] = tokens / energy if energy else None
                if gpu[key] is None:
                    gpu["null_reasons"][key] = gpu["null_reasons"].get("energy_j", "no energy measured")
            run["gpu_metrics"] = gpu
        if self.plan.objectives:
            met, misses = verdict(run, self.plan.objectives, args.slo_max_error_rate)
            run["slo_met"], run["slo_misses"] = met, misses
        return run

    async def runs(self) -> tuple[str, list[dict[str, Any]]]:
        out: list[dict[str, Any]] = []
        if self.plan.shapes:
            for shape in self.plan.shapes:
                out.append(await self.one_run(shape))
                if self.stop.is_set():
                    break
            return ("sweep" if len(self.plan.shapes) > 1 else "single"), out
        search = RateSearch(self.args.slo_start_rate, max_runs=self.args.slo_max_runs)
        while (rate := search.propose()) is not None and not self.stop.is_set():
            run = await self.one_run(Shape(self.plan.cap, rate, self.args.burstiness))
            out.append(run)
            if self.stop.is_set():
                break
            search.report(rate, bool(run.get("slo_met")))
        return "slo-search", out

    def document(self, mode: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
        args, spec = self.args, self.plan.workload
        gpus = args.gpus or self.target.gpus
        target = {**self.target.describe(), "gpus": gpus}
        slo = describe_slo(self.plan.objectives, args.slo_max_error_rate) if self.plan.objectives else None
        return results.build(
            mode=mode,
            target=target,
            model=self.target.model or "",
            endpoint=args.endpoint,
            workload={**spec.describe(), "tokenization": self.tokenization, "ignore_eos": args.ignore_eos},
            bounds=self.plan.bounds.describe(),
            slo=slo,
            runs=runs,
            gpus=gpus,
            interrupted=self.stop.is_set(),
        )

    async def aclose(self) -> None:
        await self.client.aclose()


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


def _say(text: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(f"{PROG}: {text}\n")
        sys.stderr.flush()


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
            _say("stopping: keeping the results so far (Ctrl-C again to abandon)")
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
        _say(f"error: {exc}")
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
        _say(f"error: {exc}")
        return 2
    try:
        code, doc = asyncio.run(_bench(args, p))
    except (KeyboardInterrupt, asyncio.CancelledError):
        _say("abandoned")
        return 130
    if doc is None:
        return code
    text = results.dumps(doc)
    if args.output:
        try:
            Path(args.output).expanduser().write_text(text + "\n", encoding="utf-8")
        except OSError as exc:
            _say(f"error: cannot write {args.output}: {exc.strerror or exc}")
            code = 2
    sys.stdout.write((text if args.json else results.table(doc)) + "\n")
    if code == 1:
        _say("no request completed: see the errors above")
    return code


def _compare(args: argparse.Namespace) -> int:
    if args.target:
        _say("error: --compare takes two result files and no TARGET")
        return 2
    try:
        a, b = (results.load(path) for path in args.compare)
    except results.ResultError as exc:
        _say(f"error: {exc}")
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


__all__ = ["add_parser", "plan", "run"]
