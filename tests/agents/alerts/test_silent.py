"""Silent-failure rules on synthetic observation sequences: each fires within its bound, stays silent in
the cases that look like it, and clears when its condition ends."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.alerts import EngineObservation, ScrapeOutcome
from agents.config import Thresholds
from agents.silent import (
    AdmissionStalled,
    FrontendHung,
    GpuWedged,
    KvExhaustionEta,
    LatencyDrift,
    RankDivergence,
    default_rules,
    eta_of,
    kv_eta_s,
    kv_trend,
    load_bin,
    theil_sen,
)

TH = Thresholds()
FAILED = ScrapeOutcome(ok=False, error="timed out", reachable=True)


def ob(
    t: float,
    *,
    state: str = "ready",
    running: float | None = None,
    waiting: float | None = None,
    kv: float | None = None,
    gen: float | None = None,
    prompt: float | None = None,
    tokens: float | None = None,
    gen_rate: float | None = None,
    ttft: float | None = None,
    util: tuple[float | None, ...] = (),
    conns: int | None = None,
    canary_ok: bool | None = None,
    canary_error: str | None = None,
    canary_at: str | None = None,
    in_flight: float | None = None,
    health_ok: bool | None = True,
    scrape_ok: bool = True,
    restarts: tuple[float, ...] = (),
    **stats: float | None,
) -> EngineObservation:
    return EngineObservation(
        t=t,
        wall=f"2026-01-01T00:00:{int(t) % 60:02d}Z",
        state=state,
        stats={
            "requests_running": running,
            "requests_waiting": waiting,
            "kv_cache_usage": kv,
            "generation_tokens_per_s": gen_rate,
            "ttft_p95_s": ttft,
            **stats,
        },
        scrape=ScrapeOutcome(ok=True) if scrape_ok else FAILED,
        tokens_total=tokens,
        last_scrape_ok_t=t if scrape_ok else None,
        health_ok=health_ok,
        health_status=200 if health_ok else 503,
        canary_ok=canary_ok,
        canary_error=canary_error,
        canary_at=canary_at,
        canary_in_flight_s=in_flight,
        restart_times=restarts,
        generation_tokens_total=gen,
        prompt_tokens_total=prompt,
        gpu_util_pct=util,
        client_connections=conns,
    )


def drive(rule, observations: Iterable[EngineObservation], thresholds=TH, history_s: float = 900.0):
    """Feed ``observations`` one tick at a time; (t, finding) per tick."""
    history: list[EngineObservation] = []
    out = []
    for o in observations:
        history.append(o)
        while history and o.t - history[0].t > history_s:
            history.pop(0)
        out.append((o.t, rule(o, history, thresholds)))
    return out


def first_fire(results, code: str) -> float | None:
    return next((t for t, f in results if f is not None and f[0] == code), None)


def fired(results, code: str) -> bool:
    return first_fire(results, code) is not None


def ticks(start: float, end: float, make: Callable[[float], EngineObservation]) -> list[EngineObservation]:
    return [make(float(t)) for t in range(int(start), int(end))]


# --- ADMISSION_STALLED --------------------------------------------------------------------------------------
def healthy_load(t: float, gen0: float = 0.0) -> EngineObservation:
    """8 running, nothing waiting, 400 tok/s: the engine's peak is 8."""
    return ob(
        t, running=8, waiting=0, kv=0.3, gen=gen0 + 400 * t, prompt=1000 * t, tokens=1400 * t, gen_rate=400
    )


