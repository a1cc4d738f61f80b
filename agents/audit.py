"""Append-only audit log of mutating API requests: one JSON line each, flushed to disk before acting."""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path


class AuditUnavailable(Exception):
    """The audit record could not be written; the caller must refuse the mutation."""


class AuditLog:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self._lock = threading.Lock()

    def append(self, **record: object) -> None:
        entry = {"at": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"), **record}
        line = (json.dumps(entry, separators=(",", ":"), default=str) + "\n").encode()
        with self._lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    if os.write(fd, line) != len(line):
                        raise OSError("short write")
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                raise AuditUnavailable(f"{self.path}: {exc.strerror or exc}") from None

    def try_append(self, **record: object) -> bool:
        try:
            self.append(**record)
        except AuditUnavailable:
            return False
        return True

    def tail(self, n: int = 100, engine: str | None = None) -> list[dict]:
        try:
            lines = self.path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return []
        out = []
        for raw in reversed(lines):
            try:
                rec = json.loads(raw)
            except ValueError:
                continue
            if engine is None or rec.get("engine") == engine:
                out.append(rec)
                if len(out) >= n:
                    break
        return list(reversed(out))
