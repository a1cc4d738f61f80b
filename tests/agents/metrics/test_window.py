"""Histogram math, counter resets, derived stats and the sliding window, against hand-worked values."""

from __future__ import annotations

import dataclasses
import math

import pytest

from agents.engines.base import COUNTERS, GAUGES, HISTOGRAMS, Reading
from agents.metrics.model import Histogram
from agents.metrics.window import (
    BUCKETS_KEY,
    STATS_KEYS,
    Derived,
    Window,
    counter_delta,
    delta,
    derive,
    derive_stats,
    histogram_from_samples,
    merge,
    quantile,
    quantile_bucket,
)
from agents.schema import PERCENTILE_KEYS, EngineStats

INF = math.inf
# The worked example used throughout: 10 observations, 2 in (0, 0.1], 4 in (0.1, 0.5], 3 in (0.5, 1],
# 1 above 1.
H = Histogram(bounds=(0.1, 0.5, 1.0, INF), cumulative=(2.0, 6.0, 9.0, 10.0), sum=5.0, count=10.0)


def hist(
    cumulative: tuple[float, ...], bounds: tuple[float, ...] = H.bounds, total: float | None = None
) -> Histogram:
    return Histogram(bounds, cumulative, sum=0.0, count=cumulative[-1] if total is None else total)


def reading(gauges=None, counters=None, histograms=None) -> Reading:
    return Reading(
        kind="test",
        gauges={name: (gauges or {}).get(name) for name in GAUGES},
        counters={name: (counters or {}).get(name) for name in COUNTERS},
        histograms={name: (histograms or {}).get(name) for name in HISTOGRAMS},
    )


# --- histogram_from_samples ----------------------------------------------------------------------------


def test_histogram_from_samples_sorts_bounds() -> None:
    buckets = [({"le": "1.0"}, 9.0), ({"le": "+Inf"}, 10.0), ({"le": "0.1"}, 2.0), ({"le": "0.5"}, 6.0)]
    assert histogram_from_samples(buckets, 5.0, 10.0) == H


def test_histogram_from_samples_adds_missing_inf_from_count() -> None:
    buckets = [({"le": "0.5"}, 6.0), ({"le": "0.1"}, 2.0), ({"le": "1"}, 9.0)]
    assert histogram_from_samples(buckets, 5.0, 10.0) == H


def test_histogram_from_samples_tolerates_bad_and_missing_parts() -> None:
    buckets = [({"le": "0.1"}, 2.0), ({"le": "oops"}, 99.0), ({}, 98.0), ({"le": "NaN"}, 97.0), (0.5, 6.0)]
    h = histogram_from_samples(buckets, None, None)
    assert h.bounds == (0.1, 0.5) and h.cumulative == (2.0, 6.0)
    assert math.isnan(h.sum) and math.isnan(h.count) and not h.has_inf
    only_inf = histogram_from_samples([({"le": "+Inf"}, 4.0)], 1.0, None)
    assert only_inf.count == 4.0 and only_inf.has_inf


# --- quantile ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        (0.1, 0.05),  # rank 1 in (0, 0.1] holding 2: 0 + 0.1 * 1/2
        (0.5, 0.4),  # rank 5 in (0.1, 0.5] holding 4 after 2: 0.1 + 0.4 * (5-2)/4 = 0.1 + 0.3
        (0.8, 0.5 + 0.5 * 2 / 3),  # rank 8 in (0.5, 1] holding 3 after 6: 0.5 + 0.5 * (8-6)/3
        (0.9, 1.0),  # rank 9 = top of (0.5, 1]
        (0.95, 1.0),  # rank 9.5 falls in +Inf: the highest finite bound
        (1.0, 1.0),
        (0.0, 0.0),  # first non-empty bucket, its lower edge 0
    ],
)
def test_quantile_hand_worked(q: float, expected: float) -> None:
    assert quantile(q, H) == pytest.approx(expected, rel=1e-12)


def test_quantile_q0_skips_empty_leading_buckets() -> None:
    # 0 in (0,0.1], 4 in (0.1,0.5]: the smallest observation lies above 0.1.
    assert quantile(0.0, hist((0.0, 4.0, 4.0, 4.0))) == 0.1


