"""The one place in the agent that calls ``waitpid``.

The agent is a child subreaper (``PR_SET_CHILD_SUBREAPER``), so engine workers orphaned by a killed
parent are reparented to it and must be reaped here, or they stay zombies. The reaper runs on SIGCHLD
(when the loop runs in the main thread), on a periodic timer, when a leader's pidfd becomes readable,
and whenever a supervisor asks (``reap_now``).

What it reaps:
- *leaders* registered by supervisors: their exit status is recorded and handed to a callback;
- zombie children in a session other than the agent's own: orphaned engine descendants (engines run
  in their own sessions; ``setsid`` escapees too). They are reaped silently and counted.
Children the agent spawns for itself in its own session (subprocess.run and friends) are left to
whoever spawned them. Code that spawns its own children with ``start_new_session=True`` must call
``leave_alone(pid)`` so their status is not taken.

Popen objects of leaders are held here until reaped and then get their ``returncode`` set, so
``subprocess`` never waits on them itself (its ``_cleanup`` would otherwise steal the status).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from agents.supervisor.proctree import is_child_subreaper, read_stat, set_child_subreaper

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ExitStatus:
    """How a process ended. Both None: unknown (the process was not our child)."""

    code: int | None
    signal: int | None

    @classmethod
    def from_wait(cls, status: int) -> ExitStatus:
        if os.WIFSIGNALED(status):
            return cls(None, os.WTERMSIG(status))
        if os.WIFEXITED(status):
            return cls(os.WEXITSTATUS(status), None)
        return cls(None, None)

    def describe(self) -> str:
        if self.signal is not None:
            try:
                name = signal.Signals(self.signal).name
            except ValueError:
                name = f"signal {self.signal}"
            return f"killed by {name}"
        if self.code is not None:
            return f"exited {self.code}"
        return "exited (status unknown: not the agent's child)"


class Reaper:
    """Process-wide reaper; supervisors share the module-level ``REAPER``."""

    def __init__(self, interval_s: float = 1.0, remember: int = 256) -> None:
        self.interval_s = interval_s
        self._leaders: dict[int, tuple[subprocess.Popen[bytes], Callable[[ExitStatus], None]]] = {}
        self._exits: OrderedDict[int, ExitStatus] = OrderedDict()
        self._remember = remember
        self._left_alone: set[int] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._users = 0
        self._timer: asyncio.TimerHandle | None = None
        self._sigchld = False
        self._was_subreaper: bool | None = None
        self.subreaper = False
        self.orphans_reaped = 0

    # --- attachment to the event loop -----------------------------------------------------------
    def acquire(self) -> None:
        """Called by each supervisor from inside the running loop; the first one installs the reaper."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop or loop.is_closed():
            self._detach()
            self._loop, self._users = loop, 0
            if not self.subreaper:
                self._was_subreaper = is_child_subreaper()
                self.subreaper = set_child_subreaper(True)
            try:
                loop.add_signal_handler(signal.SIGCHLD, self.reap_now)
                self._sigchld = True
            except (RuntimeError, ValueError, NotImplementedError):
                self._sigchld = False  # not the main thread: pidfds and the timer still cover exits
            self._schedule()
        self._users += 1

    def release(self) -> None:
        """The last supervisor to release detaches the reaper and restores the subreaper flag.

        (In the agent that happens at exit; in a test process it keeps later tests' orphans going
        to init as usual instead of piling up here as zombies.)"""
        if self._users > 0:
            self._users -= 1
        if self._users == 0:
            self.reap_now()
            self._detach()
            if self.subreaper and self._was_subreaper is False:
                set_child_subreaper(False)
                self.subreaper = False

    def _detach(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._sigchld and self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(Exception):
                self._loop.remove_signal_handler(signal.SIGCHLD)
        self._sigchld = False
        self._loop = None

    def _schedule(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._timer = self._loop.call_later(self.interval_s, self._periodic)

    def _periodic(self) -> None:
        self.reap_now()
        self._schedule()

    # --- registration -----------------------------------------------------------------------------
    def add_leader(self, popen: subprocess.Popen[bytes], on_exit: Callable[[ExitStatus], None]) -> None:
        """Watch a child we spawned; ``on_exit`` runs once, in the loop thread, with its status."""
        self._leaders[popen.pid] = (popen, on_exit)

    def status_of(self, pid: int) -> ExitStatus | None:
        """The recorded exit status of a (recent) leader, if this process reaped it."""
        return self._exits.get(pid)

    def leave_alone(self, pid: int) -> None:
        """Never reap this pid (a child some other code spawned in its own session and waits for)."""
        self._left_alone.add(pid)

    # --- reaping ----------------------------------------------------------------------------------
    def reap_now(self) -> int:
        """Reap every exited leader and orphan now; returns how many were reaped. Never raises."""
        reaped = 0
        for pid in list(self._leaders):
            try:
                wpid, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # someone else reaped it: the status is lost
                wpid, status = pid, -1
            except OSError:
                continue
            if wpid == 0:
                continue
            popen, on_exit = self._leaders.pop(pid)
            result = ExitStatus.from_wait(status) if status >= 0 else ExitStatus(None, None)
            popen.returncode = os.waitstatus_to_exitcode(status) if status >= 0 else -1
            self._record(pid, result)
            reaped += 1
            try:
                on_exit(result)
            except Exception:  # a broken callback must not stop reaping
                log.exception("exit callback for PID %d failed", pid)
        own_session = os.getsid(0)
        for pid in _child_pids():
            if pid in self._leaders or pid in self._left_alone:
                continue
            info = read_stat(pid)
            if info is None or not info.dead or info.session == own_session:
                continue
            try:
                wpid, _ = os.waitpid(pid, os.WNOHANG)
            except OSError:
                continue
            if wpid:
                self.orphans_reaped += 1
                reaped += 1
        self._left_alone = {p for p in self._left_alone if read_stat(p) is not None}
        return reaped

    def _record(self, pid: int, status: ExitStatus) -> None:
        self._exits[pid] = status
        self._exits.move_to_end(pid)
        while len(self._exits) > self._remember:
            self._exits.popitem(last=False)


def _child_pids() -> set[int]:
    """Direct children of this process (all threads); falls back to a /proc scan."""
    me = os.getpid()
    pids: set[int] = set()
    try:
        tids = os.listdir(f"/proc/{me}/task")
        for tid in tids:
            with open(f"/proc/{me}/task/{tid}/children") as fh:
                pids.update(int(x) for x in fh.read().split())
        return pids
    except (OSError, ValueError):
        pass
    with contextlib.suppress(OSError):
        for name in os.listdir("/proc"):
            if name.isdigit():
                info = read_stat(int(name))
                if info is not None and info.ppid == me:
                    pids.add(info.pid)
    return pids


class ExitWatch:
    """Calls back once when a process exits, child or not, via a pidfd in the event loop.

    Works for adopted engines (not our children; their exit status is unknown). Returns ``active``
    False when pidfds are unavailable; the supervisor then polls the process each tick.
    """

    def __init__(self, pid: int, callback: Callable[[], object]) -> None:
        self._loop = asyncio.get_running_loop()
        self._fd: int | None = None
        self._callback = callback
        try:
            self._fd = os.pidfd_open(pid)
            self._loop.add_reader(self._fd, self._fire)
        except (OSError, AttributeError, NotImplementedError, ValueError):
            self.close()

    @property
    def active(self) -> bool:
        return self._fd is not None

    def _fire(self) -> None:
        self.close()
        self._callback()

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._fd)
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


REAPER = Reaper()
