"""``[thresholds]`` of ``config.toml``: when the agent raises alerts; the console colours by the same values.

The one table both sides read, so it lives apart from either side's tables (the agent's in
:mod:`agents.config`, the console's in ``console/settings.py``). Pure: stdlib and :mod:`agents.tomltables`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agents.tomltables import Where, at_least, build_table, fraction, non_negative, positive, setting


@dataclass(frozen=True, slots=True, kw_only=True)
class Thresholds:
    """``[thresholds]``: when the agent raises alerts (the console uses the same values for colours)."""

    ttft_p95_s: float = setting(0.2, check=positive)
    hung_after_s: float = setting(30.0, check=positive)
    kv_pressure: float = setting(0.95, check=fraction)
    kv_pressure_for_s: float = setting(30.0, check=non_negative)
    queue_growing_intervals: int = setting(5, check=at_least(2))
    crash_loop_restarts: int = setting(3, check=at_least(1))
    crash_loop_window_s: float = setting(600.0, check=positive)
    preemption_storm_for_s: float = setting(30.0, check=non_negative)
    metrics_stale_after_s: float = setting(5.0, check=positive)
    ram_leak_mb_per_min: float = setting(50.0, check=positive)
    ram_leak_window_s: float = setting(600.0, check=positive)
    # silent failures that still answer 200 (README "Alerts"); seconds are how long the condition must hold
    # hysteresis: a condition must be false this long before its alert clears
    alert_clear_s: float = setting(15.0, check=non_negative)
    admission_stall_s: float = setting(60.0, check=positive)
    gpu_wedge_s: float = setting(30.0, check=positive)
    rank_divergence_s: float = setting(60.0, check=positive)
    frontend_hang_s: float = setting(30.0, check=positive)
    drift_factor: float = setting(2.0, check=lambda v: None if v > 1 else "must be greater than 1")
    drift_baseline_s: float = setting(600.0, check=positive)
    kv_eta_warn_s: float = setting(300.0, check=positive)


def thresholds_from_dict(data: Mapping[str, Any], where: Where) -> Thresholds:
    """``[thresholds]`` of a parsed document (every key defaulted when the table is absent)."""
    return build_table(Thresholds, data.get("thresholds", {}), where.at("[thresholds]"))


__all__ = ["Thresholds", "thresholds_from_dict"]
