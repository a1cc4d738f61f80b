"""Restart delays: exponential backoff for runtime crashes and for the start-up retry budget, and the
supervisor's restart bookkeeping built on them (``Retries``). Pure."""

from __future__ import annotations

from dataclasses import dataclass

from agents.supervisor.plan import Policy


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


@dataclass(frozen=True, slots=True)
class Retry:
    """What one failure leads to: wait ``delay_s`` and relaunch, or give up (``delay_s`` None).

    ``failures`` counts the failures of this kind so far (``what``: "start-up failure" or "crash")."""

    delay_s: float | None
    failures: int
    what: str

    def gave_up(self, exit_reason: str) -> str:
        """The event-sink report when no retry is left."""
        return f"no retry left after {self.failures} {self.what}s; failed: {exit_reason}"

    def scheduled(self, exit_reason: str) -> str:
        """The event-sink report of a backoff, e.g. "next start in 20 s after 2 crashes: <reason>"."""
        plural = "s" if self.failures != 1 else ""
        return f"next start in {self.delay_s:g} s after {self.failures} {self.what}{plural}: {exit_reason}"


class Retries:
    """One engine's restart bookkeeping.

    A failure before ready spends the start-up budget; a crash after ready takes the crash backoff.
    ``attempts`` counts launches in the current start-up series (a series starts with the first launch
    after an operator start, an adoption or reaching ready); ``restarts`` counts automatic relaunches,
    starting from ``inherited`` (those recorded by earlier agents this boot).
    """

    def __init__(self, policy: Policy, inherited: int) -> None:
        self.restarts = self.inherited = inherited
        self.attempts = 0
        self._series_open = False
        self._crash = CrashBackoff(policy.backoff_initial_s, policy.backoff_max_s, policy.backoff_reset_s)
        self._budget = StartBudget(policy.backoff_initial_s, policy.backoff_max_s, policy.start_retries)

    def fresh(self) -> None:
        """An operator start: a full budget, no crash streak, and a new series at the next launch."""
        self._budget.reset()
        self._crash.reset()
        self._series_open = False

    def attempt(self) -> int:
        """A launch: its number in the current series."""
        if not self._series_open:
            self.attempts, self._series_open = 0, True
        self.attempts += 1
        return self.attempts

    def adopted(self, recorded_restarts: int) -> None:
        """A running engine was adopted: no series is open; keep the larger restart count."""
        self.attempts, self._series_open = 0, False
        self.restarts = max(self.restarts, recorded_restarts)

    def ready(self) -> None:
        """The engine became ready: a full budget again, and the next launch opens a new series."""
        self._budget.reset()
        self._series_open = False

    def after_failure(self, during_startup: bool, ran_s: float | None) -> Retry:
        """The delay before the next launch; ``ran_s`` is how long the engine had been ready (crashes)."""
        if during_startup:
            delay = self._budget.on_failure()
            return Retry(delay, self._budget.failures, "start-up failure")
        return Retry(self._crash.on_crash(ran_s), self._crash.streak, "crash")
