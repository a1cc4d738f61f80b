"""A saturated engine on a real agent: the canary queues behind real work and times out while every scrape
shows tokens flowing — TTFT and the queue say so, HEALTH_LIES does not (it would send the operator to
restart a working engine), and the engine stays ``ready``."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.agentproc import Agent, engine, free_port, kill_everything, sim, write_config

pytestmark = pytest.mark.timeout(120)


def test_a_canary_timing_out_behind_a_busy_queue_is_not_health_lies(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(
        tmp_path,
        port,
        [
            {
                "id": "busy",
                "kind": "vllm",
                "model": "m",
                "port": free_port(),
                "command": sim("vllm"),
                # 2 sequences at a time, 60 ms a step, 30 requests a second: the queue only grows
                "args": ["--load", "30", "--max-num-seqs", "2", "--decode-ms", "60"],
            }
        ],
        agent={"canary_interval_s": 1.0, "canary_timeout_s": 1.0},
    )
    agent = Agent(config, port)
    agent.start()
    try:
        agent.wait("ready", lambda s: engine(s, "busy")["state"] == "ready", timeout=30)
        snap = agent.wait(
            "the canary timing out behind the queue",
            lambda s: (
                (engine(s, "busy").get("canary") or {}).get("error", "").startswith("no completion")
                and (engine(s, "busy")["stats"].get("requests_waiting") or 0) > 10
            ),
            timeout=60,
        )
        seen = 0
        deadline = time.monotonic() + 60
        while seen < 10 and time.monotonic() < deadline:  # ten snapshots, the canary failing in each
            snap = agent.snap()
            e = engine(snap, "busy")
            if not (e.get("canary") or {}).get("error", "").startswith("no completion"):
                time.sleep(0.25)
                continue
            assert "HEALTH_LIES" not in {a["code"] for a in e["alerts"]}, e["alerts"]
            assert e["state"] == "ready", e["state"]
            seen += 1
            time.sleep(0.5)
        assert seen == 10, "the canary did not keep failing behind the queue"
        assert (e["stats"].get("generation_tokens_per_s") or 0) > 0
        agent.wait(  # what does say so
            "TTFT_SLO or QUEUE_GROWING",
            lambda s: {"TTFT_SLO", "QUEUE_GROWING"} & {a["code"] for a in engine(s, "busy")["alerts"]},
            timeout=30,
        )
    finally:
        kill_everything(agent, tmp_path / "state")
