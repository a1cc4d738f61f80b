"""Alert rules judge windows, hold alerts for hysteresis, flag a down engine, and take extra rules (issue 14, 15)."""

from __future__ import annotations

import signal
from dataclasses import replace

from agents.alerts import EngineObservation, EngineRules, GpuFacts, ScrapeOutcome, host_alerts
from agents.config import Thresholds
from agents.supervisor.journal import Journal, reason_category

OK = ScrapeOutcome(ok=True)
# the real vLLM storm: 11 one-second samples of its KV gauge, only 3 at or above 95 %
STORM_KV = [0.12, 1.0, 0.40, 0.0, 0.97, 0.55, 0.31, 1.0, 0.08, 0.62, 0.20]


def T(**overrides: float) -> Thresholds:
    """The agent's own [thresholds] table, with this file's defaults and a test's overrides."""
    return replace(Thresholds(kv_pressure_for_s=10.0, preemption_storm_for_s=10.0), **overrides)


def obs(t: float, **kw) -> EngineObservation:
    stats = {
        "requests_running": 0.0,
        "requests_waiting": 0.0,
        "kv_cache_usage": 0.1,
        "generation_tokens_per_s": 10.0,
    }
    stats.update(kw.pop("stats", {}))
    base = EngineObservation(
        t=t,
        wall=f"2026-11-29T00:{int(t) // 60 % 60:02d}:{int(t) % 60:02d}Z",
        state="ready",
        stats=stats,
        scrape=OK,
    )
    return replace(base, **kw)


def by_code(alerts) -> dict:
    return {a.code: a for a in alerts}


def test_kv_pressure_fires_on_a_swinging_gauge_with_the_window_in_evidence() -> None:
    rules = EngineRules(T(kv_pressure_for_s=10.0))
    got: dict = {}
    for i, kv in enumerate([0.1] * 5 + STORM_KV):
        got = by_code(rules.evaluate(obs(float(i), stats={"kv_cache_usage": kv})))
    kvp = got["KV_PRESSURE"]
    assert kvp.evidence["kv_max"] == 1.0 and kvp.evidence["samples_at_or_above"] == 3
    assert (
        kvp.evidence["samples"] == 11 and kvp.evidence["window_s"] == 10.0 and kvp.evidence["kv_p90"] >= 0.95
    )
    assert "3 of 11 samples" in kvp.summary
    # one spike in the window is not pressure
    calm = EngineRules(T(kv_pressure_for_s=10.0))
    for i in range(20):
        got = by_code(calm.evaluate(obs(float(i), stats={"kv_cache_usage": 1.0 if i == 15 else 0.5})))
    assert "KV_PRESSURE" not in got


def test_preemption_storm_from_the_count_over_the_window() -> None:
    rules = EngineRules(T(preemption_storm_for_s=10.0))
    got: dict = {}
    total = 0.0
    for i, kv in enumerate([0.1] * 5 + STORM_KV):
        total += 10.0 if i >= 5 else 0.0  # ~10 preemptions/s, as the real storm (398 in 40 s)
        got = by_code(rules.evaluate(obs(float(i), preemptions_total=total, stats={"kv_cache_usage": kv})))
    storm = got["PREEMPTION_STORM"]
    assert storm.evidence["preemptions_in_window"] == 100.0 and storm.evidence["window_s"] == 10.0
    assert storm.evidence["kv_max"] == 1.0 and storm.summary.startswith("100 preemptions in 10s")
    # the same count with the KV cache never near full is no storm; nor is a trickle under pressure
    for series, kvs in (([10.0 * i for i in range(16)], [0.5] * 16), ([0.0] * 15 + [1.0], [1.0] * 16)):
        quiet = EngineRules(T(preemption_storm_for_s=10.0))
        for i in range(16):
            got = by_code(
                quiet.evaluate(obs(float(i), preemptions_total=series[i], stats={"kv_cache_usage": kvs[i]}))
            )
        assert "PREEMPTION_STORM" not in got


def test_hysteresis_holds_an_alert_and_counts_flapping() -> None:
    rules = EngineRules(T(alert_clear_s=15.0), history_s=900.0)
    slow, fast = {"ttft_p95_s": 0.9}, {"ttft_p95_s": 0.05}
    first = by_code(rules.evaluate(obs(0, stats=slow)))["TTFT_SLO"]
    assert first.raised_count == 1 and rules.firing == {"TTFT_SLO"}
    held = by_code(rules.evaluate(obs(10, stats=fast)))["TTFT_SLO"]  # false for 0 s .. 14 s: held
    assert held.since == first.since and held.evidence["condition_false_for_s"] == 0.0
    assert rules.firing == frozenset()  # state decisions never follow a held alert
    again = by_code(rules.evaluate(obs(20, stats=slow)))["TTFT_SLO"]  # back within 15 s: the same episode
    assert (
        again.since == first.since
        and again.raised_count == 1
        and "condition_false_for_s" not in again.evidence
    )
    rules.evaluate(obs(30, stats=fast))
    assert "TTFT_SLO" in by_code(rules.evaluate(obs(44, stats=fast)))
    assert "TTFT_SLO" not in by_code(rules.evaluate(obs(45, stats=fast)))  # false for 15 s: cleared
    for t in (60, 100, 140):  # raised, cleared, raised ...: flapping is one alert with a count
        flap = by_code(rules.evaluate(obs(t, stats=slow)))["TTFT_SLO"]
        rules.evaluate(obs(t + 1, stats=fast))
        rules.evaluate(obs(t + 20, stats=fast))
    assert flap.raised_count == 4 and flap.since == obs(140).wall
    # alert_clear_s = 0: clears at once
    now = EngineRules(T(alert_clear_s=0.0))
    now.evaluate(obs(0, stats=slow))
    assert now.evaluate(obs(1, stats=fast)) == ()


