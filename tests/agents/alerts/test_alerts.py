"""Alert rules on synthetic series: each rule trips on its signal, carries evidence, and clears."""

from __future__ import annotations

from dataclasses import replace

from agents.alerts import EngineObservation, EngineRules, GpuFacts, ScrapeOutcome, host_alerts
from agents.config import Thresholds

OK = ScrapeOutcome(ok=True)


def T(**overrides: float) -> Thresholds:
    """The agent's own [thresholds] table, with this file's defaults and a test's overrides."""
    return replace(
        Thresholds(kv_pressure_for_s=10.0, preemption_storm_for_s=5.0, alert_clear_s=0.0), **overrides
    )  # no hysteresis here: tests/agents/alerts/test_alerts_windows.py covers it


def obs(t: float, **kw) -> EngineObservation:
    stats = {
        "requests_running": 0.0,
        "requests_waiting": 0.0,
        "kv_cache_usage": 0.1,
        "generation_tokens_per_s": 10.0,
    }
    stats.update(kw.pop("stats", {}))
    base = EngineObservation(
        t=t, wall=f"2026-11-29T00:00:{int(t) % 60:02d}Z", state="ready", stats=stats, scrape=OK
    )
    return replace(base, **kw)


def codes(alerts) -> set[str]:
    return {a.code for a in alerts}


def test_hung_needs_pending_work_and_no_progress_for_threshold() -> None:
    rules = EngineRules(T())
    busy = {"requests_running": 2.0}
    for t in range(0, 30):
        assert "ENGINE_HUNG" not in codes(rules.evaluate(obs(t, stats=busy, tokens_total=100.0 + t)))
    # tokens stop moving at t=29; still under threshold at t=58
    for t in range(30, 59):
        assert "ENGINE_HUNG" not in codes(rules.evaluate(obs(t, stats=busy, tokens_total=129.0)))
    alerts = rules.evaluate(obs(60, stats=busy, tokens_total=129.0))
    hung = [a for a in alerts if a.code == "ENGINE_HUNG"]
    assert hung and hung[0].severity == "critical"
    assert hung[0].evidence["no_progress_for_s"] >= 30
    assert hung[0].evidence["requests_running"] == 2.0
    # progress resumes → clears
    assert "ENGINE_HUNG" not in codes(rules.evaluate(obs(61, stats=busy, tokens_total=140.0)))


def test_idle_engine_with_flat_tokens_is_not_hung() -> None:
    rules = EngineRules(T())
    for t in range(0, 120):
        assert codes(rules.evaluate(obs(t, tokens_total=5.0))) == set()


def test_frozen_zero_gauges_but_failing_canary_is_hung_and_health_lies() -> None:
    """A real vLLM with a SIGSTOPped worker: metrics freeze at running 0 / waiting 0, /health 200."""
    rules = EngineRules(T(hung_after_s=20))
    seen: set[str] = set()
    for t in range(0, 40):
        failing = t >= 5
        o = obs(
            t,
            tokens_total=50.0,
            health_ok=True,
            health_status=200,
            canary_ok=not failing,
            canary_error="no completion within 5s" if failing else None,
            canary_timed_out_after_s=5.0 if failing else None,
        )
        got = codes(rules.evaluate(o))
        if t < 5:
            assert got == set()
        seen |= got
        if t == 6:
            assert "HEALTH_LIES" in got and "ENGINE_HUNG" not in got
    assert {"ENGINE_HUNG", "HEALTH_LIES"} <= seen


