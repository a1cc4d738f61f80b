"""Host readings: CPU and memory, process-tree RSS, listening sockets, process names.

On Linux the per-engine reads (RSS, listening sockets) go to /proc directly: they run for every engine
process, and psutil's general path costs several /proc reads more each (its ``net_connections`` parses
every TCP and UDP table once per process). Elsewhere, and for host-wide figures, psutil.

Processes come and go mid-read: a PID that vanished or cannot be inspected is skipped, never raised.
"""

from __future__ import annotations

import os
import socket
import struct
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

import psutil

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
_TCP_TABLES = (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6))
_TCP_LISTEN = 10  # TCP_LISTEN in the kernel's state numbering ("0A" in /proc/net/tcp)


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
    """(inode, ip, port) of every listening TCP socket: asked of the kernel through sock_diag netlink, which
    walks only the listening sockets; /proc/net/tcp{,6} (whose every read walks the whole connection table,
    milliseconds of kernel time on a busy host) only where netlink is unavailable."""
    try:
        return _diag_listening(socket.AF_INET) + _diag_listening(socket.AF_INET6)
    except OSError:
        pass
    rows: list[tuple[str, str, int]] = []
    for path, family in _TCP_TABLES:
        try:
            with open(path, encoding="ascii", errors="replace") as fh:
                lines = fh.read().splitlines()[1:]
        except OSError:  # no IPv6 on this host: no tcp6 table
            continue
        for line in lines:
            cols = line.split()
            if len(cols) < 10 or cols[3] != f"{_TCP_LISTEN:02X}":
                continue
            address = _proc_address(cols[1], family)
            if address is not None:
                rows.append((cols[9], *address))
    return rows


_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST_DUMP = 0x1 | 0x300
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_NLMSG = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_DIAG_MSG = struct.Struct("=BBBB2s2s16s16sI8sIIIII")  # inet_diag_msg (family, state, ..., uid, inode)


def _diag_listening(family: int) -> list[tuple[str, str, int]]:
    """(inode, ip, port) of the listening TCP sockets of ``family`` through NETLINK_SOCK_DIAG."""
    request = struct.pack("=BBBBI48s", family, socket.IPPROTO_TCP, 0, 0, 1 << _TCP_LISTEN, b"")
    header = _NLMSG.pack(_NLMSG.size + len(request), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST_DUMP, 1, 0)
    rows: list[tuple[str, str, int]] = []
    width = 4 if family == socket.AF_INET else 16
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG) as nl:
        nl.settimeout(2.0)
        nl.sendall(header + request)
        while True:
            data = nl.recv(1 << 16)
            if not data:
                raise OSError("sock_diag: empty answer")
            at = 0
            while at + _NLMSG.size <= len(data):
                length, kind = _NLMSG.unpack_from(data, at)[:2]
                if length < _NLMSG.size:
                    raise OSError("sock_diag: malformed answer")
                if kind == _NLMSG_DONE:
                    return rows
                if kind == _NLMSG_ERROR:
                    raise OSError("sock_diag: the kernel refused the dump")
                if kind == _SOCK_DIAG_BY_FAMILY and length >= _NLMSG.size + _DIAG_MSG.size:
                    msg = _DIAG_MSG.unpack_from(data, at + _NLMSG.size)
                    port = int.from_bytes(msg[4], "big")
                    if msg[1] == _TCP_LISTEN and port:
                        rows.append((str(msg[-1]), socket.inet_ntop(family, msg[6][:width]), port))
                at += (length + 3) & ~3


def socket_inodes(pid: int) -> list[str]:
    """Inodes of the sockets ``pid`` holds open; empty when it is gone or cannot be inspected."""
    base = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(base)
    except OSError:
        return []
    inodes = []
    for fd in fds:
        try:
            target = os.readlink(f"{base}/{fd}")
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.append(target[8:-1])
    return inodes


def _proc_address(text: str, family: int) -> tuple[str, int] | None:
    """(ip, port) of a /proc/net/tcp* address ("0100007F:1F90": the IP in host byte order per 32-bit word,
    the port big-endian), formatted as psutil formats it; None when unreadable or port 0."""
    ip_hex, _, port_hex = text.partition(":")
    try:
        port = int(port_hex, 16)
        raw = bytes.fromhex(ip_hex)
        words = struct.unpack(f"={len(raw) // 4}I", raw)  # host order, as the kernel printed them
        ip = socket.inet_ntop(family, struct.pack(f">{len(words)}I", *words))
    except (ValueError, struct.error, OSError):
        return None
    return (ip, port) if port else None


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
