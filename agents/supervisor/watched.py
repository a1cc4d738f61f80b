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
                 ``startup_timeout_s`` ago (loading); or a start/restart command succeeded that long ago
                 at most
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

By concern: :mod:`agents.supervisor.watchedplan` (the plan and the checks' answers),
:mod:`agents.supervisor.watchedowner` (restarts and exits observed, and their state file),
:mod:`agents.supervisor.watchedactions` (the operator's commands); this module holds the state and the
observation loop that moves it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agents.schema import ACTIONS, SERVING_STATES, ActionAvailability, WatchInfo
from agents.supervisor.engine import SNAPSHOT_FIELDS
from agents.supervisor.journal import SUPERVISOR_LOGGER, Journal, JournalView
from agents.supervisor.options import EventSink
from agents.supervisor.plan import ProcessPlan
from agents.supervisor.portowner import OwnerLaunch, PortOwner, PortOwners, owner_launch
from agents.supervisor.proctree import boot_id, process_age_s
from agents.supervisor.reaper import REAPER, Reaper
from agents.supervisor.wakeup import Wakeup
from agents.supervisor.watchedactions import WatchedActions
from agents.supervisor.watchedowner import CONNECT_TIMEOUT_S as CONNECT_TIMEOUT_S
from agents.supervisor.watchedowner import OwnerTracking
from agents.supervisor.watchedplan import HealthAnswer, HealthCheck, Identity, IdentityCheck, WatchPlan

log = logging.getLogger(SUPERVISOR_LOGGER)

NOT_LAUNCHED = "(watched engine: not launched by this agent)"  # the argv the exposure audit is given
LOG_LINES = 1000


class WatchedEngine(WatchedActions, OwnerTracking, JournalView):
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

    def __init__(
        self,
        plan: WatchPlan,
        *,
        health: HealthCheck,
        identify: IdentityCheck | None = None,
        on_event: EventSink | None = None,
        redact: Callable[[str], str] | None = None,
        reaper: Reaper | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        tick_s: float = 0.5,
        identify_every_s: float = 60.0,
        events_max: int = 256,
        state_path: Path | None = None,
    ) -> None:
        """``state_path``: where its restart count and last owner are kept over agent restarts (None:
        nowhere)."""
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
        self._lines.append(
            f"llmconsole: engine {plan.engine_id} is watched, not launched by this agent: its output "
            "goes wherever it is started (journalctl -u <unit>, docker logs <container>, ...); "
            "this log shows only the agent's action commands"
        )
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
        launch = (
            self._launch
            if seen.pid is not None and self._launch is not None and self._launch.pid == seen.pid
            else None
        )
        if seen.pid is None:
            out.append(
                "command line, environment and version: not visible without the owner process; "
                "DANGEROUS_FLAG and ENGINE_ADVISORY are not checked"
            )
        elif launch is not None and launch.unseen:
            out.append(
                f"{launch.unseen}; DANGEROUS_FLAG checks what is visible only"
                + ("" if launch.argv else ", ENGINE_ADVISORY is not checked (no version)")
            )
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
        if seen.pid is not None and (
            self._launch is None or self._launch.pid != seen.pid or self._launch_key != seen.key
        ):
            self._launch, self._launch_key = await asyncio.to_thread(owner_launch, seen.pid), seen.key
        await self._record()
        if self._acting is not None:
            return  # the action's state holds until its command ends
        starting = (
            self._starting_since is not None
            and now - self._starting_since < self.watch_plan.startup_timeout_s
        )
        where = f"{self.watch_plan.host}:{self.watch_plan.port}"
        if not present:
            if starting:
                self._set("starting", f"waiting for it to listen on {where}")
            elif present is False:
                self._starting_since = None
                self._set("stopped", self._stopped_reason())
            else:
                self._set(
                    "unreachable",
                    f"no listener visible for {where} and a connection neither succeeds nor is refused",
                )
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
            self._set(
                "starting", f"listening on {self._seen.listener or where}, not answering yet: {answer.error}"
            )
        else:
            self._set(
                "unreachable",
                f"listening on {self._seen.listener or where} but no HTTP answer: {answer.error}",
            )

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
            log.warning(
                "engine %s: identity check failed: %s: %s", self.watch_plan.engine_id, type(exc).__name__, exc
            )
            got = None
        self._identify_at = now + (
            self._identify_every_s if got is not None else min(10.0, self._identify_every_s)
        )
        if got is None:
            return
        before = self._identity.error if self._identity is not None else None
        self._identity = got
        if got.error and got.error != before:
            self._journal.note(f"identity: {got.error}")
            if self.state == "ready":
                self._journal.set("degraded", got.error)

    def _hold_reaper(self) -> None:
        if not self._reaper_held:
            self._reaper.acquire()
            self._reaper_held = True
