"""In-process, real parts (AgentRuntime, a real simulated engine): the engine's latest successful Reading
reaches /metrics through the API's bridge, is the one the snapshot's stats come from, and is dropped
when the engine's process goes away (a new process's counters start over)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from agents.apithread import LoopBridge
from agents.config import load_agent_config
from agents.exporter import make_registry, render
from agents.runtime import AgentRuntime
from tests.support.agentproc import free_port, sim, write_config

pytestmark = pytest.mark.timeout(90)


async def _until(cond, timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        await asyncio.sleep(step)
    return cond()


async def test_the_latest_reading_reaches_the_exporter_and_goes_with_the_process(tmp_path: Path) -> None:
    engines = [
        {
            "id": "e",
            "kind": "sglang",
            "model": "m",
            "port": free_port(),
            "command": sim("sglang"),
            "args": ["--load", "4"],
        }
    ]
    rt = AgentRuntime(
        load_agent_config(write_config(tmp_path, free_port(), engines, agent={"interval_s": 0.5}))
    )
    bridge = LoopBridge(rt)
    sup = rt.supervisors["e"]
    try:
        assert bridge.engine_exports()["e"].reading is None  # nothing scraped yet
        await sup.start()
        assert await _until(lambda: sup.state == "ready", timeout=30), sup.events
        for _ in range(60):
            snap = await rt.collector.tick()
            reading = bridge.engine_exports()["e"].reading
            if (
                reading is not None
                and reading.histograms["e2e"] is not None
                and snap.engine("e").stats is not None
            ):
                break
            await asyncio.sleep(0.5)
        assert reading is not None and reading.histograms["e2e"] is not None
        e = snap.engine("e")
        assert e.stats.requests_running == reading.gauges["requests_running"]  # the stats' own scrape
        text = render(make_registry(rt.latest, bridge.engine_exports)).decode()
        assert (
            f'llmconsole_engine_e2e_seconds_count{{engine="e",host="{snap.host}",kind="sglang",model="m"}} {reading.histograms["e2e"].count}'
            in text
        )

        await sup.stop()
        await rt.collector.tick()
        assert sup.pid is None and bridge.engine_exports()["e"].reading is None
        assert (
            "llmconsole_engine_e2e_seconds_count"
            not in render(make_registry(rt.latest, bridge.engine_exports)).decode()
        )
    finally:
        await rt.shutdown(stop_engines=True)
