"""Is self-hosting cheaper than the API? Cost per day both ways, the break-even volume, and whether the
GPUs can even serve it.

* self-host $/day = GPU $/hour × GPUs × 24 + fixed operations $/month ÷ (730/24)
* API blended $/1M = input_share × input price + (1 − input_share) × output price (70/30 by default)
* break-even tokens/day = self-host $/day ÷ (blended $/1M ÷ 1e6)
* months are 730 hours (cloud billing); monthly self-host cost at a volume counts one deployment per
  ``capacity`` tokens/day (more volume needs more GPUs), so when break-even lies beyond one deployment's
  capacity it is never reached: every added deployment adds its full cost (``reachable`` false).

research/calculator.md §5.1–5.2: $2.50/h, 70/30, $5/$25 → 5.45M tokens/day; $0.88 flat → 68.2M.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from console.calc.errors import CalcError
from console.calc.units import DAYS_PER_MONTH

DEFAULT_INPUT_SHARE = 0.7


@dataclass(frozen=True, slots=True)
class BreakevenQuery:
    gpu_hourly: float  # USD per GPU-hour
    gpus: int
    price_in: float  # USD per 1M input tokens
    price_out: float  # USD per 1M output tokens
    input_share: float = DEFAULT_INPUT_SHARE
    ops_cost_per_month: float = 0.0
    tokens_per_day: float | None = None  # the volume to price both ways
    capacity_tokens_per_day: float | None = None  # what one deployment can serve (None = unknown)


@dataclass(frozen=True, slots=True)
class Breakeven:
    self_host_cost_per_day: float
    self_host_cost_per_month: float  # one deployment
    api_blended_per_mtok: float
    break_even_tokens_per_day: float  # inf when the API is free
    capacity_tokens_per_day: float | None
    reachable: bool | None  # None without a capacity estimate
    tokens_per_day: float | None
    deployments_needed: int | None  # at tokens_per_day; None when unknown or unservable
    monthly_cost_self_host: float | None
    monthly_cost_api: float | None
    self_host_per_mtok_at_capacity: float | None  # the lowest unit cost self-hosting reaches

    @property
    def break_even_tokens_per_s(self) -> float:
        return self.break_even_tokens_per_day / 86_400

    @property
    def crossover_tokens_per_day(self) -> float | None:
        """Where the cost curves cross: the break-even when reachable (or capacity unknown), else None."""
        if self.reachable is False or math.isinf(self.break_even_tokens_per_day):
            return None
        return self.break_even_tokens_per_day

    @property
    def cheaper(self) -> str | None:
        """ "self-host" / "api" / "equal" at ``tokens_per_day``; None without a volume or when unservable."""
        if self.monthly_cost_api is None or self.monthly_cost_self_host is None:
            return None
        if math.isclose(self.monthly_cost_api, self.monthly_cost_self_host, rel_tol=1e-9):
            return "equal"
        return "self-host" if self.monthly_cost_self_host < self.monthly_cost_api else "api"


def blended(price_in: float, price_out: float, input_share: float = DEFAULT_INPUT_SHARE) -> float:
    """USD per 1M tokens of a traffic mix with ``input_share`` input tokens."""
    return input_share * price_in + (1 - input_share) * price_out


def self_host_per_day(gpu_hourly: float, gpus: int, ops_cost_per_month: float = 0.0) -> float:
    return gpu_hourly * gpus * 24 + ops_cost_per_month / DAYS_PER_MONTH


def check(q: BreakevenQuery) -> None:
    """One :class:`CalcError` line for values no bill could have."""
    positive = {"--gpu-hourly": q.gpu_hourly}
    non_negative = {
        "--price-in": q.price_in,
        "--price-out": q.price_out,
        "ops cost per month": q.ops_cost_per_month,
    }
    for name, value in positive.items():
        if not (math.isfinite(value) and value > 0):
            raise CalcError(f"{name} must be greater than 0, got {value:g}")
    for name, value in non_negative.items():
        if not (math.isfinite(value) and value >= 0):
            raise CalcError(f"{name} must be 0 or more, got {value:g}")
    if q.gpus < 1:
        raise CalcError(f"--gpus must be 1 or more, got {q.gpus}")
    if not (0 <= q.input_share <= 1):
        raise CalcError(f"--input-share must be between 0 and 1, got {q.input_share:g}")
    if q.tokens_per_day is not None and not (math.isfinite(q.tokens_per_day) and q.tokens_per_day > 0):
        raise CalcError(f"--tokens-per-day must be greater than 0, got {q.tokens_per_day:g}")


def breakeven(q: BreakevenQuery) -> Breakeven:
    check(q)
    per_day = self_host_per_day(q.gpu_hourly, q.gpus, q.ops_cost_per_month)
    price = blended(q.price_in, q.price_out, q.input_share)
    even = per_day / (price / 1e6) if price > 0 else math.inf
    cap = q.capacity_tokens_per_day
    reachable = None if cap is None else bool(cap > 0 and even <= cap)
    deployments = _deployments(q.tokens_per_day, cap)
    monthly_self = None
    if deployments is not None:
        monthly_self = per_day * deployments * DAYS_PER_MONTH
    elif q.tokens_per_day is None or cap is None:
        monthly_self = per_day * DAYS_PER_MONTH
    monthly_api = q.tokens_per_day * price / 1e6 * DAYS_PER_MONTH if q.tokens_per_day is not None else None
    at_capacity = per_day / cap * 1e6 if cap else None
    return Breakeven(
        per_day,
        per_day * DAYS_PER_MONTH,
        price,
        even,
        cap,
        reachable,
        q.tokens_per_day,
        deployments,
        monthly_self,
        monthly_api,
        at_capacity,
    )


def _deployments(volume: float | None, capacity: float | None) -> int | None:
    if volume is None:
        return None
    if capacity is None:
        return 1
    if capacity <= 0:
        return None  # the model does not fit: no number of these deployments serves it
    return max(1, math.ceil(volume / capacity))


Point = tuple[float, float]


def self_host_curve(q: BreakevenQuery, x_max: float) -> list[Point]:
    """Monthly self-host cost against tokens/day up to ``x_max``: flat for one deployment, stepping up by one
    deployment per ``capacity`` tokens/day; empty when the model does not fit (nothing serves it)."""
    check(q)
    per_month = self_host_per_day(q.gpu_hourly, q.gpus, q.ops_cost_per_month) * DAYS_PER_MONTH
    cap = q.capacity_tokens_per_day
    if cap is not None and cap <= 0:
        return []
    if cap is None or cap >= x_max:
        return [(0.0, per_month), (x_max, per_month)]
    points: list[Point] = [(0.0, per_month)]
    k = 1
    while k * cap < x_max:
        points += [(k * cap, k * per_month), (k * cap, (k + 1) * per_month)]
        k += 1
    return points + [(x_max, k * per_month)]


def api_curve(blended_per_mtok: float, x_max: float) -> list[Point]:
    """Monthly API cost against tokens/day: a straight line through the origin."""
    return [(0.0, 0.0), (x_max, x_max * blended_per_mtok / 1e6 * DAYS_PER_MONTH)]
