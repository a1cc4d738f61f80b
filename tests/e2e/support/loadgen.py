"""A real load generator: concurrent streaming completions against an OpenAI-compatible server (httpx).

Closed loop: ``concurrency`` workers each send one streaming ``/v1/completions`` request after another
until ``duration_s`` has passed or ``max_requests`` were sent (always bounded), recording per request the
client-side time to first token, the end-to-end latency and the exact completion tokens (from the
streamed ``usage``). ``LoadThread`` runs it in a background thread so a synchronous test can watch the
agent meanwhile.

Workers can start ``stagger_s`` apart and draw each request's ``max_tokens`` from
``[max_tokens * (1 - tokens_spread), max_tokens]`` (seeded): streams of equal length run in lock-step and
all end on the same engine step, so the engine would idle while every client turns around at once.

    python -m tests.e2e.support.loadgen http://127.0.0.1:8000 --model tiny --concurrency 4 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import threading
import time
from dataclasses import dataclass, field

import httpx


@dataclass(slots=True)
class RequestResult:
    ok: bool
    ttft_s: float | None
    e2e_s: float
    completion_tokens: int | None
    chunks: int
    error: str | None = None


@dataclass(slots=True)
class LoadResult:
    started: float  # monotonic
    ended: float
    results: list[RequestResult] = field(default_factory=list)

    @property
    def ok(self) -> list[RequestResult]:
        return [r for r in self.results if r.ok]

    @property
    def errors(self) -> list[str]:
        return [r.error or "?" for r in self.results if not r.ok]

    @property
    def completion_tokens(self) -> int:
        return sum(r.completion_tokens or 0 for r in self.ok)

    def summary(self) -> str:
        ok = self.ok
        ttfts = sorted(r.ttft_s for r in ok if r.ttft_s is not None)
        p50 = ttfts[len(ttfts) // 2] if ttfts else None
        return (
            f"{len(self.results)} requests ({len(ok)} ok) in {self.ended - self.started:.1f}s, "
            f"{self.completion_tokens} completion tokens, client TTFT p50 {p50}"
        )


@dataclass(frozen=True, slots=True)
class LoadSpec:
    base_url: str
    model: str
    concurrency: int = 4
    duration_s: float = 10.0
    max_requests: int = 10_000
    max_tokens: int = 32
    prompt: str = "the engine token cache queue request model server agent"
    ignore_eos: bool = True
    request_timeout_s: float = 120.0
    stagger_s: float = 0.0  # worker i sends its first request i * stagger_s after the start
    tokens_spread: float = (
        0.0  # each request's max_tokens is drawn from [max_tokens * (1 - spread), max_tokens]
    )
    seed: int = 0

    def tokens_for(self, rng: random.Random) -> int:
        low = max(1, round(self.max_tokens * (1.0 - min(max(self.tokens_spread, 0.0), 1.0))))
        return rng.randint(low, self.max_tokens) if low < self.max_tokens else self.max_tokens


async def _one(client: httpx.AsyncClient, spec: LoadSpec, max_tokens: int) -> RequestResult:
    payload = {
        "model": spec.model,
        "prompt": spec.prompt,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
        "ignore_eos": spec.ignore_eos,
    }
    t0 = time.monotonic()
    ttft = None
    chunks = 0
    tokens = None
    try:
        async with asyncio.timeout(spec.request_timeout_s):
            async with client.stream(
                "POST", spec.base_url.rstrip("/") + "/v1/completions", json=payload
            ) as resp:
                if resp.status_code != 200:
                    body = (await resp.aread())[:300].decode(errors="replace")
                    return RequestResult(
                        False, None, time.monotonic() - t0, None, 0, f"HTTP {resp.status_code}: {body}"
                    )
                async for line in resp.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    event = json.loads(data)
                    if event.get("choices") and event["choices"][0].get("text") is not None:
                        chunks += 1
                        if ttft is None:
                            ttft = time.monotonic() - t0
                    if event.get("usage"):
                        tokens = event["usage"].get("completion_tokens")
    except (httpx.HTTPError, TimeoutError, ValueError) as exc:
        return RequestResult(
            False, ttft, time.monotonic() - t0, tokens, chunks, f"{type(exc).__name__}: {exc}"
        )
    return RequestResult(
        tokens is not None,
        ttft,
        time.monotonic() - t0,
        tokens,
        chunks,
        None if tokens is not None else "no usage in the stream",
    )


async def run_load(
    spec: LoadSpec, stop: threading.Event | None = None, abort: threading.Event | None = None
) -> LoadResult:
    """Run the closed loop. ``stop`` (set from another thread) sends no new request and lets those in
    flight finish (each bounded by ``request_timeout_s``); ``abort`` also cancels those in flight (the
    client disconnects, so the server aborts them); they are not counted in the result."""
    result = LoadResult(started=time.monotonic(), ended=0.0)
    deadline = result.started + spec.duration_s
    sent = 0
    limits = httpx.Limits(max_connections=spec.concurrency + 2, max_keepalive_connections=spec.concurrency)
    async with httpx.AsyncClient(
        trust_env=False, limits=limits, timeout=httpx.Timeout(spec.request_timeout_s, connect=5.0)
    ) as client:

        async def worker(index: int) -> None:
            nonlocal sent
            rng = random.Random(spec.seed * 1000 + index)
            start_at = result.started + index * spec.stagger_s
            while time.monotonic() < start_at and not (stop and stop.is_set()):
                await asyncio.sleep(min(0.05, start_at - time.monotonic()))
            while time.monotonic() < deadline and sent < spec.max_requests and not (stop and stop.is_set()):
                sent += 1
                result.results.append(await _one(client, spec, spec.tokens_for(rng)))

        workers = [asyncio.create_task(worker(i)) for i in range(spec.concurrency)]
        while not all(w.done() for w in workers):
            if abort is not None and abort.is_set():
                for w in workers:
                    w.cancel()
            await asyncio.wait(workers, timeout=0.1)
        for w in workers:
            if not w.cancelled() and w.exception() is not None:
                raise w.exception()  # type: ignore[misc]
    result.ended = time.monotonic()
    return result


class LoadThread:
    """``run_load`` in a background thread: ``start()``, then ``join()`` (or ``stop()``) for the result."""

    def __init__(self, spec: LoadSpec) -> None:
        self.spec = spec
        self._stop = threading.Event()
        self._abort = threading.Event()
        self._result: LoadResult | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="loadgen", daemon=True)

    def _main(self) -> None:
        try:
            self._result = asyncio.run(run_load(self.spec, self._stop, self._abort))
        except BaseException as exc:  # reported by join()
            self._error = exc

    def start(self) -> LoadThread:
        self._thread.start()
        return self

    def join(self, timeout: float | None = None) -> LoadResult:
        self._thread.join(
            timeout if timeout is not None else self.spec.duration_s + self.spec.request_timeout_s + 10
        )
        if self._thread.is_alive():
            raise TimeoutError("load generator did not finish")
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def stop(self, timeout: float | None = None) -> LoadResult:
        """No new requests; wait for those in flight."""
        self._stop.set()
        return self.join(timeout)

    def abort(self, timeout: float = 30.0) -> LoadResult:
        """No new requests; disconnect those in flight (the server aborts them)."""
        self._stop.set()
        self._abort.set()
        return self.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="loadgen", description="Concurrent streaming completions (closed loop).")
    p.add_argument("base_url")
    p.add_argument("--model", required=True)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--max-requests", type=int, default=10_000)
    p.add_argument("--max-tokens", type=int, default=32)
    args = p.parse_args(argv)
    spec = LoadSpec(
        args.base_url, args.model, args.concurrency, args.duration, args.max_requests, args.max_tokens
    )
    result = asyncio.run(run_load(spec))
    print(result.summary())
    for err in sorted(set(result.errors))[:5]:
        print("error:", err)
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
