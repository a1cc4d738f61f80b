"""A Hugging Face ``config.json`` → :class:`ModelSpec`: parameter counts (dense, MoE total and active, MLA),
layers, KV heads, ``head_dim`` and per-layer attention windows.

Air-gapped sites have model directories, not hub access, so everything is derived from the file. The
catalog's models go through the same code. Handles nested ``text_config`` (Llama 4, Gemma 3), explicit
``head_dim`` (Qwen3, Gemma 3, gpt-oss: not hidden/heads), GQA, MLA (DeepSeek), MoE layouts (Mixtral,
Qwen3-MoE, DeepSeek, Llama 4 interleaved, gpt-oss), sliding/chunked/hybrid layers. Keys a compact config
omits take the transformers defaults for its ``model_type`` (Gemma 3's vocab and context, for example).
An unknown architecture is counted as a gated-MLP transformer, with a warning that says so.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from console.calc.errors import CalcError
from console.calc.models import LayerAttention, Mla, ModelSpec, Moe, Params, Published

# transformers' defaults for keys compact configs leave out (Gemma3TextConfig, Gemma2Config, ...).
TYPE_DEFAULTS: dict[str, dict[str, Any]] = {
    "gemma3_text": {
        "vocab_size": 262_208,
        "max_position_embeddings": 131_072,
        "sliding_window_pattern": 6,
        "tie_word_embeddings": True,
        "head_dim": 256,
        "sliding_window": 4096,
    },
    "gemma2": {"sliding_window_pattern": 2, "tie_word_embeddings": True},
    "gemma": {"tie_word_embeddings": True},
    "llama4_text": {
        "attention_chunk_size": 8192,
        "no_rope_layer_interval": 4,
        "interleave_moe_layer_step": 1,
    },
}
KNOWN_TYPES = frozenset(
    {
        "llama",
        "mistral",
        "mixtral",
        "qwen2",
        "qwen2_moe",
        "qwen3",
        "qwen3_moe",
        "deepseek_v2",
        "deepseek_v3",
        "gpt_oss",
        "llama4_text",
        "gemma",
        "gemma2",
        "gemma3_text",
    }
)
QKV_BIAS_TYPES = frozenset({"qwen2", "qwen2_moe"})  # q/k/v biases are part of the architecture
QK_NORM_TYPES = frozenset({"qwen3", "qwen3_moe", "gemma3_text"})  # per-head-dim RMSNorm weights on q and k
FOUR_NORM_TYPES = frozenset({"gemma2", "gemma3_text"})  # pre/post norms around attention and MLP
EXPERT_BIAS_TYPES = frozenset({"gpt_oss"})
ROUTER_BIAS_TYPES = frozenset({"gpt_oss", "deepseek_v3"})  # router bias / e_score_correction_bias
SINK_TYPES = frozenset({"gpt_oss"})
MAX_CONFIG_BYTES = 4 * 1024 * 1024


class _Cfg:
    """Typed reads from the text part of a config, with the model type's defaults and clear errors."""

    def __init__(self, text: Mapping[str, Any], model_type: str, where: str) -> None:
        self.text, self.model_type, self.where = text, model_type, where
        self.defaults = TYPE_DEFAULTS.get(model_type, {})

    def get(self, key: str, default: Any = None) -> Any:
        value = self.text.get(key)
        return self.defaults.get(key, default) if value is None else value

    def has(self, key: str) -> bool:
        return self.text.get(key) is not None or key in self.defaults

    def int(self, key: str, default: int | None = None, *, minimum: int = 1) -> int:
        value = self.get(key, default)
        if value is None:
            raise CalcError(f"{self.where}: missing required field {key!r}")
        if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
            raise CalcError(f"{self.where}: {key} must be an integer, got {json.dumps(value)}")
        if value < minimum:
            raise CalcError(f"{self.where}: {key} must be {minimum} or more, got {json.dumps(value)}")
        return int(value)

    def opt_int(self, key: str, *, minimum: int = 1) -> int | None:
        return self.int(key, minimum=minimum) if self.has(key) else None


