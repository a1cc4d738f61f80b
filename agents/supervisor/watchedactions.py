"""The operator actions of a watched engine: run the configured start/stop/restart command to its end
(or ``stop_timeout_s``), note it in the engine's log and journal, and report the outcome (audited by the
API). Part of :class:`~agents.supervisor.watched.WatchedEngine`, which holds the state these methods use."""

from __future__ import annotations

import asyncio
import logging
import shlex
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from agents.supervisor.actions import OUTCOME_REPORTER, action_refusal, run_command
from agents.supervisor.journal import SUPERVISOR_LOGGER, Journal
from agents.supervisor.reaper import Reaper
from agents.supervisor.wakeup import Wakeup

if TYPE_CHECKING:
    from agents.supervisor.watchedplan import WatchPlan

log = logging.getLogger(SUPERVISOR_LOGGER)


class WatchedActions:
    """start / stop / restart of a watched engine through its configured commands."""

    watch_plan: WatchPlan
    _journal: Journal
    _lines: deque[str]
    _lock: asyncio.Lock
    _wake: Wakeup
    _reaper: Reaper
    _clock: Callable[[], float]
    _redact: Callable[[str], str] | None
    _acting: str | None
    _command_since: float | None
    _starting_since: float | None
    _operator_pending: bool

    async def start(self) -> None:
        await self._act("start")

    async def stop(self) -> None:
        await self._act("stop")

    async def restart(self) -> None:
        await self._act("restart")

    async def _act(self, action: str) -> None:
        """Run the action's command to its end (or stop_timeout_s), note and report the outcome."""
        plan = self.watch_plan
        key = f"{action}_command"
        argv = plan.commands.get(action)
        reporter = OUTCOME_REPORTER.get()
        why = self.action_refusal(action) or (
            None if argv is None else action_refusal(argv, plan.allowed_commands, key)
        )
        if argv is None or why:  # the runtime refuses a missing command before; the policy is re-checked here
            self._journal.note(f"{action} refused: {why}")
            await self._report(reporter, action, f"refused: {why}")
            return
        self._hold_reaper()
        async with self._lock:
            self._acting, self._command_since = action, self._clock()
            self._starting_since = None
            self._operator_pending = action in ("start", "restart")
            shown = shlex.join(argv)
            self._journal.set("starting" if action == "start" else "stopping", f"{key} running: {shown}")
            self._lines.append(f"llmconsole: {key}: {shown}")
            try:
                result = await run_command(
                    argv,
                    plan.env,
                    key=key,
                    timeout_s=plan.stop_timeout_s,
                    reaper=self._reaper,
                    protect=lambda: self.pids,
                    redact=self._redact,
                )
            finally:
                self._acting = None
            self._lines.extend(result.tail)
            outcome = ("done: " if result.ok else "failed: ") + result.describe()
            self._lines.append(f"llmconsole: {outcome}")
            if result.ok and action != "stop":
                self._starting_since = self._clock()
                self._journal.set("starting", f"{outcome}; waiting for it to answer")
            else:
                self._operator_pending = self._operator_pending and result.ok
                self._journal.note(outcome)
        await self._report(reporter, action, outcome)
        self._wake.set()  # observe now

    async def _report(self, reporter: Callable[[str], None] | None, action: str, outcome: str) -> None:
        """The outcome goes to whoever asked (the API audits it under the operator's name), else to the
        sink."""
        if reporter is not None:
            try:
                await asyncio.to_thread(reporter, outcome)
                return
            except Exception as exc:  # the audit trail failing must not lose the outcome
                log.error(
                    "engine %s: reporting %s failed: %s: %s",
                    self.watch_plan.engine_id,
                    action,
                    type(exc).__name__,
                    exc,
                )
        self._journal.emit(action, outcome)
