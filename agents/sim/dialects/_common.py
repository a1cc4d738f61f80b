"""Small helpers more than one dialect uses: metric tables and progress-bar times."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from agents.sim.exposition import Registry

# (name without the engine's prefix, HELP text): a family with one series per label set.
HelpTable = tuple[tuple[str, str], ...]


def declare_each(
    registry: Registry,
    kind: str,
    prefix: str,
    table: Iterable[tuple[str, str]],
    labels: Mapping[str, str],
    created: float,
) -> None:
    """Register ``prefix + name`` for each (name, HELP) of ``table`` and create its series at 0."""
    for name, help_text in table:
        registry.add(prefix + name, kind, help_text).declare(labels, created)


def mmss(seconds: float) -> str:
    """Elapsed time as tqdm's progress bars print it (``MM:SS``)."""
    s = int(seconds)
    return f"{s // 60:02d}:{s % 60:02d}"
