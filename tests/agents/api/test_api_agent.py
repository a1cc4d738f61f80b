"""The API against a real agent process (issue 10 §8, §9): an unauthenticated flood is audited as a few
records and one summary, error bodies never name a filesystem path, a tokens file changed by
``llmconsole agent token add/remove`` takes effect without a restart, and the 202 of an action names the
state the engine is now in."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.agentproc import ROOT, engine, free_port, kill_everything, sim
from tests.support.secure_agent import SecureAgent, write_config, write_tokens

pytestmark = pytest.mark.timeout(240)


def start_agent(
    tmp_path: Path, cleanup: list[SecureAgent], engines: list[dict] | None = None, **roles: str
) -> tuple[SecureAgent, dict[str, str]]:
    """A real agent with a tokens file of ``roles`` (default: a viewer and an operator); killed by ``cleanup``."""
    roles = roles or {"viewer": "viewer", "op": "operator"}
    tokens = write_tokens(tmp_path / "tokens", **roles)
    port = free_port()
    config = write_config(
        tmp_path,
        port,
        engines or [],
        agent={"gpu_source": "simulated", "tokens_file": str(tmp_path / "tokens")},
    )
    agent = SecureAgent(config, port, token=next(tokens[n] for n, r in roles.items() if r == "viewer"))
    cleanup.append(agent)
    agent.start()
    agent.wait("first snapshot", lambda s: s["seq"] >= 1, timeout=60)
    return agent, tokens


@pytest.fixture
def cleanup(tmp_path: Path) -> Iterator[list[SecureAgent]]:
    agents: list[SecureAgent] = []
    yield agents
    for a in agents:
        kill_everything(a, tmp_path / "state")


def audit_records(tmp_path: Path) -> list[dict]:
    path = tmp_path / "state" / "audit.log"
    return (
        [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    )


def test_an_unauthenticated_flood_is_audited_as_a_few_records_and_one_summary(
    tmp_path: Path, cleanup: list
) -> None:
    agent, tokens = start_agent(tmp_path, cleanup)

    async def flood() -> list[httpx.Response]:
        limit = asyncio.Semaphore(50)
        async with httpx.AsyncClient(
            base_url=agent.url, timeout=30, trust_env=False, limits=httpx.Limits(max_connections=50)
        ) as c:

            async def one(i: int) -> httpx.Response:
                async with limit:
                    return await c.post(
                        "/v1/engines/nope/stop",
                        headers={"Authorization": f"Bearer wrong-{i}"} if i % 2 else {},
                    )

            return await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(1000))), 120)

    answers = asyncio.run(flood())
    assert {r.status_code for r in answers} == {401} and all("error" in r.json() for r in answers)
    denied = [r for r in audit_records(tmp_path) if r.get("result") == "denied: unauthenticated"]
    assert len(denied) == 5 and {r["remote"] for r in denied} == {"127.0.0.1"}  # not 1,000 fsynced lines
    with httpx.Client(base_url=agent.url, trust_env=False, timeout=10) as c:  # a named caller: always in full
        r = c.post("/v1/engines/nope/stop", headers={"Authorization": f"Bearer {tokens['viewer']}"})
    assert r.status_code == 403
    assert (
        audit_records(tmp_path)[-1]["actor"] == "viewer"
        and audit_records(tmp_path)[-1]["result"] == "denied: role viewer"
    )
    agent.proc.send_signal(signal.SIGTERM)  # the window has not ended: its summary is written on the way out
    assert agent.proc.wait(30) == 0
    summaries = [r for r in audit_records(tmp_path) if r.get("action") == "rate-limited"]
    assert len(summaries) == 1 and summaries[0]["suppressed"] == 995 and summaries[0]["remote"] == "127.0.0.1"
    assert "995 more attempt(s)" in summaries[0]["result"]


def test_error_bodies_never_name_a_filesystem_path(tmp_path: Path, cleanup: list) -> None:
    agent, tokens = start_agent(tmp_path, cleanup)
    log = tmp_path / "state" / "audit.log"
    with httpx.Client(base_url=agent.url, trust_env=False, timeout=10) as c:
        assert (
            c.post("/v1/engines/x/stop", headers={"Authorization": f"Bearer {tokens['op']}"}).status_code
            == 404
        )
        log.unlink()
        log.mkdir()  # the audit log cannot be written any more (a directory is in its place)
        answers = [
            c.post("/v1/engines/x/stop"),  # unauthenticated: this is who saw the path before
            c.post("/v1/engines/x/stop", headers={"Authorization": f"Bearer {tokens['op']}"}),
        ]
    for r in answers:
        assert r.status_code == 503 and "audit log unavailable" in r.json()["error"], r.text
        assert str(tmp_path) not in r.text and "audit.log" not in r.text and "/state" not in r.text, r.text
    assert (
        "audit" in agent.stderr_text() and str(tmp_path / "state") in agent.stderr_text()
    )  # the log says where
    shutil.rmtree(log)


def token_cli(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "console.cli", "agent", "token", *args, "--config", str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def status_with(agent: SecureAgent, token: str) -> int:
    with httpx.Client(base_url=agent.url, trust_env=False, timeout=10) as c:
        return c.get("/v1/snapshot", headers={"Authorization": f"Bearer {token}"}).status_code


def poll(what: str, cond, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_token_add_and_remove_take_effect_without_a_restart(tmp_path: Path, cleanup: list) -> None:
    agent, tokens = start_agent(tmp_path, cleanup, alice="viewer")
    pid = agent.proc.pid
    assert status_with(agent, tokens["alice"]) == 200
    added = token_cli(agent.config, "add", "bob", "--role", "viewer")
    assert added.returncode == 0, added.stderr
    bob = added.stdout.strip()
    poll("bob's new token to be accepted", lambda: status_with(agent, bob) == 200)
    removed = token_cli(agent.config, "remove", "alice")
    assert removed.returncode == 0, removed.stderr
    poll("alice's removed token to be refused", lambda: status_with(agent, tokens["alice"]) == 401)
    assert (
        status_with(agent, bob) == 200 and agent.proc.pid == pid and agent.proc.poll() is None
    )  # no restart


def test_the_202_of_an_action_names_the_state_after_acceptance(tmp_path: Path, cleanup: list) -> None:
    port = free_port()
    spec = {
        "id": "e1",
        "kind": "vllm",
        "model": "m",
        "port": port,
        "command": sim("vllm", "--port", str(port)),
    }
    agent, tokens = start_agent(tmp_path, cleanup, [spec])
    agent.wait("engine ready", lambda s: engine(s, "e1")["state"] == "ready", timeout=60)
    op = {"Authorization": f"Bearer {tokens['op']}"}
    with httpx.Client(base_url=agent.url, trust_env=False, timeout=30) as c:
        r = c.post("/v1/engines/e1/stop", headers=op)
        assert r.status_code == 202 and r.json()["state"] == "stopping", (
            r.text
        )  # was "ready" (the state before)
        agent.wait("engine stopped", lambda s: engine(s, "e1")["state"] == "stopped", timeout=60)
        r = c.post("/v1/engines/e1/start", headers=op)
        assert r.status_code == 202 and r.json()["state"] == "starting", r.text
        agent.wait("engine ready again", lambda s: engine(s, "e1")["state"] == "ready", timeout=60)
        r = c.post("/v1/engines/e1/restart", headers=op)
        assert r.status_code == 202 and r.json()["state"] == "stopping", r.text


def test_the_agents_own_restart_is_in_the_audit_chain(tmp_path: Path, cleanup: list) -> None:
    """A kill -9 of an engine is restarted by the agent, and that decision is an ``actor: agent`` record of
    the keyed chain, which ``llmconsole agent audit verify`` then finds intact."""
    port = free_port()
    spec = {
        "id": "e1",
        "kind": "vllm",
        "model": "m",
        "port": port,
        "command": sim("vllm", "--port", str(port)),
        "backoff_initial_s": 1,
    }
    agent, _ = start_agent(tmp_path, cleanup, [spec])
    first = agent.wait("engine ready", lambda s: engine(s, "e1")["state"] == "ready", timeout=60)
    assert (
        tmp_path / "state" / "audit.key"
    ).stat().st_mode & 0o777 == 0o600  # created at start, before any record
    pid = engine(first, "e1")["pid"]
    subprocess.run(["kill", "-9", str(pid)], check=True)
    agent.wait(
        "engine restarted",
        lambda s: engine(s, "e1")["restarts"] >= 1 and engine(s, "e1")["pid"] not in (None, pid),
        timeout=90,
    )
    restarts = [
        r for r in audit_records(tmp_path) if r.get("actor") == "agent" and r.get("action") == "restart"
    ]
    assert restarts and restarts[0]["engine"] == "e1" and restarts[0]["result"].startswith("automatic")
    verify = subprocess.run(
        [sys.executable, "-m", "agents.audit_cli", "verify", "--config", str(agent.config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert verify.returncode == 0 and "intact" in verify.stdout, verify.stdout + verify.stderr
