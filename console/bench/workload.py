"""The benchmark's prompts, generated offline (no network, no dataset download), and their request bodies.

Workloads:

- ``random``: unique prompts of ``input_len`` tokens (± ``range_ratio``, uniform, as ``vllm bench serve``'s
  random dataset) asking for ``output_len`` tokens;
- ``prefix-repetition``: ``prefix_count`` shared prefixes of ``prefix_len`` tokens, each request one of
  them (chosen at random) followed by a unique suffix of ``suffix_len`` tokens — the prefix-cache /
  RadixAttention case (vLLM's ``prefix_repetition`` dataset: 10 × 256 + 256, output 128);
- ``long-prompt``: unique long prompts (the long-context case), ``input_len`` tokens each;
- ``jsonl``: one JSON object per line, ``{"prompt": "..."}`` or ``{"messages": [...]}``, optionally with
  ``"max_tokens"`` (or ``"output_len"``); requests cycle through the file in order.

Lengths are in tokens but text is made of characters: without a tokenizer a length is
``tokens × chars_per_token`` characters (4.0 unless measured). When the engine has a tokenizer endpoint
(vLLM's ``POST /tokenize``) the CLI measures the ratio on a sample of this generator's own text first; the
result says which was used (``tokenization``). The engine's ``usage`` gives the real counts either way.
Prompts are random pseudo-words, so two prompts share no prefix unless the workload makes them.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from console.fileread import read_bounded

KINDS = ("random", "prefix-repetition", "long-prompt", "jsonl")
DEFAULT_CHARS_PER_TOKEN = 4.0
MAX_FILE_BYTES = 256 * 1024 * 1024
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


class WorkloadError(ValueError):
    """Bad workload input (a malformed JSONL line, an impossible length); the message is one line."""


@dataclass(frozen=True, slots=True)
class Prompt:
    text: str | None  # a plain prompt
    messages: tuple[dict[str, Any], ...] | None  # a chat conversation (JSONL only)
    output_len: int
    est_tokens: int  # the generator's estimate of the prompt's tokens


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    kind: str = "random"
    input_len: int = 1024
    output_len: int = 128
    range_ratio: float = 0.0
    prefix_count: int = 10
    prefix_len: int = 256
    suffix_len: int = 256
    path: str | None = None
    seed: int = 0
    chars_per_token: float = DEFAULT_CHARS_PER_TOKEN

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "output_len": self.output_len, "seed": self.seed}
        if self.kind in ("random", "long-prompt"):
            out.update(input_len=self.input_len, range_ratio=self.range_ratio)
        elif self.kind == "prefix-repetition":
            out.update(prefix_count=self.prefix_count, prefix_len=self.prefix_len, suffix_len=self.suffix_len)
        else:
            out.update(path=self.path)
        return out


def check(spec: WorkloadSpec) -> None:
    """One WorkloadError line for impossible values."""
    if spec.kind not in KINDS:
        raise WorkloadError(f"unknown workload {spec.kind!r} (choose from {', '.join(KINDS)})")
    for name, value in (
        ("--input-len", spec.input_len),
        ("--output-len", spec.output_len),
        ("--prefix-count", spec.prefix_count),
        ("--prefix-len", spec.prefix_len),
        ("--suffix-len", spec.suffix_len),
    ):
        if value < 1:
            raise WorkloadError(f"{name} must be 1 or more, got {value}")
    if not 0 <= spec.range_ratio < 1:
        raise WorkloadError(f"--range-ratio must be in [0, 1), got {spec.range_ratio:g}")
    if not (math.isfinite(spec.chars_per_token) and 0.5 <= spec.chars_per_token <= 64):
        raise WorkloadError(f"--chars-per-token must be between 0.5 and 64, got {spec.chars_per_token:g}")
    if spec.kind == "jsonl" and not spec.path:
        raise WorkloadError("--workload jsonl needs --prompts-file PATH")
    if spec.kind != "jsonl" and spec.path:
        raise WorkloadError("--prompts-file is for --workload jsonl")


def _vocabulary(seed: int = 0, size: int = 2048) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choices(_LETTERS, k=rng.randint(2, 9))) for _ in range(size)]


class TextMaker:
    """Random pseudo-word text of an exact length in characters."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.words = _vocabulary()
        self.avg = sum(len(w) + 1 for w in self.words) / len(self.words)

    def text(self, chars: int) -> str:
        parts: list[str] = []
        length = 0
        while length < chars:
            batch = self.rng.choices(self.words, k=max(4, math.ceil((chars - length) / self.avg) + 2))
            piece = " ".join(batch) + " "
            parts.append(piece)
            length += len(piece)
        text = "".join(parts)[:chars]
        return text[:-1] + "a" if text.endswith(" ") else text


