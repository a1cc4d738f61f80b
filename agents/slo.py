"""SLO_BURN: multi-window, multi-burn-rate alerting on a TTFT objective (``[slo]`` ttft_s, objective).

Pure and clock-free: the caller passes the monotonic time ``t`` of every sample and of every question.

The objective says "``objective`` of requests see their first token within ``ttft_s``". A window's burn
rate is its bad ratio divided by the allowed one: ``(bad / total) / (1 - objective)``; 1.0 spends the
error budget exactly over the SLO period. Pairs (Google SRE Workbook, "Alerting on SLOs", 30-day SLO):
page (critical) when 1 h and 5 min both burn above 14.4, or 6 h and 30 min above 6; ticket (warning)
when 1 d and 2 h above 3, or 3 d and 6 h above 1.

Sources: ``add`` takes the engine's *cumulative* TTFT histogram at each scrape ("good" = the bucket whose
upper bound is ``ttft_s``, which must therefore be a bucket boundary); ``add_canary`` takes one agent
canary (for engines without a TTFT histogram, TGI): one request, good when it succeeded within ``ttft_s``.

Counts are kept as the tracker's own monotonic totals: a counter that goes down (engine restart) starts
afresh from its new value, never a negative delta. Zero traffic in a window gives burn None and never
alerts. History is a compact time series (bounded memory for 3 days of 1 s scrapes; see ``TIERS``).

Partial windows: a window longer than the tracked history is computed over the history there is (as
Prometheus' ``rate`` does) and says so (``covered_s``, ``full``). A pair may fire only once its SHORT
window is fully covered: so 1 h/5 min may page after 5 minutes of history (10 minutes at 30x burn is a
real page), while 3 d/6 h needs 6 hours, which keeps a new agent from ticketing on a few minutes of data.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from agents.metrics.model import Histogram
from agents.schema import SloStatus, SloWindow
from agents.schema.units import duration

CODE = "SLO_BURN"
SOURCES = ("histogram", "canary")
_TOL = dict(rel_tol=1e-9, abs_tol=1e-12)


class SloSettings(Protocol):
    """``[slo]`` (agents/config.py Slo)."""

    ttft_s: float
    objective: float


@dataclass(frozen=True, slots=True)
class BurnPair:
    """Fire ``severity`` when both windows burn above ``factor``."""

    severity: str  # "critical" (page) | "warning" (ticket)
    long_s: float
    short_s: float
    factor: float


PAIRS: tuple[BurnPair, ...] = (
    BurnPair("critical", 3600.0, 300.0, 14.4),
    BurnPair("critical", 21600.0, 1800.0, 6.0),
    BurnPair("warning", 86400.0, 7200.0, 3.0),
    BurnPair("warning", 259200.0, 21600.0, 1.0),
)

# (age limit, spacing) of the kept points: everything younger than 10 min about every second, then one
# point per 10 s up to 6 h, then one per minute up to the longest window. 3 days of 1 s scrapes keep
# at most ~1,200 + 2,100 + 4,000 points.
TIERS: tuple[tuple[float, float], ...] = ((600.0, 1.0), (21600.0, 10.0), (math.inf, 60.0))


@dataclass(frozen=True, slots=True)
class WindowBurn:
    """One window's numbers at one time."""

    window_s: float
    burn: float | None  # None: no request finished in the window
    requests: float  # finished requests in the window
    bad: float  # of which slower than ttft_s (or failed, for canaries)
    covered_s: float  # span of history the window actually saw
    full: bool  # history reaches back the whole window

    def evidence(self) -> dict[str, Any]:
        return {
            "window_s": self.window_s,
            "burn": None if self.burn is None else round(self.burn, 4),
            "requests": _num(self.requests),
            "bad": _num(self.bad),
            "covered_s": round(self.covered_s, 3),
            "full": self.full,
        }


def max_burn(objective: float) -> float:
    """The highest burn rate an objective allows (every request bad): 1 / (1 - objective)."""
    return 1.0 / (1.0 - objective)


def boundary_index(ttft_s: float, bounds: Sequence[float]) -> int | None:
    """Index of the bucket whose upper bound is ``ttft_s`` (float tolerance), else None."""
    for i, b in enumerate(bounds):
        if math.isfinite(b) and math.isclose(b, ttft_s, **_TOL):
            return i
    return None


