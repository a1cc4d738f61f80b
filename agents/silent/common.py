"""What the silent-failure rules share: the finding and threshold shapes, reading a live stat, the
progress marker, evidence rounding, and how long a condition has held (:class:`Hold`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from agents.schema import SERVING_STATES

if TYPE_CHECKING:
    from agents.alerts import EngineObservation

Finding = tuple[str, str, str, dict[str, Any]]  # (code, severity, summary, evidence)
Marker = tuple[float | None, float | None, float | None]


class SilentThresholds(Protocol):
    kv_pressure: float
    admission_stall_s: float
    gpu_wedge_s: float
    rank_divergence_s: float
    frontend_hang_s: float
    drift_factor: float
    drift_baseline_s: float
    kv_eta_warn_s: float


class SilentRule(Protocol):
    code: ClassVar[str]

    def __call__(
        self, obs: EngineObservation, history: Sequence[EngineObservation], thresholds: SilentThresholds
    ) -> Finding | None: ...


# --- shared helpers --------------------------------------------------------------------------------------
def is_serving(obs: EngineObservation) -> bool:
    return obs.state in SERVING_STATES


def live_stat(obs: EngineObservation, key: str) -> float | None:
    value = obs.stats.get(key) if obs.scrape.ok else None
    return value if value is not None and math.isfinite(value) else None


def progress_marker(obs: EngineObservation) -> Marker:
    return (obs.generation_tokens_total, obs.prompt_tokens_total, obs.tokens_total)


def num(value: float | None, nd: int = 3) -> float | None:
    return None if value is None else round(value, nd)


def pct(values: Sequence[float | None]) -> list[float | None]:
    return [None if v is None else round(v, 1) for v in values]


def canary_stuck(obs: EngineObservation) -> bool:
    return obs.canary_in_flight_s is not None or obs.canary_ok is False


@dataclass(slots=True)
class Hold:
    """How long a condition has held: started at ``since``, last seen true at ``seen``."""

    since: float | None = None
    seen: float | None = None

    def hold(self, t: float, max_gap: float) -> float:
        if self.since is None or self.seen is None or t - self.seen > max_gap:
            self.since = t
        self.seen = t
        return t - self.since

    def reset(self) -> None:
        self.since = self.seen = None
