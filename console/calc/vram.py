"""Will this model fit on these GPUs? Two overhead modes, side by side.

``flat`` — the rule of thumb: ``params × nominal bytes + KV + ~7 GB`` per GPU, against the vendor's
nominal memory (80 GB = 80e9 B), no block rounding.

``vllm`` — how vLLM sizes its cache (``vllm/v1/worker/gpu_worker.py``, ``determine_available_memory``)::

    kv_budget = ceil(total × gpu_memory_utilization) − weights − peak_activation − non_torch − cudagraph

per GPU, with ``total`` the memory the driver reports (81,559 MiB for an H100), real weight bytes (group
scales, 16-bit embeddings), and the cache counted in whole blocks (16 tokens; 64 for MLA). The activation
peak, non-torch and CUDA-graph terms are **estimates** (vLLM measures them at start-up by profiling).

Tensor parallelism over all ``gpus``: weights and KV heads are divided; KV heads are replicated when there
are fewer of them than GPUs, and MLA's latent cache is replicated on every GPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Literal

from console.calc.catalog import Gpu
from console.calc.errors import CalcError
from console.calc.kv import KvLayout, default_block_size, layout, tp_problems
from console.calc.models import ModelSpec
from console.calc.quant import Weights, check_quant, weights
from console.calc.units import GB, GiB, gib, tokens

Mode = Literal["flat", "vllm"]
Verdict = Literal["fits", "does-not-fit", "exceeds-context"]
MODES: tuple[Mode, ...] = ("flat", "vllm")
FLAT_OVERHEAD_BYTES = 7 * GB  # the rule of thumb's "~7 GB CUDA overhead", per GPU
DEFAULT_SEQ_LEN = 8192  # sized by default: this, or the model's context when that is shorter
DEFAULT_UTILIZATION = 0.92  # vLLM >= 0.3x default (0.9 in 0.11)
NON_TORCH_BYTES = GiB // 2  # CUDA context growth, NCCL and cuBLAS workspaces (estimate)
CUDAGRAPH_BYTES = GiB // 4  # CUDA-graph pools, profiled since vLLM 0.21 (estimate)
MAX_BATCHED_TOKENS = 8192  # tokens in vLLM's profiling forward pass (typical default)
MAX_NUM_SEQS = 256  # sequences in vLLM's profiling sampler pass (default)


@dataclass(frozen=True, slots=True)
class VramQuery:
    """One question: this model, in this format, on ``gpus`` of this GPU."""

    model: ModelSpec
    gpu: Gpu
    gpus: int = 1
    quant: str | None = None  # None = the checkpoint's own format
    kv_dtype: str = "auto"
    seq_len: int = 8192
    gpu_memory_utilization: float = DEFAULT_UTILIZATION
    block_size: int | None = None  # None = vLLM's default for the model (16; 64 for MLA)
    max_batched_tokens: int = MAX_BATCHED_TOKENS

    @property
    def format(self) -> str:
        return self.quant or self.model.native_quant


@dataclass(frozen=True, slots=True)
class Overheads:
    """Per-GPU memory that is neither weights nor KV cache."""

    activation_peak: int = 0
    non_torch: int = 0
    cudagraph: int = 0
    flat: int = 0  # the rule of thumb's flat ~7 GB

    @property
    def total(self) -> int:
        return self.activation_peak + self.non_torch + self.cudagraph + self.flat


@dataclass(frozen=True, slots=True)
class VramResult:
    """The answer in one mode. Byte counts are per GPU unless the name says otherwise."""

    mode: Mode
    memory_per_gpu: int  # flat: nominal; vllm: as the driver reports it
    reserved_per_gpu: int  # vllm: (1 − utilization) × memory, left unused
    weights_bytes: int  # whole model, this mode's weight figure
    weights_per_gpu: int
    overheads: Overheads
    kv_budget_per_gpu: int  # negative when weights + overheads do not fit
    kv_bytes_per_token: int  # whole model, all layers full, no replication
    kv_bytes_per_token_per_gpu: int
    kv_tokens: int  # tokens the cache holds counting every layer as full (vLLM's "GPU KV cache size")
    seq_len: int
    seq_kv_per_gpu: int  # one sequence of seq_len
    max_concurrent_seqs: int
    max_context_tokens: int | None  # one sequence, capped at the model's limit; None = unbounded
    fits: bool
    margin_per_gpu: int  # kv budget − one sequence; negative = short by this much
    block_size: int | None
    gpus: int
    warnings: tuple[str, ...] = field(default=())
    context_limit: int | None = None  # the model's context (max_position_embeddings); None = unknown

    @property
    def exceeds_context(self) -> bool:
        """The sequence is longer than the model's context: no amount of memory makes it fit."""
        return self.context_limit is not None and self.seq_len > self.context_limit

    @property
    def verdict(self) -> Verdict:
        """``fits``, ``exceeds-context`` (its own answer: memory is not the problem) or ``does-not-fit``."""
        if self.exceeds_context:
            return "exceeds-context"
        return "fits" if self.fits else "does-not-fit"

    @property
    def spare_per_gpu(self) -> int:
        """KV-cache memory left after one sequence (what "to spare" means); 0 when short."""
        return max(self.margin_per_gpu, 0)

    @property
    def kv_budget_bytes(self) -> int:
        return max(self.kv_budget_per_gpu, 0) * self.gpus

    @property
    def free_per_gpu(self) -> int:
        """What is left when the budget is negative-clamped: never below zero."""
        used = (
            self.weights_per_gpu
            + self.overheads.total
            + max(self.kv_budget_per_gpu, 0)
            + self.reserved_per_gpu
        )
        return max(self.memory_per_gpu - used, 0)


