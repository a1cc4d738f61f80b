"""Secrets go through the environment, never argv, and never come back out of the agent.

A real agent runs two simulated vLLM engines with ``VLLM_API_KEY`` set in their ``env``; the second one's
launch command is a wrapper that prints its key (as ``api_key=``, bare, and in a ``Bearer`` header) to its
log before it becomes the simulated engine, as real engines have done (vLLM PR #52523, #53625). The agent
itself runs with ``HF_TOKEN`` in its environment, and a client sends ``Authorization: Bearer
sentinel-...``. Then every API response, the audit log, the agent's own log and every state file are
searched for "sentinel-": zero hits. (The second engine's own stdout file is written by the engine
itself, so it does hold its key: that is asserted too, to prove the redactor had something to hide.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.agentproc import ROOT, free_port, kill_everything, sim
from tests.support.secure_agent import SecureAgent, write_config, write_tokens

KEY1 = "sentinel-XYZ-engine-one-0001"
KEY2 = "sentinel-XYZ-engine-two-0002"
AGENT_SECRET = "sentinel-ENV-agent-side-0003"
BAD_TOKEN = "sentinel-ABC-request-0004"

WRAPPER = """
import os, sys
key = os.environ["VLLM_API_KEY"]
print(f"non-default args: {{'api_key': '{key}'}}", flush=True)
print(f"curl -H 'Authorization: Bearer {key}'", flush=True)
print(f"the key is {key}", flush=True)
os.execv(sys.executable, [sys.executable, "-m", "agents.sim", "--dialect", "vllm", *sys.argv[1:]])
"""


def test_secrets_never_leave_the_agent(tmp_path: Path) -> None:
    wrapper = tmp_path / "leaky_engine.py"
    wrapper.write_text(f"#!{sys.executable}\n" + WRAPPER)  # an executable of its own, listed below
    wrapper.chmod(0o700)
    engines = [
        {
            "id": "e1",
            "kind": "vllm",
            "model": "sim-a",
            "port": free_port(),
            "command": sim("vllm"),
            "args": ["--load", "2"],
            "env": {"VLLM_API_KEY": KEY1},
        },
        {
            "id": "e2",
            "kind": "vllm",
            "model": "sim-b",
            "port": free_port(),
            "command": [str(wrapper)],
            "args": ["--load", "2"],
            "env": {"VLLM_API_KEY": KEY2},
        },
    ]
    tokens = write_tokens(tmp_path / "tokens", ops="operator")
    port = free_port()
    allowed = [str(wrapper), os.path.realpath(sys.executable)]
    config = write_config(
        tmp_path,
        port,
        engines,
        agent={"tokens_file": str(tmp_path / "tokens"), "allowed_executables": allowed},
    )
    agent = SecureAgent(
        config, port, token=tokens["ops"], env={"HF_TOKEN": AGENT_SECRET, "OPENAI_API_KEY": AGENT_SECRET}
    )
    agent.start()
    bodies: list[str] = []
    try:
        snap = agent.wait(
            "both engines ready", lambda s: all(e["state"] == "ready" for e in s["engines"]), timeout=40
        )
        pids = {e["id"]: e["pid"] for e in snap["engines"]}
        with agent.client() as c:
            for path in (
                "/healthz",
                "/v1/snapshot",
                "/v1/history?seconds=60",
                "/metrics",
                "/v1/engines/e1/logs?lines=500",
                "/v1/engines/e2/logs?lines=500",
            ):
                r = c.get(path)
                assert r.status_code == 200, (path, r.status_code, r.text[:200])
                bodies.append(r.text)
            bad = {"Authorization": f"Bearer {BAD_TOKEN}"}
            for method, path in (
                ("GET", "/v1/snapshot"),
                ("POST", "/v1/engines/e1/restart"),
                ("POST", "/v1/engines/e9/stop"),
            ):
                r = c.request(method, path, headers=bad)
                assert r.status_code == 401
                bodies.append(r.text + str(r.headers))
            r = c.post("/v1/engines/e2/restart")
            assert r.status_code == 202
            bodies.append(r.text)
            # while e2 restarts its log tail is in the snapshot (loading.log_tail): still redacted
            snap = agent.wait(
                "e2 back",
                lambda s: next(e for e in s["engines"] if e["id"] == "e2")["state"] == "ready",
                timeout=40,
            )
            for path in (
                "/v1/history?seconds=60",
                "/v1/engines/e2/logs?lines=500",
                "/v1/engines/e2/audit?lines=50",
            ):
                bodies.append(c.get(path).text)
        e2_logs = bodies[5]
        assert "api_key': '***'" in e2_logs and "Bearer ***" in e2_logs and "the key is ***" in e2_logs

        # the engines got their key through the environment, the agent's secrets not at all, and the opt-outs
        pids = {e["id"]: e["pid"] for e in snap["engines"]}  # e2 was restarted: its pid is the new one
        for eid, key in (("e1", KEY1), ("e2", KEY2)):
            environ = Path(f"/proc/{pids[eid]}/environ").read_bytes().split(b"\0")
            assert f"VLLM_API_KEY={key}".encode() in environ
            assert not any(AGENT_SECRET.encode() in v for v in environ)
            for opt_out in (
                b"HF_HUB_OFFLINE=1",
                b"VLLM_NO_USAGE_STATS=1",
                b"DO_NOT_TRACK=1",
                b"HF_HUB_DISABLE_TELEMETRY=1",
            ):
                assert opt_out in environ
            assert b"sentinel-" not in Path(f"/proc/{pids[eid]}/cmdline").read_bytes()
    finally:
        kill_everything(agent, tmp_path / "state")

    assert all("sentinel-" not in b for b in bodies), [b[:300] for b in bodies if "sentinel-" in b]
    assert "sentinel-" not in agent.stderr_text()
    by_engine_itself = tmp_path / "state" / "logs" / "e2.log"
    logged = by_engine_itself.read_text()
    # the engine printed its key; the agent masked it in the file (same length) and keeps the file private
    assert KEY2 not in logged and "*" * len(KEY2) in logged and "the key is ***" in logged
    assert by_engine_itself.stat().st_mode & 0o777 == 0o600
    allowed = (config, wrapper)
    files = [p for p in tmp_path.rglob("*") if p.is_file() and p not in allowed]
    assert any(p.name == "audit.log" for p in files) and any(p.suffix == ".json" for p in files)
    leaks = [str(p.relative_to(tmp_path)) for p in files if b"sentinel-" in p.read_bytes()]
    assert leaks == []  # audit.log, engine state files, e1's log, the sim-GPU ledger ...
    audit = (tmp_path / "state" / "audit.log").read_text()
    assert audit.count('"auth":"none"') == 2 and '"actor":"ops"' in audit


def test_a_secret_in_args_is_refused_with_a_pointer_to_env(tmp_path: Path) -> None:
    for args in (
        ["--api-key", "sentinel-QQQ-1234"],
        ["--hf-token=sentinel-QQQ-1234"],
        ["--x", "hf_" + "a" * 34],
    ):
        engines = [
            {
                "id": "e",
                "kind": "vllm",
                "model": "m",
                "port": free_port(),
                "command": sim("vllm"),
                "args": args,
            }
        ]
        config = write_config(tmp_path, free_port(), engines)
        out = subprocess.run(
            [sys.executable, "-m", "console.cli", "agent", "--config", str(config)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 2, out.stderr
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and "args" in lines[0] and "env" in lines[0], out.stderr
        assert "sentinel-" not in out.stderr and "aaaaaaaa" not in out.stderr  # the value is never echoed