class Prompts:
    """An endless, deterministic sequence of prompts for one workload."""

    def __init__(self, spec: WorkloadSpec) -> None:
        check(spec)
        self.spec = spec
        self.rng = random.Random(spec.seed)
        self.maker = TextMaker(self.rng)
        self.file_prompts: list[Prompt] = (
            load_jsonl(spec.path, spec) if spec.kind == "jsonl" and spec.path else []
        )
        self._prefixes = (
            [self._chars(spec.prefix_len) for _ in range(spec.prefix_count)]
            if spec.kind == "prefix-repetition"
            else []
        )
        self._next = 0

    def _chars(self, tokens: int) -> str:
        return self.maker.text(max(1, round(tokens * self.spec.chars_per_token)))

    def _length(self, n: int) -> int:
        r = self.spec.range_ratio
        return max(1, self.rng.randint(math.floor(n * (1 - r)), math.ceil(n * (1 + r)))) if r else n

    def __iter__(self) -> Iterator[Prompt]:
        return self

    def __next__(self) -> Prompt:
        spec = self.spec
        i, self._next = self._next, self._next + 1
        if spec.kind == "jsonl":
            return self.file_prompts[i % len(self.file_prompts)]
        if spec.kind == "prefix-repetition":
            prefix = self._prefixes[self.rng.randrange(len(self._prefixes))]
            text = prefix + " " + self._chars(spec.suffix_len)
            return Prompt(text, None, spec.output_len, spec.prefix_len + spec.suffix_len)
        tokens = self._length(spec.input_len)
        return Prompt(self._chars(tokens), None, self._length(spec.output_len), tokens)


def load_jsonl(path: str, spec: WorkloadSpec) -> list[Prompt]:
    """Every prompt of a JSONL file; WorkloadError naming the file and line for the first bad one."""
    raw = read_bounded(path, MAX_FILE_BYTES, WorkloadError)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WorkloadError(f"{path}: not UTF-8 (byte {exc.start})") from None
    out: list[Prompt] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.strip():
            out.append(_jsonl_prompt(line, f"{path} line {lineno}", spec))
    if not out:
        raise WorkloadError(f"{path}: no prompts (one JSON object per line)")
    return out


def _jsonl_prompt(line: str, where: str, spec: WorkloadSpec) -> Prompt:
    try:
        obj = json.loads(line)
    except ValueError as exc:
        raise WorkloadError(f"{where}: not JSON ({exc.msg})") from None
    if not isinstance(obj, dict):
        raise WorkloadError(f'{where}: expected an object like {{"prompt": "..."}}')
    out_len = obj.get("max_tokens", obj.get("output_len", spec.output_len))
    if not isinstance(out_len, int) or isinstance(out_len, bool) or out_len < 1:
        raise WorkloadError(f"{where}: max_tokens must be an integer of 1 or more")
    prompt, messages = obj.get("prompt"), obj.get("messages")
    if (prompt is None) == (messages is None):
        raise WorkloadError(f'{where}: give exactly one of "prompt" (a string) or "messages" (a list)')
    if prompt is not None:
        if not isinstance(prompt, str) or not prompt:
            raise WorkloadError(f'{where}: "prompt" must be a non-empty string')
        return Prompt(prompt, None, out_len, max(1, round(len(prompt) / spec.chars_per_token)))
    if (
        not isinstance(messages, list)
        or not messages
        or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in messages
        )
    ):
        raise WorkloadError(
            f'{where}: "messages" must be a non-empty list of {{"role": str, "content": str}}'
        )
    chars = sum(len(m["content"]) for m in messages)
    return Prompt(None, tuple(messages), out_len, max(1, round(chars / spec.chars_per_token)))


@dataclass(frozen=True, slots=True)
class RequestFormat:
    """How prompts become request bodies: the endpoint, the model and the sampling fields."""

    endpoint: str  # "completions" | "chat"
    model: str
    ignore_eos: bool = False
    prefix: str = ""  # a path before /v1 (an engine behind a path-routing proxy)

    @property
    def path(self) -> str:
        return self.prefix + ("/v1/chat/completions" if self.endpoint == "chat" else "/v1/completions")

    def body(self, prompt: Prompt) -> bytes:
        doc: dict[str, Any] = {"model": self.model}
        if self.endpoint == "chat":
            messages = (
                list(prompt.messages)
                if prompt.messages is not None
                else [{"role": "user", "content": prompt.text}]
            )
            doc["messages"] = messages
        else:
            if prompt.text is None:
                raise WorkloadError('a "messages" prompt needs --endpoint chat')
            doc["prompt"] = prompt.text
        doc.update(
            max_tokens=prompt.output_len, temperature=0.0, stream=True, stream_options={"include_usage": True}
        )
        if self.ignore_eos:
            doc["ignore_eos"] = True
        return json.dumps(doc, separators=(",", ":")).encode()
