"""`llmconsole rules` — Prometheus recording and alerting rules for an llmconsole fleet, as YAML text.

    llmconsole rules [--slo-ttft SECONDS] [--slo-objective FRACTION] > llmconsole-rules.yml

One generator, three sources of series (each a :class:`Dialect`, data only):

- ``llmconsole``: the agent's normalized cumulative series (``llmconsole_engine_*_total``, the TTFT
  histogram, the running/waiting/KV gauges; labels ``host, engine, kind, model``), one rule set for
  vLLM, SGLang and TGI alike;
- ``vllm`` and ``sglang``: the engines' own names, for sites that scrape engines directly (names from
  the engines' sources and docs, old and new where both exist).

Every agent alert passes through (``llmconsole_alerts_active``), and a down agent is an alert of its own.
Rules hold on Prometheus 2.42 and 3.x: ``le`` is written in float form (``"1.0"``, as prometheus-client
writes it and as 3.x normalizes it), numerators and denominators are aggregated before dividing, and zero
traffic yields no series (never NaN) while traffic without the SLO's bucket boundary is an alert itself.

``build_groups()`` and ``render()`` are pure; ``add_parser``/``run`` are the CLI verb.
The dialects, SLO and thresholds are :mod:`console.rules_dialects`, the rule builders :mod:`console.rules_build`,
the YAML :mod:`console.rules_render`; this module is the CLI verb and keeps the old import paths.
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from console.rules_build import Alert, Group, Record, build_groups, num
from console.rules_build import agent_group as agent_group
from console.rules_dialects import AGENT_JOB as AGENT_JOB
from console.rules_dialects import (
    DIALECTS,
    FAST_BURN,
    LLMCONSOLE,
    SGLANG,
    SLO,
    VLLM,
    Dialect,
    Thresholds,
    bucket_note,
)
from console.rules_render import render, rules_yaml

PROG = "llmconsole rules"


def _ttft(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the TTFT threshold must be a positive number of seconds")
    return value


def _objective(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a fraction such as 0.99") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(
            f"{text!r}: the objective must be a fraction between 0 and 1, such as 0.99"
        )
    if FAST_BURN * (1 - value) >= 1:
        floor = 1 - 1 / FAST_BURN
        raise argparse.ArgumentTypeError(
            f"{text!r} leaves an error budget so large that the {num(FAST_BURN)}x burn-rate page could never fire; "
            f"use an objective above {floor:.4f}"
        )
    return value


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "rules",
        help="print Prometheus recording and alerting rules for the fleet (YAML)",
        description="Print Prometheus rules: agent alerts passed through, engine stall/admission/KV/preemption/"
        "queue alerts on the agent's normalized series and on vLLM's and SGLang's own, TTFT burn-rate pages, "
        "fleet TTFT p95 recordings. Load the output with rule_files in prometheus.yml.",
    )
    p.add_argument(
        "--slo-ttft",
        type=_ttft,
        default=SLO.ttft_s,
        metavar="S",
        help=f"TTFT threshold in seconds, a histogram bucket boundary (default {SLO.ttft_s})",
    )
    p.add_argument(
        "--slo-objective",
        type=_objective,
        default=SLO.objective,
        metavar="O",
        help=f"fraction of requests within the threshold (default {SLO.objective})",
    )


def run(args: argparse.Namespace) -> int:
    slo = SLO(ttft_s=args.slo_ttft, objective=args.slo_objective)
    note = bucket_note(slo)
    if note:
        sys.stderr.write(f"{PROG}: note: {note}\n")
    sys.stdout.write(rules_yaml(slo))
    return 0


__all__ = [
    "DIALECTS",
    "LLMCONSOLE",
    "SGLANG",
    "SLO",
    "VLLM",
    "Alert",
    "Dialect",
    "Group",
    "Record",
    "Thresholds",
    "add_parser",
    "bucket_note",
    "build_groups",
    "render",
    "rules_yaml",
    "run",
]
