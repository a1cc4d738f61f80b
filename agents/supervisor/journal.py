"""What happened to an engine: its state and reason, its recent transitions and notes, its last exit;
and the event sink that automatic decisions are reported to."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from agents.schema import rfc3339
from agents.supervisor.options import EventSink
from agents.supervisor.reaper import ExitStatus

# Every line about an engine's supervision goes to this one logger, whichever module writes it.
SUPERVISOR_LOGGER = "agents.supervisor.engine"
log = logging.getLogger(SUPERVISOR_LOGGER)

# States judged every tick (by the watch): staying in one with a reason of the same category only updates
# the reason, so the history keeps one line per transition, never one per tick.
_JUDGED_STATES = frozenset({"ready", "degraded", "hung", "unreachable"})


class Journal:
    """State, reason, events and last exit of one engine. Every transition is logged at INFO and kept as
    an event ``{at (RFC 3339), mono, state, reason, exit_code, signal}``; the oldest drop off at ``maxlen``.

    ``last_exit`` is ``{code, signal, at (RFC 3339), stderr_tail}`` or None: ``stderr_tail`` holds the
    engine's combined stdout+stderr (one log file); ``code`` and ``signal`` are None when unknown (an
    adopted process is not the agent's child).

    ``emit(action, result)`` reports an automatic decision as ``sink(action, engine_id, result)``; a sink
    that raises is counted (``sink_errors``) and logged, never raised."""

    def __init__(
        self,
        engine_id: str,
        clock: Callable[[], float],
        wall: Callable[[], float],
        maxlen: int,
        sink: EventSink | None = None,
    ) -> None:
        self.engine_id = engine_id
        self.state = "stopped"
        self.reason: str | None = None  # also set alone (no event) for a passing condition, e.g. a GPU wait
        self.total = 0  # events ever appended, including those that dropped off
        self._clock = clock
        self._wall = wall
        self._events: deque[dict[str, Any]] = deque(maxlen=maxlen)
        self._last_exit: dict[str, Any] | None = None
        self.sink = sink
        self.sink_errors = 0

    @property
    def events(self) -> list[dict[str, Any]]:
        """Recent events, oldest first (copies)."""
        return [dict(e) for e in self._events]

    @property
    def last_exit(self) -> dict[str, Any] | None:
        return dict(self._last_exit) if self._last_exit is not None else None

    def record_exit(self, status: ExitStatus, tail: list[str]) -> None:
        self._last_exit = {
            "code": status.code,
            "signal": status.signal,
            "at": rfc3339(self._wall()),
            "stderr_tail": list(tail),
        }

    def set(self, state: str, reason: str, code: int | None = None, sig: int | None = None) -> None:
        """A transition: the new state and reason, recorded and logged. Staying in a judged state (ready,
        degraded, hung, unreachable) with a reason of the same category (its text before the first ":",
        digits ignored) is no transition: only the reason is updated, no event is added."""
        if (
            state == self.state
            and state in _JUDGED_STATES
            and code is None
            and sig is None
            and reason_category(reason) == reason_category(self.reason)
        ):
            self.reason = reason
            return
        self.state, self.reason = state, reason
        self._append(state, reason, code, sig)
        log.info("engine %s: %s (%s)", self.engine_id, state, reason)

    def note(self, reason: str) -> None:
        """An event that is not a transition: the state and the current reason are kept."""
        self._append(self.state, reason, None, None)

    def _append(self, state: str, reason: str, code: int | None, sig: int | None) -> None:
        self._events.append(
            {
                "at": rfc3339(self._wall()),
                "mono": self._clock(),
                "state": state,
                "reason": reason,
                "exit_code": code,
                "signal": sig,
            }
        )
        self.total += 1

    def emit(self, action: str, result: str) -> None:
        sink = self.sink
        if sink is None:
            return
        try:
            sink(action, self.engine_id, result)
        except Exception as exc:
            self.sink_errors += 1
            log.error(
                "engine %s: event sink failed on %s: %s: %s", self.engine_id, action, type(exc).__name__, exc
            )


def reason_category(reason: str | None) -> str:
    """What kind of reason this is: its text before the first ":", without digits, case-folded."""
    head = (reason or "").split(":", 1)[0]
    return "".join(ch for ch in head if not ch.isdigit()).strip().casefold()


class JournalView:
    """What a supervised or watched engine shows of its :class:`Journal` (``self._journal``)."""

    _journal: Journal

    @property
    def state(self) -> str:
        return self._journal.state

    @property
    def reason(self) -> str | None:
        return self._journal.reason

    @property
    def last_exit(self) -> dict[str, Any] | None:
        """{code, signal, at (RFC 3339), stderr_tail (last lines of the engine's output)} or None."""
        return self._journal.last_exit

    @property
    def events(self) -> list[dict[str, Any]]:
        """Recent transitions, oldest first: {at, mono, state, reason, exit_code, signal}."""
        return self._journal.events

    @property
    def events_total(self) -> int:
        return self._journal.total

    @property
    def sink_errors(self) -> int:
        """Event-sink calls that raised."""
        return self._journal.sink_errors
