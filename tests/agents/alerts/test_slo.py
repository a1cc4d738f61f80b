"""SLO_BURN math on synthetic cumulative TTFT histograms over simulated time (no sleeping)."""

from __future__ import annotations

import json
import math
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from agents.config import Slo
from agents.engines.vllm import TTFT_BUCKETS_S as VLLM_TTFT
from agents.metrics.model import Histogram
from agents.slo import PAIRS, BurnTracker, boundary_problem, check_objective, feasibility_problem, source_for

INF = math.inf
BOUNDS = (0.1, 0.5, 1.0, 2.5, INF)
SLO = Slo(ttft_s=0.5, objective=0.99)


class Engine:
    """A synthetic engine: cumulative good (TTFT 0.1 s) and bad (TTFT 2 s) requests."""

    def __init__(self) -> None:
        self.good = 0.0
        self.bad = 0.0

    def serve(self, requests: float, bad_share: float) -> None:
        self.bad += requests * bad_share
        self.good += requests * (1 - bad_share)

    def restart(self) -> None:
        self.good = self.bad = 0.0

    def hist(self) -> Histogram:
        g, n = self.good, self.good + self.bad
        return Histogram(bounds=BOUNDS, cumulative=(g, g, g, n, n), sum=0.1 * g + 2 * self.bad, count=n)


def drive(
    tr: BurnTracker,
    eng: Engine,
    t0: float,
    seconds: float,
    *,
    step: float = 10.0,
    rps: float = 10.0,
    bad_share: float = 0.0,
) -> float:
    """Serve for ``seconds`` from t0 (a scrape every ``step``); returns the time of the last scrape."""
    t = t0
    end = t0 + seconds
    while t < end - 1e-9:
        t += step
        eng.serve(rps * step, bad_share)
        tr.add(t, eng.hist())
    return t


def started(tracker: BurnTracker | None = None) -> tuple[BurnTracker, Engine]:
    tr = tracker or BurnTracker(SLO)
    eng = Engine()
    tr.add(0.0, eng.hist())
    return tr, eng


# --- refusals and the feasibility report ------------------------------------------------------------
def test_ttft_between_boundaries_is_refused_naming_both_neighbours() -> None:
    msg = boundary_problem(0.3, VLLM_TTFT)
    assert msg is not None and "\n" not in msg
    assert "0.3 (300ms)" in msg and "0.25 (250ms) below" in msg and "0.5 (500ms) above" in msg


def test_ttft_outside_the_buckets_names_the_one_side_there_is() -> None:
    above_all = boundary_problem(5000.0, VLLM_TTFT)
    assert (
        above_all is not None and "2560 (" in above_all and "below" in above_all and "above" not in above_all
    )
    below_all = boundary_problem(0.0005, VLLM_TTFT)
    assert below_all is not None and "0.001 (1ms) above" in below_all and "below" not in below_all
    assert "no finite buckets" in (boundary_problem(1.0, (INF,)) or "")


def test_boundary_match_tolerates_float_noise() -> None:
    assert boundary_problem(0.1 + 0.2 - 0.2, VLLM_TTFT) is None  # 0.10000000000000003
    assert boundary_problem(2560.0, VLLM_TTFT) is None
    assert boundary_problem(0.1001, VLLM_TTFT) is not None


def test_objective_that_caps_below_a_factor_names_the_pairs_that_can_never_fire() -> None:
    msg = feasibility_problem(0.9)  # at most 10x: the 14.4x page can never fire, the 6x page can
    assert msg is not None and "1h/5m page" in msg and "14.4" in msg and "6h/30m" not in msg
    low = feasibility_problem(0.5)  # at most 2x: only the 3d/6h ticket (1x) can fire
    assert (
        low is not None and all(name in low for name in ("1h/5m", "6h/30m", "1d/2h")) and "3d/6h" not in low
    )
    assert feasibility_problem(0.99) is None and feasibility_problem(0.999) is None


def test_check_objective_joins_both_reports() -> None:
    both = check_objective(Slo(ttft_s=0.3, objective=0.9), VLLM_TTFT)
    assert both is not None and "not a bucket boundary" in both and "can never fire" in both
    assert check_objective(Slo(ttft_s=0.5, objective=0.99), VLLM_TTFT) is None
    assert BurnTracker(Slo(ttft_s=0.5, objective=0.9)).status(0.0).problem == feasibility_problem(0.9)


