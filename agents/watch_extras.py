"""The per-engine parts of the silent-failure rules beyond :mod:`agents.alerts`, for one EngineWatch.

:class:`EngineExtras` owns, for one engine: a fresh set of the pure rules of :mod:`agents.silent`
(admission stall, GPU wedge, rank divergence, front-end hang, latency drift, KV exhaustion ETA); the
golden correctness canary (:mod:`agents.golden`), run every ``golden_interval_s`` while the engine
serves, one run at a time, its judge's reference forgotten when the engine's process changes; and the
SLO burn tracker (:mod:`agents.slo`) fed from every scrape's cumulative TTFT histogram — or, for an
engine without one (TGI), from the agent's own canaries. All of them are evaluated inside
``EngineRules`` (hysteresis, ``since``) through its ``extra_rules``.
"""

from __future__ import annotations

import asyncio
import contextlib
from functools import partial
from typing import Any

from agents.alerts import Rule
from agents.config import AgentConfig, EngineConfig
from agents.engines.base import EngineAdapter, LaunchSpec, Reading
from agents.golden import GoldenJudge, GoldenRule, http1_post, run_golden
from agents.http1 import Http1Client
from agents.schema import Canary, SloStatus, rfc3339
from agents.silent import default_rules
from agents.slo import BurnTracker, SloRule, source_for

GOLDEN_TIMEOUT_S = 30.0  # two short temperature-0 completions


class EngineExtras:
    def __init__(
        self,
        config: EngineConfig,
        agent: AgentConfig,
        adapter: EngineAdapter,
        spec: LaunchSpec,
        http: Http1Client,
    ) -> None:
        self.config, self.adapter, self.spec, self.http = config, adapter, spec, http
        self.golden = config.golden
        self.judge = GoldenJudge(config.golden.expect) if config.golden is not None else None
        self.tracker = (
            BurnTracker(agent.slo, source=source_for(adapter.unsupported)) if agent.slo is not None else None
        )
        self._slo_rule = SloRule(self.tracker) if self.tracker is not None else None
        self.verdict: dict[str, Any] | None = (
            None  # the golden canary's latest verdict (EngineObservation.golden)
        )
        self._golden_task: asyncio.Task[None] | None = None
        self._golden_next = 0.0
        self._pid: int | None = None

    def rules(self) -> tuple[Rule, ...]:
        extra: list[Any] = list(default_rules())
        if self.judge is not None:
            extra.append(GoldenRule())
        if self._slo_rule is not None:
            extra.append(self._slo_rule)
        return tuple(extra)

    # --- inputs ---------------------------------------------------------------------------------------
    def on_scrape(self, t: float, reading: Reading) -> None:
        if self.tracker is not None and self.tracker.source == "histogram":
            self.tracker.add(t, reading.histograms.get("ttft"))

    def on_canary(self, t: float, canary: Canary) -> None:
        if self.tracker is not None and self.tracker.source == "canary":
            self.tracker.add_canary(t, canary.ttft_s, bool(canary.ok))

    def slo_status(self) -> SloStatus | None:
        return None if self._slo_rule is None else self._slo_rule.slo

    # --- the golden canary ----------------------------------------------------------------------------
    def drive_golden(self, now: float, serving: bool, pid: int | None) -> None:
        """Start a golden run when one is due while the engine serves; forget the reference (and the
        verdict) when it stops serving or its process changes."""
        if self.judge is None or self.golden is None:
            return
        if not serving or pid != self._pid:
            self._pid = pid if serving else None
            self._cancel_golden()
            self.judge.reset()
            self.verdict = None
            self._golden_next = now  # the first answer after ready becomes the reference
            if not serving:
                return
        if self._golden_task is None and now >= self._golden_next:
            self._golden_next = now + self.config.golden_interval_s
            self._golden_task = asyncio.create_task(self._run_golden(), name=f"golden {self.config.id}")

    async def _run_golden(self) -> None:
        assert self.judge is not None and self.golden is not None
        try:
            first, second, error = await run_golden(
                partial(http1_post, self.http),
                self.spec.served_model_name or self.spec.model,
                self.golden,
                url=self.adapter.completions_url(self.spec),
                timeout_s=GOLDEN_TIMEOUT_S,
            )
            self.verdict = {**self.judge.judge(first, second, error), "at": rfc3339()}
        finally:
            self._golden_task = None

    def _cancel_golden(self) -> None:
        if self._golden_task is not None:
            self._golden_task.cancel()
        self._golden_task = None

    async def close(self) -> None:
        task = self._golden_task
        self._cancel_golden()
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


__all__ = ["EngineExtras"]
