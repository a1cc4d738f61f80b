"""Load shapes inside hard bounds: a fixed concurrency (closed loop) or a request rate (open loop).

- **Concurrency C** (no rate): C workers, each sending its next request when the previous one ends.
- **Rate R** with ``burstiness`` B: arrivals with gamma-distributed gaps (shape B, mean 1/R; B = 1 is a
  Poisson process, B < 1 burstier, B > 1 smoother — ``vllm bench serve``'s ``--burstiness``), the first
  at once; with a concurrency too, a request waits for a free slot before it is sent (as vLLM's
  ``--max-concurrency``), and its timings start when it is sent.

Every run is bounded: no request is sent after ``max_requests`` were sent or ``duration_s`` has passed;
requests still running ``drain_s`` after that are cancelled (they are *incomplete*); each request has its
own ``request_timeout_s``. Setting ``stop`` (Ctrl-C) cancels everything at once; what finished is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from console.bench.http import Client
from console.bench.request import RequestRecord, send
from console.bench.workload import Prompt, RequestFormat


@dataclass(frozen=True, slots=True)
class Shape:
    concurrency: int | None = None  # closed-loop workers; with a rate, the cap on requests in flight
    rate: float | None = None  # requests per second (open loop); None = closed loop
    burstiness: float = 1.0

    def describe(self) -> dict[str, Any]:
        return {
            "mode": "rate" if self.rate is not None else "concurrency",
            "request_rate": self.rate,
            "max_concurrency": self.concurrency,
            "burstiness": self.burstiness if self.rate else None,
        }

    def label(self) -> str:
        if self.rate is None:
            return f"concurrency {self.concurrency}"
        cap = f", max {self.concurrency} in flight" if self.concurrency else ""
        burst = f", burstiness {self.burstiness:g}" if self.burstiness != 1.0 else ""
        return f"rate {self.rate:g}/s{burst}{cap}"


@dataclass(frozen=True, slots=True)
class Bounds:
    max_requests: int = 1000
    duration_s: float = 300.0
    drain_s: float = 30.0
    request_timeout_s: float = 300.0

    def describe(self) -> dict[str, Any]:
        return {
            "max_requests": self.max_requests,
            "duration_s": self.duration_s,
            "drain_s": self.drain_s,
            "request_timeout_s": self.request_timeout_s,
        }


@dataclass(slots=True)
class Live:
    """What a run has done so far (read by the progress line)."""

    shape: Shape
    started: float
    records: list[RequestRecord] = field(default_factory=list)
    sent: int = 0
    in_flight: int = 0


@dataclass(slots=True)
class Outcome:
    records: list[RequestRecord]
    started: float  # perf_counter when the first request could go
    ended: float  # when the last request ended (or was cancelled)
    stopped_by: str  # "max_requests" | "duration" | "interrupt"
    cpu_s: float  # CPU seconds of this process during the run (the generator's cost)

    @property
    def interrupted(self) -> bool:
        return self.stopped_by == "interrupt"


class Runner:
    """One run of one shape; ``run`` never raises for a request's failure."""

    def __init__(
        self,
        client: Client,
        fmt: RequestFormat,
        prompts: Iterator[Prompt],
        shape: Shape,
        bounds: Bounds,
        stop: asyncio.Event,
        seed: int = 0,
    ) -> None:
        self.client, self.fmt, self.prompts = client, fmt, prompts
        self.shape, self.bounds, self.stop = shape, bounds, stop
        self.rng = random.Random(seed)
        self.live = Live(shape, time.perf_counter())
        self._limit_hit = False
        self._deadline = 0.0

    def _may_send(self) -> bool:
        if self.stop.is_set():
            return False
        if self.live.sent >= self.bounds.max_requests:
            self._limit_hit = True
            return False
        return time.perf_counter() < self._deadline

    async def _one(self) -> None:
        live = self.live
        index = live.sent
        live.sent += 1
        prompt = next(self.prompts)
        live.in_flight += 1
        try:
            await send(
                self.client,
                self.fmt.path,
                self.fmt.body(prompt),
                index,
                self.bounds.request_timeout_s,
                live.records,
                prompt.est_tokens,
            )
        finally:
            live.in_flight -= 1

    async def _worker(self) -> None:
        while self._may_send():
            await self._one()

    async def _dispatch(self, tasks: set[asyncio.Task[None]]) -> None:
        rate, shape = self.shape.rate or 1.0, self.shape
        slots = asyncio.Semaphore(shape.concurrency) if shape.concurrency else None
        due = time.perf_counter()
        while True:
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if slots is not None:
                await slots.acquire()
            if not self._may_send():
                return
            task = asyncio.create_task(self._one())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            if slots is not None:
                task.add_done_callback(lambda _t: slots.release())
            due += self.rng.gammavariate(shape.burstiness, 1.0 / (rate * shape.burstiness))

    async def run(self, progress: Callable[[Live], Awaitable[None]] | None = None) -> Outcome:
        cpu0 = time.process_time()
        live = self.live
        live.started = time.perf_counter()
        self._deadline = live.started + self.bounds.duration_s
        tasks: set[asyncio.Task[None]] = set()
        if self.shape.rate is None:
            senders = [asyncio.create_task(self._worker()) for _ in range(self.shape.concurrency or 1)]
        else:
            senders = [asyncio.create_task(self._dispatch(tasks))]
        stop_wait = asyncio.create_task(self.stop.wait())
        ticker = asyncio.create_task(progress(live)) if progress is not None else None
        try:
            stopped_by = await self._supervise(senders, tasks, stop_wait)
        finally:
            for t in (stop_wait, ticker):
                if t is not None:
                    t.cancel()
            leftovers = [*senders, *tasks]
            for t in leftovers:
                t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*leftovers, return_exceptions=True)
            if ticker is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await ticker
        records = sorted(live.records, key=lambda r: r.index)
        ended = max((r.end for r in records if r.end is not None), default=time.perf_counter())
        return Outcome(records, live.started, ended, stopped_by, time.process_time() - cpu0)

    async def _supervise(
        self, senders: list[asyncio.Task[None]], tasks: set[asyncio.Task[None]], stop_wait: asyncio.Task[bool]
    ) -> str:
        """Wait for the senders to finish (bounds reached), then for the requests in flight, up to the
        drain deadline; returns why the run stopped."""
        pending = set(senders)
        while pending and time.perf_counter() < self._deadline:
            left = self._deadline - time.perf_counter()
            _, pending = await asyncio.wait(
                pending | {stop_wait}, timeout=left, return_when=asyncio.FIRST_COMPLETED
            )
            pending.discard(stop_wait)
            if self.stop.is_set():
                return "interrupt"
        drain_until = time.perf_counter() + self.bounds.drain_s  # nothing new is sent from here on
        if self.shape.rate is not None:
            for t in senders:
                t.cancel()  # the dispatcher only sleeps until its next arrival: it has no request of its own
            senders = []
        in_flight = {t for t in senders if not t.done()} | {t for t in tasks if not t.done()}
        while in_flight:
            left = drain_until - time.perf_counter()
            if left <= 0:
                break
            _, in_flight = await asyncio.wait(
                in_flight | {stop_wait}, timeout=left, return_when=asyncio.FIRST_COMPLETED
            )
            in_flight.discard(stop_wait)
            if self.stop.is_set():
                return "interrupt"
        return "max_requests" if self._limit_hit else "duration"


def check_shape(shape: Shape) -> None:
    """ValueError (one line) for a shape that cannot run."""
    if shape.rate is None and (shape.concurrency is None or shape.concurrency < 1):
        raise ValueError("--concurrency must be 1 or more")
    if shape.rate is not None and not (math.isfinite(shape.rate) and shape.rate > 0):
        raise ValueError(f"--rate must be a positive number of requests per second, got {shape.rate:g}")
    if shape.concurrency is not None and shape.concurrency < 1:
        raise ValueError(f"--concurrency must be 1 or more, got {shape.concurrency}")
    if not (math.isfinite(shape.burstiness) and shape.burstiness > 0):
        raise ValueError(f"--burstiness must be greater than 0, got {shape.burstiness:g}")


def check_bounds(bounds: Bounds) -> None:
    if bounds.max_requests < 1:
        raise ValueError(f"--max-requests must be 1 or more, got {bounds.max_requests}")
    for name, value in (("--duration", bounds.duration_s), ("--request-timeout", bounds.request_timeout_s)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive number of seconds, got {value:g}")
    if not (math.isfinite(bounds.drain_s) and bounds.drain_s >= 0):
        raise ValueError(f"--drain must be 0 or more seconds, got {bounds.drain_s:g}")