def test_quantile_undefined_cases_are_none() -> None:
    assert quantile(0.5, hist((0.0, 0.0, 0.0, 0.0))) is None  # no observations
    assert quantile(0.5, Histogram((), (), 0.0, 0.0)) is None  # no buckets
    assert quantile(0.5, Histogram((INF,), (5.0,), 1.0, 5.0)) is None  # only +Inf
    assert quantile(0.5, Histogram((0.1, 1.0), (2.0, 5.0), 1.0, 5.0)) is None  # no +Inf bucket


def test_quantile_non_positive_first_bound_returns_it() -> None:
    # rank 2.5 of 10 lies in the first bucket whose bound is -1 <= 0: Prometheus returns the bound.
    assert quantile(0.25, Histogram((-1.0, 0.0, INF), (5.0, 5.0, 10.0), 0.0, 10.0)) == -1.0


def test_quantile_forces_monotonic_counts() -> None:
    # (4, 3, 10) is read as (4, 4, 10): rank 3 of 10 in (0, 0.1] holding 4 -> 0.1 * 3/4.
    h = Histogram((0.1, 0.5, INF), (4.0, 3.0, 10.0), 0.0, 10.0)
    assert quantile(0.3, h) == pytest.approx(0.075)


def test_quantile_rejects_q_outside_unit_interval() -> None:
    with pytest.raises(ValueError):
        quantile(1.5, H)
    with pytest.raises(ValueError):
        quantile(-0.1, H)


# --- delta ---------------------------------------------------------------------------------------------


def test_delta_bucketwise() -> None:
    prev = Histogram(H.bounds, (1.0, 2.0, 3.0, 4.0), sum=1.0, count=4.0)
    d = delta(prev, H)
    # (2-1, 6-2, 9-3, 10-4) = (1, 4, 6, 6); sum 5-1; count 10-4
    assert d == Histogram(H.bounds, (1.0, 4.0, 6.0, 6.0), sum=4.0, count=6.0)
    # rank 3 of 6 in (0.1, 0.5] holding 3 after 1: 0.1 + 0.4 * (3-1)/3
    assert quantile(0.5, d) == pytest.approx(0.1 + 0.4 * 2 / 3)


def test_delta_of_unchanged_histogram_has_no_observations() -> None:
    d = delta(H, H)
    assert d.count == 0 and d.cumulative == (0.0, 0.0, 0.0, 0.0)
    assert quantile(0.95, d) is None


@pytest.mark.parametrize(
    "prev",
    [
        None,
        Histogram(H.bounds, (3.0, 6.0, 9.0, 12.0), 9.0, 12.0),  # count went down: restart
        Histogram(H.bounds, (3.0, 3.0, 3.0, 3.0), 1.0, 3.0),  # first bucket went down (2 < 3)
        Histogram((0.2, 0.5, 1.0, INF), (1.0, 1.0, 1.0, 1.0), 1.0, 1.0),  # bounds changed
    ],
)
def test_delta_reset_returns_current(prev: Histogram | None) -> None:
    assert delta(prev, H) is H


# --- merge ---------------------------------------------------------------------------------------------


def test_merge_equal_bounds_sums() -> None:
    other = Histogram(H.bounds, (1.0, 1.0, 2.0, 3.0), sum=0.5, count=3.0)
    assert merge([H, other]) == Histogram(H.bounds, (3.0, 7.0, 11.0, 13.0), sum=5.5, count=13.0)
    assert merge(H, other) == merge([H, other])


def test_merge_different_bounds_uses_step_functions() -> None:
    a = Histogram((1.0, INF), (3.0, 5.0), sum=2.0, count=5.0)
    b = Histogram((0.5, 2.0, INF), (1.0, 4.0, 6.0), sum=3.0, count=6.0)
    # union (0.5, 1, 2, +Inf); a steps to (0, 3, 3, 5); b steps to (1, 1, 4, 6); sum (1, 4, 7, 11)
    assert merge([a, b]) == Histogram((0.5, 1.0, 2.0, INF), (1.0, 4.0, 7.0, 11.0), sum=5.0, count=11.0)


def test_merge_histogram_without_inf_contributes_its_count() -> None:
    a = Histogram((1.0,), (3.0,), sum=1.0, count=4.0)
    b = Histogram((1.0, INF), (1.0, 2.0), sum=1.0, count=2.0)
    # union (1, +Inf): a -> (3, 4 from its count), b -> (1, 2)
    assert merge([a, b]) == Histogram((1.0, INF), (4.0, 6.0), sum=2.0, count=6.0)