def test_histogram_without_the_boundary_adds_nothing_and_says_why() -> None:
    tr = BurnTracker(Slo(ttft_s=0.3, objective=0.99))
    eng = Engine()
    for t in range(0, 600, 10):
        eng.serve(100, 1.0)
        tr.add(float(t), eng.hist())
    assert tr.points() == 0 and tr.burn(300, 600.0) is None and tr.evaluate(600.0) is None
    status = tr.status(600.0)
    assert (
        status.problem is not None and "0.25" not in status.problem and "0.1 (100ms) below" in status.problem
    )


# --- each pair fires, and does not ------------------------------------------------------------------
def test_fast_burn_pages_on_the_1h_5m_pair() -> None:
    tr, eng = started()
    now = drive(tr, eng, 0.0, 3600, bad_share=0.20)  # burn 20 > 14.4
    assert math.isclose(tr.burn(3600, now), 20.0) and math.isclose(tr.burn(300, now), 20.0)
    code, severity, summary, ev = tr.evaluate(now)
    assert (code, severity) == ("SLO_BURN", "critical")
    assert ev["pair"] == {"severity": "critical", "long_s": 3600.0, "short_s": 300.0, "factor": 14.4}
    assert [3600.0, 300.0, 14.4] in ev["pairs_firing"]
    assert "20.0x over 1h" in summary and "5m" in summary and "500ms" in summary
    assert ev["objective"] == 0.99 and ev["ttft_s"] == 0.5 and ev["source"] == "histogram"
    assert math.isclose(ev["budget_left"], 1 - 20.0)
    by_window = {w["window_s"]: w for w in ev["windows"]}
    assert by_window[300.0]["full"] and by_window[3600.0]["full"] and not by_window[86400.0]["full"]
    assert by_window[300.0]["requests"] == 3000 and by_window[300.0]["bad"] == 600
    json.dumps(ev)  # JSON values only


def test_page_needs_both_windows_a_recovered_short_window_silences_it() -> None:
    tr, eng = started()
    now = drive(tr, eng, 0.0, 3600, bad_share=0.30)
    assert tr.evaluate(now)[1] == "critical"
    now = drive(tr, eng, now, 600, bad_share=0.0)  # 10 healthy minutes: 5m burns 0, 1h still ~25
    assert tr.burn(300, now) == 0.0 and tr.burn(3600, now) > 14.4
    _, _, _, ev = tr.evaluate(now)  # still a page, now from the 6h/30m pair (30m burns 20)
    assert ev["pairs_firing"] == [[21600.0, 1800.0, 6.0]]
    now = drive(tr, eng, now, 1800, bad_share=0.0)  # 30 healthy minutes: the 30m window recovers too
    assert tr.burn(1800, now) == 0.0 and tr.burn(21600, now) > 6
    assert tr.evaluate(now) is None


def test_short_spike_alone_does_not_page() -> None:
    tr, eng = started()
    now = drive(tr, eng, 0.0, 3300, bad_share=0.0)
    now = drive(tr, eng, now, 300, bad_share=0.5)  # 5m burns 50, 1h only ~4.2
    assert tr.burn(300, now) > 14.4 and tr.burn(3600, now) < 14.4
    assert tr.evaluate(now) is None


def test_6h_30m_pair_pages_at_burn_8_where_the_fast_pair_cannot() -> None:
    tr, eng = started()
    now = drive(tr, eng, 0.0, 6 * 3600, bad_share=0.08)
    _, severity, _, ev = tr.evaluate(now)
    assert severity == "critical" and ev["pair"]["long_s"] == 21600.0 and ev["pair"]["factor"] == 6.0
    assert [3600.0, 300.0, 14.4] not in ev["pairs_firing"]


def test_1d_2h_pair_tickets_at_burn_4() -> None:
    tr, eng = started()
    now = drive(tr, eng, 0.0, 2 * 3600 - 60, bad_share=0.04, step=60)
    assert tr.evaluate(now) is None  # 2h not yet covered: the ticket waits for its short window
    now = drive(tr, eng, now, 120, bad_share=0.04, step=60)
    _, severity, summary, ev = tr.evaluate(now)
    assert severity == "warning" and ev["pair"]["long_s"] == 86400.0 and ev["pair"]["factor"] == 3.0
    assert "ticket" in summary and "1d window over the 2h" in summary  # partial long window, said so


def test_3d_6h_pair_tickets_at_burn_1_5_only_once_6h_are_covered() -> None:
    tr, eng = started()
    now = drive(tr, eng, 0.0, 6 * 3600 - 60, bad_share=0.015, step=60)
    assert tr.burn(21600, now) > 1.0 and tr.evaluate(now) is None
    now = drive(tr, eng, now, 60, bad_share=0.015, step=60)
    _, severity, _, ev = tr.evaluate(now)
    assert severity == "warning" and ev["pair"]["long_s"] == 259200.0 and ev["pair"]["factor"] == 1.0


