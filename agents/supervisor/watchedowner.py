"""Who serves a watched engine's port, over time: restarts and exits observed from the port owner's
identity (or, without a visible owner, from the port opening and closing), and the state file that keeps
the restart count and the last owner over agent restarts on the same boot (``watchedstate.py``). Part of
:class:`~agents.supervisor.watched.WatchedEngine`, which holds the state these methods use."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from agents.schema import SERVING_STATES, rfc3339
from agents.supervisor import watchedstate
from agents.supervisor.journal import SUPERVISOR_LOGGER, Journal
from agents.supervisor.portowner import PortOwner
from agents.supervisor.proctree import process_age_s
from agents.supervisor.reaper import ExitStatus

if TYPE_CHECKING:
    from agents.supervisor.watchedplan import Identity, WatchPlan

log = logging.getLogger(SUPERVISOR_LOGGER)

CONNECT_TIMEOUT_S = 1.0


class OwnerTracking:
    """Restarts, exits and their persistence for a watched engine (see :mod:`agents.supervisor.watched`)."""

    watch_plan: WatchPlan
    state: str
    state_error: str | None
    state_errors: int
    restarts_inherited: int
    _journal: Journal
    _seen: PortOwner
    _present: bool | None
    _last_key: tuple[int, int] | None
    _seen_before: bool
    _since: float | None
    _restarts: int
    _operator_pending: bool
    _acting: str | None
    _identity: Identity | None
    _identify_at: float
    _state_path: Path | None
    _boot: str | None
    _wall: Callable[[], float]
    _recorded: tuple[int, tuple[int, int] | None] | None

    # ================================================================ the state file
    def _load(self, path: Path) -> None:
        """The count and owner of this boot's file (blocking: a small file, read once at construction, before
        the watch reads ``restarts``: inherited restarts are history, not a crash loop now)."""
        rec, why = watchedstate.read(path, self.watch_plan.engine_id, self._boot)
        if why:
            log.warning("engine %s: %s; its restart count starts over", self.watch_plan.engine_id, why)
            self._journal.note(f"{why}; restart count starts over")
        if rec is None:
            return
        self._restarts = self.restarts_inherited = rec.restarts
        self._last_key = rec.owner_key
        self._recorded = (rec.restarts, rec.owner_key)
        self._journal.note(
            f"{rec.restarts} restart(s) observed before the agent restarted (state file of this boot)"
        )

    async def _record(self) -> None:
        """Write the state file when the count or the owner changed; a failure is ``state_error`` (an
        ``errors`` entry of the snapshot), retried at the next observation."""
        now = (self._restarts, self._last_key)
        if self._state_path is None or now == self._recorded:
            return
        rec = watchedstate.WatchedRecord(
            self.watch_plan.engine_id,
            self._boot,
            now[0],
            now[1][0] if now[1] else None,
            now[1][1] if now[1] else None,
            rfc3339(self._wall()),
        )
        try:
            await asyncio.to_thread(watchedstate.write, self._state_path, rec)
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
            if self.state_error is None:
                log.error(
                    "engine %s: writing %s failed: %s", self.watch_plan.engine_id, self._state_path, why
                )
            self.state_errors += 1
            self.state_error = f"{why}; the restart count of this watched engine is not recorded"
            return
        self._recorded, self.state_error = now, None

    # ================================================================ the port owner
    async def _connectable(self) -> bool | None:
        """Whether the port accepts a connection: True, False (refused), None (no answer either way)."""
        host = self.watch_plan.host
        host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                _, writer = await asyncio.open_connection(host, self.watch_plan.port)
        except ConnectionRefusedError:
            return False
        except (OSError, TimeoutError):
            return None
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    def _track(self, seen: PortOwner, present: bool | None, now: float) -> None:
        """Restarts and exits observed (see the module docstring)."""
        if present:
            key = seen.key
            if key is not None:
                new = self._last_key is not None and key != self._last_key
                self._last_key = key
            else:
                new = self._present is False and self._seen_before
            if self._present is not True or new:
                self._since = now
            if new:
                self._identity, self._identify_at = None, 0.0
                self._new_instance(seen)
            self._seen_before = True
            self._seen, self._present = seen, True
        elif present is False:
            if self._present:
                self._gone()
            self._seen, self._present = PortOwner(), False
        else:
            self._seen, self._present = seen, None

    def _new_instance(self, seen: PortOwner) -> None:
        what = f"PID {seen.pid}" if seen.pid is not None else "a new listener"
        where = f"{self.watch_plan.host}:{self.watch_plan.port}"
        if self._operator_pending:
            self._operator_pending = False
            reason = f"{what} serves {where} now, after the operator's command"
        else:
            self._restarts += 1
            age = f", started {process_age_s(seen.starttime):.0f}s ago" if seen.starttime is not None else ""
            reason = f"restart observed: {what}{age} serves {where} now (restart {self._restarts})"
            self._journal.emit("restart-observed", reason)
        if self.state in SERVING_STATES and self._acting is None:
            # replaced without a gap: judged afresh (starting while it loads), never "hung" for loading
            self._journal.set("starting", f"{reason}; waiting for it to answer")
        else:
            self._journal.note(reason)

    def _gone(self) -> None:
        where = f"{self.watch_plan.host}:{self.watch_plan.port}"
        was = f" (PID {self._seen.pid})" if self._seen.pid is not None else ""
        self._journal.record_exit(ExitStatus(None, None), [])
        if self._acting is not None:
            self._journal.note(f"stopped listening on {where}{was} while {self._acting}_command runs")
            return
        reason = (
            f"exit observed: nothing listens on {where} any more{was}; status unknown (not the agent's child)"
        )
        self._journal.note(reason)
        self._journal.emit("exit-observed", reason)