def test_merge_edge_cases() -> None:
    assert merge([]) is None
    assert merge([None, None]) is None
    assert merge([None, H]) is H
    assert merge(iter([H])) is H


# --- counters ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prev", "cur", "expected"),
    [
        (3.0, 10.0, 7.0),
        (10.0, 10.0, 0.0),
        (10.0, 3.0, 3.0),
        (None, 5.0, None),
        (5.0, None, None),
        (math.nan, 5.0, None),
    ],
)
def test_counter_delta(prev: float | None, cur: float | None, expected: float | None) -> None:
    assert counter_delta(prev, cur) == expected


# --- derive_stats --------------------------------------------------------------------------------------

START = reading(
    gauges={"requests_running": 1.0, "requests_waiting": 9.0, "kv_cache_usage": 0.9},
    counters={
        "prompt_tokens": 100.0,
        "generation_tokens": 0.0,
        "preemptions": 2.0,
        "prefix_cache_hits": 10.0,
        "prefix_cache_queries": 100.0,
    },
    histograms={"ttft": Histogram(H.bounds, (1.0, 2.0, 3.0, 4.0), 1.0, 4.0), "itl": H},
)
END = reading(
    gauges={"requests_running": 3.0, "requests_waiting": 0.0, "kv_cache_usage": 0.25},
    counters={
        "prompt_tokens": 600.0,
        "generation_tokens": 2000.0,
        "preemptions": 2.0,
        "prefix_cache_hits": 40.0,
        "prefix_cache_queries": 200.0,
    },
    histograms={"ttft": H, "itl": H, "queue_time": H},
)


def test_derive_stats_keys_are_the_design_keys_in_order() -> None:
    # pinned in test_schema; the one key that is not a number is the percentiles' buckets (Derived.buckets)
    assert tuple(f.name for f in dataclasses.fields(EngineStats)) == (*STATS_KEYS, BUCKETS_KEY)
    assert tuple(derive_stats(START, END, 10.0)) == STATS_KEYS
    assert tuple(derive_stats(None, END, None)) == STATS_KEYS


def test_derive_stats_over_ten_seconds() -> None:
    stats = derive_stats(START, END, 10.0)
    assert stats["requests_running"] == 3.0
    assert stats["requests_waiting"] == 0.0
    assert stats["kv_cache_usage"] == 0.25
    assert stats["prompt_tokens_per_s"] == 50.0  # (600 - 100) / 10
    assert stats["generation_tokens_per_s"] == 200.0  # 2000 / 10
    assert stats["preemptions_per_s"] == 0.0  # unchanged counter: a real 0, not None
    assert stats["request_errors_per_s"] is None  # the engine has no such counter
    assert stats["prefix_cache_hit_rate"] == pytest.approx(0.3)  # (40 - 10) / (200 - 100)
    # TTFT window = delta (1, 4, 6, 6) of 6 observations (see test_delta_bucketwise):
    assert stats["ttft_p50_s"] == pytest.approx(0.1 + 0.4 * 2 / 3)  # rank 3
    assert stats["ttft_p95_s"] == pytest.approx(0.925)  # rank 5.7 in (0.5, 1]: 0.5 + 0.5 * (5.7-4)/2
    assert stats["ttft_p99_s"] == pytest.approx(0.985)  # rank 5.94: 0.5 + 0.5 * (5.94-4)/2
    assert stats["itl_p95_s"] is None  # unchanged histogram: nothing observed in the window
    assert stats["e2e_p95_s"] is None  # not exposed
    assert stats["queue_time_p95_s"] == 1.0  # absent at start: all of END's observations are new


def test_derive_stats_without_start_gives_gauges_only() -> None:
    stats = derive_stats(None, END, 10.0)
    assert stats["requests_running"] == 3.0
    assert all(
        stats[k] is None
        for k in STATS_KEYS
        if k not in ("requests_running", "requests_waiting", "kv_cache_usage")
    )


