"""The command line of ``llmconsole bench``: one small function per option group, in ``--help`` order."""

from __future__ import annotations

import argparse
from typing import Any

from console.bench.planning import LONG_PROMPT_DEFAULT, LONG_PROMPT_SHARE
from console.bench.slo import DEFAULT_MAX_ERROR_RATE
from console.bench.workload import DEFAULT_CHARS_PER_TOKEN, KINDS
from console.fleetargs import add_fleet_arguments

Group = argparse._ArgumentGroup  # what add_argument_group returns


def add_parser(subparsers: Any) -> None:
    """Declare the ``bench`` verb and all its options on ``subparsers``."""
    p = subparsers.add_parser(
        "bench",
        help="benchmark an engine (URL or HOST/ENGINE): latency, throughput, goodput, engine metrics",
        description="Drive an OpenAI-compatible engine with generated load and report TTFT, ITL, TPOT (vLLM's "
        "definition), latency, throughput, goodput and the engine's own /metrics over the run. Always bounded; "
        "Ctrl-C keeps partial results.",
    )
    _target_options(p)
    _request_options(p.add_argument_group("request"))
    load = p.add_argument_group("load (one of)")
    _load_shape_options(load)
    _slo_options(load)
    _workload_options(p.add_argument_group("workload (generated offline)"))
    _bounds_options(p.add_argument_group("bounds (every run)"))
    _output_options(p.add_argument_group("engine and output"))


def _target_options(p: argparse.ArgumentParser) -> None:
    """TARGET, the fleet that names it, and --compare."""
    p.add_argument(
        "target", nargs="?", metavar="TARGET", help="http://host:port, or HOST/ENGINE of the fleet"
    )
    add_fleet_arguments(p, "bench")  # --config / --ssh: the fleet that HOST/ENGINE names
    p.add_argument("--compare", nargs=2, metavar=("A.json", "B.json"), help="print two results side by side")


def _request_options(g: Group) -> None:
    """What each request asks the engine for."""
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


def _load_shape_options(g: Group) -> None:
    """Closed loop, open loop, or a sweep of either."""
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


def _slo_options(g: Group) -> None:
    """Service-level objectives and the rate search they drive."""
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


def _workload_options(g: Group) -> None:
    """The generated (or file) prompts and their lengths."""
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


def _bounds_options(g: Group) -> None:
    """The safety bounds every run has (all with defaults)."""
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


def _output_options(g: Group) -> None:
    """The engine's /metrics, GPUs, and how the result is printed and saved."""
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


__all__ = ["add_parser"]
