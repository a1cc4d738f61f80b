"""WatchedEngine: an engine the agent did not start (``managed = false``), found and watched through its port.

It presents the surface of :class:`~agents.supervisor.engine.EngineSupervisor` that the watch, the
collector, the runtime and the API use (``state``, ``reason``, ``pid``, ``pids``, ``restarts``,
``uptime_s``, ``last_exit``, ``events``, ``snapshot()``, ``set_health()``, ``log_tail()``, ``start()`` /
``stop()`` / ``restart()``, ``adopt_or_start()``, ``shutdown()``), under other rules:

- **Never launched, never signalled.** Its processes are whatever owns the listening socket of
  ``host:port`` and that process's descendants (``portowner.py``); if the owner cannot be seen it is watched
  by HTTP alone and ``watch_info.unobserved`` says what is missing and why.
- **Actions** run the configured ``start_command`` / ``stop_command`` / ``restart_command`` (``actions.py``:
  policy, bounded by ``stop_timeout_s``, outcome with exit status and output tail, audited); an action
  without its command is refused with the key to set (``action_refusal``, also in the snapshot's ``actions``).

States (observed every ``tick_s``; never ``backoff``, ``failed`` or ``exited``, which belong to supervision):

    stopped      nothing listens on host:port (and a connection to it is refused)
    starting     it listens but does not answer yet, and its owner process started less than
                 ``startup_timeout_s`` ago (loading); or a start/restart command succeeded that long ago at most
    unreachable  it listens (or the port accepts connections) but its health check gets no HTTP answer, and it
                 is not starting; also when no listener is visible and a connection neither succeeds nor fails
    ready / degraded / hung   it answers: the watch moves it between these as for a managed engine; degraded
                 at once when its health check answers with another status, or when its /metrics names show
                 another kind of engine (or none: not an engine) — ``watch_info.kind_error``
    stopping     while a stop or restart command runs (starting while a start command runs)

**Restarts observed**: a new owner process (another PID or start time) serving the port after an earlier one
counts in ``restarts`` — whether it replaced the old one at once or after a gap — so CRASH_LOOP works for
engines restarted by systemd or Docker. Without a visible owner, a return after the port was closed counts.
The count and the last owner survive an agent restart on the same boot (``watchedstate.py``: a state file of
its own beside the launch records), so an engine restarted while the agent was down counts too.
The new process that a start/restart command brings is the operator's, not counted. A disappearance records
``last_exit`` (status unknown: not the agent's child). Both go to the event sink (``exit-observed``,
``restart-observed``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shlex
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.schema import ACTIONS, SERVING_STATES, ActionAvailability, WatchInfo, rfc3339
from agents.supervisor import watchedstate
from agents.supervisor.actions import OUTCOME_REPORTER, action_refusal, run_command
from agents.supervisor.engine import SNAPSHOT_FIELDS
from agents.supervisor.journal import SUPERVISOR_LOGGER, Journal, JournalView
from agents.supervisor.options import EventSink
from agents.supervisor.plan import ProcessPlan
from agents.supervisor.portowner import OwnerLaunch, PortOwner, PortOwners, owner_launch
from agents.supervisor.proctree import boot_id, process_age_s
from agents.supervisor.reaper import REAPER, ExitStatus, Reaper
from agents.supervisor.wakeup import Wakeup

log = logging.getLogger(SUPERVISOR_LOGGER)

NOT_LAUNCHED = "(watched engine: not launched by this agent)"  # the argv the exposure audit is given
CONNECT_TIMEOUT_S = 1.0
LOG_LINES = 1000


@dataclass(frozen=True, slots=True)
class HealthAnswer:
    """One health check of a watched engine. ``status`` None: no HTTP answer at all (``error`` says why)."""

    status: int | None
    error: str | None


@dataclass(frozen=True, slots=True)
class Identity:
    """What a watched engine's ``/metrics`` says it is. ``kind`` None: no known engine's metric names;
    ``error``: what serves the port is not an engine of the configured kind (None when it is)."""

    kind: str | None
    error: str | None


@dataclass(frozen=True, slots=True)
class WatchPlan:
    """What to watch and what its actions run: plain data, built by the runtime from the config.

    ``commands``: action → argv (resolved, allowed by the policy); ``refusals``: action → why it is not
    available (no command configured, or the policy refuses it). ``env``: the commands' environment."""

    engine_id: str
    host: str
    port: int
    commands: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    refusals: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    stop_timeout_s: float = 30.0
    startup_timeout_s: float = 1800.0
    allowed_commands: tuple[Path, ...] | None = None  # [agent] allowed_action_commands, re-checked at each run