@pytest.mark.parametrize("dt", [None, 0.0, -1.0, math.nan])
def test_derive_stats_without_a_time_span_has_no_rates(dt: float | None) -> None:
    stats = derive_stats(START, END, dt)
    assert stats["prompt_tokens_per_s"] is None and stats["generation_tokens_per_s"] is None
    assert stats["ttft_p50_s"] == pytest.approx(0.1 + 0.4 * 2 / 3)  # percentiles need no span
    assert stats["prefix_cache_hit_rate"] == pytest.approx(0.3)


def test_derive_stats_counter_reset_and_no_queries() -> None:
    start = reading(
        counters={"prompt_tokens": 1000.0, "prefix_cache_hits": 5.0, "prefix_cache_queries": 50.0}
    )
    end = reading(counters={"prompt_tokens": 50.0, "prefix_cache_hits": 5.0, "prefix_cache_queries": 50.0})
    stats = derive_stats(start, end, 10.0)
    assert stats["prompt_tokens_per_s"] == 5.0  # restarted: 50 new tokens in 10 s
    assert stats["prefix_cache_hit_rate"] is None  # no queries in the window


def test_derive_stats_non_finite_gauge_is_none() -> None:
    stats = derive_stats(
        None, reading(gauges={"kv_cache_usage": math.nan, "requests_running": math.inf}), None
    )
    assert stats["kv_cache_usage"] is None and stats["requests_running"] is None


# --- Window --------------------------------------------------------------------------------------------


def ttft_after(fast: float, slow: float) -> Histogram:
    """Cumulative TTFT histogram after ``fast`` observations <= 0.1 s and ``slow`` ones in (1, 10]."""
    return Histogram((0.1, 1.0, 10.0, INF), (fast, fast, fast + slow, fast + slow), 0.0, fast + slow)


def test_window_single_reading_has_gauges_only() -> None:
    w = Window()
    assert w.stats() == dict.fromkeys(STATS_KEYS)
    w.add(5.0, END)
    stats = w.stats()
    assert stats["requests_running"] == 3.0
    assert stats["prompt_tokens_per_s"] is None and stats["ttft_p95_s"] is None


def test_window_rates_and_percentiles_cover_only_the_window() -> None:
    w = Window(window_s=60.0)
    tokens, fast, slow = 0.0, 0.0, 0.0
    for t in range(0, 121):
        if t > 0:
            if t <= 60:
                tokens += 100.0  # 100 tokens/s and 5 slow requests/s in the first minute
                slow += 5.0
            else:
                tokens += 10.0  # 10 tokens/s and 2 fast requests/s in the second
                fast += 2.0
        w.add(
            1000.0 + t,
            reading(counters={"prompt_tokens": tokens}, histograms={"ttft": ttft_after(fast, slow)}),
        )
    stats = w.stats()
    assert stats["prompt_tokens_per_s"] == pytest.approx(10.0)
    assert stats["ttft_p95_s"] == pytest.approx(0.095)  # all 120 windowed requests <= 0.1: 0.1 * 114/120
    lifetime = quantile(0.95, ttft_after(fast, slow))
    assert lifetime is not None and lifetime > 1.0  # the lifetime view would have said "slow"
    assert len(w) == 61  # t-60 .. t


def test_window_memory_is_bounded() -> None:
    w = Window(window_s=10.0)
    for t in range(10_000):
        w.add(float(t), END)
    assert len(w) == 11  # t-10 .. t
    capped = Window(window_s=1000.0, max_readings=50)
    for t in range(10_000):
        capped.add(t * 0.01, END)
    assert len(capped) == 50


def test_window_reset_drops_history() -> None:
    w = Window()
    w.add(0.0, START)
    w.add(10.0, END)
    assert w.stats()["prompt_tokens_per_s"] == 50.0
    w.reset()
    assert len(w) == 0
    w.add(20.0, END)
    assert w.stats()["prompt_tokens_per_s"] is None


def test_window_gap_without_and_with_max_age() -> None:
    strict = Window(window_s=60.0)
    strict.add(0.0, START)
    strict.add(100.0, END)
    assert strict.stats()["prompt_tokens_per_s"] is None  # nothing else within 60 s
    lenient = Window(window_s=60.0, max_age_s=300.0)
    lenient.add(0.0, START)
    lenient.add(100.0, END)
    assert lenient.stats()["prompt_tokens_per_s"] == 5.0  # (600 - 100) / 100 s


