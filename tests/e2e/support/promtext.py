"""The test's own view of an engine's ``/metrics``: scraped with httpx and parsed with prometheus_client's
parser (not the agent's), so the e2e comparison is between two independent readings.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

Labels = Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Scrape:
    t: float  # monotonic time the response arrived
    samples: dict[str, list[tuple[dict[str, str], float]]]  # sample name -> [(labels, value)]

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self.samples)

    def total(self, name: str, where: Callable[[Labels], bool] | None = None) -> float | None:
        """Sum of a sample name over its series (optionally filtered); None when absent."""
        got = [v for labels, v in self.samples.get(name, ()) if where is None or where(labels)]
        return math.fsum(got) if got else None

    def buckets(self, name: str) -> list[tuple[float, float]]:
        """(upper bound, cumulative count) of histogram ``name`` summed over its series, by bound."""
        by_le: dict[float, float] = {}
        for labels, v in self.samples.get(name + "_bucket", ()):
            le = float(labels["le"])
            by_le[le] = by_le.get(le, 0.0) + v
        return sorted(by_le.items())


def scrape(url: str, timeout_s: float = 5.0) -> Scrape:
    resp = httpx.get(url, timeout=timeout_s, trust_env=False)
    resp.raise_for_status()
    t = time.monotonic()
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            samples.setdefault(s.name, []).append((dict(s.labels), float(s.value)))
    return Scrape(t=t, samples=samples)


def rate(a: Scrape, b: Scrape, name: str) -> float | None:
    x, y = a.total(name), b.total(name)
    if x is None or y is None or b.t <= a.t:
        return None
    return (y - x) / (b.t - a.t)


def bucket_delta(a: Scrape, b: Scrape, name: str) -> list[tuple[float, float]]:
    before = dict(a.buckets(name))
    return [(le, c - before.get(le, 0.0)) for le, c in b.buckets(name)]


def quantile_range(
    q: float, cumulative: list[tuple[float, float]], slack: int = 0
) -> tuple[float, float] | None:
    """The (lower, upper) bounds of the bucket holding the q-quantile rank, widened by ``slack`` buckets on
    each side; None without observations.

    Deliberately coarse: an agent that interpolates inside the right bucket (Prometheus
    ``histogram_quantile``) lands in [lower, upper]; ``slack`` absorbs windows that differ by a tick. A rank
    in the +Inf bucket gives the highest finite bound as both ends (that is what Prometheus reports)."""
    if not cumulative or cumulative[-1][1] <= 0:
        return None
    bounds = [le for le, _ in cumulative]
    rank = q * cumulative[-1][1]
    idx = next(i for i, (_, c) in enumerate(cumulative) if c >= rank and c > 0)
    lo_i, hi_i = max(0, idx - slack), min(len(bounds) - 1, idx + slack)
    lower = bounds[lo_i - 1] if lo_i > 0 else 0.0
    upper = bounds[hi_i]
    finite = [b for b in bounds if math.isfinite(b)]
    if not math.isfinite(upper):
        upper = finite[-1] if finite else 0.0
    return (min(lower, upper), upper)


def wait_for(
    url: str, what: str, cond: Callable[[Scrape], bool], timeout_s: float, poll_s: float = 0.5
) -> Scrape:
    """Scrape ``url`` until ``cond(scrape)`` holds; AssertionError naming ``what`` and the last gauges."""
    deadline = time.monotonic() + timeout_s
    last: Scrape | None = None
    error: str | None = None
    while True:
        try:
            last = scrape(url)
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        else:
            if cond(last):
                return last
        if time.monotonic() >= deadline:
            break
        time.sleep(poll_s)
    seen = {n: last.total(n) for n in sorted(last.names) if ":num_" in n or "usage" in n} if last else None
    raise AssertionError(
        f"timed out after {timeout_s:.0f}s waiting for {what}; last gauges {seen}; last error {error}"
    )


def windows(
    samples: list[Scrape], span_s: tuple[float, float], ends_within: tuple[float, float]
) -> list[tuple[Scrape, Scrape]]:
    """Pairs (a, b) of ``samples`` (in time order) with ``b.t - a.t`` inside ``span_s`` and ``b.t`` inside
    ``ends_within``: our readings of every window another reader's (the agent's) may have covered, so a
    rate or percentile it computed must lie within what these pairs give, whatever the exact alignment."""
    lo_span, hi_span = span_s
    lo_end, hi_end = ends_within
    return [
        (a, b)
        for i, a in enumerate(samples)
        for b in samples[i + 1 :]
        if lo_span <= b.t - a.t <= hi_span and lo_end <= b.t <= hi_end
    ]
