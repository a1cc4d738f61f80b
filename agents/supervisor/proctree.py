"""Finding and killing an engine's whole process tree, without cgroups.

An engine runs in its own session and process group (``start_new_session=True``) and every process
it starts inherits ``LLMCONSOLE_ENGINE_ID=<engine_id>:<agent tag>:<launch uuid>`` (the *marker*, see
``ownership.py``). A tree member is any live process that is the leader, is in the leader's group or
session, carries the marker, or descends from a member. Workers that called ``setsid`` or were
reparented after their parent was SIGKILLed are found by the marker; the agent is a child subreaper
(while a supervisor holds the reaper), so orphans stay its descendants.

Identity is (pid, starttime) where starttime is field 22 of ``/proc/<pid>/stat``: a PID that was
reused by an unrelated process never matches, and signals go through a pidfd opened *before* the
starttime is re-checked, so a signal can never hit a recycled PID.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import signal
import time
from dataclasses import dataclass

from agents.supervisor.plan import MARKER_VAR

PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_SCAN_MAX_AGE_S = 0.25  # one /proc scan is shared by every supervisor asking within this window
_MARKER_CACHE_MIN_AGE_S = 2.0  # a younger process may still be between fork and exec: re-read it


@dataclass(frozen=True, slots=True)
class ProcInfo:
    """The fields of ``/proc/<pid>/stat`` the supervisor needs."""

    pid: int
    ppid: int
    pgrp: int
    session: int
    state: str  # R S D Z T t X I ...
    starttime: int  # clock ticks after boot

    @property
    def dead(self) -> bool:
        """Exited (zombie or dead): holds no resources except its PID until reaped."""
        return self.state in ("Z", "X", "x")


def read_stat(pid: int) -> ProcInfo | None:
    """Parse ``/proc/<pid>/stat``; None when the process does not exist (or cannot be read)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    # comm (field 2) may contain spaces and parentheses: split after the last ')'.
    end = raw.rfind(b")")
    fields = raw[end + 2 :].split()
    try:
        return ProcInfo(
            pid=pid,
            ppid=int(fields[1]),
            pgrp=int(fields[2]),
            session=int(fields[3]),
            state=fields[0].decode("ascii", "replace"),
            starttime=int(fields[19]),
        )
    except (IndexError, ValueError):
        return None


def process_age_s(starttime: int) -> float:
    """Seconds since a process with this starttime was created (CLOCK_BOOTTIME, immune to wall jumps)."""
    return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - starttime / _CLK_TCK)


def read_marker(pid: int) -> str | None:
    """The value of LLMCONSOLE_ENGINE_ID in the process's initial environment, or None."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            env = fh.read()
    except OSError:
        return None
    key = MARKER_VAR.encode() + b"="
    for item in env.split(b"\0"):
        if item.startswith(key):
            return item[len(key) :].decode("utf-8", "replace")
    return None


def cmdline_hash(pid: int) -> str | None:
    """sha256 of ``/proc/<pid>/cmdline`` (NUL-separated argv); None when unreadable or empty."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    return hashlib.sha256(raw).hexdigest() if raw else None


def cmdline_text(pid: int, limit: int = 200) -> str:
    """The command line for display ("?" when unreadable), cut to ``limit`` characters."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            raw = fh.read()
    except OSError:
        return "?"
    text = raw.rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "replace") or "?"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def boot_id() -> str | None:
    """This boot's random id; a state file from another boot names processes that no longer exist."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            return fh.read().strip() or None
    except OSError:
        return None


def set_child_subreaper(on: bool = True) -> bool:
    """Make this process a child subreaper (prctl PR_SET_CHILD_SUBREAPER) or stop being one.

    Orphaned descendants are then reparented to this process instead of init, so they stay findable
    and must be reaped here (see reaper.py). False if the call is unsupported.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1 if on else 0, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def is_child_subreaper() -> bool | None:
    """Whether this process is a child subreaper (PR_GET_CHILD_SUBREAPER); None if unknown."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        value = ctypes.c_int(0)
        if libc.prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(value), 0, 0, 0) != 0:
            return None
        return bool(value.value)
    except (OSError, AttributeError):
        return None


class _Scanner:
    """One shared, briefly cached view of ``/proc``, plus a marker cache keyed by (pid, starttime)."""

    def __init__(self) -> None:
        self._at = -1.0
        self._procs: dict[int, ProcInfo] = {}
        self._markers: dict[tuple[int, int], str | None] = {}

    def procs(self, max_age_s: float = _SCAN_MAX_AGE_S) -> dict[int, ProcInfo]:
        now = time.monotonic()
        if now - self._at > max_age_s:
            procs: dict[int, ProcInfo] = {}
            with contextlib.suppress(OSError):
                for name in os.listdir("/proc"):
                    if name.isdigit():
                        info = read_stat(int(name))
                        if info is not None:
                            procs[info.pid] = info
            self._procs, self._at = procs, now
            live = {(p.pid, p.starttime) for p in procs.values()}
            self._markers = {k: v for k, v in self._markers.items() if k in live}
        return self._procs

    def marker(self, info: ProcInfo) -> str | None:
        key = (info.pid, info.starttime)
        if key in self._markers:
            return self._markers[key]
        value = read_marker(info.pid)
        if process_age_s(info.starttime) >= _MARKER_CACHE_MIN_AGE_S:
            self._markers[key] = value
        return value


