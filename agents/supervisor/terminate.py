"""The terminator: ends launches. It stops a tree, cleans up after a leader's exit, kills what a
previous launch left behind, and awaits GPU release.

- Stop: SIGTERM to the group and every member, ``stop_timeout_s`` of grace, then SIGKILL repeated until
  the tree is empty, for at most ``max(stop_timeout_s, 5 s)``. SIGTERM stays pending on a SIGSTOPped
  process; the SIGKILL escalation still ends it.
- After an exit the agent did not ask for, the rest of the tree (group, session, marker, descendants) is
  SIGKILLed and confirmed empty.
- Once a tree is empty, its PIDs must leave ``gpu_pids()`` within ``gpu_release_timeout_s`` before
  anything is started again: a killed process's GPU memory is released by the driver some time later.
- Processes that survive SIGKILL, or GPU memory never released, end the engine ``failed``.
- The exit is recorded as the journal's ``last_exit``, with the tail of this launch's output and the
  root-cause line of a failure kept in it (``exitcause.py``).
"""

from __future__ import annotations

import asyncio
import inspect
import signal

from agents.supervisor.exitcause import root_cause, tail_with_cause
from agents.supervisor.journal import Journal
from agents.supervisor.launch import Launch
from agents.supervisor.logs import LogFile
from agents.supervisor.options import Hooks
from agents.supervisor.plan import Policy
from agents.supervisor.proctree import ProcessTree
from agents.supervisor.reaper import ExitStatus, Reaper
from agents.supervisor.statefile import EngineRecord
from agents.supervisor.statewriter import StateWriter
from agents.supervisor.wakeup import Wakeup

KILL_POLL_S = 0.05
KILL_CONFIRM_MIN_S = 5.0  # SIGKILL gets at least this long to empty the tree before "failed"
STDERR_TAIL_LINES = 50
CAUSE_SEARCH_LINES = 1000  # how far back the exit's root cause is looked for (the in-memory tail's size)


