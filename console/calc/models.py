"""What the calculators know about a model: architecture, parameter breakdown, attention per layer.

Built by :mod:`.hfconfig` from a ``config.json`` (a catalog entry or a local model directory).
Parameter counts are split into components because formats treat them differently: quantized
checkpoints keep embeddings, the output head, norms and routers in 16-bit, and MXFP4 covers only the
routed experts (gpt-oss). MoE models load **all** experts (memory) but read only the active ones per
token (bandwidth and FLOPs) — the "MoE VRAM trap".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

LayerKind = Literal["full", "sliding", "chunked"]


@dataclass(frozen=True, slots=True)
class LayerAttention:
    """One decoder layer's attention: full (the cache grows with the sequence) or capped at ``window``
    tokens (sliding window, or Llama 4's chunked local attention)."""

    kind: LayerKind = "full"
    window: int | None = None

    @property
    def capped(self) -> bool:
        return self.kind != "full" and self.window is not None


@dataclass(frozen=True, slots=True)
class Mla:
    """Multi-head latent attention (DeepSeek V2/V3/R1): the cache holds one latent vector of
    ``kv_lora_rank + qk_rope_head_dim`` elements per token per layer, not per-head K and V."""

    kv_lora_rank: int
    qk_rope_head_dim: int
    qk_nope_head_dim: int
    v_head_dim: int
    q_lora_rank: int | None

    @property
    def latent_dim(self) -> int:
        return self.kv_lora_rank + self.qk_rope_head_dim


@dataclass(frozen=True, slots=True)
class Moe:
    """Mixture-of-experts layout: ``experts`` routed experts (``top_k`` per token) in ``moe_layers``
    layers, each expert a gated MLP of width ``expert_intermediate``; plus shared experts."""

    experts: int
    top_k: int
    moe_layers: int
    expert_intermediate: int
    shared_intermediate: int = 0  # total width of the always-on shared expert(s) per MoE layer


@dataclass(frozen=True, slots=True)
class Params:
    """Parameter counts by component (exact integers). ``linear`` components are what weight
    quantization covers; embeddings, head, ``small`` (norms, biases, routers, sinks) and the vision
    tower stay 16-bit in quantized checkpoints."""

    embedding: int
    lm_head: int  # 0 when tied to the embedding
    attention: int  # projection matrices (q, k, v, o or the MLA projections)
    kv_proj: int  # the k/v projection matrices (part of attention; replicated when kv_heads < TP)
    replicated: int  # matrices every tensor-parallel rank holds in full (MLA's q_a/kv_a projections)
    dense_mlp: int
    routed_experts: int  # all routed experts' matrices
    active_routed: int  # the routed experts' matrices one token uses (top_k of them)
    shared_experts: int
    small: int  # norms, biases, routers, attention sinks
    expert_small: int = 0  # routed experts' biases (gpt-oss), part of ``small``
    vision: int = 0  # vision tower (loaded with the model; not part of text totals)

    @property
    def linear(self) -> int:
        return self.attention + self.dense_mlp + self.routed_experts + self.shared_experts

    @property
    def text_total(self) -> int:
        return self.embedding + self.lm_head + self.linear + self.small

    @property
    def total(self) -> int:
        """Everything loaded into GPU memory: text model + vision tower."""
        return self.text_total + self.vision

    @property
    def text_active(self) -> int:
        """Parameters one token touches, input embedding included (Meta's and this tool's convention)."""
        idle_experts = self.routed_experts - self.active_routed
        idle_small = self.expert_small - self._active_expert_small
        return self.text_total - idle_experts - idle_small

    @property
    def _active_expert_small(self) -> int:
        if not self.routed_experts:
            return 0
        return round(self.expert_small * self.active_routed / self.routed_experts)

    @property
    def text_active_excl_embedding(self) -> int:
        """Active parameters without the input embedding table (OpenAI's and DeepSeek's convention)."""
        return self.text_active - self.embedding


@dataclass(frozen=True, slots=True)
class Published:
    """The vendor's own headline numbers, for comparison with the derived counts."""

    total_b: float | None = None
    active_b: float | None = None
    active_convention: str | None = None  # "incl. embedding" / "excl. input embedding"
    vision_b: float | None = None
    note: str | None = None


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A model as the calculators need it."""

    slug: str
    name: str
    model_type: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    intermediate: int | None
    max_position: int | None
    layer_attention: tuple[LayerAttention, ...]
    params: Params
    mla: Mla | None = None
    moe: Moe | None = None
    native_quant: str = "bf16"  # the checkpoint's own format: bf16, fp16, fp8, int8, int4, mxfp4
    hf_repo: str | None = None
    config_url: str | None = None
    source: str | None = None
    date: str | None = None  # when the model and its config were published
    published: Published | None = None
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()  # problems found while reading the config
    aliases: tuple[str, ...] = field(default=())

    @property
    def is_moe(self) -> bool:
        return self.moe is not None

    @property
    def capped_layers(self) -> int:
        return sum(1 for layer in self.layer_attention if layer.capped)

    @property
    def growing_layers(self) -> int:
        return self.layers - self.capped_layers
