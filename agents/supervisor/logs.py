"""Engine log files: size-capped, copy-truncate rotation, and an in-memory tail.

The engine's stdout and stderr go straight into ``<log_dir>/<engine_id>.log`` opened ``O_APPEND`` —
a file, not a pipe: nothing the agent does (a slow disk, a full disk, the agent being SIGKILLed and
restarted) can fill a pipe and block or kill the engine with EPIPE, and an adopted engine keeps
writing to the same file across agent restarts.

Rotation is copy-truncate: ``.log`` is copied to ``.log.1`` (older copies shift to ``.2`` … ``.N``)
and then truncated in place, so O_APPEND writers — including an adopted engine's inherited fd —
continue at the new end. Bytes written between the copy and the truncate are lost (the usual
copy-truncate window, microseconds). The current file can overshoot ``max_bytes`` by what the engine
writes between two polls. Every disk error is counted (``errors``) and never raised.

Secrets: log files and backups are created mode 0600 (an existing file is set to 0600 when opened), and
every complete line passes through the same :class:`agents.redact.Redactor` as the API, *on disk*: the
masked bytes are overwritten in place with ``*`` of the same length (``pwrite`` at offsets already read,
so the engine's appends are never disturbed); the tail shows ``***`` as the API does. Until its line
is complete and polled (one supervisor tick) a secret is on disk in clear, in a 0600 file. On start-up
(seeding) the whole existing file is masked, so what an adopted engine wrote while the agent was down
is covered too; older backups are not rewritten.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections import deque
from pathlib import Path

from agents.redact import Redactor

_MAX_LINE = 4096  # characters kept per line (longer lines are cut)
_MAX_READ = 1 << 20  # bytes read per poll; beyond that the oldest pending bytes are skipped


class LogFile:
    """One engine's log file, its rotation and its tail. Not thread-safe (loop thread only)."""

    def __init__(
        self,
        path: Path,
        max_bytes: int = 50 * 2**20,
        backups: int = 10,
        tail_lines: int = 1000,
        seed_bytes: int = 64 * 1024,
        *,
        redact: Redactor | None = None,
    ) -> None:
        """``redact``: the engine's redactor (its configured secret values); default: token shapes only."""
        if max_bytes <= 0 or backups < 0:
            raise ValueError("log max_bytes must be > 0 and backups >= 0")
        self.path = Path(path)
        self.redactor = redact if redact is not None else Redactor()
        self.masked = 0  # secret occurrences overwritten on disk
        self.max_bytes = max_bytes
        self.backups = backups
        self.errors = 0
        self.last_error: str | None = None
        self.rotations = 0
        self.skipped_bytes = 0
        self.total_lines = 0
        self._lines: deque[str] = deque(maxlen=tail_lines)
        self._partial = b""
        self._partial_here = True  # the partial line's bytes sit just before _offset in the file being read
        self._offset = 0
        self._inode: int | None = None
        self._seed(seed_bytes)

    # --- writing side (the engine's fd) ---------------------------------------------------------
    def open_append(self) -> int:
        """An O_APPEND fd for the engine's stdout/stderr (the caller closes it after spawning)."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.fchmod(fd, 0o600)  # a file created by an older version may be group-readable
        except OSError as exc:
            self.count_error(exc)
        return fd

    def note(self, fd: int, text: str) -> None:
        """Append one agent line (e.g. a launch banner) through ``fd``, redacted; errors are counted."""
        try:
            os.write(fd, (self.redactor(text).rstrip("\n") + "\n").encode("utf-8", "replace"))
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
        return list(self._lines)[len(self._lines) - take :] if take else []

    def tail(self, n: int) -> list[str]:
        """The last ``n`` lines, plus a trailing partial line if the engine has not ended it yet."""
        lines = list(self._lines)
        if self._partial:
            lines.append(self._decode(self.redactor.redact_bytes(self._partial)))
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
        # masks the whole file on disk, not only the seeded tail (scrub_from=0)
        self._read_range(self.path, start, st.st_size, drop_first_partial=start > 0, scrub_from=0)
        self._offset = st.st_size
        self.total_lines = 0  # seeded history is not "since" anything

    def _read_range(
        self,
        path: Path,
        start: int,
        end: int,
        drop_first_partial: bool = False,
        scrub_from: int | None = None,
    ) -> int:
        """Feed [start, end) of ``path`` to the tail (masked on disk first). With ``drop_first_partial`` the
        bytes before the first line break are not fed; [scrub_from, first line) is still masked on disk."""
        if end <= start:
            return 0
        if end - start > _MAX_READ:
            self.skipped_bytes += end - start - _MAX_READ
            if scrub_from is None:
                scrub_from = start - (len(self._partial) if self._partial_here else 0)
            start, drop_first_partial = end - _MAX_READ, True
            self._partial, self._partial_here = b"", True
        try:
            with open(path, "rb") as fh:
                fh.seek(start)
                data = fh.read(end - start)
        except OSError as exc:
            self.count_error(exc)
            return 0
        base = start
        if drop_first_partial:
            cut = data.find(b"\n")
            data, base = (data[cut + 1 :], start + cut + 1) if cut >= 0 else (b"", start + len(data))
            self._partial, self._partial_here = b"", True
            if scrub_from is not None:
                self._scrub(path, scrub_from, base)
        self._feed(data, path, base)
        return len(data)

    def _feed(self, data: bytes, path: Path, base: int) -> None:
        """Add ``data`` (read from ``path`` at offset ``base``) to the tail; complete lines are masked, in
        the tail and on disk (where their bytes are in ``path``)."""
        buf = self._partial + data
        buf_base = base - len(self._partial)
        writable_from = 0 if self._partial_here else len(self._partial)
        complete = buf.rfind(b"\n") + 1
        if len(buf) - complete > _MAX_LINE * 4:  # a line without end: emit what we have
            complete = len(buf)
        masked = self._mask(path, buf[:complete], buf_base, writable_from)
        self._partial, self._partial_here = buf[complete:], True
        if not masked:
            return
        parts = masked.split(b"\n")
        if masked.endswith(b"\n"):
            parts.pop()
        for raw in parts:
            self._lines.append(self._decode(raw))
            self.total_lines += 1

    def _mask(self, path: Path, chunk: bytes, base: int, writable_from: int = 0) -> bytes:
        """``chunk`` (at offset ``base`` of ``path``) as the API shows it (each secret ``***``); in the file
        the secret bytes at or after ``writable_from`` are overwritten with ``*`` (same length, never past
        its current end)."""
        spans = self.redactor.byte_spans(chunk) if chunk else []
        if not spans:
            return chunk
        writes = []
        for s, e in spans:
            if max(s, writable_from) < e:
                writes.append((base + max(s, writable_from), e - max(s, writable_from)))
        if writes:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)  # never O_APPEND: pwrite must hit the offset
                try:
                    size = os.fstat(fd).st_size
                    for offset, n in writes:
                        if offset + n <= size:  # the file was not truncated under us
                            os.pwrite(fd, b"*" * n, offset)
                            self.masked += 1
                finally:
                    os.close(fd)
            except OSError as exc:
                self.count_error(exc)
        return self.redactor.replace_spans(chunk, spans)

    def _scrub(self, path: Path, start: int, end: int) -> None:
        """Mask [start, end) of ``path`` on disk, chunk by chunk, without feeding the tail."""
        pos, carry, carry_at = max(0, start), b"", max(0, start)
        try:
            with open(path, "rb") as fh:
                while pos < end:
                    fh.seek(pos)
                    data = fh.read(min(_MAX_READ, end - pos))
                    if not data:
                        break
                    pos += len(data)
                    buf = carry + data
                    cut = buf.rfind(b"\n") + 1
                    if pos >= end or len(buf) - cut > _MAX_LINE * 4:
                        cut = len(buf)
                    self._mask(path, buf[:cut], carry_at)
                    carry, carry_at = buf[cut:], carry_at + cut
        except OSError as exc:
            self.count_error(exc)

    @staticmethod
    def _decode(raw: bytes) -> str:
        return raw.decode("utf-8", "replace").rstrip("\r")[:_MAX_LINE]

    def _rotate(self) -> int:
        """Copy-truncate; returns bytes fed to the tail that arrived after the last read."""
        got = 0
        read_to = self._offset
        try:
            copied = None
            if self.backups > 0:
                for i in range(self.backups - 1, 0, -1):
                    older = self._backup(i)
                    if older.exists():
                        with contextlib.suppress(OSError):
                            os.chmod(older, 0o600)  # written by an older version: 0640
                        os.replace(older, self._backup(i + 1))
                copied = self._copy(self._backup(1))
            os.truncate(self.path, 0)  # right after the copy: the copy-truncate window stays short
            self._offset = 0
            self.rotations += 1
        except OSError as exc:
            self.count_error(exc)
            return got
        if copied is not None:
            # Bytes the engine wrote after our last read are in the copy: keep them in the tail (masked there).
            if copied > read_to:
                got = self._read_range(self._backup(1), read_to, copied)
                read_to = copied
            if self._partial and self._partial_here:  # its line ends in the next file: mask this part now
                self._mask(self._backup(1), self._partial, read_to - len(self._partial))
        self._partial_here = not self._partial
        return got

    def _copy(self, dest: Path) -> int:
        """Copy the live file to ``dest`` (in-kernel copy via a temp name); returns bytes copied."""
        tmp = dest.with_name(dest.name + ".tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600))
            os.chmod(tmp, 0o600)  # copyfile keeps the mode of an existing destination
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
