"""Helpers shared by the console's network sources (agents over HTTP, Prometheus, bundle fetches): a
short reason for a failed connection, and the ssh-style permission warning for credential files."""

from __future__ import annotations

import errno
import socket
import stat
from pathlib import Path


def token_file_warning(path: Path, mode: int) -> str | None:
    """A warning when a token file's permissions let group or others read (or write) it, as ssh warns
    about private keys; None when only its owner can."""
    if not mode & 0o077:
        return None
    how = "readable" if mode & 0o044 else "writable"
    return (
        f"token_file {path} is {how} by group or others (mode {stat.S_IMODE(mode):04o}): run chmod 600 {path}"
    )


def connect_reason(exc: BaseException) -> str:
    """A short reason for a failed connection, from the exception and its causes (httpx wraps the
    OS error: "All connection attempts failed" hides "connection refused")."""
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and len(chain) < 8:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    for e in chain:
        if isinstance(e, socket.gaierror):
            return "DNS lookup failed"
        if isinstance(e, ConnectionRefusedError) or getattr(e, "errno", None) == errno.ECONNREFUSED:
            return "connection refused"
        if isinstance(e, OSError) and e.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return "no route to host"
    text = " ".join(str(e) for e in chain).lower()
    if "refused" in text:
        return "connection refused"
    if "name or service not known" in text or "name resolution" in text or "nodename nor servname" in text:
        return "DNS lookup failed"
    first = str(exc) or type(exc).__name__
    return first.splitlines()[0][:160]
