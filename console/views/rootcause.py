"""Root cause first: group an engine's (or a host's) alerts that describe one fault, the cause leading.

One fault raises several alerts: KV pressure makes the scheduler preempt, preemptions slow the first token
and grow the queue, and a slow first token fails the health canary. ``CAUSED_BY`` says, per alert code,
which codes can cause it (most direct first); ``group_alerts`` hangs each alert under the first of its
possible causes that is present among the same alerts, so the root of each tree is the cause and the rest
are its consequences. A code without a present cause leads its own group.

Pure: no Textual, no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

from agents.schema import Alert, severity_rank

# The slow-serving symptoms: what KV pressure, preemptions, a stall or a hang show up as.
_SLOW_CAUSES = ("PREEMPTION_STORM", "KV_PRESSURE", "QUEUE_GROWING", "ADMISSION_STALLED", "ENGINE_HUNG")
_NO_PROGRESS = ("ENGINE_HUNG", "GPU_WEDGED", "FRONTEND_HUNG", "ADMISSION_STALLED")

CAUSED_BY: Final[Mapping[str, tuple[str, ...]]] = {
    # KV pressure → preemptions → slow first token / growing queue → the health canary fails
    "KV_EXHAUSTION_ETA": ("KV_PRESSURE",),  # the forecast is moot once the pressure is there
    "PREEMPTION_STORM": ("KV_PRESSURE",),
    "QUEUE_GROWING": ("PREEMPTION_STORM", "KV_PRESSURE", "ADMISSION_STALLED", "ENGINE_HUNG", "GPU_WEDGED"),
    "TTFT_SLO": (*_SLOW_CAUSES, "GPU_WEDGED"),
    "SLO_BURN": ("TTFT_SLO", *_SLOW_CAUSES, "GPU_WEDGED"),
    "LATENCY_DRIFT": ("TTFT_SLO", *_SLOW_CAUSES, "GPU_WEDGED"),
    "HEALTH_LIES": ("TTFT_SLO", "QUEUE_GROWING", *_NO_PROGRESS, "PREEMPTION_STORM", "KV_PRESSURE"),
    # no progress: a wedged GPU or diverged ranks stall the engine
    "ENGINE_HUNG": ("RANK_DIVERGENCE", "GPU_WEDGED", "GPU_XID"),
    "GPU_WEDGED": ("GPU_XID",),
    # a dead engine: its metrics go with it; a crash loop is why it is down
    "ENGINE_DOWN": ("CRASH_LOOP",),
    "METRICS_UNREACHABLE": ("ENGINE_DOWN", "CRASH_LOOP", "FRONTEND_HUNG"),
    "METRICS_STALE": ("ENGINE_DOWN", "CRASH_LOOP", "FRONTEND_HUNG", "ENGINE_HUNG"),
}
"""code → the codes that can cause it, most direct first (acyclic: tests/console/test_rootcause.py)."""

A = TypeVar("A")


@dataclass(frozen=True, slots=True)
class AlertGroup:
    """One fault: ``cause`` leads; ``consequences`` are (depth ≥ 1, alert) in tree order (depth-first)."""

    cause: Alert
    consequences: tuple[tuple[int, Alert], ...] = ()

    @property
    def alerts(self) -> tuple[Alert, ...]:
        """The cause then every consequence, in tree order."""
        return (self.cause, *(a for _, a in self.consequences))

    @property
    def worst(self) -> int:
        """The highest severity rank in the group (severity_rank)."""
        return max(severity_rank(a.severity) for a in self.alerts)


def parent_code(code: str, present: Sequence[str] | frozenset[str]) -> str | None:
    """The first possible cause of ``code`` that is among ``present`` (None: ``code`` is a root)."""
    return next((c for c in CAUSED_BY.get(code, ()) if c != code and c in present), None)


def group_items(
    items: Sequence[A], code_of: Callable[[A], str], rank_of: Callable[[A], int]
) -> list[tuple[A, list[tuple[int, A]]]]:
    """``group_alerts`` on anything with a code: [(cause, [(depth, consequence), ...]), ...].

    The first item of a code stands for that code (later items of the same code are dropped: one alert per
    code and engine is active at a time). Groups are ordered by their worst ``rank_of`` (highest first),
    then by input order; siblings keep input order."""
    by_code: dict[str, A] = {}
    for item in items:
        by_code.setdefault(code_of(item), item)
    present = frozenset(by_code)
    children: dict[str, list[str]] = {code: [] for code in by_code}
    roots: list[str] = []
    for code in by_code:
        parent = parent_code(code, present)
        if parent is None:
            roots.append(code)
        else:
            children[parent].append(code)
    groups: list[tuple[A, list[tuple[int, A]]]] = []
    for root in roots:
        below: list[tuple[int, A]] = []
        stack = [(1, c) for c in reversed(children[root])]
        while stack:
            depth, code = stack.pop()
            below.append((depth, by_code[code]))
            stack.extend((depth + 1, c) for c in reversed(children[code]))
        groups.append((by_code[root], below))
    order = {id(g[0]): i for i, g in enumerate(groups)}
    groups.sort(key=lambda g: (-max(rank_of(x) for x in (g[0], *(a for _, a in g[1]))), order[id(g[0])]))
    return groups


def group_alerts(alerts: Sequence[Alert]) -> list[AlertGroup]:
    """An engine's alerts grouped by fault: the cause leads, its consequences follow (most severe group
    first). E.g. KV_PRESSURE, PREEMPTION_STORM, TTFT_SLO, HEALTH_LIES → one group led by KV_PRESSURE."""
    return [
        AlertGroup(cause, tuple(below))
        for cause, below in group_items(alerts, lambda a: a.code, lambda a: severity_rank(a.severity))
    ]


def root_causes(alerts: Sequence[Alert]) -> list[Alert]:
    """The cause of every group, most severe group first."""
    return [g.cause for g in group_alerts(alerts)]


__all__ = ["CAUSED_BY", "AlertGroup", "group_alerts", "group_items", "parent_code", "root_causes"]
