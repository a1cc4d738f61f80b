"""Silent-failure rules: turn what the collector observed into alerts with evidence.

Pure and clock-free: every observation carries the monotonic time ``t`` it was taken at and the wall time
``wall`` used only for display (``since``). One ``EngineRules`` per supervised engine keeps the short
history the rules need; ``host_alerts`` evaluates host-level rules on one poll.

Rules never read a stale value as live: when the last scrape failed, rules that need live stats are not
evaluated and METRICS_STALE / METRICS_UNREACHABLE says why.

Rules judge windows, not single samples: KV pressure from the share of KV samples at or above the threshold
over ``kv_pressure_for_s`` (vLLM's gauge swings between 0 and 100 % within seconds under a storm), a
preemption storm from the preemption count over ``preemption_storm_for_s``.

Hysteresis: an alert clears only after its condition was false for ``alert_clear_s`` (ENGINE_DOWN at once,
when the engine is ready again; the live-health alerts at once when the engine stops serving). ``since`` is
the first raise of the current episode; ``raised_count`` counts the raises within ``history_s`` (a
flapping condition reads as one alert with a count). ``firing`` holds the codes whose condition holds now:
the engine's state follows those, never a held alert.

``extra_rules``: further pure rules (:mod:`agents.silent`), each ``rule(obs, history, thresholds)``
returning ``(code, severity, summary, evidence)`` or None, evaluated with the built-ins under the same
hysteresis.

By concern: :mod:`agents.alerts.observation` (what the rules read), :mod:`agents.alerts.engine` (the
per-engine state machine and hysteresis), :mod:`agents.alerts.checks` (the built-in per-engine rules),
:mod:`agents.alerts.host` (host-level rules), :mod:`agents.alerts.text` (severity order and evidence
wording). This package re-exports their public names.
"""

from __future__ import annotations

from agents.alerts.checks import KV_PRESSURE_QUANTILE, STORM_MIN_COUNT, STORM_MIN_PER_S
from agents.alerts.engine import EngineRules
from agents.alerts.host import THERMAL_REASONS, GpuFacts, host_alerts
from agents.alerts.observation import EngineObservation, Finding, Rule, ScrapeOutcome, ThresholdSettings

__all__ = [
    "KV_PRESSURE_QUANTILE",
    "STORM_MIN_COUNT",
    "STORM_MIN_PER_S",
    "THERMAL_REASONS",
    "EngineObservation",
    "EngineRules",
    "Finding",
    "GpuFacts",
    "Rule",
    "ScrapeOutcome",
    "ThresholdSettings",
    "host_alerts",
]
