"""KV-cache bytes: per token, per sequence, per GPU — as vLLM lays the cache out.

* GQA/MHA: ``2 (K and V) × layers × kv_heads × head_dim × dtype bytes`` — **KV** heads, explicit ``head_dim``.
* MLA (DeepSeek): ``layers × (kv_lora_rank + qk_rope_head_dim) × dtype bytes``, no ×2, one "head" that every
  tensor-parallel rank holds in full (vLLM ``get_num_kv_heads`` returns 1 for MLA).
* Tensor parallel: each GPU holds ``max(1, kv_heads // tp)`` heads; with ``kv_heads < tp`` heads are
  replicated, so the cluster stores ``tp / kv_heads`` copies.
* Sliding-window and chunked-local layers hold at most their window (+1 block, vLLM
  ``SlidingWindowSpec``/``ChunkedLocalAttentionSpec``); full layers grow with the sequence.
* KV dtype ``auto`` = the model's activation dtype (BF16/FP16: 2 bytes) even for FP8 checkpoints; ``fp8``
  = 1 byte (vLLM stores it as uint8).

Sources: vLLM 0.11.0 ``v1/kv_cache_interface.py`` (``page_size_bytes``), ``config/model.py``
(``get_head_size``, ``get_num_kv_heads``).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

from console.calc.errors import CalcError
from console.calc.models import LayerAttention, ModelSpec

KV_DTYPES = ("auto", "bf16", "fp16", "fp8")
KV_DTYPE_BYTES = {"auto": 2, "bf16": 2, "fp16": 2, "fp8": 1}
DEFAULT_BLOCK = 16  # vLLM cache_config default
MLA_BLOCK = 64  # vLLM forces 64 for FlashMLA (128 for CUTLASS MLA on Blackwell)


@dataclass(frozen=True, slots=True)
class KvLayout:
    """How one model's cache sits on ``tp`` GPUs."""

    tp: int
    dtype_bytes: int
    layer_token_bytes: int  # one layer, one token, on one GPU
    model_layer_token_bytes: int  # one layer, one token, whole model without replication
    layers: tuple[LayerAttention, ...]
    kv_heads_per_gpu: int  # 1 for MLA
    replication: int  # GPUs holding a copy of each KV head (tp for MLA, 1 when kv_heads >= tp)
    mla: bool

    @property
    def bytes_per_token(self) -> int:
        """Whole model, all layers as if full attention, no replication (the usual published per-token figure)."""
        return self.model_layer_token_bytes * len(self.layers)

    @property
    def bytes_per_token_per_gpu(self) -> int:
        """One GPU, all layers as if full attention (vLLM's page arithmetic, "GPU KV cache size" tokens)."""
        return self.layer_token_bytes * len(self.layers)

    @property
    def growing_bytes_per_token(self) -> int:
        """Whole model, layers whose cache grows past their window (full-attention layers only)."""
        return self.model_layer_token_bytes * sum(1 for layer in self.layers if not layer.capped)

    def seq_bytes_per_gpu(self, seq_len: int, block_size: int | None) -> int:
        """Cache one sequence of ``seq_len`` tokens occupies on one GPU; ``block_size`` None = exact tokens."""
        total = 0
        for layer, count in Counter(self.layers).items():
            total += count * self.layer_token_bytes * layer_tokens(layer, seq_len, block_size)
        return total

    def max_seq_len(self, budget_bytes: float, block_size: int | None, limit: int | None) -> int | None:
        """The longest single sequence that fits ``budget_bytes`` on one GPU, capped at ``limit``.
        None when nothing bounds it (every layer windowed and no limit known)."""
        if budget_bytes < self.seq_bytes_per_gpu(1, block_size):
            return 0
        hi = limit if limit is not None else 2**40
        if self.seq_bytes_per_gpu(hi, block_size) <= budget_bytes:
            return hi if limit is not None else None
        lo = 1  # fits; hi does not
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.seq_bytes_per_gpu(mid, block_size) <= budget_bytes:
                lo = mid
            else:
                hi = mid
        return lo


def layer_tokens(layer: LayerAttention, seq_len: int, block_size: int | None) -> int:
    """Tokens of cache one layer holds for a sequence (whole blocks when ``block_size`` is given)."""
    if block_size is None:
        return min(seq_len, layer.window) if layer.capped else seq_len  # type: ignore[type-var]
    blocks = math.ceil(seq_len / block_size)
    if layer.capped:
        blocks = min(blocks, math.ceil(layer.window / block_size) + 1)  # type: ignore[operator]
    return blocks * block_size


def kv_dtype_bytes(kv_dtype: str) -> int:
    if kv_dtype not in KV_DTYPE_BYTES:
        raise CalcError(f"unknown KV-cache dtype {kv_dtype!r} (choose from {', '.join(KV_DTYPES)})")
    return KV_DTYPE_BYTES[kv_dtype]


def layout(model: ModelSpec, kv_dtype: str = "auto", tp: int = 1) -> KvLayout:
    """The cache layout of ``model`` with ``kv_dtype`` on ``tp`` tensor-parallel GPUs."""
    if tp < 1:
        raise CalcError(f"GPU count must be 1 or more, got {tp}")
    size = kv_dtype_bytes(kv_dtype)
    if model.mla is not None:
        per_layer = model.mla.latent_dim * size
        return KvLayout(tp, size, per_layer, per_layer, model.layer_attention, 1, tp, True)
    heads_per_gpu = max(1, model.kv_heads // tp)
    replication = max(1, tp // model.kv_heads)
    per_head = 2 * model.head_dim * size
    return KvLayout(
        tp,
        size,
        heads_per_gpu * per_head,
        model.kv_heads * per_head,
        model.layer_attention,
        heads_per_gpu,
        replication,
        False,
    )


def default_block_size(model: ModelSpec) -> int:
    return MLA_BLOCK if model.mla is not None else DEFAULT_BLOCK


def tp_problems(model: ModelSpec, tp: int) -> list[str]:
    """Why vLLM would refuse this tensor-parallel size (heads must split evenly across GPUs)."""
    problems = []
    if model.heads % tp:
        problems.append(
            f"{tp} GPUs do not divide {model.heads} attention heads: vLLM refuses this tensor-parallel size"
        )
    kv = model.kv_heads
    if model.mla is None and (kv % tp if kv >= tp else tp % kv):
        problems.append(
            f"{tp} GPUs and {kv} KV heads do not divide evenly: vLLM refuses this tensor-parallel size"
        )
    return problems
