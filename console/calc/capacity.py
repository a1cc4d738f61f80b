"""How many tokens a day can these GPUs actually serve? A bandwidth- and compute-bound **estimate**.

Per token of traffic (``input_share`` prompt tokens, the rest generated):

* prefill is compute-bound: ``2 × active params`` FLOPs per token at the GPUs' dense peak (FP8 tensor
  cores for FP8 weights where the GPU has them; BF16 otherwise — W4A16/W8A16 compute in 16-bit);
* decode runs in steps of ``batch`` sequences; each step reads the weights once (for MoE, the experts the
  batch's tokens route to: ``1 − (1 − k/E)^batch`` of them) plus every sequence's KV cache, and does
  ``batch × 2 × active`` FLOPs; the step takes the longer of the two (memory- or compute-bound);
* ``batch`` = the sequences of ``seq_len`` tokens the KV budget holds (vLLM-style sizing), at most
  ``max_num_seqs``.

The ideal rate is multiplied by ``utilization`` (sustained fraction of peak; published serving measurements
sit at 40–60%). Attention FLOPs and scheduling gaps are not modelled. Reference point: on an A100, 70B
W4A16 has a ≈ 2,200 tok/s ceiling and sustains ~900–1,300.
"""

from __future__ import annotations

from dataclasses import dataclass

from console.calc.catalog import Gpu
from console.calc.errors import CalcError
from console.calc.kv import layout
from console.calc.models import ModelSpec
from console.calc.quant import weights
from console.calc.units import SECONDS_PER_DAY
from console.calc.vram import DEFAULT_UTILIZATION, MAX_NUM_SEQS, VramQuery, size

DEFAULT_SEQ_LEN = 2048  # average tokens in context per sequence while serving (assumption)
DEFAULT_SERVING_UTILIZATION = 0.5


@dataclass(frozen=True, slots=True)
class CapacityQuery:
    model: ModelSpec
    gpu: Gpu
    gpus: int = 1
    quant: str | None = None
    kv_dtype: str = "auto"
    seq_len: int = DEFAULT_SEQ_LEN
    input_share: float = 0.7
    utilization: float = DEFAULT_SERVING_UTILIZATION
    gpu_memory_utilization: float = DEFAULT_UTILIZATION
    max_num_seqs: int = MAX_NUM_SEQS


@dataclass(frozen=True, slots=True)
class Capacity:
    """Throughput estimate for one deployment (all ``gpus`` serving one model replica)."""

    fits: bool
    batch: int  # concurrent sequences decoded per step
    single_stream_tokens_per_s: float  # decode upper bound at batch 1, weights only
    prefill_tokens_per_s: float  # ideal (100% of peak)
    decode_tokens_per_s: float  # ideal, at ``batch``
    decode_bound: str  # "memory-bandwidth" | "compute"
    ideal_tokens_per_s: float  # mixed traffic at 100% of peak
    utilization: float
    peak_flops: float

    @property
    def tokens_per_s(self) -> float:
        return self.ideal_tokens_per_s * self.utilization

    @property
    def tokens_per_day(self) -> float:
        return self.tokens_per_s * SECONDS_PER_DAY


def peak_flops(gpu: Gpu, quant: str) -> float:
    """Dense FLOP/s of one GPU for this weight format."""
    tflops = gpu.fp8_tflops if quant == "fp8" and gpu.fp8_tflops else gpu.bf16_tflops
    return tflops * 1e12


def check(q: CapacityQuery) -> None:
    if not (0 <= q.input_share <= 1):
        raise CalcError(f"--input-share must be between 0 and 1, got {q.input_share}")
    if not (0 < q.utilization <= 1):
        raise CalcError(f"--utilization must be in (0, 1], got {q.utilization}")
    if q.max_num_seqs < 1:
        raise CalcError(f"max_num_seqs must be 1 or more, got {q.max_num_seqs}")


def estimate(q: CapacityQuery) -> Capacity:
    """The throughput of ``q.gpus`` × ``q.gpu`` serving ``q.model``; ``fits`` False (and zero rates) when
    the model does not fit."""
    check(q)
    sized = size(VramQuery(q.model, q.gpu, q.gpus, q.quant, q.kv_dtype, q.seq_len, q.gpu_memory_utilization))
    quant = q.quant or q.model.native_quant
    w = weights(q.model, quant)
    flops = peak_flops(q.gpu, quant) * q.gpus
    per_token_flops = 2 * q.model.params.text_active
    bw = q.gpu.bandwidth_gb_s * 1e9  # per GPU
    per_gpu = w.per_gpu(q.gpus, q.model.kv_heads)
    scale = per_gpu / w.total if w.total else 0.0  # the share of each component on one GPU
    single = bw / (w.active * scale) if w.active else 0.0
    batch = min(sized.max_concurrent_seqs, q.max_num_seqs) if sized.fits else 0
    if batch == 0:
        return Capacity(False, 0, single, 0.0, 0.0, "none", 0.0, q.utilization, flops)
    read = (w.total - w.vision - (w.routed_experts - _routed_read(q.model, w.routed_experts, batch))) * scale
    kv_read = batch * layout(q.model, q.kv_dtype, q.gpus).seq_bytes_per_gpu(q.seq_len, None)
    t_memory, t_compute = (read + kv_read) / bw, batch * per_token_flops / flops
    step = max(t_memory, t_compute)
    t_prefill = per_token_flops / flops
    t_mixed = q.input_share * t_prefill + (1 - q.input_share) * step / batch
    bound = "memory-bandwidth" if t_memory >= t_compute else "compute"
    return Capacity(
        True, batch, single, 1 / t_prefill, batch / step, bound, 1 / t_mixed, q.utilization, flops
    )


def _routed_read(model: ModelSpec, routed_bytes: float, batch: int) -> float:
    """Routed-expert bytes a decode step of ``batch`` tokens touches (expected, uniform routing)."""
    if model.moe is None or not routed_bytes:
        return routed_bytes
    touched = 1 - (1 - model.moe.top_k / model.moe.experts) ** batch
    return routed_bytes * touched