def test_a_saturated_engine_whose_canary_times_out_while_tokens_flow_is_not_health_lies() -> None:
    """A storm: the canary waits behind real work past its timeout, but each scrape shows the engine
    generating. Once a scrape shows the counter flat, or the scrapes stop for metrics_stale_after_s, the
    slow canary is the health check lying again."""
    rules = EngineRules(T(hung_after_s=30, metrics_stale_after_s=5.0))
    slow = {"canary_ok": False, "canary_error": "no completion within 5s", "canary_timed_out_after_s": 5.0}
    busy = {"requests_running": 8.0, "requests_waiting": 40.0}
    live = {"health_ok": True, "health_status": 200, "stats": busy}
    for t in range(0, 20):  # the first canary gives up 5 s in
        failed = slow if t >= 5 else {}
        o = obs(t, tokens_total=100.0 * t, last_scrape_ok_t=float(t), **live, **failed)
        assert "HEALTH_LIES" not in codes(rules.evaluate(o))
    # still waiting, past hung_after_s, with tokens flowing: saturated too
    o = obs(20, tokens_total=2000.0, last_scrape_ok_t=20.0, canary_in_flight_s=31.0, **live)
    assert "HEALTH_LIES" not in codes(rules.evaluate(o))
    # a scrape that shows the counter flat: lying at once
    flat = EngineRules(T(hung_after_s=30))
    for t in range(0, 10):
        flat.evaluate(
            obs(t, tokens_total=100.0 * t, last_scrape_ok_t=float(t), **live, **(slow if t >= 5 else {}))
        )
    got = codes(flat.evaluate(obs(10, tokens_total=900.0, last_scrape_ok_t=10.0, **live, **slow)))
    assert "HEALTH_LIES" in got and "ENGINE_HUNG" not in got
    # the scrapes stop (a SIGSTOPped engine): lying once the last one is metrics_stale_after_s old
    for t in range(21, 28):
        got = codes(rules.evaluate(obs(t, tokens_total=2000.0, last_scrape_ok_t=20.0, **live, **slow)))
        assert ("HEALTH_LIES" in got) == (t - 20 >= 5), t


def test_a_canary_that_fails_outright_is_health_lies_even_while_tokens_flow() -> None:
    rules = EngineRules(T())
    failed = {
        "canary_ok": False,
        "canary_error": "HTTP 500: internal error",
        "health_ok": True,
        "health_status": 200,
    }
    got = set()
    for t in range(0, 3):
        got = codes(rules.evaluate(obs(t, tokens_total=100.0 * t, **failed)))
    assert "HEALTH_LIES" in got


def test_since_is_kept_while_active() -> None:
    rules = EngineRules(T())
    first = rules.evaluate(obs(0, stats={"ttft_p95_s": 0.5}))
    later = rules.evaluate(obs(5, stats={"ttft_p95_s": 0.6}))
    assert first[0].code == later[0].code == "TTFT_SLO"
    assert later[0].since == first[0].since
    assert later[0].evidence["ttft_p95_s"] == 0.6


def test_ttft_under_target_or_unknown_does_not_fire() -> None:
    rules = EngineRules(T())
    assert codes(rules.evaluate(obs(0, stats={"ttft_p95_s": 0.19}))) == set()
    assert codes(rules.evaluate(obs(1, stats={"ttft_p95_s": None}))) == set()


def test_kv_pressure_must_be_sustained() -> None:
    rules = EngineRules(T(kv_pressure_for_s=10))
    for t in range(0, 10):
        assert "KV_PRESSURE" not in codes(rules.evaluate(obs(t, stats={"kv_cache_usage": 0.99})))
    assert "KV_PRESSURE" in codes(rules.evaluate(obs(10, stats={"kv_cache_usage": 0.99})))
    # the window is judged, not the sample: one dip does not clear it
    rules.evaluate(obs(11, stats={"kv_cache_usage": 0.5}))
    assert "KV_PRESSURE" in codes(rules.evaluate(obs(12, stats={"kv_cache_usage": 0.99})))
    # a window that is mostly low clears it
    for t in range(13, 30):
        got = codes(rules.evaluate(obs(t, stats={"kv_cache_usage": 0.3})))
    assert "KV_PRESSURE" not in got


def test_preemption_storm_needs_count_and_pressure() -> None:
    rules = EngineRules(T(preemption_storm_for_s=3))
    for t in range(0, 10):
        got = codes(rules.evaluate(obs(t, preemptions_total=4.0 * t, stats={"kv_cache_usage": 0.5})))
        assert "PREEMPTION_STORM" not in got
    for t in range(10, 14):
        got = codes(rules.evaluate(obs(t, preemptions_total=4.0 * t, stats={"kv_cache_usage": 1.0})))
    assert "PREEMPTION_STORM" in got


def test_queue_growing_with_flat_throughput() -> None:
    rules = EngineRules(T(queue_growing_intervals=4))
    got: set[str] = set()
    for i, w in enumerate([1, 2, 4, 7, 9]):
        got = codes(
            rules.evaluate(obs(i, stats={"requests_waiting": float(w), "generation_tokens_per_s": 50.0}))
        )
    assert "QUEUE_GROWING" in got
    # a queue that grows while throughput climbs is catching up, not growing
    rules2 = EngineRules(T(queue_growing_intervals=4))
    for i, w in enumerate([1, 2, 4, 7, 9]):
        got = codes(
            rules2.evaluate(
                obs(i, stats={"requests_waiting": float(w), "generation_tokens_per_s": 50.0 * (i + 1)})
            )
        )
    assert "QUEUE_GROWING" not in got


