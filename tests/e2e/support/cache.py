"""The e2e cache: where the vLLM virtualenv and the tiny model live (outside the repository), a lock
that serializes set-up between concurrent runs, and marker files that say a step finished.

``LLMCONSOLE_E2E_CACHE`` overrides the default ``~/.cache/llmconsole-e2e``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CACHE_ENV = "LLMCONSOLE_E2E_CACHE"
MARKER = ".llmconsole-e2e.json"


class SetupError(RuntimeError):
    """Set-up of the e2e environment failed; the message says which step and why."""


def cache_dir() -> Path:
    raw = os.environ.get(CACHE_ENV) or "~/.cache/llmconsole-e2e"
    path = Path(raw).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def locked(root: Path, timeout_s: float = 1800.0) -> Iterator[None]:
    """Hold an exclusive flock on ``root/setup.lock`` (another run setting up waits, never corrupts)."""
    lock_path = root / "setup.lock"
    with open(lock_path, "a+") as fh:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise SetupError(
                        f"another e2e set-up held {lock_path} for over {timeout_s:.0f}s"
                    ) from None
                time.sleep(1.0)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read_marker(directory: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((directory / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_marker(directory: Path, data: dict[str, Any]) -> None:
    """Written last, atomically: its presence means the step completed."""
    tmp = directory / (MARKER + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, directory / MARKER)


def marker_matches(directory: Path, expected: dict[str, Any]) -> bool:
    found = read_marker(directory)
    return found is not None and all(found.get(k) == v for k, v in expected.items())
