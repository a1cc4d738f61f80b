"""The calculator screen's view data, computed without Textual: form strings in, toned text parts, bar
segments and chart lines out. The screen (console/screens/calc.py) only puts these on widgets.

Tones are the names widgets.tone defines ("ok", "warn", "crit", "error", "info", "dim", "missing",
"simulated", "live"); this module does not import the widgets. The live fleet's pricing lines are in
console/calc/present_live.py (``live_parts``, importable from here too).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from console.calc.breakeven import (
    Breakeven,
    BreakevenQuery,
    Point,
    api_curve,
    breakeven,
    self_host_curve,
    self_host_per_day,
)
from console.calc.capacity import Capacity, CapacityQuery, estimate
from console.calc.catalog import Catalog
from console.calc.errors import CalcError
from console.calc.hfconfig import load_config_path
from console.calc.measured import Measured
from console.calc.models import ModelSpec
from console.calc.present_live import live_parts
from console.calc.report import estimate_label, vram_rows
from console.calc.units import DAYS_PER_MONTH, GB, GiB, tokens, usd
from console.calc.vram import Mode, VramQuery, VramResult, default_seq_len, size_both

Parts = tuple[tuple[str, str], ...]
MAX_BARS = 8
NATIVE = "native"
MEASURED_KEY = "F7"  # the screen's key that loads a bench result (named in the estimate's text)


@dataclass(frozen=True, slots=True)
class Form:
    """The form's fields as typed (strings) and picked."""

    model: str = "llama-3.3-70b"
    model_path: str = ""  # a local config.json / model directory; wins over ``model`` when set
    gpu: str = "a100-80gb"
    gpus: str = "1"
    quant: str = NATIVE
    kv_dtype: str = "auto"
    seq_len: str = ""  # empty = 8,192 tokens, or the model's context when shorter
    overhead: str = "vllm"
    gpu_memory_utilization: str = "0.92"
    gpu_hourly: str = ""  # empty = the GPU's catalog price
    ops_cost_per_month: str = "0"
    input_share: str = "0.7"
    tokens_per_day: str = ""
    utilization: str = "0.5"
    apis: tuple[str, ...] = ("claude-opus-4.5", "together-llama-3.3-70b")


@dataclass(frozen=True, slots=True)
class Inputs:
    model: ModelSpec
    vram: VramQuery
    overhead: Mode
    hourly: float
    ops: float
    input_share: float
    tokens_per_day: float | None
    utilization: float
    apis: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    segments: tuple[tuple[str, float, str], ...]  # (label, value in ``unit``, tone)
    total: float
    unit: str


@dataclass(frozen=True, slots=True)
class Chart:
    """Monthly cost (USD) against tokens/day: lines, the break-even crossings and the capacity limit."""

    x_max: float
    self_host: tuple[Point, ...]
    apis: tuple[tuple[str, tuple[Point, ...]], ...]
    crossings: tuple[tuple[str, float, float], ...]  # (api, tokens/day, $/month)
    capacity: float | None
    volume: float | None
    note: str = ""
    unservable_cost: float | None = None  # $/month of GPUs that cannot serve the model (drawn for reference)
    capacity_label: str = "capacity"  # "measured capacity" when a benchmark gives it

    @property
    def y_max(self) -> float:
        """Twice the highest self-host cost (steep API lines leave through the top)."""
        if self.self_host:
            return 2 * max(y for _, y in self.self_host)
        if self.unservable_cost:
            return 2 * self.unservable_cost
        return max([y for _, pts in self.apis for _, y in pts] + [1.0]) * 1.05


@dataclass(frozen=True, slots=True)
class View:
    verdict: Parts
    bars: tuple[Bar, ...]
    bar_note: Parts
    modes: tuple[tuple[str, ...], ...]
    concurrency: Parts
    warnings: Parts
    costs: Parts
    chart: Chart | None
    results: dict[Mode, VramResult] = field(default_factory=dict)


# --- parsing ------------------------------------------------------------------------------------


def _number(
    text: str, name: str, *, low: float | None = 0.0, strict: bool = True, high: float | None = None
) -> float:
    try:
        value = float(text.replace(",", "").replace("_", "").strip())
    except ValueError:
        raise CalcError(f"{name}: expected a number, got {text.strip()!r}") from None
    bad = not math.isfinite(value) or (low is not None and (value <= low if strict else value < low))
    if bad or (high is not None and value > high):
        bound = (
            f"between {low:g} and {high:g}"
            if high is not None
            else ("greater than" if strict else "at least") + f" {low:g}"
        )
        raise CalcError(f"{name}: must be {bound}, got {text.strip()!r}")
    return value


