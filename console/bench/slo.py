"""Service-level objectives: ``--slo ttft_p99=0.5,tpot_p99=0.05`` (seconds), checking a run, and the
search for the highest request rate that meets every objective (goodput).

An objective names a metric (``ttft``, ``tpot`` — vLLM's definition —, ``itl``, ``e2el``) and a statistic
(``mean``, ``p50``, ``p90``, ``p95``, ``p99``). A run meets the SLO when every objective holds over the run
and at most ``max_error_rate`` of its finished requests failed. Goodput (``request_goodput``, as vLLM's
DistServe-style definition) counts completed requests whose own TTFT, TPOT and E2EL are each within the
tightest limit set for that metric; an ``itl`` objective applies to the run only (a request has many gaps).

The search sends Poisson load (with the run's burstiness) at ``start`` requests/s, doubles the rate while
the SLO holds and halves it while it does not, then bisects between the highest rate that met it and the
lowest that did not; at most ``max_runs`` runs in all.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from console.bench.request import RequestRecord
from console.bench.stats import METRICS, per_request

STATS = ("mean", "p50", "p90", "p95", "p99")
NAMES = tuple(f"{m}_{s}" for m in METRICS for s in STATS)
PER_REQUEST = ("ttft", "tpot", "e2el")
DEFAULT_MAX_ERROR_RATE = 0.01


class SloError(ValueError):
    """A bad --slo; the message is one line."""


@dataclass(frozen=True, slots=True)
class Objective:
    metric: str  # ttft | tpot | itl | e2el
    stat: str  # mean | p50 | p90 | p95 | p99
    limit_s: float

    @property
    def name(self) -> str:
        return f"{self.metric}_{self.stat}"

    @property
    def key(self) -> str:
        """The run-result key it is checked against (milliseconds)."""
        return f"{self.stat}_{self.metric}_ms"


def parse(text: str) -> tuple[Objective, ...]:
    """``ttft_p99=0.5,tpot_p99=0.05`` → objectives; SloError naming the bad part."""
    out: list[Objective] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = name.strip().lower()
        if not sep:
            raise SloError(f"--slo: {part!r} is not NAME=SECONDS (e.g. ttft_p99=0.5)")
        if name not in NAMES:
            raise SloError(f"--slo: unknown metric {name!r}; known: {', '.join(NAMES)}")
        try:
            limit = float(value)
        except ValueError:
            raise SloError(f"--slo: {name}={value.strip()!r} is not a number of seconds") from None
        if not (math.isfinite(limit) and limit > 0):
            raise SloError(f"--slo: {name} must be a positive number of seconds, got {value.strip()}")
        if any(o.name == name for o in out):
            raise SloError(f"--slo: {name} is given twice")
        metric, stat = name.split("_", 1)
        out.append(Objective(metric, stat, limit))
    if not out:
        raise SloError("--slo: give at least one objective, e.g. ttft_p99=0.5")
    return tuple(out)


def describe(objectives: tuple[Objective, ...], max_error_rate: float) -> dict[str, Any]:
    return {
        "objectives": {o.name: o.limit_s for o in objectives},
        "max_error_rate": max_error_rate,
        "units": "seconds",
    }


def verdict(
    run: Mapping[str, Any], objectives: tuple[Objective, ...], max_error_rate: float = DEFAULT_MAX_ERROR_RATE
) -> tuple[bool, list[str]]:
    """(met, why not): every objective against the run's percentiles, and its error rate."""
    misses: list[str] = []
    finished = (run.get("completed") or 0) + (run.get("failed") or 0)
    if not run.get("completed"):
        return False, ["no request completed"]
    if finished and run["failed"] / finished > max_error_rate:
        misses.append(f"{run['failed']}/{finished} requests failed (> {max_error_rate:.0%})")
    for o in objectives:
        value = run.get(o.key)
        if value is None:
            misses.append(f"{o.name}: no value")
        elif value / 1000.0 > o.limit_s:
            misses.append(f"{o.name} {value / 1000.0:.4g} s > {o.limit_s:g} s")
    return not misses, misses


def goodput_check(objectives: tuple[Objective, ...]) -> Callable[[RequestRecord], bool] | None:
    """Per-request test for goodput (the tightest limit per metric), or None when no objective applies."""
    limits: dict[str, float] = {}
    for o in objectives:
        if o.metric in PER_REQUEST:
            limits[o.metric] = min(o.limit_s, limits.get(o.metric, math.inf))
    if not limits:
        return None
    getters = [(per_request(m), limit) for m, limit in limits.items()]

    def good(r: RequestRecord) -> bool:
        for get, limit in getters:
            value = get(r)
            if value is not None and value > limit:
                return False
        return True

    return good


class RateSearch:
    """Proposes request rates until the highest rate meeting the SLO is bracketed and refined."""

    def __init__(
        self, start: float = 1.0, max_rate: float = 4096.0, min_rate: float = 1 / 64, max_runs: int = 8
    ) -> None:
        self.next: float | None = start
        self.max_rate, self.min_rate, self.max_runs = max_rate, min_rate, max_runs
        self.passed: float | None = None  # highest rate that met the SLO
        self.failed: float | None = None  # lowest rate that did not
        self.runs = 0

    def propose(self) -> float | None:
        return self.next if self.runs < self.max_runs else None

    def report(self, rate: float, met: bool) -> None:
        self.runs += 1
        if met:
            self.passed = rate if self.passed is None else max(self.passed, rate)
        else:
            self.failed = rate if self.failed is None else min(self.failed, rate)
        if self.failed is None:
            nxt = rate * 2
            self.next = nxt if nxt <= self.max_rate else None
        elif self.passed is None:
            nxt = rate / 2
            self.next = nxt if nxt >= self.min_rate else None
        else:
            mid = (self.passed + self.failed) / 2
            self.next = mid if (self.failed - self.passed) / self.failed > 0.05 else None
