"""Break-even: every row of research/calculator.md §5.1 (claim A, ~5M/day) and §5.2 (claim B, 50M+/day),
monthly costs at 730 h, operations cost, capacity and reachability, the cost curves for the chart."""

from __future__ import annotations

import math

import pytest

from console.calc.breakeven import (
    BreakevenQuery,
    api_curve,
    blended,
    breakeven,
    self_host_curve,
    self_host_per_day,
)
from console.calc.errors import CalcError

# (input $/1M, output $/1M) -> (blended, break-even M tokens/day, average tokens/s) at $2.50/h, 70/30
CLAIM_A = {
    (3, 15): (6.60, 9.09, 105.2),  # Claude Sonnet
    (5, 25): (11.00, 5.45, 63.1),  # Claude Opus 4.5+/5 — "≈5M"
    (5, 30): (12.50, 4.80, 55.6),  # GPT-5.5
    (12, 12): (12.00, 5.00, 57.9),
    (15, 15): (15.00, 4.00, 46.3),
    (15, 75): (33.00, 1.82, 21.0),  # Claude Opus 4/4.1
    (1.25, 10): (3.875, 15.48, 179.2),  # GPT-5 / Gemini 2.5 Pro
    (3, 3): (3.00, 20.00, 231.5),
}
CLAIM_B = {
    (0.90, 0.90): (0.90, 66.7, 772),  # Fireworks
    (0.88, 0.88): (0.88, 68.2, 789),  # Together
    (0.59, 0.79): (0.65, 92.3, 1068),  # Groq
    (0.50, 0.50): (0.50, 120.0, 1389),
    (0.23, 0.40): (0.281, 213.5, 2471),  # DeepInfra
}


def be(price_in: float, price_out: float, **kw) -> object:  # noqa: ANN003
    return breakeven(BreakevenQuery(2.50, 1, price_in, price_out, **kw))


@pytest.mark.parametrize("prices", sorted(CLAIM_A | CLAIM_B))
def test_research_rows(prices: tuple[float, float]) -> None:
    price, millions, per_s = (CLAIM_A | CLAIM_B)[prices]
    b = be(*prices)
    assert b.self_host_cost_per_day == 60.0
    assert b.api_blended_per_mtok == pytest.approx(price, abs=0.001)
    assert b.break_even_tokens_per_day / 1e6 == pytest.approx(millions, abs=0.051)
    assert b.break_even_tokens_per_s == pytest.approx(per_s, abs=0.6)


def test_reversed_split_makes_sonnet_look_like_five_million() -> None:
    b = be(3, 15, input_share=0.3)
    assert b.api_blended_per_mtok == pytest.approx(11.40)
    assert b.break_even_tokens_per_day / 1e6 == pytest.approx(5.26, abs=0.01)


def test_month_is_730_hours() -> None:
    b = be(5, 25)
    assert b.self_host_cost_per_month == pytest.approx(1825.0)
    assert b.monthly_cost_self_host == pytest.approx(1825.0)
    assert b.monthly_cost_api is None  # no volume given: nothing to price


def test_ten_thousand_a_month_on_frontier_apis() -> None:
    """ ">$10K/month on frontier APIs" is $333/day: ~30M tokens/day at Opus-4.5+ pricing, 5.6x one A100."""
    per_day = 10_000 / (730 / 24)
    assert per_day == pytest.approx(
        328.8, abs=0.1
    )  # with the 730-hour month (the research rounds to 30 days)
    tokens = 10_000 / (730 / 24) / (11 / 1e6)
    b = be(5, 25, tokens_per_day=tokens)
    assert b.monthly_cost_api == pytest.approx(10_000)
    assert b.monthly_cost_api / b.monthly_cost_self_host == pytest.approx(5.5, abs=0.1)
    assert b.cheaper == "self-host"


def test_ops_cost_is_spread_per_day() -> None:
    b = breakeven(BreakevenQuery(2.0, 4, 5, 25, ops_cost_per_month=730.0))
    assert b.self_host_cost_per_day == pytest.approx(2.0 * 4 * 24 + 730.0 / (730 / 24))
    assert b.self_host_cost_per_month == pytest.approx(2.0 * 4 * 730 + 730.0)