def test_live_alerts_clear_at_once_when_the_engine_stops_serving() -> None:
    rules = EngineRules(T(alert_clear_s=60.0))
    rules.evaluate(obs(0, stats={"ttft_p95_s": 0.9}))
    assert set(by_code(rules.evaluate(obs(1, state="stopping")))) == set()


def test_engine_down_from_exit_until_ready_with_signal_and_next_restart() -> None:
    rules = EngineRules(T())
    for t in range(5):
        assert rules.evaluate(obs(t)) == ()
    down = by_code(rules.evaluate(obs(5.0, state="exited", exit_signal=int(signal.SIGKILL), exited_t=4.6)))[
        "ENGINE_DOWN"
    ]
    assert down.severity == "critical" and down.evidence["exit"] == "killed by SIGKILL"
    assert down.evidence["exit_signal"] == "SIGKILL" and down.evidence["down_for_s"] == 0.4
    back = by_code(rules.evaluate(obs(6.0, state="backoff", backoff_s=9.5, exit_signal=9, exited_t=4.6)))[
        "ENGINE_DOWN"
    ]
    assert back.evidence["next_restart_in_s"] == 9.5 and back.since == down.since
    assert back.summary == "engine down for 1s: killed by SIGKILL; restart in 9.50s"
    loading = by_code(rules.evaluate(obs(16.0, state="starting", exit_signal=9)))["ENGINE_DOWN"]
    assert loading.evidence["down_for_s"] == 11.4 and "restarting" in loading.summary
    assert "ENGINE_DOWN" not in by_code(rules.evaluate(obs(20.0)))  # ready again: cleared at once
    # an exit code, and a failed engine
    rules.evaluate(obs(30.0, state="exited", exit_code=3))
    failed = by_code(rules.evaluate(obs(31.0, state="failed", exit_code=3)))["ENGINE_DOWN"]
    assert failed.evidence["exit"] == "exited 3" and "not restarted" in failed.summary
    # the operator stopping it clears it; an operator stop or restart never raises it
    assert rules.evaluate(obs(32.0, state="stopped", exit_code=3)) == ()
    op = EngineRules(T())
    for t, state in enumerate(("ready", "stopping", "stopped", "starting", "ready")):
        assert op.evaluate(obs(float(t), state=state)) == ()


def test_engine_down_when_it_became_ready_and_died_between_two_ticks() -> None:
    # no tick saw it serving: the journal's exit from "ready" is what says it went down
    rules = EngineRules(T())
    assert rules.evaluate(obs(0.0, state="starting")) == ()
    kw = {"exit_signal": int(signal.SIGKILL), "exited_t": 0.4, "exited_from": "ready"}
    down = by_code(rules.evaluate(obs(0.5, state="backoff", backoff_s=8.0, **kw)))["ENGINE_DOWN"]
    assert down.evidence["down_for_s"] == 0.1 and "restart in" in down.summary
    later = by_code(rules.evaluate(obs(3.0, state="backoff", backoff_s=5.5, **kw)))["ENGINE_DOWN"]
    assert later.since == down.since and later.evidence["down_for_s"] == 2.6
    # an exit during start-up (never ready) is no ENGINE_DOWN (CRASH_LOOP's business), nor is the same
    # exit seen again after the operator stopped it
    boot = EngineRules(T())
    boot.evaluate(obs(0.0, state="starting"))
    crash = {"exit_code": 1, "exited_t": 0.4, "exited_from": "starting"}
    assert "ENGINE_DOWN" not in by_code(boot.evaluate(obs(0.5, state="backoff", **crash)))
    op = EngineRules(T())
    op.evaluate(obs(0.0, state="backoff", **kw))
    assert op.evaluate(obs(1.0, state="stopped", **kw)) == ()


