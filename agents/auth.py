"""Bearer tokens for the agent API: a tokens file of names, roles and SHA-256 hashes.

File format, one token per line (``#`` starts a comment)::

    <name> <role> sha256:<hex digest of the token>

Roles: ``viewer`` (read) and ``operator`` (read + start/stop/restart). Tokens are compared by hash in
constant time; the plain token never touches the disk. Through an SSH tunnel every caller is 127.0.0.1,
so identity comes from the token, never from the address.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path

ROLES = ("viewer", "operator")


class TokenFileError(ValueError):
    """The tokens file is unreadable or malformed; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class Identity:
    name: str | None  # None: no valid token presented
    role: str | None


ANONYMOUS = Identity(None, None)


def hash_token(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "llmc_" + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class TokenStore:
    entries: tuple[tuple[str, str, str], ...] = ()  # (name, role, "sha256:<hex>")

    @property
    def configured(self) -> bool:
        return bool(self.entries)

    @classmethod
    def load(cls, path: str | Path | None) -> TokenStore:
        if path is None:
            return cls()
        p = Path(path).expanduser()
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise TokenFileError(f"{p}: cannot read tokens file: {exc.strerror or exc}") from None
        entries = []
        for n, raw in enumerate(text.splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            if len(parts) != 3 or not parts[2].startswith("sha256:") or len(parts[2]) != 7 + 64:
                raise TokenFileError(f"{p}:{n}: expected '<name> <role> sha256:<64 hex digits>'")
            if parts[1] not in ROLES:
                raise TokenFileError(f"{p}:{n}: unknown role {parts[1]!r} (use {' or '.join(ROLES)})")
            entries.append((parts[0], parts[1], parts[2].lower()))
        return cls(tuple(entries))

    def identify(self, authorization: str | None) -> Identity:
        if not authorization or not self.entries:
            return ANONYMOUS
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return ANONYMOUS
        digest = hash_token(token.strip())
        found = ANONYMOUS
        for name, role, stored in self.entries:  # no early exit: same work whichever entry matches
            if hmac.compare_digest(digest, stored):
                found = Identity(name, role)
        return found
