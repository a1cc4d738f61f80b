"""What to run (ProcessPlan) and how to supervise it (Policy): plain data, built by the agent."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

MARKER_VAR = "LLMCONSOLE_ENGINE_ID"


@dataclass(frozen=True, slots=True)
class ProcessPlan:
    """A ready-made launch: the adapter built ``argv``/``env``; the supervisor never interprets them.

    ``host``/``port`` are where the engine will listen (checked before every start). ``env`` is the
    complete environment of the engine (the supervisor only adds the ``LLMCONSOLE_ENGINE_ID`` marker).
    """

    engine_id: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    host: str = "127.0.0.1"
    port: int = 0
    cwd: str | None = None

    def __post_init__(self) -> None:
        if not self.engine_id or "/" in self.engine_id or "\0" in self.engine_id:
            raise ValueError(f"bad engine id {self.engine_id!r}: must be non-empty, without '/' or NUL")
        if not self.argv:
            raise ValueError(f"engine {self.engine_id}: empty argv")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"engine {self.engine_id}: port {self.port} out of range")


@dataclass(frozen=True, slots=True)
class Policy:
    """Supervision timings (seconds).

    - ``backoff_*``: runtime-crash restart delay, doubling from initial to max; the doubling resets
      after ``backoff_reset_s`` of running without a crash.
    - ``start_retries``: retries after a failed start-up (so ``start_retries + 1`` attempts in all,
      with delays initial, 2x, 4x ...) before the engine goes ``failed``.
    - ``startup_timeout_s``: a start-up fails when this long passes with neither readiness nor
      progress (new log output); loading that keeps logging is never cut short.
    - ``stop_timeout_s``: SIGTERM grace before SIGKILL; SIGKILL then gets ``max(stop_timeout_s, 5)`` to
      empty the tree before the engine is ``failed``.
    - ``gpu_release_timeout_s``: how long to wait for the old tree's PIDs to leave the GPUs.
    - ``restart_on_exit``: restart after an exit the agent did not ask for (any exit code, even 0).
    """

    backoff_initial_s: float = 10.0
    backoff_max_s: float = 300.0
    backoff_reset_s: float = 600.0
    start_retries: int = 3
    startup_timeout_s: float = 1800.0
    stop_timeout_s: float = 30.0
    gpu_release_timeout_s: float = 120.0
    restart_on_exit: bool = True

    def __post_init__(self) -> None:
        for name in (
            "backoff_initial_s",
            "backoff_max_s",
            "backoff_reset_s",
            "startup_timeout_s",
            "stop_timeout_s",
            "gpu_release_timeout_s",
        ):
            value = getattr(self, name)
            if not value >= 0:  # also rejects NaN
                raise ValueError(f"policy {name} must be >= 0, got {value!r}")
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("policy backoff_max_s must be >= backoff_initial_s")
        if self.start_retries < 0:
            raise ValueError("policy start_retries must be >= 0")
