"""Shared helpers for the supervisor tests (loaded by path: tests have no packages)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from agents.supervisor import EngineSupervisor, Policy, ProcessPlan
from agents.supervisor.proctree import cmdline_text, read_stat, signal_identified

PROCS = Path(__file__).parent
FAKE = str(PROCS / "fake_engine.py")
LISTENER = str(PROCS / "listener.py")


def fast_policy(**over: Any) -> Policy:
    base: dict[str, Any] = dict(
        backoff_initial_s=0.1,
        backoff_max_s=0.4,
        backoff_reset_s=60.0,
        start_retries=3,
        startup_timeout_s=20.0,
        stop_timeout_s=0.5,
        gpu_release_timeout_s=2.0,
    )
    base.update(over)
    return Policy(**base)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def engine_argv(*args: str) -> tuple[str, ...]:
    return (sys.executable, FAKE, *args)


def tcp_ready(port: int) -> Callable[[], Any]:
    async def is_ready() -> bool:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 0.5)
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    return is_ready


def alive(pid: int) -> bool:
    info = read_stat(pid)
    return info is not None and not info.dead


def read_pidfile(path: Path) -> dict[str, int]:
    """role -> pid (last writer wins per role)."""
    out: dict[str, int] = {}
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text().splitlines():
            pid, role = line.split()
            out[role] = int(pid)
    return out


async def wait_until(pred: Callable[[], bool], timeout: float = 10.0, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        await asyncio.sleep(interval)
    return pred()


async def wait_state(sup: EngineSupervisor, *states: str, timeout: float = 10.0) -> str:
    ok = await wait_until(lambda: sup.state in states, timeout)
    assert ok, f"state {sup.state} ({sup.reason}) not in {states}; events: {sup.events}"
    return sup.state


_OURS = ("fake_engine.py", "listener.py", "agent_like.py", "agents.sim")


def kill_stray(pids: list[int]) -> None:
    """Safety net for a failing test: SIGKILL the given pids if they still run one of our test programs
    (a recycled PID running anything else is left alone)."""
    for pid in pids:
        info = read_stat(pid)
        if info is not None and not info.dead and any(w in cmdline_text(pid, 10_000) for w in _OURS):
            signal_identified(pid, info.starttime, signal.SIGKILL)


class Kit:
    """Makes supervisors under tmp_path and guarantees cleanup (stop + kill strays)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.state_dir = tmp / "state"
        self.log_dir = tmp / "logs"
        self.sups: list[EngineSupervisor] = []
        self.pidfiles: list[Path] = []
        self.extra_pids: list[int] = []

    def pidfile(self, name: str = "pids") -> Path:
        path = self.tmp / f"{name}.txt"
        self.pidfiles.append(path)
        return path

    def make(
        self,
        argv: tuple[str, ...],
        port: int = 0,
        *,
        engine_id: str = "eng",
        policy: Policy | None = None,
        **kw: Any,
    ) -> EngineSupervisor:
        kw.setdefault("tick_s", 0.05)
        kw.setdefault("ready_poll_s", 0.05)
        kw.setdefault("tree_refresh_s", 0.1)
        plan = ProcessPlan(
            engine_id=engine_id, argv=argv, env={"PATH": "/usr/bin:/bin"}, host="127.0.0.1", port=port
        )
        sup = EngineSupervisor(plan, policy or fast_policy(), self.state_dir, self.log_dir, **kw)
        self.sups.append(sup)
        return sup

    async def close(self) -> None:
        for sup in self.sups:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(sup.shutdown(stop_engines=True), 15)
        pids = list(self.extra_pids)
        for pf in self.pidfiles:
            pids += list(read_pidfile(pf).values())
        kill_stray(pids)


@contextlib.asynccontextmanager
async def kit(tmp: Path) -> AsyncIterator[Kit]:
    k = Kit(tmp)
    try:
        yield k
    finally:
        await k.close()
