"""Stop signals while the console runs: SIGTERM, SIGHUP or SIGINT ask the app to exit, with exit code
128 + the signal number, through its event loop.

A Python signal handler runs in the main thread between any two bytecodes. Raising from it (``SystemExit``
or ``KeyboardInterrupt``) while the event loop runs can land inside the import system's own lock
bookkeeping and leave a module lock held: a thread importing that module (the calculator preload) then
waits forever, and so does the loop's shutdown, which joins that thread — the console hangs with its last
frame on screen (seen: 1 SIGTERM in 17 under load). :func:`exit_on_signals` instead schedules
``app.exit`` on the running loop (``call_soon_threadsafe``: safe from a signal handler), so Textual shuts
down normally and restores the terminal. Only when no loop runs (just before or after the app) does the
handler raise ``SystemExit``, as Python's own handling would.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)


class _Exits(Protocol):
    def exit(self, result: Any = None, return_code: int = 0, message: Any = None) -> None: ...


@contextmanager
def exit_on_signals(app: _Exits, signals: tuple[int, ...] = STOP_SIGNALS) -> Iterator[list[int]]:
    """While inside, each of ``signals`` asks ``app`` to exit with code 128 + signum. Yields the list of
    exit codes asked for (the first one wins); the previous handlers are restored on the way out."""
    asked: list[int] = []

    def handle(signum: int, _frame: object) -> None:
        code = 128 + signum
        asked.append(code)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # the app is not running (yet, or any more): nothing to interrupt safely
            raise SystemExit(asked[0]) from None
        loop.call_soon_threadsafe(app.exit, None, asked[0])

    previous = {sig: signal.getsignal(sig) for sig in signals}
    for sig in signals:
        signal.signal(sig, handle)
    try:
        yield asked
    finally:
        for sig, handler in previous.items():  # None: set outside Python, the default is the nearest
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)


__all__ = ["STOP_SIGNALS", "exit_on_signals"]
