"""Stop signals while the console runs (console.stopsignals): they ask the app to exit with 128 + signum
through its event loop and never raise inside it (an exception raised by a signal handler inside the loop
can land in the import system's lock bookkeeping and hang the console at exit); outside a running loop they
raise SystemExit as before; the previous handlers come back."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from console.app import LlmConsole
from console.fixturesource import FixtureFleetSource
from console.settings import ConsoleConfig
from console.stopsignals import STOP_SIGNALS, exit_on_signals
from tests.console.conftest import FLEET


def console() -> LlmConsole:
    src = FixtureFleetSource.from_dir(FLEET)
    return LlmConsole(src, ConsoleConfig(), clock=src.clock, wall=src.wall)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
async def test_a_stop_signal_asks_the_running_console_to_exit_without_raising_in_the_loop(sig: int) -> None:
    app = console()
    before = signal.getsignal(sig)
    with exit_on_signals(app) as asked:
        async with app.run_test() as pilot:
            await pilot.pause()
            os.kill(os.getpid(), sig)
            reached = True  # the handler has run by now (same thread); it raised nothing here
            started = time.monotonic()
            while app.is_running and time.monotonic() - started < 10:
                await asyncio.sleep(0.05)
            assert not app.is_running, "the console did not exit on the signal"
    assert reached
    assert asked == [128 + sig]
    assert app.return_code == 128 + sig
    assert signal.getsignal(sig) is before


def test_outside_a_running_loop_a_stop_signal_raises_system_exit() -> None:
    app = console()
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as exc, exit_on_signals(app) as asked:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)  # not reached: the handler raises first
    assert exc.value.code == 128 + signal.SIGTERM
    assert asked == [128 + signal.SIGTERM]
    assert signal.getsignal(signal.SIGTERM) is before


def test_the_previous_handlers_come_back() -> None:
    before = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    with exit_on_signals(console()):
        assert all(callable(signal.getsignal(sig)) for sig in STOP_SIGNALS)
    assert {sig: signal.getsignal(sig) for sig in STOP_SIGNALS} == before
