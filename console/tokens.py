"""A host's operator token, from ``token_env`` or ``token_file``: what the console sends as its Bearer
token for actions, logs and bundles.

A ``token_file`` is re-read when it changes (no restart), and one that group or others may read gets a
warning (as ssh does for keys). A missing or malformed token disables actions with one line saying why.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from console.netutil import token_file_warning
from console.settings import HostConfig


def read_token(host: HostConfig, environ: Mapping[str, str]) -> tuple[str | None, str | None]:
    """(token, None) or (None, reason actions are disabled) for one host."""
    got = TokenState.read(host, environ)
    return got.value, got.block


_TOKEN = re.compile(r"[\x21-\x7e]+")  # what can go in an Authorization header as it is
_NOT_A_TOKEN = "does not hold one token (printable ASCII without spaces)"


@dataclass(frozen=True, slots=True)
class TokenState:
    """One host's token as last read: ``value`` or ``block`` (why actions are disabled), a permission
    ``warning``, and ``stamp`` (the token file's identity, size and times) to notice a change."""

    value: str | None
    block: str | None
    warning: str | None = None
    stamp: tuple[int, ...] | None = None

    @classmethod
    def read(
        cls, host: HostConfig, environ: Mapping[str, str], known: TokenState | None = None
    ) -> TokenState:
        """Read the host's token; with ``known``, a token file whose stamp has not changed is not re-read."""
        if host.token_env is not None:
            value = environ.get(host.token_env, "").strip()
            if not value:
                return cls(None, f"actions disabled on {host.name}: ${host.token_env} is not set")
            if not _TOKEN.fullmatch(value):
                return cls(None, f"actions disabled on {host.name}: ${host.token_env} {_NOT_A_TOKEN}")
            return cls(value, None)
        if host.token_file is None:
            return cls(
                None, f"actions disabled on {host.name}: no token configured (token_env or token_file)"
            )
        path = Path(host.token_file).expanduser()
        try:
            st = path.stat()
        except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
            return cls(
                None,
                f"actions disabled on {host.name}: cannot read {path}: {getattr(exc, 'strerror', None) or exc}",
            )
        stamp = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode)
        if known is not None and known.stamp == stamp:
            return known
        warning = token_file_warning(path, st.st_mode)
        try:
            value = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not UTF-8 text"
            return cls(None, f"actions disabled on {host.name}: cannot read {path}: {reason}", warning, stamp)
        if not value:
            return cls(None, f"actions disabled on {host.name}: {path} is empty", warning, stamp)
        if not _TOKEN.fullmatch(value):
            return cls(None, f"actions disabled on {host.name}: {path} {_NOT_A_TOKEN}", warning, stamp)
        return cls(value, None, warning, stamp)

    def hint(self, host: HostConfig) -> str:
        """What to check when the agent refuses this host's token (the tail of an "unauthorized" message)."""
        if self.value is not None:
            env, path = host.token_env, Path(host.token_file or "").expanduser()
            return f"check ${env}" if env is not None else f"check token_file {path}"
        if host.token_env is None and host.token_file is None:
            return "no token configured for this host (set token_env or token_file)"
        why = (self.block or "").split(": ", 1)[-1]  # "$X is not set", "cannot read …", "… is empty"
        return f"no token configured for this host: {why}"