HealthCheck = Callable[[], Awaitable[HealthAnswer]]
IdentityCheck = Callable[[], Awaitable["Identity | None"]]


class WatchedEngine(JournalView):
    """Watches one engine it never launches or signals (see the module docstring). Every method must be
    called from the agent's event loop; the blocking /proc reads run in a worker thread."""

    managed = False
    marker: str | None = None  # no launch marker: nothing of it was launched by the agent
    state_error: str | None = None  # nothing of it is recorded in the state directory
    state_errors = 0
    adopted = False
    start_attempts = 0
    restarts_inherited = 0
    backoff_remaining_s: float | None = None

    def __init__(self, plan: WatchPlan, *, health: HealthCheck, identify: IdentityCheck | None = None,
                 on_event: EventSink | None = None, redact: Callable[[str], str] | None = None,
                 reaper: Reaper | None = None, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, tick_s: float = 0.5, identify_every_s: float = 60.0,
                 events_max: int = 256, state_path: Path | None = None) -> None:
        """``state_path``: where its restart count and last owner are kept over agent restarts (None: nowhere)."""
        self.watch_plan = plan
        # nothing was launched: no argv or env of the agent's; the exposure audit reads the port owner's own
        # (agents/exposure_watch.py), and ``watch_info.unobserved`` says when it cannot
        self.plan = ProcessPlan(plan.engine_id, (NOT_LAUNCHED,), {}, plan.host, plan.port)
        self._health_hook, self._identify, self._redact = health, identify, redact
        self._reaper = reaper or REAPER
        self._clock, self._tick_s, self._identify_every_s = clock, tick_s, identify_every_s
        self._journal = Journal(plan.engine_id, clock, wall, events_max, on_event)
        self._owners = PortOwners(plan.host, plan.port)
        self._seen = PortOwner()
        self._present: bool | None = None  # None: not observed yet (or cannot be told)
        self._last_key: tuple[int, int] | None = None  # the last owner's (pid, start time), kept over gaps
        self._seen_before = False
        self._since: float | None = None  # monotonic time the current instance was first seen
        self._restarts = 0
        self._operator_pending = False  # a start/restart command ran: the next new owner is the operator's
        self._acting: str | None = None  # the action whose command runs now
        self._command_since: float | None = None
        self._starting_since: float | None = None  # a start/restart command succeeded at this time
        self._identity: Identity | None = None
        self._identify_at = 0.0
        self._lines: deque[str] = deque(maxlen=LOG_LINES)
        self._lines.append(f"llmconsole: engine {plan.engine_id} is watched, not launched by this agent: its output "
                           "goes wherever it is started (journalctl -u <unit>, docker logs <container>, ...); "
                           "this log shows only the agent's action commands")
        self._lock = asyncio.Lock()
        self._wake = Wakeup()
        self._task: asyncio.Task[None] | None = None
        self._reaper_held = False
        self._last_error: str | None = None
        self._launch: OwnerLaunch | None = None  # the owner's argv/env visibility, read once per owner
        self._launch_key: tuple[int, int] | None = None
        self._state_path = state_path
        self._boot = boot_id()
        self._wall = wall
        self._recorded: tuple[int, tuple[int, int] | None] | None = None  # (restarts, owner) last written
        if state_path is not None:
            self._load(state_path)

    # ================================================================ read-only surface
    @property
    def pid(self) -> int | None:
        """The owner of the listening socket, while one is seen."""
        return self._seen.pid if self._present else None

    @property
    def pids(self) -> tuple[int, ...]:
        """The owner and its descendants, as of the last observation (empty when not seen)."""
        return self._seen.pids if self._present else ()

    @property
    def restarts(self) -> int:
        """Restarts observed (a new owner process after an earlier one), not counting operator actions."""
        return self._restarts

    @property
    def uptime_s(self) -> float | None:
        """Age of the owner process (monotonic since first seen when the owner is not visible)."""
        if not self._present:
            return None
        if self._seen.starttime is not None:
            return process_age_s(self._seen.starttime)
        return None if self._since is None else max(0.0, self._clock() - self._since)

    @property
    def loading_elapsed_s(self) -> float | None:
        if self.state != "starting":
            return None
        since = self._command_since if self._acting else self._starting_since
        if since is not None:
            return max(0.0, self._clock() - since)
        return self.uptime_s


    def set_event_sink(self, sink: EventSink | None) -> None:
        self._journal.sink = sink

    @property
    def actions(self) -> ActionAvailability:
        """Per action: None when its command is configured and allowed, else why it is refused."""
        refusals = self.watch_plan.refusals
        return ActionAvailability(**{a: refusals.get(a) for a in ACTIONS})

    def action_refusal(self, action: str) -> str | None:
        return self.watch_plan.refusals.get(action)

    @property
    def watch_info(self) -> WatchInfo:
        seen = self._seen if self._present else PortOwner()
        identity = self._identity
        return WatchInfo(
            listener=seen.listener,
            owner=seen.name if seen.pid is not None else None,
            kind_seen=identity.kind if identity is not None else None,
            kind_error=identity.error if identity is not None else None,
            unobserved=self._unobserved(seen),
        )

    def _unobserved(self, seen: PortOwner) -> tuple[str, ...]:
        out = []
        if self._present and seen.pid is None:
            why = seen.unseen or (
                f"no listening socket for port {self.watch_plan.port} in this agent's network namespace "
                "(NAT, a container's network or another host)"
            )
            out.append(f"processes: {why}; pid, RSS, uptime and GPU attribution are unavailable")
        launch = self._launch if seen.pid is not None and self._launch is not None and self._launch.pid == seen.pid else None
        if seen.pid is None:
            out.append("command line, environment and version: not visible without the owner process; "
                       "DANGEROUS_FLAG and ENGINE_ADVISORY are not checked")
        elif launch is not None and launch.unseen:
            out.append(f"{launch.unseen}; DANGEROUS_FLAG checks what is visible only"
                       + ("" if launch.argv else ", ENGINE_ADVISORY is not checked (no version)"))
        out.append("log: a watched engine's output is not captured by the agent")
        return tuple(out)

    def log_tail(self, n: int = 100) -> list[str]:
        """The agent's notes and its action commands' output (the engine's own log is not captured)."""
        return list(self._lines)[-n:] if n > 0 else []

    def snapshot(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in SNAPSHOT_FIELDS} | {"pids": list(self.pids)}

    # ================================================================ the watch's hooks
    def set_health(self, state: str, reason: str) -> bool:
        """ready <-> degraded <-> hung, decided by the watch; a kind mismatch keeps it degraded."""
        if state not in SERVING_STATES:
            raise ValueError(f"set_health state must be one of {sorted(SERVING_STATES)}, got {state!r}")
        if self.state not in SERVING_STATES:
            return False
        if state == "ready" and self._identity is not None and self._identity.error:
            state, reason = "degraded", self._identity.error
        if state == self.state and reason == self.reason:
            return False
        self._journal.set(state, reason)
        return True

    def mark_ready(self, reason: str = "ready") -> bool:  # EngineSupervisor's; a watched engine is observed
        return False

    # ================================================================ lifecycle
    async def adopt_or_start(self) -> None:
        """Start watching (the runtime calls this at agent start). Never launches anything."""
        self._hold_reaper()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._life(), name=f"watch:{self.watch_plan.engine_id}")

    async def shutdown(self, stop_engines: bool = False) -> None:
        """Stop watching; a watched engine is never stopped by the agent, whatever ``stop_engines`` says."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._journal.note("agent detached; a watched engine is left as it is")
        if self._reaper_held:
            self._reaper_held = False
            self._reaper.release()

    # ================================================================ operator actions
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
        why = self.action_refusal(action) or (None if argv is None else action_refusal(argv, plan.allowed_commands, key))
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
                result = await run_command(argv, plan.env, key=key, timeout_s=plan.stop_timeout_s,
                                           reaper=self._reaper, protect=lambda: self.pids, redact=self._redact)
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
        """The outcome goes to whoever asked (the API audits it under the operator's name), else to the sink."""
        if reporter is not None:
            try:
                await asyncio.to_thread(reporter, outcome)
                return
            except Exception as exc:  # the audit trail failing must not lose the outcome
                log.error("engine %s: reporting %s failed: %s: %s", self.watch_plan.engine_id, action,
                          type(exc).__name__, exc)
        self._journal.emit(action, outcome)

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
        self._journal.note(f"{rec.restarts} restart(s) observed before the agent restarted (state file of this boot)")

    async def _record(self) -> None:
        """Write the state file when the count or the owner changed; a failure is ``state_error`` (an
        ``errors`` entry of the snapshot), retried at the next observation."""
        now = (self._restarts, self._last_key)
        if self._state_path is None or now == self._recorded:
            return
        rec = watchedstate.WatchedRecord(self.watch_plan.engine_id, self._boot, now[0],
                                         now[1][0] if now[1] else None, now[1][1] if now[1] else None,
                                         rfc3339(self._wall()))  # fmt: skip
        try:
            await asyncio.to_thread(watchedstate.write, self._state_path, rec)
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
            if self.state_error is None:
                log.error("engine %s: writing %s failed: %s", self.watch_plan.engine_id, self._state_path, why)
            self.state_errors += 1
            self.state_error = f"{why}; the restart count of this watched engine is not recorded"
            return
        self._recorded, self.state_error = now, None

    # ================================================================ observing
    async def _life(self) -> None:
        while True:
            try:
                await self.observe_once()
                self._last_error = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # one bad observation never ends the watch; logged once per cause
                why = f"{type(exc).__name__}: {exc}"
                if why != self._last_error:
                    log.exception("engine %s: observation failed", self.watch_plan.engine_id)
                    self._last_error = why
            await self._wake.wait(self._tick_s)

    async def observe_once(self) -> None:
        """One observation: who serves the port, restarts and exits, and the state when it is not serving."""
        now = self._clock()
        seen = await asyncio.to_thread(self._owners.find)
        present: bool | None = True if seen.listener is not None else await self._connectable()
        self._track(seen, present, now)
        if seen.pid is not None and (self._launch is None or self._launch.pid != seen.pid or self._launch_key != seen.key):
            self._launch, self._launch_key = await asyncio.to_thread(owner_launch, seen.pid), seen.key
        await self._record()
        if self._acting is not None:
            return  # the action's state holds until its command ends
        starting = self._starting_since is not None and now - self._starting_since < self.watch_plan.startup_timeout_s
        where = f"{self.watch_plan.host}:{self.watch_plan.port}"
        if not present:
            if starting:
                self._set("starting", f"waiting for it to listen on {where}")
            elif present is False:
                self._starting_since = None
                self._set("stopped", self._stopped_reason())
            else:
                self._set("unreachable", f"no listener visible for {where} and a connection neither succeeds nor is refused")
            return
        if self.state in SERVING_STATES:
            await self._check_identity(now)
            return
        answer = await self._health()
        if answer.status == 200:
            self._starting_since = None
            await self._check_identity(now, force=True)
            error = self._identity.error if self._identity is not None else None
            if error:
                self._set("degraded", error)
            else:
                self._set("ready", f"health check passed on {where}")
        elif answer.status is not None:
            self._starting_since = None
            self._set("degraded", f"health check failed: HTTP {answer.status}")
        elif starting or self._young():
            self._set("starting", f"listening on {self._seen.listener or where}, not answering yet: {answer.error}")
        else:
            self._set("unreachable", f"listening on {self._seen.listener or where} but no HTTP answer: {answer.error}")

    def _set(self, state: str, reason: str) -> None:
        """A transition when the state changes; while it stays, only the reason is refreshed (no event)."""
        if state != self.state:
            self._journal.set(state, reason)
        else:
            self._journal.reason = reason

    def _stopped_reason(self) -> str:
        where = f"{self.watch_plan.host}:{self.watch_plan.port}"
        return f"nothing listens on {where}" + ("" if self._seen_before else " (not started yet)")

    def _young(self) -> bool:
        age = self.uptime_s if self._seen.starttime is not None else None
        return age is not None and age < self.watch_plan.startup_timeout_s

    async def _health(self) -> HealthAnswer:
        try:
            return await self._health_hook()
        except Exception as exc:  # a probe bug is an unanswered check, not a dead watch
            return HealthAnswer(None, f"{type(exc).__name__}: {exc}")

    async def _check_identity(self, now: float, *, force: bool = False) -> None:
        if self._identify is None or (not force and now < self._identify_at):
            return
        try:
            got = await self._identify()
        except Exception as exc:
            log.warning("engine %s: identity check failed: %s: %s", self.watch_plan.engine_id, type(exc).__name__, exc)
            got = None
        self._identify_at = now + (self._identify_every_s if got is not None else min(10.0, self._identify_every_s))
        if got is None:
            return
        before = self._identity.error if self._identity is not None else None
        self._identity = got
        if got.error and got.error != before:
            self._journal.note(f"identity: {got.error}")
            if self.state == "ready":
                self._journal.set("degraded", got.error)

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
        reason = f"exit observed: nothing listens on {where} any more{was}; status unknown (not the agent's child)"
        self._journal.note(reason)
        self._journal.emit("exit-observed", reason)

    def _hold_reaper(self) -> None:
        if not self._reaper_held:
            self._reaper.acquire()
            self._reaper_held = True
