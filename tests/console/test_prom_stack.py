"""A real Prometheus and Alertmanager on the demo fleet (issue 12 §2).

The demo fleet (three real agents, nine simulated engines, ``FAST`` timings, the scripted ``hang@T``) is
scraped by Debian's ``prometheus`` with a viewer token from a credentials file, and evaluated against the
rules ``llmconsole rules`` ships — the same generator, with test-sized ``for:`` and stall window through
:class:`console.rules.Thresholds`. The hang must become a firing ``LLMConsoleAgentAlert`` (code
``ENGINE_HUNG``) in ``/api/v1/alerts`` within hung_after_s + the agent's interval + scrape interval +
evaluation interval + ``for`` (plus a margin for a busy 2-core machine) of the hang, and never before it;
the normalized-series rule ``LLMEngineStalled`` must fire for the same engine; Debian's
``prometheus-alertmanager`` must post it to a webhook receiver in this process with host, engine and code.
Healthy engines raise neither, and no loaded rule reports an evaluation error. Every process is started
and stopped by PID under one temporary directory, and none is left at the end.

Skipped only when the binaries are missing (``.ci/run`` installs both packages).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from agents.auth import hash_token, new_token
from console.demo_fleet import FAST, DemoFleet, marked_pids, plan_fleet
from console.rules import AGENT_JOB, Alert, Thresholds, build_groups, render
from tests.support.promstack import (
    Alertmanager,
    Prometheus,
    ScrapeJob,
    WebhookReceiver,
    alertmanager_binary,
    alertmanager_config,
    alive,
    descendants,
    prometheus_binary,
    prometheus_config,
    skip_reason,
    wait_until,
)

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_RULES = ROOT / "deploy" / "prometheus" / "llmconsole-rules.yml"

TIMINGS = FAST  # the demo's own --fast timings: hang 8 s after ready, ENGINE_HUNG after 4 s without progress
SCRAPE_INTERVAL_S = 1.0
EVAL_INTERVAL_S = 1.0
# test-sized durations; every other knob as shipped
RULES = Thresholds(agent_alert_for="2s", stall_window="10s", stall_for="2s")
MARGIN_S = 20.0  # a busy 2-core machine: three agents, nine engines, Prometheus and Alertmanager share it
DELIVERY_MARGIN_S = 15.0
GROUP_WAIT_S = 1.0
PR_SET_CHILD_SUBREAPER = 36


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    for suffix in ("ms", "s", "m", "h"):
        if duration.endswith(suffix):
            return float(duration[: -len(suffix)]) * units[suffix]
    raise ValueError(duration)


def epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def rule_for(name: str) -> str:
    found = {
        r.for_
        for g in build_groups(thresholds=RULES)
        for r in g.rules
        if isinstance(r, Alert) and r.alert == name
    }
    assert len(found) == 1 and None not in found, found
    return str(found.pop())


def unset_subreaper() -> None:
    """DemoFleet.start makes this process a child subreaper for the fleet's orphans; undo it."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


@dataclasses.dataclass
class Stack:
    """The demo fleet, Prometheus, Alertmanager and the webhook receiver, under one temporary directory."""

    root: Path
    fleet: DemoFleet
    viewer_token_file: Path
    hook: WebhookReceiver
    alertmanager: Alertmanager
    prometheus: Prometheus
    children_before: set[int]
    cleanup: contextlib.ExitStack

    def pids(self) -> list[int]:
        procs = [a.proc for a in self.fleet.agents] + [self.prometheus.proc, self.alertmanager.proc]
        return [p.pid for p in procs if p is not None]

    def teardown(self) -> None:
        """Stop everything by PID: the fleet, then Prometheus, Alertmanager, the receiver (idempotent)."""
        self.cleanup.close()

    def diagnostics(self) -> str:
        parts = [
            f"--- prometheus log\n{self.prometheus.log_tail()}",
            f"--- alertmanager log\n{self.alertmanager.log_tail()}",
        ]
        parts += [f"--- agent {a.plan.name} log: {a.log_tail()}" for a in self.fleet.agents]
        return "\n".join(parts)