def test_queue_growing_counts_samples_not_ticks_that_repeat_one() -> None:
    """A tick whose scrape was still in flight carries the previous sample (same last_scrape_ok_t): it is
    one sample, so it neither breaks a rising queue nor counts as an interval of its own."""
    rules = EngineRules(T(queue_growing_intervals=4))
    series = [(0, 0, 1), (1, 1, 2), (2, 1, 2), (3, 3, 4), (4, 4, 7)]  # (tick t, sample t, waiting)
    got: set[str] = set()
    for t, sample_t, w in series:
        o = obs(
            t,
            stats={"requests_waiting": float(w), "generation_tokens_per_s": 50.0},
            last_scrape_ok_t=float(sample_t),
        )
        got = codes(rules.evaluate(o))
    assert "QUEUE_GROWING" not in got  # 4 distinct samples: one short of 4 intervals
    o = obs(5, stats={"requests_waiting": 9.0, "generation_tokens_per_s": 50.0}, last_scrape_ok_t=5.0)
    alert = next(a for a in rules.evaluate(o) if a.code == "QUEUE_GROWING")
    assert alert.evidence["requests_waiting"] == [1.0, 2.0, 4.0, 7.0, 9.0]
    # a failed scrape among the last samples still hides the rule
    bad = ScrapeOutcome(ok=False, error="x", reachable=True)
    assert "QUEUE_GROWING" not in codes(rules.evaluate(obs(6, scrape=bad, last_scrape_ok_t=5.0)))


def test_crash_loop_counts_restarts_in_window() -> None:
    rules = EngineRules(T(crash_loop_restarts=3, crash_loop_window_s=100))
    assert "CRASH_LOOP" not in codes(
        rules.evaluate(obs(200, state="backoff", restart_times=(10.0, 150.0, 190.0)))
    )
    alerts = rules.evaluate(obs(200, state="backoff", restart_times=(120.0, 150.0, 190.0), backoff_s=40.0))
    loop = [a for a in alerts if a.code == "CRASH_LOOP"]
    assert loop and loop[0].evidence == {"restarts_in_window": 3, "window_s": 100, "next_backoff_s": 40.0}


def test_failed_scrape_hides_live_rules_and_says_why_once_it_persists() -> None:
    rules = EngineRules(T(metrics_stale_after_s=5))
    bad = ScrapeOutcome(ok=False, error="garbage exposition", reachable=True)
    live = {"ttft_p95_s": 9.0, "kv_cache_usage": 1.0}
    assert (
        codes(rules.evaluate(obs(0, scrape=bad, last_scrape_ok_t=None, stats=live))) == set()
    )  # live rules hidden
    assert codes(rules.evaluate(obs(4, scrape=bad, last_scrape_ok_t=None, stats=live))) == set()
    alerts = rules.evaluate(obs(5, scrape=bad, last_scrape_ok_t=None, stats=live))
    assert codes(alerts) == {"METRICS_STALE"} and alerts[0].evidence["failing_for_s"] == 5
    down = ScrapeOutcome(ok=False, error="connection refused", reachable=False)
    got = rules.evaluate(obs(6, scrape=down, last_scrape_ok_t=0.5))
    assert codes(got) == {"METRICS_UNREACHABLE"} and got[0].evidence["last_ok_age_s"] == 5.5
    # while (first) starting, an unreachable endpoint is expected: no alert
    assert codes(EngineRules(T()).evaluate(obs(20, state="starting", scrape=down))) == set()


def test_ram_leak_at_flat_load() -> None:
    rules = EngineRules(T(ram_leak_mb_per_min=50, ram_leak_window_s=600))
    got: set[str] = set()
    for i in range(0, 31):  # 10 minutes, one sample per 20 s, +40 MiB per sample = 120 MiB/min
        got = codes(rules.evaluate(obs(i * 20.0, rss_bytes=2**30 + i * 40 * 2**20)))
    assert "HOST_RAM_LEAK" in got
    rules2 = EngineRules(T(ram_leak_mb_per_min=50))
    for i in range(0, 31):
        got = codes(rules2.evaluate(obs(i * 20.0, rss_bytes=2**30 + (i % 2) * 2**20)))
    assert "HOST_RAM_LEAK" not in got


