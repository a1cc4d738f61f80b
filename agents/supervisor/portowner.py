"""Who serves a port: the listening TCP socket on it, the process that holds that socket, and its tree.

This is how the agent learns the processes of an engine it did not start (``managed = false``): the kernel's
table of listening sockets (sock_diag netlink, or /proc/net/tcp{,6}, read by :mod:`agents.host`)
gives the socket's inode; the process holding that inode among ``/proc/*/fd`` is its owner; the owner and its
descendants are the engine's tree, so RSS, GPU attribution and ORPHAN_GPU_MEMORY work as for a launched one.

Blocking (/proc reads): call :meth:`PortOwners.find` from a worker thread. It is cheap while nothing
changes: the owner found last time is re-checked alone (its fds still hold the socket, same start time);
the full ``/proc/*/fd`` walk runs only when the socket or its owner changed, and at most every
``UNSEEN_RESCAN_S`` while the owner cannot be seen.

When the owner cannot be seen, :attr:`PortOwner.unseen` says why: the socket's holder may be another user's
process that this agent may not inspect, or live in another PID namespace (a container); a port published
by a container runtime's forwarder (docker-proxy, rootlesskit, slirp4netns, pasta) is owned by the forwarder,
not the engine. No listener at all in this network namespace is ``listener`` None (the caller then asks
the port itself: NAT, a container's network or another host).
"""

from __future__ import annotations

import ipaddress
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass

from agents.host import tcp_listening as listening_table

# agents/host.py's readers of the kernel's listening-socket table and of a process's socket inodes (the
# exposure audit's); private there, shared here rather than copied.
from agents.sockdiag import socket_inodes
from agents.supervisor.proctree import ProcInfo, read_stat

UNSEEN_RESCAN_S = 30.0
TREE_REFRESH_S = 2.0  # the owner's descendants are rescanned (a /proc walk) at most this often
# Processes that own a published port on behalf of a container: the engine is not among their descendants.
FORWARDERS = frozenset({"docker-proxy", "rootlesskit", "slirp4netns", "pasta", "pasta.avx2", "conmon"})
_WILDCARDS = frozenset({"0.0.0.0", "::"})


@dataclass(frozen=True, slots=True)
class PortOwner:
    """What serves a port now. ``listener`` None: no listening socket on it in this network namespace."""

    listener: str | None = None  # "ip:port" (IPv6 in brackets)
    pid: int | None = None  # the owner: the topmost process holding the socket; None when not seen
    starttime: int | None = None  # its start time (clock ticks after boot): with pid, its identity
    name: str | None = None  # its process name (comm)
    pids: tuple[int, ...] = ()  # the owner and its descendants (and other holders of the socket)
    unseen: str | None = None  # why ``pid`` is None although a listener exists

    @property
    def key(self) -> tuple[int, int] | None:
        """The owner's identity (pid, start time): a new value is a new process."""
        return (self.pid, self.starttime) if self.pid is not None and self.starttime is not None else None


