"""A hang that ends, on a real agent with a simulated engine whose worker is SIGSTOPped (the real silent hang):

- the hung engine's state history gains one line for the hang, not one a second;
- when the worker continues, the engine is ready again at once (the state follows the live condition, not
  the alert held for hysteresis), and ENGINE_HUNG clears once alert_clear_s has passed;
- the stuck requests' long TTFT raises TTFT_SLO, which clears once they leave the percentile window
  (a cleared hang used to pin "TTFT p95 136000 ms" until the engine was restarted).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support.agentproc import Agent, engine, free_port, kill_everything, sim, write_config

pytestmark = pytest.mark.timeout(120)

WINDOW_S = 10.0
CLEAR_S = 3.0


def _codes(e: dict) -> set[str]:
    return {a["code"] for a in e["alerts"]}


def _request(url: str) -> None:
    with contextlib.suppress(httpx.HTTPError):
        httpx.post(url + "/v1/completions", json={"model": "m", "prompt": "hi", "max_tokens": 4}, timeout=60)


def test_a_hang_that_ends_clears_its_alerts_and_keeps_history_short(tmp_path: Path) -> None:
    port, eport = free_port(), free_port()
    config = write_config(
        tmp_path,
        port,
        [
            {
                "id": "e",
                "kind": "vllm",
                "model": "m",
                "port": eport,
                "command": sim("vllm"),
                "args": ["--worker", "--load", "3"],
            }
        ],
        agent={"interval_s": 0.5, "stats_window_s": WINDOW_S, "canary_timeout_s": 1.0},
        thresholds={"hung_after_s": 3.0, "alert_clear_s": CLEAR_S, "ttft_p95_s": 2.0},
    )
    agent = Agent(config, port)
    agent.start()
    worker: int | None = None
    try:
        snap = agent.wait(
            "ready with stats",
            lambda s: engine(s, "e")["state"] == "ready" and engine(s, "e")["stats"] is not None,
            timeout=30,
        )
        workers = psutil.Process(engine(snap, "e")["pid"]).children()
        assert workers, "the simulated engine has no worker"
        worker = workers[0].pid
        os.kill(worker, signal.SIGSTOP)
        stuck = [
            threading.Thread(target=_request, args=(f"http://127.0.0.1:{eport}",), daemon=True)
            for _ in range(6)
        ]
        for th in stuck:
            th.start()
        hung = agent.wait("hung", lambda s: engine(s, "e")["state"] == "hung", timeout=20)
        time.sleep(4.0)  # several more seconds hung: still one line in the history
        snap = agent.snap()
        assert snap is not None
        e = engine(snap, "e")
        assert e["state"] == "hung" and "ENGINE_HUNG" in _codes(e)
        hung_lines = [ev for ev in e["events"] if ev["state"] == "hung"]
        assert len(hung_lines) == 1, e["events"]
        assert not any(ch.isdigit() for ch in hung_lines[0]["reason"]), (
            hung_lines
        )  # no live counter in the reason
        assert engine(hung, "e")["events"][-1] == hung_lines[0]

        os.kill(worker, signal.SIGCONT)
        continued = time.monotonic()
        agent.wait("ready again", lambda s: engine(s, "e")["state"] == "ready", timeout=10)
        assert time.monotonic() - continued < CLEAR_S + 2.0  # the state does not wait for the alert to clear
        for th in stuck:
            th.join(30)
        slo = agent.wait(
            "TTFT_SLO from the stuck requests", lambda s: "TTFT_SLO" in _codes(engine(s, "e")), timeout=10
        )
        alert = next(a for a in engine(slo, "e")["alerts"] if a["code"] == "TTFT_SLO")
        assert alert["evidence"]["ttft_p95_s"] > 2.0 and "ms above" not in alert["summary"]
        assert alert["evidence"]["window_s"] is not None and alert["evidence"]["window_s"] <= WINDOW_S + 1
        cleared = agent.wait(
            "TTFT_SLO and ENGINE_HUNG cleared",
            lambda s: not ({"TTFT_SLO", "ENGINE_HUNG"} & _codes(engine(s, "e"))),
            timeout=WINDOW_S + CLEAR_S + 10,
        )
        took = time.monotonic() - continued
        assert took <= WINDOW_S + CLEAR_S + 5.0, f"cleared only {took:.1f}s after the hang ended"
        assert engine(cleared, "e")["state"] == "ready"
        states = [ev["state"] for ev in engine(cleared, "e")["events"]]
        after = states[
            len(states) - 1 - states[::-1].index("hung") :
        ]  # from the hang on: one line per transition
        assert after[-1] == "ready" and set(after[1:-1]) <= {"degraded"} and len(after) <= 3, states
    finally:
        if worker is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker, signal.SIGCONT)
        kill_everything(agent, tmp_path / "state")
