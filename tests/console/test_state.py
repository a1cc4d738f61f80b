"""The pure fleet reducer: statuses by receive time, series from history + polls, console alerts, acks."""

from __future__ import annotations

import math
from dataclasses import replace

from agents.schema import EngineStats
from console.state import EngineSeries, FleetState, acknowledge, apply
from tests.console.conftest import T0, cfg, down, ok, snap_at


def test_first_contact_seeds_series_from_history_then_dedupes_by_seq() -> None:
    config = cfg("gpu01")
    history = tuple(snap_at(i) for i in range(1, 31))  # 30 s of agent history
    s = apply(FleetState.initial(config, 100.0), [ok("gpu01", snap_at(30), 100.0, history)], 100.0, T0 + 30)
    h = s.hosts["gpu01"]
    assert h.status == "fresh" and h.snapshot is not None and h.snapshot.seq == 30
    assert len(h.series["llama70b"]) == 30  # seq 30 came both in history and as the poll: one point
    pts = h.series["llama70b"].points("ttft_p95_s", 100.0)
    assert pts[-1][0] == 0.0 and pts[0][0] == -29.0  # agent spacing kept, newest at "now"
    assert all(y == 0.164 for _, y in pts)
    # the same seq again: no new point, and the host ages from when seq 30 was RECEIVED
    s = apply(s, [ok("gpu01", snap_at(30), 104.0)], 104.0)
    assert len(s.hosts["gpu01"].series["llama70b"]) == 30 and s.hosts["gpu01"].status == "fresh"
    s = apply(s, [ok("gpu01", snap_at(30), 106.0)], 106.0)
    h = s.hosts["gpu01"]
    assert h.status == "stale" and h.age(106.0) == 6.0
    stale = [a for a in s.alerts if a.alert.code == "AGENT_STALE"]
    assert (
        len(stale) == 1 and stale[0].alert.severity == "warning" and stale[0].alert.evidence["age_s"] == 6.0
    )
    # a new seq makes it fresh again and clears the alert into "recent"
    s = apply(s, [ok("gpu01", snap_at(31), 107.0)], 107.0)
    assert s.hosts["gpu01"].status == "fresh"
    assert not [a for a in s.alerts if a.alert.code == "AGENT_STALE"]
    assert [a.alert.code for a in s.recent] == ["AGENT_STALE"] and s.recent[0].cleared_at == 107.0


def test_staleness_never_compares_agent_and_console_wall_clocks() -> None:
    """An agent whose wall clock is a day behind is fresh when its snapshots keep arriving."""
    config = cfg("gpu01")
    s = FleetState.initial(config, 0.0)
    for i in range(1, 5):
        s = apply(s, [ok("gpu01", snap_at(i, wall=T0 - 86400 + i), float(i))], float(i), T0 + i)
    assert s.hosts["gpu01"].status == "fresh"
    assert s.hosts["gpu01"].series["llama70b"].points("kv_cache_usage", 4.0)[-1] == (0.0, 0.61)


def test_unreachable_keeps_last_snapshot_alerts_with_evidence_and_recovers() -> None:
    config = cfg("gpu01", "gpu02")
    s = apply(
        FleetState.initial(config, 0.0), [ok("gpu01", snap_at(1), 1.0), ok("gpu02", snap_at(1), 1.0)], 1.0, T0
    )
    s = apply(s, [ok("gpu01", snap_at(2), 2.0), down("gpu02", 2.0, "timed out after 2s")], 2.0, T0 + 1)
    h = s.hosts["gpu02"]
    assert (h.status, h.since, h.snapshot.seq) == ("unreachable", 2.0, 1)
    assert s.hosts["gpu01"].status == "fresh"  # one broken host does not affect another
    s = apply(s, [ok("gpu01", snap_at(3), 5.0), down("gpu02", 5.0, "timed out after 2s")], 5.0, T0 + 4)
    alert = next(a for a in s.alerts if a.alert.code == "AGENT_UNREACHABLE")
    assert alert.host == "gpu02" and alert.console and alert.alert.severity == "critical"
    assert (
        alert.alert.evidence["message"] == "timed out after 2s"
        and alert.alert.evidence["last_snapshot_age_s"] == 4.0
    )
    assert alert.alert.since == "2025-06-15T15:06:41.000Z"  # the moment it became unreachable, not now
    assert s.hosts["gpu02"].since == 2.0  # since does not move while the status holds
    # back: fresh, the unreachable alert is now recent
    s = apply(s, [ok("gpu02", snap_at(7), 7.0)], 7.0, T0 + 6)
    assert s.hosts["gpu02"].status == "fresh" and s.hosts["gpu02"].error is None
    assert "AGENT_UNREACHABLE" in [a.alert.code for a in s.recent]


def test_incompatible_host_raises_schema_mismatch() -> None:
    config = cfg("gpu05")
    r = down(
        "gpu05",
        1.0,
        "agent speaks llmconsole.snapshot/2, this console reads llmconsole.snapshot/1.x",
        "incompatible",
    )
    r = replace(r, error=replace(r.error, found_schema="llmconsole.snapshot/2"))
    s = apply(FleetState.initial(config, 0.0), [r], 1.0, T0)
    assert s.hosts["gpu05"].status == "incompatible"
    (a,) = s.alerts
    assert a.alert.code == "SCHEMA_MISMATCH" and a.alert.evidence == {
        "found": "llmconsole.snapshot/2",
        "expected": "llmconsole.snapshot/1",
    }


