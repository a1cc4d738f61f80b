"""Append-only audit log of mutating API requests and the agent's own decisions: one JSON line each,
written and fsynced before acting, chained with HMAC-SHA256 so edits, removals, reordering and
truncation are detected (:func:`verify_log`, ``llmconsole agent audit verify``).

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

The key is 32 random bytes, hex, in ``audit.key`` beside the log (created 0600 at the first record,
atomically; never logged or served). ``audit.head`` beside it holds the last ``seq`` and ``mac`` (and
an HMAC of both), replaced atomically after every record, so lines cut off the end are detected.

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
import errno
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

GENESIS = "sha256:" + "0" * 64  # prev_hash of the first record of an old-format (unkeyed) log
GENESIS_MAC = "hmac-sha256:" + "0" * 64  # prev_mac of the first keyed record of a new log
HEAD_FORMAT = "llmconsole.audit-head/1"
CONTINUED = "audit-continued"  # action of the record that starts a log found empty while the head names records
HEAD_MISSING = "audit-head-missing"  # the agent found no head beside keyed records (verify: a problem)
HEAD_ALTERED = "audit-head-altered"  # the agent found the head malformed or its HMAC wrong (verify: a problem)
RESERVED = frozenset({"seq", "prev_mac", "mac"})
_TAIL_BLOCK = 64 * 1024
_TAIL_MAX_SCAN = 8 * 1024 * 1024  # tail() reads at most this much from the end of the file
_MAX_LINE = 1024 * 1024  # verify: a longer line is not a record
_MAC_SUFFIX = re.compile(rb',"mac":"(hmac-sha256:[0-9a-f]{64})"\}$')
_AT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})")


class AuditUnavailable(Exception):
    """The audit record could not be written; the caller must refuse the mutation. ``str()`` never
    names a filesystem path (it may reach unauthenticated callers); ``path`` is the log's path."""

    def __init__(self, reason: str, path: Path | None = None) -> None:
        super().__init__(reason)
        self.reason, self.path = reason, path


def line_hash(line: bytes) -> str:
    """SHA-256 of one line (without its newline): the old unkeyed chain's link."""
    return "sha256:" + hashlib.sha256(line.rstrip(b"\n")).hexdigest()


def default_paths(log: Path) -> tuple[Path, Path]:
    """``(key, head)`` beside ``log``: ``audit.log`` → ``audit.key``, ``audit.head``."""
    return log.with_name(log.stem + ".key"), log.with_name(log.stem + ".head")


def _mac(key: bytes, data: bytes) -> str:
    return "hmac-sha256:" + hmac.new(key, data, hashlib.sha256).hexdigest()


def _head_mac(key: bytes, seq: int, mac: str) -> str:
    return _mac(key, f"{HEAD_FORMAT}\n{seq}\n{mac}".encode())


def keyed_fields(line: bytes, key: bytes) -> tuple[dict, bool] | None:
    """``(record, mac_ok)`` for a keyed line (a JSON object ending in ``"mac"``), else None."""
    m = _MAC_SUFFIX.search(line)
    rec = _json_object(line)
    if m is None or rec is None or rec.get("mac") != m.group(1).decode():
        return None
    body = line[: m.start()] + b"}"
    return rec, hmac.compare_digest(_mac(key, body), rec["mac"])


def _json_object(line: bytes) -> dict | None:
    try:
        rec = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return rec if isinstance(rec, dict) else None


def _is_seq(value: object) -> bool:
    return type(value) is int and value >= 1


# --- key and head files ----------------------------------------------------------------------------


def read_key(path: Path) -> bytes | None:
    """The key, or None when the file does not exist. OSError when it cannot be read (a symlink is
    refused); ValueError when it is not 64 hex digits."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        data = os.read(fd, 1024)
    finally:
        os.close(fd)
    text = data.strip()
    if not re.fullmatch(rb"[0-9a-f]{64}", text):
        raise ValueError("audit key file is malformed (expected 64 hex digits)")
    return bytes.fromhex(text.decode())


def create_key(path: Path) -> bytes:
    """Create the key file (0600) unless it exists; return the key in it. Written to a private temp file
    (``O_EXCL``) and linked into place, so no reader ever sees a partial key and no key is replaced."""
    key = secrets.token_bytes(32)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        _write_all(fd, key.hex().encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another writer won: use its key
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EXDEV):
                raise
            _create_direct(path, key)  # a filesystem without hard links
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    _fsync_dir(path.parent)
    got = read_key(path)
    if got is None:
        raise FileNotFoundError(errno.ENOENT, "audit key vanished while being created")
    return got


def _create_direct(path: Path, key: bytes) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, 0o600)
        _write_all(fd, key.hex().encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Head:
    seq: int
    mac: str
    head_mac: str

    def valid(self, key: bytes) -> bool:
        return hmac.compare_digest(_head_mac(key, self.seq, self.mac), self.head_mac)


def read_head(path: Path) -> Head | None:
    """The head file, or None when it does not exist. ValueError when malformed, OSError if unreadable."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        data = os.read(fd, 4096)
    finally:
        os.close(fd)
    rec = _json_object(data)
    if (
        rec is None
        or rec.get("format") != HEAD_FORMAT
        or not _is_seq(rec.get("seq"))
        or not isinstance(rec.get("mac"), str)
        or not isinstance(rec.get("head_mac"), str)
    ):
        raise ValueError("audit head file is malformed")
    return Head(rec["seq"], rec["mac"], rec["head_mac"])


