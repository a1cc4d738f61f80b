"""EngineSupervisor: one engine's process lifecycle, engine-agnostic.

States (the wire schema's ``ENGINE_STATES``):

    stopped -> starting -> ready (<-> degraded / hung, set by the collector via set_health)
    starting|ready|degraded|hung -> exited -> backoff -> starting ...
    any -> stopping -> stopped
    failed: terminal until an operator calls start()/restart()

The supervisor is the state machine over its parts: ``Launcher``/``Launch`` (``launch.py``),
``ReadinessGate`` (``readiness.py``), ``Terminator`` (``terminate.py``: stopping, cleanup after exits, GPU
release), ``Retries`` (``backoff.py``), ``Journal`` (``journal.py``: state, events, event sink),
``StateWriter`` (``statewriter.py``) and the adoption decisions of ``adopt.py``. One asyncio task
(``_life``) watches the running engine: it wakes on the leader's exit (pidfd / SIGCHLD through the
reaper) or every ``tick_s`` to read new log output, refresh the process tree and poll readiness.
Operator actions are serialized by a lock and cancel that task first: one coroutine drives the engine.

Rules implemented here:
- Any exit the agent did not request is a failure, even exit code 0 (an engine whose core died may
  still exit 0); it is cleaned up (``terminate.py``) before anything is started again.
- An exit before ready, or ``startup_timeout_s`` without readiness *and* without new log output, is a
  start-up failure that spends the start-retry budget; once it is spent the engine is ``failed("exited
  2 during startup: <root-cause line>")``. An exit after ready is a runtime crash: exponential backoff,
  reset after ``backoff_reset_s`` of stable running. ``restarts`` counts automatic relaunches only.
- A missing/unexecutable binary or a port held by another process is ``failed`` at once, no retry.
- Automatic decisions go to the event sink: ``restart``, ``backoff``, ``adopt``, ``refuse``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

from agents.schema import ACTIONS, ENGINE_STATES, ActionAvailability
from agents.supervisor.adopt import Takeover, after_agent_restart, on_port
from agents.supervisor.backoff import Retries
from agents.supervisor.journal import SUPERVISOR_LOGGER, Journal, JournalView
from agents.supervisor.launch import Launch, Launcher, record_of_own
from agents.supervisor.logs import LogFile
from agents.supervisor.options import EventSink, Hooks, Tuning, split_options
from agents.supervisor.ownership import agent_tag
from agents.supervisor.plan import Policy, ProcessPlan
from agents.supervisor.portcheck import check_port
from agents.supervisor.proctree import ProcInfo
from agents.supervisor.readiness import ReadinessGate
from agents.supervisor.reaper import REAPER, ExitStatus
from agents.supervisor.statefile import EngineRecord
from agents.supervisor.statewriter import StateWriter
from agents.supervisor.terminate import Terminator
from agents.supervisor.wakeup import Wakeup

log = logging.getLogger(SUPERVISOR_LOGGER)

STATES = ENGINE_STATES
ALIVE_STATES = frozenset({"starting", "ready", "degraded", "hung", "stopping"})
HEALTH_STATES = frozenset({"ready", "degraded", "hung"})
SNAPSHOT_FIELDS = (
    "state",
    "reason",
    "pid",
    "pids",
    "restarts",
    "start_attempts",
    "uptime_s",
    "loading_elapsed_s",
    "backoff_remaining_s",
    "last_exit",
    "adopted",
)


class EngineSupervisor(JournalView):
    """Launches and supervises one engine process tree; every timer runs on ``hooks.clock`` (monotonic).

    ``managed``, ``actions``, ``action_refusal()`` and ``watch_info`` are shared with
    :class:`~agents.supervisor.watched.WatchedEngine` (an engine the agent only watches).

    Collaborators come in ``hooks`` (readiness check, GPU view, event sink, clocks, reaper, redactor) and
    poll periods and sizes in ``tuning``; any of their fields may also be passed as a keyword
    (``is_ready=...``, ``tick_s=...``). All methods must be called from the one event loop the agent runs.
    """

    managed = True  # launched and supervised by the agent
    watch_info = None  # only a watched engine has one

    def __init__(
        self,
        plan: ProcessPlan,
        policy: Policy,
        state_dir: Path,
        log_dir: Path,
        hooks: Hooks | None = None,
        tuning: Tuning | None = None,
        **options: Any,
    ) -> None:
        hooks, tuning = split_options(hooks, tuning, options)
        self.plan, self.policy, self._tuning = plan, policy, tuning
        self.log_path = Path(log_dir) / f"{plan.engine_id}.log"
        self._clock, self._wall = hooks.clock, hooks.wall
        self._reaper = hooks.reaper or REAPER
        self._tag = agent_tag(state_dir)
        self._log = LogFile(
            self.log_path,
            tuning.log_max_bytes,
            tuning.log_backups,
            tuning.tail_lines,
            redact=hooks.log_redact,
        )
        self._launcher = Launcher(plan, self._log, self._reaper, self._tag, self._clock, self._wall)
        self._journal = Journal(plan.engine_id, self._clock, self._wall, tuning.events_max, hooks.on_event)
        self._records = StateWriter(plan, state_dir, self.log_path, self._journal, self._wall)
        self._wake = Wakeup()
        self._ready = ReadinessGate(
            hooks.is_ready, tuning.ready_poll_s, tuning.ready_timeout_s, self._wake.set
        )
        self._term = Terminator(
            policy, self._journal, self._records, self._log, self._reaper, self._wake, hooks, tuning.tick_s
        )
        self._run = Launch()  # the current launch (or adopted process); the last one after it is gone

        self._retries = Retries(policy, self._records.recorded_restarts())
        self._backoff_until: float | None = None

        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._reaper_held = False
        self._refused: str | None = None  # why the launch policy refused it (refuse())

    @property
    def actions(self) -> ActionAvailability:
        """Per action: None when the agent runs it (state permitting), else why it is refused."""
        return ActionAvailability(**{a: self.action_refusal(a) for a in ACTIONS})

    def action_refusal(self, action: str) -> str | None:
        """A refused engine may be stopped, never started."""
        return self._refused if action != "stop" else None

    # ================================================================ read-only surface
    @property
    def pid(self) -> int | None:
        """The leader's PID while a launch (or adopted process) is current."""
        return self._run.leader

    @property
    def pids(self) -> tuple[int, ...]:
        """Every live process of the engine's tree, as of the last refresh (``tree_refresh_s`` old)."""
        return tuple(sorted(self._run.tree.alive)) if self._run.tree is not None else ()

    @property
    def restarts(self) -> int:
        """Automatic relaunches, including those recorded by earlier agents this boot (the state file)."""
        return self._retries.restarts

    @property
    def restarts_inherited(self) -> int:
        """The part of ``restarts`` read from the state file at construction (earlier agents, same boot)."""
        return self._retries.inherited

    @property
    def state_path(self) -> Path:
        return self._records.path

    @property
    def state_error(self) -> str | None:
        """Why the last state-file write (or removal) failed, one line without paths; None once one succeeds."""
        return self._records.error

    @property
    def state_errors(self) -> int:
        """Failed state-file writes and removals so far."""
        return self._records.errors

    def set_event_sink(self, sink: EventSink | None) -> None:
        """Report automatic decisions as ``sink(action, engine_id, result)`` (see the module docstring)."""
        self._journal.sink = sink

    @property
    def start_attempts(self) -> int:
        """Launches in the current start-up series (reset by an operator start or by reaching ready)."""
        return self._retries.attempts

    @property
    def uptime_s(self) -> float | None:
        """Seconds since the current process was launched (monotonic); None when nothing runs."""
        if self.state in ALIVE_STATES and self._run.launched_at is not None:
            return max(0.0, self._clock() - self._run.launched_at)
        return None

    @property
    def loading_elapsed_s(self) -> float | None:
        if self.state == "starting" and self._run.launched_at is not None:
            return max(0.0, self._clock() - self._run.launched_at)
        return None

    @property
    def backoff_remaining_s(self) -> float | None:
        if self.state == "backoff" and self._backoff_until is not None:
            return max(0.0, self._backoff_until - self._clock())
        return None

    @property
    def adopted(self) -> bool:
        return self._run.adopted

    @property
    def marker(self) -> str | None:
        return self._run.marker

    @property
    def log_errors(self) -> int:
        return self._log.errors

    def log_tail(self, n: int = 100) -> list[str]:
        """The last ``n`` lines of engine output (reads any new output first)."""
        self._poll_log()
        return self._log.tail(n)

    def snapshot(self) -> dict[str, Any]:
        """The fields the collector copies into an EngineSnapshot (``SNAPSHOT_FIELDS``; ``pids`` as a list)."""
        return {name: getattr(self, name) for name in SNAPSHOT_FIELDS} | {"pids": list(self.pids)}

    # ================================================================ collector hooks
    def mark_ready(self, reason: str = "ready") -> bool:
        """starting -> ready (for a caller that decides readiness itself). False if not starting."""
        if self.state != "starting":
            return False
        self._become_ready(reason)
        return True

    def set_health(self, state: str, reason: str) -> bool:
        """ready <-> degraded <-> hung, decided by the collector; ignored in any other state."""
        if state not in HEALTH_STATES:
            raise ValueError(f"set_health state must be one of {sorted(HEALTH_STATES)}, got {state!r}")
        if self.state not in HEALTH_STATES or (state == self.state and reason == self.reason):
            return False
        self._journal.set(state, reason)
        return True

    def refuse(self, reason: str) -> None:
        """Mark a never-launched engine ``failed`` with ``reason`` (e.g. the launch policy refused it)."""
        if self.state in ALIVE_STATES:
            raise RuntimeError(f"cannot refuse engine {self.plan.engine_id}: it is {self.state}")
        self._refused = reason
        self._fail(reason)
        self._journal.emit("refuse", reason)

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
                self._run.close_watch()
                self._journal.note(
                    "agent detached; engine left running" if self._run.tree else "agent detached"
                )
            if self._reaper_held:
                self._reaper_held = False
                self._reaper.release()

    async def adopt_or_start(self) -> None:
        """After an agent (re)start: adopt the engine named by the state file, or start fresh (the rules
        are ``adopt.after_agent_restart``'s). A no-op while the engine is supervised."""
        async with self._lock:
            self._hold_reaper()
            if self._task is None or self._task.done():
                await self._take(after_agent_restart(self.state_path, self.plan, self._tag))

    # ================================================================ launching
    async def _start_locked(self) -> None:
        self._hold_reaper()
        if self._task is not None and not self._task.done():
            if self.state != "backoff":
                return
            await self._halt_life()  # an operator start during backoff means "start now"
        if self._run.running() and not await self._stop_tree(
            "stopping the previous process tree before start"
        ):
            return
        self._retries.fresh()
        check = check_port(self.plan.host, self.plan.port)
        if not check.free and (takeover := on_port(check, self.plan, self._tag)) is not None:
            await self._take(takeover)
            return
        if self._launch():
            self._task = asyncio.create_task(self._life(), name=f"supervise:{self.plan.engine_id}")

    async def _take(self, takeover: Takeover) -> None:
        """Carry out a decision of ``adopt.py``."""
        for note in takeover.notes:
            self._journal.note(note)
        if takeover.action == "refuse":
            self._fail(takeover.reason)
            self._journal.emit("refuse", takeover.reason)
        elif takeover.action == "adopt" and takeover.info is not None:
            rec = takeover.rec
            if takeover.own is not None:
                rec = record_of_own(takeover.own, self.plan, self.log_path, self.restarts, self._wall())
            assert rec is not None
            await self._adopt(rec, takeover.info, takeover.source)
        elif takeover.leftovers is not None and (why := await self._term.kill_leftovers(takeover.leftovers)):
            self._fail(why)
        else:
            if takeover.discard:
                self._records.remove()
            await self._start_locked()

    def _launch(self) -> bool:
        """Pre-flight the port and spawn; False (state failed) when the engine cannot be started."""
        check = check_port(self.plan.host, self.plan.port)
        if not check.free:
            self._fail(check.error or "port in use")
            return False
        attempt = self._retries.attempt()
        try:
            run = self._launcher.spawn(self._on_leader_exit)
        except OSError as exc:  # ENOENT / EACCES / ENOTDIR: a config error, never retried
            where = f" ({exc.filename})" if exc.filename else ""
            self._fail(f"cannot start {self.plan.argv[0]}: {exc.strerror or exc}{where}")
            return False
        self._run.close_watch()
        self._run = run
        self._ready.arm(run.progress_at or 0.0)  # the first check is due at once
        self._records.record(self._run, self.restarts)
        self._journal.set("starting", f"launched PID {run.leader} (attempt {attempt})")
        return True

    async def _adopt(self, rec: EngineRecord, info: ProcInfo, source: str = "the state file") -> None:
        self._run.close_watch()
        self._run = run = self._launcher.adopt(rec, info, self._on_adopted_exit)
        now = run.progress_at or 0.0  # the moment of adoption (launched_at is backdated by the age)
        self._ready.arm(now)
        self._retries.adopted(rec.restarts)
        self._records.record(run, self.restarts)  # records an unrecorded launch, refreshes a recorded one
        ready = await self._ready.once()
        how = f"adopted PID {rec.pid} from {source} (running {now - (run.launched_at or now):.0f}s)"
        if ready:
            run.ready_at = now
            self._journal.set("ready", how)
        else:
            self._journal.set("starting", f"{how}; not ready yet")
        self._journal.emit("adopt", how)
        self._task = asyncio.create_task(self._life(), name=f"supervise:{self.plan.engine_id}")

    # ================================================================ the supervision loop
    async def _life(self) -> None:
        """Watch the current process; on exit clean up, back off and relaunch (or give up)."""
        try:
            while True:
                kind = await self._watch()
                during_startup = self.state == "starting"
                ran = self._clock() - self._run.ready_at if self._run.ready_at is not None else None
                exit_reason = await self._term.after_exit(
                    self._run, stalled=kind == "startup_timeout", during_startup=during_startup
                )
                if exit_reason is None or not self.policy.restart_on_exit:
                    return
                retry = self._retries.after_failure(during_startup, ran)
                if retry.delay_s is None:
                    self._fail(exit_reason)
                    self._journal.emit("backoff", retry.gave_up(exit_reason))
                    return
                self._backoff_until = self._clock() + retry.delay_s
                self._journal.set("backoff", f"restart in {retry.delay_s:g}s after: {exit_reason}")
                self._journal.emit("backoff", retry.scheduled(exit_reason))
                await self._sleep_until(self._backoff_until)
                self._backoff_until = None
                self._retries.restarts += 1
                launched = self._launch()
                self._journal.emit(
                    "restart",
                    f"automatic: {exit_reason}; "
                    + (f"relaunched as PID {self.pid}" if launched else f"failed: {self.reason}"),
                )
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
                run = self._run
                if run.exit is None and (run.exit_watch is None or not run.exit_watch.active):
                    run.poll_exit(self._reaper)
                if run.exit is not None:
                    return "exit"
                now = self._clock()
                if run.tree is not None and now >= next_refresh:  # a /proc scan: not every tick
                    run.tree.refresh()
                    next_refresh = now + self._tuning.tree_refresh_s
                    if self._records.outdated(run):  # retitled itself, or the last write failed
                        self._records.record(run, self.restarts)  # keep it adoptable
                if self.state == "starting":
                    if self._ready.drive(now):
                        self._become_ready("ready: readiness check passed")
                    if self.state == "starting" and run.stalled(now, self.policy.startup_timeout_s):
                        return "startup_timeout"
                await self._wake.wait(self._tuning.tick_s)
        finally:
            self._ready.cancel()

    # ================================================================ stopping
    async def _stop_tree(self, why: str) -> bool:
        """Stop the current tree (if any) and end ``stopped``; False when it ended ``failed``."""
        self._backoff_until = None
        self._ready.cancel()
        return await self._term.stop(self._run, why)

    # ================================================================ readiness and exits
    def _become_ready(self, reason: str) -> None:
        self._run.ready_at = self._clock()
        self._retries.ready()
        self._journal.set("ready", reason)

    def _on_leader_exit(self, marker: str, status: ExitStatus) -> None:
        if marker == self._run.marker:
            self._run.exit = status
            self._wake.set()

    def _on_adopted_exit(self, marker: str) -> None:
        run = self._run
        if marker != run.marker or run.leader is None:
            return
        self._reaper.reap_now()
        run.exit = self._reaper.status_of(run.leader) or ExitStatus(None, None)
        self._wake.set()

    # ================================================================ plumbing
    async def _halt_life(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._ready.cancel()

    async def _sleep_until(self, deadline: float) -> None:
        while (left := deadline - self._clock()) > 0:
            self._poll_log()
            await self._wake.wait(min(self._tuning.tick_s, left))

    def _poll_log(self) -> None:
        if self._log.poll() > 0 and self.state == "starting":
            self._run.progress_at = self._clock()

    def _hold_reaper(self) -> None:
        if not self._reaper_held:
            self._reaper.acquire()
            self._reaper_held = True

    def _fail(self, reason: str) -> None:
        self._backoff_until = None
        self._journal.set("failed", reason)
