"""Local config.json files (air-gapped sites have model directories, not hub access): realistic files parse to
the same numbers as the catalog; broken files are one clear error line, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from console.calc.catalog import builtin
from console.calc.errors import CalcError
from console.calc.hfconfig import load_config_path, spec_from_config
from console.calc.kv import layout

HF = Path(__file__).resolve().parents[1] / "data" / "hf"
PAIRS = {  # fixture directory -> catalog slug
    "DeepSeek-V3": "deepseek-v3",
    "gpt-oss-120b": "gpt-oss-120b",
    "Llama-3.3-70B-Instruct": "llama-3.3-70b",
    "gemma-3-27b-it": "gemma-3-27b",
    "Qwen3-235B-A22B": "qwen3-235b-a22b",
    "Mistral-7B-v0.1": "mistral-7b",
}


@pytest.mark.parametrize("folder", sorted(PAIRS))
def test_local_config_matches_catalog(folder: str) -> None:
    local = load_config_path(HF / folder)  # a model directory
    cat = builtin().model(PAIRS[folder])
    assert local.params.text_total == cat.params.text_total
    assert local.params.text_active == cat.params.text_active
    assert local.layer_attention == cat.layer_attention
    assert (local.layers, local.kv_heads, local.head_dim, local.max_position) == (
        cat.layers,
        cat.kv_heads,
        cat.head_dim,
        cat.max_position,
    )
    assert layout(local).bytes_per_token == layout(cat).bytes_per_token
    assert local.native_quant == cat.native_quant
    assert local.source is not None and str(HF / folder) in local.source


def test_config_file_path_works_too() -> None:
    spec = load_config_path(HF / "DeepSeek-V3" / "config.json")
    assert spec.slug == "deepseek-v3"
    assert spec.mla is not None and spec.mla.kv_lora_rank == 512


def test_gemma_compact_config_takes_transformers_defaults() -> None:
    """The compact Gemma 3 config omits vocab_size and max_position_embeddings (Gemma3TextConfig defaults)."""
    raw = json.loads((HF / "gemma-3-27b-it" / "config.json").read_text())
    assert "vocab_size" not in raw["text_config"]
    spec = load_config_path(HF / "gemma-3-27b-it")
    assert (spec.vocab, spec.max_position) == (262_208, 131_072)
    assert spec.params.lm_head == 0  # tied embeddings
    # the vision tower is estimated from vision_config (SigLIP, ~0.4 B) and said to be an estimate
    assert spec.params.vision / 1e9 == pytest.approx(0.4, abs=0.05)
    assert any("vision tower estimated" in w for w in spec.warnings)


BROKEN = {
    "missing-hidden-size.json": "missing required field 'hidden_size'",
    "truncated.json": "not valid JSON",
    "empty.json": "not valid JSON",
    "array.json": "expected a JSON object",
    "kv-heads-not-dividing.json": "num_key_value_heads (6) must divide num_attention_heads (32)",
    "layers-not-integer.json": 'num_hidden_layers must be an integer, got "thirty-two"',
    "negative-layers.json": "num_hidden_layers must be 1 or more, got -4",
    "nan.json": "NaN is not allowed",
    "linear-attention.json": 'layer type "linear_attention" is not supported',
    "topk-above-experts.json": "num_experts_per_tok (12) exceeds the number of experts (8)",
    "not-utf8.json": "not valid JSON",
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_configs_are_one_clear_line(name: str) -> None:
    with pytest.raises(CalcError) as e:
        load_config_path(HF / "broken" / name)
    message = str(e.value)
    assert BROKEN[name] in message
    assert str(HF / "broken" / name) in message
    assert "\n" not in message


def test_missing_path_and_directory_without_config(tmp_path: Path) -> None:
    with pytest.raises(CalcError, match="no such file"):
        load_config_path(tmp_path / "nope" / "config.json")
    with pytest.raises(CalcError, match="no such file"):
        load_config_path(tmp_path)  # a directory without config.json


def test_oversized_file_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "config.json"
    big.write_text('{"pad": "' + "x" * (5 * 1024 * 1024) + '"}')
    with pytest.raises(CalcError, match="too large"):
        load_config_path(big)


def test_unknown_architecture_is_counted_and_said_so() -> None:
    raw = {
        "model_type": "brand_new",
        "hidden_size": 1024,
        "num_hidden_layers": 2,
        "num_attention_heads": 8,
        "intermediate_size": 4096,
        "vocab_size": 1000,
    }
    spec = spec_from_config(raw, slug="x")
    expected = 2 * 1000 * 1024 + 2 * (4 * 1024 * 1024 + 3 * 1024 * 4096 + 2 * 1024) + 1024
    assert spec.params.text_total == expected  # kv heads default to the attention heads (MHA)
    assert spec.kv_heads == 8
    assert any('model_type "brand_new" is not one this tool knows' in w for w in spec.warnings)
    assert any("max_position_embeddings missing" in w for w in spec.warnings)


def test_qwen2_sliding_window_only_when_enabled() -> None:
    base = {
        "model_type": "qwen2",
        "hidden_size": 512,
        "num_hidden_layers": 4,
        "num_attention_heads": 8,
        "num_key_value_heads": 2,
        "intermediate_size": 1024,
        "vocab_size": 100,
        "sliding_window": 256,
        "max_window_layers": 2,
    }
    off = spec_from_config({**base, "use_sliding_window": False}, slug="a")
    on = spec_from_config({**base, "use_sliding_window": True}, slug="b")
    assert off.capped_layers == 0
    assert [layer.capped for layer in on.layer_attention] == [False, False, True, True]


def test_layer_types_list_wins() -> None:
    raw = {
        "model_type": "llama",
        "hidden_size": 512,
        "num_hidden_layers": 3,
        "num_attention_heads": 8,
        "intermediate_size": 1024,
        "vocab_size": 100,
        "sliding_window": 64,
        "attention_chunk_size": 32,
        "layer_types": ["sliding_attention", "chunked_attention", "full_attention"],
    }
    spec = spec_from_config(raw, slug="x")
    assert [(a.kind, a.window) for a in spec.layer_attention] == [
        ("sliding", 64),
        ("chunked", 32),
        ("full", None),
    ]


def test_awq_checkpoint_is_int4() -> None:
    raw = {
        "model_type": "llama",
        "hidden_size": 512,
        "num_hidden_layers": 2,
        "num_attention_heads": 8,
        "intermediate_size": 1024,
        "vocab_size": 100,
        "quantization_config": {"quant_method": "awq", "bits": 4},
    }
    assert spec_from_config(raw, slug="x").native_quant == "int4"


@pytest.mark.parametrize(
    ("qc", "expected"),
    [
        (
            {
                "quant_method": "compressed-tensors",
                "config_groups": {"group_0": {"weights": {"num_bits": 8, "type": "float"}}},
            },
            "fp8",
        ),
        (
            {
                "quant_method": "compressed-tensors",
                "config_groups": {"group_0": {"weights": {"num_bits": 4, "type": "int"}}},
            },
            "int4",
        ),
        (
            {
                "quant_method": "compressed-tensors",
                "config_groups": {"group_0": {"weights": {"num_bits": 8, "type": "int"}}},
            },
            "int8",
        ),
        ({"quant_method": "gptq", "bits": 8}, "int8"),
        ({"quant_method": "bitsandbytes"}, "bf16"),
    ],
)
def test_quantized_checkpoint_formats(qc: dict, expected: str) -> None:
    raw = {
        "model_type": "llama",
        "hidden_size": 512,
        "num_hidden_layers": 2,
        "num_attention_heads": 8,
        "intermediate_size": 1024,
        "vocab_size": 100,
        "quantization_config": qc,
    }
    spec = spec_from_config(raw, slug="x")
    assert spec.native_quant == expected
    assert any("choose the format with --quant" in w for w in spec.warnings) == (expected == "bf16")
