"""The console's garbage-collector settings.

A fleet refresh at a thousand hosts makes tens of thousands of short-lived containers (decoded answers,
snapshots, rows) and keeps a few hundred thousand long-lived ones (Textual's widgets, the catalogs, the
fleet state). With CPython's default thresholds (700, 10, 10) the collector ran about 60 young collections
per refresh and, every few refreshes, a full one that walked the whole heap for 0.2-0.5 s, landing on
whatever the operator pressed (bench/bench_prometheus.py). :func:`tune` lets a young collection wait for
10,000 new containers (each a few ms) and the older generations for 20 of the younger ones; :func:`settle`,
once the console is up, moves everything alive then (modules, widgets, catalogs) out of the collector's
sight for good, so that full collections walk only what the fleet made since. Cyclic garbage is still
collected, later.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterator

THRESHOLDS = (10_000, 20, 20)


def tune() -> None:
    """Collect less often (see the module docstring)."""
    gc.set_threshold(*THRESHOLDS)


def settle() -> None:
    """Freeze what is alive now: it is never walked again (no collection first: a full one would stall
    the screen for as long as the ones this avoids; the little garbage frozen with it stays)."""
    gc.freeze()


@contextlib.contextmanager
def applied() -> Iterator[Callable[[], None]]:
    """The settings for a while (one benchmark measurement), undone after it; yields :func:`settle`, to
    call once the first fleet is in, as the console does once it is up."""
    before = gc.get_threshold()
    tune()
    try:
        yield settle
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


__all__ = ["THRESHOLDS", "applied", "settle", "tune"]
