"""The agent as a user runs it: `llmconsole agent` in a subprocess supervising simulated engines.

Covers the issue's "done when": starting → ready in /v1/snapshot, kill -9 of an engine → restart counted
with no process of its tree left (the SIM::Worker included), a hang → ENGINE_HUNG + HEALTH_LIES while
/health still answers 200, and kill -9 of the agent → the same engine pids re-adopted.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support.agentproc import Agent, engine, free_port, kill_everything, sim, write_config


@pytest.fixture
def fleet(tmp_path: Path):
    agent_port = free_port()
    engines = [
        {
            "id": "vllm-a",
            "kind": "vllm",
            "model": "sim-llama",
            "port": free_port(),
            "gpus": [0],
            "command": sim("vllm"),
            "args": ["--load", "4", "--worker"],
        },
        {
            "id": "sglang-b",
            "kind": "sglang",
            "model": "sim-qwen",
            "port": free_port(),
            "gpus": [1],
            "command": sim("sglang"),
            "args": ["--load", "2"],
        },
        {
            "id": "tgi-c",
            "kind": "tgi",
            "model": "sim-mistral",
            "port": free_port(),
            "gpus": [2],
            "command": sim("tgi"),
            "args": ["--load", "2"],
        },
        {
            "id": "vllm-hang",
            "kind": "vllm",
            "model": "sim-hang",
            "port": free_port(),
            "gpus": [3],
            "command": sim("vllm"),
            "args": ["--load", "2", "--fault", "hang@4"],
        },
    ]
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
    snap = agent.wait(
        "all engines ready",
        lambda s: (
            len(s["engines"]) == 4 and all(e["state"] in ("ready", "degraded", "hung") for e in s["engines"])
        ),
    )
    assert snap["schema"] == "llmconsole.snapshot/1" and snap["gpu_source"] == "simulated"
    snap = agent.wait(
        "vLLM stats",
        lambda s: (engine(s, "vllm-a")["stats"] or {}).get("generation_tokens_per_s") not in (None, 0),
    )
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
    snap = agent.wait(
        "vllm-a restarted",
        lambda s: (
            engine(s, "vllm-a")["restarts"] >= 1
            and engine(s, "vllm-a")["state"] == "ready"
            and engine(s, "vllm-a")["pid"] != old_pid
        ),
    )
    assert not any(
        psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in old_tree
    )
    a = engine(snap, "vllm-a")
    assert a["last_exit"]["signal"] == signal.SIGKILL

    # 4. kill -9 the agent, start it again: the same pids are re-adopted, nothing relaunched
    before = {e["id"]: e["pid"] for e in agent.snap()["engines"]}
    agent.proc.kill()
    agent.proc.wait(10)
    assert all(psutil.pid_exists(p) for p in before.values())
    agent.start()
    snap = agent.wait(
        "re-adopted",
        lambda s: all(e["pid"] is not None for e in s["engines"]) and engine(s, "vllm-a")["state"] == "ready",
    )
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
