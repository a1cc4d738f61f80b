"""Restart delays: exponential backoff for runtime crashes and for the start-up retry budget. Pure."""

from __future__ import annotations

from dataclasses import dataclass


def exp_delay(initial_s: float, max_s: float, n: int) -> float:
    """The n-th delay (n >= 0) of a doubling series: initial, 2*initial, 4*initial ... capped at max."""
    if n < 0:
        raise ValueError("n must be >= 0")
    # Cap the exponent: 2**64 * initial is far beyond any max and avoids float overflow.
    return min(max_s, initial_s * (2.0 ** min(n, 64)))


@dataclass(slots=True)
class CrashBackoff:
    """Runtime-crash backoff: each crash doubles the next delay; stable running resets the series.

    ``streak`` counts crashes since the last reset. ``on_crash(ran_s)`` takes how long the engine had
    been running (ready) before this crash: at least ``reset_s`` means it was stable and the series
    restarts from ``initial_s``.
    """

    initial_s: float
    max_s: float
    reset_s: float
    streak: int = 0

    def on_crash(self, ran_s: float | None) -> float:
        """Record a crash and return the delay before the next start."""
        if ran_s is not None and ran_s >= self.reset_s:
            self.streak = 0
        delay = exp_delay(self.initial_s, self.max_s, self.streak)
        self.streak += 1
        return delay

    def reset(self) -> None:
        self.streak = 0


@dataclass(slots=True)
class StartBudget:
    """Start-up failures: ``retries`` retries with delays initial, 2x, 4x ...; then give up.

    ``on_failure()`` returns the delay before the next attempt, or None when the budget is spent.
    Reaching ready (``reset()``) restores the full budget.
    """

    initial_s: float
    max_s: float
    retries: int
    failures: int = 0

    def on_failure(self) -> float | None:
        self.failures += 1
        if self.failures > self.retries:
            return None
        return exp_delay(self.initial_s, self.max_s, self.failures - 1)

    def reset(self) -> None:
        self.failures = 0
