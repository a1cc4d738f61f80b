"""EngineSupervisor: one engine's process lifecycle, engine-agnostic (reliability.md §1.5, §1.6, §2.1–§2.6).

States (DESIGN.md "Engine states"):

    stopped -> starting -> ready (<-> degraded / hung, set by the collector via set_health)
    starting|ready|degraded|hung -> exited -> backoff -> starting ...
    any -> stopping -> stopped
    failed: terminal until an operator calls start()/restart()

One asyncio task per supervisor (``_life``) watches the running engine: it wakes on the leader's exit
(pidfd / SIGCHLD through the reaper) or every ``tick_s`` to read new log output, refresh the process
tree and poll readiness. Operator actions (start/stop/restart/shutdown) are serialized by a lock and
cancel that task before acting, so exactly one coroutine ever drives the engine.

Rules implemented here:
- Any exit the agent did not request is a failure, even exit code 0 (§1.5-E).
- An exit before ready, or ``startup_timeout_s`` without readiness *and* without new log output,
  is a start-up failure: it spends the start-retry budget (delays initial, 2x, 4x ...) and ends in
  ``failed("exited 2 during startup: <root-cause line>")``. An exit after ready is a runtime crash:
  exponential backoff, reset after ``backoff_reset_s`` of stable running. ``restarts`` counts every
  automatic relaunch (after either kind of failure); operator restarts are not counted.
- After any exit the rest of the tree is SIGKILLed (group + marker + descendants), the tree is
  confirmed empty, and the old PIDs must leave ``gpu_pids()`` before anything is started again.
- A missing/unexecutable binary or a port held by another process is ``failed`` at once, no retry.
- Stop: SIGTERM to group and members, ``stop_timeout_s``, SIGKILL, verify empty, GPU release.
  SIGTERM stays pending on a SIGSTOPped process; the SIGKILL escalation still ends it.
- Engine output goes to a log file opened O_APPEND, never a pipe (see ``logs.py``).
- ``shutdown(stop_engines=False)`` (the default) leaves engines running; the state file lets the next
  agent adopt them. ``adopt_or_start`` rules are in ``adopt.py`` and on the method below.
- The state file carries ``restarts`` (crash-loop history survives an agent restart on the same boot)
  and stays in place while the engine backs off after a crash; only a stop removes it.
- A failed state write is never silent: ``state_error`` holds its one-line reason (None after the next
  successful write), it is logged once per cause, and the write is retried while the engine runs.
- Before any start, a process on the engine's port that carries this engine's launch marker with this
  agent's tag (``ownership.py``) is adopted (its leader) or reported as unrecorded, never "in use by" itself.
- Automatic decisions are reported to the event sink as ``(action, engine_id, result)``: ``restart``,
  ``backoff``, ``adopt``, ``refuse``. A sink that raises is logged and never stops supervision.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import inspect
import logging
import os
import signal
import subprocess
import time
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import psutil

from agents.redact import Redactor
from agents.supervisor import statefile
from agents.supervisor.adopt import judge
from agents.supervisor.backoff import CrashBackoff, StartBudget
from agents.supervisor.exitcause import root_cause, tail_with_cause
from agents.supervisor.logs import LogFile
from agents.supervisor.ownership import OwnLaunch, agent_tag, find_own_launch, new_marker
from agents.supervisor.plan import MARKER_VAR, Policy, ProcessPlan
from agents.supervisor.portcheck import check_port
from agents.supervisor.proctree import (
    ProcessTree,
    boot_id,
    cmdline_hash,
    process_age_s,
    read_stat,
)
from agents.supervisor.reaper import REAPER, ExitStatus, ExitWatch, Reaper

log = logging.getLogger(__name__)

STATES = ("stopped", "starting", "ready", "degraded", "hung", "exited", "backoff", "stopping", "failed")
ALIVE_STATES = frozenset({"starting", "ready", "degraded", "hung", "stopping"})
HEALTH_STATES = frozenset({"ready", "degraded", "hung"})
STDERR_TAIL_LINES = 50
CAUSE_SEARCH_LINES = 1000  # how far back the exit's root cause is looked for (the in-memory tail's size)
_KILL_POLL_S = 0.05
_KILL_CONFIRM_MIN_S = 5.0  # SIGKILL gets at least this long to empty the tree before "failed"

ReadyCheck = Callable[[], Awaitable[bool]]
GpuPids = Callable[[], "Awaitable[set[int]] | set[int]"]
EventSink = Callable[[str, str, str], None]  # (action, engine_id, result)


def rfc3339(ts: float) -> str:
    """Wall-clock seconds as an RFC 3339 UTC timestamp (display only)."""
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class EngineSupervisor:
    """Launches and supervises one engine process tree; every timer runs on ``clock`` (monotonic).

    ``is_ready()`` (async or plain) must return True once the engine serves; anything else, an
    exception or ``ready_timeout_s`` means "not yet". Without it, ``mark_ready()`` ends start-up.
    ``gpu_pids()`` (async or plain) returns the PIDs holding GPU memory (NVML); None skips the wait.
    All methods must be called from the one event loop the agent runs; the tree is rescanned every
    ``tree_refresh_s`` (a /proc walk) and the log is read every ``tick_s``.
    """

    def __init__(
        self,
        plan: ProcessPlan,
        policy: Policy,
        state_dir: Path,
        log_dir: Path,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        is_ready: ReadyCheck | None = None,
        gpu_pids: GpuPids | None = None,
        log_max_bytes: int = 50 * 2**20,
        log_backups: int = 10,
        tail_lines: int = 1000,
        tick_s: float = 0.5,
        ready_poll_s: float = 0.5,
        ready_timeout_s: float = 10.0,
        tree_refresh_s: float = 2.0,
        events_max: int = 256,
        reaper: Reaper | None = None,
        on_event: EventSink | None = None,
        log_redact: Redactor | None = None,
    ) -> None:
        if min(tick_s, ready_poll_s, ready_timeout_s, tree_refresh_s) <= 0:
            raise ValueError("tick_s, ready_poll_s, ready_timeout_s and tree_refresh_s must be > 0")
        self.plan = plan
        self.policy = policy
        self.state_path = Path(state_dir) / "engines" / f"{plan.engine_id}.json"
        self.log_path = Path(log_dir) / f"{plan.engine_id}.log"
        self._clock = clock
        self._wall = wall
        self._is_ready = is_ready
        self._gpu_pids = gpu_pids
        self._tick_s = tick_s
        self._ready_poll_s = ready_poll_s
        self._ready_timeout_s = ready_timeout_s
        self._tree_refresh_s = tree_refresh_s
        self._reaper = reaper or REAPER
        self._log = LogFile(self.log_path, log_max_bytes, log_backups, tail_lines, redact=log_redact)
        self._tag = agent_tag(state_dir)
        self._on_event = on_event
        self.sink_errors = 0

        self._state = "stopped"
        self._reason: str | None = None
        self._events: deque[dict[str, Any]] = deque(maxlen=events_max)
        self.events_total = 0
        self.state_errors = 0
        self._state_error: str | None = None
        self._state_causes_logged: set[str] = set()
        self._restarts = self._restarts_inherited = _recorded_restarts(self.state_path)
        self._start_attempts = 0
        self._series_open = False
        self._crash = CrashBackoff(policy.backoff_initial_s, policy.backoff_max_s, policy.backoff_reset_s)
        self._budget = StartBudget(policy.backoff_initial_s, policy.backoff_max_s, policy.start_retries)
        self._backoff_until: float | None = None
        self._last_exit: dict[str, Any] | None = None

        # the current launch (or adopted process)
        self._tree: ProcessTree | None = None
        self._leader: int | None = None
        self._marker: str | None = None
        self._adopted = False
        self._exit: ExitStatus | None = None
        self._exit_watch: ExitWatch | None = None
        self._launched_at: float | None = None
        self._launched_wall: float | None = None
        self._ready_at: float | None = None
        self._progress_at: float | None = None
        self._launch_mark = 0
        self._written_hash: str | None = None

        self._task: asyncio.Task[None] | None = None
        self._ready_task: asyncio.Future[bool] | None = None
        self._next_ready = 0.0
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._reaper_held = False

    # ================================================================ read-only surface
    @property
    def state(self) -> str:
        return self._state

    @property
    def reason(self) -> str | None:
        return self._reason

    @property
    def pid(self) -> int | None:
        """The leader's PID while a launch (or adopted process) is current."""
        return self._leader

    @property
    def pids(self) -> tuple[int, ...]:
        """Every live process of the engine's tree, as of the last refresh (``tree_refresh_s`` old)."""
        return tuple(sorted(self._tree.alive)) if self._tree is not None else ()

    @property
    def restarts(self) -> int:
        """Automatic relaunches, including those recorded by earlier agents this boot (the state file)."""
        return self._restarts

    @property
    def restarts_inherited(self) -> int:
        """The part of ``restarts`` read from the state file at construction (earlier agents, same boot)."""
        return self._restarts_inherited

    @property
    def state_error(self) -> str | None:
        """Why the last state-file write (or removal) failed, one line without paths; None once one succeeds."""
        return self._state_error

    def set_event_sink(self, sink: EventSink | None) -> None:
        """Report automatic decisions as ``sink(action, engine_id, result)`` (see the module docstring)."""
        self._on_event = sink

    @property
    def start_attempts(self) -> int:
        """Launches in the current start-up series (reset by an operator start or by reaching ready)."""
        return self._start_attempts

    @property
    def uptime_s(self) -> float | None:
        """Seconds since the current process was launched (monotonic); None when nothing runs."""
        if self._state in ALIVE_STATES and self._launched_at is not None:
            return max(0.0, self._clock() - self._launched_at)
        return None

    @property
    def loading_elapsed_s(self) -> float | None:
        if self._state == "starting" and self._launched_at is not None:
            return max(0.0, self._clock() - self._launched_at)
        return None

    @property
    def backoff_remaining_s(self) -> float | None:
        if self._state == "backoff" and self._backoff_until is not None:
            return max(0.0, self._backoff_until - self._clock())
        return None

    @property
    def last_exit(self) -> dict[str, Any] | None:
        """{code, signal, at (RFC 3339), stderr_tail (last lines of the engine's output)} or None.

        ``stderr_tail`` holds the engine's combined stdout+stderr (one log file); ``code`` and
        ``signal`` are None when unknown (an adopted process is not our child)."""
        return dict(self._last_exit) if self._last_exit is not None else None

    @property
    def events(self) -> list[dict[str, Any]]:
        """Recent transitions, oldest first: {at, mono, state, reason, exit_code, signal}."""
        return [dict(e) for e in self._events]

    @property
    def adopted(self) -> bool:
        return self._adopted

    @property
    def marker(self) -> str | None:
        return self._marker

    @property
    def log_errors(self) -> int:
        return self._log.errors

    def log_tail(self, n: int = 100) -> list[str]:
        """The last ``n`` lines of engine output (reads any new output first)."""
        self._poll_log()
        return self._log.tail(n)

    def snapshot(self) -> dict[str, Any]:
        """The fields the collector copies into an EngineSnapshot."""
        return {
            "state": self._state, "reason": self._reason, "pid": self.pid, "pids": list(self.pids),
            "restarts": self._restarts, "start_attempts": self._start_attempts,
            "uptime_s": self.uptime_s, "loading_elapsed_s": self.loading_elapsed_s,
            "backoff_remaining_s": self.backoff_remaining_s, "last_exit": self.last_exit,
            "adopted": self._adopted,
        }

    # ================================================================ collector hooks
    def mark_ready(self, reason: str = "ready") -> bool:
        """starting -> ready (for a caller that decides readiness itself). False if not starting."""
        if self._state != "starting":
            return False
        self._become_ready(reason)
        return True

    def set_health(self, state: str, reason: str) -> bool:
        """ready <-> degraded <-> hung, decided by the collector; ignored in any other state."""
        if state not in HEALTH_STATES:
            raise ValueError(f"set_health state must be one of {sorted(HEALTH_STATES)}, got {state!r}")
        if self._state not in HEALTH_STATES or (state == self._state and reason == self._reason):
            return False
        self._set(state, reason)
        return True

    def refuse(self, reason: str) -> None:
        """Mark a never-launched engine ``failed`` with ``reason`` (e.g. the launch policy refused it)."""
        if self._state in ALIVE_STATES:
            raise RuntimeError(f"cannot refuse engine {self.plan.engine_id}: it is {self._state}")
        self._fail(reason)
        self._emit("refuse", reason)

    # ================================================================ operator actions
    async def start(self) -> None:
        """Launch (stopped/exited/failed -> starting) with a fresh retry budget; during backoff, start
        now; a no-op while the engine is starting/ready/degraded/hung/stopping."""
        async with self._lock:
            await self._start_locked()

    async def stop(self) -> None:
        """SIGTERM, stop_timeout_s, SIGKILL, verify the tree is empty, wait for GPU release."""
        async with self._lock:
            await self._halt_life()
            await self._stop_tree("stopped by operator")

    async def restart(self) -> None:
        """Operator restart: stop, then start with a fresh budget (not counted in ``restarts``)."""
        async with self._lock:
            await self._halt_life()
            if await self._stop_tree("restart requested"):
                await self._start_locked()

    async def shutdown(self, stop_engines: bool = False) -> None:
        """Agent exit: stop supervising; leave the engine running (and adoptable) unless asked."""
        async with self._lock:
            await self._halt_life()
            if stop_engines:
                await self._stop_tree("stopped at agent shutdown")
            else:
                self._close_watch()
                self._note("agent detached; engine left running" if self._tree else "agent detached")
            if self._reaper_held:
                self._reaper_held = False
                self._reaper.release()

    async def adopt_or_start(self) -> None:
        """After an agent (re)start: adopt the engine named by the state file, or start fresh.

        - no state file, a corrupt one, or one from another boot: start fresh;
        - recorded PID exited: SIGKILL live processes carrying the recorded marker (same boot, so
          positively ours: orphaned workers), wait for their GPU release, start fresh;
        - PID alive and boot, start time, cmdline hash and marker all match: adopt it (no new process;
          ready if ``is_ready()`` passes, else starting; uptime counts from the process start);
        - PID alive but any check fails: it is never signalled. If the engine's port is free, start
          fresh (the old process cannot be serving this engine's port); otherwise ``failed("state
          file names PID N but it is a different process; not adopted (...)")``.
        """
        async with self._lock:
            self._hold_reaper()
            if self._task is not None and not self._task.done():
                return
            rec, err = statefile.read_record(self.state_path)
            if err:
                self._note(f"state file ignored: {err}")
            if rec is None:
                await self._start_locked()
                return
            verdict = judge(rec, boot_id())
            if verdict.action == "adopt" and verdict.info is not None:
                await self._adopt(rec, verdict.info)
                return
            if verdict.action == "refuse":
                check = check_port(self.plan.host, self.plan.port)
                if not check.free:
                    if await self._take_own_holder(check):
                        return
                    self._fail(f"{verdict.reason}; {check.error}")
                    self._emit("refuse", self._reason or verdict.reason)
                    return
                self._note(f"{verdict.reason}; port is free, starting fresh")
            else:
                self._note(verdict.reason)
                if verdict.leftovers_ours and not await self._kill_leftovers(rec):
                    return
            self._remove_state_file()
            await self._start_locked()

    # ================================================================ launching
    async def _start_locked(self) -> None:
        self._hold_reaper()
        if self._task is not None and not self._task.done():
            if self._state != "backoff":
                return
            await self._halt_life()  # an operator start during backoff means "start now"
        if (self._tree is not None and self._tree.survivors()
                and not await self._stop_tree("stopping the previous process tree before start")):
            return
        self._budget.reset()
        self._crash.reset()
        self._series_open = False
        check = check_port(self.plan.host, self.plan.port)
        if not check.free and await self._take_own_holder(check):
            return
        if self._launch():
            self._task = asyncio.create_task(self._life(), name=f"supervise:{self.plan.engine_id}")

    async def _take_own_holder(self, check: Any) -> bool:
        """If the port is held by a launch of this engine by this agent that no state file records (a
        state write failed), adopt its leader, or end ``failed`` naming it as unrecorded. False when the
        holder is not ours (the caller reports "port in use" as usual)."""
        if check.holder_pid is None:
            return False
        own = find_own_launch(check.holder_pid, self.plan.engine_id, self._tag)
        if own is None:
            return False
        if not own.leader:
            self._fail(f"{check.error}: an unrecorded leftover of this engine's earlier launch (marker {own.marker}) "
                       "whose leader is gone; not adopted, stop it to start the engine")
            self._emit("refuse", self._reason or "unrecorded leftover on the port")
            return True
        await self._adopt(self._record_of(own), own.info,
                          source=f"an unrecorded launch found on port {self.plan.port}")
        return True

    def _record_of(self, own: OwnLaunch) -> statefile.EngineRecord:
        age = process_age_s(own.info.starttime)
        return statefile.EngineRecord(
            engine_id=self.plan.engine_id, boot_id=boot_id(), pid=own.pid, starttime=own.info.starttime,
            create_time=None, cmdline_sha256=cmdline_hash(own.pid), marker=own.marker, host=self.plan.host,
            port=self.plan.port, log_path=str(self.log_path), launched_at=rfc3339(self._wall() - age),
            restarts=self._restarts)

    def _launch(self) -> bool:
        """Pre-flight the port and spawn; False (state failed) when the engine cannot be started."""
        check = check_port(self.plan.host, self.plan.port)
        if not check.free:
            self._fail(check.error or "port in use")
            return False
        marker = new_marker(self.plan.engine_id, self._tag)
        env = {**self.plan.env, MARKER_VAR: marker}
        if not self._series_open:
            self._start_attempts, self._series_open = 0, True
        self._start_attempts += 1
        fd: int | None
        try:
            fd = self._log.open_append()
        except OSError as exc:  # no log file is no reason not to run the engine
            self._log.count_error(exc)
            fd = None
        try:
            if fd is not None:
                self._log.note(fd, f"=== llmconsole: launch {marker} at {rfc3339(self._wall())}: "
                                   f"{' '.join(self.plan.argv)}")
            self._poll_log()
            self._launch_mark = self._log.mark()
            popen = subprocess.Popen(  # noqa: S603 - argv list from the adapter, never a shell
                list(self.plan.argv), env=env, cwd=self.plan.cwd, stdin=subprocess.DEVNULL,
                stdout=fd if fd is not None else subprocess.DEVNULL, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True)
        except OSError as exc:  # ENOENT / EACCES / ENOTDIR: a config error, never retried
            where = f" ({exc.filename})" if exc.filename else ""
            self._fail(f"cannot start {self.plan.argv[0]}: {exc.strerror or exc}{where}")
            return False
        finally:
            if fd is not None:
                os.close(fd)
        pid = popen.pid
        info = read_stat(pid)
        self._tree = ProcessTree(marker, pid, info.starttime if info else 0, pgid=pid, sid=pid)
        self._leader, self._marker, self._adopted, self._exit = pid, marker, False, None
        self._reaper.add_leader(popen, partial(self._on_leader_exit, marker))
        self._close_watch()
        self._exit_watch = ExitWatch(pid, self._reaper.reap_now)
        now = self._clock()
        self._launched_at = self._progress_at = now
        self._launched_wall, self._ready_at, self._next_ready = self._wall(), None, now
        self._write_state_file()
        self._set("starting", f"launched PID {pid} (attempt {self._start_attempts})")
        return True

    async def _adopt(self, rec: statefile.EngineRecord, info: Any, source: str = "the state file") -> None:
        self._tree = ProcessTree(rec.marker, rec.pid, rec.starttime, pgid=info.pgrp, sid=info.session)
        self._tree.refresh(fresh=True)
        self._leader, self._marker, self._adopted, self._exit = rec.pid, rec.marker, True, None
        self._close_watch()
        self._exit_watch = ExitWatch(rec.pid, partial(self._on_adopted_exit, rec.marker))
        age = process_age_s(rec.starttime)
        now = self._clock()
        self._launched_at, self._progress_at, self._next_ready = now - age, now, now
        self._launched_wall = self._wall() - age
        self._start_attempts, self._series_open = 0, False
        self._launch_mark = self._log.mark()
        self._restarts = max(self._restarts, rec.restarts)
        self._write_state_file()  # records an unrecorded launch; refreshes the hash and restarts otherwise
        ready = await self._ready_once() if self._is_ready is not None else False
        how = f"adopted PID {rec.pid} from {source} (running {age:.0f}s)"
        if ready:
            self._ready_at = now
            self._set("ready", how)
        else:
            self._ready_at = None
            self._set("starting", f"{how}; not ready yet")
        self._emit("adopt", how)
        self._task = asyncio.create_task(self._life(), name=f"supervise:{self.plan.engine_id}")

    # ================================================================ the supervision loop
    async def _life(self) -> None:
        """Watch the current process; on exit clean up, back off and relaunch (or give up)."""
        try:
            while True:
                kind = await self._watch()
                during_startup = self._state == "starting"
                ran = self._clock() - self._ready_at if self._ready_at is not None else None
                exit_reason = await self._after_exit(kind)
                if exit_reason is None or not self.policy.restart_on_exit:
                    return
                delay = self._budget.on_failure() if during_startup else self._crash.on_crash(ran)
                failures = self._budget.failures if during_startup else self._crash.streak
                what = "start-up failure" if during_startup else "crash"
                if delay is None:
                    self._fail(exit_reason)
                    self._emit("backoff", f"no retry left after {failures} {what}s; failed: {exit_reason}")
                    return
                self._backoff_until = self._clock() + delay
                self._set("backoff", f"restart in {delay:g}s after: {exit_reason}")
                self._emit("backoff", f"next start in {delay:g} s after {failures} {what}"
                                      f"{'s' if failures != 1 else ''}: {exit_reason}")
                await self._sleep_until(self._backoff_until)
                self._backoff_until = None
                self._restarts += 1
                launched = self._launch()
                self._emit("restart", f"automatic: {exit_reason}; "
                                      + (f"relaunched as PID {self._leader}" if launched else f"failed: {self._reason}"))
                if not launched:
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a supervisor bug must be visible, never a silent dead loop
            log.exception("supervisor of %s failed", self.plan.engine_id)
            self._fail(f"supervisor error: {type(exc).__name__}: {exc}")

    async def _watch(self) -> str:
        """Return "exit" when the leader exits, "startup_timeout" when loading stalls."""
        next_refresh = self._clock()
        try:
            while True:
                self._poll_log()
                if self._exit is None and (self._exit_watch is None or not self._exit_watch.active):
                    self._check_leader()
                if self._exit is not None:
                    return "exit"
                now = self._clock()
                if self._tree is not None and now >= next_refresh:  # a /proc scan: not every tick
                    self._tree.refresh()
                    next_refresh = now + self._tree_refresh_s
                    if self._leader is not None and (self._state_error is not None
                                                     or cmdline_hash(self._leader) not in (None, self._written_hash)):
                        self._write_state_file()  # retitled itself, or the last write failed: keep it adoptable
                if self._state == "starting":
                    self._drive_ready(now)
                    if self._state == "starting" and self._progress_at is not None and \
                            now - self._progress_at >= self.policy.startup_timeout_s:
                        return "startup_timeout"
                await self._wait(self._tick_s)
        finally:
            self._cancel_ready()

    async def _after_exit(self, kind: str) -> str | None:
        """Record the exit, empty the tree, wait for GPU release. Returns the exit reason, or None
        when the engine went ``failed`` (unkillable processes, GPU memory never released)."""
        during_startup = self._state == "starting"
        if kind == "startup_timeout":
            quiet = self._clock() - (self._progress_at or self._clock())
            left = await self._terminate(self._tree, graceful=True)
            reason = f"not ready after {quiet:.3g}s without progress during startup"
            status = self._exit or ExitStatus(None, None)
        else:
            status = self._exit or ExitStatus(None, None)
            reason = status.describe() + (" during startup" if during_startup else " unexpectedly")
            left = None
        self._poll_log()
        output = self._log.lines_since(self._launch_mark, CAUSE_SEARCH_LINES)
        cause = root_cause(output)
        if cause:
            reason = f"{reason}: {cause[:300]}"
        self._record_exit(status, tail_with_cause(output, STDERR_TAIL_LINES))
        self._set("exited", reason, status.code, status.signal)
        if left is None:  # the leader died on its own: SIGKILL whatever is left of its tree
            left = await self._terminate(self._tree, graceful=False)
        if left:
            self._fail(f"processes survived SIGKILL: PIDs {sorted(left)}")
            return None
        held = await self._await_gpu_release(self._tree)
        # The record stays: during backoff it carries ``restarts`` to the next agent (its PID is gone,
        # so that agent starts fresh); the relaunch overwrites it.
        if held:
            self._fail(f"GPU memory not released by PIDs {sorted(held)} after "
                       f"{self.policy.gpu_release_timeout_s:g}s")
            self._forget_launch(keep_record=True)
            return None
        self._forget_launch(keep_record=True)
        return reason

    # ================================================================ stopping and killing
    async def _stop_tree(self, why: str) -> bool:
        """Stop the current tree (if any) and end ``stopped``; False when it ended ``failed``."""
        self._backoff_until = None
        self._cancel_ready()
        tree = self._tree
        if tree is None or not tree.survivors():
            self._reaper.reap_now()
            self._forget_launch()
            self._set("stopped", why)
            return True
        self._set("stopping", why)
        left = await self._terminate(tree, graceful=True)
        self._poll_log()
        if self._exit is None and self._leader is not None:
            self._exit = self._reaper.status_of(self._leader)
        status = self._exit or ExitStatus(None, None)
        self._record_exit(status, tail_with_cause(self._log.lines_since(self._launch_mark, CAUSE_SEARCH_LINES), STDERR_TAIL_LINES))
        if left:
            self._fail(f"processes survived SIGKILL: PIDs {sorted(left)}")
            return False
        held = await self._await_gpu_release(tree)
        self._forget_launch()
        if held:
            self._fail(f"stopped, but GPU memory still held by PIDs {sorted(held)} after "
                       f"{self.policy.gpu_release_timeout_s:g}s")
            return False
        self._set("stopped", why, status.code, status.signal)
        return True

    async def _terminate(self, tree: ProcessTree | None, *, graceful: bool) -> set[int]:
        """(SIGTERM, wait stop_timeout_s,) SIGKILL until empty; returns survivors (empty = success)."""
        if tree is None:
            return set()
        left = tree.survivors()
        if graceful and left:
            tree.signal(signal.SIGTERM)
            deadline = self._clock() + self.policy.stop_timeout_s
            while left and self._clock() < deadline:
                await self._wait(min(_KILL_POLL_S, max(0.0, deadline - self._clock())))
                self._reaper.reap_now()
                left = tree.survivors()
        deadline = self._clock() + max(self.policy.stop_timeout_s, _KILL_CONFIRM_MIN_S)
        while left:
            tree.signal(signal.SIGKILL)
            await asyncio.sleep(_KILL_POLL_S)
            self._reaper.reap_now()
            left = tree.survivors()
            if self._clock() >= deadline:
                break
        self._reaper.reap_now()
        return left

    async def _kill_leftovers(self, rec: statefile.EngineRecord) -> bool:
        """SIGKILL what is left of a previous launch whose leader is gone; False if that failed.

        Found by the launch marker AND by the leader's session and process group: vLLM retitles its
        EngineCore and Worker processes, which overwrites their /proc environ (the marker is gone there),
        but they stay in the session the leader created. Linux never reuses a PID that still names a live
        session or group, so every process in that session is positively ours."""
        tree = ProcessTree(rec.marker, rec.pid, rec.starttime, pgid=rec.pid, sid=rec.pid)
        if not tree.refresh(fresh=True):
            return True
        left = await self._terminate(tree, graceful=False)
        if left:
            self._fail(f"leftover processes of the previous launch survived SIGKILL: PIDs {sorted(left)}")
            return False
        held = await self._await_gpu_release(tree)
        if held:
            self._fail(f"GPU memory of the previous launch not released by PIDs {sorted(held)}")
            return False
        self._note(f"killed leftover processes of the previous launch: PIDs {sorted(tree.members)}")
        return True

    async def _await_gpu_release(self, tree: ProcessTree | None) -> set[int]:
        """Wait until no PID of ``tree`` holds GPU memory; returns the PIDs still holding at timeout."""
        if self._gpu_pids is None or tree is None:
            return set()
        old = set(tree.members)
        deadline = self._clock() + self.policy.gpu_release_timeout_s
        while True:
            try:
                result = self._gpu_pids()
                current = await result if inspect.isawaitable(result) else result
                held = old & set(current)
            except Exception as exc:  # no GPU view: do not block restarts on it, but say so
                self._note(f"GPU release not verified: {type(exc).__name__}: {exc}")
                return set()
            if not held:
                return set()
            if self._clock() >= deadline:
                return held
            self._reason = f"waiting for GPU memory release by PIDs {sorted(held)}"
            await self._wait(min(self._tick_s, max(0.0, deadline - self._clock())))

    # ================================================================ readiness
    def _drive_ready(self, now: float) -> None:
        if self._is_ready is None:
            return
        task = self._ready_task
        if task is not None and task.done():
            self._ready_task = None
            self._next_ready = now + self._ready_poll_s
            ok = not task.cancelled() and task.exception() is None and task.result() is True
            if ok:
                self._become_ready("ready: readiness check passed")
        elif task is None and now >= self._next_ready:
            self._ready_task = asyncio.ensure_future(self._ready_once())
            self._ready_task.add_done_callback(lambda _t: self._wake.set())

    async def _ready_once(self) -> bool:
        assert self._is_ready is not None
        try:
            async with asyncio.timeout(self._ready_timeout_s):
                result = self._is_ready()
                if inspect.isawaitable(result):
                    result = await result
                return result is True
        except asyncio.CancelledError:
            raise
        except Exception:  # includes TimeoutError: "not ready yet"
            return False

    def _cancel_ready(self) -> None:
        if self._ready_task is not None:
            self._ready_task.cancel()
            self._ready_task = None

    def _become_ready(self, reason: str) -> None:
        self._ready_at = self._clock()
        self._budget.reset()
        self._series_open = False
        self._set("ready", reason)

    # ================================================================ exits
    def _on_leader_exit(self, marker: str, status: ExitStatus) -> None:
        if marker == self._marker:
            self._exit = status
            self._wake.set()

    def _on_adopted_exit(self, marker: str) -> None:
        if marker != self._marker or self._leader is None:
            return
        self._reaper.reap_now()
        self._exit = self._reaper.status_of(self._leader) or ExitStatus(None, None)
        self._wake.set()

    def _check_leader(self) -> None:
        """Exit detection without a pidfd: poll the leader's /proc entry."""
        if self._leader is None or self._tree is None:
            return
        info = read_stat(self._leader)
        if info is None or info.dead or info.starttime != self._tree.leader_starttime:
            self._reaper.reap_now()
            if self._exit is None:
                self._exit = self._reaper.status_of(self._leader) or ExitStatus(None, None)

    def _record_exit(self, status: ExitStatus, tail: list[str]) -> None:
        self._last_exit = {"code": status.code, "signal": status.signal, "at": rfc3339(self._wall()),
                           "stderr_tail": list(tail)}

    # ================================================================ plumbing
    async def _halt_life(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._cancel_ready()

    async def _wait(self, timeout: float) -> None:
        """Sleep up to ``timeout`` seconds, waking early when an exit or readiness result arrives."""
        if timeout > 0 and not self._wake.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
        else:
            await asyncio.sleep(0)
        self._wake.clear()

    async def _sleep_until(self, deadline: float) -> None:
        while (left := deadline - self._clock()) > 0:
            self._poll_log()
            await self._wait(min(self._tick_s, left))

    def _poll_log(self) -> None:
        if self._log.poll() > 0 and self._state == "starting":
            self._progress_at = self._clock()

    def _hold_reaper(self) -> None:
        if not self._reaper_held:
            self._reaper.acquire()
            self._reaper_held = True

    def _close_watch(self) -> None:
        if self._exit_watch is not None:
            self._exit_watch.close()
            self._exit_watch = None

    def _forget_launch(self, *, keep_record: bool = False) -> None:
        self._close_watch()
        if not keep_record:
            self._remove_state_file()
        self._tree, self._leader = None, None

    def _write_state_file(self) -> None:
        if self._leader is None or self._tree is None or self._marker is None:
            return
        try:
            create_time: float | None = psutil.Process(self._leader).create_time()
        except psutil.Error:
            create_time = None
        rec = statefile.EngineRecord(
            engine_id=self.plan.engine_id, boot_id=boot_id(), pid=self._leader,
            starttime=self._tree.leader_starttime, create_time=create_time,
            cmdline_sha256=cmdline_hash(self._leader), marker=self._marker, host=self.plan.host,
            port=self.plan.port, log_path=str(self.log_path),
            launched_at=rfc3339(self._launched_wall or self._wall()), restarts=self._restarts)
        self._written_hash = rec.cmdline_sha256
        try:
            statefile.write_atomic(self.state_path, rec.to_json())
        except OSError as exc:  # supervision goes on; the engine is found by its marker if not re-adopted
            self._state_failed(exc, f"PID {self._leader} is not recorded for re-adoption")
        else:
            self._state_ok()

    def _remove_state_file(self) -> None:
        try:
            statefile.remove(self.state_path)
        except OSError as exc:
            self._state_failed(exc, "the record of a stopped launch was not removed")
        else:
            self._state_ok()

    def _state_failed(self, exc: OSError, consequence: str) -> None:
        """Count, expose (``state_error``) and log once per cause a failed state-file write or removal."""
        cause = exc.strerror or type(exc).__name__
        name = errno.errorcode.get(exc.errno or 0)
        why = f"{cause} ({name})" if name else cause
        self.state_errors += 1
        self._state_error = f"{why}; {consequence}"
        if why not in self._state_causes_logged:
            self._state_causes_logged.add(why)
            log.error("engine %s: state file %s: %s; %s", self.plan.engine_id, self.state_path, why, consequence)
            self._note(f"state file write failed: {why}; {consequence}")

    def _state_ok(self) -> None:
        if self._state_error is not None:
            log.warning("engine %s: state file written again", self.plan.engine_id)
            self._note("state file written again")
        self._state_error = None
        self._state_causes_logged.clear()

    def _emit(self, action: str, result: str) -> None:
        """Report an automatic decision to the event sink; a failing sink is logged, never raised."""
        sink = self._on_event
        if sink is None:
            return
        try:
            sink(action, self.plan.engine_id, result)
        except Exception as exc:
            self.sink_errors += 1
            log.error("engine %s: event sink failed on %s: %s: %s", self.plan.engine_id, action,
                      type(exc).__name__, exc)

    def _fail(self, reason: str) -> None:
        self._backoff_until = None
        self._set("failed", reason)

    def _note(self, reason: str) -> None:
        """An event that is not a transition (state unchanged); the current reason is kept."""
        self._append_event(self._state, reason, None, None)

    def _set(self, state: str, reason: str, code: int | None = None, sig: int | None = None) -> None:
        self._state, self._reason = state, reason
        self._append_event(state, reason, code, sig)
        log.info("engine %s: %s (%s)", self.plan.engine_id, state, reason)

    def _append_event(self, state: str, reason: str, code: int | None, sig: int | None) -> None:
        self._events.append({"at": rfc3339(self._wall()), "mono": self._clock(), "state": state,
                             "reason": reason, "exit_code": code, "signal": sig})
        self.events_total += 1


def _recorded_restarts(path: Path) -> int:
    """``restarts`` of a valid state file from this boot (a reboot starts the history over), else 0."""
    rec, _ = statefile.read_record(path)
    return rec.restarts if rec is not None and rec.boot_id is not None and rec.boot_id == boot_id() else 0