def write_head(path: Path, key: bytes, seq: int, mac: str) -> None:
    """Replace the head file atomically (temp file, fsync, rename). The directory is not fsynced: after a
    crash the previous head may come back, which verify and the writer accept as a head that lags."""
    data = json.dumps(
        {"format": HEAD_FORMAT, "seq": seq, "mac": mac, "head_mac": _head_mac(key, seq, mac)},
        separators=(",", ":"),
    ).encode() + b"\n"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        _write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _write_all(fd: int, data: bytes) -> None:
    if os.write(fd, data) != len(data):
        raise OSError(errno.ENOSPC, "short write")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
            request_id=uuid.uuid4().hex, actor="agent", role=None, auth="internal", remote=None,
            action=action, engine=engine, **extra, result=result,
        )  # fmt: skip

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
            _write_all(fd, data)
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
        rec = got[0] if got is not None and got[1] and _is_seq(got[0].get("seq")) else None
        if rec is not None and (head is None or rec["seq"] > head.seq):
            seq, mac = rec["seq"], rec["mac"]
        elif head is not None:
            seq, mac = head.seq, head.mac
            if size == 0:
                notices.append((CONTINUED, f"log file was empty or missing; seq 1..{seq} are in an earlier file"))
        else:
            seq, mac = 0, (line_hash(last) if last else GENESIS_MAC)
        if trouble is not None:
            what = "missing" if trouble == HEAD_MISSING else "altered or unreadable"
            notices.append((trouble, f"the head file was {what}; lines after seq {seq} may have been cut off"))
        return seq, mac, lead, notices


def _agent_fields(action: str, result: str) -> dict[str, object]:
    return {"request_id": None, "actor": "agent", "role": None, "auth": "internal", "remote": None,
            "action": action, "engine": None, "result": result}  # fmt: skip


def _seal(entry: dict[str, object], key: bytes) -> tuple[bytes, str]:
    body = json.dumps(entry, separators=(",", ":"), default=str).encode()
    mac = _mac(key, body)
    return body[:-1] + b',"mac":"' + mac.encode() + b'"}\n', mac


def _looks_keyed(line: bytes) -> bool:
    rec = _json_object(line) if line else None
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


