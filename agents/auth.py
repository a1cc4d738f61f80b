"""Bearer tokens for the agent API: a tokens file of names, roles and SHA-256 hashes.

File format, one token per line (``#`` starts a comment)::

    <name> <role> sha256:<hex digest of the token>

Roles: ``viewer`` (read) and ``operator`` (read + start/stop/restart). Tokens are 256-bit random strings
(``secrets.token_urlsafe(32)``), compared by hash in constant time; the plain token never touches the disk
(``llmconsole agent token add`` prints it once). Through an SSH tunnel every caller is 127.0.0.1, so
identity comes from the token, never from the address.

The agent re-reads the file when it changes (:class:`TokenFile`, checked at most once a second), so tokens
rotate without a restart. A file that becomes unreadable or malformed fails closed: every request is then
unauthenticated.
No authentication decision is ever cached (exporter-toolkit CVE-2022-46146 was a poisoned auth cache).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import re
import secrets
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

ROLES = ("viewer", "operator")
ROLE_RANK = {"viewer": 1, "operator": 2}
NAME_RE = re.compile(r"[A-Za-z0-9_.@+-]{1,64}")
_FAKE_DIGEST = "sha256:" + "0" * 64  # compared against when no entry exists, so timing does not tell


class TokenFileError(ValueError):
    """The tokens file is unreadable or malformed; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class Identity:
    name: str | None  # None: no valid token presented
    role: str | None

    def has(self, role: str) -> bool:
        """True when this identity's role is ``role`` or above (operator includes viewer)."""
        return self.role is not None and ROLE_RANK[self.role] >= ROLE_RANK[role]


ANONYMOUS = Identity(None, None)


