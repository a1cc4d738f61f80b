"""One streamed completion (or chat completion), timed on the monotonic clock.

Per request: TTFT = first server-sent event carrying non-empty text (completion ``text``, chat
``delta.content`` or ``delta.reasoning_content``) minus the moment the request was sent; every gap
between successive non-empty events (ITL); end-to-end latency; input and output token counts from the
streamed ``usage`` (requested with ``stream_options.include_usage``) or, when the engine sends none, the
output counted as non-empty events (``usage`` false says which). An error is one class:

- ``connect`` (refused, unreachable, TLS), ``closed`` (the connection dropped mid-response),
  ``protocol`` (not HTTP, a malformed event), ``timeout`` (the request ran past ``--request-timeout``);
- ``http_<status>`` (the engine answered an error status; ``detail`` has its message);
- ``stream_error`` (an error object inside the stream), ``incomplete_stream`` (the stream ended without
  ``[DONE]`` or a finish reason), ``not_streaming`` (a 200 answer that is not an event stream);
- ``cancelled``: stopped by the benchmark (Ctrl-C, or still running when the run's bound ended); such
  requests are *incomplete*, neither completed nor failed.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

from console.bench.http import Client, HttpError

MAX_ERROR_BODY = 64 * 1024
CANCELLED = "cancelled"


@dataclass(slots=True)
class RequestRecord:
    index: int
    start: float  # time.perf_counter() when sent (monotonic)
    expected_prompt_tokens: int | None = None  # the workload's own estimate
    end: float | None = None
    ok: bool = False
    error: str | None = None  # the class (see the module docstring)
    detail: str | None = None
    ttft: float | None = None
    itl: list[float] = field(default_factory=list)
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    usage: bool = False  # token counts came from the engine's usage
    events: int = 0  # non-empty text events

    @property
    def latency(self) -> float | None:
        return None if self.end is None else self.end - self.start

    @property
    def incomplete(self) -> bool:
        return self.error == CANCELLED

    @property
    def tpot(self) -> float | None:
        """vLLM's TPOT: (latency − TTFT) / (output tokens − 1); None with one output token or fewer."""
        if (
            not self.ok
            or self.ttft is None
            or self.end is None
            or not self.output_tokens
            or self.output_tokens < 2
        ):
            return None
        return (self.end - self.start - self.ttft) / (self.output_tokens - 1)


class _StreamError(Exception):
    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


def _text(choice: dict) -> str | None:
    text = choice.get("text")
    if text is None:
        delta = choice.get("delta")
        if isinstance(delta, dict):
            text = delta.get("content") or delta.get("reasoning_content") or delta.get("reasoning")
    return text if isinstance(text, str) else None


def error_message(body: bytes) -> str:
    """The message of an engine's JSON error body (vLLM, SGLang, TGI, FastAPI shapes), else its head."""
    try:
        obj = json.loads(body)
    except ValueError:
        return " ".join(body[:200].decode("utf-8", "replace").split())
    if isinstance(obj, dict):
        for candidate in (obj.get("error"), obj.get("message"), obj.get("detail")):
            if isinstance(candidate, dict):
                candidate = candidate.get("message")
            if isinstance(candidate, str):
                return " ".join(candidate.split())[:300]
    return " ".join(str(obj).split())[:300]


class _Events:
    """Feeds the SSE body of one response into its record."""

    __slots__ = ("rec", "buf", "last", "done", "finished")

    def __init__(self, rec: RequestRecord) -> None:
        self.rec = rec
        self.buf = b""
        self.last: float | None = None
        self.done = False
        self.finished = False

    def feed(self, piece: bytes, now: float) -> None:
        buf = self.buf + piece
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n")
        while (cut := buf.find(b"\n\n")) >= 0:
            self._event(buf[:cut], now)
            buf = buf[cut + 2 :]
        self.buf = buf

    def _event(self, raw: bytes, now: float) -> None:
        for line in raw.split(b"\n"):
            if not line.startswith(b"data:"):
                continue  # comments, event: and id: lines
            payload = line[5:].strip()
            if payload == b"[DONE]":
                self.done = True
                continue
            try:
                obj = json.loads(payload)
            except ValueError:
                raise _StreamError("protocol", "an event that is not JSON") from None
            if not isinstance(obj, dict):
                raise _StreamError("protocol", "an event that is not a JSON object")
            self._chunk(obj, now)

    def _chunk(self, obj: dict, now: float) -> None:
        rec = self.rec
        if "error" in obj and not obj.get("choices"):
            raise _StreamError("stream_error", error_message(json.dumps(obj).encode()))
        for choice in obj.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            text = _text(choice)
            if text:
                rec.events += 1
                if self.last is None:
                    rec.ttft = now - rec.start
                else:
                    rec.itl.append(now - self.last)
                self.last = now
            if choice.get("finish_reason"):
                self.finished = True
        usage = obj.get("usage")
        if isinstance(usage, dict):
            prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
            if isinstance(completion, int) and not isinstance(completion, bool):
                rec.output_tokens = completion
                rec.usage = True
            if isinstance(prompt, int) and not isinstance(prompt, bool):
                rec.prompt_tokens = prompt


async def send(
    client: Client,
    path: str,
    body: bytes,
    index: int,
    timeout_s: float,
    out: list[RequestRecord],
    expected_prompt_tokens: int | None = None,
) -> RequestRecord:
    """Send one streaming request; its record is appended to ``out`` when it ends, and returned. Never
    raises, except on cancellation, where the record (``cancelled``) is still appended first."""
    rec = RequestRecord(index, time.perf_counter(), expected_prompt_tokens)
    events = _Events(rec)
    try:
        async with (
            asyncio.timeout(timeout_s),
            client.request("POST", path, body, "text/event-stream") as resp,
        ):
            if resp.status != 200:
                rec.error, rec.detail = f"http_{resp.status}", error_message(await resp.read(MAX_ERROR_BODY))
                return rec
            if "text/event-stream" not in resp.headers.get("content-type", ""):
                rec.error, rec.detail = "not_streaming", error_message(await resp.read(MAX_ERROR_BODY))
                return rec
            async for piece in resp.chunks():
                events.feed(piece, time.perf_counter())
        if not (events.done or events.finished):
            rec.error, rec.detail = "incomplete_stream", "the stream ended without [DONE] or a finish reason"
            return rec
        if not rec.usage:
            rec.output_tokens = rec.events
        rec.ok = True
    except TimeoutError:
        rec.error, rec.detail = "timeout", f"no complete answer within {timeout_s:g} s"
    except HttpError as exc:
        rec.error, rec.detail = exc.kind, str(exc)
    except _StreamError as exc:
        rec.error, rec.detail = exc.kind, str(exc)
    except asyncio.CancelledError:
        rec.error, rec.detail = CANCELLED, "stopped by the benchmark"
        rec.end = time.perf_counter()
        raise
    finally:
        if rec.end is None:
            rec.end = time.perf_counter()
        out.append(rec)
    return rec
