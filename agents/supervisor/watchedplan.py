"""What a watched engine is given: the :class:`WatchPlan` (what to watch, what its actions run) and the
shapes of its health and identity checks' answers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, slots=True)
class HealthAnswer:
    """One health check of a watched engine. ``status`` None: no HTTP answer at all (``error`` says why)."""

    status: int | None
    error: str | None


@dataclass(frozen=True, slots=True)
class Identity:
    """What a watched engine's ``/metrics`` says it is. ``kind`` None: no known engine's metric names;
    ``error``: what serves the port is not an engine of the configured kind (None when it is)."""

    kind: str | None
    error: str | None


@dataclass(frozen=True, slots=True)
class WatchPlan:
    """What to watch and what its actions run: plain data, built by the runtime from the config.

    ``commands``: action → argv (resolved, allowed by the policy); ``refusals``: action → why it is not
    available (no command configured, or the policy refuses it). ``env``: the commands' environment."""

    engine_id: str
    host: str
    port: int
    commands: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    refusals: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    stop_timeout_s: float = 30.0
    startup_timeout_s: float = 1800.0
    allowed_commands: tuple[Path, ...] | None = (
        None  # [agent] allowed_action_commands, re-checked at each run
    )


HealthCheck = Callable[[], Awaitable[HealthAnswer]]
IdentityCheck = Callable[[], Awaitable["Identity | None"]]
