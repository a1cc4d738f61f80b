"""VRAM sizing: the seed's scenario (and its inconsistency), research/calculator.md §5.3 vectors for both
overhead modes, weight formats, tensor parallelism, warnings, and invariants over random queries."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from console.calc.catalog import builtin
from console.calc.errors import CalcError
from console.calc.quant import INT4_BYTES, MXFP4_BYTES, weights
from console.calc.units import GB, GiB
from console.calc.vram import FLAT_OVERHEAD_BYTES, VramQuery, activation_peak, size, size_both

CAT = builtin()
L70 = CAT.model("llama-3.3-70b")
A100 = CAT.gpu("a100-80gb")
H100 = CAT.gpu("h100-80gb")


def q(model=L70, gpu=A100, gpus=1, quant=None, **kw) -> VramQuery:  # noqa: ANN001
    return VramQuery(model, gpu, gpus, quant, **kw)


# --- weights -----------------------------------------------------------------------------------


def test_bf16_weights_are_141_gb() -> None:
    assert weights(L70, "bf16").total / GB == pytest.approx(141.1, abs=0.05)


def test_int4_weights_include_scales_and_16bit_embeddings() -> None:
    """AWQ/GPTQ group 128: 39.8 GB against the naive 0.5 B/param 35.3 GB (calculator.md §1.3)."""
    embed = 128_256 * 8192
    linear = L70.params.text_total - 2 * embed - L70.params.small
    expected = linear * (0.5 + 2.5 / 128) + (2 * embed + L70.params.small) * 2
    w = weights(L70, "int4")
    assert w.total == pytest.approx(expected)
    assert w.total / GB == pytest.approx(39.8, abs=0.05)
    assert w.naive / GB == pytest.approx(35.3, abs=0.05)
    assert INT4_BYTES == 0.5 + 2.5 / 128


def test_gpt_oss_mxfp4_is_experts_only() -> None:
    m = CAT.model("gpt-oss-120b")
    w = weights(m, "mxfp4")
    assert w.total / GB == pytest.approx(65.3, abs=0.1)
    assert w.routed_experts == m.params.routed_experts * MXFP4_BYTES
    assert w.attention == m.params.attention * 2  # attention stays BF16


def test_mxfp4_needs_experts() -> None:
    with pytest.raises(CalcError, match="mxfp4 covers MoE experts only"):
        weights(L70, "mxfp4")


def test_fp8_keeps_embeddings_and_head_16bit() -> None:
    w = weights(L70, "fp8")
    assert w.embedding == L70.params.embedding * 2 and w.lm_head == L70.params.lm_head * 2
    assert w.naive == L70.params.total * 1.0


# --- the seed's scenario -----------------------------------------------------------------------


def test_seed_70b_bf16_does_not_fit_one_a100() -> None:
    both = size_both(q(quant="bf16"))
    flat = both["flat"]
    assert not flat.fits and not both["vllm"].fits
    assert (flat.weights_bytes + FLAT_OVERHEAD_BYTES) / GB == pytest.approx(148.1, abs=0.05)
    assert flat.kv_budget_per_gpu / GB == pytest.approx(80 - 141.1 - 7, abs=0.05)
    assert flat.kv_tokens == flat.max_concurrent_seqs == 0
    assert any(w.startswith("does not fit") for w in flat.warnings)


def test_seed_on_two_gpus_leaves_4_9_gb() -> None:
    r = size(q(quant="bf16", gpus=2), "flat")
    assert r.kv_budget_bytes / GB == pytest.approx(4.9, abs=0.01)
    assert r.kv_tokens == pytest.approx(15_000, rel=0.01)


def test_fp8_is_borderline() -> None:
    r = size(q(quant="fp8", seq_len=4096), "flat")
    assert r.kv_budget_per_gpu / GB == pytest.approx(2.45, abs=0.01)
    assert r.kv_tokens == pytest.approx(7_500, rel=0.01)
    assert size(q(quant="fp8", kv_dtype="fp8", seq_len=4096), "flat").kv_tokens == pytest.approx(
        15_000, rel=0.01
    )
    v = size(q(quant="fp8", gpu_memory_utilization=0.9, seq_len=4096), "vllm")
    assert 0 < v.kv_budget_per_gpu < 4 * GiB  # "~1-4 GiB of KV": starts only with a tiny max_model_len
    assert any("no FP8 tensor cores" in w for w in v.warnings)


def test_int4_flat_mode_numbers() -> None:
    r = size(q(quant="int4"), "flat")
    assert r.kv_budget_per_gpu / GB == pytest.approx(37.7, abs=0.05)
    assert r.kv_tokens == pytest.approx(115_000, rel=0.01)
    assert r.block_size is None


def test_int4_vllm_mode_numbers() -> None:
    """util 0.9: ~30-32.5 GiB of KV, 98K-106K tokens, 6,136-6,648 blocks, 12-13 concurrent 8K sequences."""
    r = size(q(quant="int4", gpu_memory_utilization=0.9), "vllm")
    assert r.memory_per_gpu == 81_920 * 2**20
    assert 30 * GiB <= r.kv_budget_per_gpu <= 32.5 * GiB
    assert 98_000 <= r.kv_tokens <= 106_000
    assert r.kv_tokens % 16 == 0
    assert 6_136 <= r.kv_tokens // 16 <= 6_648
    assert r.max_concurrent_seqs == (r.kv_tokens // 16) // (8192 // 16)
    assert r.max_concurrent_seqs in (12, 13)
    assert r.fits
    r92 = size(q(quant="int4", gpu_memory_utilization=0.92), "vllm")
    assert 103_000 <= r92.kv_tokens <= 112_000


def test_vllm_budget_formula() -> None:
    r = size(q(quant="int4", gpu_memory_utilization=0.9), "vllm")
    total = 81_920 * 2**20
    requested = -(-total * 9 // 10)  # ceil
    expected = requested - r.weights_per_gpu - r.overheads.total
    assert r.kv_budget_per_gpu == expected
    assert r.reserved_per_gpu == total - requested
    assert 2 * GiB <= r.overheads.total <= 5 * GiB  # "activation + non-torch ~2.5-5 GiB" (estimate)


def test_activation_estimate_scales_with_batch_and_tp() -> None:
    assert activation_peak(L70, 1, 16384) > activation_peak(L70, 1, 8192)
    assert activation_peak(L70, 4) < activation_peak(L70, 1)


# --- vendor claims ------------------------------------------------------------------------------


def test_gpt_oss_120b_fits_one_80gb_gpu() -> None:
    r = size(q(CAT.model("gpt-oss-120b"), H100), "vllm")  # native MXFP4
    assert r.fits


def test_scout_int4_fits_one_h100_and_bf16_does_not() -> None:
    scout = CAT.model("llama-4-scout")
    assert size(q(scout, H100, quant="int4"), "vllm").fits
    r = size(q(scout, H100, quant="bf16"), "vllm")
    assert not r.fits
    assert any(w.startswith("MoE VRAM trap") for w in r.warnings)


def test_maverick_fp8_fits_one_8xh100_host() -> None:
    assert size(q(CAT.model("llama-4-maverick"), H100, gpus=8, quant="fp8"), "vllm").fits


def test_deepseek_fp8_on_8xh200_with_mla_replicated() -> None:
    r = size(q(CAT.model("deepseek-v3"), CAT.gpu("h200"), gpus=8), "vllm")
    assert r.fits
    assert r.block_size == 64
    assert r.kv_bytes_per_token_per_gpu == 70_272
    assert any("replicated on every GPU" in w for w in r.warnings)


# --- tensor parallelism and warnings ------------------------------------------------------------


def test_tp_divides_weights() -> None:
    one = size(q(quant="bf16", gpu=CAT.gpu("h200")), "vllm")
    four = size(q(quant="bf16", gpus=4), "vllm")
    assert four.weights_per_gpu == pytest.approx(weights(L70, "bf16").total / 4, abs=1)
    assert four.fits and not size(q(quant="bf16"), "vllm").fits
    assert one.weights_per_gpu == pytest.approx(weights(L70, "bf16").total, abs=1)


def test_kv_heads_below_tp_replicate_kv_projections_too() -> None:
    m = CAT.model("qwen3-235b-a22b")
    w = weights(m, "bf16")
    r = size(q(m, CAT.gpu("h200"), gpus=8, quant="bf16"), "vllm")
    sharded = (w.total - w.kv_proj) / 8 + w.kv_proj / 4
    assert r.weights_per_gpu == pytest.approx(sharded, abs=1)
    assert any("replicated on 2 GPUs" in x for x in r.warnings)


def test_tp_that_vllm_refuses() -> None:
    r = size(q(quant="int4", gpus=3), "vllm")
    assert not r.fits
    assert any("vLLM refuses" in w for w in r.warnings)


def test_seq_len_above_the_model_limit() -> None:
    r = size(q(CAT.model("qwen3-32b"), CAT.gpu("h200"), seq_len=100_000), "vllm")
    assert not r.fits and r.verdict == "exceeds-context" and r.context_limit == 40_960
    assert any("longer than qwen3-32b's context of 40,960 tokens" in w for w in r.warnings)
    ok = size(q(CAT.model("qwen3-32b"), CAT.gpu("h200"), seq_len=40_960), "vllm")
    assert ok.verdict == "fits" and not ok.exceeds_context


def test_default_seq_len_is_the_shorter_of_8k_and_the_context() -> None:
    from dataclasses import replace as dc_replace

    from console.calc.vram import default_seq_len

    model = CAT.model("qwen3-32b")
    assert default_seq_len(model) == 8192
    assert default_seq_len(dc_replace(model, max_position=2048)) == 2048
    assert default_seq_len(dc_replace(model, max_position=None)) == 8192


def test_max_context_capped_by_the_model() -> None:
    r = size(q(CAT.model("llama-3.1-8b"), CAT.gpu("h200")), "vllm")
    assert r.max_context_tokens == 131_072
    assert r.kv_tokens > 131_072


def test_windowed_model_holds_more_long_sequences() -> None:
    gemma = CAT.model("gemma-3-27b")
    r = size(q(gemma, H100, seq_len=32_768), "vllm")
    per_seq_naive = r.kv_bytes_per_token_per_gpu * 32_768
    assert r.seq_kv_per_gpu < per_seq_naive / 4
    assert r.max_concurrent_seqs > r.kv_tokens // 32_768  # the naive "KV tokens / length" undercounts
    assert any("52 of 62 layers" in w for w in r.warnings)


def test_unknown_usable_memory_falls_back_to_nominal() -> None:
    mi = CAT.gpu("mi300x")
    r = size(q(CAT.model("llama-3.1-8b"), mi), "vllm")
    assert r.memory_per_gpu == 192 * GB
    assert any("nominal 192 GB" in w for w in r.warnings)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"gpus": 0}, "--gpus must be 1 or more"),
        ({"seq_len": 0}, "--seq-len must be 1 or more"),
        ({"gpu_memory_utilization": 1.5}, "--gpu-memory-utilization must be in (0, 1]"),
        ({"gpu_memory_utilization": float("nan")}, "--gpu-memory-utilization"),
        ({"block_size": -1}, "--block-size must be 1 or more"),
        ({"quant": "int3"}, "unknown quantization 'int3'"),
    ],
)
def test_bad_queries(change: dict, message: str) -> None:
    with pytest.raises(CalcError) as e:
        size(VramQuery(**{"model": L70, "gpu": A100, **change}))
    assert message in str(e.value)


@settings(max_examples=60, deadline=None)
@given(
    slug=st.sampled_from([m.slug for m in CAT.models]),
    gpu=st.sampled_from([g.slug for g in CAT.gpus]),
    gpus=st.sampled_from([1, 2, 4, 8]),
    quant=st.sampled_from([None, "bf16", "fp8", "int4"]),
    seq=st.integers(1, 200_000),
    mode=st.sampled_from(["flat", "vllm"]),
)
def test_invariants(slug: str, gpu: str, gpus: int, quant: str | None, seq: int, mode: str) -> None:
    r = size(VramQuery(CAT.model(slug), CAT.gpu(gpu), gpus, quant, seq_len=seq), mode)  # type: ignore[arg-type]
    usable = max(r.kv_budget_per_gpu, 0)
    assert r.max_concurrent_seqs * r.seq_kv_per_gpu <= usable
    assert r.kv_tokens * r.kv_bytes_per_token_per_gpu <= usable
    assert (r.max_concurrent_seqs >= 1) == (r.seq_kv_per_gpu <= usable)
    if r.fits:
        assert r.margin_per_gpu >= 0 and r.max_concurrent_seqs >= 1
        assert r.max_context_tokens is None or r.max_context_tokens >= seq
    assert (
        r.memory_per_gpu == r.reserved_per_gpu + r.weights_per_gpu + r.overheads.total + r.kv_budget_per_gpu
    )
