"""Count the established client connections to an engine's port, from the kernel's socket tables.

Evidence for FRONTEND_HUNG: clients connected to the engine while it reports nothing running or waiting
means requests that never reached its scheduler. Linux only (``/proc/net/tcp`` and ``tcp6``); anywhere
else, or where ``/proc`` cannot be read, the count is None (unknown), never 0.

``pids`` (the engine's process tree) narrows the count to sockets those processes hold and reads the
tables of their network namespace (an engine in a container); where none of their descriptor tables can
be read (another user's processes), every socket on the port counts. ``exclude_pids`` (the agent itself)
leaves out connections whose client end those processes hold: the agent's own scrapes and canaries.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

ESTABLISHED = "01"  # include/net/tcp_states.h: TCP_ESTABLISHED
TABLES = ("tcp", "tcp6")

Endpoint = tuple[str, int]  # (address as the table writes it, in hex; port)


def established_to_port(
    port: int,
    pids: Iterable[int] | None = None,
    *,
    exclude_pids: Iterable[int] = (),
    proc: str | os.PathLike[str] = "/proc",
) -> int | None:
    """ESTABLISHED TCP connections whose local port is ``port`` (IPv4 and IPv6); None when unreadable."""
    root = Path(proc)
    wanted = list(pids) if pids is not None else []
    rows = _rows(root, wanted)
    if rows is None:
        return None
    held = _socket_inodes(root, wanted) if wanted else None
    mine = _socket_inodes(root, list(exclude_pids)) or set()
    # The client ends the excluded processes hold: connections from them to the port.
    excluded = {local for local, remote, inode in rows if inode in mine and remote[1] == port}
    return sum(
        1
        for local, remote, inode in rows
        if local[1] == port and (held is None or inode in held) and remote not in excluded
    )


def _rows(root: Path, pids: list[int]) -> list[tuple[Endpoint, Endpoint, int]] | None:
    """The established sockets of the first readable namespace: the pids' own, else ``root/net``."""
    for base in [*(root / str(pid) / "net" for pid in pids), root / "net"]:
        found = _read_tables(base)
        if found is not None:
            return found
    return None


def _read_tables(base: Path) -> list[tuple[Endpoint, Endpoint, int]] | None:
    rows: list[tuple[Endpoint, Endpoint, int]] = []
    readable = False
    for name in TABLES:
        try:
            text = (base / name).read_text(encoding="ascii", errors="replace")
        except OSError:
            continue  # tcp6 is absent where IPv6 is disabled
        readable = True
        rows.extend(_parse(text))
    return rows if readable else None


def _parse(text: str) -> Iterator[tuple[Endpoint, Endpoint, int]]:
    """(local, remote, inode) of each ESTABLISHED row; the header and malformed rows are skipped."""
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != ESTABLISHED:
            continue
        try:
            yield _endpoint(fields[1]), _endpoint(fields[2]), int(fields[9])
        except ValueError:
            continue


def _endpoint(text: str) -> Endpoint:
    address, _, port = text.rpartition(":")
    if not address:
        raise ValueError(text)
    return address, int(port, 16)


def _socket_inodes(root: Path, pids: list[int]) -> set[int] | None:
    """The socket inodes held by ``pids``; None when no pid's descriptor table could be read."""
    inodes: set[int] = set()
    readable = False
    for pid in pids:
        fd_dir = root / str(pid) / "fd"
        try:
            names = os.listdir(fd_dir)
        except OSError:
            continue  # gone, or another user's process
        readable = True
        for name in names:
            try:
                target = os.readlink(fd_dir / name)
            except OSError:
                continue  # closed meanwhile
            if target.startswith("socket:[") and target.endswith("]"):
                inodes.add(int(target[8:-1]))
    return inodes if readable else None
