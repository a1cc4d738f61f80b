"""Append-only audit log of mutating API requests: one JSON line each, written and fsynced before acting.

Each record (NIST SP 800-53 AU-3: what, when, where, source, outcome, identity) carries::

    at          RFC 3339 UTC, microseconds (display; AU-8)
    mono_ns     monotonic clock, to order records across wall-clock jumps
    host, agent_version
    request_id  also returned to the caller as the X-Request-Id header
    actor       token name (never the token), or null when unauthenticated
    role, auth  the token's role; "bearer" or "none"
    remote      peer address (127.0.0.1 for every caller through an SSH tunnel: identity is ``actor``)
    action, engine, result   "allowed", "denied: <why>", "failed: <why>"
    prev_hash   SHA-256 of the previous line, so a removed or edited line breaks the chain (AU-9)

The file is opened ``O_APPEND``, created 0600, and every record is fsynced. If a record cannot be written
the caller refuses the mutation (AU-5). Rotation is left to the site (logrotate ``copytruncate`` breaks
the chain visibly at the cut, which :func:`verify_chain` reports).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

GENESIS = "sha256:" + "0" * 64  # prev_hash of the first record in a file
_TAIL_BLOCK = 64 * 1024
_TAIL_MAX_SCAN = 8 * 1024 * 1024  # tail() reads at most this much from the end of the file


class AuditUnavailable(Exception):
    """The audit record could not be written; the caller must refuse the mutation."""


def line_hash(line: bytes) -> str:
    return "sha256:" + hashlib.sha256(line.rstrip(b"\n")).hexdigest()


class AuditLog:
    def __init__(
        self,
        path: str | Path,
        *,
        host: str | None = None,
        agent_version: str | None = None,
        mono_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self.path = Path(path).expanduser()
        self.host, self.agent_version = host, agent_version
        self._mono_ns = mono_ns
        self._lock = threading.Lock()
        self._prev: str | None = None  # hash of the last line written; read from the file on first use

    def append(self, **record: object) -> dict[str, object]:
        """Write one record (fsynced) and return it; raises AuditUnavailable when it cannot be written."""
        with self._lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    prev = self._prev if self._prev is not None else _last_hash(fd)
                    entry = {
                        "at": datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
                        "mono_ns": self._mono_ns(),
                        "host": self.host,
                        "agent_version": self.agent_version,
                        **record,
                        "prev_hash": prev,
                    }
                    line = (json.dumps(entry, separators=(",", ":"), default=str) + "\n").encode()
                    if os.write(fd, line) != len(line):
                        raise OSError("short write")
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                self._prev = None  # re-read the chain's end next time
                raise AuditUnavailable(f"{self.path}: {exc.strerror or exc}") from None
            self._prev = line_hash(line)
            return entry

    def try_append(self, **record: object) -> bool:
        try:
            self.append(**record)
        except AuditUnavailable:
            return False
        return True

    def tail(self, n: int = 100, engine: str | None = None) -> list[dict]:
        """The last ``n`` records (for ``engine`` only, when given), oldest first. Reads backwards from the
        end of the file, at most 8 MiB; unreadable or corrupt lines are skipped."""
        out: list[dict] = []
        for raw in _reverse_lines(self.path):
            try:
                rec = json.loads(raw)
            except ValueError:
                continue
            if isinstance(rec, dict) and (engine is None or rec.get("engine") == engine):
                out.append(rec)
                if len(out) >= n:
                    break
        return list(reversed(out))


def _last_hash(fd: int) -> str:
    size = os.fstat(fd).st_size
    if size == 0:
        return GENESIS
    start = max(0, size - _TAIL_BLOCK)
    data = os.pread(fd, size - start, start)
    lines = [ln for ln in data.split(b"\n") if ln.strip()]
    return line_hash(lines[-1]) if lines else GENESIS


def _reverse_lines(path: Path):
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed in finally; a generator
    except OSError:
        return
    try:
        pos = f.seek(0, os.SEEK_END)
        scanned, rest = 0, b""
        while pos > 0 and scanned < _TAIL_MAX_SCAN:
            step = min(_TAIL_BLOCK, pos)
            pos -= step
            scanned += step
            f.seek(pos)
            chunk = f.read(step) + rest
            parts = chunk.split(b"\n")
            rest = parts[0]  # maybe a partial line: joined with the next (earlier) block
            for raw in reversed(parts[1:]):
                if raw.strip():
                    yield raw.decode("utf-8", errors="replace")
        if pos == 0 and rest.strip():
            yield rest.decode("utf-8", errors="replace")
    except OSError:
        return
    finally:
        f.close()


def verify_chain(path: str | Path) -> list[int]:
    """Line numbers (1-based) whose ``prev_hash`` does not match the line before: empty when intact."""
    broken: list[int] = []
    prev = GENESIS
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                rec = json.loads(raw)
            except ValueError:
                broken.append(n)
                prev = line_hash(raw)
                continue
            if not isinstance(rec, dict) or rec.get("prev_hash") != prev:
                broken.append(n)
            prev = line_hash(raw)
    return broken
