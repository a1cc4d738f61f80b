"""Soak: a healthy fleet under steady load raises no alert for 10 minutes.

Two demo hosts (real agents, real simulated engines of all three dialects, simulated GPUs), every engine
under steady synthetic load (the simulated engine's own clients, ``--load``) plus the agents' canaries;
the demo's short thresholds (``NORMAL``: hung after 20 s, KV pressure held 10 s, …) make every rule more
sensitive than in production. Every agent's snapshot is read every 2 s for ``LLMCONSOLE_SOAK_S`` seconds
(default 600); any engine or host alert, any engine not ready, or an agent that stops answering fails the
test with what was seen and when. Marked ``soak``: not part of the fast suite; ``.ci/run`` runs it as its
own stage.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest

from console.demo_fleet import NORMAL, DemoFleet, EnginePlan, HostPlan

SOAK_S = float(os.environ.get("LLMCONSOLE_SOAK_S", "600"))
pytestmark = [pytest.mark.soak, pytest.mark.timeout(SOAK_S + 400)]
POLL_S = 2.0

_ENGINES = (
    EnginePlan("llama-8b", "vllm", "sim/llama-3.1-8b-instruct", ("--load", "6", "--worker")),
    EnginePlan("qwen-7b", "sglang", "sim/qwen2.5-7b-instruct", ("--load", "4")),
    EnginePlan("mistral-7b", "tgi", "sim/mistral-7b-instruct", ("--load", "3")),
)
PLANS = [HostPlan("soak-a", _ENGINES), HostPlan("soak-b", _ENGINES)]


def test_a_healthy_fleet_under_steady_load_raises_no_alert(tmp_path: Path) -> None:
    fleet = DemoFleet(tmp_path, PLANS, NORMAL)
    seen: list[str] = []
    polls = 0
    try:
        fleet.prepare()
        fleet.start()
        fleet.wait_ready(180.0, lambda ready, total: None)
        deadline = time.monotonic() + SOAK_S
        started = time.monotonic()
        tokens_at_start: dict[str, float] = {}
        with httpx.Client(timeout=5.0) as client:
            while time.monotonic() < deadline:
                for agent in fleet.agents:
                    r = client.get(
                        agent.url + "/v1/snapshot", headers={"Authorization": f"Bearer {agent.token}"}
                    )
                    assert r.status_code == 200, f"{agent.plan.name} answered HTTP {r.status_code}"
                    snap = r.json()
                    at = f"t+{time.monotonic() - started:.0f}s {snap['host']}"
                    seen += [f"{at}: host alert {a['code']}: {a['summary']}" for a in snap["alerts"]]
                    for e in snap["engines"]:
                        seen += [f"{at}/{e['id']}: {a['code']}: {a['summary']}" for a in e["alerts"]]
                        if e["state"] != "ready":
                            seen.append(f"{at}/{e['id']}: state {e['state']}")
                        gen = (e.get("stats") or {}).get("generation_tokens_per_s")
                        if gen:
                            tokens_at_start.setdefault(f"{snap['host']}/{e['id']}", gen)
                polls += 1
                assert not seen, "a healthy engine raised alerts:\n" + "\n".join(dict.fromkeys(seen))
                time.sleep(POLL_S)
        # the load was real: every engine served tokens during the soak
        assert len(tokens_at_start) == sum(len(p.engines) for p in PLANS), tokens_at_start
        print(
            f"\nsoak: {SOAK_S:.0f} s, {polls} polls of {len(fleet.agents)} agents, "
            f"{fleet.engine_count} engines under steady load, no alert"
        )
    finally:
        fleet.stop()
