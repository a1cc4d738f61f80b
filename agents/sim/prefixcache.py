"""The simulated engine's prefix cache: chained block hashes of a prompt and an LRU of cached blocks.

A prompt is cut into blocks of ``BLOCK_TOKENS`` tokens (vLLM's default block size). Text is cut by
characters, ``BLOCK_CHARS`` per block — the simulator's token estimate is about four characters per
token (see openai_api.count_tokens) — and a list of token ids by ids. Each block's hash covers the block
*and every block before it* (as vLLM's and SGLang's radix/hash caches do), so two prompts share cached
blocks exactly as long as they share a prefix. Only full blocks are hashed.

:class:`PrefixCache` keeps the hashes of blocks computed before, least recently used evicted first,
bounded by the KV pool's size in blocks. ``lookup_and_insert`` returns how many leading blocks of a new
request were already cached and then caches all of its blocks (vLLM V1 caches a request's full blocks
when it allocates them, so a request admitted in the same step already hits them). Pure: no I/O.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

BLOCK_TOKENS = 16
CHARS_PER_TOKEN = 4
BLOCK_CHARS = BLOCK_TOKENS * CHARS_PER_TOKEN
MAX_BLOCKS_PER_PROMPT = 1 << 16


def text_blocks(text: str) -> tuple[int, ...]:
    """Chained hashes of the full ``BLOCK_CHARS``-character blocks of ``text``."""
    out: list[int] = []
    prev = 0
    for start in range(0, min(len(text), BLOCK_CHARS * MAX_BLOCKS_PER_PROMPT) - BLOCK_CHARS + 1, BLOCK_CHARS):
        prev = hash((prev, text[start : start + BLOCK_CHARS]))
        out.append(prev)
    return tuple(out)


def id_blocks(ids: Sequence[int]) -> tuple[int, ...]:
    """Chained hashes of the full ``BLOCK_TOKENS``-id blocks of a token-id prompt."""
    out: list[int] = []
    prev = 0
    for start in range(
        0, min(len(ids), BLOCK_TOKENS * MAX_BLOCKS_PER_PROMPT) - BLOCK_TOKENS + 1, BLOCK_TOKENS
    ):
        prev = hash((prev, tuple(ids[start : start + BLOCK_TOKENS])))
        out.append(prev)
    return tuple(out)


class PrefixCache:
    """Cached block hashes, least recently used first out; at most ``capacity_blocks`` of them."""

    def __init__(self, capacity_blocks: int) -> None:
        if capacity_blocks < 1:
            raise ValueError("capacity_blocks must be >= 1")
        self.capacity = capacity_blocks
        self._blocks: OrderedDict[int, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._blocks)

    def lookup_and_insert(self, blocks: Sequence[int]) -> int:
        """The number of leading ``blocks`` already cached; then all of ``blocks`` are cached (most recent)."""
        hit = 0
        for h in blocks:
            if h not in self._blocks:
                break
            hit += 1
        for h in blocks:
            if h in self._blocks:
                self._blocks.move_to_end(h)
            else:
                self._blocks[h] = None
        while len(self._blocks) > self.capacity:
            self._blocks.popitem(last=False)
        return hit

    def clear(self) -> None:
        self._blocks.clear()