def test_exposed_listener() -> None:
    rules = EngineRules(T())
    alerts = rules.evaluate(
        obs(0, listeners=((10, "127.0.0.1", 8000), (11, "0.0.0.0", 29500), (12, "::1", 1)))
    )
    exposed = [a for a in alerts if a.code == "EXPOSED_LISTENER"]
    assert exposed and exposed[0].evidence["listeners"] == [{"pid": 11, "ip": "0.0.0.0", "port": 29500}]


def test_host_alerts_orphans_and_gpu_faults() -> None:
    gpus = [
        GpuFacts(
            0,
            ecc_uncorrected=0,
            xid_last=None,
            throttle_reasons=(),
            processes=((100, 4 * 2**30), (200, 2**30)),
        ),
        GpuFacts(1, ecc_uncorrected=2, xid_last=79, throttle_reasons=("sw_thermal_slowdown",), processes=()),
    ]
    alerts = host_alerts(
        gpus, supervised_pids={100}, wall="2026-11-29T00:00:00Z", describe=lambda pid: f"proc{pid}"
    )
    by = {a.code: a for a in alerts}
    assert set(by) == {"ORPHAN_GPU_MEMORY", "GPU_XID", "GPU_ECC", "GPU_THERMAL"}
    assert by["ORPHAN_GPU_MEMORY"].evidence["processes"] == [
        {"gpu": 0, "pid": 200, "mem_bytes": 2**30, "process": "proc200"}
    ]
    assert [a.severity for a in alerts][:3] == ["critical"] * 3  # most severe first
    again = host_alerts(gpus, {100}, "2026-11-29T00:05:00Z", previous=by)
    assert {a.since for a in again} == {"2026-11-29T00:00:00Z"}
    assert host_alerts(gpus[:1], {100, 200}, "x") == ()


def test_host_alert_state_write_failed_names_engines_and_reasons() -> None:
    why = {
        "b": "Read-only file system (EROFS); PID 7 is not recorded",
        "a": "No space left on device (ENOSPC); PID 8",
    }
    alerts = host_alerts([], (), "2026-11-29T00:00:00Z", state_errors=why)
    (alert,) = alerts
    assert (alert.code, alert.severity) == ("STATE_WRITE_FAILED", "critical")
    assert alert.evidence == {
        "engines": [{"engine": "a", "reason": why["a"]}, {"engine": "b", "reason": why["b"]}]
    }
    assert alert.summary.startswith("state file not written for a, b: No space left on device")
    again = host_alerts(
        [], (), "2026-11-29T00:05:00Z", previous={alert.code: alert}, state_errors={"b": why["b"]}
    )
    assert again[0].since == "2026-11-29T00:00:00Z" and [
        r["engine"] for r in again[0].evidence["engines"]
    ] == ["b"]
    many = host_alerts([], (), "x", state_errors={f"e{i}": "EROFS" for i in range(5)})
    assert "e0, e1, e2 and 2 more" in many[0].summary and len(many[0].evidence["engines"]) == 5
    assert host_alerts([], (), "x", state_errors={}) == () and host_alerts([], (), "x") == ()


def ttft(p95: float, bucket: tuple[float, float | None] | None, target: float = 0.08) -> list:
    rules = EngineRules(T(ttft_p95_s=target))
    buckets = {"ttft_p95_s": bucket} if bucket is not None else {}
    return [
        a
        for a in rules.evaluate(obs(0, stats={"ttft_p95_s": p95}, quantile_buckets=buckets))
        if a.code == "TTFT_SLO"
    ]


def test_ttft_in_a_wide_bucket_that_holds_the_target_does_not_fire() -> None:
    # SGLang's first TTFT bucket is 0-100 ms: every TTFT under 100 ms interpolates to p95 = 95 ms
    assert ttft(0.095, (0.0, 0.1)) == []
    assert ttft(0.095, (0.05, 0.1)) == []  # 2x wide, the target inside: not known to be above it
    assert ttft(0.095, None) != []  # no bucket known (older agent): the number as before


def test_ttft_fires_when_the_bucket_is_above_the_target_or_narrow() -> None:
    (above,) = ttft(0.2, (0.1, 0.25))
    assert above.summary == "TTFT p95 in 100ms–250ms above target 80ms"
    assert above.evidence["ttft_p95_bucket_s"] == [0.1, 0.25] and above.evidence["ttft_p95_s"] == 0.2
    (narrow,) = ttft(0.095, (0.09, 0.1))  # a narrow bucket: the interpolation holds
    assert narrow.summary == "TTFT p95 95ms above target 80ms"
    (open_,) = ttft(12.0, (10.0, None), target=1.0)
    assert open_.summary == "TTFT p95 >10s above target 1.00s"