def boundary_problem(ttft_s: float, bounds: Sequence[float]) -> str | None:
    """None when ``ttft_s`` is a bucket boundary; else one line naming the nearest boundaries."""
    finite = sorted(b for b in bounds if math.isfinite(b))
    if boundary_index(ttft_s, finite) is not None:
        return None
    if not finite:
        return "the engine's TTFT histogram has no finite buckets: [slo] ttft_s cannot be judged"
    below = [b for b in finite if b < ttft_s]
    above = [b for b in finite if b > ttft_s]
    near = []
    if below:
        near.append(f"{_bound(below[-1])} below")
    if above:
        near.append(f"{_bound(above[0])} above")
    where = " and ".join(near)
    return (
        f"[slo] ttft_s = {_bound(ttft_s)} is not a bucket boundary of the engine's TTFT histogram "
        f"(nearest: {where}); set ttft_s to one of them"
    )


def feasibility_problem(objective: float, pairs: Sequence[BurnPair] = PAIRS) -> str | None:
    """None when every pair can fire; else one line naming the pairs the objective can never fire."""
    top = max_burn(objective)
    never = [p for p in pairs if top <= p.factor]
    if not never:
        return None
    names = ", ".join(f"{_pair_name(p)} (above {p.factor:g}x)" for p in never)
    return (
        f"objective {objective:g} allows a burn rate of at most {top:.3g}x: "
        f"{names} can never fire; raise the objective to alert on it"
    )


def check_objective(
    slo: SloSettings, bucket_bounds: Sequence[float], pairs: Sequence[BurnPair] = PAIRS
) -> str | None:
    """What to report at start about ``[slo]`` against the engine's TTFT buckets: the refusal when
    ``ttft_s`` is not a boundary and/or the pairs the objective can never fire ("; "-joined), or None."""
    found = [boundary_problem(slo.ttft_s, bucket_bounds), feasibility_problem(slo.objective, pairs)]
    return "; ".join(p for p in found if p) or None


def source_for(unsupported: frozenset[str]) -> str:
    """The tracker source for an engine adapter: "canary" when it never exposes a TTFT histogram."""
    return "canary" if "ttft" in unsupported else "histogram"