def hash_token(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "llmc_" + secrets.token_urlsafe(32)


def _parse(text: str, where: str) -> tuple[tuple[str, str, str], ...]:
    entries = []
    names: set[str] = set()
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 3 or not re.fullmatch(r"sha256:[0-9a-fA-F]{64}", parts[2]):
            raise TokenFileError(f"{where}:{n}: expected '<name> <role> sha256:<64 hex digits>'")
        if parts[1] not in ROLES:
            raise TokenFileError(f"{where}:{n}: unknown role {parts[1]!r} (use {' or '.join(ROLES)})")
        if parts[0] in names:
            raise TokenFileError(f"{where}:{n}: duplicate token name {parts[0]!r}")
        names.add(parts[0])
        entries.append((parts[0], parts[1], parts[2].lower()))
    return tuple(entries)


@dataclass(frozen=True, slots=True)
class TokenStore:
    """The tokens in force. ``required``: a tokens file is configured (even an empty one), so reads
    need a token too; without it (no file) reads are open and mutations are refused."""

    entries: tuple[tuple[str, str, str], ...] = ()  # (name, role, "sha256:<hex>")
    required: bool = False

    @property
    def configured(self) -> bool:
        return self.required or bool(self.entries)

    def current(self) -> TokenStore:
        return self

    @classmethod
    def load(cls, path: str | Path | None) -> TokenStore:
        if path is None:
            return cls()
        p = Path(path).expanduser()
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or exc
            raise TokenFileError(f"{p}: cannot read tokens file: {reason}") from None
        return cls(_parse(text, str(p)), required=True)

    def identify(self, authorization: str | None) -> Identity:
        """The identity a ``Authorization: Bearer <token>`` header proves (ANONYMOUS if none)."""
        if not authorization or not self.entries:
            return ANONYMOUS
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or len(token) > 512:
            return ANONYMOUS
        digest = hash_token(token)
        found = ANONYMOUS
        for name, role, stored in self.entries:  # no early exit: same work whichever entry matches
            if hmac.compare_digest(digest, stored):
                found = Identity(name, role)
        if found is ANONYMOUS:
            hmac.compare_digest(digest, _FAKE_DIGEST)
        return found


class TokenSource(Protocol):
    def current(self) -> TokenStore: ...


class TokenFile:
    """A tokens file re-read whenever it changes, so ``llmconsole agent token add/remove`` against a running
    agent takes effect without a restart. Its identity (device, inode, size, mtime, ctime) is checked at most
    once per ``check_every_s``; a file changed within the last two seconds is re-read at the next check
    as well (two writes inside one timestamp tick, same size, would otherwise look unchanged)."""

    SETTLE_S = 2.0

    def __init__(
        self, path: str | Path, *, check_every_s: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.path = Path(path).expanduser()
        self.check_every_s = check_every_s
        self._clock = clock
        self._lock = threading.Lock()
        self._key: tuple[int, ...] | None = None
        self._checked = -float("inf")
        self._last_error: str | None = None
        self._store = TokenStore.load(self.path)  # start-up: a bad file is an error, not a silent lock-out
        self._key = self._stat_key()

    def _stat_key(self) -> tuple[int, ...] | None:
        """The file's identity, or None when it cannot be stat'ed or changed too recently to trust."""
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        if time.time() - max(st.st_mtime, st.st_ctime) < self.SETTLE_S:
            return None
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def current(self) -> TokenStore:
        now = self._clock()
        if now - self._checked < self.check_every_s:
            return self._store
        with self._lock:
            if now - self._checked < self.check_every_s:
                return self._store
            self._checked = now
            key = self._stat_key()
            if key is not None and key == self._key:
                return self._store
            try:
                store = TokenStore.load(self.path)
            except TokenFileError as exc:
                if str(exc) != self._last_error:  # once per cause, not once a second
                    log.error("%s; every request is unauthenticated until it is fixed", exc)
                self._last_error = str(exc)
                store = TokenStore((), required=True)
            else:
                self._last_error = None
            if store.entries != self._store.entries:
                log.info("tokens file %s re-read: %d token(s)", self.path, len(store.entries))
            self._store, self._key = store, key
        return self._store


def loose_permissions(path: str | Path) -> str | None:
    """A warning when a secret file is readable by group or others (tokens, TLS keys); None if fine."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return None
    if mode & 0o077:
        return f"{path} is readable by group/others (mode {mode:04o}); chmod 600 it"
    return None


# --- managing the file (``llmconsole agent token ...``) -----------------------------------------------


def _check_name_role(name: str, role: str) -> None:
    if not NAME_RE.fullmatch(name):
        raise TokenFileError(f"bad token name {name!r}: use 1-64 letters, digits or _ . @ + -")
    if role not in ROLES:
        raise TokenFileError(f"unknown role {role!r} (use {' or '.join(ROLES)})")


def list_tokens(path: str | Path) -> list[tuple[str, str]]:
    """(name, role) of every token in the file (a missing file has none)."""
    p = Path(path).expanduser()
    if not p.exists():
        return []
    return [(name, role) for name, role, _ in TokenStore.load(p).entries]


def add_token(path: str | Path, name: str, role: str) -> str:
    """Generate a token, append its hashed line (the file is created 0600) and return the plain token."""
    _check_name_role(name, role)
    p = Path(path).expanduser()
    if any(n == name for n, _ in list_tokens(p)):
        raise TokenFileError(f"{p}: a token named {name!r} exists; remove it first")
    token = new_token()
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        existing = p.read_bytes() if p.exists() else b""
        prefix = b"\n" if existing and not existing.endswith(b"\n") else b""
        fd = os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, prefix + f"{name} {role} {hash_token(token)}\n".encode())
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise TokenFileError(f"{p}: cannot write tokens file: {exc.strerror or exc}") from None
    return token


def remove_token(path: str | Path, name: str) -> bool:
    """Drop the token named ``name`` (atomic rewrite, comments kept); False when there is none."""
    p = Path(path).expanduser()
    if not any(n == name for n, _ in list_tokens(p)):
        return False
    lines = p.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [ln for ln in lines if (ln.split("#", 1)[0].split() or [""])[0] != name]
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, "".join(kept).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, p)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise TokenFileError(f"{p}: cannot rewrite tokens file: {exc.strerror or exc}") from None
    return True
