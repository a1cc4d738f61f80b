"""Test helper: run `llmconsole agent` as a real subprocess on a generated config (see test_agent_*.py)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


AGENT_DEFAULTS = {
    "interval_s": 0.5,
    "history_s": 60,
    "stats_window_s": 10,
    "canary_interval_s": 1.0,
    "canary_timeout_s": 1.0,
    "gpu_source": "simulated",
    "backoff_initial_s": 0.5,
    "backoff_max_s": 2.0,
    "stop_timeout_s": 3.0,
    "gpu_release_timeout_s": 5.0,
}


def write_config(
    tmp: Path, agent_port: int, engines: list[dict], agent: dict | None = None, thresholds: dict | None = None
) -> Path:
    """A config for a fast test agent: short intervals and backoffs, simulated GPUs, state under ``tmp``."""
    settings = {
        "listen": f"127.0.0.1:{agent_port}",
        "state_dir": str(tmp / "state"),
        **AGENT_DEFAULTS,
        **(agent or {}),
    }
    lines = ["[agent]"] + [f"{k} = {json.dumps(v)}" for k, v in settings.items()] + [""]
    lines += ["[thresholds]"] + [
        f"{k} = {json.dumps(v)}" for k, v in {"hung_after_s": 3.0, **(thresholds or {})}.items()
    ]
    for e in engines:
        lines += ["", "[[agent.engines]]"] + [f"{k} = {json.dumps(v)}" for k, v in e.items()]
    path = tmp / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def sim(dialect: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "agents.sim", "--dialect", dialect, *extra]


class Agent:
    """`llmconsole agent` in a subprocess; its stderr goes to a file (a pipe nobody drains could block it)."""

    def __init__(self, config: Path, port: int) -> None:
        self.config, self.port = config, port
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None
        self.stderr_path = config.parent / "agent.stderr"
        self.env: dict[str, str] | None = None
        self.extra_args: tuple[str, ...] = ()

    def start(self) -> None:
        env = {**os.environ, **(self.env or {})}
        with open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "console.cli",
                    "agent",
                    "--config",
                    str(self.config),
                    *self.extra_args,
                ],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=env,
            )

    def stderr_text(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def snap(self) -> dict | None:
        try:
            r = httpx.get(self.url + "/v1/snapshot", timeout=2)
        except httpx.HTTPError:
            return None
        return r.json() if r.status_code == 200 else None

    def wait(self, what: str, cond: Callable[[dict], bool], timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            assert self.proc and self.proc.poll() is None, f"agent exited: {self.stderr_text()[-3000:]}"
            last = self.snap()
            if last is not None and cond(last):
                return last
            time.sleep(0.25)
        raise AssertionError(
            f"timed out waiting for {what}; last snapshot engines: {json.dumps((last or {}).get('engines'), indent=1)[:3000]}"
        )


def engine(snap: dict, eid: str) -> dict:
    return next(e for e in snap["engines"] if e["id"] == eid)


def marker_pids(state_dir: Path) -> set[int]:
    """Live processes launched by the agent using ``state_dir`` (the supervisor's marker + our GPU ledger dir)."""
    ledger = str(state_dir / "sim-gpu")
    found = set()
    for p in psutil.process_iter(["pid"]):
        try:
            env = p.environ()
        except (psutil.Error, OSError):
            continue
        if "LLMCONSOLE_ENGINE_ID" in env and env.get("LLMCONSOLE_SIM_GPU_DIR") == ledger:
            found.add(p.pid)
    return found


def kill_everything(agent: Agent, state_dir: Path) -> None:
    if agent.proc and agent.proc.poll() is None:
        agent.proc.kill()
        agent.proc.wait(10)
    for pid in marker_pids(state_dir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def operator_agent(
    tmp_path: Path,
    kind: str,
    eid: str,
    model: str,
    load: str,
    token: str,
    thresholds: dict[str, float] | None = None,
) -> Iterator[Agent]:
    """A real agent supervising one simulated engine (no canary) whose tokens file names ``token`` as an
    operator (``thresholds``: its [thresholds] table); stopped with everything it started on exit."""
    from agents.auth import hash_token

    port = free_port()
    tokens = tmp_path / "tokens"
    tokens.write_text(f"op operator {hash_token(token)}\n")
    spec = {"id": eid, "kind": kind, "model": model, "port": free_port(), "gpus": [0]}
    spec |= {"command": sim(kind), "args": ["--load", load], "canary": False}
    a = Agent(write_config(tmp_path, port, [spec], {"tokens_file": str(tokens)}, thresholds=thresholds), port)
    a.start()
    try:
        yield a
    finally:
        kill_everything(a, tmp_path / "state")