def _text_part(raw: Mapping[str, Any], where: str) -> tuple[Mapping[str, Any], str]:
    """The language-model keys (``text_config`` when nested) and the model type that governs them."""
    text = raw.get("text_config")
    if text is not None:
        if not isinstance(text, dict):
            raise CalcError(f"{where}: text_config must be an object")
        merged = {**{k: v for k, v in raw.items() if k not in ("text_config", "vision_config")}, **text}
        return merged, str(text.get("model_type") or _text_type(raw.get("model_type")))
    return raw, str(raw.get("model_type") or "")


def _text_type(model_type: Any) -> str:
    return {"gemma3": "gemma3_text", "llama4": "llama4_text"}.get(str(model_type), str(model_type or ""))


# --- layers -------------------------------------------------------------------------------------


def layer_attention(cfg: _Cfg, layers: int) -> tuple[LayerAttention, ...]:
    """Per-layer attention kind and window, from ``layer_types`` or the family's pattern keys."""
    window = cfg.get("sliding_window")
    sliding = LayerAttention("sliding", int(window)) if _positive(window) else LayerAttention()
    types = cfg.get("layer_types")
    if isinstance(types, list) and len(types) == layers:
        return tuple(_from_layer_type(cfg, t, sliding) for t in types)
    if cfg.has("attention_chunk_size") and cfg.model_type == "llama4_text":
        return _llama4_layers(cfg, layers)
    if cfg.has("sliding_window_pattern") and _positive(window):
        pattern = cfg.int("sliding_window_pattern")
        return tuple(LayerAttention() if (i + 1) % pattern == 0 else sliding for i in range(layers))
    if cfg.model_type == "gpt_oss" and _positive(window):
        return tuple(sliding if i % 2 == 0 else LayerAttention() for i in range(layers))
    if "use_sliding_window" in cfg.text:  # Qwen2 family: off by default; layers >= max_window_layers slide
        if not cfg.text.get("use_sliding_window") or not _positive(window):
            return (LayerAttention(),) * layers
        first = cfg.int("max_window_layers", layers, minimum=0)
        return tuple(sliding if i >= first else LayerAttention() for i in range(layers))
    return (sliding,) * layers  # Mistral semantics: a sliding_window applies to every layer


def _from_layer_type(cfg: _Cfg, name: Any, sliding: LayerAttention) -> LayerAttention:
    if name == "sliding_attention":
        return sliding
    if name == "chunked_attention":
        return LayerAttention("chunked", cfg.int("attention_chunk_size"))
    if name == "full_attention":
        return LayerAttention()
    raise CalcError(
        f"{cfg.where}: layer type {json.dumps(name)} is not supported (only full, sliding, chunked)"
    )


def _llama4_layers(cfg: _Cfg, layers: int) -> tuple[LayerAttention, ...]:
    chunked = LayerAttention("chunked", cfg.int("attention_chunk_size"))
    no_rope = cfg.get("no_rope_layers")
    if isinstance(no_rope, list) and len(no_rope) == layers:  # 1 = RoPE (chunked local), 0 = NoPE (global)
        return tuple(chunked if flag else LayerAttention() for flag in no_rope)
    interval = cfg.int("no_rope_layer_interval")
    return tuple(LayerAttention() if (i + 1) % interval == 0 else chunked for i in range(layers))


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


# --- mixture of experts -------------------------------------------------------------------------


def moe_layout(cfg: _Cfg, layers: int, hidden: int) -> tuple[Moe | None, list[bool]]:
    """The MoE layout and which layers are MoE (the rest are dense)."""
    experts = next(
        (cfg.int(k) for k in ("num_local_experts", "n_routed_experts", "num_experts") if cfg.has(k)), 0
    )
    if experts <= 1:
        return None, [False] * layers
    top_k = cfg.int("num_experts_per_tok") if cfg.has("num_experts_per_tok") else cfg.int("experts_per_token")
    width = (
        cfg.int("moe_intermediate_size") if cfg.has("moe_intermediate_size") else cfg.int("intermediate_size")
    )
    is_moe = _moe_layers(cfg, layers)
    shared = _shared_width(cfg, width)
    if top_k > experts:
        raise CalcError(
            f"{cfg.where}: num_experts_per_tok ({top_k}) exceeds the number of experts ({experts})"
        )
    return Moe(experts, top_k, sum(is_moe), width, shared), is_moe