def test_burn_within_budget_never_alerts() -> None:
    tr, eng = started()
    now = drive(tr, eng, 0.0, 8 * 3600, bad_share=0.005, step=60)  # burn 0.5
    assert math.isclose(tr.burn(21600, now), 0.5) and tr.evaluate(now) is None
    assert math.isclose(tr.status(now).budget_left, 0.5)


# --- resets, zero traffic, time order ---------------------------------------------------------------
def test_counter_reset_starts_afresh_with_no_negative_delta() -> None:
    tr, eng = started()
    now = drive(tr, eng, 0.0, 600, rps=10, bad_share=0.0)  # 6,000 good requests
    eng.restart()
    eng.serve(10, 1.0)  # after the restart: 10 requests, all slow
    now += 10
    tr.add(now, eng.hist())
    assert tr.resets == 1
    w = tr.window(10, now)  # from the scrape before the restart to this one
    assert w.requests == 10 and w.bad == 10 and math.isclose(w.burn, 100.0)
    five = tr.window(300, now)
    assert five.requests == 3000 - 100 + 10 and five.burn >= 0  # nothing subtracted by the reset
    now = drive(tr, eng, now, 60, rps=10, bad_share=0.0)
    assert tr.window(60, now).bad == 0 and tr.resets == 1


def test_zero_traffic_never_alerts_and_reports_none() -> None:
    tr, eng = started()
    now = drive(tr, eng, 0.0, 3 * 3600, rps=0.0, step=30)
    assert all(tr.burn(w, now) is None for w in tr.windows)
    assert tr.evaluate(now) is None
    status = tr.status(now)
    assert status.budget_left is None and all(w.burn_rate is None for w in status.windows)
    assert [w.window_s for w in status.windows] == [300.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0, 259200.0]


def test_traffic_that_stopped_leaves_the_short_window_empty() -> None:
    tr, eng = started()
    now = drive(tr, eng, 0.0, 3600, bad_share=0.5)
    now = drive(tr, eng, now, 1800, rps=0.0)  # the engine went quiet: no request in the last 30 minutes
    assert tr.burn(300, now) is None and tr.burn(1800, now) is None
    assert tr.burn(3600, now) > 14.4 and tr.burn(21600, now) > 6
    assert tr.evaluate(now) is None


def test_samples_out_of_time_order_are_ignored() -> None:
    tr, eng = started()
    now = drive(tr, eng, 0.0, 300, bad_share=0.0)
    eng.serve(1000, 1.0)
    tr.add(now - 5, eng.hist())  # older than the last sample: ignored
    tr.add(math.nan, eng.hist())
    assert tr.window(300, now).bad == 0


def test_status_carries_each_window_and_the_budget_left() -> None:
    tr, eng = started()
    now = drive(tr, eng, 0.0, 1800, bad_share=0.02)  # burn 2
    st_ = tr.status(now)
    assert st_.source == "histogram" and st_.ttft_s == 0.5 and st_.objective == 0.99 and st_.problem is None
    assert math.isclose(st_.budget_left, -1.0)  # 2x over the whole history: overspent by one budget
    assert all(math.isclose(w.burn_rate, 2.0) for w in st_.windows)


# --- canary source ----------------------------------------------------------------------------------
def test_canary_source_counts_each_canary_as_one_request() -> None:
    tr = BurnTracker(SLO, source="canary")
    t = 0.0
    for i in range(400):  # one canary every 10 s; one in four slow, one in ten failed
        t += 10
        if i % 10 == 0:
            tr.add_canary(t, None, ok=False)
        else:
            tr.add_canary(t, 2.0 if i % 4 == 0 else 0.2, ok=True)
    w = tr.window(3600, t)
    assert w.requests == 360 and w.full
    assert w.bad == 108  # per 40 canaries: 4 failed, 8 slow (multiples of 4 that are not of 10)
    _, severity, summary, ev = tr.evaluate(t)
    assert severity == "critical" and ev["source"] == "canary" and "canary" in summary
    assert tr.status(t).source == "canary"
    tr.add_canary(t + 10, 0.5, ok=True)  # exactly ttft_s is within the objective
    assert tr.window(10, t + 10).bad == 0


def test_a_tracker_takes_only_its_own_source() -> None:
    import pytest

    with pytest.raises(ValueError, match="source"):
        BurnTracker(SLO, source="canary").add(0.0, Engine().hist())
    with pytest.raises(ValueError, match="source"):
        BurnTracker(SLO).add_canary(0.0, 0.1, ok=True)
    assert source_for(frozenset({"ttft"})) == "canary" and source_for(frozenset()) == "histogram"


