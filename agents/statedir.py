"""One agent per state directory: an exclusive ``flock`` held for the agent's whole life.

Two agents on one ``state_dir`` would both adopt, restart and stop the same engines (a split brain), so
the agent claims ``<state_dir>/agent.lock`` before it listens, adopts or starts anything. The lock is
``flock(LOCK_EX | LOCK_NB)`` on a file descriptor opened ``O_CLOEXEC`` (engines never inherit it): the
kernel drops it when the process dies, so a kill -9 of the agent never blocks the next start. The
holder's PID is written into the file so a second agent can name it.

Claiming also proves the directory is writable (the lock file and a probe file beside the engine state
files): an agent that could not record its engines must not start and silently lose them later.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from agents.supervisor import statefile

LOCK_NAME = "agent.lock"
ENGINES_DIR = "engines"  # where EngineSupervisor keeps its per-engine state files
_PID_WAIT_S = 1.0  # how long a loser waits for the winner to write its PID into the lock file


class StateDirError(Exception):
    """The state directory cannot be claimed; ``str()`` is one line for the operator."""


def _why(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno or 0)
    text = exc.strerror or str(exc)
    return f"{text} ({name})" if name else text


@dataclass(slots=True)
class StateDirLock:
    """A held claim on ``path``; :meth:`release` (or process exit) gives it up. Idempotent."""

    path: Path
    fd: int | None = field(default=None, repr=False)

    @property
    def held(self) -> bool:
        return self.fd is not None

    def release(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)  # closing the only descriptor of the open file drops the flock

    def __enter__(self) -> StateDirLock:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()


def holder_pid(path: Path, wait_s: float = _PID_WAIT_S) -> int | None:
    """The PID recorded in ``path``'s lock file, or None when it cannot be read (waits briefly, since the
    holder writes it just after taking the lock)."""
    lock_file = Path(path) / LOCK_NAME
    deadline = time.monotonic() + wait_s
    while True:
        try:
            text = lock_file.read_text(encoding="ascii", errors="replace").strip()
        except OSError:
            text = ""
        if text.isascii() and text.isdigit():
            return int(text)
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.02)


def claim_state_dir(path: Path | str) -> StateDirLock:
    """Create ``path`` if needed, lock it for this process and check it is writable.

    Raises :class:`StateDirError` (one line naming the directory, and the PID holding it when another
    agent does) without leaving a lock behind."""
    path = Path(path).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StateDirError(f"state directory {path}: cannot create it: {_why(exc)}") from None
    if not path.is_dir():
        raise StateDirError(f"state directory {path}: not a directory")
    lock_file = path / LOCK_NAME
    try:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise StateDirError(
            f"state directory {path} is not writable: cannot open {lock_file}: {_why(exc)}"
        ) from None
    lock = StateDirLock(path, fd)
    try:
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StateDirError(f"state directory {path}: cannot lock {lock_file}: {_why(exc)}") from None
            pid = holder_pid(path)
            who = f"PID {pid}" if pid is not None else "a process whose PID is not recorded"
            raise StateDirError(
                f"state directory {path} is in use by another agent ({who}); one agent per state_dir: "
                "stop that agent or give this one its own [agent] state_dir"
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
            os.fsync(fd)
        except OSError as exc:
            raise StateDirError(f"state directory {path} is not writable: {lock_file}: {_why(exc)}") from None
        _probe(path / ENGINES_DIR)
    except BaseException:
        lock.release()
        raise
    return lock


def _probe(engines: Path) -> None:
    """Write, fsync and remove a file the way engine state files are written; StateDirError if it fails."""
    probe = engines / ".write-probe.json"
    if engines.exists() and not engines.is_dir():
        raise StateDirError(f"state directory {engines.parent} is not writable: {engines} is not a directory")
    try:
        statefile.write_atomic(probe, {"probe": os.getpid()})
        statefile.remove(probe)
    except OSError as exc:
        raise StateDirError(
            f"state directory {engines.parent} is not writable: cannot write {engines}: {_why(exc)}"
        ) from None