def test_window_uses_oldest_reading_inside_window() -> None:
    w = Window(window_s=60.0)
    w.add(0.0, reading(counters={"prompt_tokens": 0.0}))
    w.add(30.0, reading(counters={"prompt_tokens": 300.0}))
    w.add(60.0, reading(counters={"prompt_tokens": 1200.0}))
    assert w.stats()["prompt_tokens_per_s"] == 20.0  # from t=0 (exactly 60 s old): 1200 / 60
    w.add(61.0, reading(counters={"prompt_tokens": 1210.0}))
    assert w.stats()["prompt_tokens_per_s"] == pytest.approx((1210.0 - 300.0) / 31.0)


def test_window_time_going_backwards_restarts_and_equal_time_replaces() -> None:
    w = Window()
    w.add(10.0, START)
    w.add(20.0, END)
    w.add(20.0, START)  # same instant: replaces the newest
    assert len(w) == 2 and w.stats()["prompt_tokens_per_s"] == 0.0
    w.add(5.0, END)  # a clock that went back cannot be a monotonic one: start over
    assert len(w) == 1 and w.stats()["prompt_tokens_per_s"] is None


def test_window_rejects_non_positive_span() -> None:
    with pytest.raises(ValueError):
        Window(window_s=0.0)


def test_lazily_created_counters_get_rates_before_the_window_is_full() -> None:
    """TGI creates its counters on the first request: a first reading without them must not keep the
    rates None for a whole window."""
    from agents.engines.base import COUNTERS, GAUGES, HISTOGRAMS, Reading
    from agents.metrics.window import Window

    def reading(tokens: float | None) -> Reading:
        counters = dict.fromkeys(COUNTERS)
        counters["generation_tokens"] = tokens
        return Reading("tgi", dict.fromkeys(GAUGES), counters, dict.fromkeys(HISTOGRAMS))

    w = Window(60.0)
    w.add(0.0, reading(None))  # before the first request
    w.add(1.0, reading(10.0))
    assert w.stats()["generation_tokens_per_s"] is None  # only one reading has the counter: no rate yet
    w.add(3.0, reading(50.0))
    assert w.stats()["generation_tokens_per_s"] == 20.0  # (50 - 10) / (3 - 1), not None until t=60


# --- two windows: short rates, long percentiles (issue 14) ----------------------------------------------


def test_rates_use_the_short_window_and_fall_to_zero_when_work_stops() -> None:
    w = Window(window_s=60.0, rate_window_s=4.0)
    tokens, preempted = 0.0, 0.0
    for t in range(0, 31):
        if t <= 20:
            tokens += 3000.0  # 3,000 tok/s for 20 s, then nothing
            preempted += 1.0
        w.add(100.0 + t, reading(counters={"generation_tokens": tokens, "preemptions": preempted}))
        stats = w.stats()
        if t == 5:
            assert stats["generation_tokens_per_s"] == 3000.0  # not diluted by a 60 s average
        if t == 24:
            assert stats["generation_tokens_per_s"] == 0.0  # 4 s after the last token
            assert stats["rate_window_s"] == 4.0 and stats["percentile_window_s"] == 24.0
            assert stats["preemptions_in_window"] == 20.0  # the count keeps the long window
    assert w.stats()["preemptions_per_s"] == 0.0


def test_rate_window_wider_scrape_gaps_use_the_previous_reading() -> None:
    w = Window(window_s=60.0, rate_window_s=4.0)
    w.add(0.0, reading(counters={"generation_tokens": 0.0}))
    w.add(10.0, reading(counters={"generation_tokens": 100.0}))
    stats = w.stats()
    assert stats["generation_tokens_per_s"] == 10.0 and stats["rate_window_s"] == 10.0
    with pytest.raises(ValueError):
        Window(window_s=60.0, rate_window_s=0.0)