def add_viewer_tokens(fleet: DemoFleet, root: Path) -> Path:
    """One viewer token for Prometheus, accepted by every agent (appended to each tokens file before the
    agents start); returns its credentials file (mode 0600, the token and a newline)."""
    token = new_token()
    for agent in fleet.agents:
        with open(agent.hostdir / "tokens", "a") as f:
            f.write(f"prometheus viewer {hash_token(token)}\n")
    path = root / "prometheus.token"
    path.write_text(token + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def stack() -> Iterator[Stack]:
    root = Path(tempfile.mkdtemp(prefix="llmconsole-promstack-")).resolve()
    children_before = descendants()
    with contextlib.ExitStack() as cleanup:  # callbacks run last-registered first
        cleanup.callback(shutil.rmtree, root, ignore_errors=True)
        fleet = DemoFleet(root / "fleet", plan_fleet(3, TIMINGS), TIMINGS)
        fleet.prepare()  # ports, tokens and configs: Prometheus can be configured before any agent runs
        viewer = add_viewer_tokens(fleet, root)
        rules_file = root / "llmconsole-rules.yml"
        rules_file.write_text(render(build_groups(thresholds=RULES)))

        hook = WebhookReceiver().start()
        cleanup.callback(hook.stop)
        am_config = alertmanager_config(
            hook.url,
            receiver="llmconsole-test",
            group_by=("alertname", "instance", "engine", "code"),
            group_wait_s=GROUP_WAIT_S,
            group_interval_s=1.0,
        )
        am = Alertmanager(str(alertmanager_binary()), root / "alertmanager", am_config)
        cleanup.callback(am.stop)
        am.start()

        job = ScrapeJob(AGENT_JOB, [f"127.0.0.1:{a.port}" for a in fleet.agents], credentials_file=viewer)
        prom_config = prometheus_config(
            [job],
            scrape_interval_s=SCRAPE_INTERVAL_S,
            evaluation_interval_s=EVAL_INTERVAL_S,
            rule_files=[rules_file],
            alertmanagers=[f"127.0.0.1:{am.port}"],
        )
        prom = Prometheus(str(prometheus_binary()), root / "prometheus", prom_config)
        cleanup.callback(prom.stop)
        prom.start()

        cleanup.callback(unset_subreaper)
        cleanup.callback(fleet.stop)
        fleet.start()  # the hang is timed from the engine's readiness: Prometheus already scrapes by then
        fleet.wait_ready(90.0, lambda _ready, _total: None)
        yield Stack(root, fleet, viewer, hook, am, prom, children_before, cleanup)
    assert not root.exists()


def agent_snapshot(url: str, token: str) -> dict[str, Any]:
    with httpx.Client(timeout=5.0, trust_env=False) as c:
        r = c.get(url + "/v1/snapshot", headers={"Authorization": f"Bearer {token}"})
    r.raise_for_status()
    return dict(r.json())


@pytest.mark.skipif(skip_reason() is not None, reason=str(skip_reason()))
@pytest.mark.timeout(240)
def test_demo_hang_fires_in_prometheus_and_reaches_the_webhook(stack: Stack) -> None:
    started = time.monotonic()
    fleet, prom, hook = stack.fleet, stack.prometheus, stack.hook
    hung_host = next(a for a in fleet.agents if any("hang@" in " ".join(e.args) for e in a.plan.engines))
    hung_engine = next(e.id for e in hung_host.plan.engines if "hang@" in " ".join(e.args))
    instance = f"127.0.0.1:{hung_host.port}"
    healthy = {e.id for a in fleet.agents for e in a.plan.engines if e.incident is None}
    viewer = stack.viewer_token_file.read_text().strip()

    # The rules Prometheus loaded are the shipped generator's, only with test-sized durations.
    assert render(build_groups()) == SHIPPED_RULES.read_text()
    expected = {
        r.alert if isinstance(r, Alert) else r.record for g in build_groups(thresholds=RULES) for r in g.rules
    }
    loaded = {r["name"] for g in prom.rules() for r in g["rules"]}
    assert loaded == expected

    # /metrics needs a token; Prometheus scrapes all three agents with the viewer token from its file.
    with httpx.Client(timeout=5.0, trust_env=False) as c:
        assert c.get(hung_host.url + "/metrics").status_code == 401
    wait_until(
        lambda: (
            (t := [x for x in prom.targets() if x["labels"]["job"] == AGENT_JOB])
            and len(t) == 3
            and all(x["health"] == "up" for x in t)
        ),
        30.0,
        "all three agents scraped (health up)",
        describe=lambda: repr(prom.targets()),
    )

    # When the hang began: the agent's "ready" transition of that engine plus the scripted hang_at_s.
    def ready_at() -> float | None:
        snap = agent_snapshot(hung_host.url, viewer)
        engine = next(e for e in snap["engines"] if e["id"] == hung_engine)
        readies = [ev["at"] for ev in engine.get("events") or [] if ev["state"] == "ready"]
        return epoch(readies[-1]) if readies else None

    onset = wait_until(ready_at, 30.0, f"{hung_engine} ready") + TIMINGS.hang_at_s
    host_label = agent_snapshot(hung_host.url, viewer)["host"]

    agent_for = seconds(rule_for("LLMConsoleAgentAlert"))
    nominal = TIMINGS.hung_after_s + TIMINGS.interval_s + SCRAPE_INTERVAL_S + EVAL_INTERVAL_S + agent_for
    bound = nominal + MARGIN_S

    def hung_alert(name: str) -> dict[str, Any] | None:
        for a in prom.alerts():
            lb = a["labels"]
            if (lb.get("alertname"), lb.get("instance"), lb.get("engine"), lb.get("code")) == (
                name,
                instance,
                hung_engine,
                "ENGINE_HUNG",
            ) and a["state"] == "firing":
                return dict(a)
        return None

    timeout = max(5.0, onset + bound + 5.0 - time.time())
    firing = wait_until(
        lambda: hung_alert("LLMConsoleAgentAlert"),
        timeout,
        f"LLMConsoleAgentAlert ENGINE_HUNG for {hung_engine}",
        interval_s=0.2,
        describe=stack.diagnostics,
    )
    fired_after = time.time() - onset
    active_after = epoch(firing["activeAt"]) - onset
    assert fired_after <= bound, (
        f"firing {fired_after:.1f} s after the hang; bound {bound:.1f} s (nominal {nominal:g} s)"
    )
    assert active_after >= 0, f"the alert was pending {-active_after:.1f} s before the hang began"
    labels = firing["labels"]
    assert labels["host"] == host_label and labels["job"] == AGENT_JOB
    assert labels["severity"] == "critical" and labels["source"] == "agent"

    # The summary annotation is the agent's own evidence text, looked up by the rule's query template.
    summaries = {
        s["metric"].get("summary")
        for s in prom.query(
            f'llmconsole_alerts_active{{instance="{instance}",engine="{hung_engine}",code="ENGINE_HUNG"}}[5m]'
        )
    }
    summary = firing["annotations"]["summary"]
    assert summary in summaries and summary != "ENGINE_HUNG", (summary, summaries)

    # Alertmanager posts it to the webhook with host, engine and code.
    def delivered(d: Any) -> dict[str, Any] | None:
        body = d.body if isinstance(d.body, dict) else {}
        for a in body.get("alerts") or []:
            lb = a.get("labels") or {}
            if (
                lb.get("alertname") == "LLMConsoleAgentAlert"
                and lb.get("code") == "ENGINE_HUNG"
                and lb.get("engine") == hung_engine
            ):
                return {"payload": body, "alert": a, "at": d.received_at}
        return None

    got = hook.wait_for(delivered, EVAL_INTERVAL_S + GROUP_WAIT_S + DELIVERY_MARGIN_S, "the webhook delivery")
    payload, alert = got["payload"], got["alert"]
    assert payload["status"] == "firing" and payload["receiver"] == "llmconsole-test"
    assert alert["status"] == "firing"
    assert alert["labels"]["host"] == host_label
    assert alert["labels"]["engine"] == hung_engine
    assert alert["labels"]["code"] == "ENGINE_HUNG"
    assert alert["labels"]["instance"] == instance
    assert alert["annotations"]["summary"] in summaries
    assert alert["generatorURL"].startswith(prom.url + "/")  # it came through this Prometheus
    assert got["at"] - onset <= bound + GROUP_WAIT_S + DELIVERY_MARGIN_S

    # The rule on the normalized engine series sees the same stall (the agent's gauges and counters).
    stall_bound = (
        seconds(RULES.stall_window)
        + TIMINGS.interval_s
        + SCRAPE_INTERVAL_S
        + EVAL_INTERVAL_S
        + seconds(RULES.stall_for)
        + MARGIN_S
    )
    timeout = max(5.0, onset + stall_bound + 5.0 - time.time())

    def stalled() -> dict[str, Any] | None:
        # the engine rules aggregate by (host, engine, kind, model): no instance label
        for a in prom.alerts():
            lb = a["labels"]
            if (lb.get("alertname"), lb.get("engine"), lb.get("host"), a["state"]) == (
                "LLMEngineStalled",
                hung_engine,
                host_label,
                "firing",
            ):
                return dict(a)
        return None

    stall = wait_until(
        stalled, timeout, f"LLMEngineStalled for {hung_engine}", interval_s=0.2, describe=stack.diagnostics
    )
    stall_after = time.time() - onset
    assert stall["labels"]["source"] == "llmconsole" and stall["labels"]["code"] == "ENGINE_HUNG"
    assert stall_after <= stall_bound, (
        f"LLMEngineStalled {stall_after:.1f} s after the hang; bound {stall_bound:g} s"
    )

    # Healthy engines raise neither; every rule evaluated without error against the real series.
    final = prom.alerts()
    false = [
        a["labels"]
        for a in final
        if a["labels"].get("code") == "ENGINE_HUNG" and a["labels"].get("engine") in healthy
    ]
    assert not false, false
    broken = [
        (r["name"], r.get("lastError")) for g in prom.rules() for r in g["rules"] if r.get("health") == "err"
    ]
    assert not broken, broken

    # Nothing is left: every process stopped by PID, no marked fleet process, no new child of this one.
    pids = stack.pids()
    stack.teardown()
    assert not [p for p in pids if alive(p)]
    assert not marked_pids(fleet.workdir)
    assert not descendants() - stack.children_before
    print(
        f"\nhang→firing {fired_after:.1f} s (nominal {nominal:g} s, bound {bound:g} s); "
        f"activeAt {active_after:.1f} s after the hang; webhook {got['at'] - onset:.1f} s; "
        f"stalled rule {stall_after:.1f} s; whole test {time.monotonic() - started:.1f} s"
    )


def test_skip_reason_names_the_missing_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    import tests.support.promstack as promstack

    monkeypatch.setattr(promstack, "PROMETHEUS_PATHS", ())
    monkeypatch.setattr(promstack, "ALERTMANAGER_PATHS", ())
    reason = promstack.skip_reason()
    assert (
        reason is not None and "apt-get install prometheus" in reason and "prometheus-alertmanager" in reason
    )
    assert os.environ["PATH"] == str(tmp_path)
