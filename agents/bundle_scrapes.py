"""A small ring of each engine's last raw ``/metrics`` scrapes, for incident bundles.

The watch calls :func:`record` with every finished scrape (one line in ``EngineWatch._scrape``); the ring
keeps the last ``KEEP`` per watch: when it was taken, how it ended, and the body as received (capped at
``MAX_BODY_BYTES``; redaction happens when a bundle is written, never here). Keyed weakly by the watch
object, so several agents in one process never mix and a dropped watch drops its ring. Appends happen on
the agent's loop; :func:`recent` hands out an immutable copy.
"""

from __future__ import annotations

import time
import weakref
from collections import deque
from dataclasses import dataclass
from typing import Any

from agents.schema import rfc3339

KEEP = 5
MAX_BODY_BYTES = 4 * 2**20


@dataclass(frozen=True, slots=True)
class RawScrape:
    """One scrape: wall time it finished, HTTP status, error (None when it succeeded), duration, body."""

    wall: float  # Unix time it finished (formatted only when a bundle is built: ``at``)
    ok: bool
    status: int | None
    error: str | None
    elapsed_s: float | None
    body: bytes | None
    truncated: bool = False
    mono: float = 0.0

    @property
    def at(self) -> str:
        return rfc3339(self.wall)


_RINGS: weakref.WeakKeyDictionary[Any, deque[RawScrape]] = weakref.WeakKeyDictionary()


def record(owner: Any, fetched: Any) -> None:
    """Keep ``fetched`` (an ``agents.scrape.Fetched``) as ``owner``'s latest scrape. Never raises."""
    try:
        body = fetched.body
        truncated = body is not None and len(body) > MAX_BODY_BYTES
        scrape = RawScrape(
            wall=time.time(),
            ok=bool(fetched.ok),
            status=fetched.status,
            error=fetched.error,
            elapsed_s=None if fetched.elapsed_s is None else round(float(fetched.elapsed_s), 4),
            body=body[:MAX_BODY_BYTES] if truncated else body,
            truncated=truncated,
            mono=time.monotonic(),
        )
        ring = _RINGS.get(owner)
        if ring is None:
            ring = _RINGS[owner] = deque(maxlen=KEEP)
        ring.append(scrape)
    except Exception:  # noqa: BLE001 - evidence keeping must never break a scrape
        return


def recent(owner: Any) -> tuple[RawScrape, ...]:
    """``owner``'s kept scrapes, oldest first (empty when none was recorded)."""
    ring = _RINGS.get(owner)
    return tuple(ring) if ring is not None else ()


def installed(owner: Any) -> bool:
    """Whether any scrape was ever recorded for ``owner`` (False also when the hook is not wired)."""
    return owner in _RINGS
