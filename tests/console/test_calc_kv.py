"""KV-cache bytes: the research's per-token vectors (GQA, MLA, windows, FP8, tensor-parallel replication) and
the block arithmetic, each worked out from the formula rather than read back from the code."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from console.calc.catalog import builtin
from console.calc.errors import CalcError
from console.calc.kv import layer_tokens, layout, tp_problems
from console.calc.models import LayerAttention

# calculator.md §1.1 "KV B/tok (BF16)": 2 × layers × kv_heads × head_dim × 2 (MLA: layers × 576 × 2)
PER_TOKEN = {
    "llama-3.1-8b": 131_072,
    "llama-3.3-70b": 327_680,
    "llama-3.1-405b": 516_096,
    "llama-4-scout": 196_608,
    "llama-4-maverick": 196_608,
    "mixtral-8x7b": 131_072,
    "qwen2.5-7b": 57_344,
    "qwen2.5-72b": 327_680,
    "qwen3-32b": 262_144,
    "qwen3-235b-a22b": 192_512,
    "deepseek-v3": 70_272,
    "gpt-oss-20b": 49_152,
    "gpt-oss-120b": 73_728,
    "mistral-7b": 131_072,
    "gemma-3-27b": 507_904,
}
# "grows with context": only full-attention layers
GROWING = {
    "gpt-oss-20b": 24_576,
    "gpt-oss-120b": 36_864,
    "gemma-3-27b": 81_920,
    "llama-4-scout": 49_152,
    "deepseek-v3": 70_272,
    "llama-3.3-70b": 327_680,
    "mistral-7b": 0,
}


@pytest.mark.parametrize("slug", sorted(PER_TOKEN))
def test_bytes_per_token_table(slug: str) -> None:
    assert layout(builtin().model(slug)).bytes_per_token == PER_TOKEN[slug]


@pytest.mark.parametrize("slug", sorted(GROWING))
def test_growing_bytes_per_token(slug: str) -> None:
    assert layout(builtin().model(slug)).growing_bytes_per_token == GROWING[slug]


def test_mla_is_71x_smaller_than_per_head_expansion() -> None:
    m = builtin().model("deepseek-v3")
    expanded = m.layers * m.heads * (192 + 128) * 2  # K (nope+rope) and V per head, BF16
    assert expanded == 4_997_120
    assert expanded / layout(m).bytes_per_token == pytest.approx(71.1, abs=0.1)


def test_fp8_kv_halves_everything() -> None:
    for slug in ("llama-3.3-70b", "deepseek-v3", "gemma-3-27b"):
        m = builtin().model(slug)
        assert layout(m, "fp8").bytes_per_token * 2 == layout(m, "bf16").bytes_per_token
        assert layout(m, "fp8").seq_bytes_per_gpu(131072, 16) * 2 == layout(m, "auto").seq_bytes_per_gpu(
            131072, 16
        )


def test_gqa_8k_sequence_is_2_5_gib() -> None:
    assert (
        layout(builtin().model("llama-3.3-70b")).seq_bytes_per_gpu(8192, 16)
        == 327_680 * 8192
        == int(2.5 * 2**30)
    )


def test_gpt_oss_at_128k() -> None:
    """18 full layers × 131,072 × 2,048 B = 4.8 GB, + ~5 MB for the windowed layers (9 blocks of 16)."""
    kv = layout(builtin().model("gpt-oss-120b"))
    full = 18 * 131_072 * 2048
    assert full / 1e9 == pytest.approx(4.83, abs=0.01)
    assert kv.seq_bytes_per_gpu(131_072, 16) == full + 18 * 2048 * (128 + 16)
    assert kv.seq_bytes_per_gpu(131_072, None) == full + 18 * 2048 * 128
    naive = 36 * 131_072 * 2048
    assert naive / 1e9 == pytest.approx(9.66, abs=0.01)


def test_gemma_hybrid_at_128k() -> None:
    """10 global layers × 131,072 × 8,192 B = 10.7 GB; 52 local layers × 1,024 tokens = 0.44 GB; naive 66.6 GB."""
    kv = layout(builtin().model("gemma-3-27b"))
    exact = kv.seq_bytes_per_gpu(131_072, None)
    assert exact == 10 * 131_072 * 8192 + 52 * 1024 * 8192
    assert exact / 1e9 == pytest.approx(11.2, abs=0.05)
    assert kv.bytes_per_token * 131_072 / 1e9 == pytest.approx(66.6, abs=0.05)


def test_scout_long_context() -> None:
    kv = layout(builtin().model("llama-4-scout"))
    beyond = kv.seq_bytes_per_gpu(1_000_000, None) - kv.seq_bytes_per_gpu(999_999, None)
    assert beyond == 49_152  # only the 12 global layers grow past 8K
    assert (
        kv.seq_bytes_per_gpu(4096, None) == 196_608 * 4096
    )  # inside the chunk every layer holds every token


def test_tensor_parallel_divides_and_replicates() -> None:
    cat = builtin()
    qwen = layout(cat.model("qwen3-235b-a22b"), tp=8)  # 4 KV heads on 8 GPUs
    assert qwen.kv_heads_per_gpu == 1 and qwen.replication == 2
    assert qwen.bytes_per_token_per_gpu == 94 * 2 * 1 * 128 * 2
    assert qwen.bytes_per_token_per_gpu * 8 == 2 * qwen.bytes_per_token  # the cluster holds it twice
    llama = layout(cat.model("llama-3.3-70b"), tp=4)
    assert llama.bytes_per_token_per_gpu * 4 == llama.bytes_per_token and llama.replication == 1
    mla = layout(cat.model("deepseek-v3"), tp=8)
    assert mla.bytes_per_token_per_gpu == mla.bytes_per_token == 70_272 and mla.replication == 8


def test_block_rounding() -> None:
    full, window = LayerAttention(), LayerAttention("sliding", 100)
    assert layer_tokens(full, 1, 16) == 16
    assert layer_tokens(full, 17, 16) == 32
    assert layer_tokens(full, 17, None) == 17
    assert layer_tokens(window, 10_000, 16) == (math.ceil(100 / 16) + 1) * 16
    assert layer_tokens(window, 50, 16) == 64
    assert layer_tokens(window, 10_000, None) == 100


def test_max_seq_len_caps_and_unbounded() -> None:
    cat = builtin()
    mistral = layout(cat.model("mistral-7b"))  # every layer windowed at 4096
    big = 10**12
    assert mistral.max_seq_len(big, 16, 32_768) == 32_768
    assert mistral.max_seq_len(big, 16, None) is None  # nothing bounds it
    llama = layout(cat.model("llama-3.3-70b"))
    assert llama.max_seq_len(327_680 * 1000, None, None) == 1000
    assert llama.max_seq_len(327_680 * 1000, 16, None) == 992  # whole blocks only
    assert llama.max_seq_len(100, 16, None) == 0


def test_tp_problems() -> None:
    m = builtin().model("llama-3.3-70b")
    assert tp_problems(m, 8) == []
    assert any("do not divide 64 attention heads" in p for p in tp_problems(m, 3))
    assert any("KV heads" in p for p in tp_problems(builtin().model("qwen3-235b-a22b"), 6))
    assert tp_problems(builtin().model("deepseek-v3"), 16) == []  # MLA: one latent "head"


def test_bad_kv_dtype_and_tp() -> None:
    m = builtin().model("llama-3.1-8b")
    with pytest.raises(CalcError, match="unknown KV-cache dtype 'int3'"):
        layout(m, "int3")
    with pytest.raises(CalcError, match="GPU count must be 1 or more"):
        layout(m, "auto", 0)


@given(
    seq=st.integers(1, 2_000_000),
    block=st.sampled_from([None, 1, 16, 64]),
    slug=st.sampled_from(sorted(PER_TOKEN)),
    tp=st.sampled_from([1, 2, 4, 8]),
)
def test_sequence_bytes_bounds(seq: int, block: int | None, slug: str, tp: int) -> None:
    """Never more than every layer holding the whole (block-rounded) sequence; never less than the growing layers."""
    kv = layout(builtin().model(slug), tp=tp)
    got = kv.seq_bytes_per_gpu(seq, block)
    rounded = math.ceil(seq / block) * block if block else seq
    assert got <= kv.bytes_per_token_per_gpu * rounded
    growing_per_gpu = kv.layer_token_bytes * sum(1 for layer in kv.layers if not layer.capped)
    assert got >= growing_per_gpu * seq
    assert kv.seq_bytes_per_gpu(seq + 1, block) >= got  # monotone
