"""In-process checks of the collector tick with real parts (AgentRuntime, a real simulated engine):

- an engine whose process is SIGSTOPped costs each tick at most the probe budget, not its probe deadlines,
  and its late health probe lands as "timed out" in a following tick; ENGINE_HUNG is raised and cleared
  as before once the engine is continued;
- a supervisor's ``state_error`` (why its last state-file write failed) becomes an ``errors`` entry and the
  host alert STATE_WRITE_FAILED while it is set, and both clear when it is None again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

import pytest

from agents.config import load_agent_config
from agents.runtime import AgentRuntime
from agents.schema import from_json, to_json
from agents.watch import PROBE_BUDGET
from tests.support.agentproc import free_port, sim, write_config

pytestmark = pytest.mark.timeout(90)

INTERVAL_S = 0.5  # health deadline min(2, 2 × interval) = 1 s; scrape deadline 0.8 × interval = 0.4 s


def _runtime(tmp: Path, engines: list[dict], **agent: object) -> AgentRuntime:
    config = write_config(
        tmp, free_port(), engines, agent={"interval_s": INTERVAL_S, **agent}, thresholds={"hung_after_s": 2.0}
    )
    return AgentRuntime(load_agent_config(config))


async def _until(cond, timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        await asyncio.sleep(step)
    return cond()


async def test_a_stopped_engine_costs_a_tick_its_budget_not_its_deadlines(tmp_path: Path) -> None:
    rt = _runtime(
        tmp_path,
        [
            {
                "id": "stuck",
                "kind": "vllm",
                "model": "m",
                "port": free_port(),
                "command": sim("vllm"),
                "args": ["--load", "2"],
            }
        ],
    )
    sup = rt.supervisors["stuck"]
    stopped: int | None = None
    try:
        await sup.start()
        assert await _until(lambda: sup.state == "ready", timeout=30), sup.events

        async def tick() -> tuple[float, object]:
            started = time.monotonic()
            snap = await rt.collector.tick()
            return time.monotonic() - started, snap.engine("stuck")

        for _ in range(40):  # healthy first: stats and a 200 health check, all landed within the tick
            _, e = await tick()
            if e.stats is not None and e.health is not None and e.health.http_ok:
                break
            await asyncio.sleep(INTERVAL_S)
        assert e.health is not None and e.health.http_ok and e.health.error is None and e.stats is not None

        stopped = sup.pid
        assert stopped is not None
        os.kill(stopped, signal.SIGSTOP)
        t_stop = time.monotonic()
        costs: list[float] = []
        landed_at: float | None = None
        while time.monotonic() - t_stop < 12.0:
            cost, e = await tick()
            costs.append(cost)
            if landed_at is None and e.health is not None and not e.health.http_ok:
                landed_at = time.monotonic() - t_stop
                assert e.health.http_status is None and "no complete response within 1s" in (
                    e.health.error or ""
                )
            if landed_at is not None and "ENGINE_HUNG" in {a.code for a in e.alerts}:
                break
            await asyncio.sleep(max(0.0, INTERVAL_S - cost))
        # each tick waited at most the budget (plus scheduling slack), never the 1 s health deadline
        budget = PROBE_BUDGET * INTERVAL_S
        assert max(costs) < budget + 0.3 < 1.0, costs
        assert landed_at is not None and landed_at < 1.0 + 3 * INTERVAL_S, landed_at
        assert "ENGINE_HUNG" in {a.code for a in e.alerts} and sup.state == "hung", (e.alerts, sup.state)
        hung = next(a for a in e.alerts if a.code == "ENGINE_HUNG")
        assert hung.evidence["health_http_status"] is None and hung.evidence["canary_in_flight_s"] is not None
        assert e.stats_age_s is not None and e.stats_age_s > 1.0  # the last good scrape is old: not live

        os.kill(stopped, signal.SIGCONT)
        stopped = None
        for _ in range(40):  # continued: probes answer again, the hang clears
            _, e = await tick()
            if sup.state == "ready" and not e.alerts and e.health is not None and e.health.http_ok:
                break
            await asyncio.sleep(INTERVAL_S)
        assert (
            sup.state == "ready"
            and e.alerts == ()
            and e.stats_age_s is not None
            and e.stats_age_s < 2 * INTERVAL_S
        )
    finally:
        if stopped is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(stopped, signal.SIGCONT)
        await rt.shutdown(stop_engines=True)


async def test_state_write_failures_are_errors_and_a_critical_host_alert(tmp_path: Path, monkeypatch) -> None:
    engines = [
        {
            "id": eid,
            "kind": "vllm",
            "model": "m",
            "port": free_port(),
            "command": sim("vllm"),
            "autostart": False,
        }
        for eid in ("a", "b")
    ]
    rt = _runtime(tmp_path, engines)
    # stand-in for the supervisor's ``state_error`` (the last failed write's reason, None after success)
    reasons: dict[str, str | None] = {}
    monkeypatch.setattr(
        type(rt.supervisors["a"]), "state_error", property(lambda sup: reasons.get(sup.plan.engine_id))
    )
    try:
        snap = await rt.collector.tick()
        assert "STATE_WRITE_FAILED" not in {a.code for a in snap.alerts}
        assert not [e for e in snap.errors if "state write failed" in e]

        reasons["b"] = "Read-only file system (EROFS); PID 4242 is not recorded for re-adoption"
        first = await rt.collector.tick()
        alert = next(a for a in first.alerts if a.code == "STATE_WRITE_FAILED")
        assert (
            alert.severity == "critical"
            and "for b:" in alert.summary
            and "Read-only file system" in alert.summary
        )
        assert alert.evidence == {"engines": [{"engine": "b", "reason": reasons["b"]}]}
        assert f"engine b: state write failed: {reasons['b']}" in first.errors
        assert from_json(to_json(first)).alerts == first.alerts  # on the wire as it is in memory

        reasons["a"] = "No space left on device (ENOSPC); PID 4243 is not recorded for re-adoption"
        second = await rt.collector.tick()
        alert2 = next(a for a in second.alerts if a.code == "STATE_WRITE_FAILED")
        assert [row["engine"] for row in alert2.evidence["engines"]] == ["a", "b"]
        assert alert2.since == alert.since  # one ongoing condition: its start is kept
        assert len([e for e in second.errors if "state write failed" in e]) == 2

        reasons["a"] = reasons["b"] = None  # later writes succeeded
        cleared = await rt.collector.tick()
        assert "STATE_WRITE_FAILED" not in {a.code for a in cleared.alerts}
        assert not [e for e in cleared.errors if "state write failed" in e]
    finally:
        await rt.shutdown(stop_engines=True)


async def test_a_real_failed_state_write_raises_state_write_failed_until_it_succeeds(tmp_path: Path) -> None:
    """End to end: the engine's record path is a directory (fails even for root), so the supervisor's write
    fails; once the obstacle is gone the supervisor's retry succeeds and the alert clears."""
    rt = _runtime(
        tmp_path, [{"id": "rec", "kind": "vllm", "model": "m", "port": free_port(), "command": sim("vllm")}]
    )
    sup = rt.supervisors["rec"]
    if not hasattr(sup, "state_error"):
        pytest.skip("EngineSupervisor.state_error not available")
    blocker = sup.state_path
    blocker.mkdir(parents=True)
    (blocker / "keep").write_text("a non-empty directory where the record goes\n")
    try:
        await sup.start()
        assert await _until(lambda: sup.state_error is not None, timeout=30), sup.events
        snap = await rt.collector.tick()
        alert = next(a for a in snap.alerts if a.code == "STATE_WRITE_FAILED")
        assert alert.severity == "critical" and alert.evidence["engines"][0]["engine"] == "rec"
        assert [e for e in snap.errors if e.startswith("engine rec: state write failed: ")], snap.errors

        (blocker / "keep").unlink()
        blocker.rmdir()
        assert await _until(lambda: sup.state_error is None, timeout=30), sup.events
        snap = await rt.collector.tick()
        assert "STATE_WRITE_FAILED" not in {a.code for a in snap.alerts}
        assert not [e for e in snap.errors if "state write failed" in e]
        assert sup.state_path.is_file()
    finally:
        await rt.shutdown(stop_engines=True)
