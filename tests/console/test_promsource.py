"""The console reads the fleet through a real Prometheus 2.42 and a real VictoriaMetrics (issue 12 §3).

Two real agents (three simulated engines of all three dialects; the second agent with a TTFT target its
engine misses, so it raises TTFT_SLO) are scraped every second by Debian's ``prometheus`` — with the
agent pass-through rule of ``llmconsole rules`` and one rule of its own — or by ``victoria-metrics``,
each with a viewer token from a credentials file, as README's scrape config does. Then:

- ``llmconsole status --prometheus URL --json`` reports for every engine exactly what the agent's own
  snapshot of the same ``seq`` says (state, running, waiting, alerts); the text table's engine rows are
  the rows the console shows for those direct snapshots; the rule-only alert is added once, the agent's
  own alerts are not repeated;
- the first poll carries the graphs' recent past from ``query_range``, equal to the agent's history;
- an agent killed outright turns its host unreachable (``up == 0``) while the other host stays fresh.

Every process is started and stopped by PID under one temporary directory. Skipped only when a binary is
missing (``apt-get install prometheus victoria-metrics``).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from agents.schema import from_dict
from console.fleet import HostResult
from console.promapi import PromClient
from console.promquery import CHANGED_PARTS, fleet_queries
from console.promsource import PrometheusFleetSource
from console.rules import Thresholds, agent_group, render
from console.settings import ConsoleConfig, PrometheusConfig
from console.state import FleetState, apply
from console.status import poll_fleet, render_table
from console.views import FLEET_COLUMNS, fleet_table
from tests.support.promsource_stack import ScrapedFleet, engine, victoria_binary
from tests.support.promstack import prometheus_binary, wait_until

ROOT = Path(__file__).resolve().parents[2]
RULE_ONLY = {
    "groups": [
        {
            "name": "test-only",
            "rules": [
                {
                    "alert": "PromOnlyTest",
                    "expr": 'llmconsole_engine_up{kind="tgi"} == 1',
                    "labels": {"code": "PROM_ONLY", "severity": "info"},
                    "annotations": {"summary": "raised by a Prometheus rule"},
                }
            ],
        }
    ],
}
KINDS = [
    pytest.param(
        "prometheus", marks=pytest.mark.skipif(prometheus_binary() is None, reason="prometheus not installed")
    ),
    pytest.param(
        "victoria-metrics",
        marks=pytest.mark.skipif(victoria_binary() is None, reason="victoria-metrics not installed"),
    ),
]


@pytest.fixture(params=KINDS)
def fleet(request: pytest.FixtureRequest) -> Iterator[ScrapedFleet]:
    root = Path(tempfile.mkdtemp(prefix="llmconsole-promsource-")).resolve()
    rules = []
    if request.param == "prometheus":
        rules = [root / "agent-rules.yml", root / "test-rules.yml"]
        rules[0].write_text(render([agent_group(Thresholds(agent_alert_for="1s"))]))
        rules[1].write_text(json.dumps(RULE_ONLY))
    f = ScrapedFleet(
        root,
        request.param,
        [
            [engine("vllm-a", "vllm", "--load", "2"), engine("tgi-b", "tgi", "--load", "1", gpus=[1])],
            # TTFTs of 0.1-0.4 s: its p95's bucket lies wholly above the 5 ms target, so TTFT_SLO is known
            [engine("sglang-c", "sglang", "--load", "2", "--prefill-ms-per-1k", "400", gpus=[2])],
        ],
        rule_files=rules,
        thresholds=[{}, {"ttft_p95_s": 0.005}],
    )
    try:
        f.start()
        yield f
    finally:
        f.stop()
        shutil.rmtree(root, ignore_errors=True)


def prom_config(f: ScrapedFleet, **kw: Any) -> PrometheusConfig:
    assert f.server is not None
    return PrometheusConfig(name="site", url=f.server.url, **kw)


def poll(f: ScrapedFleet, **kw: Any) -> list[HostResult]:
    async def go() -> list[HostResult]:
        src = PrometheusFleetSource(prom_config(f), **kw)
        try:
            return await src.poll()
        finally:
            await src.aclose()

    return asyncio.run(go())


def wait_ready(f: ScrapedFleet) -> None:
    def ready() -> bool:
        snaps = [f.snapshot(a) for a in f.agents]
        return all(s and all(e["state"] == "ready" and e["stats"] for e in s["engines"]) for s in snaps)

    wait_until(ready, 120, "every engine ready with stats", interval_s=0.5)

    def seen() -> bool:  # through the server: every engine ready, the agent's TTFT_SLO and the rules' alerts
        results = {r.host: r for r in poll(f, fetch_history=False)}
        if set(results) != {f.host(0), f.host(1)} or any(r.snapshot is None for r in results.values()):
            return False
        engines = [e for r in results.values() for e in r.snapshot.engines]  # type: ignore[union-attr]
        codes = {a.code for e in engines for a in e.alerts}
        want = {"TTFT_SLO"} | ({"PROM_ONLY"} if f.kind == "prometheus" else set())
        return len(engines) == 3 and all(e.state == "ready" and e.stats for e in engines) and want <= codes

    wait_until(
        seen,
        90,
        f"the fleet through {f.kind}",
        interval_s=1.0,
        describe=lambda: f.server.log_tail() if f.server else "",
    )


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LLMCONSOLE_CONFIG": "", "XDG_CONFIG_HOME": str(cwd)}
    return subprocess.run(
        [sys.executable, "-m", "console.cli", *args],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=cwd,
        env=env,
    )


def engine_rows(text_or_state: Any, now: float | None = None) -> dict[str, list[str]]:
    view = fleet_table(text_or_state, now if now is not None else text_or_state.now)
    return {k: [c.display for c in view.rows[k]] for k in view.order if "/" in k}


def test_status_through_the_server_matches_what_the_agents_report(
    fleet: ScrapedFleet, tmp_path: Path
) -> None:
    wait_ready(fleet)
    assert fleet.server is not None
    r = cli("status", "--prometheus", fleet.server.url, "--json", cwd=tmp_path)
    assert r.returncode in (0, 1) and "Traceback" not in r.stderr, r.stderr
    doc = json.loads(r.stdout)
    assert doc["problems"] == [] and doc["exit_code"] == r.returncode
    by_host = {h["name"]: h for h in doc["hosts"]}
    assert set(by_host) == {fleet.host(0), fleet.host(1)}
    for i, agent in enumerate(fleet.agents):
        h = by_host[fleet.host(i)]
        assert (
            h["status"] == "fresh"
            and h["route"] == "via Prometheus " + fleet.server.url.split("//")[1].split(":")[0]
        )
        direct = fleet.history(agent)[h["seq"]]  # the agent's own snapshot of the very seq the server holds
        assert h["agent_version"] == direct["agent_version"] and h["gpu_source"] == direct["gpu_source"]
        assert [e["id"] for e in h["engines"]] == sorted(e["id"] for e in direct["engines"])
        for e in h["engines"]:
            d = next(x for x in direct["engines"] if x["id"] == e["id"])
            assert (e["state"], e["kind"], e["simulated"], e["gpus"], e["restarts"]) == (
                d["state"],
                d["kind"],
                d["simulated"],
                d["gpus"],
                d["restarts"],
            )
            assert e["stats_live"] and e["stats"] is not None
            for key in (
                "requests_running",
                "requests_waiting",
                "kv_cache_usage",
                "ttft_p95_s",
                "generation_tokens_per_s",
            ):
                assert e["stats"][key] == d["stats"][key], (e["id"], key)
            own = sorted(a["code"] for a in d["alerts"])
            got = sorted(a["code"] for a in e["alerts"])
            extra = ["PROM_ONLY"] if fleet.kind == "prometheus" and e["kind"] == "tgi" else []
            assert got == sorted(own + extra), (e["id"], got, own)
        assert sorted(a["code"] for a in h["alerts"]) == sorted(a["code"] for a in direct["alerts"])
    assert any(a["code"] == "TTFT_SLO" for e in by_host[fleet.host(1)]["engines"] for a in e["alerts"])

    async def seqs_by_part() -> dict[str, set[str]]:  # what the mixed-scrape check reads, on this server
        client = PromClient(prom_config(fleet))
        try:
            queries = fleet_queries(prom_config(fleet).match)
            return {
                part: {
                    labels["host"]
                    for labels, _ in (await client.vector(queries[part]))[1]
                    if labels.get("__name__") == "llmconsole_snapshot_seq"
                }
                for part in CHANGED_PARTS
            }
        finally:
            await client.aclose()

    hosts = {fleet.host(0), fleet.host(1)}
    assert asyncio.run(seqs_by_part()) == {part: hosts for part in CHANGED_PARTS}

    # the text table: its engine rows are the console's rows for the agents' own snapshots of the same seq
    config = ConsoleConfig(prometheus=(prom_config(fleet),))
    state, problems = asyncio.run(poll_fleet(config))
    assert problems == []
    now = time.monotonic()
    direct_results = []
    for i, agent in enumerate(fleet.agents):
        snap = state.host(fleet.host(i)).snapshot  # type: ignore[union-attr]
        own = from_dict(fleet.history(agent)[snap.seq])
        own = replace(  # less what the exporter does not carry: the percentiles' buckets ("≤60ms" there)
            own,
            engines=tuple(
                replace(e, stats=replace(e.stats, quantile_buckets=None)) if e.stats else e
                for e in own.engines
            ),
        )
        direct_results.append(HostResult(fleet.host(i), own, None, 0.001, now))
    direct_state = apply(FleetState.initial(ConsoleConfig(), now), direct_results, now)
    got, want = engine_rows(state), engine_rows(direct_state, now)
    alerts_col = [k for k, _ in FLEET_COLUMNS].index("alerts")
    assert set(got) == set(want)
    for key in got:
        if fleet.kind == "prometheus":
            got[key][alerts_col] = want[key][alerts_col] = ""  # the rule-only alert is extra there
        assert got[key] == want[key], key
    text = render_table(state, problems)
    assert "not live" not in text and " ~" not in text  # nothing from the server is shown as stale
    plain = cli("status", "--prometheus", fleet.server.url, cwd=tmp_path)
    assert plain.stdout.splitlines()[0].split()[:3] == ["HOST", "/", "ENGINE"]
    kinds = [
        k
        for line in plain.stdout.splitlines()
        for k in ("vllm", "tgi", "sglang")
        if f" {k} SIMULATED " in line
    ]
    assert sorted(kinds) == ["sglang", "tgi", "vllm"] and "via Prometheus" in plain.stdout


def test_graphs_are_backfilled_and_a_killed_agent_turns_unreachable(fleet: ScrapedFleet) -> None:
    wait_ready(fleet)
    time.sleep(4)  # a few more scrapes of history
    results = {r.host: r for r in poll(fleet, history_step_s=1.0)}
    r0 = results[fleet.host(0)]
    assert r0.snapshot is not None and len(r0.history) >= 3, len(r0.history)
    assert all(s.seq < r0.snapshot.seq for s in r0.history)
    own = fleet.history(fleet.agents[0])
    for past in r0.history:
        if past.seq not in own:
            continue  # older than the agent keeps
        for e in past.engines:
            d = next(x for x in own[past.seq]["engines"] if x["id"] == e.id)
            assert e.stats is not None and e.stats.requests_running == d["stats"]["requests_running"]
    state = apply(
        FleetState.initial(ConsoleConfig(), time.monotonic()), list(results.values()), time.monotonic()
    )
    h0 = state.host(fleet.host(0))
    assert h0 is not None and all(len(s) >= 3 for s in h0.series.values())  # the graphs start filled

    async def kill_and_watch() -> dict[str, HostResult]:
        src = PrometheusFleetSource(prom_config(fleet, refresh_s=0.1, stale_after_s=30), fetch_history=False)
        try:
            seen = {r.host: r for r in await src.poll()}
            assert seen[fleet.host(1)].snapshot is not None  # seen alive: its scrape target is known
            fleet.kill(1)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                await asyncio.sleep(0.5)
                got = {r.host: r for r in await src.poll()}  # the hosts with news (the others keep theirs)
                seen.update(got)
                if fleet.host(1) in got and got[fleet.host(1)].error is not None:
                    return seen
            raise AssertionError("the killed agent never showed as down")
        finally:
            await src.aclose()

    got = asyncio.run(kill_and_watch())
    err = got[fleet.host(1)].error
    assert err is not None and err.kind == "unreachable" and "up == 0" in err.message
    assert got[fleet.host(0)].snapshot is not None  # the other host still renders
