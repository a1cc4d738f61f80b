"""OpenAI-compatible request parsing and response shaping for the simulated engine (pure).

Token counts are estimates: a prompt's tokens are ``max(words, ceil(chars / 4))`` (at least 1); a list
of token ids counts its length. Generated text is a sequence of placeholder words drawn from a seed: at
temperature 0 the seed is the prompt's (the same prompt gives the same text, as greedy decoding does),
otherwise the request id's (every request differs). Each
request also carries its prompt's chained block hashes (agents/sim/prefixcache.py) for the prefix cache;
a chat request's blocks cover its messages in order (role and content), as the chat template renders them.
"""

from __future__ import annotations

import json
import math
import zlib
from dataclasses import dataclass
from typing import Any

from agents.sim.prefixcache import id_blocks, text_blocks

WORDS = (
    "the",
    "simulated",
    "engine",
    "produces",
    "placeholder",
    "tokens",
    "for",
    "testing",
    "llmconsole",
    "and",
    "nothing",
    "here",
    "is",
    "real",
    "model",
    "output",
    "only",
    "a",
    "steady",
    "stream",
    "of",
    "words",
)
MAX_BODY_BYTES = 4 * 1024 * 1024


class BadRequest(Exception):
    """A request the engine refuses; ``status`` is 4xx and ``message`` one line."""

    def __init__(self, status: int, message: str, kind: str = "validation") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    chat: bool
    prompt_tokens: int
    max_tokens: int
    ignore_eos: bool
    stream: bool
    include_usage: bool
    model: str
    prefix_blocks: tuple[int, ...] = ()
    text_seed: int | None = None  # temperature 0: the prompt's seed (deterministic text); else None


def count_tokens(text: str) -> int:
    return max(1, len(text.split()), math.ceil(len(text) / 4))


def _prompt_tokens(prompt: Any) -> int:
    if prompt == "" or prompt == [""]:
        raise BadRequest(400, "The decoder prompt cannot be empty")
    if isinstance(prompt, str):
        return count_tokens(prompt)
    if isinstance(prompt, list) and prompt:
        if all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
            return len(prompt)
        if len(prompt) == 1 and isinstance(prompt[0], str):
            return count_tokens(prompt[0])
        if (
            len(prompt) == 1
            and isinstance(prompt[0], list)
            and prompt[0]
            and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt[0])
        ):
            return len(prompt[0])
        if all(isinstance(p, str) for p in prompt):
            raise BadRequest(
                400, "batched prompts are not supported by the simulated engine; send one prompt"
            )
    raise BadRequest(
        400, "'prompt' must be a non-empty string, a list of token ids, or a list with one string"
    )


def _prompt_blocks(prompt: Any) -> tuple[int, ...]:
    """The prefix-cache block hashes of a prompt already validated by ``_prompt_tokens``."""
    if isinstance(prompt, str):
        return text_blocks(prompt)
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
        if isinstance(prompt, str):
            return text_blocks(prompt)
    return id_blocks(prompt) if isinstance(prompt, list) else ()


