"""Nothing leaves the machine: agent, simulated engines of all three kinds and the console-side commands run
for a few seconds under an egress guard (tests/support/egress/sitecustomize.py: an audit hook on every
socket connect/lookup/send) that records any non-loopback target. The record file must stay empty, and
proof files show the guard really ran inside each of those processes.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.agentproc import ROOT, free_port, kill_everything, sim
from tests.support.secure_agent import EGRESS_GUARD_DIR, SecureAgent, write_config, write_tokens


def guard_env(tmp: Path) -> dict[str, str]:
    proof = tmp / "egress-proof"
    proof.mkdir(exist_ok=True)
    return {
        "PYTHONPATH": str(EGRESS_GUARD_DIR),
        "LLMCONSOLE_EGRESS_LOG": str(tmp / "egress.log"),
        "LLMCONSOLE_EGRESS_PROOF": str(proof),
    }


def violations(tmp: Path) -> str:
    log = tmp / "egress.log"
    return log.read_text() if log.exists() else ""


def guarded_pids(tmp: Path) -> set[int]:
    return {int(p.name) for p in (tmp / "egress-proof").iterdir()}


def test_the_guard_catches_an_outbound_connect(tmp_path: Path) -> None:
    """Positive control: 0.0.0.1 is never routable, and the hook aborts before any packet is sent."""
    code = "import socket\ntry:\n    socket.create_connection(('0.0.0.1', 80), timeout=1)\nexcept OSError as e:\n    print(e)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **guard_env(tmp_path)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "egress guard" in out.stdout
    assert "0.0.0.1" in violations(tmp_path)


def test_agent_engines_and_console_make_no_outbound_connections(tmp_path: Path) -> None:
    env = guard_env(tmp_path)
    engine_env = {
        "PYTHONPATH": env["PYTHONPATH"],
        "LLMCONSOLE_EGRESS_LOG": env["LLMCONSOLE_EGRESS_LOG"],
        "LLMCONSOLE_EGRESS_PROOF": env["LLMCONSOLE_EGRESS_PROOF"],
    }
    engines = [
        {
            "id": "v",
            "kind": "vllm",
            "model": "sim-llama",
            "port": free_port(),
            "command": sim("vllm"),
            "args": ["--load", "4", "--worker"],
            "env": engine_env,
        },
        {
            "id": "s",
            "kind": "sglang",
            "model": "sim-qwen",
            "port": free_port(),
            "command": sim("sglang"),
            "args": ["--load", "2"],
            "env": engine_env,
        },
        {
            "id": "t",
            "kind": "tgi",
            "model": "sim-mistral",
            "port": free_port(),
            "metrics_port": free_port(),
            "command": sim("tgi"),
            "args": ["--load", "2"],
            "env": engine_env,
        },
    ]
    tokens = write_tokens(tmp_path / "tokens", ops="operator")
    port = free_port()
    config = write_config(
        tmp_path,
        port,
        engines,
        agent={"tokens_file": str(tmp_path / "tokens"), "allowed_env_overrides": ["PYTHONPATH"]},
    )
    agent = SecureAgent(config, port, token=tokens["ops"], env=env)
    agent.start()
    try:
        snap = agent.wait(
            "all engines ready", lambda s: all(e["state"] == "ready" for e in s["engines"]), timeout=40
        )
        vllm_port = next(e["port"] for e in snap["engines"] if e["id"] == "v")
        # console side: probe an engine and (when built) the one-shot fleet status, both under the guard
        probe = subprocess.run(
            [
                sys.executable,
                "-m",
                "console.cli",
                "probe",
                f"http://127.0.0.1:{vllm_port}",
                "--interval",
                "0.5",
            ],
            cwd=ROOT,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert probe.returncode == 0, probe.stderr
        with agent.client() as c:  # an operator action drives the restart path too
            assert c.post("/v1/engines/s/restart").status_code == 202
        time.sleep(4)  # canaries, scrapes, health checks, the restart
        agent.wait(
            "restarted engine ready again",
            lambda s: all(e["state"] == "ready" for e in s["engines"]),
            timeout=40,
        )
        pids = guarded_pids(tmp_path)
        assert agent.proc is not None and agent.proc.pid in pids  # the guard ran in the agent
        engine_pids = {e["pid"] for e in agent.snap()["engines"]}  # type: ignore[index]
        assert engine_pids <= pids, (engine_pids, pids)  # ... and in every engine
        assert probe.returncode == 0 and len(pids) >= 5  # agent, 3 engines (+ worker, restart), probe
    finally:
        kill_everything(agent, tmp_path / "state")
    assert violations(tmp_path) == "", violations(tmp_path)


@pytest.mark.skipif(
    importlib.util.find_spec("console.status") is None, reason="console/status.py is not built yet"
)
def test_console_status_makes_no_outbound_connections(tmp_path: Path) -> None:
    env = guard_env(tmp_path)
    port = free_port()
    hosts = f'\n[[console.hosts]]\nname = "local"\nurl = "http://127.0.0.1:{port}"\n'
    hosts += '\n[[console.hosts]]\nname = "nowhere"\nurl = "http://127.0.0.1:1"\n'
    config = write_config(tmp_path, port, [], agent={"gpu_source": "none"}, extra=hosts)
    agent = SecureAgent(config, port, env=env)
    agent.start()
    try:
        agent.wait("first snapshot", lambda s: s["seq"] >= 1, timeout=20)
        out = subprocess.run(
            [sys.executable, "-m", "console.cli", "status", "--config", str(config)],
            cwd=ROOT,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "local" in out.stdout + out.stderr
        assert len(guarded_pids(tmp_path)) >= 2
    finally:
        kill_everything(agent, tmp_path / "state")
    assert violations(tmp_path) == "", violations(tmp_path)
