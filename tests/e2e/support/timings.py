"""Timings the e2e stage measures (start-ups, detections), printed in pytest's terminal summary."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

_RECORDED: list[tuple[str, float]] = []


def record(what: str, seconds: float) -> None:
    _RECORDED.append((what, round(seconds, 1)))


@contextmanager
def timed(what: str) -> Iterator[None]:
    started = time.monotonic()
    try:
        yield
    finally:
        record(what, time.monotonic() - started)


def lines() -> list[str]:
    return [f"{seconds:8.1f}s  {what}" for what, seconds in _RECORDED]
