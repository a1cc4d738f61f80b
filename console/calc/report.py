"""Results as JSON-ready dicts (stable keys, units in names, None for unknown) and as plain-text tables."""

from __future__ import annotations

import math
import textwrap
from typing import Any

from console.calc.breakeven import Breakeven
from console.calc.capacity import Capacity
from console.calc.catalog import Api, Catalog, Gpu
from console.calc.models import ModelSpec
from console.calc.units import GB, GiB, tokens, usd
from console.calc.vram import Mode, VramQuery, VramResult

# --- JSON ---------------------------------------------------------------------------------------


def model_json(m: ModelSpec) -> dict[str, Any]:
    p = m.params
    pub = m.published
    return {
        "slug": m.slug,
        "name": m.name,
        "hf_repo": m.hf_repo,
        "config_url": m.config_url,
        "model_type": m.model_type,
        "params_total": p.total,
        "params_text": p.text_total,
        "params_active": p.text_active,
        "params_active_excl_embedding": p.text_active_excl_embedding,
        "params_vision": p.vision,
        "layers": m.layers,
        "attention_heads": m.heads,
        "kv_heads": m.kv_heads,
        "head_dim": m.head_dim,
        "hidden_size": m.hidden,
        "vocab_size": m.vocab,
        "max_position_embeddings": m.max_position,
        "attention": "mla" if m.mla else "gqa",
        "windowed_layers": m.capped_layers,
        "experts": m.moe.experts if m.moe else None,
        "experts_per_token": m.moe.top_k if m.moe else None,
        "native_quant": m.native_quant,
        "published_total_b": pub.total_b if pub else None,
        "published_active_b": pub.active_b if pub else None,
        "published_active_convention": pub.active_convention if pub else None,
        "source": m.source,
        "date": m.date,
        "notes": list(m.notes),
        "aliases": list(m.aliases),
    }


def gpu_json(g: Gpu) -> dict[str, Any]:
    return {
        "slug": g.slug,
        "name": g.name,
        "memory_gb": g.memory_gb,
        "memory_bytes_reported": g.usable_bytes,
        "bandwidth_gb_s": g.bandwidth_gb_s,
        "bf16_tflops_dense": g.bf16_tflops,
        "fp8_tflops_dense": g.fp8_tflops,
        "hourly_usd": g.default_hourly,
        "hourly_note": g.default_hourly_note,
        "hourly_overridden": g.overridden,
        "on_demand_usd": list(g.on_demand) if g.on_demand else None,
        "spot_usd": list(g.spot) if g.spot else None,
        "price_source": g.price_source,
        "price_checked": g.price_checked,
        "spec_source": g.spec_source,
        "notes": list(g.notes),
        "aliases": list(g.aliases),
    }


def api_json(a: Api, input_share: float = 0.7) -> dict[str, Any]:
    return {
        "slug": a.slug,
        "name": a.name,
        "provider": a.provider,
        "kind": a.kind,
        "model": a.model,
        "input_per_mtok": a.input_per_mtok,
        "output_per_mtok": a.output_per_mtok,
        "blended_per_mtok": a.blended(input_share),
        "input_share": input_share,
        "checked": a.checked,
        "source": a.source,
        "overridden": a.overridden,
        "notes": list(a.notes),
        "aliases": list(a.aliases),
    }


def vram_mode_json(r: VramResult) -> dict[str, Any]:
    return {
        "overhead": r.mode,
        "fits": r.fits,
        "verdict": r.verdict,
        "context_limit_tokens": r.context_limit,
        "spare_per_gpu_bytes": r.spare_per_gpu,
        "memory_per_gpu_bytes": r.memory_per_gpu,
        "weights_bytes": r.weights_bytes,
        "weights_per_gpu_bytes": r.weights_per_gpu,
        "overhead_per_gpu_bytes": r.overheads.total,
        "activation_peak_per_gpu_bytes": r.overheads.activation_peak,
        "non_torch_per_gpu_bytes": r.overheads.non_torch,
        "cudagraph_per_gpu_bytes": r.overheads.cudagraph,
        "reserved_per_gpu_bytes": r.reserved_per_gpu,
        "kv_budget_bytes": r.kv_budget_bytes,
        "kv_budget_per_gpu_bytes": r.kv_budget_per_gpu,
        "kv_bytes_per_token": r.kv_bytes_per_token,
        "kv_bytes_per_token_per_gpu": r.kv_bytes_per_token_per_gpu,
        "kv_tokens": r.kv_tokens,
        "seq_len": r.seq_len,
        "seq_kv_per_gpu_bytes": r.seq_kv_per_gpu,
        "max_concurrent_seqs": r.max_concurrent_seqs,
        "max_context_tokens": r.max_context_tokens,
        "margin_per_gpu_bytes": r.margin_per_gpu,
        "block_size": r.block_size,
        "warnings": list(r.warnings),
    }