def check_query(q: VramQuery) -> None:
    """Reject values no GPU could have: one :class:`CalcError` line."""
    if q.gpus < 1:
        raise CalcError(f"--gpus must be 1 or more, got {q.gpus}")
    if q.seq_len < 1:
        raise CalcError(f"--seq-len must be 1 or more, got {q.seq_len}")
    if not (0 < q.gpu_memory_utilization <= 1):
        raise CalcError(f"--gpu-memory-utilization must be in (0, 1], got {q.gpu_memory_utilization}")
    if q.block_size is not None and q.block_size < 1:
        raise CalcError(f"--block-size must be 1 or more, got {q.block_size}")
    if q.max_batched_tokens < 1:
        raise CalcError(f"--max-batched-tokens must be 1 or more, got {q.max_batched_tokens}")
    check_quant(q.model, q.format)


def activation_peak(model: ModelSpec, tp: int, batched_tokens: int = MAX_BATCHED_TOKENS) -> int:
    """Peak activation memory of vLLM's profiling pass on one GPU (**estimate**): hidden-state buffers, the
    QKV output, the MLP's gate/up/activation outputs (MoE: top-k experts' worth) in 16-bit, and FP32 logits
    and probabilities for the sampler's batch."""
    t = batched_tokens
    hidden = 4 * t * model.hidden * 2
    qkv = t * (model.heads + 2 * model.kv_heads) * model.head_dim * 2 // tp
    width = model.intermediate or 0
    if model.moe is not None:
        width = max(
            width if model.moe.moe_layers < model.layers else 0,
            model.moe.top_k * model.moe.expert_intermediate + model.moe.shared_intermediate,
        )
    mlp = 3 * t * width * 2 // tp
    logits = MAX_NUM_SEQS * model.vocab * 4 * 2
    return hidden + qkv + mlp + logits


def size(q: VramQuery, mode: Mode = "vllm") -> VramResult:
    """Size ``q`` in one overhead mode."""
    check_query(q)
    if mode not in MODES:
        raise CalcError(f"unknown overhead mode {mode!r} (choose from flat, vllm)")
    kv = layout(q.model, q.kv_dtype, q.gpus)
    w = weights(q.model, q.format)
    if mode == "flat":
        memory, reserved = q.gpu.nominal_bytes, 0
        weights_total, per_gpu = w.naive, w.naive / q.gpus
        over, block = Overheads(flat=FLAT_OVERHEAD_BYTES), None
    else:
        memory = q.gpu.usable_bytes or q.gpu.nominal_bytes
        reserved = memory - math.ceil(memory * q.gpu_memory_utilization)
        weights_total, per_gpu = w.total, w.per_gpu(q.gpus, q.model.kv_heads)
        over = Overheads(
            activation_peak(q.model, q.gpus, q.max_batched_tokens), NON_TORCH_BYTES, CUDAGRAPH_BYTES
        )
        block = q.block_size or default_block_size(q.model)
    budget = memory - reserved - math.ceil(per_gpu) - over.total
    return _result(
        q, mode, kv, w, memory, reserved, round(weights_total), math.ceil(per_gpu), over, budget, block
    )