def _moe_layers(cfg: _Cfg, layers: int) -> list[bool]:
    listed = cfg.get("moe_layers")
    if isinstance(listed, list):
        return [i in set(listed) for i in range(layers)]
    if cfg.has("first_k_dense_replace"):  # DeepSeek
        first, freq = cfg.int("first_k_dense_replace", minimum=0), cfg.int("moe_layer_freq", 1)
        return [i >= first and i % freq == 0 for i in range(layers)]
    if cfg.has("interleave_moe_layer_step"):  # Llama 4: every step-th layer, starting at step-1
        step = cfg.int("interleave_moe_layer_step")
        return [i % step == step - 1 for i in range(layers)]
    dense_only = set(cfg.get("mlp_only_layers") or [])
    step = cfg.int("decoder_sparse_step", 1)
    return [i not in dense_only and (i + 1) % step == 0 for i in range(layers)]


def _shared_width(cfg: _Cfg, expert_width: int) -> int:
    if cfg.has("n_shared_experts"):
        return cfg.int("n_shared_experts", minimum=0) * expert_width
    if cfg.has("shared_expert_intermediate_size"):
        return cfg.int("shared_expert_intermediate_size", minimum=0)
    return expert_width if cfg.model_type == "llama4_text" else 0  # Llama 4: one shared expert


# --- parameter counts ---------------------------------------------------------------------------


def _attention_params(
    cfg: _Cfg, hidden: int, heads: int, kv_heads: int, head_dim: int
) -> tuple[int, int, int, int]:
    """(projection matrices, k/v part, replicated part, small) for one layer."""
    if cfg.has("kv_lora_rank"):
        return _mla_params(cfg, hidden, heads)
    q, kv, o = hidden * heads * head_dim, 2 * hidden * kv_heads * head_dim, heads * head_dim * hidden
    small = 0
    if cfg.model_type in QKV_BIAS_TYPES:
        small += (heads + 2 * kv_heads) * head_dim
    if cfg.get("attention_bias"):
        small += (heads + 2 * kv_heads) * head_dim + hidden
    if cfg.model_type in QK_NORM_TYPES:
        small += 2 * head_dim
    if cfg.model_type in SINK_TYPES:
        small += heads
    return q + kv + o, kv, 0, small


def _mla_params(cfg: _Cfg, hidden: int, heads: int) -> tuple[int, int, int, int]:
    mla = _mla(cfg)
    qk_head = mla.qk_nope_head_dim + mla.qk_rope_head_dim
    if mla.q_lora_rank:
        q_a, q_b = hidden * mla.q_lora_rank, mla.q_lora_rank * heads * qk_head
        q_small = mla.q_lora_rank
    else:
        q_a, q_b, q_small = 0, hidden * heads * qk_head, 0
    kv_a = hidden * mla.latent_dim
    kv_b = mla.kv_lora_rank * heads * (mla.qk_nope_head_dim + mla.v_head_dim)
    o = heads * mla.v_head_dim * hidden
    return q_a + q_b + kv_a + kv_b + o, 0, q_a + kv_a, q_small + mla.kv_lora_rank


def _mla(cfg: _Cfg) -> Mla:
    return Mla(
        kv_lora_rank=cfg.int("kv_lora_rank"),
        qk_rope_head_dim=cfg.int("qk_rope_head_dim"),
        qk_nope_head_dim=cfg.int("qk_nope_head_dim"),
        v_head_dim=cfg.int("v_head_dim"),
        q_lora_rank=cfg.opt_int("q_lora_rank"),
    )


