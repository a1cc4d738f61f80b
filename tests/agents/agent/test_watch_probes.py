"""In-process, real parts (AgentRuntime, real simulated engines): the watch's canary goes through the agent's
one keep-alive client and reports a token's arrival or a clear error; each watch owns its exposure audit and
its cadence (due at once, then only when the tree or the state changes, or the period passes)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from agents.config import load_agent_config
from agents.runtime import AgentRuntime
from tests.support.agentproc import free_port, sim, write_config

pytestmark = pytest.mark.timeout(90)


async def _until(cond, timeout: float, step: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        await asyncio.sleep(step)
    return cond()


def _engine(eid: str, model: str, **extra) -> dict:
    return {"id": eid, "kind": "vllm", "model": model, "port": free_port(), "command": sim("vllm"), **extra}


async def test_canary_through_the_keepalive_client_and_its_clear_error(tmp_path: Path) -> None:
    # "bad" serves model "other" but is asked for "wanted": the engine answers 404 to the canary.
    engines = [_engine("good", "m"), _engine("bad", "wanted", args=["--served-model-name", "other"])]
    config = write_config(tmp_path, free_port(), engines, agent={"interval_s": 0.5, "canary_interval_s": 1.0})
    rt = AgentRuntime(load_agent_config(config))
    try:
        for sup in rt.supervisors.values():
            await sup.start()
        assert await _until(
            lambda: all(s.state in ("ready", "degraded") for s in rt.supervisors.values()), 30
        )
        snap = None
        for _ in range(40):
            snap = await rt.collector.tick()
            if all(e.canary is not None for e in snap.engines):
                break
            await asyncio.sleep(0.3)
        good, bad = snap.engine("good"), snap.engine("bad")
        assert good.canary is not None and good.canary.ok and good.canary.error is None
        assert good.canary.ttft_s is not None and 0 < good.canary.ttft_s < 5
        assert bad.canary is not None and not bad.canary.ok and bad.canary.ttft_s is None
        assert bad.canary.error.startswith("HTTP 404: ")
        # scrape, health and canaries of both engines shared kept-alive connections: a handful, not one a request
        assert rt.http.connections_opened <= 8
    finally:
        await rt.shutdown(stop_engines=True)


async def test_each_watch_owns_its_exposure_audit_and_cadence(tmp_path: Path) -> None:
    config = write_config(
        tmp_path, free_port(), [_engine("e", "m", args=["--trust-remote-code"])], agent={"interval_s": 0.5}
    )
    rt = AgentRuntime(load_agent_config(config))
    watch, sup = rt.watches["e"], rt.supervisors["e"]
    try:
        now = time.monotonic()
        first = watch.audit_job(now)
        assert first is not None  # never audited: due
        first()  # the blocking read, as the collector's worker thread runs it
        assert watch.audit_job(now + 1) is None  # same tree, same state, within the period
        assert watch.audit_job(now + watch.exposure.every_s) is not None  # the period passed
        await sup.start()
        assert await _until(lambda: sup.state == "ready" and sup.pid in sup.pids, 30), sup.events
        due = watch.audit_job(time.monotonic())
        assert due is not None  # a new process tree and state: audited again at once
        await asyncio.to_thread(due)
        assert any(port == rt.config.engines[0].port for _, _, port, _ in watch.exposure.listeners)
        snap = await rt.collector.tick()
        codes = [a.code for a in snap.engine("e").alerts]
        assert "DANGEROUS_FLAG" in codes  # the watch adds its exposure findings to its own snapshot
    finally:
        await rt.shutdown(stop_engines=True)
