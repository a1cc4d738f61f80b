"""AgentRuntime.set_event_sink (issue 10 §8): the agent's own automatic decisions reach one sink as
(action, engine_id, result), from real simulated engines supervised in this process. Refusals made while
the runtime is built are delivered once a sink is set; a sink that raises never stops supervision."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agents.config import load_agent_config
from agents.runtime import AgentRuntime
from tests.support.agentproc import free_port, marker_pids, sim, write_config

pytestmark = pytest.mark.timeout(120)


async def _until(pred: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)


def _config(tmp: Path):
    (tmp / "models" / "m").mkdir(parents=True)
    path = write_config(
        tmp,
        free_port(),
        [
            {
                "id": "e1",
                "kind": "vllm",
                "model": str(tmp / "models" / "m"),
                "port": free_port(),
                "command": sim("vllm"),
            },
            {"id": "outside", "kind": "vllm", "model": "/etc", "port": free_port(), "command": sim("vllm")},
        ],
        agent={"model_roots": [str(tmp / "models")]},
    )
    return load_agent_config(path)


async def test_runtime_reports_refusal_backoff_restart_and_adoption(tmp_path: Path, caplog) -> None:
    config = _config(tmp_path)
    events: list[tuple[str, str, str]] = []
    runtimes: list[AgentRuntime] = []
    try:
        rt = AgentRuntime(config)
        runtimes.append(rt)
        rt.set_event_sink(lambda *e: events.append(e))  # the refusal made while building is delivered now
        assert [e[:2] for e in events] == [("refuse", "outside")]
        assert "model_roots" in events[0][2] and events[0][2].startswith("refused by launch policy: ")
        await rt.start()
        sup = rt.supervisors["e1"]
        await _until(lambda: sup.state == "ready")
        first = sup.pid
        os.kill(first, signal.SIGKILL)
        await _until(lambda: sup.state == "ready" and sup.pid not in (None, first))
        mine = [e for e in events if e[1] == "e1"]
        assert [e[0] for e in mine] == ["backoff", "restart"], events
        assert mine[0][2].startswith("next start in 0.5 s after 1 crash: killed by SIGKILL unexpectedly")
        assert mine[1][2].startswith("automatic: killed by SIGKILL unexpectedly")
        assert mine[1][2].endswith(f"; relaunched as PID {sup.pid}")
        running = sup.pid
        await rt.shutdown(stop_engines=False)

        # a new runtime whose sink raises: adoption and later restarts still happen, the failures are logged
        caplog.set_level(logging.ERROR, logger="agents.runtime")

        def broken(*_e: str) -> None:
            raise RuntimeError("audit log is gone")

        rt2 = AgentRuntime(config)
        runtimes.append(rt2)
        rt2.set_event_sink(broken)
        await rt2.start()
        sup2 = rt2.supervisors["e1"]
        await _until(lambda: sup2.state == "ready")
        assert sup2.adopted and sup2.pid == running and sup2.restarts == 1
        assert rt2.sink_errors == 2  # the refusal of "outside" and the adoption of e1
        os.kill(running, signal.SIGKILL)
        await _until(lambda: sup2.state == "ready" and sup2.pid not in (None, running))
        assert sup2.restarts == 2 and rt2.sink_errors == 4
        assert sum("event sink failed" in r.getMessage() for r in caplog.records) == 4
        rt2.set_event_sink(lambda *e: events.append(e))
        assert events[-1][0] == "restart"  # nothing was queued while a (broken) sink was set
        adopted = [e for e in events if e[0] == "adopt"]
        assert adopted == []  # the adoption went to the broken sink, not replayed
    finally:
        for rt in runtimes:
            await rt.shutdown(stop_engines=True)
        for pid in marker_pids(tmp_path / "state"):
            os.kill(pid, signal.SIGKILL)


async def test_adoption_is_reported(tmp_path: Path) -> None:
    config = _config(tmp_path)
    events: list[tuple[str, str, str]] = []
    runtimes: list[AgentRuntime] = []
    try:
        rt = AgentRuntime(config)
        runtimes.append(rt)
        await rt.start()
        await _until(lambda: rt.supervisors["e1"].state == "ready")
        pid = rt.supervisors["e1"].pid
        await rt.shutdown(stop_engines=False)
        rt2 = AgentRuntime(config)
        runtimes.append(rt2)
        rt2.set_event_sink(lambda *e: events.append(e))
        await rt2.start()
        await _until(lambda: any(e[0] == "adopt" for e in events))
        adopt = next(e for e in events if e[0] == "adopt")
        assert adopt[1] == "e1" and adopt[2].startswith(f"adopted PID {pid} from the state file")
    finally:
        for rt in runtimes:
            await rt.shutdown(stop_engines=True)
        for pid in marker_pids(tmp_path / "state"):
            os.kill(pid, signal.SIGKILL)
