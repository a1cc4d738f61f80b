"""The supervisor's one alarm: a leader's exit or a finished readiness check cuts its sleeps short."""

from __future__ import annotations

import asyncio
import contextlib


class Wakeup:
    """``set()`` from a callback; ``wait(timeout)`` in the one coroutine that drives the engine."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self, timeout: float) -> None:
        """Sleep up to ``timeout`` seconds, or until ``set()``; a pending ``set()`` only yields once."""
        if timeout > 0 and not self._event.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._event.wait()
        else:
            await asyncio.sleep(0)
        self._event.clear()
