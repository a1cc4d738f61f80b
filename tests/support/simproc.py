"""Test helper: run ``python -m agents.sim`` as a real subprocess on a free loopback port.

Usage::

    with sim_engine("vllm", "--load", "5", tmp=tmp_path) as eng:
        eng.wait_ready()
        httpx.get(eng.url + "/health")

The process (and any worker it left behind that the test registered with ``eng.track``) is killed
when the block exits. Stderr goes to a file so that a chatty engine never blocks on a full pipe.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != b"Z"


@dataclass
class SimProc:
    proc: subprocess.Popen[bytes]
    port: int
    stderr_path: Path
    tracked: set[int] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stderr_lines(self) -> list[str]:
        return [line for line in self.stderr().splitlines() if line.strip()]

    def track(self, pid: int) -> None:
        """Kill ``pid`` too when the engine is cleaned up (e.g. a worker that survives its engine)."""
        self.tracked.add(pid)

    def wait_ready(self, timeout: float = 10.0, path: str = "/health") -> None:
        """Wait until ``path`` answers 200; raise with the stderr tail if the engine exits first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"engine exited with {self.proc.returncode}:\n{self.stderr()[-3000:]}")
            try:
                if httpx.get(self.url + path, timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"engine not ready after {timeout}s:\n{self.stderr()[-3000:]}")

    def wait_exit(self, timeout: float = 10.0) -> int:
        return self.proc.wait(timeout=timeout)

    def wait_stderr(self, text: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.stderr():
                return
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not on stderr after {timeout}s:\n{self.stderr()[-3000:]}")

    def children(self) -> list[int]:
        """Pids whose parent is the engine (read from /proc)."""
        out = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", "rb") as fh:
                    fields = fh.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            if len(fields) > 1 and int(fields[1]) == self.pid:
                out.append(int(entry))
        return out

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
        for pid in self.tracked:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def start_sim(
    dialect: str,
    *args: str,
    tmp: Path,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
    with_port: bool = True,
) -> SimProc:
    """Start a simulated engine (not waiting for readiness)."""
    port = free_port() if port is None else port
    argv = [sys.executable, "-m", "agents.sim", "--dialect", dialect]
    if with_port:
        argv += ["--port", str(port)]
    argv += list(args)
    stderr_path = tmp / f"sim-{dialect}-{port}-{time.monotonic_ns()}.stderr"
    full_env = dict(os.environ)
    full_env.update(env or {})
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(
            argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=full_env
        )
    return SimProc(proc, port, stderr_path)


@contextlib.contextmanager
def sim_engine(
    dialect: str, *args: str, tmp: Path, port: int | None = None, env: Mapping[str, str] | None = None
) -> Iterator[SimProc]:
    eng = start_sim(dialect, *args, tmp=tmp, port=port, env=env)
    try:
        yield eng
    finally:
        eng.cleanup()
