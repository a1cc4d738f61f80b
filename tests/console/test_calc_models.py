"""The model catalog: parameter counts derived from config.json values against research/calculator.md §1.1
(computed totals to 0.01 B, published totals within vendor rounding), per-layer attention, MoE layout,
and every catalog entry carrying its source and date."""

from __future__ import annotations

import math
import re

import pytest

from console.calc.catalog import builtin, model_entries
from console.calc.errors import CalcError

# slug -> (total B, active B incl. embedding or None for dense) from calculator.md §1.1, computed there.
TABLE = {
    "llama-3.1-8b": (8.03, None),
    "llama-3.3-70b": (70.55, None),
    "llama-3.1-405b": (405.85, None),
    "llama-4-scout": (107.77, 17.17),
    "llama-4-maverick": (400.71, 17.18),
    "mixtral-8x7b": (46.70, 12.88),
    "qwen2.5-7b": (7.62, None),
    "qwen2.5-72b": (72.71, None),
    "qwen3-32b": (32.76, None),
    "qwen3-235b-a22b": (235.09, 22.19),
    "deepseek-v3": (671.03, 37.55),
    "gpt-oss-20b": (20.91, 4.19),
    "gpt-oss-120b": (116.83, 5.71),
    "mistral-7b": (7.24, None),
    "gemma-3-27b": (27.01, None),
}
# (layers, attention heads, kv heads, head_dim, max_position_embeddings) from the same table.
SHAPES = {
    "llama-3.1-8b": (32, 32, 8, 128, 131072),
    "llama-3.3-70b": (80, 64, 8, 128, 131072),
    "llama-3.1-405b": (126, 128, 8, 128, 131072),
    "llama-4-scout": (48, 40, 8, 128, 10485760),
    "llama-4-maverick": (48, 40, 8, 128, 1048576),
    "mixtral-8x7b": (32, 32, 8, 128, 32768),
    "qwen2.5-7b": (28, 28, 4, 128, 32768),
    "qwen2.5-72b": (80, 64, 8, 128, 32768),
    "qwen3-32b": (64, 64, 8, 128, 40960),
    "qwen3-235b-a22b": (94, 64, 4, 128, 40960),
    "gpt-oss-20b": (24, 64, 8, 64, 131072),
    "gpt-oss-120b": (36, 64, 8, 64, 131072),
    "mistral-7b": (32, 32, 8, 128, 32768),
    "gemma-3-27b": (62, 32, 16, 128, 131072),
}


@pytest.mark.parametrize("slug", sorted(TABLE))
def test_parameter_counts_match_the_research_table(slug: str) -> None:
    m = builtin().model(slug)
    total, active = TABLE[slug]
    assert m.params.text_total / 1e9 == pytest.approx(total, abs=0.006)
    if active is None:
        assert m.moe is None
        assert m.params.text_active == m.params.text_total
    else:
        assert m.params.text_active / 1e9 == pytest.approx(active, abs=0.006)


@pytest.mark.parametrize("slug", sorted(SHAPES))
def test_shapes_come_from_the_config(slug: str) -> None:
    m = builtin().model(slug)
    assert (m.layers, m.heads, m.kv_heads, m.head_dim, m.max_position) == SHAPES[slug]


def test_llama_8b_count_worked_by_hand() -> None:
    """8B from first principles: untied embeddings + 32 × (GQA attention + SwiGLU MLP + 2 norms) + final norm."""
    h, inter, vocab, layers, kv = 4096, 14336, 128256, 32, 8
    attention = h * h + 2 * h * kv * 128 + h * h
    per_layer = attention + 3 * h * inter + 2 * h
    expected = 2 * vocab * h + layers * per_layer + h
    assert builtin().model("llama-3.1-8b").params.text_total == expected


def test_deepseek_mla_and_moe_worked_by_hand() -> None:
    h, heads, layers = 7168, 128, 61
    q = h * 1536 + 1536 * heads * (128 + 64)
    kv = h * (512 + 64) + 512 * heads * (128 + 128)
    o = heads * 128 * h
    expert = 3 * h * 2048
    routed = 58 * 256 * expert
    m = builtin().model("deepseek-v3")
    assert m.params.attention == layers * (q + kv + o)
    assert m.params.routed_experts == routed
    assert m.params.shared_experts == 58 * expert
    assert m.params.dense_mlp == 3 * 3 * h * 18432
    assert m.params.active_routed == 58 * 8 * expert
    assert m.mla is not None and m.mla.latent_dim == 576
    # DeepSeek's own convention leaves the input embedding out: README_WEIGHTS 36.6 B.
    assert m.params.text_active_excl_embedding / 1e9 == pytest.approx(36.6, abs=0.05)


def test_active_conventions_of_the_vendors() -> None:
    """OpenAI counts active parameters without the input embedding (3.6 B / 5.1 B); Meta includes it (17 B)."""
    cat = builtin()
    assert cat.model("gpt-oss-20b").params.text_active_excl_embedding / 1e9 == pytest.approx(3.6, abs=0.05)
    assert cat.model("gpt-oss-120b").params.text_active_excl_embedding / 1e9 == pytest.approx(5.1, abs=0.05)
    assert cat.model("llama-4-scout").params.text_active / 1e9 == pytest.approx(17.0, abs=0.2)


