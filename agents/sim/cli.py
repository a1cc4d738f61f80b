"""``llmconsole sim-engine``: run a SIMULATED LLM engine (vLLM, SGLang or TGI dialect) as a real HTTP server.

It accepts the real engine's launch flags (model, host, port, served model name, ...) so that a
configured engine becomes simulated by its command prefix alone; engine flags it does not simulate
are accepted and listed once on stderr. Its first stderr line always says it is SIMULATED.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from agents.sim import dialects, ledger
from agents.sim.config import SimConfig
from agents.sim.faults import MULTI_GPU_KINDS, FaultSpecError, parse_faults
from agents.sim.model import ModelConfig

PROG = "llmconsole sim-engine"
HELP = "run a SIMULATED inference engine (vLLM/SGLang/TGI dialect) for demos and tests"


class UsageError(Exception):
    """A bad command line; the message is one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``sim-engine`` on the lead CLI's subparsers; the whole tail of argv goes to ``run``."""
    parser = subparsers.add_parser(
        "sim-engine", help=HELP, description=HELP, add_help=False, prefix_chars="\x01"
    )
    parser.add_argument("sim_argv", nargs=argparse.REMAINDER)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    return main(list(getattr(args, "sim_argv", []) or []))


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dialect", choices=dialects.NAMES, required=True, help="which engine to imitate")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="HTTP port (default: the engine's: 8000 / 30000 / 3000)")
    parser.add_argument("--model", help="model name or path")
    parser.add_argument("--served-model-name", nargs="+", help="name in /v1/models and metric labels")
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="SPEC",
        help="KIND[@T][:k=v,...], repeatable (see agents/sim/faults.py)",
    )
    parser.add_argument("--worker", action="store_true", help="spawn a SIM::Worker child process")
    parser.add_argument("--worker-setsid", action="store_true", help="the worker leaves the process group")
    parser.add_argument(
        "--worker-max-s", type=float, default=1800.0, help="the worker exits by itself after this"
    )
    parser.add_argument(
        "--load", type=float, default=0.0, metavar="RPS", help="internal Poisson load (SIMULATED)"
    )
    parser.add_argument("--max-num-seqs", type=int, help="max running requests (default 64)")
    parser.add_argument("--max-model-len", type=int, help="context length (default min(4096, kv tokens))")
    parser.add_argument("--kv-tokens", type=int, default=131072, help="KV-cache capacity in tokens")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sim-gpu-mem-gib", type=float, default=18.0, help="simulated GPU memory (ledger)")
    parser.add_argument("--decode-ms", type=float, default=20.0, help="one decode step at batch size 1")
    parser.add_argument("--prefill-ms-per-1k", type=float, default=40.0, help="prefill time per 1000 tokens")
    parser.add_argument(
        "--prefix-hit-rate",
        type=float,
        default=0.0,
        help="at least this fraction of every prompt counts as cached (the prefix cache "
        "serves repeated prefixes anyway)",
    )
    parser.add_argument("--tick-ms", type=float, default=25.0, help="scheduler tick")
    parser.add_argument(
        "--health-generate-timeout",
        type=float,
        help="SGLang /health_generate timeout (default $SGLANG_HEALTH_CHECK_TIMEOUT or 20)",
    )


def build_parser(dialect: dialects.Dialect | None) -> _Parser:
    parser = _Parser(prog=PROG, description=HELP, allow_abbrev=False)
    _common(parser)
    if dialect is not None:
        dialect.add_arguments(parser)
    return parser


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def split_unknown(
    argv: Sequence[str], parser: argparse.ArgumentParser, booleans: frozenset[str]
) -> tuple[list[str], list[str]]:
    """Separate engine flags the simulator does not know (with their values) from the rest.

    An unknown ``--flag`` takes the next token as its value unless it is written ``--flag=value``,
    is a known boolean engine flag, starts with ``--no-``, or the next token looks like a flag.
    """
    known = parser._option_string_actions  # noqa: SLF001 - argparse has no public accessor
    keep: list[str] = []
    ignored: list[str] = []
    i = 0
    while i < len(argv):
        tok = argv[i]
        i += 1
        if tok == "--":
            keep.extend(argv[i - 1 :])
            break
        if not tok.startswith("-") or tok == "-" or _is_number(tok):
            keep.append(tok)
            continue
        name, has_eq, _ = tok.partition("=")
        action = known.get(name)
        if action is not None:
            keep.append(tok)
            if has_eq:
                continue
            nargs = action.nargs
            if nargs == 0:
                continue
            if nargs is None:
                if i < len(argv):
                    keep.append(argv[i])
                    i += 1
            elif nargs in ("+", "*", "?"):
                while i < len(argv) and (not argv[i].startswith("-") or _is_number(argv[i])):
                    keep.append(argv[i])
                    i += 1
                    if nargs == "?":
                        break
            elif isinstance(nargs, int):
                keep.extend(argv[i : i + nargs])
                i += nargs
            continue
        ignored.append(tok)
        takes_value = not has_eq and name not in booleans and not name.startswith("--no-")
        if takes_value and i < len(argv) and (not argv[i].startswith("-") or _is_number(argv[i])):
            ignored.append(argv[i])
            i += 1
    return keep, ignored


