"""Generate a tiny random-weight Llama and a small BPE tokenizer, offline, for the real-vLLM e2e tests.

Run with the e2e virtualenv's python (it needs torch, transformers and tokenizers, which the project's
own environment does not have):  ``python tiny_model.py OUT_DIR``.  It imports nothing from the project.

The shapes follow what vLLM's CPU backend accepts (DESIGN.md "Real engines on CPU"): 2 layers, head_dim 64
(head_dim 16 fails with "Unsupported CPU attention configuration"). It is small (2 layers, so start-up and
torch.compile stay short) but not too small: at hidden 256 (1.7 M parameters) an engine step is mostly
Python overhead, a stream of 64 tokens is over in milliseconds and the engine idles while its API server
streams, so its running gauge reads 0 under load; at hidden 1024 a loaded 2-core machine still left the
engine idle half the time. At hidden 2048 / MLP 8192 (~130 M parameters) each step is matrix work that
outweighs the API server's per-token cost, so a loaded engine is visibly busy.
Everything is seeded, so the same versions produce the same files.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

VOCAB_SIZE = 1024
HIDDEN = 2048
SPECIAL = ("<unk>", "<s>", "</s>")
WORDS_TEXT = (
    "the a an engine token cache queue request model server agent metric latency gpu host kernel batch "
    "prompt stream ready alert hung storm pressure block worker process signal restart health canary "
    "ping pong alpha beta gamma delta one two three four five six seven eight nine ten and or not is "
    "was will run runs ran fast slow up down in out on off of to from with for at by"
)
WORDS = tuple(WORDS_TEXT.split())


def corpus(lines: int = 4000, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(lines):
        n = rng.randint(4, 16)
        words = [rng.choice(WORDS) for _ in range(n)]
        if rng.random() < 0.3:
            words.append(str(rng.randint(0, 9999)))
        out.append(" ".join(words) + rng.choice((".", "!", "?", ",")))
    return out


def build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=list(SPECIAL),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(), trainer=trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>", model_max_length=2048
    )


def build_model(tokenizer):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN,
        intermediate_size=4 * HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=HIDDEN // 64,
        num_key_value_heads=HIDDEN // 128,
        head_dim=64,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
        torch_dtype="float32",
    )
    return LlamaForCausalLM(config)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: tiny_model.py OUT_DIR\n")
        return 2
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    model = build_model(tokenizer)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    params = sum(p.numel() for p in model.parameters())
    print(f"tiny llama: {params} parameters, vocab {len(tokenizer)}, saved to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