def test_reachability_against_capacity() -> None:
    ok = be(5, 25, capacity_tokens_per_day=80e6)
    assert ok.reachable is True and ok.crossover_tokens_per_day == ok.break_even_tokens_per_day
    cheap = be(0.5, 0.5, capacity_tokens_per_day=80e6)
    assert cheap.reachable is False and cheap.crossover_tokens_per_day is None
    unknown = be(0.5, 0.5)
    assert unknown.reachable is None and unknown.crossover_tokens_per_day == pytest.approx(120e6)
    nothing = be(5, 25, capacity_tokens_per_day=0.0)
    assert nothing.reachable is False and nothing.self_host_per_mtok_at_capacity is None


def test_volume_beyond_capacity_needs_more_deployments() -> None:
    b = be(0.5, 0.5, capacity_tokens_per_day=80e6, tokens_per_day=200e6)
    assert b.deployments_needed == 3
    assert b.monthly_cost_self_host == pytest.approx(3 * 1825.0)
    assert b.monthly_cost_api == pytest.approx(200e6 * 0.5 / 1e6 * 730 / 24)
    assert b.cheaper == "api"
    unservable = be(0.5, 0.5, capacity_tokens_per_day=0.0, tokens_per_day=1e6)
    assert unservable.monthly_cost_self_host is None and unservable.cheaper is None


def test_self_host_floor_cost_per_million() -> None:
    b = be(5, 25, capacity_tokens_per_day=80e6)
    assert b.self_host_per_mtok_at_capacity == pytest.approx(60 / 80)


def test_free_api_never_breaks_even() -> None:
    b = be(0, 0)
    assert math.isinf(b.break_even_tokens_per_day) and b.crossover_tokens_per_day is None


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (BreakevenQuery(0, 1, 5, 25), "--gpu-hourly must be greater than 0"),
        (BreakevenQuery(-2.5, 1, 5, 25), "--gpu-hourly must be greater than 0"),
        (BreakevenQuery(float("inf"), 1, 5, 25), "--gpu-hourly must be greater than 0"),
        (BreakevenQuery(2.5, 0, 5, 25), "--gpus must be 1 or more"),
        (BreakevenQuery(2.5, 1, -1, 25), "--price-in must be 0 or more"),
        (BreakevenQuery(2.5, 1, 5, float("nan")), "--price-out must be 0 or more"),
        (BreakevenQuery(2.5, 1, 5, 25, input_share=1.2), "--input-share must be between 0 and 1"),
        (BreakevenQuery(2.5, 1, 5, 25, tokens_per_day=0), "--tokens-per-day must be greater than 0"),
        (BreakevenQuery(2.5, 1, 5, 25, ops_cost_per_month=-1), "ops cost per month must be 0 or more"),
    ],
)
def test_bad_values(query: BreakevenQuery, message: str) -> None:
    with pytest.raises(CalcError) as e:
        breakeven(query)
    assert message in str(e.value)


def test_helpers() -> None:
    assert blended(5, 25) == pytest.approx(11.0)
    assert blended(5, 25, 1.0) == 5.0
    assert self_host_per_day(2.5, 2) == 120.0


def test_self_host_curve_steps_per_deployment() -> None:
    q = BreakevenQuery(2.5, 1, 0, 0, capacity_tokens_per_day=10e6)
    pts = self_host_curve(q, 25e6)
    assert pts == [
        (0.0, 1825.0),
        (10e6, 1825.0),
        (10e6, 3650.0),
        (20e6, 3650.0),
        (20e6, 5475.0),
        (25e6, 5475.0),
    ]
    assert self_host_curve(BreakevenQuery(2.5, 1, 0, 0), 5e6) == [(0.0, 1825.0), (5e6, 1825.0)]
    assert self_host_curve(BreakevenQuery(2.5, 1, 0, 0, capacity_tokens_per_day=0.0), 5e6) == []
    line = api_curve(11.0, 10e6)
    assert line == [(0.0, 0.0), (10e6, pytest.approx(10 * 11 * 730 / 24))]
