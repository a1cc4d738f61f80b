"""GPU rules: GPU_WEDGED (every GPU busy, requests running, no progress) and RANK_DIVERGENCE (one GPU busy,
another idle, work pending, no progress: a collective hang)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from agents.schema.units import duration
from agents.silent.common import (
    Finding,
    Hold,
    Marker,
    SilentThresholds,
    canary_stuck,
    is_serving,
    live_stat,
    pct,
    progress_marker,
)

if TYPE_CHECKING:
    from agents.alerts import EngineObservation


@dataclass(slots=True)
class _NoProgress:
    """How long a condition has held without any counter moving."""

    hold: Hold = field(default_factory=Hold)
    start: Marker | None = None

    def held(self, obs: EngineObservation, max_gap: float) -> float | None:
        marker = progress_marker(obs)
        if all(v is None for v in marker):
            self.reset()
            return None  # no counter to judge progress by
        if marker != self.start:
            self.hold.reset()
            self.start = marker
        return self.hold.hold(obs.t, max_gap)

    def reset(self) -> None:
        self.hold.reset()
        self.start = None


def _progress_evidence(obs: EngineObservation, held: float) -> dict[str, Any]:
    return {
        "generation_tokens_total": obs.generation_tokens_total,
        "prompt_tokens_total": obs.prompt_tokens_total,
        "no_progress_for_s": round(held, 1),
    }


@dataclass(slots=True)
class GpuWedged:
    code: ClassVar[str] = "GPU_WEDGED"
    busy_pct: float = 90.0
    _still: _NoProgress = field(default_factory=_NoProgress)

    def __call__(
        self, obs: EngineObservation, history: Sequence[EngineObservation], thresholds: SilentThresholds
    ) -> Finding | None:
        util = obs.gpu_util_pct
        if not is_serving(obs) or not util or any(u is None for u in util):
            self._still.reset()
            return None
        if not obs.scrape.ok:
            return None
        running = live_stat(obs, "requests_running")
        if running is None or running <= 0 or min(u for u in util if u is not None) < self.busy_pct:
            self._still.reset()
            return None
        held = self._still.held(obs, thresholds.gpu_wedge_s)
        if held is None or held < thresholds.gpu_wedge_s:
            return None
        evidence = {
            "gpu_util_pct": pct(util),
            "busy_pct": self.busy_pct,
            "requests_running": running,
            **_progress_evidence(obs, held),
            "gpu_wedge_s": thresholds.gpu_wedge_s,
        }
        summary = (
            f"{'GPU' if len(util) == 1 else f'all {len(util)} GPUs'} ≥ {self.busy_pct:.0f} % busy with "
            f"{running:.0f} running and no token progress for {duration(held)}"
        )
        return (self.code, "critical", summary, evidence)


@dataclass(slots=True)
class RankDivergence:
    code: ClassVar[str] = "RANK_DIVERGENCE"
    busy_pct: float = 90.0
    idle_pct: float = 10.0
    _still: _NoProgress = field(default_factory=_NoProgress)

    def __call__(
        self, obs: EngineObservation, history: Sequence[EngineObservation], thresholds: SilentThresholds
    ) -> Finding | None:
        util = obs.gpu_util_pct
        known = [u for u in util if u is not None]
        if not is_serving(obs) or len(known) < 2:
            self._still.reset()
            return None
        running, waiting = live_stat(obs, "requests_running"), live_stat(obs, "requests_waiting")
        queued = None if not obs.scrape.ok else (running or 0) + (waiting or 0)
        if queued is None and not canary_stuck(obs):
            return None  # work unknown this tick
        pending = (queued or 0) > 0 or canary_stuck(obs)
        if not pending or max(known) < self.busy_pct or min(known) >= self.idle_pct:
            self._still.reset()
            return None
        held = self._still.held(obs, thresholds.rank_divergence_s)
        if held is None or held < thresholds.rank_divergence_s:
            return None
        busy = [i for i, u in enumerate(util) if u is not None and u >= self.busy_pct]
        idle = [i for i, u in enumerate(util) if u is not None and u < self.idle_pct]
        evidence = {
            "gpu_util_pct": pct(util),
            "busy_positions": busy,  # positions in the engine's gpus list
            "idle_positions": idle,
            "busy_pct": self.busy_pct,
            "idle_pct": self.idle_pct,
            "requests_running": running,
            "requests_waiting": waiting,
            **_progress_evidence(obs, held),
            "rank_divergence_s": thresholds.rank_divergence_s,
        }
        summary = (
            f"GPU utilization diverges across the engine's {len(util)} GPUs ({max(known):.0f} % vs "
            f"{min(known):.0f} %) with no token progress for {duration(held)}: a collective hang"
        )
        return (self.code, "critical", summary, evidence)
