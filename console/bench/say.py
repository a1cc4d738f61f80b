"""One line on stderr for ``llmconsole bench``, prefixed with the program name; never raises."""

from __future__ import annotations

import contextlib
import sys

PROG = "llmconsole bench"


def say(text: str) -> None:
    """Write ``llmconsole bench: TEXT`` to stderr (a closed or broken stderr is ignored)."""
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(f"{PROG}: {text}\n")
        sys.stderr.flush()


__all__ = ["PROG", "say"]
