"""Presets for the calculator screen: the worked example (a 70B model on one A100, and the INT4 variant that fits), and a
running engine's numbers (model, weight format implied by its name, GPU, GPU count, measured tokens/day)."""

from __future__ import annotations

from dataclasses import replace

from console.calc.capacity import CapacityQuery, estimate
from console.calc.catalog import Catalog
from console.calc.live import LiveEngine
from console.calc.models import ModelSpec
from console.calc.present import NATIVE, Form, Parts, parse
from console.calc.units import GB, tokens
from console.calc.vram import FLAT_OVERHEAD_BYTES, size_both

QUANT_SUFFIXES = {
    "awq": "int4",
    "gptq": "int4",
    "int4": "int4",
    "w4a16": "int4",
    "fp8": "fp8",
    "int8": "int8",
    "w8a8": "int8",
    "w8a16": "int8",
    "mxfp4": "mxfp4",
}


def engine_form(form: Form, engine: LiveEngine, cat: Catalog) -> tuple[Form, Parts]:
    """The form with a running engine's numbers: its model (when the catalog knows it, with the weight format
    its name implies: ``-AWQ`` → int4, ``-FP8`` → fp8), GPU, GPU count and measured tokens/day."""
    changes: dict[str, str] = {"gpus": str(engine.gpu_count)} if engine.gpu_count > 0 else {}
    notes: list[tuple[str, str]] = []
    model, quant = _served_model(engine.model, cat)
    if model is not None:
        changes |= {"model": model.slug, "model_path": "", "quant": quant or NATIVE}
    else:
        notes.append((f"model {engine.model or '?'!r} is not in the catalog: keeping {form.model}. ", "warn"))
    gpu = cat.find_gpu(engine.gpu_name)
    if gpu is not None:
        changes["gpu"] = gpu.slug
    else:
        notes.append((f"GPU {engine.gpu_name or '?'!r} is not in the catalog: keeping {form.gpu}. ", "warn"))
    if engine.tokens_per_s is not None:
        changes["tokens_per_day"] = f"{engine.tokens_per_s * 86_400:.0f}"
    else:
        changes["tokens_per_day"] = ""
        notes.append(("No measured throughput: tokens/day left empty. ", "missing"))
    if engine.simulated:
        notes.append(("SIMULATED engine: its numbers are not a real deployment's. ", "simulated"))
    return replace(form, **changes), tuple(notes)


def _served_model(name: str | None, cat: Catalog) -> tuple[ModelSpec | None, str | None]:
    if not name:
        return None, None
    found = cat.find_model(name)
    if found is not None:
        return found, None
    parts = name.rsplit("/", 1)[-1].lower().split("-")
    quant = next((QUANT_SUFFIXES[p] for p in reversed(parts) if p in QUANT_SUFFIXES), None)
    while parts:
        candidate = cat.find_model("-".join(parts))
        if candidate is not None:
            return candidate, quant
        parts.pop()
    return None, None


# --- the example: a 70B model on one A100 --------------------------------------------------------

EXAMPLE_APIS = ("claude-opus-4.5", "together-llama-3.3-70b", "fireworks-llama-3.3-70b")


def example_form(apis: tuple[str, ...] = ()) -> Form:
    """The worked example: Llama 3.3 70B in BF16 on one A100 80GB at $2.50/h, 70/30 input/output, sized with
    the rule of thumb. ``apis``: the APIs already ticked, kept (the example's own are added after them)."""
    return Form(
        model="llama-3.3-70b",
        gpu="a100-80gb",
        gpus="1",
        quant="bf16",
        kv_dtype="auto",
        seq_len="8192",
        overhead="flat",
        gpu_memory_utilization="0.9",
        gpu_hourly="2.50",
        ops_cost_per_month="0",
        input_share="0.7",
        tokens_per_day="",
        utilization="0.5",
        apis=merge_apis(apis, EXAMPLE_APIS),
    )


def merge_apis(chosen: tuple[str, ...], extra: tuple[str, ...]) -> tuple[str, ...]:
    """The APIs the operator ticked, then a preset's own: a preset never unticks a choice."""
    return tuple(dict.fromkeys((*chosen, *extra)))


def is_example(form: Form) -> bool:
    """Whether ``form`` is the worked example (whatever APIs are ticked)."""
    return replace(form, apis=()) == replace(example_form(), apis=())


def example_explanation(cat: Catalog) -> Parts:
    """What the example's numbers mean, computed with the same functions as everything else."""
    form = example_form()
    inp = parse(form, cat)
    flat = size_both(inp.vram)["flat"]
    int4 = parse(replace(form, quant="int4", overhead="vllm"), cat)
    int4_fit = size_both(int4.vram)["vllm"]
    cap = estimate(CapacityQuery(int4.model, int4.vram.gpu, 1, "int4", utilization=inp.utilization))
    per_day = inp.hourly * 24
    frontier, hosted = cat.api("claude-opus-4.5"), cat.api("together-llama-3.3-70b")
    even_f = per_day / (frontier.blended(inp.input_share) / 1e6)
    even_h = per_day / (hosted.blended(inp.input_share) / 1e6)
    return (
        ("Example: a 70B model on one A100. ", "info"),
        (
            f"Llama 3.3 70B in BF16 is {flat.weights_bytes / GB:,.1f} GB of weights; by the rule of thumb "
            f"(params × bytes + KV + ~7 GB) it needs {(flat.weights_bytes + FLAT_OVERHEAD_BYTES) / GB:,.1f} GB "
            "before any KV cache, of an 80 GB A100: ",
            "live",
        ),
        ("it does not fit. ", "crit"),
        (
            f"At $2.50/h (${per_day:,.2f}/day; an on-demand price, not spot) and 70/30 input/output, break-even against "
            f"{frontier.name} ($5/$25) is {tokens(even_f)} tokens/day and against {hosted.name} "
            f"($0.88) {tokens(even_h)}. ",
            "live",
        ),
        (
            f"To run on one A100 it needs INT4 ({int4_fit.weights_bytes / GB:,.1f} GB with group scales): "
            f"{int4_fit.max_concurrent_seqs} concurrent 8K sequences, ≈{tokens(cap.tokens_per_day)} tokens/day at "
            f"{cap.utilization:.0%} of peak. Press {INT4_LABEL} (F6) to see it.",
            "dim",
        ),
    )


INT4_LABEL = "Make it fit: INT4"


def int4_form(apis: tuple[str, ...] = ()) -> Form:
    """The example made to fit: INT4 (AWQ/GPTQ) weights, vLLM-style sizing (ticked ``apis`` kept)."""
    return replace(example_form(apis), quant="int4", overhead="vllm")