# --- verification ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """The result of :func:`verify_log`. ``problem`` (with ``bad_line`` when one line is to blame) is
    None when the log is intact."""

    path: Path
    records: int = 0  # keyed records
    legacy: int = 0  # old-format unkeyed lines before the keyed chain
    first_seq: int | None = None
    last_seq: int | None = None
    last_at: str | None = None
    bad_line: int | None = None
    problem: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.problem is None

    def summary(self) -> str:
        if self.problem is not None:
            where = f"line {self.bad_line}: " if self.bad_line is not None else ""
            return f"audit log {self.path}: {where}{self.problem}"
        if self.records == 0 and self.legacy == 0:
            return f"audit log {self.path}: no records yet"
        parts = [f"audit log {self.path}: {self.records} records intact"]
        if self.legacy:
            parts.append(f" (after {self.legacy} legacy unkeyed records on lines 1-{self.legacy})")
        if self.last_seq is not None:
            parts.append(f", last seq {self.last_seq} at {self.last_at or 'an unknown time'}")
        return "".join(parts)


class _Chain:
    """State of one pass over the log (see :func:`verify_log`)."""

    def __init__(self, key: bytes | None, key_path: Path) -> None:
        self.key, self.key_path = key, key_path
        self.records = self.legacy = 0
        self.first_seq: int | None = None
        self.seq = 0
        self.prev_mac = GENESIS_MAC
        self.prev_hash = GENESIS
        self.last_at: str | None = None
        self.want_seq: int | None = None  # the head's seq: its record's mac is kept in want_mac
        self.want_mac: str | None = None
        self.notes: list[str] = []

    def check(self, n: int, raw: bytes) -> str | None:
        """Why line ``n`` breaks the chain, or None."""
        if not raw.endswith(b"\n"):
            return "incomplete last line (cut mid-line or a partial write)"
        line = raw[:-1]
        if not line.strip():
            return "blank line (not a record)"
        rec = _json_object(line)
        if rec is None:
            return "not a JSON object (junk or a damaged record)"
        if "mac" not in rec:
            if self.records:
                return "record without a MAC after keyed records (inserted, or written by an old agent)"
            if rec.get("prev_hash") != self.prev_hash:
                return "legacy unkeyed record does not chain to the line before (edited, removed or reordered)"
            self.legacy += 1
            self.prev_hash = line_hash(line)
            self.prev_mac = self.prev_hash  # the first keyed record pins the last unkeyed line
            return None
        if self.key is None:
            return f"keyed record but the key {self.key_path} is missing: cannot verify"
        got = keyed_fields(line, self.key)
        if got is None:
            return "damaged record (its mac field is malformed)"
        rec, mac_ok = got
        if not mac_ok:
            return "edited (its HMAC does not match its content)"
        seq = rec.get("seq")
        if not _is_seq(seq):
            return "record without a valid seq"
        if rec.get("actor") == "agent" and rec.get("action") in (HEAD_MISSING, HEAD_ALTERED):
            what = "missing" if rec["action"] == HEAD_MISSING else "altered"
            return f"the agent found the head file {what} when writing this record: lines before it may have been cut off"
        continued = n == 1 and rec.get("action") == CONTINUED and rec.get("actor") == "agent"
        if continued:
            self.notes.append(f"continues a rotated-out file that ended at seq {seq - 1}")
        elif seq != self.seq + 1:
            why = "records removed or reordered" if seq > self.seq + 1 else "reordered or duplicated"
            return f"out of sequence: seq {seq} after seq {self.seq} ({why})"
        elif rec.get("prev_mac") != self.prev_mac:
            if self.records == 0 and self.legacy:
                return "the legacy unkeyed records before it were changed (chain anchor does not match)"
            return "does not chain to the record before (prev_mac differs: spliced from elsewhere?)"
        self.records += 1
        self.first_seq = seq if self.first_seq is None else self.first_seq
        self.seq, self.prev_mac = seq, rec["mac"]
        at = rec.get("at")
        self.last_at = at if isinstance(at, str) and _AT.fullmatch(at) else None
        if seq == self.want_seq:
            self.want_mac = rec["mac"]
        return None


def verify_log(
    path: str | Path, *, key_path: str | Path | None = None, head_path: str | Path | None = None
) -> Verdict:
    """Check the whole log against its key and head; the first problem found is reported. Raises OSError
    when a file exists but cannot be read."""
    log = Path(path).expanduser()
    key_default, head_default = default_paths(log)
    kp = Path(key_path).expanduser() if key_path is not None else key_default
    hp = Path(head_path).expanduser() if head_path is not None else head_default
    try:
        key = read_key(kp)
    except ValueError as exc:
        return Verdict(log, problem=f"{exc}: {kp}")
    notes: list[str] = []
    mode = os.stat(kp).st_mode & 0o777 if key is not None else 0
    if mode & 0o077:
        notes.append(f"key file {kp} is readable by group or others (mode {mode:04o}): chmod 600 it")
    head_problem: str | None = None
    try:
        head = read_head(hp)
    except ValueError as exc:
        head, head_problem = None, f"{exc}: {hp}"
    chain = _Chain(key, kp)
    if head is not None:
        chain.want_seq = head.seq
    n = 0
    try:
        f = open(log, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        f = None
    if f is not None:
        with f:
            while True:
                raw = f.readline(_MAX_LINE + 1)
                if not raw:
                    break
                n += 1
                why = "longer than 1 MiB (not a record)" if len(raw) > _MAX_LINE else chain.check(n, raw)
                if why is not None:
                    return _verdict(log, chain, notes, bad_line=n, problem=why)
    if head_problem is not None:
        return _verdict(log, chain, notes, problem=head_problem)
    if head is None:
        if chain.records:
            return _verdict(log, chain, notes, problem=f"head file {hp} is missing: truncation cannot be ruled out")
        if chain.legacy:
            notes.append("unkeyed old-format log: an edit with recomputed hashes would pass")
        return _verdict(log, chain, notes)
    if key is None:
        return _verdict(log, chain, notes, problem=f"key file {kp} is missing: the head cannot be verified")
    if not head.valid(key):
        return _verdict(log, chain, notes, problem=f"head file {hp} was altered (its HMAC does not match)")
    if f is None:
        return _verdict(log, chain, notes, problem=f"the log file is missing but the head says the last record is seq {head.seq}")
    if head.seq > chain.seq:
        end = f"seq {chain.seq}" if chain.records else "no keyed record"
        return _verdict(
            log, chain, notes, bad_line=n + 1,
            problem=f"truncated: the head says the last record is seq {head.seq}, the file ends at {end}",
        )  # fmt: skip
    if chain.want_mac != head.mac:
        return _verdict(log, chain, notes, problem=f"record seq {head.seq} is not the one the head recorded (replaced?)")
    if head.seq < chain.seq:
        notes.append(f"head lags {chain.seq - head.seq} record(s) (agent stopped while writing?)")
    return _verdict(log, chain, notes)


def _verdict(log: Path, chain: _Chain, notes: list[str], **kw: object) -> Verdict:
    return Verdict(
        log, records=chain.records, legacy=chain.legacy, first_seq=chain.first_seq,
        last_seq=chain.seq if chain.records else None, last_at=chain.last_at,
        notes=tuple(notes + chain.notes), **kw,  # type: ignore[arg-type]
    )  # fmt: skip
