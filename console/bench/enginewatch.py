"""The engine's own view of a run, from its /metrics: counter deltas and gauge peaks.

The exposition is parsed with the project's parser (agents/metrics/parse.py) and read through the
engine's adapter (agents/engines/), so vLLM, SGLang and TGI give the same logical names. Scraped once
before the run, every ``interval_s`` during it (for the gauge peaks) and once after:

- ``preemptions`` (SGLang: retractions), ``prompt_tokens``, ``generation_tokens``, ``request_errors``,
  ``prefix_cache_hits`` / ``prefix_cache_queries``: the counter's increase over the run;
- ``prefix_cache_hit_rate``: hits / queries over the run (tokens for vLLM and SGLang);
- ``max_waiting``, ``max_running``, ``max_kv_cache_usage`` (0–1): the highest value seen.

A value the engine does not expose, or that cannot be computed, is None with its reason in
``null_reasons``. A scrape that fails is counted and its error kept; the benchmark runs on regardless.
Each scrape is one bounded GET (a total deadline of ``timeout_s`` and at most ``MAX_BYTES``, identity
encoding) on the benchmark's own HTTP client (console/bench/http.py), so the console needs no agent-side
HTTP machinery.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from agents.engines import ADAPTERS, all_wanted, detect_kind, get_adapter
from agents.engines.base import SIMULATED_MARKER, Reading
from agents.metrics.parse import parse
from console.bench.http import Client, HttpError, split_url

COUNTERS = (
    "preemptions",
    "prompt_tokens",
    "generation_tokens",
    "request_errors",
    "prefix_cache_hits",
    "prefix_cache_queries",
)
PEAKS = {
    "max_waiting": "requests_waiting",
    "max_running": "requests_running",
    "max_kv_cache_usage": "kv_cache_usage",
}
MAX_BYTES = 16 * 1024 * 1024


class EngineWatch:
    """Scrapes one engine's /metrics around and during a run."""

    def __init__(
        self, url: str, kind: str | None = None, interval_s: float = 1.0, timeout_s: float = 5.0
    ) -> None:
        self.url, self.kind, self.interval_s, self.timeout_s = url, kind, interval_s, timeout_s
        self.client: Client | None = None
        self.bad_url: str | None = None
        try:
            origin, self.path = split_url(url)
            self.client = Client(origin, {"Accept-Encoding": "identity"})  # no compressed bomb
        except ValueError as exc:
            self.bad_url = str(exc)
        self.first: Reading | None = None
        self.last: Reading | None = None
        self.peaks: dict[str, float] = {}
        self.scrapes = 0
        self.errors: list[str] = []
        self.simulated = False
        self._task: asyncio.Task[None] | None = None
        self._started = 0.0

    async def _get(self) -> bytes | None:
        """The body of one bounded GET of the metrics URL, or None with the error kept."""
        if self.client is None:
            self.errors.append(self.bad_url or "no metrics URL")
            return None
        try:
            async with asyncio.timeout(self.timeout_s), self.client.request("GET", self.path) as resp:
                if resp.status != 200:
                    self.errors.append(f"HTTP {resp.status}")
                    return None
                return await resp.read(MAX_BYTES)
        except TimeoutError:
            self.errors.append(f"no complete response within {self.timeout_s:g}s")
        except HttpError as exc:
            where = "connection failed" if exc.kind == "connect" else "bad HTTP response"
            self.errors.append(f"{where}: {exc}")
        return None

    async def _scrape(self) -> Reading | None:
        body = await self._get()
        if body is None:
            return None
        text = body.decode("utf-8", "replace")
        if self.kind is None:
            self.kind = detect_kind(parse(text, all_wanted()))
            if self.kind is None:
                self.errors.append("not the metrics of a vLLM, SGLang or TGI engine")
                return None
        adapter = get_adapter(self.kind)
        reading = adapter.read(parse(text, adapter.wanted()))
        self.scrapes += 1
        self.simulated = self.simulated or SIMULATED_MARKER in text
        for key, gauge in PEAKS.items():
            value = reading.gauges.get(gauge)
            if value is not None:
                self.peaks[key] = max(value, self.peaks.get(key, value))
        return reading

    async def begin(self) -> None:
        """Scrape before the run and start sampling the gauges."""
        self._started = time.monotonic()
        self.first = await self._scrape()
        self._task = asyncio.create_task(self._sample())

    async def _sample(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            reading = await self._scrape()
            if self.first is None:
                self.first = reading

    async def end(self) -> dict[str, Any]:
        """Stop sampling, scrape once more and return the run's engine view."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.last = await self._scrape()
        if self.client is not None:
            await self.client.aclose()
        return self.report()

    def report(self) -> dict[str, Any]:
        reasons: dict[str, str] = {}
        unsupported = ADAPTERS[self.kind].unsupported if self.kind in ADAPTERS else frozenset()
        out: dict[str, Any] = {
            "url": self.url,
            "engine": self.kind,
            "simulated": self.simulated,
            "scrapes": self.scrapes,
            "scrape_errors": len(self.errors),
            "last_error": self.errors[-1] if self.errors else None,
        }
        first, last = self.first, self.last
        for name in COUNTERS:
            out[name] = None
            if name in unsupported:
                reasons[name] = "not exposed by this engine"
            elif first is None or last is None or first is last:
                reasons[name] = "needs a scrape before and after the run"
            elif first.counters.get(name) is None or last.counters.get(name) is None:
                reasons[name] = "not in the engine's metrics"
            elif last.counters[name] < first.counters[name]:  # type: ignore[operator]
                reasons[name] = "counter went backwards during the run (engine restarted?)"
            else:
                out[name] = last.counters[name] - first.counters[name]  # type: ignore[operator]
        hits, queries = out["prefix_cache_hits"], out["prefix_cache_queries"]
        out["prefix_cache_hit_rate"] = None
        if hits is None or queries is None:
            reasons["prefix_cache_hit_rate"] = reasons.get("prefix_cache_hits") or reasons.get(
                "prefix_cache_queries", ""
            )
        elif queries <= 0:
            reasons["prefix_cache_hit_rate"] = "no prefix-cache lookups during the run"
        else:
            out["prefix_cache_hit_rate"] = hits / queries
        for key, gauge in PEAKS.items():
            out[key] = self.peaks.get(key)
            if out[key] is None:
                reasons[key] = (
                    "not exposed by this engine" if gauge in unsupported else "not in the engine's metrics"
                )
        if self.scrapes == 0:
            reasons = dict.fromkeys(
                reasons, f"no scrape succeeded: {self.errors[-1] if self.errors else '?'}"
            )
        out["null_reasons"] = reasons
        return out