def vram_json(q: VramQuery, results: dict[Mode, VramResult], selected: Mode) -> dict[str, Any]:
    chosen = vram_mode_json(results[selected])
    return {
        "model": model_json(q.model),
        "gpu": gpu_json(q.gpu),
        "gpus": q.gpus,
        "quant": q.format,
        "kv_dtype": q.kv_dtype,
        "gpu_memory_utilization": q.gpu_memory_utilization,
        **chosen,
        "modes": {mode: vram_mode_json(r) for mode, r in results.items()},
    }


def capacity_json(c: Capacity | None) -> dict[str, Any] | None:
    if c is None:
        return None
    return {
        "fits": c.fits,
        "batch": c.batch,
        "tokens_per_s": c.tokens_per_s,
        "tokens_per_day": c.tokens_per_day,
        "ideal_tokens_per_s": c.ideal_tokens_per_s,
        "utilization": c.utilization,
        "single_stream_tokens_per_s": c.single_stream_tokens_per_s,
        "prefill_tokens_per_s": c.prefill_tokens_per_s,
        "decode_tokens_per_s": c.decode_tokens_per_s,
        "decode_bound": c.decode_bound,
        "peak_flops": c.peak_flops,
    }


def breakeven_json(b: Breakeven, extra: dict[str, Any]) -> dict[str, Any]:
    return {
        **extra,
        "self_host_cost_per_day": b.self_host_cost_per_day,
        "self_host_cost_per_month": b.self_host_cost_per_month,
        "api_blended_per_mtok": b.api_blended_per_mtok,
        "break_even_tokens_per_day": _num(b.break_even_tokens_per_day),
        "break_even_tokens_per_s": _num(b.break_even_tokens_per_s),
        "crossover_tokens_per_day": b.crossover_tokens_per_day,
        "capacity_tokens_per_day": b.capacity_tokens_per_day,
        "reachable": b.reachable,
        "tokens_per_day": b.tokens_per_day,
        "deployments_needed": b.deployments_needed,
        "monthly_cost_self_host": b.monthly_cost_self_host,
        "monthly_cost_api": b.monthly_cost_api,
        "cheaper": b.cheaper,
        "self_host_per_mtok_at_capacity": b.self_host_per_mtok_at_capacity,
    }


def _num(x: float) -> float | None:
    return x if math.isfinite(x) else None  # JSON has no infinity: a free API never breaks even


# --- text ---------------------------------------------------------------------------------------


def _gib(n: float) -> str:
    return f"{n / GiB:,.2f} GiB"


def _gb(n: float) -> str:
    return f"{n / GB:,.2f} GB"


NOTE_WIDTH = 100
MODE_LABELS = {"flat": "rule of thumb (GB)", "vllm": "vLLM-style, util {util:g} (GiB)"}
MODE_EXPLAINED = {
    "vllm": "vLLM-style: what vLLM itself does: the memory the driver reports × gpu_memory_utilization, minus "
    "the weights (with quantization scales), minus activation peak, CUDA graphs and non-torch memory "
    "(estimates); the KV cache gets the rest, in whole blocks. GiB = 2^30 bytes.",
    "flat": "rule of thumb: params × bytes + KV + ~7 GB per GPU, against the vendor's nominal memory "
    "(GB = 10^9 bytes).",
}
VERDICT_WORDS = {"fits": "FITS", "does-not-fit": "DOES NOT FIT", "exceeds-context": "LONGER THAN CONTEXT"}


def mode_label(mode: Mode, q: VramQuery) -> str:
    return MODE_LABELS[mode].format(util=q.gpu_memory_utilization)