def test_head_dim_is_read_not_derived() -> None:
    """Qwen3-32B, Gemma 3 and gpt-oss: heads × head_dim differs from hidden_size."""
    cat = builtin()
    for slug in ("qwen3-32b", "gemma-3-27b", "gpt-oss-120b"):
        m = cat.model(slug)
        assert m.heads * m.head_dim != m.hidden, slug


def test_layer_attention_patterns() -> None:
    cat = builtin()
    gemma = cat.model("gemma-3-27b").layer_attention
    assert [i for i, layer in enumerate(gemma) if not layer.capped] == list(range(5, 62, 6))  # 10 global
    assert {layer.window for layer in gemma if layer.capped} == {1024}
    oss = cat.model("gpt-oss-120b").layer_attention
    assert all(layer.capped == (i % 2 == 0) for i, layer in enumerate(oss))
    assert {layer.window for layer in oss if layer.capped} == {128}
    scout = cat.model("llama-4-scout").layer_attention
    assert [i for i, layer in enumerate(scout) if not layer.capped] == list(range(3, 48, 4))  # NoPE layers
    assert {(layer.kind, layer.window) for layer in scout if layer.capped} == {("chunked", 8192)}
    assert all(layer.capped and layer.window == 4096 for layer in cat.model("mistral-7b").layer_attention)
    for slug in ("mistral-7b-v0.3", "qwen2.5-72b", "mixtral-8x7b", "qwen3-235b-a22b"):
        assert cat.model(slug).capped_layers == 0, slug  # sliding off or absent


def test_moe_layouts() -> None:
    cat = builtin()
    mav = cat.model("llama-4-maverick").moe
    assert mav is not None and (mav.experts, mav.top_k, mav.moe_layers) == (128, 1, 24)
    scout = cat.model("llama-4-scout").moe
    assert scout is not None and (scout.experts, scout.moe_layers, scout.shared_intermediate) == (
        16,
        48,
        8192,
    )
    ds = cat.model("deepseek-v3").moe
    assert ds is not None and (ds.experts, ds.top_k, ds.moe_layers) == (256, 8, 58)
    assert cat.model("llama-3.3-70b").moe is None


def test_published_totals_within_rounding() -> None:
    """Derived totals agree with each vendor's headline (Meta's 109 B for Scout includes the vision tower)."""
    for m in builtin().models:
        pub = m.published
        assert pub is not None and pub.total_b is not None, m.slug
        assert m.params.total / 1e9 == pytest.approx(pub.total_b, rel=0.02), m.slug


def test_every_entry_has_source_date_and_url() -> None:
    for entry in model_entries():
        assert entry["source"] and len(entry["source"]) > 20, entry["slug"]
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", entry["date"]), entry["slug"]
        assert entry["config_url"] == f"https://huggingface.co/{entry['hf_repo']}/blob/main/config.json"
        assert re.fullmatch(r"[a-z0-9][a-z0-9.-]*", entry["slug"]), entry["slug"]


def test_required_models_are_present() -> None:
    cat = builtin()
    for name in (
        "llama-3.1-8b",
        "llama-3.3-70b",
        "llama-3.1-405b",
        "llama-4-scout",
        "llama-4-maverick",
        "mixtral-8x7b",
        "qwen2.5-7b",
        "qwen2.5-72b",
        "qwen3-32b",
        "qwen3-235b-a22b",
        "deepseek-v3",
        "deepseek-r1",
        "gpt-oss-20b",
        "gpt-oss-120b",
        "mistral-7b",
        "gemma-3-27b",
    ):
        assert cat.model(name)


def test_names_resolve_by_alias_repo_and_display_name() -> None:
    cat = builtin()
    assert cat.model("meta-llama/Llama-3.3-70B-Instruct").slug == "llama-3.3-70b"
    assert cat.model("Llama 3.3 70B Instruct").slug == "llama-3.3-70b"
    assert cat.model("DeepSeek-R1").slug == "deepseek-v3"
    assert cat.model("  GPT-OSS-120B ").slug == "gpt-oss-120b"


def test_unknown_model_suggests_closest_names() -> None:
    with pytest.raises(CalcError) as e:
        builtin().model("llama-3.3-7b")
    message = str(e.value)
    assert "unknown model 'llama-3.3-7b'" in message
    assert "llama-3.3-70b" in message.split("closest:")[1]
    assert "\n" not in message


def test_native_formats() -> None:
    cat = builtin()
    assert cat.model("deepseek-v3").native_quant == "fp8"
    assert cat.model("gpt-oss-120b").native_quant == "mxfp4"
    assert cat.model("qwen3-32b").native_quant == "bf16"


def test_vision_towers_counted_separately() -> None:
    scout = builtin().model("llama-4-scout")
    assert scout.params.vision / 1e9 == pytest.approx(1.23)
    assert scout.params.total == scout.params.text_total + scout.params.vision
    assert not math.isclose(scout.params.total, scout.params.text_total)
