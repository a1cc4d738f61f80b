"""The audit chain's format and its two side files: the record MAC, the key file and the head file.

The key is 32 random bytes, hex, in ``audit.key`` beside the log (created 0600, atomically; never logged
or served). ``audit.head`` beside it holds the last ``seq`` and ``mac`` (and an HMAC of both), replaced
atomically after every record, so lines cut off the end of the log are detected. Used by the writer
(:mod:`agents.audit`) and the verifier (:mod:`agents.audit_verify`); stdlib only.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

GENESIS = "sha256:" + "0" * 64  # prev_hash of the first record of an old-format (unkeyed) log
GENESIS_MAC = "hmac-sha256:" + "0" * 64  # prev_mac of the first keyed record of a new log
HEAD_FORMAT = "llmconsole.audit-head/1"
# Actions of the records the agent writes about the chain itself (verify reports the last two as problems):
CONTINUED = "audit-continued"  # starts a log found empty or missing while the head names records
HEAD_MISSING = "audit-head-missing"  # the agent found no head beside keyed records
HEAD_ALTERED = "audit-head-altered"  # the agent found the head malformed or its HMAC wrong
_MAC_SUFFIX = re.compile(rb',"mac":"(hmac-sha256:[0-9a-f]{64})"\}$')


def line_hash(line: bytes) -> str:
    """SHA-256 of one line (without its newline): the old unkeyed chain's link."""
    return "sha256:" + hashlib.sha256(line.rstrip(b"\n")).hexdigest()


def default_paths(log: Path) -> tuple[Path, Path]:
    """``(key, head)`` beside ``log``: ``audit.log`` → ``audit.key``, ``audit.head``."""
    return log.with_name(log.stem + ".key"), log.with_name(log.stem + ".head")


def hmac_sha256(key: bytes, data: bytes) -> str:
    """``"hmac-sha256:<hex>"`` of ``data``: a record's ``mac``."""
    return "hmac-sha256:" + hmac.new(key, data, hashlib.sha256).hexdigest()


def _head_mac(key: bytes, seq: int, mac: str) -> str:
    return hmac_sha256(key, f"{HEAD_FORMAT}\n{seq}\n{mac}".encode())


def keyed_fields(line: bytes, key: bytes) -> tuple[dict, bool] | None:
    """``(record, mac_ok)`` for a keyed line (a JSON object ending in ``"mac"``), else None."""
    m = _MAC_SUFFIX.search(line)
    rec = json_object(line)
    if m is None or rec is None or rec.get("mac") != m.group(1).decode():
        return None
    body = line[: m.start()] + b"}"
    return rec, hmac.compare_digest(hmac_sha256(key, body), rec["mac"])


def json_object(line: bytes) -> dict | None:
    """The JSON object on ``line``, or None when it is not one."""
    try:
        rec = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return rec if isinstance(rec, dict) else None


def is_seq(value: object) -> bool:
    """A valid record ``seq``: an int of at least 1."""
    return type(value) is int and value >= 1


# --- the key file ------------------------------------------------------------------------------------


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
        write_all(fd, key.hex().encode() + b"\n")
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
        write_all(fd, key.hex().encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)


# --- the head file -----------------------------------------------------------------------------------


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
    rec = json_object(data)
    if (
        rec is None
        or rec.get("format") != HEAD_FORMAT
        or not is_seq(rec.get("seq"))
        or not isinstance(rec.get("mac"), str)
        or not isinstance(rec.get("head_mac"), str)
    ):
        raise ValueError("audit head file is malformed")
    return Head(rec["seq"], rec["mac"], rec["head_mac"])


def write_head(path: Path, key: bytes, seq: int, mac: str) -> None:
    """Replace the head file atomically (temp file, fsync, rename). The directory is not fsynced: after a
    crash the previous head may come back, which verify and the writer accept as a head that lags."""
    data = (
        json.dumps(
            {"format": HEAD_FORMAT, "seq": seq, "mac": mac, "head_mac": _head_mac(key, seq, mac)},
            separators=(",", ":"),
        ).encode()
        + b"\n"
    )
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_all(fd: int, data: bytes) -> None:
    """One ``os.write`` of all of ``data``; a short write raises OSError(ENOSPC)."""
    if os.write(fd, data) != len(data):
        raise OSError(errno.ENOSPC, "short write")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
