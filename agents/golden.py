"""WRONG_ANSWERS: the golden canary, a correctness check of an engine's answers.

Per engine, ``golden = { prompt, expect (optional), max_tokens = 16 }`` (agents/config.py Golden). Every
``golden_interval_s`` while the engine serves, ``run_golden`` sends the prompt twice in a row at
temperature 0 (non-streaming /v1/completions; the second request hits the prefix cache) and
``GoldenJudge`` compares the answers: with each other, and with the reference, which is ``expect`` when
set, else the first agreeing pair of answers after the engine became ready (``reset()`` on restart).
Prefix-cache and speculative-decoding bugs have produced plausible garbage with 200 OK and normal
latency (vllm-project/vllm issues #53912, #35718, #15730, #20261); only a comparison catches that.

Matching: two answers (or an answer and a captured reference) must be identical; against a configured
``expect`` an answer matches when, surrounding whitespace removed, it starts with ``expect`` (so
``expect = "Paris"`` accepts " Paris, the capital..." cut at max_tokens).

A transport failure (timeout, refused, HTTP error, unparsable body) is not a wrong answer: its verdict
has ``ok`` None (liveness is the other canary's job), and the engine's answer bytes are capped and parsed
defensively: a hostile body becomes an error string, never an exception.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from agents.http1 import BodyTooLarge, Http1Client, Http1Error, NoResponse
from agents.scrape import transport_reason

CODE = "WRONG_ANSWERS"
SHOWN_CHARS = 120  # answers and reference in a verdict are cut to this many characters
MAX_ANSWER_BYTES = 256 * 1024  # a completion body larger than this is an error, not an answer
_JSON = {"Content-Type": "application/json"}

# (url, body, timeout_s) -> (HTTP status, body bytes); raises TimeoutError/OSError/Http1Error/GoldenError
PostCompletion = Callable[[str, bytes, float], Awaitable[tuple[int, bytes]]]


class GoldenSettings(Protocol):
    """An engine's ``golden`` table (agents/config.py Golden)."""

    prompt: str
    expect: str | None
    max_tokens: int


class GoldenError(Exception):
    """The golden canary got no usable answer; the message is one line."""


def _cut(text: str | None) -> str | None:
    if text is None or len(text) <= SHOWN_CHARS:
        return text
    return text[: SHOWN_CHARS - 1] + "…"


class GoldenJudge:
    """Judges each golden run; holds the reference (``expect``, or the first agreeing answers after ready)."""

    def __init__(self, expect: str | None) -> None:
        self.expect = expect
        self.reference: str | None = expect
        self.runs = 0  # verdicts given since the last reset

    def reset(self) -> None:
        """The engine restarted: a captured reference is forgotten (a configured ``expect`` stays)."""
        self.reference = self.expect
        self.runs = 0

    def judge(self, first: str | None, second: str | None, error: str | None) -> dict[str, Any]:
        """The verdict of one run (for EngineObservation.golden): ``ok`` True (answers agree with the
        reference), False (a wrong answer: ``reason`` says which), or None (no answer: ``error``)."""
        self.runs += 1
        source = "expect" if self.expect is not None else "captured"
        verdict: dict[str, Any] = {
            "ok": None,
            "reason": "",
            "reference": _cut(self.reference),
            "reference_source": source,
            "first": _cut(first),
            "second": _cut(second),
        }
        if error is not None or first is None or second is None:
            verdict["reason"] = f"no answer: {error or 'the run returned no text'}"
            return verdict
        ok, reason = self._compare(first, second)
        if ok and self.reference is None:
            self.reference = first
            reason = "reference captured from the first answers after ready"
        verdict.update(ok=ok, reason=reason, reference=_cut(self.reference))
        return verdict

    def _compare(self, first: str, second: str) -> tuple[bool, str]:
        ref = self.reference
        if first != second:
            if ref is not None and self._matches(first) and not self._matches(second):
                return False, "the second answer (prefix-cache hit) differs from the reference and the first"
            if ref is not None and self._matches(second) and not self._matches(first):
                return False, "the first answer differs from the reference and the second"
            if ref is not None:
                return False, "the two answers differ from each other and from the reference"
            return False, "the two temperature-0 answers to the same prompt differ"
        if ref is None or self._matches(first):
            return True, "both answers match the reference" if ref is not None else "the two answers agree"
        return False, "both answers differ from the reference"

    def _matches(self, answer: str) -> bool:
        if self.expect is not None:
            return answer.strip().startswith(self.expect.strip())
        return answer == self.reference