def _count(text: str, name: str) -> int:
    value = _number(text, name)
    if value != int(value):
        raise CalcError(f"{name}: expected a whole number, got {text.strip()!r}")
    return int(value)


def _volume(text: str) -> float | None:
    text = text.strip().lower()
    if not text:
        return None
    scale = {"k": 1e3, "m": 1e6, "b": 1e9}.get(text[-1], 1.0)
    return _number(text[:-1] if scale != 1.0 else text, "tokens/day") * scale


def parse(form: Form, cat: Catalog) -> Inputs:
    """The form as typed → validated inputs; :class:`CalcError` names the field."""
    model = load_config_path(form.model_path.strip()) if form.model_path.strip() else cat.model(form.model)
    gpu = cat.gpu(form.gpu)
    vram = VramQuery(
        model,
        gpu,
        _count(form.gpus, "GPUs"),
        None if form.quant == NATIVE else form.quant,
        form.kv_dtype,
        _count(form.seq_len, "sequence length") if form.seq_len.strip() else default_seq_len(model),
        _number(form.gpu_memory_utilization, "vLLM memory utilization", high=1.0),
    )
    hourly = _number(form.gpu_hourly, "GPU $/hour") if form.gpu_hourly.strip() else gpu.default_hourly
    overhead: Mode = "flat" if form.overhead == "flat" else "vllm"
    return Inputs(
        model,
        vram,
        overhead,
        hourly,
        _number(form.ops_cost_per_month or "0", "ops $/month", strict=False),
        _number(form.input_share, "input share", strict=False, high=1.0),
        _volume(form.tokens_per_day),
        _number(form.utilization, "serving utilization", high=1.0),
        tuple(form.apis),
    )


# --- the view -----------------------------------------------------------------------------------


def compute(form: Form, cat: Catalog, measured: Measured | None = None) -> View:
    """Everything the results pane shows; :class:`CalcError` for bad input. ``measured`` (an ``llmconsole
    bench`` result) gives the capacity instead of the catalog estimate."""
    inp = parse(form, cat)
    results = size_both(inp.vram)
    r = results[inp.overhead]
    cap = estimate(
        CapacityQuery(
            inp.model,
            inp.vram.gpu,
            inp.vram.gpus,
            inp.vram.quant,
            inp.vram.kv_dtype,
            2048,
            inp.input_share,
            inp.utilization,
            inp.vram.gpu_memory_utilization,
        )
    )
    costs, chart = _costs(inp, cat, cap, measured)
    return View(
        verdict=_verdict(inp, r),
        bars=_bars(r),
        bar_note=_bar_note(r),
        modes=tuple(vram_rows(inp.vram, results, inp.overhead)),
        concurrency=_concurrency(inp, r),
        warnings=tuple((f"• {w}\n", _warning_tone(w)) for w in r.warnings),
        costs=costs,
        chart=chart,
        results=results,
    )


def _unit(r: VramResult) -> tuple[int, str]:
    return (GiB, "GiB") if r.mode == "vllm" else (GB, "GB")


def _verdict(inp: Inputs, r: VramResult) -> Parts:
    """One verdict, in the numbers the bar and the table show (KV spare = the bar's "KV spare" part)."""
    q, (scale, unit) = inp.vram, _unit(r)
    head = f"{inp.model.name} · {q.format} · {q.gpus} × {q.gpu.name} · "
    if r.verdict == "exceeds-context":
        return (
            (head, "live"),
            (f"SEQUENCE LONGER THAN THE MODEL'S CONTEXT: {r.seq_len:,} > {r.context_limit:,} tokens", "crit"),
            (" — no amount of memory fixes that; size the context length or less", "live"),
        )
    if r.fits:
        return (
            (head, "live"),
            (f"FITS: {r.spare_per_gpu / scale:,.2f} {unit} per GPU of KV cache to spare", "ok"),
            (
                f" after one {r.seq_len:,}-token sequence ({r.max_concurrent_seqs:,} such sequences at once)",
                "live",
            ),
        )
    if r.margin_per_gpu < 0:
        return (
            (head, "live"),
            (f"DOES NOT FIT: short by {-r.margin_per_gpu / scale:,.2f} {unit} per GPU", "crit"),
            (f" for one {r.seq_len:,}-token sequence", "live"),
        )
    return ((head, "live"), ("DOES NOT FIT: see the warnings", "crit"))


SEGMENTS = ("weights", "overheads", "KV one seq", "KV spare", "reserve")