def test_stats_not_live_are_gaps_and_missed_polls_are_never_bridged() -> None:
    config = cfg("gpu01")
    s = FleetState.initial(config, 0.0)
    s = apply(s, [ok("gpu01", snap_at(1), 1.0)], 1.0)
    old = snap_at(2)
    aged = replace(old, engines=tuple(replace(e, stats_age_s=30.0) for e in old.engines))  # scrape stale
    s = apply(s, [ok("gpu01", aged, 2.0)], 2.0)
    s = apply(s, [ok("gpu01", snap_at(3), 3.0)], 3.0)
    for t in (4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0):  # seven failed polls
        s = apply(s, [down("gpu01", t)], t)
    s = apply(s, [ok("gpu01", snap_at(11), 11.0)], 11.0)
    pts = s.hosts["gpu01"].series["llama70b"].points("requests_running", 11.0, gap_s=s.gap_s)
    values = [y for _, y in pts]
    assert values[:3] == [14, None, 14]  # the stale scrape is a gap, not its old value
    assert values[3] is None and values[4] == 14  # a gap inserted over the outage (8 s > gap_s)
    assert pts[3][0] == -4.0  # halfway between -8 and 0


def test_agent_restart_resets_seq_watermark() -> None:
    config = cfg("gpu01")
    s = apply(FleetState.initial(config, 0.0), [ok("gpu01", snap_at(500), 1.0)], 1.0)
    s = apply(s, [ok("gpu01", snap_at(3, wall=T0 + 600), 2.0)], 2.0)  # the agent restarted: seq began again
    assert s.hosts["gpu01"].snapshot.seq == 3 and s.hosts["gpu01"].status == "fresh"
    assert len(s.hosts["gpu01"].series["llama70b"]) == 2


def test_agent_wall_clock_jump_does_not_freeze_graphs() -> None:
    config = cfg("gpu01")
    s = FleetState.initial(config, 0.0)
    for i in range(1, 4):
        s = apply(s, [ok("gpu01", snap_at(i), float(i))], float(i))
    s = apply(s, [ok("gpu01", snap_at(4, wall=T0 - 3600), 4.0)], 4.0)  # agent clock jumped back 1 h
    s = apply(s, [ok("gpu01", snap_at(5, wall=T0 - 3599), 5.0)], 5.0)
    pts = s.hosts["gpu01"].series["llama70b"].points("kv_cache_usage", 5.0)
    assert [x for x, _ in pts] == [-4.0, -3.0, -2.0, -1.0, 0.0]


def test_acknowledgement_is_per_occurrence() -> None:
    config = cfg("gpu02")
    s = apply(FleetState.initial(config, 0.0), [down("gpu02", 1.0)], 1.0, T0)
    (a,) = s.alerts
    s = acknowledge(s, a.key)
    assert s.is_acknowledged(s.alerts[0])
    s = apply(s, [down("gpu02", 2.0)], 2.0, T0 + 1)
    assert s.is_acknowledged(s.alerts[0])  # same occurrence: still acknowledged
    s = apply(s, [ok("gpu02", snap_at(1), 3.0)], 3.0, T0 + 2)
    s = apply(s, [down("gpu02", 4.0)], 4.0, T0 + 3)
    new = next(x for x in s.alerts if x.alert.code == "AGENT_UNREACHABLE")
    assert not s.is_acknowledged(new)  # a new occurrence (new since) needs a new acknowledgement


def test_alerts_newest_first_across_hosts_and_engines(full) -> None:
    config = cfg("gpu01")
    s = apply(FleetState.initial(config, 0.0), [ok("gpu01", full, 1.0)], 1.0, T0)
    codes = [(a.engine, a.alert.code) for a in s.alerts]
    assert set(codes) == {
        (None, "GPU_THERMAL"),
        (None, "ORPHAN_GPU_MEMORY"),
        ("qwen-sg", "ENGINE_HUNG"),
        ("qwen-sg", "HEALTH_LIES"),
        ("mistral-tgi", "TTFT_SLO"),
    }
    sinces = [a.alert.since for a in s.alerts]
    assert sinces == sorted(sinces, reverse=True)


def test_engine_series_is_bounded_and_skips_points_closer_than_the_poll_rate() -> None:
    buf = EngineSeries(capacity=10, min_step_s=0.5)
    stats = EngineStats(requests_running=1.0)
    assert buf.append(0.0, stats) and not buf.append(0.2, stats) and buf.append(0.6, stats)
    for i in range(2, 100):
        buf.append(float(i), stats)
    assert 10 <= len(buf) <= 12 and buf.last_x == 99.0
    assert buf.latest("kv_cache_usage") is None and buf.latest("requests_running") == 1.0
    pts = buf.points("requests_running", 99.0, window_s=5.0)
    assert [x for x, _ in pts] == [-5.0, -4.0, -3.0, -2.0, -1.0, 0.0]
    assert not any(isinstance(y, float) and math.isnan(y) for _, y in pts)


def test_pending_hosts_and_hosts_without_results_only_age() -> None:
    config = cfg("gpu01", "gpu02")
    s = apply(FleetState.initial(config, 0.0), [ok("gpu01", snap_at(1), 1.0)], 1.0)
    assert s.hosts["gpu02"].status == "pending"
    s = apply(s, [], 9.0)  # no results at all: gpu01 goes stale by age alone
    assert s.hosts["gpu01"].status == "stale" and s.hosts["gpu01"].since == 6.0