class GoldenRule:
    """An EngineRules extra rule: WRONG_ANSWERS (critical) while the latest conclusive verdict in
    ``obs.golden`` is a mismatch. A later run with no answer (ok None) keeps the alert with the last
    mismatch as evidence; a matching run, or no verdict at all (engine restarted), clears it."""

    def __init__(self) -> None:
        self._bad: Mapping[str, Any] | None = None

    def __call__(
        self, obs: Any, history: Sequence[Any] = (), thresholds: Any = None
    ) -> tuple[str, str, str, dict[str, Any]] | None:
        golden = getattr(obs, "golden", None)
        if golden is None:
            self._bad = None
            return None
        ok = golden.get("ok")
        if ok is True:
            self._bad = None
        elif ok is False:
            self._bad = golden
        if self._bad is None:
            return None
        bad = self._bad
        evidence = {k: bad.get(k) for k in ("reason", "reference", "reference_source", "first", "second")}
        if ok is None:
            evidence["latest_run"] = golden.get("reason")
        summary = f"golden canary answered wrong at temperature 0: {bad.get('reason')}"
        return CODE, "critical", summary, evidence


def request_body(model: str, golden: GoldenSettings) -> bytes:
    """The non-streaming temperature-0 /v1/completions body of a golden run."""
    payload = {
        "model": model,
        "prompt": golden.prompt,
        "max_tokens": golden.max_tokens,
        "temperature": 0,
        "stream": False,
    }
    return json.dumps(payload, separators=(",", ":")).encode()


def parse_answer(status: int, body: bytes) -> str:
    """The completion text of one answer; GoldenError (one line) for anything else."""
    if status != 200:
        snippet = body[:160].decode("utf-8", errors="replace").replace("\n", " ").strip()
        raise GoldenError(f"HTTP {status}: {snippet or 'no body'}")
    if len(body) > MAX_ANSWER_BYTES:
        raise GoldenError(f"answer larger than {MAX_ANSWER_BYTES} bytes")
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        raise GoldenError("answer is not JSON") from None
    choices = doc.get("choices") if isinstance(doc, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise GoldenError("answer has no choices")
    text = choices[0].get("text")
    if not isinstance(text, str):
        raise GoldenError("answer's choices[0].text is not a string")
    return text


async def run_golden(
    post_completion: PostCompletion,
    model: str,
    golden: GoldenSettings,
    *,
    url: str,
    timeout_s: float = 30.0,
) -> tuple[str | None, str | None, str | None]:
    """Send the golden prompt twice in a row; (first, second, error). ``error`` is one line when either
    run got no answer (then the texts got so far are returned, the rest None)."""
    body = request_body(model, golden)
    answers: list[str] = []
    try:
        for _ in range(2):
            async with asyncio.timeout(timeout_s):  # also bounds a poster that ignores its timeout
                status, raw = await post_completion(url, body, timeout_s)
            answers.append(parse_answer(status, raw))
    except TimeoutError:
        return _pad(answers, f"no answer within {timeout_s:g}s")
    except GoldenError as exc:
        return _pad(answers, str(exc))
    except NoResponse as exc:
        return _pad(answers, str(exc))
    except Http1Error as exc:
        return _pad(answers, f"bad HTTP response: {exc}")
    except OSError as exc:
        return _pad(answers, f"connection failed: {transport_reason(exc)}")
    return answers[0], answers[1], None


def _pad(answers: list[str], error: str) -> tuple[str | None, str | None, str | None]:
    got = [*answers, None, None]
    return got[0], got[1], error


async def http1_post(
    http: Http1Client, url: str, body: bytes, timeout_s: float, *, max_bytes: int = MAX_ANSWER_BYTES
) -> tuple[int, bytes]:
    """A PostCompletion over the agent's keep-alive client (``functools.partial(http1_post, http)``):
    POST ``body`` as JSON and read at most ``max_bytes`` of the answer (more: Http1Error)."""
    async with asyncio.timeout(timeout_s):
        async with http.stream("POST", url, body=body, headers=_JSON) as resp:
            if resp.status != 200:
                return resp.status, await resp.read(512, truncate=True)
            declared = resp.headers.get("content-length", "").split(",")[0].strip()
            if declared.isdigit() and int(declared) > max_bytes:
                raise BodyTooLarge(max_bytes)  # refused before reading: no waiting on a body it says is huge
            return resp.status, await resp.read(max_bytes)