def _result(
    q: VramQuery,
    mode: Mode,
    kv: KvLayout,
    w: Weights,
    memory: int,
    reserved: int,
    weights_total: int,
    per_gpu: int,
    over: Overheads,
    budget: int,
    block: int | None,
) -> VramResult:
    seq = kv.seq_bytes_per_gpu(q.seq_len, block)
    blockers = tp_problems(q.model, q.gpus)
    limit = q.model.max_position
    if limit is not None and q.seq_len > limit:
        blockers.append(
            f"sequence length {q.seq_len:,} is longer than {q.model.slug}'s context of {limit:,} tokens: "
            f"no GPU memory makes it fit; size {limit:,} tokens or less"
        )
    usable = max(budget, 0)
    fits = budget > 0 and seq <= budget and not blockers
    result = VramResult(
        mode=mode,
        memory_per_gpu=memory,
        reserved_per_gpu=reserved,
        weights_bytes=weights_total,
        weights_per_gpu=per_gpu,
        overheads=over,
        kv_budget_per_gpu=budget,
        kv_bytes_per_token=kv.bytes_per_token,
        kv_bytes_per_token_per_gpu=kv.bytes_per_token_per_gpu,
        kv_tokens=_kv_tokens(usable, kv.bytes_per_token_per_gpu, block),
        seq_len=q.seq_len,
        seq_kv_per_gpu=seq,
        max_concurrent_seqs=usable // seq if seq else 0,
        max_context_tokens=kv.max_seq_len(usable, block, limit),
        fits=fits,
        margin_per_gpu=budget - seq,
        block_size=block,
        gpus=q.gpus,
        context_limit=limit,
    )
    return _with_warnings(result, q, kv, w, blockers)


def _kv_tokens(budget: int, bytes_per_token: int, block: int | None) -> int:
    if bytes_per_token <= 0:
        return 0
    if block is None:
        return budget // bytes_per_token
    return budget // (bytes_per_token * block) * block


def _with_warnings(r: VramResult, q: VramQuery, kv: KvLayout, w: Weights, blockers: list[str]) -> VramResult:
    return replace(r, warnings=tuple(blockers + warnings_for(r, q, kv, w)))


def warnings_for(r: VramResult, q: VramQuery, kv: KvLayout, w: Weights) -> list[str]:
    """What the numbers alone do not say."""
    m, out = q.model, []
    if r.kv_budget_per_gpu <= 0:
        out.append(
            f"does not fit: weights ({gib(r.weights_per_gpu)}/GPU) and overheads leave no room for a KV cache "
            f"(short by {gib(-r.kv_budget_per_gpu)} per GPU)"
        )
    elif r.seq_kv_per_gpu > r.kv_budget_per_gpu:
        out.append(
            f"does not fit one {q.seq_len:,}-token sequence: the cache holds {tokens(r.max_context_tokens)} tokens "
            f"(short by {gib(-r.margin_per_gpu)} per GPU)"
        )
    if m.moe is not None:
        out.append(
            f"MoE VRAM trap: all {m.params.total / 1e9:,.1f} B parameters must be loaded, though only "
            f"{m.params.text_active / 1e9:,.1f} B are active per token (active counts for bandwidth, not memory)"
        )
    if kv.mla and q.gpus > 1:
        out.append(f"MLA: the latent KV cache is replicated on every GPU ({q.gpus} copies)")
    elif kv.replication > 1:
        out.append(
            f"{m.kv_heads} KV heads on {q.gpus} GPUs: each KV head is replicated on {kv.replication} GPUs "
            f"(the cluster stores {kv.replication}x the cache)"
        )
    if m.capped_layers:
        windows = sorted({layer.window for layer in m.layer_attention if layer.capped})
        shown = ", ".join(f"{win:,}" for win in windows if win is not None)
        out.append(
            f"{m.capped_layers} of {m.layers} layers keep at most {shown} tokens (sliding/chunked window); "
            f"only {m.growing_layers} grow with context"
        )
    if q.format == "fp8" and q.gpu.fp8_tflops is None:
        out.append(f"{q.gpu.name} has no FP8 tensor cores: FP8 runs as weight-only W8A16")
    if q.kv_dtype == "fp8" and q.gpu.fp8_tflops is None:
        out.append(f"{q.gpu.name}: an FP8 KV cache saves memory but is computed in 16-bit")
    if r.mode == "vllm" and q.gpu.usable_bytes is None:
        out.append(
            f"{q.gpu.name}: driver-reported memory not in the sources; using the nominal {q.gpu.memory_gb:g} GB"
        )
    if r.mode == "flat":
        out.append(
            "rule of thumb: params × bytes + KV + ~7 GB per GPU, against the nominal memory; "
            "vLLM reserves more on large cards"
        )
    if m.params.vision:
        out.append(f"includes the vision tower ({m.params.vision / 1e9:.2f} B parameters, 16-bit)")
    return out + list(m.warnings)


def default_seq_len(model: ModelSpec) -> int:
    """The sequence length sized when none is given: 8,192 tokens, or the model's context when shorter."""
    limit = model.max_position
    return min(DEFAULT_SEQ_LEN, limit) if limit else DEFAULT_SEQ_LEN


def size_both(q: VramQuery) -> dict[Mode, VramResult]:
    """Both modes, for side-by-side display."""
    return {mode: size(q, mode) for mode in MODES}