def _chat_tokens(messages: Any, rendered: list[str] | None = None) -> int:
    """Prompt tokens of a chat request; the rendered messages are appended to ``rendered`` if given."""
    if not isinstance(messages, list) or not messages:
        raise BadRequest(400, "'messages' must be a non-empty list")
    total = 3  # the chat template's assistant header
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or not isinstance(msg.get("role"), str):
            raise BadRequest(400, f"messages[{i}] must be an object with a string 'role'")
        content = msg.get("content", "")
        if isinstance(content, list):  # content parts
            texts = [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
            content = " ".join(t for t in texts if isinstance(t, str))
        if content is None:
            content = ""
        if not isinstance(content, str):
            raise BadRequest(400, f"messages[{i}].content must be a string or a list of parts")
        total += 4 + (count_tokens(content) if content else 0)
        if rendered is not None:
            rendered.append(f"<|{msg['role']}|>\n{content}\n")
    return total


def _int_field(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadRequest(400, f"'{name}' must be an integer")
    if value < 1:
        raise BadRequest(400, f"'{name}' must be at least 1, got {value}")
    return value


def _greedy(body: dict[str, Any]) -> bool:
    """Whether the request decodes greedily (``temperature`` 0); raises BadRequest on a bad value."""
    value = body.get("temperature")
    if value is None:
        return False
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise BadRequest(400, f"'temperature' must be a number >= 0, got {value!r}")
    return value == 0


def prompt_seed(prompt: Any) -> int:
    """A stable seed for a prompt (a string, token ids or chat messages)."""
    return zlib.crc32(json.dumps(prompt, sort_keys=True, separators=(",", ":")).encode())


def parse_json_body(raw: bytes) -> dict[str, Any]:
    if len(raw) > MAX_BODY_BYTES:
        raise BadRequest(413, f"request body larger than {MAX_BODY_BYTES} bytes")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest(400, "request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest(400, "request body must be a JSON object")
    return body


def parse_completion(raw: bytes, chat: bool, served_name: str, max_model_len: int) -> CompletionRequest:
    """Validate a /v1/completions or /v1/chat/completions body; raises BadRequest."""
    body = parse_json_body(raw)
    model = body.get("model")
    if model is not None and model != served_name:
        raise BadRequest(404, f"The model `{model}` does not exist.", kind="not_found")
    if chat:
        rendered: list[str] = []
        prompt_tokens = _chat_tokens(body.get("messages"), rendered)
        blocks = text_blocks("".join(rendered))
        seed = prompt_seed(["chat", body.get("messages")])
    else:
        prompt_tokens = _prompt_tokens(body.get("prompt"))
        blocks = _prompt_blocks(body.get("prompt"))
        seed = prompt_seed(body.get("prompt"))
    greedy = _greedy(body)
    n = body.get("n", 1)
    if n != 1 or isinstance(n, bool):
        raise BadRequest(400, "only n=1 is supported by the simulated engine")
    max_tokens = _int_field(body, "max_tokens")
    if chat and max_tokens is None:
        max_tokens = _int_field(body, "max_completion_tokens")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest(400, "'stream' must be a boolean")
    ignore_eos = body.get("ignore_eos", False)
    if not isinstance(ignore_eos, bool):
        raise BadRequest(400, "'ignore_eos' must be a boolean")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise BadRequest(400, "'stream_options' must be an object")
    if prompt_tokens >= max_model_len:
        raise BadRequest(
            400,
            f"This model's maximum context length is {max_model_len} tokens. However, your request has "
            f"{prompt_tokens} input tokens. Please reduce the length of the input messages.",
        )
    if max_tokens is None:
        max_tokens = max_model_len - prompt_tokens
    elif prompt_tokens + max_tokens > max_model_len:
        raise BadRequest(
            400,
            f"This model's maximum context length is {max_model_len} tokens. However, you requested "
            f"{prompt_tokens + max_tokens} tokens ({prompt_tokens} in the messages, {max_tokens} in the "
            "completion). Please reduce the length of the messages or completion.",
        )
    return CompletionRequest(
        chat,
        prompt_tokens,
        max_tokens,
        ignore_eos,
        stream,
        bool(options.get("include_usage")),
        served_name,
        blocks,
        seed if greedy else None,
    )


def parse_tokenize(raw: bytes, served_name: str, max_model_len: int) -> dict[str, Any]:
    """vLLM's ``POST /tokenize`` answer for a ``prompt`` or ``messages`` body (token ids are placeholders:
    the count is the simulator's estimate); raises BadRequest."""
    body = parse_json_body(raw)
    model = body.get("model")
    if model is not None and model != served_name:
        raise BadRequest(404, f"The model `{model}` does not exist.", kind="not_found")
    if "messages" in body:
        count = _chat_tokens(body.get("messages"))
    else:
        count = _prompt_tokens(body.get("prompt"))
    return {
        "count": count,
        "max_model_len": max_model_len,
        "tokens": [zlib.crc32(i.to_bytes(4, "little")) % 32000 for i in range(count)],
        "token_strs": None,
    }


def token_text(seed: int, index: int) -> str:
    """The text of generated token ``index`` of a request whose text seed is ``seed`` (deterministic)."""
    return " " + WORDS[(seed + 7 * index) % len(WORDS)]


def text_of(seed: int, start: int, stop: int) -> str:
    return "".join(token_text(seed, i) for i in range(start, stop))


def wrong_seed(seed: int, n: int) -> int:
    """The seed of the ``n``-th wrong answer to a prompt whose right seed is ``seed``: its text differs
    from the right one from the first token on, and from the (n-1)-th and (n+1)-th wrong answers."""
    return seed + 1 + n % (len(WORDS) - 1)


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def full_response(
    req: CompletionRequest,
    rid: str,
    created: int,
    text: str,
    finish: str | None,
    completion_tokens: int,
    prompt_tokens: int,
) -> dict[str, Any]:
    if req.chat:
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "logprobs": None,
            "finish_reason": finish,
        }
        obj = "chat.completion"
    else:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish, "stop_reason": None}
        obj = "text_completion"
    return {
        "id": rid,
        "object": obj,
        "created": created,
        "model": req.model,
        "choices": [choice],
        "usage": usage(prompt_tokens, completion_tokens),
    }


def chunk(
    req: CompletionRequest, rid: str, created: int, text: str | None, finish: str | None, first: bool = False
) -> dict[str, Any]:
    if req.chat:
        delta: dict[str, Any] = {}
        if first:
            delta["role"] = "assistant"
        if text is not None:
            delta["content"] = text
        choice: dict[str, Any] = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        obj = "chat.completion.chunk"
    else:
        choice = {
            "index": 0,
            "text": text or "",
            "logprobs": None,
            "finish_reason": finish,
            "stop_reason": None,
        }
        obj = "text_completion"
    return {"id": rid, "object": obj, "created": created, "model": req.model, "choices": [choice]}


def usage_chunk(
    req: CompletionRequest, rid: str, created: int, prompt_tokens: int, completion_tokens: int
) -> dict[str, Any]:
    obj = "chat.completion.chunk" if req.chat else "text_completion"
    return {
        "id": rid,
        "object": obj,
        "created": created,
        "model": req.model,
        "choices": [],
        "usage": usage(prompt_tokens, completion_tokens),
    }


def sse(data: dict[str, Any] | str) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {payload}\n\n".encode()