class BurnTracker:
    """The burn rates of one engine's TTFT objective over time; feed it every scrape (or canary)."""

    def __init__(
        self, slo: SloSettings, pairs: Sequence[BurnPair] = PAIRS, *, source: str = "histogram"
    ) -> None:
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
        if not 0 < slo.objective < 1:
            raise ValueError("objective must be between 0 and 1 (exclusive)")
        if not pairs:
            raise ValueError("at least one burn-rate pair is needed")
        self.slo, self.pairs, self.source = slo, tuple(pairs), source
        self.windows: tuple[float, ...] = tuple(
            sorted({w for p in self.pairs for w in (p.short_s, p.long_s)})
        )
        self._horizon = max(self.windows) + TIERS[-1][1]
        self._tiers: tuple[deque[tuple[float, float, float]], ...] = tuple(deque() for _ in TIERS)
        self._total = 0.0  # the tracker's own monotonic totals (resets folded in)
        self._good = 0.0
        self._last: tuple[float, float] | None = None  # the engine's last raw (count, good)
        self._last_t: float | None = None
        self.resets = 0  # counter resets seen (engine restarts)
        self._boundary_problem: str | None = None
        self._feasibility = feasibility_problem(slo.objective, self.pairs)
        self._samples = 0  # samples recorded (the cache's version)
        self._cache: tuple[tuple[float, int], dict[float, WindowBurn]] | None = None

    # --- input ----------------------------------------------------------------------------------------
    def add(self, t: float, hist: Histogram | None) -> None:
        """One scrape's cumulative TTFT histogram. A histogram without the ttft_s boundary, or with
        non-finite or negative counts, adds nothing (a gap); the former is reported by ``problem``."""
        self._need("histogram")
        if hist is None or not self._advance_ok(t):
            return
        i = boundary_index(self.slo.ttft_s, hist.bounds)
        if i is None:
            self._boundary_problem = boundary_problem(self.slo.ttft_s, hist.bounds)
            return
        self._boundary_problem = None
        count, good = float(hist.count), float(hist.cumulative[i])
        if not (math.isfinite(count) and math.isfinite(good)) or count < 0 or good < 0:
            return
        good = min(good, count)
        if self._last is None:
            self._last = (count, good)  # the baseline: what came before is not attributed to any window
            self._record(t)
            return
        last_count, last_good = self._last
        if count < last_count or good < last_good:
            self.resets += 1
            d_count, d_good = count, good  # a fresh start: everything since the restart is new
        else:
            d_count, d_good = count - last_count, good - last_good
        self._last = (count, good)
        self._total += d_count
        self._good += min(d_good, d_count)
        self._record(t)

    def add_canary(self, t: float, ttft_s: float | None, ok: bool) -> None:
        """One finished agent canary: a request that is good when ``ok`` and its first token came within
        ttft_s (a failed or timed-out canary is bad)."""
        self._need("canary")
        if not self._advance_ok(t):
            return
        if self._last_t is None:
            self._record(t)  # the baseline point: the window's start
        good = (
            ok
            and ttft_s is not None
            and math.isfinite(ttft_s)
            and (ttft_s <= self.slo.ttft_s or math.isclose(ttft_s, self.slo.ttft_s, **_TOL))
        )
        self._total += 1.0
        self._good += 1.0 if good else 0.0
        self._record(t)

    # --- questions ------------------------------------------------------------------------------------
    def window(self, window_s: float, now: float) -> WindowBurn:
        """The burn over the last ``window_s`` before ``now`` (over the history there is when shorter)."""
        end = self._at_or_before(now)
        if end is None:
            return WindowBurn(window_s, None, 0.0, 0.0, 0.0, False)
        start = self._at_or_before(now - window_s)
        full = start is not None
        if start is None:
            start = self._oldest()
        assert start is not None  # end exists, so the series is not empty
        total = max(0.0, end[1] - start[1])
        good = max(0.0, end[2] - start[2])
        bad = max(0.0, total - good)
        burn = None if total <= 0 else (bad / total) / (1.0 - self.slo.objective)
        return WindowBurn(window_s, burn, total, bad, max(0.0, end[0] - start[0]), full)

    def burn(self, window_s: float, now: float) -> float | None:
        """(bad / total) / (1 - objective) over the window; None when no request finished in it."""
        return self.window(window_s, now).burn

    def budget_left(self, now: float) -> float | None:
        """Share of the error budget left over the longest window: 1 - its burn (negative: overspent)."""
        burn = self.burn(self.windows[-1], now) if self.windows else None
        return None if burn is None else 1.0 - burn

    @property
    def problem(self) -> str | None:
        """Why the objective cannot be judged (ttft_s not a boundary of the latest histogram) and/or which
        pairs can never fire; None when all is well."""
        found = [self._boundary_problem, self._feasibility]
        return "; ".join(p for p in found if p) or None

    def evaluate(self, now: float) -> tuple[str, str, str, dict[str, Any]] | None:
        """("SLO_BURN", severity, summary, evidence) for the most severe pair whose windows both burn
        above its factor (its short window fully covered), else None."""
        burns = self._burns(now)
        fired = [p for p in self.pairs if _fires(p, burns)]
        if not fired:
            return None
        fired.sort(key=lambda p: (p.severity != "critical", -p.factor))
        pair = fired[0]
        long_b, short_b = burns[pair.long_s], burns[pair.short_s]
        longest = burns[self.windows[-1]].burn
        left = None if longest is None else 1.0 - longest
        kind = "page" if pair.severity == "critical" else "ticket"
        summary = (
            f"TTFT error budget burning {long_b.burn:.1f}x over {_span(pair.long_s)} and {short_b.burn:.1f}x over "
            f"{_span(pair.short_s)} ({kind} above {pair.factor:g}x): objective {self.slo.objective:.4g} of requests "
            f"within {duration(self.slo.ttft_s)}"
        )
        if left is not None:
            summary += f", {left:.0%} of the budget left over {_span(self.windows[-1])}"
        if not long_b.full:
            summary += (
                f" ({_span(pair.long_s)} window over the {duration(long_b.covered_s)} of history there is)"
            )
        if self.source == "canary":
            summary += "; measured by the agent's canary (the engine has no TTFT histogram)"
        evidence: dict[str, Any] = {
            "source": self.source,
            "objective": self.slo.objective,
            "ttft_s": self.slo.ttft_s,
            "pair": {
                "severity": pair.severity,
                "long_s": pair.long_s,
                "short_s": pair.short_s,
                "factor": pair.factor,
            },
            "pairs_firing": [[p.long_s, p.short_s, p.factor] for p in fired],
            "budget_left": None if left is None else round(left, 4),
            "windows": [burns[w].evidence() for w in self.windows],
        }
        return CODE, pair.severity, summary, evidence

    def status(self, now: float) -> SloStatus:
        """The snapshot's SloStatus: budget left over the longest window and each window's burn."""
        burns = self._burns(now)
        longest = burns[self.windows[-1]].burn if self.windows else None
        return SloStatus(
            ttft_s=self.slo.ttft_s,
            objective=self.slo.objective,
            source=self.source,
            budget_left=None if longest is None else 1.0 - longest,
            windows=tuple(SloWindow(window_s=w, burn_rate=burns[w].burn) for w in self.windows),
            problem=self.problem,
        )

    def _burns(self, now: float) -> dict[float, WindowBurn]:
        """Every tracked window at ``now`` (cached until the next sample: evaluate and status share it)."""
        key = (now, self._samples)
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, {w: self.window(w, now) for w in self.windows})
        return self._cache[1]

    def points(self) -> int:
        """How many points the series holds (its memory)."""
        return sum(len(tier) for tier in self._tiers)

    # --- the series -----------------------------------------------------------------------------------
    def _need(self, source: str) -> None:
        if self.source != source:
            raise ValueError(f"this tracker's source is {self.source!r}, not {source!r}")

    def _advance_ok(self, t: float) -> bool:
        """Samples must come in time order; an older or non-finite one is ignored."""
        return math.isfinite(t) and (self._last_t is None or t >= self._last_t)

    def _record(self, t: float) -> None:
        self._last_t = t
        self._samples += 1
        point = (t, self._total, self._good)
        fine = self._tiers[0]
        if len(fine) >= 2 and t - fine[-2][0] < TIERS[0][1]:
            fine[-1] = point  # keep the newest; points stay about a step apart
        else:
            fine.append(point)
        for k in range(len(TIERS) - 1):  # age older points into the coarser tier
            age_limit = TIERS[k][0]
            here, there, step = self._tiers[k], self._tiers[k + 1], TIERS[k + 1][1]
            while len(here) > 1 and here[0][0] < t - age_limit:
                old = here.popleft()
                if not there or math.floor(old[0] / step) != math.floor(there[-1][0] / step):
                    there.append(old)  # the first point of each step-long slot
        oldest = next((tier for tier in reversed(self._tiers) if tier), None)
        while oldest is not None and len(oldest) > 1 and oldest[1][0] <= t - self._horizon:
            oldest.popleft()  # the second point still reaches back the whole longest window

    def _oldest(self) -> tuple[float, float, float] | None:
        for tier in reversed(self._tiers):
            if tier:
                return tier[0]
        return None

    def _at_or_before(self, t: float) -> tuple[float, float, float] | None:
        """The newest point with time <= t (None when every point is newer)."""
        for tier in self._tiers:  # newest tier first
            if tier and tier[0][0] <= t:
                i = bisect_right(tier, t, key=lambda p: p[0])
                return tier[i - 1]
        return None


