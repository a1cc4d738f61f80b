"""Append-only audit log of mutating API requests and the agent's own decisions: one JSON line each,
written and fsynced before acting, chained with HMAC-SHA256 so edits, removals, reordering and
truncation are detected (:func:`agents.audit_verify.verify_log`, ``llmconsole agent audit verify``).

Each record (NIST SP 800-53 AU-3: what, when, where, source, outcome, identity) carries::

    at          RFC 3339 UTC, microseconds (display; AU-8)
    mono_ns     monotonic clock, to order records across wall-clock jumps
    host, agent_version
    request_id  also returned to the caller as the X-Request-Id header
    actor       token name (never the token), null when unauthenticated, "agent" for the agent itself
    role, auth  the token's role; "bearer", "none", or "internal" (the agent's own records)
    remote      peer address (127.0.0.1 for every caller through an SSH tunnel: identity is ``actor``)
    action, engine, result   "allowed", "denied: <why>", "failed: <why>"
    seq         1, 2, 3, ... without gaps (AU-9)
    prev_mac    ``mac`` of the record before (the first: ``GENESIS_MAC``, or ``line_hash`` of the last
                unkeyed line of an old-format log, which pins that older part too)
    mac         "hmac-sha256:<hex>" of the line's bytes up to ``,"mac"`` plus ``}``; always the last key

The key (``audit.key``, created at the first record or by :meth:`AuditLog.prepare`) and the head
(``audit.head``, replaced after every record) live beside the log: :mod:`agents.audit_files`.

The log is opened ``O_APPEND`` (created 0600), locked with ``flock`` while a record is written, and
every record is fsynced. If a record cannot be written the caller refuses the mutation (AU-5).
A log found empty or missing while ``audit.head`` names records (rotation by ``copytruncate`` or by
moving the file) starts with an ``audit-continued`` record that carries on the chain; verify accepts
it on line 1 and says so. A head found missing (beside keyed records) or altered is never silently
rewritten: the writer first records ``audit-head-missing``/``audit-head-altered`` (actor "agent"), which
verify reports as a problem. A missing key with keyed records present refuses every record (a new key
would launder edits). Old-format lines (``prev_hash`` SHA-256 chain, no ``mac``) at the start of a log
are checked as that unkeyed chain; the keyed chain starts after them and its first ``prev_mac`` pins them.

Limits: anyone who can read ``audit.key`` (root, the agent's user) can rewrite the whole log, and an old
copy of ``audit.head`` put back after cutting the log to match hides the cut; ship the log off-host for
evidence against them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from agents.audit_files import (
    CONTINUED,
    GENESIS,
    GENESIS_MAC,
    HEAD_ALTERED,
    HEAD_FORMAT,
    HEAD_MISSING,
    Head,
    create_key,
    default_paths,
    hmac_sha256,
    is_seq,
    json_object,
    keyed_fields,
    line_hash,
    read_head,
    read_key,
    write_all,
    write_head,
)
from agents.audit_verify import Verdict, verify_log

RESERVED = frozenset({"seq", "prev_mac", "mac"})
_TAIL_BLOCK = 64 * 1024
_TAIL_MAX_SCAN = 8 * 1024 * 1024  # tail() reads at most this much from the end of the file


class AuditUnavailable(Exception):
    """The audit record could not be written; the caller must refuse the mutation. ``str()`` never
    names a filesystem path (it may reach unauthenticated callers); ``path`` is the log's path."""

    def __init__(self, reason: str, path: Path | None = None) -> None:
        super().__init__(reason)
        self.reason, self.path = reason, path


# --- the writer ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _State:
    dev: int
    ino: int
    size: int  # the log's size after our last record: anything else means another writer or a cut
    seq: int
    mac: str


