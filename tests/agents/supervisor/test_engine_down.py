"""ENGINE_DOWN on a real agent: a serving simulated engine killed with SIGKILL is flagged critical at once,
with the signal, the time down and the next restart as evidence, until it is ready again; the recorded exit
reason is the signal, never an unrelated log line (a real vLLM's last line was another client's access-log
line ``GET /metrics 200 OK``)."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.support.agentproc import Agent, engine, free_port, kill_everything, write_config

pytestmark = pytest.mark.timeout(90)

BACKOFF_S = 8.0
ACCESS_LINE = 'INFO:     127.0.0.1:51234 - "GET /metrics HTTP/1.1" 200 OK'


def _down(e: dict) -> dict | None:
    return next((a for a in e["alerts"] if a["code"] == "ENGINE_DOWN"), None)


def test_sigkill_raises_engine_down_until_ready_again(tmp_path: Path) -> None:
    # the engine's last output before the kill is an access-log line, as on the real vLLM
    script = f'echo \'{ACCESS_LINE}\'; exec "$0" "$@"'
    command = ["/bin/sh", "-c", script, sys.executable, "-m", "agents.sim", "--dialect", "vllm"]
    port = free_port()
    config = write_config(
        tmp_path,
        port,
        [{"id": "victim", "kind": "vllm", "model": "m", "port": free_port(), "command": command}],
        agent={
            "interval_s": 0.5,
            # the backoff is the window in which ENGINE_DOWN is looked for: wide enough for a busy machine
            # (the kill can come before any agent tick saw the engine ready: the journal's exit from
            # "ready" raises it then; test_alerts_windows has that case exactly)
            "backoff_initial_s": BACKOFF_S,
            "backoff_max_s": BACKOFF_S,
            "allowed_executables": ["/usr/bin/sh", "/bin/sh"],
        },
        thresholds={"alert_clear_s": 15.0},
    )
    agent = Agent(config, port)
    agent.start()
    try:
        snap = agent.wait("ready", lambda s: engine(s, "victim")["state"] == "ready", timeout=30)
        assert _down(engine(snap, "victim")) is None
        pid = engine(snap, "victim")["pid"]
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)

        snap = agent.wait(
            "ENGINE_DOWN in backoff",
            lambda s: _down(engine(s, "victim")) is not None and engine(s, "victim")["state"] == "backoff",
            timeout=BACKOFF_S + 2.0,
        )
        raised_after = time.monotonic() - killed_at
        e = engine(snap, "victim")
        down = _down(e)
        assert down["severity"] == "critical" and raised_after < 3.0
        assert (
            down["evidence"]["exit"] == "killed by SIGKILL" and down["evidence"]["exit_signal"] == "SIGKILL"
        )
        assert down["evidence"]["exit_code"] is None
        assert 0 <= down["evidence"]["down_for_s"] <= raised_after + 0.5
        assert 0 < down["evidence"]["next_restart_in_s"] <= BACKOFF_S
        assert "killed by SIGKILL" in down["summary"] and "restart in" in down["summary"]
        assert e["last_exit"]["signal"] == signal.SIGKILL
        exited = [ev for ev in e["events"] if ev["state"] == "exited"][-1]
        assert exited["reason"].startswith("killed by SIGKILL"), exited
        assert "GET /metrics" not in exited["reason"] and "INFO" not in exited["reason"], exited
        assert e["alerts"][0]["code"] == "ENGINE_DOWN"  # critical first

        # it stays raised while loading again, with a growing time down; ready again clears it at once
        later = agent.wait(
            "down longer",
            lambda s: (_down(engine(s, "victim")) or {}).get("evidence", {}).get("down_for_s", 0) > 3.5,
            timeout=10,
        )
        assert _down(engine(later, "victim"))["since"] == down["since"]
        back = agent.wait("ready again", lambda s: engine(s, "victim")["state"] == "ready", timeout=30)
        assert _down(engine(back, "victim")) is None
        assert engine(back, "victim")["restarts"] == 1
    finally:
        kill_everything(agent, tmp_path / "state")
