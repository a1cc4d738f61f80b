"""`llmconsole calc` — the VRAM and break-even calculators, scriptable (``--json`` for machines).

    llmconsole calc vram --model NAME|PATH --gpu NAME [--gpus N] [--quant Q] [--kv-dtype D] [--seq-len L]
                         [--overhead flat|vllm] [--gpu-memory-utilization F] [--json]   (exit 1: does not fit)
    llmconsole calc breakeven --gpu-hourly USD --gpus N (--api NAME | --price-in USD --price-out USD)
                              [--input-share F] [--tokens-per-day N] [--model ... --gpu ... --quant ...] [--json]
                              [--measured RESULT.json]  (capacity from `llmconsole bench`, not the estimate)
    llmconsole calc models|gpus|apis [--json]

``[calculator]`` price overrides come from the config (``--config PATH``, else the usual search order).
Bad input — an unknown or ambiguous name (with the closest ones or the matches), a zero or negative value, an
unusable config.json — is one line on stderr and exit code 2. ``calc vram`` exits 1 when its verdict is no
(does not fit, or the sequence is longer than the model's context), so scripts can test it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from typing import Any

from agents.tomltables import ConfigError
from console.calc.breakeven import BreakevenQuery, breakeven
from console.calc.capacity import DEFAULT_SEQ_LEN, CapacityQuery, estimate
from console.calc.catalog import Catalog
from console.calc.errors import CalcError
from console.calc.hfconfig import load_config_path
from console.calc.kv import KV_DTYPES
from console.calc.measured import load_measured
from console.calc.models import ModelSpec
from console.calc.quant import QUANTS
from console.calc.report import (
    api_json,
    breakeven_json,
    breakeven_text,
    capacity_json,
    catalog_text,
    estimate_label,
    gpu_json,
    model_json,
    vram_json,
    vram_text,
)
from console.calc.settings import CalculatorConfig, find_calculator_config
from console.calc.vram import DEFAULT_SEQ_LEN as DEFAULT_VRAM_SEQ_LEN
from console.calc.vram import MODES, VramQuery, default_seq_len, size_both

PROG = "llmconsole calc"


def add_parser(subparsers: Any) -> None:
    """Register ``calc`` and its sub-verbs on the ``llmconsole`` subparsers."""
    parser = subparsers.add_parser(
        "calc",
        help="VRAM sizing and self-host break-even calculators",
        description="Will this model fit on these GPUs? Is self-hosting cheaper than the API?",
    )
    sub = parser.add_subparsers(dest="calc_verb", metavar="CALCULATOR")
    _vram_parser(sub)
    _breakeven_parser(sub)
    for kind in ("models", "gpus", "apis"):
        p = sub.add_parser(kind, help=f"list the {kind} catalog with sources and dates")
        _common(p)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument(
        "--config", dest="calc_config", metavar="PATH", help="config.toml with [calculator] overrides"
    )


def _model_args(p: argparse.ArgumentParser, required: bool) -> None:
    p.add_argument(
        "--model", required=required, metavar="NAME|PATH", help="catalog name, or a config.json / model dir"
    )
    p.add_argument(
        "--gpu",
        required=required,
        metavar="NAME",
        help="GPU slug (see `calc gpus`); an ambiguous name (a100: 40/80 GB, SXM/PCIe) is an error",
    )
    p.add_argument("--quant", choices=QUANTS, help="weight format (default: the checkpoint's own)")
    p.add_argument(
        "--kv-dtype", choices=KV_DTYPES, default="auto", help="KV-cache dtype (default: auto = model dtype)"
    )
    p.add_argument("--gpu-memory-utilization", type=float, metavar="F", help="vLLM's fraction (default 0.92)")


VRAM_EPILOG = """exit status:
  0  FITS: one sequence of --seq-len fits, with the KV cache to spare shown
  1  the verdict is no: DOES NOT FIT, or LONGER THAN CONTEXT (--seq-len is beyond the model's context)
  2  bad input (unknown or ambiguous --model/--gpu, bad number, unusable config.json): one line on stderr
The verdict is the --overhead mode's (the * column); --json prints the same result, with "verdict"."""


def _vram_parser(sub: Any) -> None:
    p = sub.add_parser(
        "vram",
        help="will this model fit on these GPUs? (exit 0 fits, 1 no, 2 bad input)",
        epilog=VRAM_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _model_args(p, required=True)
    p.add_argument("--gpus", type=int, default=1, metavar="N", help="GPUs, tensor parallel (default 1)")
    p.add_argument(
        "--seq-len",
        type=int,
        metavar="L",
        help=f"tokens per sequence (default {DEFAULT_VRAM_SEQ_LEN}, or the model's context when shorter)",
    )
    p.add_argument(
        "--overhead",
        choices=MODES,
        default="vllm",
        help="vllm: vLLM's own arithmetic (default); flat: rule of thumb params × bytes + KV + ~7 GB",
    )
    p.add_argument("--block-size", type=int, metavar="N", help="KV block size (default 16; 64 for MLA)")
    _common(p)


def _breakeven_parser(sub: Any) -> None:
    p = sub.add_parser("breakeven", help="is self-hosting cheaper than the API?")
    p.add_argument(
        "--gpu-hourly",
        type=float,
        metavar="USD",
        help="USD per GPU-hour (default: the --gpu's catalog price)",
    )
    p.add_argument("--gpus", type=int, default=1, metavar="N", help="GPUs in the deployment (default 1)")
    p.add_argument("--api", metavar="NAME", help="API slug (see `calc apis`)")
    p.add_argument("--price-in", type=float, metavar="USD", help="USD per 1M input tokens")
    p.add_argument("--price-out", type=float, metavar="USD", help="USD per 1M output tokens")
    p.add_argument("--input-share", type=float, metavar="F", help="share of input tokens (default 0.7)")
    p.add_argument("--tokens-per-day", type=float, metavar="N", help="volume to price both ways")
    p.add_argument(
        "--ops-cost-per-month", type=float, metavar="USD", help="fixed operations cost (default 0)"
    )
    p.add_argument("--utilization", type=float, metavar="F", help="sustained fraction of peak (default 0.5)")
    p.add_argument(
        "--seq-len",
        type=int,
        default=DEFAULT_SEQ_LEN,
        metavar="L",
        help=f"average tokens in context per sequence, for capacity (default {DEFAULT_SEQ_LEN})",
    )
    p.add_argument(
        "--measured",
        metavar="RESULT.json",
        help="capacity from an `llmconsole bench` result (its sustained throughput per GPU, at the SLO "
        "when it had one) instead of the catalog estimate",
    )
    _model_args(p, required=False)
    _common(p)


def run(args: argparse.Namespace) -> int:
    """Run ``calc``; 0 on success, 1 when ``vram``'s verdict is no, 2 with one error line on bad input."""
    verb = getattr(args, "calc_verb", None)
    if verb is None:
        sys.stderr.write(
            f"{PROG}: error: choose a calculator: vram, breakeven, models, gpus, apis (see --help)\n"
        )
        return 2
    try:
        # `llmconsole --config X calc ...` (the top-level option) works as well as `calc ... --config X`
        cfg = find_calculator_config(args.calc_config or getattr(args, "console_config", None))
        out = _VERBS[verb](args, cfg, cfg.catalog())
    except (CalcError, ConfigError) as e:
        sys.stderr.write(f"{PROG} {verb}: error: {_one_line(e)}\n")
        return 2
    code = 0
    if isinstance(out, Answer):
        out, code = out.text, out.code
    sys.stdout.write(out + "\n")
    return code


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())


def resolve_model(name: str, cat: Catalog) -> ModelSpec:
    """A catalog name, or a path to a config.json / model directory (air-gapped sites have those)."""
    looks_like_path = os.sep in name or name.endswith(".json") or name.startswith((".", "~"))
    if looks_like_path or (os.path.exists(name) and cat.find_model(name) is None):
        return load_config_path(name)
    return cat.model(name)


@dataclass(frozen=True, slots=True)
class Answer:
    """What a verb prints, and the exit code it means (``vram``: 1 when the verdict is no)."""

    text: str
    code: int = 0


def _vram(args: argparse.Namespace, cfg: CalculatorConfig, cat: Catalog) -> Answer:
    util = (
        args.gpu_memory_utilization if args.gpu_memory_utilization is not None else cfg.gpu_memory_utilization
    )
    model = resolve_model(args.model, cat)
    seq_len = args.seq_len if args.seq_len is not None else default_seq_len(model)
    q = VramQuery(
        model, cat.gpu(args.gpu), args.gpus, args.quant, args.kv_dtype, seq_len, util, args.block_size
    )
    results = size_both(q)
    code = 0 if results[args.overhead].fits else 1
    if args.json:
        return Answer(json.dumps(vram_json(q, results, args.overhead), indent=2), code)
    return Answer(vram_text(q, results, args.overhead), code)


def _breakeven(args: argparse.Namespace, cfg: CalculatorConfig, cat: Catalog) -> str:
    share = args.input_share if args.input_share is not None else cfg.input_share
    price_in, price_out, api_label, api_slug = _prices(args, cat)
    gpu = cat.gpu(args.gpu) if args.gpu else None
    hourly = args.gpu_hourly if args.gpu_hourly is not None else (gpu.default_hourly if gpu else None)
    if hourly is None:
        raise CalcError("give --gpu-hourly USD (or --gpu NAME to use its catalog price)")
    cap, cap_label, extra = _capacity(args, cfg, cat, gpu, share)
    ops = args.ops_cost_per_month if args.ops_cost_per_month is not None else cfg.ops_cost_per_month
    q = BreakevenQuery(hourly, args.gpus, price_in, price_out, share, ops, args.tokens_per_day, cap)
    b = breakeven(q)
    if args.json:
        info = {
            "gpu_hourly": hourly,
            "gpus": args.gpus,
            "api": api_slug,
            "price_in": price_in,
            "price_out": price_out,
            "input_share": share,
            "ops_cost_per_month": ops,
            **extra,
        }
        return json.dumps(breakeven_json(b, info), indent=2)
    return breakeven_text(b, args.gpus, hourly, api_label, share, cap_label)


def _prices(args: argparse.Namespace, cat: Catalog) -> tuple[float, float, str, str | None]:
    explicit = args.price_in is not None or args.price_out is not None
    if args.api and explicit:
        raise CalcError("give either --api NAME or --price-in/--price-out, not both")
    if args.api:
        api = cat.api(args.api)
        label = f"{api.name} ${api.input_per_mtok:g} in / ${api.output_per_mtok:g} out (checked {api.checked or 'undated'})"
        return api.input_per_mtok, api.output_per_mtok, label, api.slug
    if args.price_in is None or args.price_out is None:
        raise CalcError("give --api NAME, or both --price-in USD and --price-out USD")
    return args.price_in, args.price_out, f"${args.price_in:g} in / ${args.price_out:g} out", None


def _capacity(
    args: argparse.Namespace, cfg: CalculatorConfig, cat: Catalog, gpu: Any, share: float
) -> tuple[float | None, str | None, dict[str, Any]]:
    if getattr(args, "measured", None) is not None:
        return _measured_capacity(args, share)
    if args.model is not None and gpu is None:
        raise CalcError("--model needs --gpu for the capacity estimate")
    if args.model is None:  # --gpu alone only prices the GPU
        return (
            None,
            None,
            {"model": None, "gpu": None, "quant": None, "capacity": None, "capacity_source": None},
        )
    model = resolve_model(args.model, cat)
    util = args.utilization if args.utilization is not None else cfg.utilization
    mem_util = (
        args.gpu_memory_utilization if args.gpu_memory_utilization is not None else cfg.gpu_memory_utilization
    )
    c = estimate(
        CapacityQuery(model, gpu, args.gpus, args.quant, args.kv_dtype, args.seq_len, share, util, mem_util)
    )
    quant = args.quant or model.native_quant
    if c.fits:
        label = estimate_label(model.slug, quant, args.gpus, gpu.slug, c, "`--measured RESULT.json`")
    else:
        label = f" ({model.slug} {quant} does not fit {args.gpus} x {gpu.slug}: see `calc vram`)"
    extra = {
        "model": model.slug,
        "gpu": gpu.slug,
        "quant": quant,
        "capacity": capacity_json(c),
        "capacity_source": "estimate",
    }
    return c.tokens_per_day, label, extra


def _measured_capacity(args: argparse.Namespace, share: float) -> tuple[float, str, dict[str, Any]]:
    """Capacity from a benchmark result (``--measured``) instead of the catalog estimate."""
    if args.model is not None:
        raise CalcError("give --measured RESULT.json or --model for the capacity estimate, not both")
    if args.gpus < 1:
        raise CalcError(f"--gpus must be 1 or more, got {args.gpus}")
    m = load_measured(args.measured)
    extra = {
        "model": m.model,
        "gpu": args.gpu,
        "quant": None,
        "capacity": None,
        "capacity_source": "measured",
        "measured": m.describe(args.gpus),
    }
    return m.tokens_per_day(args.gpus), m.label(args.gpus, share), extra


def _listing(kind: str) -> Any:
    def render(args: argparse.Namespace, cfg: CalculatorConfig, cat: Catalog) -> str:
        if not args.json:
            return catalog_text(kind, cat, cfg.input_share)
        items = {
            "models": lambda: [model_json(m) for m in cat.models],
            "gpus": lambda: [gpu_json(g) for g in cat.gpus],
            "apis": lambda: [api_json(a, cfg.input_share) for a in cat.apis],
        }[kind]()
        return json.dumps({kind: items}, indent=2)

    return render


_VERBS = {
    "vram": _vram,
    "breakeven": _breakeven,
    "models": _listing("models"),
    "gpus": _listing("gpus"),
    "apis": _listing("apis"),
}