class AuditLog:
    """Writes the log; ``key_path``/``head_path`` default to ``audit.key``/``audit.head`` beside it."""

    def __init__(
        self,
        path: str | Path,
        *,
        host: str | None = None,
        agent_version: str | None = None,
        mono_ns: Callable[[], int] = time.monotonic_ns,
        key_path: str | Path | None = None,
        head_path: str | Path | None = None,
    ) -> None:
        self.path = Path(path).expanduser()
        key_default, head_default = default_paths(self.path)
        self.key_path = Path(key_path).expanduser() if key_path is not None else key_default
        self.head_path = Path(head_path).expanduser() if head_path is not None else head_default
        self.host, self.agent_version = host, agent_version
        self._mono_ns = mono_ns
        self._lock = threading.Lock()
        self._key: bytes | None = None
        self._state: _State | None = None  # where the chain ends, as of our last record

    def prepare(self) -> None:
        """Create the state directory and the key now (at start-up) rather than at the first record, so an
        unusable directory is reported before serving. Raises AuditUnavailable."""
        with self._lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = self._open()
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                    self._key_for(fd)
                finally:
                    os.close(fd)
            except (OSError, ValueError) as exc:
                raise self._unavailable(exc) from None

    def append(self, **record: object) -> dict[str, object]:
        """Write one record (fsynced, chained, head updated) and return it; raises AuditUnavailable when it
        cannot be written."""
        clash = RESERVED & record.keys()
        if clash:
            raise TypeError(f"audit record fields {sorted(clash)} are set by the log itself")
        with self._lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = self._open()
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)  # released by close
                    return self._append_locked(fd, record)
                finally:
                    os.close(fd)
            except (OSError, ValueError) as exc:
                self._state = None  # re-read where the chain ends next time
                raise self._unavailable(exc) from None

    def append_agent(self, action: str, *, result: str, engine: str | None = None, **extra: object) -> dict:
        """A record of the agent's own decision (automatic restart, backoff, adoption, refusal)."""
        return self.append(
            request_id=uuid.uuid4().hex,
            actor="agent",
            role=None,
            auth="internal",
            remote=None,
            action=action,
            engine=engine,
            **extra,
            result=result,
        )

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
            except (ValueError, RecursionError):
                continue
            if isinstance(rec, dict) and (engine is None or rec.get("engine") == engine):
                out.append(rec)
                if len(out) >= n:
                    break
        return list(reversed(out))

    # internals

    def _open(self) -> int:
        return os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def _unavailable(self, exc: BaseException) -> AuditUnavailable:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return AuditUnavailable(f"audit log not writable: {why}", self.path)

    def _key_for(self, fd: int) -> bytes:
        """The key (created when no keyed record or head exists yet). Caller holds the flock."""
        if self._key is None:
            key = read_key(self.key_path)
            if key is None:
                if self.head_path.exists() or _looks_keyed(_last_line(fd)):
                    raise ValueError(
                        "audit key missing while the log has keyed records; "
                        "move the log and its head aside to start a new chain"
                    )
                key = create_key(self.key_path)
            self._key = key
        return self._key

    def _append_locked(self, fd: int, record: dict[str, object]) -> dict[str, object]:
        key = self._key_for(fd)
        st = os.fstat(fd)
        cached = self._state
        if cached is not None and (cached.dev, cached.ino, cached.size) == (st.st_dev, st.st_ino, st.st_size):
            seq, prev, lead, notices = cached.seq, cached.mac, b"", []
        else:
            seq, prev, lead, notices = self._chain_end(fd, key, st.st_size)
        out = [lead]
        for action, result in notices:  # the agent's own records of what it found, before the caller's
            seq += 1
            line, prev = _seal(self._entry(_agent_fields(action, result), seq, prev), key)
            out.append(line)
        entry = self._entry(record, seq + 1, prev)
        line, mac = _seal(entry, key)
        out.append(line)
        data = b"".join(out)
        try:
            write_all(fd, data)
            os.fsync(fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, st.st_size)  # leave the file as it was
            raise
        seq += 1
        self._state = _State(st.st_dev, st.st_ino, st.st_size + len(data), seq, mac)
        write_head(self.head_path, key, seq, mac)
        return entry

    def _entry(self, record: dict[str, object], seq: int, prev: str) -> dict[str, object]:
        return {
            "at": datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
            "mono_ns": self._mono_ns(),
            "host": self.host,
            "agent_version": self.agent_version,
            **record,
            "seq": seq,
            "prev_mac": prev,
        }

    def _chain_end(self, fd: int, key: bytes, size: int) -> tuple[int, str, bytes, list[tuple[str, str]]]:
        """``(last seq, its mac, bytes to write first, notices)`` from the head file and the log's last line.
        The later of the two wins, so a cut log continues from the head and the gap stays visible. A head
        that is missing (while the log has keyed records) or altered is not silently rewritten: a notice
        record says so, and verify reports it, since lines cut off the end before it cannot be ruled out."""
        notices: list[tuple[str, str]] = []
        last = _last_line(fd)
        try:
            head = read_head(self.head_path)
            trouble = HEAD_MISSING if head is None and _looks_keyed(last) else None
        except ValueError:
            head, trouble = None, HEAD_ALTERED
        if head is not None and not head.valid(key):
            head, trouble = None, HEAD_ALTERED
        lead = b"\n" if size and os.pread(fd, 1, size - 1) != b"\n" else b""  # after a partial line
        got = keyed_fields(last, key) if last else None
        rec = got[0] if got is not None and got[1] and is_seq(got[0].get("seq")) else None
        if rec is not None and (head is None or rec["seq"] > head.seq):
            seq, mac = rec["seq"], rec["mac"]
        elif head is not None:
            seq, mac = head.seq, head.mac
            if size == 0:
                notices.append(
                    (CONTINUED, f"log file was empty or missing; seq 1..{seq} are in an earlier file")
                )
        else:
            seq, mac = 0, (line_hash(last) if last else GENESIS_MAC)
        if trouble is not None:
            what = "missing" if trouble == HEAD_MISSING else "altered or unreadable"
            notices.append(
                (trouble, f"the head file was {what}; lines after seq {seq} may have been cut off")
            )
        return seq, mac, lead, notices


