"""Pre-flight port check before every start: a port another process holds fails the start at once.

A ``bind()`` *without* SO_REUSEPORT fails if any socket listens on the address, including one that
set SO_REUSEPORT (which would otherwise let a second engine bind and silently split traffic).
SO_REUSEADDR is set so that TIME_WAIT leftovers of our own previous run do not block a restart; on
Linux it never allows binding over a listener. On failure the holder is looked up with psutil.
"""

from __future__ import annotations

import contextlib
import errno
import socket
from dataclasses import dataclass

import psutil

from agents.supervisor.proctree import cmdline_text


@dataclass(frozen=True, slots=True)
class PortCheck:
    """Result of a pre-flight bind. ``free`` False comes with a one-line ``error``."""

    free: bool
    error: str | None = None
    holder_pid: int | None = None
    holder_cmdline: str | None = None


def check_port(host: str, port: int) -> PortCheck:
    """Try to bind host:port (port 0 means "no fixed port": always free)."""
    if port == 0:
        return PortCheck(True)
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        return PortCheck(False, f"cannot resolve engine host {host!r}: {exc}")
    family, stype, proto, _, addr = infos[0]
    sock = socket.socket(family, stype, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(addr)
        sock.listen(1)  # a bound-but-idle socket elsewhere only conflicts with a listener
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return _held(host, port)
        return PortCheck(False, f"cannot bind {host}:{port}: {exc.strerror or exc}")
    finally:
        sock.close()
    return PortCheck(True)


def listeners(port: int) -> list[tuple[int | None, str]]:
    """(pid, local address) of every TCP socket listening on ``port``; pid None when not visible."""
    try:
        conns = psutil.net_connections(kind="tcp")
    except (psutil.Error, OSError):
        return []
    out = []
    for c in conns:
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port:
            out.append((c.pid, c.laddr.ip))
    return out


def _held(host: str, port: int) -> PortCheck:
    found = listeners(port)
    with_pid = [(pid, ip) for pid, ip in found if pid is not None]
    if with_pid:
        pid = with_pid[0][0]
        assert pid is not None
        cmd = cmdline_text(pid)
        return PortCheck(False, f"port {host}:{port} in use by PID {pid} ({cmd})", pid, cmd)
    if found:
        return PortCheck(False, f"port {host}:{port} in use by a process this agent cannot see")
    return PortCheck(False, f"port {host}:{port} in use (no listener found; a connection holds it)")