def _find_dialect(argv: Sequence[str]) -> str | None:
    for i, tok in enumerate(argv):
        if tok == "--dialect" and i + 1 < len(argv):
            return argv[i + 1]
        if tok.startswith("--dialect="):
            return tok.split("=", 1)[1]
    return None


def _positive(name: str, value: float | None, allow_zero: bool = False) -> None:
    if value is None:
        return
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise UsageError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value:g}")


def parse_config(argv: Sequence[str]) -> SimConfig:
    """The SimConfig for ``argv``; raises UsageError (one line) on a bad command line."""
    name = _find_dialect(argv)
    if name is None:
        raise UsageError("the following arguments are required: --dialect (vllm, sglang or tgi)")
    if name not in dialects.DIALECTS:
        raise UsageError(f"argument --dialect: invalid choice: {name!r} (choose from vllm, sglang, tgi)")
    dialect = dialects.get(name)
    parser = build_parser(dialect)
    keep, ignored = split_unknown(argv, parser, dialect.boolean_flags)
    ns = parser.parse_args(keep)
    try:
        resolved = dialect.resolve(ns)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    port = dialect.default_port if ns.port is None else ns.port
    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port} is not a port (0-65535)")
    for flag, value, zero in (
        ("--load", ns.load, True),
        ("--kv-tokens", ns.kv_tokens, False),
        ("--max-num-seqs", ns.max_num_seqs, False),
        ("--max-model-len", ns.max_model_len, False),
        ("--worker-max-s", ns.worker_max_s, True),
        ("--sim-gpu-mem-gib", ns.sim_gpu_mem_gib, True),
        ("--decode-ms", ns.decode_ms, False),
        ("--prefill-ms-per-1k", ns.prefill_ms_per_1k, True),
        ("--tick-ms", ns.tick_ms, False),
        ("--health-generate-timeout", ns.health_generate_timeout, False),
    ):
        _positive(flag, value, zero)
    if ns.max_model_len is not None and ns.max_model_len > ns.kv_tokens:
        raise UsageError(f"--max-model-len {ns.max_model_len} does not fit in --kv-tokens {ns.kv_tokens}")
    gpus = tuple(ledger.gpus_from_env(os.environ))
    try:
        faults = tuple(parse_faults(ns.fault))
        for fault in faults:
            if fault.kind in MULTI_GPU_KINDS and len(gpus) < 2:
                raise FaultSpecError(
                    f"fault {fault.kind!r} needs an engine on two or more GPUs "
                    f"(CUDA_VISIBLE_DEVICES gives {len(gpus)})"
                )
        model_config = ModelConfig(
            max_num_seqs=ns.max_num_seqs or 64,
            kv_tokens=ns.kv_tokens,
            max_model_len=ns.max_model_len or min(4096, ns.kv_tokens),
            decode_s=ns.decode_ms / 1000.0,
            prefill_s_per_token=ns.prefill_ms_per_1k / 1e6,
            prefix_hit_rate=ns.prefix_hit_rate,
            prefix_caching=bool(resolved.get("prefix_caching", True)),
        )
    except FaultSpecError as exc:
        raise UsageError(f"argument --fault: {exc}") from None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    served = ns.served_model_name[0] if ns.served_model_name else resolved["served_name"]
    timeout = ns.health_generate_timeout
    if timeout is None:
        try:
            timeout = float(os.environ.get("SGLANG_HEALTH_CHECK_TIMEOUT", "20"))
        except ValueError:
            timeout = 20.0
    return SimConfig(
        dialect=dialect.name,
        model=resolved["model"],
        served_name=served,
        host=ns.host,
        port=port,
        model_config=model_config,
        faults=faults,
        worker=ns.worker,
        worker_setsid=ns.worker_setsid,
        worker_max_s=ns.worker_max_s,
        load_rps=ns.load,
        seed=ns.seed,
        gpu_mem_gib=ns.sim_gpu_mem_gib,
        tick_s=ns.tick_ms / 1000.0,
        metrics_enabled=resolved["metrics_enabled"],
        metrics_port=resolved["metrics_port"],
        health_generate_timeout_s=timeout,
        log_stats=resolved["log_stats"],
        ignored=tuple(ignored),
        gpus=gpus,
    )


def banner(cfg: SimConfig) -> str:
    title = dialects.get(cfg.dialect).name
    return (
        f"{PROG}: SIMULATED {title} engine, model {cfg.served_name} — not a real engine (pid {os.getpid()})"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in args):
        name = _find_dialect(args)
        build_parser(dialects.DIALECTS.get(name or "")).print_help()
        return 0
    try:
        cfg = parse_config(args)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    print(banner(cfg), file=sys.stderr, flush=True)
    if cfg.ignored:
        print(
            f"{PROG}: ignoring engine flags it does not simulate: {' '.join(cfg.ignored)}",
            file=sys.stderr,
            flush=True,
        )
    from agents.sim.engine import run as run_engine  # heavy imports (uvicorn) only when serving

    try:
        return run_engine(cfg, dialects.get(cfg.dialect))
    except KeyboardInterrupt:
        return 0