def count_params(cfg: _Cfg, dims: dict[str, int], moe: Moe | None, is_moe: list[bool]) -> Params:
    hidden, layers, vocab = dims["hidden"], dims["layers"], dims["vocab"]
    attn, kv, repl, attn_small = _attention_params(
        cfg, hidden, dims["heads"], dims["kv_heads"], dims["head_dim"]
    )
    norms = (4 if cfg.model_type in FOUR_NORM_TYPES else 2) * hidden
    dense_layers = layers - sum(is_moe)
    dense_width = _dense_width(cfg) if dense_layers else 0
    routed = active = shared = expert_small = router = 0
    if moe is not None:
        per_expert = 3 * hidden * moe.expert_intermediate
        routed, active = moe.moe_layers * moe.experts * per_expert, moe.moe_layers * moe.top_k * per_expert
        shared = moe.moe_layers * 3 * hidden * moe.shared_intermediate
        if cfg.model_type in EXPERT_BIAS_TYPES:
            expert_small = moe.moe_layers * moe.experts * (2 * moe.expert_intermediate + hidden)
        router_bias = moe.experts if cfg.model_type in ROUTER_BIAS_TYPES else 0
        router = moe.moe_layers * (hidden * moe.experts + router_bias)
    tied = bool(cfg.get("tie_word_embeddings", False))
    return Params(
        embedding=vocab * hidden,
        lm_head=0 if tied else vocab * hidden,
        attention=layers * attn,
        kv_proj=layers * kv,
        replicated=layers * repl,
        dense_mlp=dense_layers * 3 * hidden * dense_width,
        routed_experts=routed,
        active_routed=active,
        shared_experts=shared,
        small=layers * (attn_small + norms) + hidden + router + expert_small,
        expert_small=expert_small,
    )


def _dense_width(cfg: _Cfg) -> int:
    key = "intermediate_size_mlp" if cfg.has("intermediate_size_mlp") else "intermediate_size"
    return cfg.int(key)


def vision_params(raw: Mapping[str, Any]) -> int | None:
    """A ViT encoder's size from ``vision_config`` (layers × (4h² + 2h·inter)): an estimate; None if absent."""
    vision = raw.get("vision_config")
    if not isinstance(vision, dict):
        return None
    try:
        h, inter = int(vision["hidden_size"]), int(vision["intermediate_size"])
        layers = int(vision.get("num_hidden_layers") or vision["depth"])
    except (KeyError, TypeError, ValueError):
        return None
    return layers * (4 * h * h + 2 * h * inter)


# --- the whole spec -----------------------------------------------------------------------------


def native_quant(raw: Mapping[str, Any], text: Mapping[str, Any]) -> tuple[str, list[str]]:
    """The checkpoint's weight format from ``quantization_config`` / ``torch_dtype``."""
    qc = raw.get("quantization_config") or text.get("quantization_config")
    if isinstance(qc, dict):
        method = str(qc.get("quant_method", "")).lower()
        if method in ("fp8", "mxfp4"):
            return method, []
        if method in ("awq", "gptq", "awq_marlin", "gptq_marlin"):
            bits = qc.get("bits", qc.get("w_bit", 4))
            return _int_format(bits, method)
        if method == "compressed-tensors":  # llm-compressor checkpoints (RedHatAI/neuralmagic)
            return _compressed_tensors(qc)
        return "bf16", [
            f"quantization_config {json.dumps(method)} not recognised: choose the format with --quant"
        ]
    dtype = str(text.get("torch_dtype") or text.get("dtype") or raw.get("torch_dtype") or "bfloat16")
    return ("fp16" if dtype in ("float16", "fp16", "half") else "bf16"), []


def _int_format(bits: Any, method: str) -> tuple[str, list[str]]:
    if bits == 4:
        return "int4", []
    if bits == 8:
        return "int8", []
    return "bf16", [f"{method} with {bits}-bit weights is not modelled: choose the format with --quant"]


def _compressed_tensors(qc: Mapping[str, Any]) -> tuple[str, list[str]]:
    groups = qc.get("config_groups")
    weights = next(iter(groups.values()), {}).get("weights") if isinstance(groups, dict) and groups else None
    if not isinstance(weights, dict):
        return "bf16", ["compressed-tensors config without weight settings: choose the format with --quant"]
    bits, kind = weights.get("num_bits"), weights.get("type")
    if bits == 8 and kind == "float":
        return "fp8", []
    return _int_format(bits, "compressed-tensors")