def verdict_text(r: VramResult, f: Any) -> str:
    """The verdict cell: FITS (+spare), DOES NOT FIT (short by …), LONGER THAN CONTEXT (limit …)."""
    if r.verdict == "exceeds-context":
        return f"LONGER THAN CONTEXT ({r.context_limit:,} tokens)"
    if r.fits:
        return f"FITS (+{f(r.margin_per_gpu)}/GPU to spare)"
    if r.margin_per_gpu < 0:
        return f"DOES NOT FIT (short {f(-r.margin_per_gpu)}/GPU)"
    return "DOES NOT FIT (see warnings)"  # memory is enough; tensor parallelism cannot split the model


def vram_rows(q: VramQuery, results: dict[Mode, VramResult], selected: Mode) -> list[tuple[str, ...]]:
    """The two modes side by side (selected first, starred): a header row, then one row per figure. The
    rows are the parts of each GPU's memory, in the order and with the names the screen's bar uses."""
    order = (selected, *(x for x in results if x != selected))
    fmt = {"flat": _gb, "vllm": _gib}
    rows: list[tuple[str, ...]] = [("", *(mode_label(x, q) + (" *" if x == selected else "") for x in order))]

    def row(name: str, get: Any) -> None:
        rows.append((name, *(get(results[x], fmt[x]) for x in order)))

    row("memory per GPU", lambda r, f: f(r.memory_per_gpu))
    row("weights per GPU", lambda r, f: f(r.weights_per_gpu))
    row("overheads per GPU", lambda r, f: f(r.overheads.total))
    row("reserve (1 − util) per GPU", lambda r, f: f(r.reserved_per_gpu) if r.mode == "vllm" else "none")
    row("KV budget per GPU", lambda r, f: f(r.kv_budget_per_gpu))
    row(f"KV one {q.seq_len:,}-token seq", lambda r, f: f(r.seq_kv_per_gpu))
    row("KV spare per GPU", lambda r, f: f(r.spare_per_gpu))
    row("KV bytes/token (model)", lambda r, f: f"{r.kv_bytes_per_token:,} B")
    row("KV bytes/token per GPU", lambda r, f: f"{r.kv_bytes_per_token_per_gpu:,} B")
    row("KV tokens", lambda r, f: f"{r.kv_tokens:,}")
    row(f"concurrent {q.seq_len:,}-token seqs", lambda r, f: f"{r.max_concurrent_seqs:,}")
    row(
        "max context (one seq)",
        lambda r, f: "unbounded" if r.max_context_tokens is None else f"{r.max_context_tokens:,}",
    )
    row("verdict", verdict_text)
    return rows


def vram_notes(q: VramQuery, results: dict[Mode, VramResult], selected: Mode) -> list[str]:
    """What the two columns are, which one is the verdict, and why they disagree when they do."""
    other: Mode = "flat" if selected == "vllm" else "vllm"
    chosen, cross = results[selected], results[other]
    lines = [
        f"* the verdict: {mode_label(selected, q)} (--overhead {selected}); the exit code follows it.",
        *(f"  {MODE_EXPLAINED[m]}" for m in (selected, other)),
    ]
    if chosen.verdict != cross.verdict:
        lines.append(
            f"The columns disagree ({VERDICT_WORDS[chosen.verdict]} vs {VERDICT_WORDS[cross.verdict]}): the rule of "
            "thumb counts the nominal memory and a flat 7 GB, vLLM-style the driver-reported memory, its reserve "
            "and estimated overheads. A margin this close depends on those estimates: treat it as borderline and "
            "check the real engine's startup log (its KV cache size)."
        )
    return lines


def vram_text(q: VramQuery, results: dict[Mode, VramResult], selected: Mode) -> str:
    m = q.model
    head = f"{m.name} ({m.slug}) as {q.format} on {q.gpus} x {q.gpu.name}, KV cache {q.kv_dtype}, {q.seq_len:,}-token sequences"
    notes = [textwrap.fill(n, NOTE_WIDTH, subsequent_indent="  ") for n in vram_notes(q, results, selected)]
    lines = [head, "", *table(vram_rows(q, results, selected)), "", *notes]
    warnings = results[selected].warnings
    if warnings:
        lines += ["", "warnings:", *(f"  - {w}" for w in warnings)]
    return "\n".join(lines)


def table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r)).rstrip() for r in rows]