def _bars(r: VramResult) -> tuple[Bar, ...]:
    """One bar per GPU (identical under tensor parallelism), in the table's rows: weights, overheads, the KV
    cache of one sequence, the KV cache to spare, vLLM's reserve (1 − utilization). The parts add up to the
    memory when the model fits, and exceed it by exactly the shortfall when it does not."""
    scale, unit = _unit(r)
    values = (r.weights_per_gpu, r.overheads.total, r.seq_kv_per_gpu, r.spare_per_gpu, r.reserved_per_gpu)
    tones = ("info", "warn", "ok", "dim", "missing")
    segments = tuple(
        (label, value / scale, tone)
        for label, value, tone in zip(SEGMENTS, values, tones, strict=True)
        if value > 0 or label != "reserve"
    )
    shown = min(r.gpus, MAX_BARS)
    bars = [Bar(f"GPU {i}", segments, r.memory_per_gpu / scale, unit) for i in range(shown)]
    if r.gpus > shown:
        bars.append(Bar(f"+{r.gpus - shown} more", segments, r.memory_per_gpu / scale, unit))
    return tuple(bars)


def _bar_note(r: VramResult) -> Parts:
    scale, unit = _unit(r)
    if r.mode == "vllm":
        how = (
            "vLLM-style: the driver-reported memory; vLLM allocates everything but its reserve "
            f"(1 − gpu_memory_utilization = {r.reserved_per_gpu / scale:,.2f} {unit}) up front, "
            "and the KV cache gets what weights and overheads leave"
        )
    else:
        how = "rule of thumb: params × bytes + KV + ~7 GB per GPU, against the nominal memory"
    return ((f"per GPU, in {unit}: {how}.", "dim"),)


def _concurrency(inp: Inputs, r: VramResult) -> Parts:
    ctx = "unbounded" if r.max_context_tokens is None else f"{r.max_context_tokens:,}"
    limit = inp.model.max_position
    tone = "ok" if r.max_concurrent_seqs > 0 else "crit"
    return (
        (f"{r.max_concurrent_seqs:,} concurrent {r.seq_len:,}-token sequences", tone),
        (
            f" · max context {ctx} tokens (model limit {limit:,})"
            if limit
            else f" · max context {ctx} tokens",
            "live",
        ),
        (f" · KV cache {r.kv_tokens:,} tokens at {r.kv_bytes_per_token_per_gpu:,} B/token per GPU", "dim"),
    )


def _warning_tone(text: str) -> str:
    return "crit" if text.startswith(("does not fit", "sequence length")) or "refuses" in text else "warn"


def _costs(inp: Inputs, cat: Catalog, cap: Capacity, measured: Measured | None) -> tuple[Parts, Chart | None]:
    q = inp.vram
    if measured is not None:
        capacity = measured.tokens_per_day(q.gpus)
    else:
        capacity = cap.tokens_per_day if cap.fits else 0.0
    base = BreakevenQuery(
        inp.hourly, q.gpus, 0.0, 0.0, inp.input_share, inp.ops, inp.tokens_per_day, capacity
    )
    parts: list[tuple[str, str]] = []
    evens: list[tuple[str, float, float]] = []
    for slug in inp.apis:
        api = cat.api(slug)
        b = breakeven(replace(base, price_in=api.input_per_mtok, price_out=api.output_per_mtok))
        if not parts:
            parts += _self_host_line(inp, b, cap, measured)
        parts += _api_line(api.name, api.input_per_mtok, api.output_per_mtok, api.checked, b)
        evens.append((api.name, b.break_even_tokens_per_day, b.api_blended_per_mtok))
    if not parts:
        b = breakeven(base)
        parts = _self_host_line(inp, b, cap, measured)
        parts.append(("Pick at least one API to compare against.", "missing"))
    chart = _chart(base, evens, capacity, inp.tokens_per_day)
    if measured is not None:
        chart = replace(chart, capacity_label="measured capacity")
    return tuple(parts), chart


def _self_host_line(
    inp: Inputs, b: Breakeven, cap: Capacity, measured: Measured | None
) -> list[tuple[str, str]]:
    """What self-hosting costs and serves, and where that capacity comes from (a benchmark or the estimate)."""
    q = inp.vram
    ops = f" + {usd(inp.ops)}/month ops" if inp.ops else ""
    per_day, per_month = b.self_host_cost_per_day, b.self_host_cost_per_month
    line = [
        (
            f"Self-host: {q.gpus} × {usd(inp.hourly)}/h{ops} = {usd(per_day)}/day ({usd(per_month)}/month)",
            "live",
        )
    ]
    if measured is not None:
        served = f" · serves ≈{tokens(measured.tokens_per_day(q.gpus))} tokens/day"
        line += [(served, "live"), (measured.label(q.gpus, inp.input_share) + "\n", "info")]
    elif cap.fits:
        quant = q.quant or inp.model.native_quant
        how = estimate_label(inp.model.slug, quant, q.gpus, q.gpu.slug, cap, MEASURED_KEY)
        line += [(f" · serves ≈{tokens(cap.tokens_per_day)} tokens/day", "live"), (how + "\n", "dim")]
    else:
        line.append((" · serves nothing: the model does not fit these GPUs\n", "crit"))
    return line