def spec_from_config(
    raw: Mapping[str, Any],
    *,
    slug: str,
    name: str | None = None,
    where: str = "config.json",
    meta: Mapping[str, Any] | None = None,
) -> ModelSpec:
    """Derive a :class:`ModelSpec` from a parsed ``config.json``; :class:`CalcError` when it is unusable."""
    if not isinstance(raw, dict):
        raise CalcError(f"{where}: expected a JSON object")
    meta = meta or {}
    text, model_type = _text_part(raw, where)
    cfg = _Cfg(text, model_type, where)
    dims = _dims(cfg)
    moe, is_moe = moe_layout(cfg, dims["layers"], dims["hidden"])
    params = count_params(cfg, dims, moe, is_moe)
    vision, warnings = _vision(raw, meta)
    params = replace(params, vision=vision)
    quant, quant_warnings = native_quant(raw, text)
    warnings += quant_warnings + _type_warnings(model_type) + _mtp_warning(cfg)
    max_pos = cfg.opt_int("max_position_embeddings")
    if max_pos is None:
        warnings.append("max_position_embeddings missing: the context limit is unknown")
    return ModelSpec(
        slug=slug,
        name=name or slug,
        model_type=model_type or "unknown",
        intermediate=cfg.opt_int("intermediate_size"),
        max_position=max_pos,
        layer_attention=layer_attention(cfg, dims["layers"]),
        params=params,
        mla=_mla(cfg) if cfg.has("kv_lora_rank") else None,
        moe=moe,
        native_quant=str(meta.get("native_quant") or quant),
        hf_repo=meta.get("hf_repo"),
        config_url=meta.get("config_url"),
        source=meta.get("source"),
        date=meta.get("date"),
        published=_published(meta.get("published")),
        notes=tuple(meta.get("notes") or ()),
        warnings=tuple(warnings),
        aliases=tuple(meta.get("aliases") or ()),
        **dims,
    )


def _dims(cfg: _Cfg) -> dict[str, int]:
    hidden, heads = cfg.int("hidden_size"), cfg.int("num_attention_heads")
    kv_heads = cfg.int("num_key_value_heads", heads)
    head_dim = cfg.int("head_dim", hidden // heads if hidden % heads == 0 else None)
    if kv_heads > heads or heads % kv_heads:
        raise CalcError(
            f"{cfg.where}: num_key_value_heads ({kv_heads}) must divide num_attention_heads ({heads})"
        )
    return {
        "hidden": hidden,
        "layers": cfg.int("num_hidden_layers"),
        "heads": heads,
        "kv_heads": kv_heads,
        "head_dim": head_dim,
        "vocab": cfg.int("vocab_size"),
    }


def _vision(raw: Mapping[str, Any], meta: Mapping[str, Any]) -> tuple[int, list[str]]:
    published = (meta.get("published") or {}).get("vision_b")
    if published is not None:
        return round(float(published) * 1e9), []
    estimate = vision_params(raw)
    if estimate is not None:
        return estimate, [f"vision tower estimated at {estimate / 1e9:.2f} B parameters from vision_config"]
    if "vision_config" in raw:
        return 0, ["vision_config present but unreadable: the vision tower is not counted"]
    return 0, []


def _type_warnings(model_type: str) -> list[str]:
    if model_type in KNOWN_TYPES:
        return []
    shown = json.dumps(model_type) if model_type else "(none)"
    return [f"model_type {shown} is not one this tool knows: parameters counted as a gated-MLP transformer"]


def _mtp_warning(cfg: _Cfg) -> list[str]:
    if not cfg.has("num_nextn_predict_layers") or not cfg.get("num_nextn_predict_layers"):
        return []
    return [
        "the multi-token-prediction layer (num_nextn_predict_layers) ships in the checkpoint but is "
        "not loaded for ordinary serving; it is not counted"
    ]


def _published(data: Any) -> Published | None:
    return Published(**data) if isinstance(data, dict) else None


def load_config_path(path: str | Path) -> ModelSpec:
    """Read ``config.json`` (or a model directory containing one) into a :class:`ModelSpec`."""
    p = Path(path).expanduser()
    file = p / "config.json" if p.is_dir() else p
    where = str(file)
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise CalcError(f"{where}: no such file") from None
    except OSError as e:
        raise CalcError(f"{where}: cannot read: {e.strerror or e}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise CalcError(f"{where}: too large for a config.json ({len(data):,} bytes)")
    try:
        raw = json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError) as e:
        raise CalcError(f"{where}: not valid JSON ({_first_line(e)})") from None
    slug = (p.name if p.is_dir() else p.parent.name) or "local-model"
    spec = spec_from_config(raw, slug=slug.lower(), name=slug, where=where)
    return _with_meta(spec, where)


def _with_meta(spec: ModelSpec, where: str) -> ModelSpec:
    return replace(spec, source=f"local file {where}", config_url=None)


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not allowed")


def _first_line(e: Exception) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__