# --- memory -----------------------------------------------------------------------------------------
def test_three_days_of_one_second_scrapes_stay_bounded_and_exact() -> None:
    tr, eng = started()
    hist = eng.hist
    t = 0.0
    for _ in range(3 * 86400 + 600):
        t += 1.0
        eng.good += 9.0
        eng.bad += 1.0  # 10 % bad: burn 10
        tr.add(t, hist())
    assert tr.points() < 7000
    for w in tr.windows:
        got = tr.window(w, t)
        assert got.full and math.isclose(got.burn, 10.0)
        assert w <= got.covered_s <= w + 60  # window edges land on a kept point at most a minute early


# --- property ---------------------------------------------------------------------------------------
steps = st.lists(
    st.tuples(
        st.floats(0.1, 120.0),  # seconds to the next scrape
        st.integers(0, 50),  # good requests finished meanwhile
        st.integers(0, 50),  # slow ones
        st.booleans(),  # the engine restarted before this scrape
    ),
    max_size=60,
)


@given(steps)
@settings(max_examples=150, deadline=None)
def test_burn_is_never_negative_and_none_exactly_without_traffic(seq) -> None:
    tr, eng = started()
    t = 0.0
    for dt, good, bad, restart in seq:
        t += dt
        if restart:
            eng.restart()
        eng.good += good
        eng.bad += bad
        tr.add(t, eng.hist())
    for w in (*tr.windows, 1.0, 30.0):
        got = tr.window(w, t)
        assert got.requests >= 0 and 0 <= got.bad <= got.requests
        if got.requests == 0:
            assert got.burn is None
        else:
            assert got.burn is not None and 0 <= got.burn <= 100.0 + 1e-9
    assert (tr.status(t).budget_left is None) == (tr.window(PAIRS[-1].long_s, t).requests == 0)


# --- a real simulated engine's TTFT histogram ---------------------------------------------------------
def test_tracker_reads_a_simulated_engines_ttft_histogram(tmp_path) -> None:
    import time

    import httpx

    from agents.engines import get_adapter
    from agents.metrics.parse import parse
    from tests.support.simproc import sim_engine

    adapter = get_adapter("vllm")
    assert (
        source_for(adapter.unsupported) == "histogram"
        and source_for(get_adapter("tgi").unsupported) == "canary"
    )
    met, missed = (
        BurnTracker(Slo(ttft_s=2560.0, objective=0.99)),
        BurnTracker(Slo(ttft_s=0.001, objective=0.99)),
    )
    with sim_engine("vllm", "--load", "30", tmp=tmp_path) as eng:
        eng.wait_ready()
        t0 = time.monotonic()
        hist = None
        while time.monotonic() - t0 < 3.0:
            reading = adapter.read(
                parse(httpx.get(eng.url + "/metrics", timeout=5).content, adapter.wanted())
            )
            hist = reading.histograms["ttft"]
            assert hist is not None
            for tr in (met, missed):
                tr.add(time.monotonic(), hist)
            time.sleep(0.3)
    now = time.monotonic()
    assert check_objective(Slo(ttft_s=2560.0, objective=0.99), hist.bounds) is None
    refusal = check_objective(Slo(ttft_s=0.3, objective=0.99), hist.bounds)
    assert refusal is not None and "0.25 (250ms) below" in refusal and "0.5 (500ms) above" in refusal
    easy, hard = met.window(300, now), missed.window(300, now)
    assert easy.requests > 10 and not easy.full  # computed over the few seconds of history there are
    assert easy.burn == 0.0 and met.evaluate(now) is None
    assert hard.requests == easy.requests and hard.burn > 14.4  # nothing arrives within 1 ms


def test_slo_rule_raises_through_the_rules_hook_and_keeps_the_status() -> None:
    from agents.alerts import EngineObservation, ScrapeOutcome
    from agents.slo import SloRule

    tr, eng = started()
    rule = SloRule(tr)
    now = drive(tr, eng, 0.0, 3600, bad_share=0.2)
    o = EngineObservation(
        t=now, wall="2026-12-06T00:00:00Z", state="ready", stats={}, scrape=ScrapeOutcome(ok=True)
    )
    code, severity, _, ev = rule(o, (), None)
    assert (code, severity) == ("SLO_BURN", "critical") and rule.slo == tr.status(now)
    assert math.isclose(rule.slo.budget_left, ev["budget_left"], abs_tol=1e-4)
    now = drive(tr, eng, now, 1800, bad_share=0.0)
    assert rule(replace(o, t=now), (), None) is None and rule.slo.windows[0].burn_rate == 0.0
