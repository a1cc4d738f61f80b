"""Writing and removing one engine's state file, where a failure is never silent.

The file records the current launch for re-adoption by the next agent; it is rewritten when the
leader's command line changes (an engine may retitle itself) and after a failed write.
A failed write or removal is counted (``errors``), exposed as a one-line reason without paths
(``error``, None again after the next success), logged once per cause and noted in the engine's
events; the supervisor retries the write while the engine runs.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from pathlib import Path

from agents.supervisor import statefile
from agents.supervisor.journal import SUPERVISOR_LOGGER, Journal
from agents.supervisor.launch import Launch
from agents.supervisor.plan import ProcessPlan
from agents.supervisor.proctree import boot_id, cmdline_hash

log = logging.getLogger(SUPERVISOR_LOGGER)


class StateWriter:
    """Keeps ``<state_dir>/engines/<engine_id>.json`` in step with the current launch."""

    def __init__(
        self, plan: ProcessPlan, state_dir: Path, log_path: Path, journal: Journal, wall: Callable[[], float]
    ) -> None:
        self.path = Path(state_dir) / "engines" / f"{plan.engine_id}.json"
        self._plan = plan
        self._log_path = log_path
        self._wall = wall
        self.error: str | None = None
        self.errors = 0
        self._journal = journal
        self._causes_logged: set[str] = set()

    def recorded_restarts(self) -> int:
        """``restarts`` of a valid state file from this boot (a reboot starts the history over), else 0."""
        rec, _ = statefile.read_record(self.path)
        return rec.restarts if rec is not None and rec.boot_id is not None and rec.boot_id == boot_id() else 0

    def record(self, run: Launch, restarts: int) -> None:
        """Write the record of ``run`` (nothing when no process runs)."""
        rec = run.record(self._plan, self._log_path, restarts, self._wall)
        if rec is not None:
            run.written_hash = rec.cmdline_sha256
            self.write(rec)

    def outdated(self, run: Launch) -> bool:
        """True when ``run``'s record should be written again: the last write failed, or the leader's
        command line no longer hashes to what was recorded."""
        return run.leader is not None and (
            self.error is not None or cmdline_hash(run.leader) not in (None, run.written_hash)
        )

    def write(self, rec: statefile.EngineRecord) -> None:
        try:
            statefile.write_atomic(self.path, rec.to_json())
        except OSError as exc:  # supervision goes on; the engine is found by its marker if not re-adopted
            self._failed(exc, f"PID {rec.pid} is not recorded for re-adoption")
        else:
            self._ok()

    def remove(self) -> None:
        try:
            statefile.remove(self.path)
        except OSError as exc:
            self._failed(exc, "the record of a stopped launch was not removed")
        else:
            self._ok()

    def _failed(self, exc: OSError, consequence: str) -> None:
        cause = exc.strerror or type(exc).__name__
        name = errno.errorcode.get(exc.errno or 0)
        why = f"{cause} ({name})" if name else cause
        self.errors += 1
        self.error = f"{why}; {consequence}"
        if why not in self._causes_logged:
            self._causes_logged.add(why)
            log.error(
                "engine %s: state file %s: %s; %s", self._journal.engine_id, self.path, why, consequence
            )
            self._journal.note(f"state file write failed: {why}; {consequence}")

    def _ok(self) -> None:
        if self.error is not None:
            log.warning("engine %s: state file written again", self._journal.engine_id)
            self._journal.note("state file written again")
        self.error = None
        self._causes_logged.clear()
