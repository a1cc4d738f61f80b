"""Issue 10 §2, §3, §9 against real `llmconsole agent` processes and simulated engines.

- a second agent on the same state_dir exits 2 with one line naming the directory and the holder's PID,
  before it listens, adopts or starts anything; a kill -9 of the first never blocks the next start;
- `restarts` survives a kill -9 of the agent and the re-adoption;
- a state directory that cannot be written at start-up: one line, exit 2, nothing listening;
- state writes failing while the agent runs: logged once per cause, shown in the engine's events, and
  after an agent restart the running engine is adopted, not "port in use by" itself.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support.agentproc import (
    ROOT,
    Agent,
    engine,
    free_port,
    kill_everything,
    marker_pids,
    sim,
    write_config,
)

pytestmark = pytest.mark.timeout(240)

LISTENING = "listening on"


def _one_engine(tmp: Path, agent_port: int) -> Path:
    return write_config(
        tmp,
        agent_port,
        [
            {
                "id": "e1",
                "kind": "vllm",
                "model": "m",
                "port": free_port(),
                "command": sim("vllm"),
                "args": ["--load", "1"],
            },
        ],
    )


def _run_agent(config: Path, *args: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "console.cli", "agent", "--config", str(config), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        **kw,
    )


def _ready(s: dict) -> bool:
    e = engine(s, "e1")
    return e["state"] == "ready" and e["pid"] is not None


def _crash_engine(agent: Agent) -> None:
    before = engine(agent.snap() or {"engines": []}, "e1")
    os.kill(before["pid"], signal.SIGKILL)
    agent.wait(
        "e1 relaunched",
        lambda s: (
            _ready(s)
            and engine(s, "e1")["restarts"] == before["restarts"] + 1
            and engine(s, "e1")["pid"] != before["pid"]
        ),
        timeout=60,
    )


@pytest.fixture
def one(tmp_path: Path):
    port = free_port()
    agent = Agent(_one_engine(tmp_path, port), port)
    agents = [agent]
    agent.start()
    try:
        yield agent, tmp_path / "state", agents
    finally:
        for a in agents:
            kill_everything(a, tmp_path / "state")


def test_second_agent_is_refused_and_restarts_survive_kill_9(one) -> None:
    agent, state, agents = one
    agent.wait("e1 ready", _ready, timeout=60)
    _crash_engine(agent)
    _crash_engine(agent)
    snap = agent.wait("two restarts", lambda s: engine(s, "e1")["restarts"] == 2 and _ready(s))
    pid = engine(snap, "e1")["pid"]
    engines_before = marker_pids(state)

    # §2: a second agent, same config, another --listen: one line, exit 2, before it listens or adopts
    other = free_port()
    out = _run_agent(agent.config, "--listen", f"127.0.0.1:{other}")
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert str(state) in lines[0] and f"PID {agent.proc.pid}" in lines[0] and "another agent" in lines[0]
    assert LISTENING not in out.stderr and "Traceback" not in out.stderr
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{other}/healthz", timeout=2)
    assert marker_pids(state) == engines_before  # nothing started
    snap = agent.wait("first agent undisturbed", _ready)
    assert engine(snap, "e1")["pid"] == pid and engine(snap, "e1")["restarts"] == 2

    # kill -9 of the first agent never blocks the next one; §9: the restart count survives re-adoption
    agent.proc.kill()
    agent.proc.wait(10)
    second = Agent(agent.config, other)
    second.extra_args = ("--listen", f"127.0.0.1:{other}")
    agents.append(second)
    second.start()
    snap = second.wait(
        "re-adopted by the second agent", lambda s: _ready(s) and engine(s, "e1")["pid"] == pid, timeout=60
    )
    e1 = engine(snap, "e1")
    assert e1["restarts"] >= 2, e1
    assert any(f"adopted PID {pid} from the state file" in (ev["reason"] or "") for ev in e1["events"])
    assert json.loads((state / "engines" / "e1.json").read_text())["restarts"] == 2


@pytest.mark.parametrize("how", ["engines-is-a-file", "full"])
def test_unwritable_state_dir_exits_2_before_listening(tmp_path: Path, how: str) -> None:
    port = free_port()
    config = _one_engine(tmp_path, port)
    state = tmp_path / "state"
    state.mkdir()
    kw = {}
    if how == "engines-is-a-file":
        (state / "engines").write_text("")
    else:  # every file write fails with EFBIG, as on a full disk (root included)
        kw["preexec_fn"] = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    engine_port = int(config.read_text().split("port = ")[-1].split()[0])
    out = _run_agent(config, **kw)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("llmconsole agent: error: state directory "), out.stderr
    assert str(state) in lines[0] and "not writable" in lines[0]
    assert LISTENING not in out.stderr and "Traceback" not in out.stderr
    assert not any(
        c.laddr and c.laddr.port in (port, engine_port) and c.status == psutil.CONN_LISTEN
        for c in psutil.net_connections("tcp")
    )  # neither the agent nor its engine listens


def test_failed_state_writes_are_logged_once_and_the_engine_is_readopted(one) -> None:
    agent, state, _ = one
    agent.wait("e1 ready", _ready, timeout=60)
    # the state directory goes bad while the agent runs (a file where the records' directory was)
    saved = state / "engines.saved"
    (state / "engines").rename(saved)
    (state / "engines").write_text("")
    _crash_engine(agent)
    snap = agent.wait(
        "state write failure in the engine's events",
        lambda s: any(
            "state file write failed: File exists (EEXIST)" in (ev["reason"] or "")
            for ev in engine(s, "e1")["events"]
        ),
    )
    _crash_engine(agent)  # the same cause again (and the periodic retries): still logged once
    running = engine(agent.snap(), "e1")["pid"]
    logged = [line for line in agent.stderr_text().splitlines() if "state file" in line and "EEXIST" in line]
    assert len(logged) == 1, agent.stderr_text()[-3000:]
    assert str(state) in logged[0] and "e1" in logged[0]

    # the agent dies; the directory is mended, but its record still names the first, long-dead PID
    agent.proc.kill()
    agent.proc.wait(10)
    (state / "engines").unlink()
    saved.rename(state / "engines")
    stale = json.loads((state / "engines" / "e1.json").read_text())["pid"]
    assert stale != running and not psutil.pid_exists(stale)
    agent.start()
    snap = agent.wait(
        "running engine adopted", lambda s: engine(s, "e1")["state"] in ("ready", "failed"), timeout=60
    )
    e1 = engine(snap, "e1")
    assert e1["state"] == "ready" and e1["pid"] == running, e1["events"]
    assert any("from an unrecorded launch found on port" in (ev["reason"] or "") for ev in e1["events"])
    assert json.loads((state / "engines" / "e1.json").read_text())["pid"] == running
