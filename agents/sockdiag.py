"""The kernel's TCP socket table, one state at a time: NETLINK_SOCK_DIAG where it answers (it walks only the
sockets of the asked state), ``/proc/net/tcp{,6}`` where it does not (every read walks the whole table,
milliseconds of kernel time on a busy host). Linux only; stdlib only.

:func:`tcp_sockets` gives ``(inode, local ip, local port, remote port)`` rows of one state for both
families; :func:`socket_inodes` the socket inodes a process holds. Used for the listeners of an engine's
tree (agents/host.py) and for the client connections to its port (agents/collector.py).
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
from typing import NamedTuple

TCP_ESTABLISHED = 1
TCP_LISTEN = 10  # "0A" in /proc/net/tcp
_PROC_TABLES = (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6))
_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST_DUMP = 0x1 | 0x300
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_NLMSG = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_DIAG_MSG = struct.Struct("=BBBB2s2s16s16sI8sIIIII")  # inet_diag_msg (family, state, ..., uid, inode)


class SocketRow(NamedTuple):
    inode: str
    ip: str  # local address, formatted as psutil formats it
    port: int  # local port
    remote_port: int


def tcp_sockets(state: int) -> list[SocketRow] | None:
    """Every TCP socket in ``state`` of this network namespace (IPv4 and IPv6); None when neither netlink
    nor /proc can be read."""
    try:
        return _diag(socket.AF_INET, state) + _diag(socket.AF_INET6, state)
    except OSError:
        return _proc(state)


def socket_inodes(pid: int | str) -> list[str]:
    """Inodes of the sockets ``pid`` ("self" for this process) holds open; empty when it is gone or cannot be
    inspected."""
    base = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(base)
    except OSError:
        return []
    inodes = []
    for fd in fds:
        with contextlib.suppress(OSError):  # closed meanwhile
            target = os.readlink(f"{base}/{fd}")
            if target.startswith("socket:["):
                inodes.append(target[8:-1])
    return inodes


def _diag(family: int, state: int) -> list[SocketRow]:
    request = struct.pack("=BBBBI48s", family, socket.IPPROTO_TCP, 0, 0, 1 << state, b"")
    header = _NLMSG.pack(_NLMSG.size + len(request), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST_DUMP, 1, 0)
    rows: list[SocketRow] = []
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
                    if msg[1] == state and port:
                        ip = socket.inet_ntop(family, msg[6][:width])
                        rows.append(SocketRow(str(msg[-1]), ip, port, int.from_bytes(msg[5], "big")))
                at += (length + 3) & ~3


def _proc(state: int) -> list[SocketRow] | None:
    rows: list[SocketRow] = []
    readable = False
    for path, family in _PROC_TABLES:
        try:
            with open(path, encoding="ascii", errors="replace") as fh:
                lines = fh.read().splitlines()[1:]
        except OSError:  # no IPv6 on this host: no tcp6 table
            continue
        readable = True
        for line in lines:
            cols = line.split()
            if len(cols) < 10 or cols[3] != f"{state:02X}":
                continue
            local = _proc_address(cols[1], family)
            remote = _proc_address(cols[2], family, allow_zero=True)
            if local is not None and remote is not None:
                rows.append(SocketRow(cols[9], local[0], local[1], remote[1]))
    return rows if readable else None


def _proc_address(text: str, family: int, *, allow_zero: bool = False) -> tuple[str, int] | None:
    """(ip, port) of a /proc/net/tcp* address ("0100007F:1F90": the IP in host byte order per 32-bit word,
    the port big-endian), formatted as psutil formats it; None when unreadable (or port 0, unless allowed)."""
    ip_hex, _, port_hex = text.partition(":")
    try:
        port = int(port_hex, 16)
        raw = bytes.fromhex(ip_hex)
        words = struct.unpack(f"={len(raw) // 4}I", raw)  # host order, as the kernel printed them
        ip = socket.inet_ntop(family, struct.pack(f">{len(words)}I", *words))
    except (ValueError, struct.error, OSError):
        return None
    return (ip, port) if port or allow_zero else None


__all__ = ["TCP_ESTABLISHED", "TCP_LISTEN", "SocketRow", "socket_inodes", "tcp_sockets"]