def _api_line(
    name: str, inp_price: float, out_price: float, checked: str | None, b: Breakeven
) -> list[tuple[str, str]]:
    head = (
        f"{name} (${inp_price:g}/${out_price:g}, {checked or 'undated'}): {usd(b.api_blended_per_mtok)}/1M → "
    )
    if math.isinf(b.break_even_tokens_per_day):
        return [(head, "live"), ("never breaks even (free)\n", "warn")]
    even = f"break-even {tokens(b.break_even_tokens_per_day)}/day ({b.break_even_tokens_per_s:,.0f} tok/s)"
    if b.reachable:
        verdict, tone = " · reachable", "ok"
    elif b.capacity_tokens_per_day:
        verdict, tone = (
            f" · UNREACHABLE: {b.break_even_tokens_per_day / b.capacity_tokens_per_day:.1f}× capacity",
            "crit",
        )
    else:
        verdict, tone = " · UNREACHABLE: nothing served", "crit"
    out = [(head, "live"), (even, "live"), (verdict, tone)]
    if b.monthly_cost_api is not None:
        selfhost = (
            f"{usd(b.monthly_cost_self_host)}/month"
            if b.monthly_cost_self_host is not None
            else "cannot serve"
        )
        out.append(
            (
                f" · at {tokens(b.tokens_per_day)}/day: API {usd(b.monthly_cost_api)}/month vs self-host {selfhost}",
                "dim",
            )
        )
    out.append(("\n", "live"))
    return out


def _chart(
    base: BreakevenQuery, evens: Sequence[tuple[str, float, float]], capacity: float, volume: float | None
) -> Chart:
    finite = [x for _, x, _ in evens if math.isfinite(x)]
    x_max = 1.5 * max(capacity, volume or 0.0, min(finite) if finite else 0.0) or 1e6
    curve = self_host_curve(base, x_max)
    crossings = []
    for name, x, _price in evens:
        if math.isfinite(x) and curve and x <= capacity and x <= x_max:
            crossings.append((name, x, curve[0][1]))
    note = "the GPUs cannot serve the model: it does not fit" if not curve else ""
    unservable = self_host_per_day(base.gpu_hourly, base.gpus, base.ops_cost_per_month) * DAYS_PER_MONTH
    return Chart(
        x_max,
        tuple(curve),
        tuple((name, tuple(api_curve(price, x_max))) for name, _, price in evens),
        tuple(crossings),
        capacity if capacity > 0 else None,
        volume,
        note,
        None if curve else unservable,
    )


# --- chart legend -------------------------------------------------------------------------------


def legend_labels(names: Sequence[str], width: int = 28) -> list[str]:
    """One legend entry per name, never two alike: cut to ``width``; a name that shares most of its cut with
    another keeps its end instead ("Llama 3.3 70B Instruct on Together AI" → "Llama 3.3…n Together AI")."""
    out = []
    for i, name in enumerate(names):
        if len(name) <= width:
            out.append(name)
            continue
        shared = max(
            (len(os.path.commonprefix([name, other])) for j, other in enumerate(names) if j != i), default=0
        )
        if shared >= width - 4:  # the cut would end inside what they have in common
            head = max(width // 3, 1)
            out.append(name[:head] + "…" + name[-(width - head - 1) :])
        else:
            out.append(name[: width - 1] + "…")
    dupes = {label for label in out if out.count(label) > 1}
    seen: dict[str, int] = {}
    for i, label in enumerate(out):  # still alike (same ends too): number them
        if label in dupes:
            seen[label] = seen.get(label, 0) + 1
            out[i] = f"{label[: width - 3]} #{seen[label]}"
    return out


__all__ = [
    "MAX_BARS",
    "MEASURED_KEY",
    "NATIVE",
    "SEGMENTS",
    "Bar",
    "Chart",
    "Form",
    "Inputs",
    "Parts",
    "View",
    "compute",
    "legend_labels",
    "live_parts",
    "parse",
]
