"""Host readings: CPU and memory, process-tree RSS, listening sockets, process names.

On Linux the per-engine reads (RSS, listening sockets) go to /proc directly: they run for every engine
process, and psutil's general path costs several /proc reads more each (its ``net_connections`` parses
every TCP and UDP table once per process). Elsewhere, and for host-wide figures, psutil.

Processes come and go mid-read: a PID that vanished or cannot be inspected is skipped, never raised.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

import psutil

from agents.sockdiag import TCP_LISTEN, socket_inodes, tcp_sockets

_SKIP = (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess)
_BRIEF_MAX = 200


@dataclass(frozen=True, slots=True)
class HostReading:
    """Host-wide CPU and memory. ``cpu_pct`` is None on the first reading (no interval yet).

    ``mem_used_bytes`` is total minus available: memory the kernel cannot hand out without
    swapping or reclaiming it from processes.
    """

    cpu_pct: float | None
    mem_used_bytes: int | None
    mem_total_bytes: int | None


class Listener(NamedTuple):
    """One listening TCP socket of a process."""

    pid: int
    ip: str
    port: int


class CpuMeter:
    """Host CPU % since the previous call (``psutil.cpu_percent(interval=None)``), primed once."""

    def __init__(self) -> None:
        self._primed = False
        self._lock = threading.Lock()

    def read(self) -> float | None:
        """CPU % over the time since the last read; None on the very first (priming) call."""
        with self._lock:
            value = psutil.cpu_percent(interval=None)
            if not self._primed:
                self._primed = True
                return None
            return float(value)


_CPU = CpuMeter()


def read_host() -> HostReading:
    """CPU % since the previous call and memory now."""
    cpu = _CPU.read()
    try:
        vm = psutil.virtual_memory()
    except OSError:
        return HostReading(cpu, None, None)
    return HostReading(cpu, int(vm.total - vm.available), int(vm.total))


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss(pid: int) -> int | None:
    """Resident bytes of one process: /proc/<pid>/statm directly on Linux (this runs every tick for every
    engine process; building a psutil.Process costs several /proc reads more), psutil elsewhere."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except FileNotFoundError:
        if os.path.isdir("/proc/self"):
            return None  # Linux: the process is gone
    except (OSError, ValueError, IndexError):
        return None
    try:
        return psutil.Process(pid).memory_info().rss
    except _SKIP:
        return None


def tree_rss_bytes(pids: Iterable[int]) -> int | None:
    """Sum of the resident memory of those ``pids`` still alive; None if none is."""
    sizes = [r for r in map(_rss, set(pids)) if r is not None]
    return sum(sizes) if sizes else None


def listening_sockets(pids: Iterable[int]) -> list[Listener]:
    """TCP sockets in LISTEN state owned by ``pids``, as (pid, ip, port), sorted."""
    wanted = set(pids)
    if not wanted:
        return []
    if _PROC_NET:
        return _proc_listeners(wanted)
    return _psutil_listeners(wanted)


_PROC_NET = sys.platform.startswith("linux") and os.path.exists("/proc/net/tcp")


def _proc_listeners(pids: set[int]) -> list[Listener]:
    """Linux: the processes' socket inodes (/proc/<pid>/fd), then the listening TCP sockets of this network
    namespace with those inodes (as psutil reports them: same addresses, same formatting)."""
    owners: dict[str, list[int]] = {}
    for pid in pids:
        for inode in socket_inodes(pid):
            owners.setdefault(inode, []).append(pid)
    if not owners:
        return []
    found: set[Listener] = set()
    for inode, ip, port in tcp_listening():
        for pid in owners.get(inode, ()):
            found.add(Listener(pid, ip, port))
    return sorted(found)


def tcp_listening() -> list[tuple[str, str, int]]:
    """(inode, ip, port) of every listening TCP socket (agents/sockdiag.py: netlink, else /proc)."""
    return [(r.inode, r.ip, r.port) for r in tcp_sockets(TCP_LISTEN) or ()]


def _psutil_listeners(wanted: set[int]) -> list[Listener]:
    found: set[Listener] = set()
    for pid in wanted:
        try:
            conns = psutil.Process(pid).net_connections(kind="inet")
        except _SKIP:
            continue
        found.update(
            Listener(pid, c.laddr.ip, c.laddr.port)
            for c in conns
            if c.status == psutil.CONN_LISTEN and c.laddr
        )
    return sorted(found)


def process_brief(pid: int) -> str | None:
    """``"name: cmdline"`` of a process for messages (cut to 200 chars); None if it is gone."""
    try:
        proc = psutil.Process(pid)
        name = proc.name()
        try:
            cmdline = " ".join(proc.cmdline())
        except _SKIP:
            cmdline = ""
    except _SKIP:
        return None
    text = f"{name}: {cmdline}" if cmdline else name
    return text if len(text) <= _BRIEF_MAX else text[: _BRIEF_MAX - 1] + "…"
