"""The agent as a user runs it: `llmconsole agent` in a subprocess supervising simulated engines.

Covers the issue's "done when": starting → ready in /v1/snapshot, kill -9 of an engine → restart counted
with no process of its tree left (the SIM::Worker included), a hang → ENGINE_HUNG + HEALTH_LIES while
/health still answers 200, and kill -9 of the agent → the same engine pids re-adopted.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(tmp: Path, agent_port: int, engines: list[dict]) -> Path:
    lines = [
        "[agent]",
        f'listen = "127.0.0.1:{agent_port}"',
        "interval_s = 0.5",
        "history_s = 60",
        "stats_window_s = 10",
        "canary_interval_s = 1.0",
        "canary_timeout_s = 1.0",
        f'state_dir = "{tmp / "state"}"',
        'gpu_source = "simulated"',
        "backoff_initial_s = 0.5",
        "backoff_max_s = 2.0",
        "stop_timeout_s = 3.0",
        "gpu_release_timeout_s = 5.0",
        "",
        "[thresholds]",
        "hung_after_s = 3.0",
        "",
    ]
    for e in engines:
        lines.append("[[agent.engines]]")
        for k, v in e.items():
            lines.append(f"{k} = {json.dumps(v)}")
        lines.append("")
    path = tmp / "config.toml"
    path.write_text("\n".join(lines))
    return path


def sim(dialect: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "agents.sim", "--dialect", dialect, *extra]


class Agent:
    def __init__(self, config: Path, port: int) -> None:
        self.config, self.port = config, port
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "console.cli", "agent", "--config", str(self.config)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

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
            assert self.proc and self.proc.poll() is None, f"agent exited: {self.proc.stderr.read() if self.proc else ''}"
            last = self.snap()
            if last is not None and cond(last):
                return last
            time.sleep(0.25)
        raise AssertionError(f"timed out waiting for {what}; last snapshot engines: {json.dumps((last or {}).get('engines'), indent=1)[:3000]}")


def engine(snap: dict, eid: str) -> dict:
    return next(e for e in snap["engines"] if e["id"] == eid)


def marker_pids(state_dir: Path) -> set[int]:
    """Every live process carrying an LLMCONSOLE_ENGINE_ID marker (the supervisor's tree tag)."""
    found = set()
    for p in psutil.process_iter(["pid"]):
        try:
            if "LLMCONSOLE_ENGINE_ID" in p.environ():
                found.add(p.pid)
        except (psutil.Error, OSError):
            continue
    return found


def kill_everything(agent: Agent, state_dir: Path) -> None:
    if agent.proc and agent.proc.poll() is None:
        agent.proc.kill()
        agent.proc.wait(10)
    for pid in marker_pids(state_dir):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def fleet(tmp_path: Path):
    agent_port = free_port()
    engines = [
        {"id": "vllm-a", "kind": "vllm", "model": "sim-llama", "port": free_port(), "gpus": [0],
         "command": sim("vllm"), "args": ["--load", "4", "--worker"]},
        {"id": "sglang-b", "kind": "sglang", "model": "sim-qwen", "port": free_port(), "gpus": [1],
         "command": sim("sglang"), "args": ["--load", "2"]},
        {"id": "tgi-c", "kind": "tgi", "model": "sim-mistral", "port": free_port(), "gpus": [2],
         "command": sim("tgi"), "args": ["--load", "2"]},
        {"id": "vllm-hang", "kind": "vllm", "model": "sim-hang", "port": free_port(), "gpus": [3],
         "command": sim("vllm"), "args": ["--load", "2", "--fault", "hang@4"]},
    ]  # fmt: skip
    config = write_config(tmp_path, agent_port, engines)
    agent = Agent(config, agent_port)
    agent.start()
    try:
        yield agent, tmp_path / "state"
    finally:
        kill_everything(agent, tmp_path / "state")


def test_agent_supervises_detects_and_readopts(fleet) -> None:
    agent, state_dir = fleet
    # 1. every engine goes starting → ready; stats become non-null from real scrapes
    snap = agent.wait("all engines ready", lambda s: len(s["engines"]) == 4 and all(e["state"] in ("ready", "degraded", "hung") for e in s["engines"]))
    assert snap["schema"] == "llmconsole.snapshot/1" and snap["gpu_source"] == "simulated"
    snap = agent.wait("vLLM stats", lambda s: (engine(s, "vllm-a")["stats"] or {}).get("generation_tokens_per_s") not in (None, 0))
    a = engine(snap, "vllm-a")
    assert a["simulated"] is True and a["stats"]["requests_running"] is not None
    assert engine(snap, "tgi-c")["stats"]["kv_cache_usage"] is None  # TGI has no KV gauge: null, not 0
    # simulated GPU memory is attributed to the engine that holds it
    owners = {p["engine_id"] for g in snap["gpus"] for p in g["processes"]}
    assert "vllm-a" in owners

    # 2. a hang: /health stays 200, yet ENGINE_HUNG and HEALTH_LIES are raised
    snap = agent.wait(
        "hang detected",
        lambda s: {"ENGINE_HUNG", "HEALTH_LIES"} <= {x["code"] for x in engine(s, "vllm-hang")["alerts"]},
        timeout=30,
    )
    hung = engine(snap, "vllm-hang")
    assert hung["state"] == "hung"
    assert httpx.get(f"http://127.0.0.1:{hung['port']}/health", timeout=2).status_code == 200
    ev = next(x for x in hung["alerts"] if x["code"] == "ENGINE_HUNG")["evidence"]
    assert ev["no_progress_for_s"] >= 3.0

    # 3. kill -9 the vLLM engine: restart counted, no process of its old tree left (worker included)
    a = engine(agent.snap(), "vllm-a")
    old_pid = a["pid"]
    old_tree = {old_pid} | {c.pid for c in psutil.Process(old_pid).children(recursive=True)}
    assert len(old_tree) >= 2, "the simulated vLLM should have a worker child"
    os.kill(old_pid, signal.SIGKILL)
    snap = agent.wait("vllm-a restarted", lambda s: engine(s, "vllm-a")["restarts"] >= 1 and engine(s, "vllm-a")["state"] == "ready" and engine(s, "vllm-a")["pid"] != old_pid)
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in old_tree)
    a = engine(snap, "vllm-a")
    assert a["last_exit"]["signal"] == signal.SIGKILL

    # 4. kill -9 the agent, start it again: the same pids are re-adopted, nothing relaunched
    before = {e["id"]: e["pid"] for e in agent.snap()["engines"]}
    agent.proc.kill()
    agent.proc.wait(10)
    assert all(psutil.pid_exists(p) for p in before.values())
    agent.start()
    snap = agent.wait("re-adopted", lambda s: all(e["pid"] is not None for e in s["engines"]) and engine(s, "vllm-a")["state"] == "ready")
    after = {e["id"]: e["pid"] for e in snap["engines"]}
    assert after == before
    assert engine(snap, "vllm-a")["uptime_s"] > 1.0  # uptime continues from the original launch

    # 5. the agent's own Prometheus exposition and the action guard
    metrics = httpx.get(agent.url + "/metrics", timeout=5).text
    assert 'llmconsole_engine_up{engine="vllm-a"' in metrics
    r = httpx.post(agent.url + "/v1/engines/vllm-a/restart", timeout=5)
    assert r.status_code == 403 and "no operator token" in r.json()["error"]
    logs = httpx.get(agent.url + "/v1/engines/vllm-a/logs?lines=20", timeout=5).json()
    assert any("SIMULATED" in line for line in logs["lines"]) or logs["lines"]
