"""What an ``EngineSupervisor`` is given besides its plan and policy: collaborators and tuning, grouped.

``Hooks`` holds what the supervisor calls out to (readiness check, GPU view, event sink, clocks, the
reaper, the log redactor); ``Tuning`` holds its poll periods and buffer sizes. Both have defaults for
everything, so a caller names only what it changes. ``split_options`` accepts the same names as plain
keywords (``EngineSupervisor(..., is_ready=f, tick_s=0.05)``) and sorts them into the two groups.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from agents.redact import Redactor
from agents.supervisor.reaper import Reaper

ReadyCheck = Callable[[], "Awaitable[bool] | bool"]
GpuPids = Callable[[], "Awaitable[set[int]] | set[int]"]
EventSink = Callable[[str, str, str], None]  # (action, engine_id, result)


@dataclass(frozen=True, slots=True)
class Hooks:
    """The supervisor's collaborators; every one is optional.

    - ``is_ready()`` (async or plain) returns True once the engine serves; anything else, an exception
      or ``Tuning.ready_timeout_s`` means "not yet". Without it, ``mark_ready()`` ends start-up.
    - ``gpu_pids()`` (async or plain) returns the PIDs holding GPU memory; None skips the GPU-release wait.
    - ``on_event(action, engine_id, result)`` receives automatic decisions (restart, backoff, adopt, refuse).
    - ``clock`` (monotonic) runs every timer; ``wall`` only stamps events and records for display.
    - ``reaper``: the process-wide ``REAPER`` when None; ``log_redact`` masks secrets in the engine log.
    """

    is_ready: ReadyCheck | None = None
    gpu_pids: GpuPids | None = None
    on_event: EventSink | None = None
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    reaper: Reaper | None = None
    log_redact: Redactor | None = None


@dataclass(frozen=True, slots=True)
class Tuning:
    """Poll periods (seconds) and sizes. The log is read every ``tick_s``; the process tree (a /proc walk)
    is rescanned every ``tree_refresh_s``; readiness is polled every ``ready_poll_s``, each check cut off
    after ``ready_timeout_s``. ``tail_lines`` is the in-memory log tail; ``events_max`` the event backlog."""

    tick_s: float = 0.5
    ready_poll_s: float = 0.5
    ready_timeout_s: float = 10.0
    tree_refresh_s: float = 2.0
    log_max_bytes: int = 50 * 2**20
    log_backups: int = 10
    tail_lines: int = 1000
    events_max: int = 256

    def __post_init__(self) -> None:
        if min(self.tick_s, self.ready_poll_s, self.ready_timeout_s, self.tree_refresh_s) <= 0:
            raise ValueError("tick_s, ready_poll_s, ready_timeout_s and tree_refresh_s must be > 0")


_HOOK_NAMES = frozenset(f.name for f in fields(Hooks))
_TUNING_NAMES = frozenset(f.name for f in fields(Tuning))


def split_options(
    hooks: Hooks | None, tuning: Tuning | None, keywords: Mapping[str, Any]
) -> tuple[Hooks, Tuning]:
    """``hooks``/``tuning`` (defaults when None) with the fields named in ``keywords`` replaced.

    An unknown keyword is a TypeError, as it would be for an ordinary parameter."""
    unknown = sorted(set(keywords) - _HOOK_NAMES - _TUNING_NAMES)
    if unknown:
        raise TypeError(f"EngineSupervisor() got unexpected keyword arguments: {', '.join(unknown)}")
    hooks = replace(hooks or Hooks(), **{k: v for k, v in keywords.items() if k in _HOOK_NAMES})
    tuning = replace(tuning or Tuning(), **{k: v for k, v in keywords.items() if k in _TUNING_NAMES})
    return hooks, tuning