def test_all_percentiles_and_waiting_reasons() -> None:
    hist = Histogram((0.1, 1.0, 10.0, INF), (0.0, 0.0, 0.0, 0.0), 0.0, 0.0)
    later = Histogram((0.1, 1.0, 10.0, INF), (50.0, 90.0, 100.0, 100.0), 0.0, 100.0)
    start = reading(histograms={h: hist for h in ("itl", "e2e", "queue_time")})
    end = reading(
        gauges={"requests_waiting_capacity": 4.0, "requests_waiting_deferred": 1.0},
        histograms={h: later for h in ("itl", "e2e", "queue_time")},
    )
    stats = derive_stats(start, end, 10.0)
    for name in ("itl", "e2e", "queue_time"):
        assert stats[f"{name}_p50_s"] == pytest.approx(0.1)
        assert stats[f"{name}_p95_s"] == pytest.approx(5.5)
        assert stats[f"{name}_p99_s"] == pytest.approx(9.1)
    assert stats["requests_waiting_capacity"] == 4.0 and stats["requests_waiting_deferred"] == 1.0
    assert derive_stats(None, reading(), None)["requests_waiting_capacity"] is None  # absent: None, never 0


def test_a_hang_leaves_the_percentile_window_when_it_moves_on() -> None:
    """A cleared hang: requests that waited 136 s are observed once; 60 s later p95 is back to normal."""
    w = Window(window_s=60.0, rate_window_s=4.0)
    bounds = (0.1, 1.0, 80.0, 160.0, INF)
    fast = slow = 0.0
    for t in range(0, 200):
        if t == 50:
            slow += 12.0  # the stuck streams finish after the hang
        else:
            fast += 1.0
        cum = (fast, fast, fast, fast + slow, fast + slow)
        w.add(float(t), reading(histograms={"ttft": Histogram(bounds, cum, 0.0, fast + slow)}))
        p95 = w.stats()["ttft_p95_s"]
        if 50 <= t < 110:
            assert p95 is not None and p95 > 80.0, t
        if t >= 111:
            assert p95 is not None and p95 <= 0.1, t


# --- quantile_bucket: the bucket a percentile was interpolated in ------------------------------------


@pytest.mark.parametrize(
    ("q", "value", "bucket"),
    [
        (0.1, 0.05, (0.0, 0.1)),  # the first bucket: its lower edge is 0
        (0.5, 0.4, (0.1, 0.5)),
        (0.8, 0.5 + 0.5 * 2 / 3, (0.5, 1.0)),
        (0.9, 1.0, (0.5, 1.0)),  # rank 9 = top of (0.5, 1]: still that bucket
        (0.95, 1.0, (1.0, None)),  # rank 9.5 in +Inf: the highest finite bound, an open bucket
        (0.0, 0.0, (0.0, 0.1)),
    ],
)
def test_quantile_bucket_hand_worked(q: float, value: float, bucket: tuple[float, float | None]) -> None:
    got = quantile_bucket(q, H)
    assert got is not None
    assert got[0] == pytest.approx(value, rel=1e-12) and got[1] == bucket
    assert quantile(q, H) == got[0]  # quantile is quantile_bucket's value: one definition


def test_quantile_bucket_of_the_sglang_ladder_below_its_first_bound() -> None:
    """SGLang's TTFT ladder starts at 0.1 s: every fast engine reads p95 = 95 ms, whatever its load.
    The bucket says what is known: somewhere in [0, 100 ms]."""
    ladder = (0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 2.0, INF)
    for n in (3.0, 40.0, 5000.0):
        got = quantile_bucket(0.95, Histogram(ladder, (n,) * len(ladder), 0.0, n))
        assert got is not None and got[0] == pytest.approx(0.095) and got[1] == (0.0, 0.1)


def test_quantile_bucket_undefined_cases_are_none() -> None:
    assert quantile_bucket(0.5, hist((0.0, 0.0, 0.0, 0.0))) is None  # an empty histogram
    assert quantile_bucket(0.5, Histogram((), (), 0.0, 0.0)) is None  # no buckets
    assert quantile_bucket(0.5, Histogram((INF,), (5.0,), 1.0, 5.0)) is None  # only +Inf
    assert quantile_bucket(0.5, Histogram((0.1, 1.0), (2.0, 5.0), 1.0, 5.0)) is None  # no +Inf bucket
    with pytest.raises(ValueError):
        quantile_bucket(1.01, H)


def test_quantile_bucket_non_positive_first_bound_is_a_point() -> None:
    # Prometheus returns the bound itself there: the bucket is that one point, lower = upper.
    assert quantile_bucket(0.25, Histogram((-1.0, 0.0, INF), (5.0, 5.0, 10.0), 0.0, 10.0)) == (
        -1.0,
        (-1.0, -1.0),
    )
    assert quantile_bucket(0.5, Histogram((0.0, 0.001, INF), (7.0, 8.0, 8.0), 0.0, 8.0)) == (0.0, (0.0, 0.0))


