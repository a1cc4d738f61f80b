"""Supervising the simulated engine (agents/sim): SIGKILL of the API server must not leak its worker."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import httpx
import pytest

from agents.supervisor.proctree import read_marker, read_stat

pytest.importorskip("agents.sim.worker")


import tests.support.procs.supervisor_testkit as K

pytestmark = pytest.mark.timeout(90)


def _workers(marker: str) -> set[int]:
    """SIM::Worker processes carrying this launch's marker (found independently of the supervisor)."""
    out = set()
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                comm = Path(f"/proc/{name}/comm").read_text().strip()
            except OSError:
                continue
            if comm == "SIM::Worker" and read_marker(int(name)) == marker:
                out.add(int(name))
    return out


async def test_sigkill_sim_engine_kills_its_worker_and_restarts(tmp_path: Path) -> None:
    port = K.free_port()

    async def healthy() -> bool:
        async with httpx.AsyncClient(timeout=1.0) as client:
            try:
                return (await client.get(f"http://127.0.0.1:{port}/health")).status_code == 200
            except httpx.HTTPError:
                return False

    async with K.kit(tmp_path) as k:
        argv = (sys.executable, "-m", "agents.sim", "--dialect", "vllm", "--port", str(port), "--worker")
        sup = k.make(
            argv,
            port,
            is_ready=healthy,
            tick_s=0.1,
            ready_poll_s=0.1,
            policy=K.fast_policy(stop_timeout_s=2.0),
        )
        await sup.start()
        await K.wait_state(sup, "ready", timeout=30)
        marker = sup.marker
        assert await K.wait_until(lambda: len(_workers(marker)) == 1, timeout=10)
        (worker,) = _workers(marker)
        assert read_stat(worker).ppid == sup.pid
        assert await K.wait_until(lambda: worker in sup.pids)
        k.extra_pids.append(worker)
        api = sup.pid
        os.kill(api, signal.SIGKILL)  # the worker would survive this on its own (as vLLM's do)
        assert await K.wait_until(lambda: sup.restarts >= 1 or sup.state == "backoff", timeout=10)
        assert not K.alive(worker) and not K.alive(api)
        await K.wait_state(sup, "ready", timeout=30)
        assert sup.restarts == 1 and sup.pid != api
        assert await K.wait_until(lambda: len(_workers(sup.marker)) == 1, timeout=10)
        assert any(line.startswith("llmconsole sim-engine: SIMULATED") for line in sup.log_tail(200))
        await sup.stop()
        assert sup.state == "stopped" and _workers(sup.marker) == set()
