"""Rate limit for audit records of denied attempts that carried no valid token.

Every mutation attempt is audited, but an unauthenticated flood must not become a flood of fsynced lines
(1,000 POSTs were 1,000 fsyncs). Per peer address, in windows of ``window_s`` starting at that peer's first
such attempt: the first ``full`` attempts are recorded one by one, the rest only counted, and when the
window ends one summary record carries the count. Attempts with a valid token (e.g. a viewer trying to
stop an engine) are always recorded in full: they name someone. At most ``max_peers`` peers are tracked;
beyond that new peers share one bucket, so memory stays bounded whatever the addresses.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

OTHER_PEERS = "(other peers)"


@dataclass(slots=True)
class _Window:
    started: float
    recorded: int = 0
    suppressed: int = 0


@dataclass(frozen=True, slots=True)
class Summary:
    peer: str
    suppressed: int
    window_s: float
    started_mono: float


def summary_record(summary: Summary, full: int) -> dict[str, Any]:
    """The audit record of one summary, all fields but ``request_id`` (``full``: the limiter's ``full``)."""
    return {
        "actor": None,
        "role": None,
        "auth": "none",
        "remote": summary.peer,
        "action": "rate-limited",
        "engine": None,
        "suppressed": summary.suppressed,
        "window_s": summary.window_s,
        "result": f"denied: {summary.suppressed} more attempt(s) without a valid token from this peer, counted, "
        f"not recorded one by one (rate limit: {full} per {summary.window_s:.0f} s)",
    }


class DenialLimiter:
    def __init__(
        self,
        *,
        full: int = 5,
        window_s: float = 60.0,
        max_peers: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.full, self.window_s, self.max_peers = full, window_s, max_peers
        self._clock = clock
        self._windows: dict[str, _Window] = {}

    def admit(self, peer: str | None) -> tuple[bool, list[Summary]]:
        """Whether this attempt from ``peer`` is recorded in full, and the summaries now due (of windows
        that ended, this peer's included) which the caller writes first."""
        now = self._clock()
        due = self.due(now)
        key = peer or "unknown"
        if key not in self._windows and len(self._windows) >= self.max_peers:
            key = OTHER_PEERS
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = _Window(now)
        if window.recorded < self.full:
            window.recorded += 1
            return True, due
        window.suppressed += 1
        return False, due

    def next_due(self) -> float | None:
        """Seconds until the earliest window with suppressed attempts ends (None if there is none)."""
        ends = [w.started + self.window_s for w in self._windows.values() if w.suppressed]
        return None if not ends else max(0.0, min(ends) - self._clock())

    def due(self, now: float | None = None) -> list[Summary]:
        """Summaries of the windows that have ended (those windows are forgotten)."""
        now = self._clock() if now is None else now
        ended = [k for k, w in self._windows.items() if now - w.started >= self.window_s]
        return [s for s in (self._close(k) for k in ended) if s is not None]

    def flush(self) -> list[Summary]:
        """Every pending summary, windows ended or not (the agent is stopping)."""
        return [s for s in (self._close(k) for k in list(self._windows)) if s is not None]

    def _close(self, key: str) -> Summary | None:
        w = self._windows.pop(key)
        return Summary(key, w.suppressed, self.window_s, w.started) if w.suppressed else None