def _fires(pair: BurnPair, burns: dict[float, WindowBurn]) -> bool:
    long_b, short_b = burns[pair.long_s], burns[pair.short_s]
    return (
        short_b.full
        and long_b.burn is not None
        and short_b.burn is not None
        and long_b.burn > pair.factor
        and short_b.burn > pair.factor
    )


def _pair_name(pair: BurnPair) -> str:
    kind = "page" if pair.severity == "critical" else "ticket"
    return f"the {_span(pair.long_s)}/{_span(pair.short_s)} {kind}"


def _span(seconds: float) -> str:
    """A window's name: 5m, 30m, 1h, 6h, 1d, 3d (duration() for anything else)."""
    for unit, name in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds >= unit and seconds % unit == 0:
            return f"{int(seconds // unit)}{name}"
    return duration(seconds)


def _bound(value: float) -> str:
    """A bucket bound as the config writes it, with its duration: "0.25 (250ms)"."""
    return f"{value:g} ({duration(value)})"


def _num(value: float) -> float | int:
    return int(value) if float(value).is_integer() else round(value, 3)


class SloRule:
    """An EngineRules extra rule (``rule(obs, history, thresholds)``): SLO_BURN from ``tracker`` at
    ``obs.t``. ``slo`` holds the latest SloStatus, for the snapshot (``EngineRules.extra_value("slo")``).
    The tracker is fed by the watch (``add`` each scrape, or ``add_canary`` each canary), not by the rule."""

    def __init__(self, tracker: BurnTracker) -> None:
        self.tracker = tracker
        self.slo: SloStatus | None = None

    def __call__(
        self, obs: Any, history: Sequence[Any] = (), thresholds: Any = None
    ) -> tuple[str, str, str, dict[str, Any]] | None:
        self.slo = self.tracker.status(obs.t)
        return self.tracker.evaluate(obs.t)
