"""Probe safety (issue 14 §8), real parts in process (AgentRuntime, a real simulated engine under load): while
the engine's token counters advance, a failing /health never makes it hung (nor restarted); the decision is
recorded once in its state history as ``health_failing_but_progressing``. Once the counters stop, it is
judged as before."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import psutil
import pytest

from agents.config import load_agent_config
from agents.runtime import AgentRuntime
from tests.support.agentproc import free_port, sim, write_config

pytestmark = pytest.mark.timeout(90)


class _FailingHealth:
    """The engine's own adapter, with /health pointed at a path the engine answers 404 to (the failing health
    check of an engine under load: SGLang's health timeout in a long prefill, TGI's 503 on a full queue)."""

    def __init__(self, adapter) -> None:
        self._adapter = adapter

    def __getattr__(self, name: str):
        return getattr(self._adapter, name)

    def health_url(self, spec) -> str:
        return self._adapter.health_url(spec).replace("/health", "/no-such-health")


async def test_failing_health_while_tokens_advance_is_never_hung(tmp_path: Path) -> None:
    engines = [
        {
            "id": "busy",
            "kind": "vllm",
            "model": "m",
            "port": free_port(),
            "command": sim("vllm"),
            "args": ["--worker", "--load", "8"],
        }
    ]
    config = write_config(
        tmp_path, free_port(), engines, agent={"interval_s": 0.5}, thresholds={"hung_after_s": 2.0}
    )
    rt = AgentRuntime(load_agent_config(config))
    sup, watch = rt.supervisors["busy"], rt.watches["busy"]
    worker = None
    try:
        await sup.start()
        deadline = time.monotonic() + 30
        while sup.state != "ready" and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert sup.state == "ready"
        watch.adapter = _FailingHealth(watch.adapter)
        states, codes = set(), set()
        for _ in range(16):  # 8 s of failing health, well over hung_after_s
            snap = (await rt.collector.tick()).engine("busy")
            states.add(snap.state)
            codes |= {a.code for a in snap.alerts}
            await asyncio.sleep(0.5)
        assert snap.health is not None and snap.health.http_status == 404
        assert states <= {"ready", "degraded"} and "hung" not in states and "ENGINE_HUNG" not in codes
        assert sup.restarts == 0 and snap.stats is not None and (snap.stats.generation_tokens_per_s or 0) > 0
        decided = [e for e in sup.events if e["reason"].startswith("health_failing_but_progressing")]
        assert len(decided) == 1 and decided[0]["state"] == "degraded", sup.events
        assert "not hung, not restarted" in decided[0]["reason"]

        # the counters stop (worker SIGSTOPped): the same failing health no longer excuses it
        worker = psutil.Process(sup.pid).children()[0].pid
        os.kill(worker, signal.SIGSTOP)
        for _ in range(20):
            snap = (await rt.collector.tick()).engine("busy")
            if snap.state == "hung":
                break
            await asyncio.sleep(0.5)
        assert snap.state == "hung" and "ENGINE_HUNG" in {a.code for a in snap.alerts}
    finally:
        if worker is not None:
            os.kill(worker, signal.SIGCONT)
        await rt.shutdown(stop_engines=True)
