"""The simulated engine's prefix cache: block hashing, LRU, hits in the queueing model (fake clock), the
dialects' metric names for it, the request parsing that feeds it, the launch flags that turn it off, and
vLLM's /tokenize — and, against real engine processes, that repeated prefixes are hits with lower TTFT."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import httpx
import pytest

from agents.engines import get_adapter
from agents.metrics.parse import parse
from agents.sim import cli, dialects
from agents.sim import openai_api as openai
from agents.sim.config import SimConfig
from agents.sim.model import ModelConfig, QueueModel
from agents.sim.prefixcache import BLOCK_CHARS, BLOCK_TOKENS, PrefixCache, id_blocks, text_blocks
from tests.support.simproc import sim_engine

CFG = ModelConfig(
    max_num_seqs=8,
    kv_tokens=8192,
    max_model_len=2048,
    decode_s=0.01,
    decode_slowdown=0.0,
    prefill_s_per_token=0.001,
)  # 1 ms per prompt token: prefill dominates TTFT


def _text(n: int, seed: int) -> str:
    return "".join(chr(97 + (i * 7 + seed * 13 + i // 5) % 26) for i in range(n))


def test_block_hashes_are_chained_over_full_blocks() -> None:
    a, b = _text(BLOCK_CHARS * 4, 1), _text(BLOCK_CHARS * 4, 2)
    assert len(text_blocks(a)) == 4 and len(text_blocks(a + "xyz")) == 4  # only full blocks
    shared = a[: BLOCK_CHARS * 2] + b[BLOCK_CHARS * 2 :]
    assert text_blocks(shared)[:2] == text_blocks(a)[:2]
    assert text_blocks(shared)[2] != text_blocks(a)[2]
    # the same block after a different prefix is a different hash (chained, like vLLM's block hashes)
    moved = b[:BLOCK_CHARS] + a[BLOCK_CHARS : BLOCK_CHARS * 2]
    assert text_blocks(moved)[1] != text_blocks(a)[1]
    assert len(id_blocks(list(range(BLOCK_TOKENS * 3 + 5)))) == 3


def test_lru_cache_counts_leading_hits_and_evicts_oldest() -> None:
    cache = PrefixCache(capacity_blocks=4)
    assert cache.lookup_and_insert((1, 2, 3)) == 0
    assert cache.lookup_and_insert((1, 2, 9)) == 2  # hits stop at the first miss; 1 and 2 are used again
    assert cache.lookup_and_insert((1, 5)) == 1  # five blocks now: the least recently used one (3) goes
    assert len(cache) == 4
    assert cache.lookup_and_insert((1, 2, 3)) == 2  # 3 was evicted, 1 and 2 were not


def _ttft_and_cached(
    model: QueueModel, blocks: tuple[int, ...], t0: float, prompt: int = 512
) -> tuple[float, int]:
    req = model.new_request(prompt, 4, t0, ignore_eos=True, prefix_blocks=blocks)
    model.submit(req)
    t = t0
    while req.first_token_at is None:
        t += 0.001
        model.step(t)
    while not req.done:
        t += 0.01
        model.step(t)
    return req.first_token_at - req.arrival, req.cached


def test_repeated_prefix_is_cached_and_prefills_faster() -> None:
    model = QueueModel(CFG)
    blocks = text_blocks(_text(512 * 4, 3))  # 512 tokens = 32 blocks
    cold, cached0 = _ttft_and_cached(model, blocks, 0.0)
    warm, cached1 = _ttft_and_cached(model, blocks, 10.0)
    assert cached0 == 0 and cached1 == 511  # at least one prompt token is always computed
    assert cold > 0.5 and warm < 0.05, (cold, warm)
    assert model.totals.prefix_queries == 1024 and model.totals.prefix_hits == 511
    other, cached2 = _ttft_and_cached(model, text_blocks(_text(512 * 4, 4)), 20.0)
    assert cached2 == 0 and other > 0.5


def test_prefix_caching_off_and_floor() -> None:
    blocks = text_blocks(_text(512 * 4, 5))
    off = QueueModel(dataclasses.replace(CFG, prefix_caching=False))
    _ttft_and_cached(off, blocks, 0.0)
    assert _ttft_and_cached(off, blocks, 10.0)[1] == 0
    floor = QueueModel(dataclasses.replace(CFG, prefix_hit_rate=0.25))
    assert _ttft_and_cached(floor, (), 0.0)[1] == 128  # no blocks (internal load): the floor applies


@pytest.mark.parametrize(
    ("name", "hits_key", "queries_key"),
    [
        ("vllm", "prefix_cache_hits", "prefix_cache_queries"),
        ("sglang", "prefix_cache_hits", "prefix_cache_queries"),
    ],
)
def test_dialects_report_hits_in_their_own_names(name: str, hits_key: str, queries_key: str) -> None:
    """Read back through the project's own adapter: the hit rate an operator sees is the cache's."""
    mc = ModelConfig(
        max_num_seqs=8, kv_tokens=8192, max_model_len=2048, decode_s=0.01, prefill_s_per_token=0.0
    )
    cfg = SimConfig(dialect=name, model="m", served_name="m", host="127.0.0.1", port=1, model_config=mc)
    sink = dialects.get(name).make_metrics(cfg, 0.0, lambda line: None)
    model = QueueModel(mc, sink=sink)
    blocks = text_blocks(_text(256 * 4, 6))
    for t0 in (0.0, 5.0, 10.0):
        _ttft_and_cached(model, blocks, t0, prompt=256)
    text = sink.render()
    adapter = get_adapter(name)
    reading = adapter.read(parse(text, adapter.wanted()))
    assert reading.counters[queries_key] == 3 * 256
    assert reading.counters[hits_key] == 2 * 255
    if name == "vllm":
        assert 'vllm:prefix_cache_hits_total{engine="0",model_name="m"} 510.0' in text
    else:
        assert 'sglang:cached_tokens_total{model_name="m"} 510.0' in text


def test_tgi_has_no_prefix_cache_metric_but_still_caches() -> None:
    mc = ModelConfig(
        max_num_seqs=8, kv_tokens=8192, max_model_len=2048, decode_s=0.01, prefill_s_per_token=0.001
    )
    cfg = SimConfig(dialect="tgi", model="m", served_name="m", host="127.0.0.1", port=1, model_config=mc)
    sink = dialects.get("tgi").make_metrics(cfg, 0.0, lambda line: None)
    model = QueueModel(mc, sink=sink)
    blocks = text_blocks(_text(512 * 4, 7))
    _ttft_and_cached(model, blocks, 0.0)
    assert _ttft_and_cached(model, blocks, 10.0)[1] == 511
    reading = get_adapter("tgi").read(parse(sink.render(), get_adapter("tgi").wanted()))
    assert reading.counters["prefix_cache_hits"] is None  # TGI exports none; the simulator invents none


def test_requests_carry_blocks_of_their_prompt_and_messages() -> None:
    prompt = _text(BLOCK_CHARS * 3, 8)
    req = openai.parse_completion(json.dumps({"prompt": prompt, "max_tokens": 4}).encode(), False, "m", 4096)
    assert req.prefix_blocks == text_blocks(prompt)
    ids = openai.parse_completion(
        json.dumps({"prompt": list(range(40)), "max_tokens": 4}).encode(), False, "m", 4096
    )
    assert ids.prefix_blocks == id_blocks(list(range(40)))
    chat = {
        "messages": [{"role": "system", "content": prompt}, {"role": "user", "content": "hi"}],
        "max_tokens": 4,
    }
    a = openai.parse_completion(json.dumps(chat).encode(), True, "m", 4096)
    chat["messages"][1]["content"] = "something else entirely"
    b = openai.parse_completion(json.dumps(chat).encode(), True, "m", 4096)
    assert (
        len(a.prefix_blocks) >= 3 and a.prefix_blocks[:3] == b.prefix_blocks[:3]
    )  # the shared system prompt


def test_launch_flags_turn_the_cache_off() -> None:
    assert cli.parse_config(["--dialect", "vllm"]).model_config.prefix_caching is True
    assert (
        cli.parse_config(["--dialect", "vllm", "--no-enable-prefix-caching"]).model_config.prefix_caching
        is False
    )
    assert (
        cli.parse_config(["--dialect", "vllm", "--enable-prefix-caching"]).model_config.prefix_caching is True
    )
    assert (
        cli.parse_config(["--dialect", "sglang", "--disable-radix-cache"]).model_config.prefix_caching
        is False
    )


def test_tokenize_parses_like_completions() -> None:
    doc = openai.parse_tokenize(json.dumps({"model": "m", "prompt": "a" * 400}).encode(), "m", 4096)
    assert doc["count"] == 100 and len(doc["tokens"]) == 100 and doc["max_model_len"] == 4096
    with pytest.raises(openai.BadRequest):
        openai.parse_tokenize(json.dumps({"model": "other", "prompt": "x"}).encode(), "m", 4096)


def _metrics(url: str, dialect: str) -> tuple[float, float]:
    adapter = get_adapter(dialect)
    r = adapter.read(parse(httpx.get(url + "/metrics", timeout=5).text, adapter.wanted()))
    return r.counters["prefix_cache_hits"], r.counters["prefix_cache_queries"]


def test_real_engine_serves_repeated_prefix_from_cache(tmp_path: Path) -> None:
    """A real simulated vLLM process: the same long prompt twice is a cache hit, with a lower TTFT."""
    with sim_engine("vllm", "--tick-ms", "2", "--prefill-ms-per-1k", "400", tmp=tmp_path) as eng:
        eng.wait_ready()
        assert (
            httpx.post(eng.url + "/tokenize", json={"prompt": "abcd" * 10}, timeout=5).json()["count"] == 10
        )
        prompt = _text(4000, 9)  # 1000 tokens (62 full blocks of 16): 400 ms of prefill when cold

        def ttft() -> float:
            start = time.monotonic()
            with httpx.stream(
                "POST",
                eng.url + "/v1/completions",
                timeout=10,
                json={"prompt": prompt, "max_tokens": 2, "stream": True},
            ) as resp:
                for line in resp.iter_lines():
                    if line.startswith("data: {"):
                        return time.monotonic() - start
            raise AssertionError("no token")

        cold = ttft()
        warm = min(ttft() for _ in range(3))  # the best of three: a loaded machine can stall any one of them
        hits, queries = _metrics(eng.url, "vllm")
        assert queries == 4 * 1000 and hits == 3 * (4000 // BLOCK_CHARS) * BLOCK_TOKENS
        assert cold > 0.3 and warm < cold / 2, (cold, warm)