def stall(start: float, *, kv: float | None = 0.2, running: float = 1, trickle: float = 0.3, **extra: Any):
    """From ``start``: ``running`` running, the queue growing, tokens trickling (vLLM 0.27 in the field)."""
    base = 400 * start

    def make(t: float) -> EngineObservation:
        dt = t - start
        gen = base + trickle * dt
        return ob(
            t,
            running=running,
            waiting=5 + int(dt // 4),
            kv=kv,
            gen=gen,
            prompt=1000 * start,
            tokens=gen + 1000 * start,
            gen_rate=trickle,
            canary_ok=False,
            canary_error="no completion within 5s",
            canary_at="c-stalled",
            **extra,
        )

    return make


def test_admission_stall_fires_within_its_bound_with_evidence():
    rule = AdmissionStalled()
    obs = ticks(0, 20, healthy_load) + ticks(
        20, 120, stall(20, requests_waiting_capacity=3.0, requests_waiting_deferred=2.0)
    )
    results = drive(rule, obs)
    t = first_fire(results, "ADMISSION_STALLED")
    assert t is not None and 20 + TH.admission_stall_s <= t <= 20 + TH.admission_stall_s + 1
    code, severity, summary, evidence = next(f for _, f in results if f is not None)
    assert severity == "critical"
    assert evidence["requests_running"] == 1 and evidence["peak_requests_running"] == 8
    assert evidence["requests_waiting"] >= 5 and evidence["kv_cache_usage"] == 0.2
    assert evidence["generation_tokens_per_s"] == pytest.approx(0.3, abs=0.01)
    assert evidence["requests_waiting_capacity"] == 3.0 and evidence["requests_waiting_deferred"] == 2.0
    assert "1m00s" in summary and "waiting" in summary


def test_admission_stall_evidence_leaves_out_reasons_the_engine_does_not_expose():
    results = drive(AdmissionStalled(), ticks(0, 20, healthy_load) + ticks(20, 90, stall(20)))
    evidence = next(f for _, f in results if f is not None)[3]
    assert "requests_waiting_capacity" not in evidence and "requests_waiting_deferred" not in evidence


def test_admission_stall_clears_when_admission_resumes():
    rule = AdmissionStalled()
    stalled = drive(rule, ticks(0, 20, healthy_load) + ticks(20, 100, stall(20)))
    assert stalled[-1][1] is not None
    resumed = drive(rule, ticks(100, 110, lambda t: healthy_load(t)))
    assert all(f is None for _, f in resumed)


def test_admission_stall_field_case_with_a_third_of_kv_free_and_no_tokens():
    """Running 1 / Waiting 5, 36 % KV free, 0 tok/s; canaries come and time out (the queue moves)."""

    def make(t: float) -> EngineObservation:
        return ob(t, running=1, waiting=5 + (int(t) % 10 < 5), kv=0.64, gen=8000, prompt=9000, tokens=17000)

    results = drive(AdmissionStalled(), ticks(0, 10, healthy_load) + ticks(10, 80, make))
    assert (
        10 + TH.admission_stall_s <= first_fire(results, "ADMISSION_STALLED") <= 10 + TH.admission_stall_s + 1
    )


def test_admission_stall_without_a_kv_gauge_tgi():
    results = drive(AdmissionStalled(), ticks(0, 20, healthy_load) + ticks(20, 90, stall(20, kv=None)))
    assert fired(results, "ADMISSION_STALLED")


def test_kv_pressure_is_not_an_admission_stall():
    results = drive(AdmissionStalled(), ticks(0, 20, healthy_load) + ticks(20, 200, stall(20, kv=0.97)))
    assert not fired(results, "ADMISSION_STALLED")


def test_kv_swinging_to_full_within_the_window_is_not_an_admission_stall():
    swing = stall(20)

    def make(t: float) -> EngineObservation:
        o = swing(t)
        return dataclasses.replace(o, stats={**o.stats, "kv_cache_usage": 1.0 if int(t) % 7 == 0 else 0.1})

    assert not fired(
        drive(AdmissionStalled(), ticks(0, 20, healthy_load) + ticks(20, 200, make)), "ADMISSION_STALLED"
    )


def test_a_frozen_engine_is_hung_not_stalled():
    """Everything frozen (EngineCore dead: gauges and counters stop) is ENGINE_HUNG's case."""

    def frozen(t: float) -> EngineObservation:
        return ob(t, running=1, waiting=5, kv=0.0, gen=8000, prompt=9000, tokens=17000, gen_rate=0.0)

    assert not fired(
        drive(AdmissionStalled(), ticks(0, 20, healthy_load) + ticks(20, 200, frozen)), "ADMISSION_STALLED"
    )


def test_an_engine_at_its_own_limit_is_not_stalled():
    """max_num_seqs 4: 4 running (its peak), a queue, KV free. Busy, not stalled, even with slow tokens
    (an engine that counts tokens only when a request finishes)."""

    def at_limit(t: float) -> EngineObservation:
        return ob(
            t, running=4, waiting=20 + int(t) % 3, kv=0.3, gen=100, prompt=100, tokens=100 + t, gen_rate=0.0
        )

    assert not fired(drive(AdmissionStalled(), ticks(0, 300, at_limit)), "ADMISSION_STALLED")


def test_a_busy_queue_that_is_being_served_is_not_stalled():
    """Few running and a queue, but tokens flow at a healthy rate per request."""

    def served(t: float) -> EngineObservation:
        return ob(t, running=2, waiting=6, kv=0.2, gen=60 * t, prompt=100 * t, tokens=160 * t, gen_rate=60)

    assert not fired(
        drive(AdmissionStalled(), ticks(0, 20, healthy_load) + ticks(20, 200, served)), "ADMISSION_STALLED"
    )


def test_a_canary_that_gets_in_and_out_means_admission_progresses():
    slow = stall(20)

    def with_canary(t: float) -> EngineObservation:
        o = slow(t)
        return dataclasses.replace(o, canary_ok=True, canary_error=None, canary_at=f"c{int(t) // 10}")

    assert not fired(
        drive(AdmissionStalled(), ticks(0, 20, healthy_load) + ticks(20, 200, with_canary)),
        "ADMISSION_STALLED",
    )


def test_admission_that_keeps_rising_is_not_stalled():
    """A slow ramp (long prefills admitted one by one): the running count rises, so admission moves."""
    slow = stall(20)

    def ramp(t: float) -> EngineObservation:
        o = slow(t)
        return dataclasses.replace(
            o, stats={**o.stats, "requests_running": (t - 20) // 20, "requests_waiting": 20}
        )

    assert not fired(
        drive(AdmissionStalled(), ticks(0, 20, healthy_load) + ticks(20, 200, ramp)), "ADMISSION_STALLED"
    )


def test_admission_stall_survives_a_failed_scrape_and_never_fires_on_one():
    make = stall(20)
    obs = ticks(0, 20, healthy_load) + [
        dataclasses.replace(make(t), scrape=FAILED) if 50 <= t < 53 else make(t) for t in range(20, 100)
    ]
    results = drive(AdmissionStalled(), obs)
    assert first_fire(results, "ADMISSION_STALLED") <= 20 + TH.admission_stall_s + 1
    assert all(f is None for (t, f), o in zip(results, obs, strict=True) if not o.scrape.ok)


def test_admission_stall_forgets_everything_when_the_engine_leaves_serving():
    rule = AdmissionStalled()
    drive(rule, ticks(0, 20, healthy_load) + ticks(20, 60, stall(20)))
    drive(rule, [ob(60, state="starting")])
    # After the restart the engine has run nothing yet: one running out of one ever seen is its peak.
    results = drive(rule, ticks(61, 200, stall(61)))
    assert not fired(results, "ADMISSION_STALLED")


# --- GPU_WEDGED ---------------------------------------------------------------------------------------------
def wedged(t: float) -> EngineObservation:
    return ob(t, running=2, waiting=0, util=(100.0, 97.0), gen=5000, prompt=7000, tokens=12000)


def busy(t: float) -> EngineObservation:
    return ob(
        t, running=2, waiting=0, util=(100.0, 99.0), gen=5000 + 50 * t, prompt=7000, tokens=12000 + 50 * t
    )


def test_gpu_wedge_fires_within_its_bound():
    results = drive(GpuWedged(), ticks(0, 10, busy) + ticks(10, 60, wedged))
    t = first_fire(results, "GPU_WEDGED")
    assert 10 + TH.gpu_wedge_s <= t <= 10 + TH.gpu_wedge_s + 1
    _, severity, summary, evidence = next(f for _, f in results if f)
    assert severity == "critical" and "30s" in summary
    assert evidence["gpu_util_pct"] == [100.0, 97.0] and evidence["requests_running"] == 2
    assert evidence["generation_tokens_total"] == 5000 and evidence["no_progress_for_s"] >= TH.gpu_wedge_s


def test_a_busy_healthy_engine_is_not_wedged():
    assert not fired(drive(GpuWedged(), ticks(0, 300, busy)), "GPU_WEDGED")


def test_progress_seen_only_in_the_broad_marker_is_progress():
    """An engine that adds tokens only at a request's end still shows work in the collector's marker."""

    def finishing_late(t: float) -> EngineObservation:
        return dataclasses.replace(wedged(t), tokens_total=12000 + 3 * t)

    assert not fired(drive(GpuWedged(), ticks(0, 300, finishing_late)), "GPU_WEDGED")


@pytest.mark.parametrize(
    "change",
    [
        {"util": (100.0, 60.0)},  # one GPU not busy: not every GPU is wedged
        {"running": 0},  # nothing running: another process keeps the GPU busy
        {"util": (100.0, None)},  # utilization unknown
        {"util": ()},  # no GPU (CPU engine)
        {"gen": None, "prompt": None, "tokens": None},  # no counter to judge progress by
    ],
)
def test_gpu_wedge_look_alikes_stay_silent(change):
    def make(t: float) -> EngineObservation:
        o = wedged(t)
        stats = {**o.stats, **({"requests_running": change["running"]} if "running" in change else {})}
        fields = {k: v for k, v in change.items() if k != "running"}
        renamed = {
            "util": "gpu_util_pct",
            "gen": "generation_tokens_total",
            "prompt": "prompt_tokens_total",
            "tokens": "tokens_total",
        }
        return dataclasses.replace(o, stats=stats, **{renamed[k]: v for k, v in fields.items()})

    assert not fired(drive(GpuWedged(), ticks(0, 200, make)), "GPU_WEDGED")


def test_gpu_wedge_clears_when_tokens_move_again():
    rule = GpuWedged()
    assert drive(rule, ticks(0, 40, wedged))[-1][1] is not None
    assert all(f is None for _, f in drive(rule, ticks(40, 60, busy)))


# --- RANK_DIVERGENCE ----------------------------------------------------------------------------------------
def diverged(t: float) -> EngineObservation:
    return ob(t, running=4, waiting=3, util=(96.0, 0.0), gen=9000, prompt=9000, tokens=18000)


def test_rank_divergence_fires_within_its_bound():
    results = drive(RankDivergence(), ticks(0, 100, diverged))
    assert TH.rank_divergence_s <= first_fire(results, "RANK_DIVERGENCE") <= TH.rank_divergence_s + 1
    _, severity, summary, evidence = next(f for _, f in results if f)
    assert severity == "critical" and "1m00s" in summary
    assert evidence["busy_positions"] == [0] and evidence["idle_positions"] == [1]
    assert evidence["gpu_util_pct"] == [96.0, 0.0]


def test_rank_divergence_with_a_stuck_canary_when_metrics_fail():
    def make(t: float) -> EngineObservation:
        return dataclasses.replace(diverged(t), scrape=FAILED, last_scrape_ok_t=None, canary_in_flight_s=3.0)

    assert fired(drive(RankDivergence(), ticks(0, 100, make)), "RANK_DIVERGENCE")


@pytest.mark.parametrize(
    "change",
    [
        {"gpu_util_pct": (96.0,)},  # one GPU: nothing to diverge from
        {"gpu_util_pct": (96.0, 40.0)},  # uneven but not idle
        {"tokens_total": None, "generation_tokens_total": None, "prompt_tokens_total": None},
    ],
)
def test_rank_divergence_look_alikes_stay_silent(change):
    assert not fired(
        drive(RankDivergence(), ticks(0, 200, lambda t: dataclasses.replace(diverged(t), **change))),
        "RANK_DIVERGENCE",
    )


def test_uneven_gpus_while_tokens_flow_are_not_divergence():
    def pipeline(t: float) -> EngineObservation:
        return dataclasses.replace(
            diverged(t), generation_tokens_total=9000 + 20 * t, tokens_total=18000 + 20 * t
        )

    assert not fired(drive(RankDivergence(), ticks(0, 200, pipeline)), "RANK_DIVERGENCE")


def test_an_idle_engine_next_to_another_process_is_not_divergence():
    def idle(t: float) -> EngineObservation:
        o = diverged(t)
        return dataclasses.replace(o, stats={**o.stats, "requests_running": 0, "requests_waiting": 0})

    assert not fired(drive(RankDivergence(), ticks(0, 200, idle)), "RANK_DIVERGENCE")


def test_rank_divergence_clears_on_progress():
    rule = RankDivergence()
    assert drive(rule, ticks(0, 70, diverged))[-1][1] is not None
    moving = drive(rule, ticks(70, 80, lambda t: dataclasses.replace(diverged(t), tokens_total=18000 + t)))
    assert all(f is None for _, f in moving)


# --- FRONTEND_HUNG ------------------------------------------------------------------------------------------
def frontend_hung(t: float) -> EngineObservation:
    """Canaries every 10 s, each timing out after 5 s; the engine shows no work at all; 7 clients hang."""
    phase = int(t) % 10
    return ob(
        t,
        running=0,
        waiting=0,
        kv=0.0,
        gen=100,
        prompt=100,
        tokens=200,
        conns=7,
        canary_ok=False,
        canary_error="no completion within 5s",
        in_flight=float(phase) if phase < 5 else None,
    )


def healthy_idle(t: float) -> EngineObservation:
    phase = int(t) % 10
    return ob(
        t,
        running=0,
        waiting=0,
        kv=0.0,
        gen=100,
        prompt=100,
        tokens=200,
        conns=1,
        canary_ok=True,
        in_flight=0.3 if phase == 0 else None,
    )


def test_frontend_hang_fires_within_its_bound():
    results = drive(FrontendHung(), ticks(0, 10, healthy_idle) + ticks(10, 60, frontend_hung))
    t = first_fire(results, "FRONTEND_HUNG")
    assert 10 + TH.frontend_hang_s <= t <= 10 + TH.frontend_hang_s + 1
    _, severity, summary, evidence = next(f for _, f in results if f)
    assert severity == "critical" and "7 client connection" in summary
    assert evidence["client_connections"] == 7 and evidence["connections_excess_min"] == 7
    assert evidence["requests_running"] == 0 and evidence["requests_waiting"] == 0
    assert evidence["canary_error"] == "no completion within 5s" and evidence["health_http_status"] == 200


def test_the_first_canary_hanging_from_ready_counts():
    def never_answered(t: float) -> EngineObservation:
        return dataclasses.replace(frontend_hung(t), canary_ok=None, canary_error=None, canary_in_flight_s=t)

    assert (
        first_fire(drive(FrontendHung(), ticks(0, 40, never_answered)), "FRONTEND_HUNG")
        <= TH.frontend_hang_s + 2
    )


@pytest.mark.parametrize(
    "change",
    [
        {"canary_error": "HTTP 404: model not found", "canary_in_flight_s": None},  # the front end answers
        {"health_ok": False},  # /health already tells
    ],
)
def test_frontend_hang_look_alikes_stay_silent(change):
    assert not fired(
        drive(FrontendHung(), ticks(0, 200, lambda t: dataclasses.replace(frontend_hung(t), **change))),
        "FRONTEND_HUNG",
    )


def test_work_in_the_scheduler_is_not_a_frontend_hang():
    def queued(t: float) -> EngineObservation:
        o = frontend_hung(t)
        return dataclasses.replace(o, stats={**o.stats, "requests_waiting": 3})

    assert not fired(drive(FrontendHung(), ticks(0, 200, queued)), "FRONTEND_HUNG")


def test_a_healthy_idle_engine_is_not_hung():
    assert not fired(drive(FrontendHung(), ticks(0, 300, healthy_idle)), "FRONTEND_HUNG")


def test_frontend_hang_clears_when_the_canary_answers():
    rule = FrontendHung()
    assert drive(rule, ticks(0, 40, frontend_hung))[-1][1] is not None
    assert all(f is None for _, f in drive(rule, ticks(40, 50, healthy_idle)))


# --- LATENCY_DRIFT ------------------------------------------------------------------------------------------
def load(t: float, running: float, p95: float, **kw: Any) -> EngineObservation:
    return ob(t, running=running, waiting=0, ttft=p95, **kw)


def baseline(
    seconds: float = TH.drift_baseline_s, running: float = 2, p95: float = 0.1
) -> list[EngineObservation]:
    return ticks(0, seconds + 1, lambda t: load(t, running, p95 + 0.001 * (int(t) % 3)))


def test_drift_fires_at_comparable_load_within_min_samples():
    rule = LatencyDrift()
    quiet = drive(rule, baseline())
    assert not fired(quiet, "LATENCY_DRIFT")
    start = TH.drift_baseline_s + 1
    results = drive(rule, ticks(start, start + 20, lambda t: load(t, 3, 0.25)))
    t = first_fire(results, "LATENCY_DRIFT")
    assert t is not None and t - start <= rule.min_samples
    _, severity, summary, evidence = next(f for _, f in results if f)
    assert severity == "warning" and "2-3 running" in summary
    assert evidence["requests_running_bin"] == "2-3" and evidence["ttft_p95_s"] == 0.25
    assert evidence["baseline_ttft_p95_s"] == pytest.approx(0.101) and evidence["ratio"] >= TH.drift_factor


def test_drift_that_starts_later_is_found_within_the_window():
    rule = LatencyDrift()
    drive(rule, baseline())
    start = TH.drift_baseline_s + 1
    drive(rule, ticks(start, start + 200, lambda t: load(t, 2, 0.1)))
    results = drive(rule, ticks(start + 200, start + 200 + rule.window_s, lambda t: load(t, 2, 0.3)))
    assert first_fire(results, "LATENCY_DRIFT") is not None


def test_a_load_increase_is_not_drift():
    rule = LatencyDrift()
    drive(rule, baseline())
    start = TH.drift_baseline_s + 1
    results = drive(
        rule, ticks(start, start + 400, lambda t: load(t, 12, 0.6))
    )  # no baseline at 8-15 running
    assert not fired(results, "LATENCY_DRIFT")


def test_same_load_same_latency_in_a_busier_bin_is_not_drift():
    rule = LatencyDrift()
    drive(
        rule,
        ticks(
            0,
            TH.drift_baseline_s + 1,
            lambda t: load(t, 2 if int(t) % 2 else 10, 0.1 if int(t) % 2 else 0.45),
        ),
    )
    start = TH.drift_baseline_s + 1
    results = drive(rule, ticks(start, start + 400, lambda t: load(t, 10, 0.5)))
    assert not fired(results, "LATENCY_DRIFT")


def test_a_one_bucket_jump_of_a_tiny_latency_is_not_drift():
    rule = LatencyDrift()
    drive(rule, baseline(p95=0.005))
    start = TH.drift_baseline_s + 1
    assert not fired(drive(rule, ticks(start, start + 100, lambda t: load(t, 2, 0.012))), "LATENCY_DRIFT")


def test_drift_baseline_is_learned_only_while_ready():
    """A degraded stretch after ready (slow) is not part of the healthy baseline."""
    rule = LatencyDrift()
    half = TH.drift_baseline_s * 2 / 3
    drive(rule, ticks(0, half, lambda t: load(t, 2, 0.5, state="degraded")))
    drive(rule, ticks(half, TH.drift_baseline_s + 1, lambda t: load(t, 2, 0.1)))
    start = TH.drift_baseline_s + 1
    assert fired(drive(rule, ticks(start, start + 20, lambda t: load(t, 2, 0.25))), "LATENCY_DRIFT")


def test_drift_needs_enough_baseline_samples():
    rule = LatencyDrift()
    drive(rule, ticks(0, TH.drift_baseline_s + 1, lambda t: load(t, 2, 0.1) if t < 3 else load(t, 0, None)))
    start = TH.drift_baseline_s + 1
    assert not fired(drive(rule, ticks(start, start + 100, lambda t: load(t, 2, 0.5))), "LATENCY_DRIFT")


@pytest.mark.parametrize("seen_down", [True, False], ids=["seen-starting", "restart-between-ticks"])
def test_drift_baseline_is_learned_again_after_a_restart(seen_down):
    rule = LatencyDrift()
    drive(rule, baseline())
    if seen_down:
        drive(rule, [ob(TH.drift_baseline_s + 2, state="starting")])
    again = TH.drift_baseline_s + 3
    # The restarted engine is slower from the start: that is its new baseline, not drift.
    results = drive(
        rule,
        ticks(again, again + TH.drift_baseline_s + 100, lambda t: load(t, 2, 0.3, restarts=(again - 1,))),
    )
    assert not fired(results, "LATENCY_DRIFT")


def test_an_old_restart_leaving_the_record_keeps_the_baseline():
    """restart_times only keeps recent restarts: an old one dropping out is not a new restart."""
    rule = LatencyDrift()
    drive(rule, [dataclasses.replace(o, restart_times=(-50.0,)) for o in baseline()])
    start = TH.drift_baseline_s + 1
    assert fired(drive(rule, ticks(start, start + 20, lambda t: load(t, 2, 0.3))), "LATENCY_DRIFT")


def test_drift_clears_when_latency_returns():
    rule = LatencyDrift()
    drive(rule, baseline())
    start = TH.drift_baseline_s + 1
    assert drive(rule, ticks(start, start + 30, lambda t: load(t, 2, 0.3)))[-1][1] is not None
    back = drive(rule, ticks(start + 30, start + 30 + rule.window_s, lambda t: load(t, 2, 0.1)))
    assert back[-1][1] is None


def test_load_bins():
    assert [load_bin(n) for n in (0, 1, 2, 3, 4, 7, 8, 15, 16, 300)] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]


# --- KV_EXHAUSTION_ETA ---------------------------------------------------------------------------------------
def kv_series(values: Sequence[float], start: float = 0.0) -> list[EngineObservation]:
    return [ob(start + i, kv=v, running=4, waiting=0) for i, v in enumerate(values)]


def test_kv_eta_warns_before_the_cache_fills():
    rule = KvExhaustionEta()
    rising = kv_series([0.2 + 0.002 * i for i in range(200)])  # 0.12 per minute
    results = drive(rule, rising)
    t = first_fire(results, "KV_EXHAUSTION_ETA")
    assert t is not None
    _, severity, summary, evidence = next(f for _, f in results if f)
    assert severity == "warning" and "full in" in summary
    level = 0.2 + 0.002 * t
    assert evidence["eta_s"] == pytest.approx((1 - level) / 0.002, rel=0.01)
    assert (
        evidence["eta_s"] < TH.kv_eta_warn_s <= (1 - (level - 0.002)) / 0.002 + 1
    )  # warned on the first tick under
    assert evidence["rising_per_min"] == pytest.approx(0.12, rel=0.01)


def test_kv_eta_is_exposed_without_an_alert():
    rule = KvExhaustionEta()
    results = drive(rule, kv_series([0.1 + 0.0002 * i for i in range(120)]))  # ~75 min to full
    assert not fired(results, "KV_EXHAUSTION_ETA")
    assert rule.eta_s == pytest.approx((1 - (0.1 + 0.0002 * 119)) / 0.0002, rel=0.01)
    assert eta_of((GpuWedged(), rule)) == rule.eta_s == rule.kv_eta_s


def test_kv_eta_ignores_a_gauge_that_swings_to_full():
    """vLLM's gauge jumps between 0 and 100 % in a storm: a few outliers do not bend the slope."""
    values = [0.3 + 0.001 * i for i in range(120)]
    for i in range(0, 120, 9):
        values[i] = 1.0 if i % 2 else 0.0
    trend = kv_trend(kv_series(values))
    assert trend is not None and trend.slope_per_s == pytest.approx(0.001, rel=0.05)


def test_noise_that_happens_to_tilt_up_is_no_trend():
    """Random noise around 50 %: its median slope is slightly positive, but pairs rise and fall alike."""
    import random

    r = random.Random(1)
    values = [0.5 + r.uniform(-0.05, 0.05) for _ in range(120)]
    slope, _, rising = theil_sen([(float(i), v) for i, v in enumerate(values)])
    assert slope > 0 and rising < 0.6  # the case this test is about
    assert kv_eta_s(kv_series(values)) is None


@pytest.mark.parametrize(
    "values",
    [
        [0.5] * 120,  # flat
        [0.9 - 0.002 * i for i in range(120)],  # falling
        [0.2 + 0.01 * i for i in range(5)],  # too few samples
    ],
    ids=["flat", "falling", "few"],
)
def test_no_kv_eta_when_not_rising(values):
    rule = KvExhaustionEta()
    drive(rule, kv_series(values))
    assert rule.eta_s is None and kv_eta_s(kv_series(values)) is None


def test_kv_eta_clears_when_usage_levels_off():
    rule = KvExhaustionEta()
    rising = kv_series([0.3 + 0.003 * i for i in range(100)])
    assert drive(rule, rising)[-1][1] is not None
    flat = drive(rule, kv_series([0.6] * 200, start=100), history_s=900)
    assert flat[-1][1] is None and rule.eta_s is None


def test_kv_eta_uses_only_samples_since_the_engine_last_became_serving():
    before = kv_series([0.1 + 0.004 * i for i in range(100)])
    restarted = [ob(100, state="starting")] + kv_series([0.3] * 60, start=101)
    rule = KvExhaustionEta()
    drive(rule, before + restarted)
    assert rule.eta_s is None


def test_kv_eta_is_unknown_on_a_failed_scrape():
    rule = KvExhaustionEta()
    obs = kv_series([0.2 + 0.002 * i for i in range(100)])
    drive(rule, obs)
    assert rule.eta_s is not None
    drive(rule, [dataclasses.replace(ob(100, kv=None), scrape=FAILED, last_scrape_ok_t=None)])
    assert rule.eta_s is None


@settings(max_examples=60, deadline=None)
@given(
    slope=st.floats(min_value=1e-4, max_value=5e-3),
    level=st.floats(min_value=0.0, max_value=0.4),
    noise=st.lists(st.floats(min_value=-0.002, max_value=0.002), min_size=90, max_size=90),
    outliers=st.sets(st.integers(min_value=0, max_value=89), max_size=12),
)
def test_theil_sen_slope_recovers_a_rising_trend_through_noise_and_outliers(slope, level, noise, outliers):
    points = [(float(i), level + slope * i + noise[i]) for i in range(90)]
    points = [(t, 1.0 if i in outliers else y) for i, (t, y) in enumerate(points)]
    fit = theil_sen(points)
    assert fit is not None
    # Noise of ±0.002 on a 90 s span can tilt the slope by at most about 4e-5/s; outliers are ignored.
    assert abs(fit[0] - slope) <= 4e-5 + 0.2 * slope


@settings(max_examples=60, deadline=None)
@given(
    start=st.floats(min_value=0.2, max_value=1.0),
    drops=st.lists(st.floats(min_value=1e-4, max_value=0.01), min_size=30, max_size=120),
)
def test_a_falling_kv_never_has_an_eta(start, drops):
    values, v = [], start
    for d in drops:
        values.append(v)
        v = max(0.0, v - d)
    assert kv_eta_s(kv_series(values)) is None


@settings(max_examples=60, deadline=None)
@given(slope=st.floats(min_value=1e-4, max_value=5e-3), level=st.floats(min_value=0.0, max_value=0.5))
def test_eta_of_a_clean_line_is_time_to_full(slope, level):
    values = [min(1.0, level + slope * i) for i in range(60)]
    eta = kv_eta_s(kv_series(values))
    if values[-1] >= 1.0:
        assert eta is None or eta == pytest.approx(0.0, abs=1.0)
    else:
        assert eta == pytest.approx((1 - values[-1]) / slope, rel=1e-6, abs=1e-6)


def test_the_engine_rules_carry_the_eta_into_the_snapshot_value():
    from agents.alerts import EngineRules

    rules = EngineRules(TH, extra_rules=default_rules())
    for o in kv_series([0.2 + 0.002 * i for i in range(150)]):
        alerts = rules.evaluate(o)
    assert rules.extra_value("kv_eta_s") == pytest.approx((1 - (0.2 + 0.002 * 149)) / 0.002, rel=0.01)
    assert "KV_EXHAUSTION_ETA" in {a.code for a in alerts}


# --- the set -----------------------------------------------------------------------------------------------
def test_default_rules_are_fresh_instances_of_every_rule():
    one, two = default_rules(), default_rules()
    assert {r.code for r in one} == {
        "ADMISSION_STALLED",
        "GPU_WEDGED",
        "RANK_DIVERGENCE",
        "FRONTEND_HUNG",
        "LATENCY_DRIFT",
        "KV_EXHAUSTION_ETA",
    }
    assert all(a is not b for a, b in zip(one, two, strict=True))


def test_every_code_is_in_the_vocabulary():
    from agents.schema.vocab import ALERT_CODES

    assert {r.code for r in default_rules()} <= set(ALERT_CODES)


def test_a_healthy_engine_raises_nothing_from_any_rule():
    """Steady load on two GPUs for 20 minutes: busy GPUs, tokens flowing, canaries answered, flat KV."""

    def steady(t: float) -> EngineObservation:
        return ob(
            t,
            running=6,
            waiting=int(t) % 3,
            kv=0.4 + 0.01 * (int(t) % 5),
            gen=300 * t,
            prompt=600 * t,
            tokens=900 * t,
            gen_rate=300,
            ttft=0.08 + 0.01 * (int(t) % 4),
            util=(98.0, 95.0),
            conns=8,
            canary_ok=True,
            canary_at=f"c{int(t) // 10}",
            in_flight=0.2 if int(t) % 10 == 0 else None,
        )

    for rule in default_rules():
        assert not any(f for _, f in drive(rule, ticks(0, 1200, steady))), rule.code


def test_a_ramp_after_idle_minutes_is_fitted_from_where_it_began():
    """The e2e storm's case: two idle minutes at 5 %, then 45 s of steady rise at 1 %/s. Fitting the whole
    3-minute window read the ramp as a slow drift (ETA minutes too long); the fit starts at the rise."""
    values = [0.05] * 120 + [0.05 + 0.01 * i for i in range(1, 46)]
    eta = kv_eta_s(kv_series(values))
    true_eta = (1 - values[-1]) / 0.01
    assert eta == pytest.approx(true_eta, rel=0.15), (eta, true_eta)


def test_the_eta_ends_as_soon_as_kv_falls_away_from_its_trend():
    values = [0.2 + 0.005 * i for i in range(100)] + [0.2, 0.1]  # the long requests finished
    assert kv_eta_s(kv_series(values[:100])) is not None
    assert kv_eta_s(kv_series(values)) is None