def estimate_label(model: str, quant: str, gpus: int, gpu: str, c: Capacity, instead: str) -> str:
    """The capacity's source when it is the catalog estimate; ``instead`` names how to use a benchmark."""
    return (
        f" (ESTIMATE from the catalog: {model} {quant} on {gpus} x {gpu}: batch {c.batch}, "
        f"{c.decode_bound}-bound decode, {c.utilization:.0%} of peak; {instead} uses a benchmark instead)"
    )


def breakeven_text(
    b: Breakeven, gpus: int, hourly: float, api_label: str, input_share: float, capacity_label: str | None
) -> str:
    lines = [
        f"self-host   {gpus} x {usd(hourly)}/h = {usd(b.self_host_cost_per_day)}/day ({usd(b.self_host_cost_per_month)}/month)",
        f"API         {api_label}: blended {usd(b.api_blended_per_mtok, 4)}/1M at {input_share:.0%} input",
    ]
    if math.isinf(b.break_even_tokens_per_day):
        lines.append("break-even  never: the API is free")
    else:
        lines.append(
            f"break-even  {tokens(b.break_even_tokens_per_day)} tokens/day ({b.break_even_tokens_per_s:,.1f} tokens/s average)"
        )
    if b.capacity_tokens_per_day is None:
        lines.append("capacity    unknown (give --model and --gpu for an estimate)")
    else:
        lines.append(f"capacity    {tokens(b.capacity_tokens_per_day)} tokens/day{capacity_label or ''}")
        lines.append("reachable   " + _reachable(b))
    if b.tokens_per_day is not None:
        lines.append(_at_volume(b))
    return "\n".join(lines)


def _reachable(b: Breakeven) -> str:
    cap = b.capacity_tokens_per_day or 0
    if cap <= 0:
        return "no: the model does not fit these GPUs"
    share = b.break_even_tokens_per_day / cap
    if b.reachable:
        return f"yes: break-even is {share:.0%} of one deployment's capacity"
    return (
        f"no: break-even is {share:.1f}x what these GPUs can serve; each added deployment adds its full cost"
    )


def _at_volume(b: Breakeven) -> str:
    head = f"at {tokens(b.tokens_per_day)} tokens/day"
    if b.monthly_cost_self_host is None:
        return f"{head}: API {usd(b.monthly_cost_api)}/month; self-hosting cannot serve it on these GPUs"
    n = f" ({b.deployments_needed} deployments)" if (b.deployments_needed or 1) > 1 else ""
    verdict = {"self-host": "self-hosting is cheaper", "api": "the API is cheaper", "equal": "equal"}[
        b.cheaper or "equal"
    ]
    return f"{head}: self-host {usd(b.monthly_cost_self_host)}/month{n} vs API {usd(b.monthly_cost_api)}/month: {verdict}"


def catalog_text(kind: str, cat: Catalog, input_share: float = 0.7) -> str:
    if kind == "models":
        rows = [("slug", "total", "active", "layers", "kv heads", "context", "format", "date")] + [
            (
                m.slug,
                f"{m.params.total / 1e9:,.2f} B",
                f"{m.params.text_active / 1e9:,.2f} B",
                str(m.layers),
                "MLA" if m.mla else str(m.kv_heads),
                f"{m.max_position:,}" if m.max_position else "?",
                m.native_quant,
                m.date or "?",
            )
            for m in cat.models
        ]
    elif kind == "gpus":
        rows = [("slug", "memory", "GB/s", "BF16 TFLOPS", "FP8 TFLOPS", "$/h", "checked")] + [
            (
                g.slug,
                f"{g.memory_gb:g} GB",
                f"{g.bandwidth_gb_s:,g}",
                f"{g.bf16_tflops:,g}",
                f"{g.fp8_tflops:,g}" if g.fp8_tflops else "none",
                f"{g.default_hourly:.2f}" + ("*" if g.overridden else ""),
                g.price_checked or "undated",
            )
            for g in cat.gpus
        ]
    else:
        rows = [("slug", "kind", "in $/1M", "out $/1M", f"blended {input_share:.0%}", "checked")] + [
            (
                a.slug,
                a.kind,
                f"{a.input_per_mtok:g}",
                f"{a.output_per_mtok:g}",
                f"{a.blended(input_share):.3f}" + ("*" if a.overridden else ""),
                a.checked or "undated",
            )
            for a in cat.apis
        ]
    note = "\n(* = overridden in [calculator]; sources: --json)"
    return "\n".join(table(rows)) + note