def test_quantile_bucket_skips_empty_buckets_and_holds_its_value() -> None:
    """Over many shapes: the value lies inside its bucket, and the bucket is one of the histogram's."""
    bounds = (0.0, 0.005, 0.1, 0.2, 0.4, 1.0, 30.0, INF)
    shapes = [
        (0, 0, 0, 3, 3, 3, 9, 9),
        (1, 1, 1, 1, 1, 1, 1, 50),
        (0, 2, 2, 2, 2, 2, 2, 2),
        (5, 5, 6, 6, 7, 9, 9, 12),
    ]
    for shape in shapes:
        h = Histogram(bounds, tuple(float(c) for c in shape), 0.0, float(shape[-1]))
        for q in (0.0, 0.25, 0.5, 0.9, 0.95, 0.99, 1.0):
            got = quantile_bucket(q, h)
            assert got is not None
            value, (lower, upper) = got
            assert lower in (0.0, *bounds) and (upper is None or upper in bounds)
            assert lower <= value and (value <= upper if upper is not None else value == lower == 30.0)


# --- derive: the percentiles' buckets beside their values ------------------------------------------------


def test_derive_gives_a_bucket_for_every_percentile_it_computes() -> None:
    got = derive(START, END, 10.0)
    assert isinstance(got, Derived) and got.stats == derive_stats(START, END, 10.0)
    assert set(got.buckets) == {k for k in PERCENTILE_KEYS if got.stats[k] is not None}
    assert set(got.buckets) == {f"{h}_p{p}_s" for h in ("ttft", "queue_time") for p in (50, 95, 99)}
    # TTFT window (1, 4, 6, 6): p50 at rank 3 in (0.1, 0.5], p95 and p99 in (0.5, 1]
    assert (got.buckets["ttft_p50_s"], got.buckets["ttft_p95_s"]) == ((0.1, 0.5), (0.5, 1.0))
    assert got.buckets["queue_time_p95_s"] == (1.0, None)  # rank 9.5 of END's 10 in +Inf
    assert derive(None, END, None).buckets == {}  # no window: no percentiles, no buckets


def test_a_non_finite_percentile_has_neither_value_nor_bucket() -> None:
    # a hostile exposition's le="-Inf" bucket: the percentile in it is -inf, which the wire never carries
    weird = Histogram((-INF, 1.0, INF), (5.0, 5.0, 6.0), 0.0, 6.0)
    got = derive(reading(), reading(histograms={"ttft": weird}), 1.0)
    assert got.stats["ttft_p50_s"] is None and "ttft_p50_s" not in got.buckets
    assert got.buckets["ttft_p99_s"] == (1.0, None)  # rank 5.94 in +Inf: a finite bound


def test_window_derived_matches_its_stats() -> None:
    w = Window(window_s=60.0)
    assert w.derived() == Derived(dict.fromkeys(STATS_KEYS), {})
    w.add(0.0, START)
    w.add(10.0, END)
    assert w.derived().stats == w.stats()
    assert w.derived().buckets["ttft_p95_s"] == (0.5, 1.0)


def test_real_sglang_exposition_p95_lies_in_its_open_bucket() -> None:
    """The SGLang docs' example exposition (tests/data/metrics): of 11,008 TTFTs 2,513 are ≤ 30 s, its highest
    finite bound, so p95 is "30 s" only because the ladder ends there: the bucket is (30, +Inf)."""
    from pathlib import Path

    from agents.engines import get_adapter
    from agents.metrics.parse import parse

    text = (Path(__file__).resolve().parents[2] / "data" / "metrics" / "sglang-docs-2025.prom").read_text()
    end = get_adapter("sglang").read(parse(text))
    got = derive(reading(), end, 10.0)  # no TTFT histogram at the start: all of it is in the window
    assert got.stats["ttft_p95_s"] == 30.0 and got.buckets["ttft_p95_s"] == (30.0, None)
    assert got.buckets["ttft_p50_s"] == (30.0, None)  # 2,513 of 11,008 ≤ 30 s: even the median