def _shown(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _is_loopback(ip: str) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip == "localhost"
    mapped = getattr(addr, "ipv4_mapped", None)
    return addr.is_loopback or (mapped is not None and mapped.is_loopback)


def _matches(listen_ip: str, host: str) -> bool:
    """Whether a socket listening on ``listen_ip`` serves connections to ``host``."""
    if listen_ip in _WILDCARDS or listen_ip == host or host in ("", *_WILDCARDS):
        return True
    return _is_loopback(host) and _is_loopback(listen_ip)


def _comm(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as fh:
            return fh.read().strip() or None
    except OSError:
        return None


class PortOwners:
    """Finds the owner of ``host:port``'s listening socket, remembering the last one (see the module)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._last: tuple[int, int] | None = None  # (pid, starttime) found last time
        self._unseen: tuple[frozenset[str], float, str] | None = (
            None  # inodes, when, why: the last failed walk
        )
        self._tree: tuple[frozenset[int], float, tuple[int, ...]] = (frozenset(), -TREE_REFRESH_S, ())

    def find(self) -> PortOwner:
        rows = [(inode, ip) for inode, ip, port in listening_table() if port == self.port]
        if not rows:
            self._last = None
            return PortOwner()
        chosen = [(inode, ip) for inode, ip in rows if _matches(ip, self.host)]
        if not chosen:  # listeners on this port, but on other addresses: none serves host:port
            self._last = None
            return PortOwner()
        listener = _shown(chosen[0][1], self.port)
        inodes = frozenset(inode for inode, _ in chosen)
        holders = self._recheck(inodes)
        if holders is None:
            unseen = self._unseen
            if unseen is not None and unseen[0] == inodes and time.monotonic() - unseen[1] < UNSEEN_RESCAN_S:
                return PortOwner(listener, unseen=unseen[2])
            holders, unreadable = _walk(inodes)
            if not holders:
                why = _why_unseen(unreadable)
                self._unseen, self._last = (inodes, time.monotonic(), why), None
                return PortOwner(listener, unseen=why)
        self._unseen = None
        return self._owner(listener, holders)

    def _recheck(self, inodes: frozenset[str]) -> set[int] | None:
        """{the last owner} while it still holds the socket and is the same process; else None."""
        if self._last is None:
            return None
        pid, start = self._last
        info = read_stat(pid)
        if info is None or info.starttime != start or info.dead or not inodes & set(socket_inodes(pid)):
            return None
        return {pid}

    def _owner(self, listener: str, holders: set[int]) -> PortOwner:
        stats = {pid: info for pid in holders if (info := read_stat(pid)) is not None and not info.dead}
        if not stats:  # gone meanwhile: seen next time
            self._last = None
            return PortOwner(listener, unseen="its owner exited while it was being looked up")
        top = [p for p, info in stats.items() if info.ppid not in stats] or list(stats)
        owner = min(top, key=lambda p: (stats[p].starttime, p))
        info = stats[owner]
        name = _comm(owner)
        if name in FORWARDERS:
            self._last = None
            why = (
                f"the port is forwarded by {name} (PID {owner}): the engine runs in a container, "
                "whose processes are not attributed to it"
            )
            return PortOwner(listener, name=name, unseen=why)
        self._last = (owner, info.starttime)
        return PortOwner(listener, owner, info.starttime, name, self._descendants(frozenset(stats)))

    def _descendants(self, roots: frozenset[int]) -> tuple[int, ...]:
        """``roots`` and their live descendants, rescanned when the roots change or every TREE_REFRESH_S."""
        known, at, pids = self._tree
        now = time.monotonic()
        if known != roots or now - at >= TREE_REFRESH_S:
            pids = _tree(roots, _procs())
            self._tree = (roots, now, pids)
        return pids


def _walk(inodes: frozenset[str]) -> tuple[set[int], int]:
    """(PIDs holding one of ``inodes``, how many processes' fds could not be read). Blocking."""
    me = os.getpid()
    found: set[int] = set()
    unreadable = 0
    try:
        names = os.listdir("/proc")
    except OSError:
        return found, 0
    for name in names:
        if not name.isdigit() or int(name) == me:
            continue
        pid = int(name)
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except PermissionError:
            unreadable += 1
            continue
        except OSError:  # gone
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                found.add(pid)
                break
    return found, unreadable


def _why_unseen(unreadable: int) -> str:
    if unreadable:
        return (
            f"no process this agent may inspect holds the listening socket ({unreadable} processes' file "
            "descriptors were not readable: another user's, or run the agent as the engine's user or root)"
        )
    return "no process in this agent's PID namespace holds the listening socket (a container or another namespace)"


def _procs() -> dict[int, ProcInfo]:
    """Every process's stat (this module's own /proc walk: it runs in a worker thread, so it shares no cache
    with the supervisors on the event loop)."""
    out: dict[int, ProcInfo] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return out
    for name in names:
        if name.isdigit() and (info := read_stat(int(name))) is not None:
            out[info.pid] = info
    return out


def _tree(roots: frozenset[int], procs: dict[int, ProcInfo]) -> tuple[int, ...]:
    """``roots`` and their live descendants."""
    children: dict[int, list[int]] = {}
    for p in procs.values():
        children.setdefault(p.ppid, []).append(p.pid)
    me = os.getpid()
    found = {r for r in roots if r in procs and not procs[r].dead}
    stack = list(found)
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in found and child != me and not procs[child].dead:
                found.add(child)
                stack.append(child)
    return tuple(sorted(found))


@dataclass(frozen=True, slots=True)
class OwnerLaunch:
    """The command line and environment of a process the agent did not start, as ``/proc`` shows them.
    ``argv``/``env`` None: not visible, ``unseen`` says why (another user's process, gone, a kernel thread)."""

    pid: int | None = None
    argv: tuple[str, ...] | None = None
    env: Mapping[str, str] | None = None
    unseen: str | None = None


def owner_launch(pid: int) -> OwnerLaunch:
    """``/proc/<pid>/cmdline`` and ``/proc/<pid>/environ`` (blocking; the environment is readable only for
    the agent's own user or root)."""
    argv: tuple[str, ...] | None = None
    env: dict[str, str] | None = None
    why: list[str] = []
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            raw = fh.read(1 << 20)
        argv = tuple(a.decode("utf-8", "surrogateescape") for a in raw.split(b"\0")[:-1]) or None
        if argv is None:
            why.append(f"command line of PID {pid}: empty (exited, or a kernel thread)")
    except OSError as exc:
        why.append(f"command line of PID {pid}: {_unreadable(exc)}")
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            raw = fh.read(1 << 20)
        env = {}
        for item in raw.split(b"\0"):
            key, eq, value = item.partition(b"=")
            if eq and key:
                env[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
    except OSError as exc:
        why.append(f"environment of PID {pid}: {_unreadable(exc)}")
    return OwnerLaunch(pid, argv, env, "; ".join(why) or None)


def _unreadable(exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return "not visible (another user's process: run the agent as the engine's user or root)"
    if isinstance(exc, FileNotFoundError | ProcessLookupError):
        return "not visible (the process exited)"
    return f"not visible ({exc.strerror or type(exc).__name__})"


def tree_root(pids: tuple[int, ...]) -> int | None:
    """The topmost process of a tree given as PIDs (the one whose parent is not among them; the oldest if
    several): a watched engine's port owner, from the PIDs its watch hands around."""
    stats = {p: info for p in pids if (info := read_stat(p)) is not None and not info.dead}
    top = [p for p, info in stats.items() if info.ppid not in stats]
    return min(top, key=lambda p: (stats[p].starttime, p)) if top else None