def test_hung_evidence_names_each_counter_and_the_canary_only_case() -> None:
    rules = EngineRules(T(hung_after_s=5.0))
    alert = None
    for t in range(10):
        o = obs(
            t,
            stats={"requests_running": 1.0},
            tokens_total=7.0,
            generation_tokens_total=5.0,
            prompt_tokens_total=2.0,
            canary_in_flight_s=float(t) if t else None,
        )
        alert = by_code(rules.evaluate(o)).get("ENGINE_HUNG", alert)
    assert alert is not None and "only the canary is pending" in alert.summary
    assert alert.evidence["generation_tokens_total"] == 5.0 and alert.evidence["prompt_tokens_total"] == 2.0
    assert alert.evidence["pending"] == "canary only" and "tokens_total" not in alert.evidence
    busy = EngineRules(T(hung_after_s=5.0))
    for t in range(10):
        got = by_code(
            busy.evaluate(obs(t, stats={"requests_running": 4.0, "requests_waiting": 3.0}, tokens_total=7.0))
        )
    assert got["ENGINE_HUNG"].summary == "no token progress for 9s with work pending"


def test_progressing_engine_is_never_hung_whatever_its_health() -> None:
    rules = EngineRules(T(hung_after_s=5.0))
    for t in range(40):
        o = obs(
            t,
            stats={"requests_running": 8.0},
            tokens_total=100.0 * t,
            health_ok=False,
            health_status=503,
            canary_ok=False,
            canary_error="HTTP 503: queue full",
        )
        assert "ENGINE_HUNG" not in by_code(rules.evaluate(o))
        assert rules.progressing(o) == (t > 0)  # moved since the first sample
    frozen = obs(60, stats={"requests_running": 8.0}, tokens_total=3900.0)
    rules.evaluate(frozen)
    assert not rules.progressing(replace(frozen, t=100))


class _EveryOther:
    """A pure extra rule (agents/silent/'s shape) that also offers an estimate for the snapshot."""

    kv_eta_s = 42.0

    def __call__(self, o, history, thresholds):
        assert history[-1] is o and thresholds.kv_pressure == 0.95
        return ("KV_EXHAUSTION_ETA", "warning", "KV full in 42s", {"eta_s": 42.0}) if o.t % 2 == 0 else None


def test_extra_rules_run_under_the_same_hysteresis() -> None:
    rules = EngineRules(T(alert_clear_s=5.0), extra_rules=(_EveryOther(),))
    seen = [by_code(rules.evaluate(obs(float(t)))) for t in range(6)]
    assert all("KV_EXHAUSTION_ETA" in s for s in seen)  # false on odd ticks, but never for 5 s
    assert seen[-1]["KV_EXHAUSTION_ETA"].raised_count == 1
    assert rules.extra_value("kv_eta_s") == 42.0 and rules.extra_value("nothing") is None


def test_journal_keeps_one_line_per_transition() -> None:
    clock = iter(range(1000))
    j = Journal("e", clock=lambda: float(next(clock)), wall=lambda: 0.0, maxlen=50)
    j.set("ready", "healthy")
    for s in range(81, 90):
        j.set("hung", f"no token progress for {s} s")
    assert [e["state"] for e in j.events] == ["ready", "hung"] and j.reason == "no token progress for 89 s"
    j.set("degraded", "health check failed: HTTP 503")
    j.set("degraded", "health check failed: no complete response within 2s")  # same category
    j.set("degraded", "health_failing_but_progressing: /health failed while tokens advance")  # a new decision
    assert [e["reason"] for e in j.events][-2:] == [
        "health check failed: HTTP 503",
        "health_failing_but_progressing: /health failed while tokens advance",
    ]
    assert reason_category("restart in 12s after: x") == reason_category("restart in 3s after: y")
    j.set("starting", "launched PID 1 (attempt 1)")
    j.set("starting", "launched PID 2 (attempt 2)")  # not a judged state: every call is an event
    assert len(j.events) == 6


def test_a_gpu_process_whose_owner_is_not_visible_is_no_orphan() -> None:
    gpus = [GpuFacts(0, 0, None, (), processes=((100, 2**30), (200, 2**30)))]
    wall = "2026-11-29T00:00:00Z"
    assert host_alerts(gpus, {100}, wall, visible=lambda pid: pid != 200) == ()  # another PID namespace
    assert host_alerts(gpus, {100}, wall, unobserved=("watched",)) == ()  # a watched engine's hidden owner
    both = [*gpus, GpuFacts(1, 0, None, (), processes=((300, 2**30),))]
    (alert,) = host_alerts(both, {100}, wall, visible=lambda pid: pid != 200)
    assert [p["pid"] for p in alert.evidence["processes"]] == [300]
    assert alert.evidence["owner_not_visible"] == [
        {"gpu": 0, "pid": 200, "mem_bytes": 2**30, "owner": "not visible"}
    ]


def test_client_connections_count_others_not_the_agents_own() -> None:
    import socket
    import subprocess
    import sys

    from agents.collector import client_connections

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port = server.getsockname()[1]
    mine = socket.create_connection(("127.0.0.1", port))  # this process's own connection: never counted
    code = f"import socket,sys,time; s=[socket.create_connection(('127.0.0.1',{port})) for _ in range(3)]; print('up', flush=True); time.sleep(30)"
    other = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout is not None and other.stdout.readline().strip() == "up"
        assert client_connections([port]) == {port: 3}
        assert client_connections([]) == {}
    finally:
        other.kill()
        other.wait(5)
        mine.close()
        server.close()
