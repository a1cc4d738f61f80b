"""Read a user-named file whole, bounded, with one-line errors: the console's verbs that take a file
(``bench --prompts-file``, ``bench --compare``, ``calc --measured``) share this. The agent-side ``probe``
verb has its own reader (agents may not import the console)."""

from __future__ import annotations

from pathlib import Path


def read_bounded(path: str, limit: int, error: type[Exception]) -> bytes:
    """The bytes of ``path`` (at most ``limit``); ``error`` with one line when it cannot be read or is larger."""
    try:
        with Path(path).open("rb") as fh:
            raw = fh.read(limit + 1)
    except FileNotFoundError:
        raise error(f"cannot read {path}: no such file") from None
    except IsADirectoryError:
        raise error(f"cannot read {path}: it is a directory") from None
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(raw) > limit:
        raise error(f"{path} is larger than {limit / (1 << 20):g} MiB")
    return raw
