"""One benchmark session: the resolved target, the calibrated prompts, and the runs (single, sweep, search)."""

from __future__ import annotations

import argparse
import asyncio
import math
import random
from dataclasses import replace
from typing import Any

from console.bench import result as results
from console.bench.enginewatch import EngineWatch
from console.bench.gpuwatch import GpuWatch
from console.bench.http import Client
from console.bench.load import Runner, Shape
from console.bench.planning import LONG_PROMPT_SHARE, Plan
from console.bench.progress import Progress
from console.bench.say import say
from console.bench.slo import RateSearch, goodput_check, verdict
from console.bench.slo import describe as describe_slo
from console.bench.stats import summarize
from console.bench.target import Target, chars_per_token
from console.bench.workload import Prompts, RequestFormat, TextMaker

CALIBRATION_CHARS = 4000


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
                say(
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


__all__ = ["CALIBRATION_CHARS", "Session"]
