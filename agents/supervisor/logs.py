"""Engine log files: size-capped, copy-truncate rotation, and an in-memory tail.

The engine's stdout and stderr go straight into ``<log_dir>/<engine_id>.log`` opened ``O_APPEND`` —
a file, not a pipe (reliability.md §1.5-G): nothing the agent does (a slow disk, a full disk, the
agent being SIGKILLed and restarted) can fill a pipe and block or kill the engine with EPIPE, and an
adopted engine keeps writing to the same file across agent restarts.

Rotation is copy-truncate: ``.log`` is copied to ``.log.1`` (older copies shift to ``.2`` … ``.N``)
and then truncated in place, so O_APPEND writers — including an adopted engine's inherited fd —
continue at the new end. Bytes written between the copy and the truncate are lost (the usual
copy-truncate window, microseconds). The current file can overshoot ``max_bytes`` by what the engine
writes between two polls. Every disk error is counted (``errors``) and never raised.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections import deque
from pathlib import Path

_MAX_LINE = 4096  # characters kept per line (longer lines are cut)
_MAX_READ = 1 << 20  # bytes read per poll; beyond that the oldest pending bytes are skipped


class LogFile:
    """One engine's log file, its rotation and its tail. Not thread-safe (loop thread only)."""

    def __init__(self, path: Path, max_bytes: int = 50 * 2**20, backups: int = 10,
                 tail_lines: int = 1000, seed_bytes: int = 64 * 1024) -> None:
        if max_bytes <= 0 or backups < 0:
            raise ValueError("log max_bytes must be > 0 and backups >= 0")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self.errors = 0
        self.last_error: str | None = None
        self.rotations = 0
        self.skipped_bytes = 0
        self.total_lines = 0
        self._lines: deque[str] = deque(maxlen=tail_lines)
        self._partial = b""
        self._offset = 0
        self._inode: int | None = None
        self._seed(seed_bytes)

    # --- writing side (the engine's fd) ---------------------------------------------------------
    def open_append(self) -> int:
        """An O_APPEND fd for the engine's stdout/stderr (the caller closes it after spawning)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)

    def note(self, fd: int, text: str) -> None:
        """Append one agent line (e.g. a launch banner) through ``fd``; errors are counted."""
        try:
            os.write(fd, (text.rstrip("\n") + "\n").encode("utf-8", "replace"))
        except OSError as exc:
            self.count_error(exc)

    # --- reading side -----------------------------------------------------------------------------
    def poll(self) -> int:
        """Read new bytes into the tail and rotate when over the cap; returns bytes consumed."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return 0
        except OSError as exc:
            self.count_error(exc)
            return 0
        if st.st_ino != self._inode:  # replaced or recreated: start over on the new file
            self._inode, self._offset, self._partial = st.st_ino, 0, b""
        if st.st_size < self._offset:  # truncated by someone else
            self._offset, self._partial = 0, b""
        got = self._read_range(self.path, self._offset, st.st_size)
        self._offset = st.st_size
        if st.st_size > self.max_bytes:
            got += self._rotate()
        return got

    def mark(self) -> int:
        """A position in the line stream (for "lines since launch")."""
        return self.total_lines

    def lines_since(self, mark: int, n: int) -> list[str]:
        """The last ``n`` complete lines written after ``mark`` (as far as the tail still holds them)."""
        newer = self.total_lines - mark
        take = max(0, min(n, newer, len(self._lines)))
        return list(self._lines)[len(self._lines) - take:] if take else []

    def tail(self, n: int) -> list[str]:
        """The last ``n`` lines, plus a trailing partial line if the engine has not ended it yet."""
        lines = list(self._lines)
        if self._partial:
            lines.append(self._decode(self._partial))
        return lines[-n:] if n > 0 else []

    # --- internals --------------------------------------------------------------------------------
    def _seed(self, seed_bytes: int) -> None:
        """Start the tail from the end of an existing file (an adopted engine's history)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return
        except OSError as exc:
            self.count_error(exc)
            return
        self._inode = st.st_ino
        start = max(0, st.st_size - seed_bytes)
        self._read_range(self.path, start, st.st_size, drop_first_partial=start > 0)
        self._offset = st.st_size
        self.total_lines = 0  # seeded history is not "since" anything

    def _read_range(self, path: Path, start: int, end: int, drop_first_partial: bool = False) -> int:
        if end <= start:
            return 0
        if end - start > _MAX_READ:
            self.skipped_bytes += end - start - _MAX_READ
            start, drop_first_partial = end - _MAX_READ, True
            self._partial = b""
        try:
            with open(path, "rb") as fh:
                fh.seek(start)
                data = fh.read(end - start)
        except OSError as exc:
            self.count_error(exc)
            return 0
        if drop_first_partial:
            cut = data.find(b"\n")
            data = data[cut + 1 :] if cut >= 0 else b""
        self._feed(data)
        return len(data)

    def _feed(self, data: bytes) -> None:
        buf = self._partial + data
        parts = buf.split(b"\n")
        self._partial = parts.pop()
        if len(self._partial) > _MAX_LINE * 4:  # a line without end: emit what we have
            parts.append(self._partial)
            self._partial = b""
        for raw in parts:
            self._lines.append(self._decode(raw))
            self.total_lines += 1

    @staticmethod
    def _decode(raw: bytes) -> str:
        return raw.decode("utf-8", "replace").rstrip("\r")[:_MAX_LINE]

    def _rotate(self) -> int:
        """Copy-truncate; returns bytes fed to the tail that arrived after the last read."""
        got = 0
        try:
            if self.backups > 0:
                for i in range(self.backups - 1, 0, -1):
                    older = self._backup(i)
                    if older.exists():
                        os.replace(older, self._backup(i + 1))
                copied = self._copy(self._backup(1))
                # Bytes the engine wrote after our last read are in the copy: keep them in the tail.
                if copied > self._offset:
                    got = self._read_range(self._backup(1), self._offset, copied)
            os.truncate(self.path, 0)
            self._offset = 0
            self.rotations += 1
        except OSError as exc:
            self.count_error(exc)
        return got

    def _copy(self, dest: Path) -> int:
        """Copy the live file to ``dest`` (in-kernel copy via a temp name); returns bytes copied."""
        tmp = dest.with_name(dest.name + ".tmp")
        try:
            shutil.copyfile(self.path, tmp)
            copied = os.stat(tmp).st_size
            os.replace(tmp, dest)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return copied

    def _backup(self, i: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{i}")

    def count_error(self, exc: OSError) -> None:
        """Record a disk error (also used by the supervisor when the log cannot be opened)."""
        self.errors += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
