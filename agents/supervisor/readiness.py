"""The readiness gate: polls an engine's readiness check in the background while it starts.

At most one check runs at a time, each cut off after ``timeout_s``; the next one starts ``poll_s`` after
the previous one finished. A finished check calls ``wake`` so the supervisor's loop looks at it at once.
The gate only says *that* the engine passed; what becoming ready means is the supervisor's business.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable

from agents.supervisor.options import ReadyCheck


class ReadinessGate:
    """Drives ``check()`` (async or plain; True means ready, anything else or an exception means "not yet")."""

    def __init__(
        self, check: ReadyCheck | None, poll_s: float, timeout_s: float, wake: Callable[[], None]
    ) -> None:
        self._check = check
        self._poll_s = poll_s
        self._timeout_s = timeout_s
        self._wake = wake
        self._task: asyncio.Future[bool] | None = None
        self._next = 0.0

    @property
    def enabled(self) -> bool:
        """False without a check: start-up then ends only through ``mark_ready``."""
        return self._check is not None

    def arm(self, now: float) -> None:
        """A new launch: its first check is due at once."""
        self._next = now

    def drive(self, now: float) -> bool:
        """One step of the poll: True when a finished check passed; otherwise start the next check when due."""
        if self._check is None:
            return False
        task = self._task
        if task is not None and task.done():
            self._task = None
            self._next = now + self._poll_s
            return not task.cancelled() and task.exception() is None and task.result() is True
        if task is None and now >= self._next:
            self._task = asyncio.ensure_future(self.once())
            self._task.add_done_callback(lambda _t: self._wake())
        return False

    async def once(self) -> bool:
        """Run the check once, within ``timeout_s``; False without a check."""
        if self._check is None:
            return False
        try:
            async with asyncio.timeout(self._timeout_s):
                result = self._check()
                if inspect.isawaitable(result):
                    result = await result
                return result is True
        except asyncio.CancelledError:
            raise
        except Exception:  # includes TimeoutError: "not ready yet"
            return False

    def cancel(self) -> None:
        """Abandon a running check (a stop, an exit, or the loop ending)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
