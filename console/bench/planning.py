"""The plan of a ``llmconsole bench`` run: every check that needs no network, done before any request."""

from __future__ import annotations

import argparse
import math
import os
import random
from dataclasses import dataclass
from pathlib import Path

from console.bench.load import Bounds, Shape, check_bounds, check_shape
from console.bench.slo import Objective
from console.bench.slo import parse as parse_slo
from console.bench.workload import DEFAULT_CHARS_PER_TOKEN, Prompts, WorkloadSpec
from console.bench.workload import check as check_workload

LONG_PROMPT_DEFAULT = 16384
LONG_PROMPT_SHARE = 0.9  # of the engine's max_model_len, when it says


class UsageError(Exception):
    """Bad command line; one line."""


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


__all__ = ["LONG_PROMPT_DEFAULT", "LONG_PROMPT_SHARE", "Plan", "UsageError", "plan"]
