"""Weight bytes by format — what a checkpoint in that format really occupies, and the naive figure.

Real (used by the vLLM-style mode and for bandwidth):

* ``bf16`` / ``fp16``: 2 bytes per parameter.
* ``fp8`` / ``int8``: 1 byte per parameter of the linear layers; embeddings, the output head, norms, routers
  and the vision tower stay 16-bit (as quantized checkpoints ship them); per-channel/block scales are
  under 0.03% and not counted.
* ``int4`` (AWQ/GPTQ, group size 128): 4 bits per linear parameter plus a 16-bit scale and a 4-bit zero point
  per group of 128 (2.5 bytes / 128 parameters); embeddings and head stay 16-bit. Llama-3.3-70B: 39.8 GB,
  not the naive 35.3 GB.
* ``mxfp4`` (gpt-oss): only the routed experts' matrices, at 4.25 bits (4-bit values + one 8-bit scale per
  32); everything else BF16. gpt-oss-120b: ~65.3 GB.

Naive (the rule of thumb): parameters × nominal bytes (2, 1, 0.5).
"""

from __future__ import annotations

from dataclasses import dataclass

from console.calc.errors import CalcError
from console.calc.models import ModelSpec, Params

QUANTS = ("bf16", "fp16", "fp8", "int8", "int4", "mxfp4")
NOMINAL_BYTES = {"bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5, "mxfp4": 0.5}
INT4_GROUP = 128
INT4_BYTES = 0.5 + (2 + 0.5) / INT4_GROUP  # 4-bit weights + fp16 scale + 4-bit zero per group
MXFP4_BYTES = 4.25 / 8  # 4-bit values + an 8-bit shared exponent per 32
HALF = 2.0


@dataclass(frozen=True, slots=True)
class Weights:
    """Weight bytes of one model in one format, by component (floats: fractional bytes per parameter)."""

    quant: str
    embedding: float
    lm_head: float
    attention: float
    kv_proj: float
    replicated: float
    mlp: float  # dense MLP + shared experts
    routed_experts: float
    active_routed: float
    small: float
    vision: float
    naive: float  # params × nominal bytes (the rule of thumb)

    @property
    def total(self) -> float:
        return (
            self.embedding
            + self.lm_head
            + self.attention
            + self.mlp
            + self.routed_experts
            + self.small
            + self.vision
        )

    @property
    def active(self) -> float:
        """Bytes one decoded token reads: everything but the idle routed experts and the vision tower (the
        input embedding included, as bandwidth estimates usually count it)."""
        return self.total - (self.routed_experts - self.active_routed) - self.vision

    def per_gpu(self, tp: int, kv_heads: int) -> float:
        """Bytes on each of ``tp`` tensor-parallel ranks: sharded weights / tp, plus replicated matrices,
        plus k/v projections replicated when ``kv_heads < tp``."""
        sharded = self.total - self.replicated - self.kv_proj
        return sharded / tp + self.replicated + self.kv_proj / min(tp, kv_heads)


def check_quant(model: ModelSpec, quant: str) -> None:
    if quant not in QUANTS:
        raise CalcError(f"unknown quantization {quant!r} (choose from {', '.join(QUANTS)})")
    if quant == "mxfp4" and model.moe is None:
        raise CalcError(f"mxfp4 covers MoE experts only (as gpt-oss ships them); {model.slug} has no experts")


def weights(model: ModelSpec, quant: str) -> Weights:
    """The weight bytes of ``model`` stored as ``quant``."""
    check_quant(model, quant)
    p = model.params
    linear = _linear_bytes(quant)
    expert = MXFP4_BYTES if quant == "mxfp4" else linear
    return Weights(
        quant=quant,
        embedding=p.embedding * HALF,
        lm_head=p.lm_head * HALF,
        attention=p.attention * linear,
        kv_proj=p.kv_proj * linear,
        replicated=p.replicated * linear,
        mlp=(p.dense_mlp + p.shared_experts) * linear,
        routed_experts=p.routed_experts * expert,
        active_routed=p.active_routed * expert,
        small=p.small * HALF,
        vision=p.vision * HALF,
        naive=p.total * NOMINAL_BYTES[quant],
    )


def _linear_bytes(quant: str) -> float:
    if quant in ("bf16", "fp16", "mxfp4"):
        return HALF
    if quant in ("fp8", "int8"):
        return 1.0
    return INT4_BYTES


def naive_bytes(params: Params, quant: str) -> float:
    """params × nominal bytes per parameter: the rule of thumb's ``params × bytes``."""
    return params.total * NOMINAL_BYTES[quant]
