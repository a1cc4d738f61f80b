"""One hung engine never slows the host: a real agent, three simulated engines, one of them SIGSTOPped.

The stopped engine accepts connections (the kernel does) and never answers, so every probe of it runs into
its own deadline. The agent's snapshots must keep their 1 s cadence for every engine, and the stopped one
must still be flagged (ENGINE_HUNG, health timed out).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.support.agentproc import Agent, engine, free_port, kill_everything, sim, write_config

pytestmark = pytest.mark.timeout(120)

WINDOW_S = 20.0


def _taken(snap: dict) -> float:
    return datetime.fromisoformat(snap["taken_at"].replace("Z", "+00:00")).timestamp()


def _serving(s: dict) -> bool:
    return len(s["engines"]) == 3 and all(
        e["state"] == "ready" and e["stats"] is not None for e in s["engines"]
    )


def test_a_stopped_engine_keeps_the_host_cadence(tmp_path: Path) -> None:
    port = free_port()
    engines = [
        {
            "id": eid,
            "kind": "vllm",
            "model": eid,
            "port": free_port(),
            "command": sim("vllm"),
            "args": ["--load", "2"],
        }
        for eid in ("ok-a", "ok-b", "stuck")
    ]
    # interval 1 s as shipped; health deadline min(2, 2 × interval) = 2 s is what used to hold every tick
    config = write_config(tmp_path, port, engines, agent={"interval_s": 1.0, "canary_timeout_s": 1.5})
    agent = Agent(config, port)
    agent.start()
    stopped: int | None = None
    try:
        snap = agent.wait("three engines ready with stats", _serving, timeout=40)
        stopped = engine(snap, "stuck")["pid"]
        assert isinstance(stopped, int)
        os.kill(stopped, signal.SIGSTOP)

        first = agent.wait("a snapshot taken after the stop", lambda s: s["seq"] > snap["seq"], timeout=10)
        last = first
        deadline = time.monotonic() + WINDOW_S
        while time.monotonic() < deadline:
            got = agent.snap()
            if got is not None and got["seq"] > last["seq"]:
                last = got
            time.sleep(0.25)
        assert last["seq"] - first["seq"] >= 8, "too few snapshots to measure a cadence"
        span = _taken(last) - _taken(first)
        assert span >= 15.0, f"measured over {span:.1f}s only"
        cadence = span / (last["seq"] - first["seq"])
        print(f"cadence {cadence:.3f}s over {span:.1f}s ({last['seq'] - first['seq']} snapshots)")
        assert 0.85 <= cadence <= 1.15, (
            f"snapshot cadence {cadence:.3f}s with one engine stopped (want 1 s ± 15 %)"
        )

        # the healthy engines stay ready and alert-free; the stopped one is flagged as before
        for eid in ("ok-a", "ok-b"):
            e = engine(last, eid)
            assert e["state"] == "ready" and e["alerts"] == [], e
            assert e["stats_age_s"] is not None and e["stats_age_s"] < 2.5, e
        hung = agent.wait(
            "the stopped engine flagged",
            lambda s: (
                "ENGINE_HUNG" in {a["code"] for a in engine(s, "stuck")["alerts"]}
                and engine(s, "stuck")["health"] is not None
                and engine(s, "stuck")["health"]["http_ok"] is False
            ),
            timeout=15,
        )
        stuck = engine(hung, "stuck")
        assert stuck["state"] == "hung", stuck["events"][-3:]
        assert stuck["health"]["http_status"] is None  # no answer at all: timed out, not an HTTP error
        assert stuck["stats_age_s"] is not None and stuck["stats_age_s"] > 5  # its stats are not live
    finally:
        if stopped is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(stopped, signal.SIGCONT)
        kill_everything(agent, tmp_path / "state")