SCANNER = _Scanner()


def marker_pids(marker: str, *, fresh: bool = True) -> set[int]:
    """Every live process whose environment carries exactly this marker."""
    procs = SCANNER.procs(0.0 if fresh else _SCAN_MAX_AGE_S)
    return {p.pid for p in procs.values() if not p.dead and SCANNER.marker(p) == marker}


def signal_identified(pid: int, starttime: int, sig: int) -> bool:
    """Send ``sig`` to pid only if it is still the process created at ``starttime``.

    The pidfd is opened first, so the identity check and the signal refer to the same process even
    if the PID is recycled in between. Returns True when the signal was delivered.
    """
    if pid <= 1 or pid == os.getpid():
        return False
    try:
        fd = os.pidfd_open(pid)
    except (ProcessLookupError, OSError):
        return False
    try:
        info = read_stat(pid)
        if info is None or info.starttime != starttime:
            return False
        signal.pidfd_send_signal(fd, sig)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


class ProcessTree:
    """One launch's processes: the leader, its group and session, marked and descendant processes.

    ``members`` remembers every (pid -> starttime) ever seen in this launch, so "nothing of the tree
    is left" can be checked against the full recorded set, not only against what is still findable.
    """

    def __init__(
        self,
        marker: str,
        leader_pid: int,
        leader_starttime: int,
        pgid: int | None = None,
        sid: int | None = None,
    ) -> None:
        if not marker:
            raise ValueError("a process tree needs a non-empty marker")
        self.marker = marker
        self.leader_pid = leader_pid
        self.leader_starttime = leader_starttime
        # Group/session matching is only used for the group the leader created (pgid == leader pid).
        self.pgid = pgid if pgid == leader_pid else None
        self.sid = sid if sid == leader_pid else None
        self.members: dict[int, int] = {leader_pid: leader_starttime}
        self._alive: set[int] = {leader_pid}

    # --- finding ----------------------------------------------------------------------------------
    def _anchor_genuine(self, procs: dict[int, ProcInfo]) -> bool:
        """True while the leader's PID still names our group/session and not a recycled one.

        A group/session id cannot be reused while any process is in it; it can once it is empty and
        the leader is gone. If a process with the leader's PID exists it must be our leader.
        """
        leader = procs.get(self.leader_pid)
        return leader is None or leader.starttime == self.leader_starttime

    def refresh(self, *, fresh: bool = False) -> set[int]:
        """Rescan and return the live (non-zombie) members; newly found ones are remembered."""
        procs = SCANNER.procs(0.0 if fresh else _SCAN_MAX_AGE_S)
        me = os.getpid()
        anchored = self._anchor_genuine(procs)
        found: set[int] = set()
        for p in procs.values():
            if p.pid == me or p.pid <= 1:
                continue
            if (
                self.members.get(p.pid) == p.starttime
                or (anchored and self.pgid is not None and p.pgrp == self.pgid)
                or (anchored and self.sid is not None and p.session == self.sid)
                or SCANNER.marker(p) == self.marker
            ):
                found.add(p.pid)
        # Descendants of members (e.g. children of a worker that called setsid and cleared its env).
        children: dict[int, list[int]] = {}
        for p in procs.values():
            children.setdefault(p.ppid, []).append(p.pid)
        stack = list(found)
        while stack:
            for child in children.get(stack.pop(), ()):
                if child not in found and child != me:
                    found.add(child)
                    stack.append(child)
        for pid in found:
            self.members.setdefault(pid, procs[pid].starttime)
        self._alive = {
            pid for pid in found if not procs[pid].dead and self.members[pid] == procs[pid].starttime
        }
        return set(self._alive)

    @property
    def alive(self) -> set[int]:
        """Live members as of the last refresh."""
        return set(self._alive)

    def survivors(self) -> set[int]:
        """Members still alive now: recorded (pid, starttime) pairs re-read one by one plus a fresh
        marker/group scan. Zombies count as gone (they hold no memory; the reaper collects them)."""
        left = set()
        for pid, start in self.members.items():
            info = read_stat(pid)
            if info is not None and info.starttime == start and not info.dead:
                left.add(pid)
        return left | self.refresh(fresh=True)

    # --- killing ----------------------------------------------------------------------------------
    def signal(self, sig: int) -> int:
        """Send ``sig`` to the process group and to every identified member; returns deliveries."""
        sent = 0
        procs = SCANNER.procs(0.0)
        if (
            self.pgid is not None
            and self._anchor_genuine(procs)
            and any(p.pgrp == self.pgid and not p.dead for p in procs.values())
        ):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pgid, sig)
                sent += 1
        for pid in self.refresh(fresh=True):
            if signal_identified(pid, self.members[pid], sig):
                sent += 1
        return sent