def _agent_fields(action: str, result: str) -> dict[str, object]:
    return {
        "request_id": None,
        "actor": "agent",
        "role": None,
        "auth": "internal",
        "remote": None,
        "action": action,
        "engine": None,
        "result": result,
    }


def _seal(entry: dict[str, object], key: bytes) -> tuple[bytes, str]:
    body = json.dumps(entry, separators=(",", ":"), default=str).encode()
    mac = hmac_sha256(key, body)
    return body[:-1] + b',"mac":"' + mac.encode() + b'"}\n', mac


def _looks_keyed(line: bytes) -> bool:
    rec = json_object(line) if line else None
    return rec is not None and "mac" in rec


def _last_line(fd: int) -> bytes:
    """The last complete, non-blank line (without its newline), or b"" (searches the last 64 KiB)."""
    size = os.fstat(fd).st_size
    if size == 0:
        return b""
    start = max(0, size - _TAIL_BLOCK)
    data = os.pread(fd, size - start, start)
    if not data.endswith(b"\n"):
        data = data[: data.rfind(b"\n") + 1]
    lines = data.split(b"\n")
    if start > 0:
        lines = lines[1:]  # the first may be the end of a longer line
    for ln in reversed(lines):
        if ln.strip():
            return ln
    return b""


def _reverse_lines(path: Path) -> Iterator[str]:
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


__all__ = [
    "CONTINUED",
    "GENESIS",
    "GENESIS_MAC",
    "HEAD_ALTERED",
    "HEAD_FORMAT",
    "HEAD_MISSING",
    "RESERVED",
    "AuditLog",
    "AuditUnavailable",
    "Head",
    "Verdict",
    "create_key",
    "default_paths",
    "keyed_fields",
    "line_hash",
    "read_head",
    "read_key",
    "verify_log",
    "write_head",
]