class Terminator:
    """Ends the launches of one supervisor.

    State changes, notes and the last exit go to ``journal``; a stop removes the state file through
    ``records``. Its waits end early on ``wake`` (an exit); the GPU view is polled every ``tick_s``.
    ``hooks`` gives the clock and the GPU view.
    """

    def __init__(
        self,
        policy: Policy,
        journal: Journal,
        records: StateWriter,
        log: LogFile,
        reaper: Reaper,
        wake: Wakeup,
        hooks: Hooks,
        tick_s: float,
    ) -> None:
        self._policy = policy
        self._journal = journal
        self._records = records
        self._log = log
        self._reaper = reaper
        self._wait = wake.wait
        self._clock = hooks.clock
        self._gpu_pids = hooks.gpu_pids
        self._tick_s = tick_s

    # ---------------------------------------------------------------- ending a launch
    async def stop(self, run: Launch, why: str) -> bool:
        """Stop ``run``'s tree (if any) and end ``stopped``; False when it ended ``failed``."""
        tree = run.tree
        if tree is None or not tree.survivors():
            self._reaper.reap_now()
            self.forget(run)
            self._journal.set("stopped", why)
            return True
        self._journal.set("stopping", why)
        left = await self.terminate(tree, graceful=True)
        self._log.poll()
        if run.exit is None and run.leader is not None:
            run.exit = self._reaper.status_of(run.leader)
        status = run.exit or ExitStatus(None, None)
        self._journal.record_exit(status, tail_with_cause(self._output(run), STDERR_TAIL_LINES))
        if left:
            self._journal.set("failed", f"processes survived SIGKILL: PIDs {sorted(left)}")
            return False
        held = await self.await_gpu_release(tree)
        self.forget(run)
        if held:
            self._journal.set(
                "failed",
                f"stopped, but GPU memory still held by PIDs {sorted(held)} after "
                f"{self._policy.gpu_release_timeout_s:g}s",
            )
            return False
        self._journal.set("stopped", why, status.code, status.signal)
        return True

    async def after_exit(self, run: Launch, *, stalled: bool, during_startup: bool) -> str | None:
        """The leader exited, or start-up ``stalled`` (the tree is stopped here first): record the exit
        (state ``exited``), SIGKILL the rest of the tree, await GPU release. Returns the exit reason, or
        None when the engine went ``failed``. The state file stays: during backoff it carries
        ``restarts`` to the next agent (its PID is gone, so that agent starts fresh)."""
        if stalled:
            quiet = self._clock() - (run.progress_at or self._clock())
            left: set[int] | None = await self.terminate(run.tree, graceful=True)
            reason = f"not ready after {quiet:.3g}s without progress during startup"
            status = run.exit or ExitStatus(None, None)
        else:
            status = run.exit or ExitStatus(None, None)
            reason = status.describe() + (" during startup" if during_startup else " unexpectedly")
            left = None
        self._log.poll()
        output = self._output(run)
        cause = root_cause(output, status.signal)  # a signal sent from outside is its own cause
        if cause:
            reason = f"{reason}: {cause[:300]}"
        self._journal.record_exit(status, tail_with_cause(output, STDERR_TAIL_LINES, status.signal))
        self._journal.set("exited", reason, status.code, status.signal)
        if left is None:  # the leader died on its own: SIGKILL whatever is left of its tree
            left = await self.terminate(run.tree, graceful=False)
        if left:
            self._journal.set("failed", f"processes survived SIGKILL: PIDs {sorted(left)}")
            return None
        held = await self.await_gpu_release(run.tree)
        self.forget(run, keep_record=True)
        if held:
            self._journal.set(
                "failed",
                f"GPU memory not released by PIDs {sorted(held)} after "
                f"{self._policy.gpu_release_timeout_s:g}s",
            )
            return None
        return reason

    def forget(self, run: Launch, *, keep_record: bool = False) -> None:
        """``run``'s processes are gone (or no longer watched): drop them, and the state file unless kept."""
        run.close_watch()
        if not keep_record:
            self._records.remove()
        run.forget()

    def _output(self, run: Launch) -> list[str]:
        return self._log.lines_since(run.log_mark, CAUSE_SEARCH_LINES)

    # ---------------------------------------------------------------- killing
    async def terminate(self, tree: ProcessTree | None, *, graceful: bool) -> set[int]:
        """(SIGTERM, wait stop_timeout_s,) SIGKILL until empty; returns survivors (empty = success)."""
        if tree is None:
            return set()
        left = tree.survivors()
        if graceful and left:
            tree.signal(signal.SIGTERM)
            deadline = self._clock() + self._policy.stop_timeout_s
            while left and self._clock() < deadline:
                await self._wait(min(KILL_POLL_S, max(0.0, deadline - self._clock())))
                self._reaper.reap_now()
                left = tree.survivors()
        deadline = self._clock() + max(self._policy.stop_timeout_s, KILL_CONFIRM_MIN_S)
        while left:
            tree.signal(signal.SIGKILL)
            await asyncio.sleep(KILL_POLL_S)
            self._reaper.reap_now()
            left = tree.survivors()
            if self._clock() >= deadline:
                break
        self._reaper.reap_now()
        return left

    async def kill_leftovers(self, rec: EngineRecord) -> str | None:
        """SIGKILL what is left of a previous launch whose leader is gone; the failure reason, or None.

        Found by the launch marker AND by the leader's session and process group: vLLM retitles its
        EngineCore and Worker processes, which overwrites their /proc environ (the marker is gone there),
        but they stay in the session the leader created. Linux never reuses a PID that still names a live
        session or group, so every process in that session is positively ours."""
        tree = ProcessTree(rec.marker, rec.pid, rec.starttime, pgid=rec.pid, sid=rec.pid)
        if not tree.refresh(fresh=True):
            return None
        left = await self.terminate(tree, graceful=False)
        if left:
            return f"leftover processes of the previous launch survived SIGKILL: PIDs {sorted(left)}"
        held = await self.await_gpu_release(tree)
        if held:
            return f"GPU memory of the previous launch not released by PIDs {sorted(held)}"
        self._journal.note(f"killed leftover processes of the previous launch: PIDs {sorted(tree.members)}")
        return None

    async def await_gpu_release(self, tree: ProcessTree | None) -> set[int]:
        """Wait until no PID of ``tree`` holds GPU memory; returns the PIDs still holding at timeout."""
        if self._gpu_pids is None or tree is None:
            return set()
        old = set(tree.members)
        deadline = self._clock() + self._policy.gpu_release_timeout_s
        while True:
            try:
                result = self._gpu_pids()
                current = await result if inspect.isawaitable(result) else result
                held = old & set(current)
            except Exception as exc:  # no GPU view: do not block restarts on it, but say so
                self._journal.note(f"GPU release not verified: {type(exc).__name__}: {exc}")
                return set()
            if not held:
                return set()
            if self._clock() >= deadline:
                return held
            self._journal.reason = f"waiting for GPU memory release by PIDs {sorted(held)}"
            await self._wait(min(self._tick_s, max(0.0, deadline - self._clock())))
