"""Egress guard for tests: put this folder on PYTHONPATH and set LLMCONSOLE_EGRESS_LOG to a file.

Every Python process that starts with it installs an audit hook (PEP 578) on the socket events
(``socket.connect``, ``socket.getaddrinfo``, ``socket.gethostbyname``, ``socket.gethostbyaddr``,
``socket.sendto``, ``socket.sendmsg``). A target that is not loopback (127.0.0.0/8, ::1, localhost), a
wildcard bind address or a Unix socket is appended to the log as one JSON line (pid, argv, event, target)
and the call is aborted with PermissionError, so nothing leaves the machine even if the guard fires.
With LLMCONSOLE_EGRESS_PROOF naming a folder, each guarded process also leaves a file named by its pid
there, so a test can prove the guard really ran in the processes it cares about.
"""

from __future__ import annotations

import ipaddress
import json
import os
import sys

_LOG = os.environ.get("LLMCONSOLE_EGRESS_LOG")
_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}
_EVENTS = {
    "socket.connect",
    "socket.getaddrinfo",
    "socket.gethostbyname",
    "socket.gethostbyaddr",
    "socket.sendto",
    "socket.sendmsg",
    "socket.connect_ex",
}


def _local(host: object) -> bool:
    if host is None or host in ("", b""):
        return True  # no host: a bind/lookup of the wildcard or a local service
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return True  # AF_UNIX paths and other families carry no network host
    name = host.strip("[]").split("%", 1)[0].lower()
    if name in _LOCAL_NAMES or name.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return False  # a name that is not loopback: resolving it is already a network lookup
    return ip.is_loopback or ip.is_unspecified


def _target(event: str, args: tuple) -> object:
    if event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr"):
        return args[0] if args else None
    address = args[1] if len(args) > 1 else None  # (socket, address) for connect/sendto/sendmsg
    if isinstance(address, tuple) and address:
        return address[0]
    return None  # AF_UNIX path, or no address (sendmsg on a connected socket)


def _hook(event: str, args: tuple) -> None:
    if event not in _EVENTS:
        return
    target = _target(event, args)
    if _local(target):
        return
    record = {"pid": os.getpid(), "argv": sys.argv[:6], "event": event, "target": repr(target)[:200]}
    if _LOG:
        try:
            with open(_LOG, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        except OSError:
            pass
    raise PermissionError(f"egress guard: {event} to {target!r} is not allowed in this test")


if _LOG:
    sys.addaudithook(_hook)
    _PROOF = os.environ.get("LLMCONSOLE_EGRESS_PROOF")  # a folder: one file per guarded process
    if _PROOF:
        try:
            with open(os.path.join(_PROOF, str(os.getpid())), "w", encoding="utf-8") as f:
                f.write(" ".join(sys.argv[:4]))
        except OSError:
            pass
