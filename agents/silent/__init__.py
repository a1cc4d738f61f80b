"""Silent-failure rules: the engine answers 200 while its users get nothing, or get it ever slower.

Each rule is a small callable object, one per engine (it keeps the little state it needs), called once per
collector tick as ``rule(obs, history, thresholds)`` with ``history`` the recent observations oldest first
(``obs`` last). It returns ``(code, severity, summary, evidence)`` or None. Pure: no clock and no I/O;
every time is the observation's monotonic ``t``. :func:`default_rules` builds a fresh set for one engine.

Shared conventions:

* Stats are only read from a good scrape. A failed scrape makes a rule that needs them answer None for
  that tick without forgetting how long its condition has held (METRICS_STALE says why); a gap longer than
  the rule's own bound starts the count again.
* *Progress* is any change of the engine's cumulative counters: ``generation_tokens_total``,
  ``prompt_tokens_total`` and the collector's broader ``tokens_total`` marker (which also moves with
  histogram observations, so engines that count tokens only when a request finishes still show work).
* Leaving the serving states forgets everything: a restarted engine starts from scratch.

The rules, their conditions and evidence:

ADMISSION_STALLED (critical)
    requests wait, few or none run (none, or fewer than the most this engine has run and at most
    ``few_running`` or a quarter of that peak), KV below ``kv_pressure`` on every sample (else it is
    KV_PRESSURE), for ``admission_stall_s``; over that window generation ran under
    ``min_tokens_per_s_per_running`` tok/s per running request, the running count did not rise, no canary
    completed, and the scheduler is alive (its gauges or counters moved: a frozen engine is ENGINE_HUNG).
GPU_WEDGED (critical)
    every GPU of the engine at ≥ ``busy_pct`` % utilization while requests run and nothing progresses,
    for ``gpu_wedge_s``.
RANK_DIVERGENCE (critical)
    an engine on two or more GPUs, one at ≥ ``busy_pct`` % and another under ``idle_pct`` %, with work
    pending and no progress, for ``rank_divergence_s``.
FRONTEND_HUNG (critical)
    the canary fails without an HTTP answer (timeout, no response) or stays in flight, while a good
    scrape shows nothing running and nothing waiting and ``/health`` answers OK, for ``frontend_hang_s``.
LATENCY_DRIFT (warning)
    TTFT p95 in a load bin (requests running 0-1, 2-3, 4-7, 8-15, 16+) reaches ``drift_factor`` × the
    same bin's baseline, learned over the first ``drift_baseline_s`` after the engine became ready; the
    current p95 is the median over the last ``window_s`` (300 s, or ``drift_baseline_s`` if shorter: a drift
    that ended stops counting as soon as it has left a window as long as the baseline's); both
    need ``min_samples`` samples (medians compared), and the rise must be at least ``min_increase_s``
    (a p95 read from histogram buckets can move by a bucket, up to 2×, on noise).
KV_EXHAUSTION_ETA (warning)
    KV usage trends up (Theil–Sen slope over the last ``window_s``, most pairs rising): seconds to 100 %
    under ``kv_eta_warn_s``. ``eta_s`` holds the estimate every tick, alert or not (None: flat, falling,
    too few samples) for the fleet row.

The rules live by concern: :mod:`agents.silent.common` (shared shapes and helpers),
:mod:`agents.silent.stall` (ADMISSION_STALLED, FRONTEND_HUNG), :mod:`agents.silent.gpu` (GPU_WEDGED,
RANK_DIVERGENCE), :mod:`agents.silent.drift` (LATENCY_DRIFT), :mod:`agents.silent.kveta`
(KV_EXHAUSTION_ETA); this package builds the set and re-exports their public names.
"""

from __future__ import annotations

from collections.abc import Sequence

from agents.silent.common import Finding, Marker, SilentRule, SilentThresholds
from agents.silent.drift import LOAD_BINS, LatencyDrift, bin_label, load_bin
from agents.silent.gpu import GpuWedged, RankDivergence
from agents.silent.kveta import (
    DROP_BELOW_FIT,
    RISE_FLOOR,
    KvExhaustionEta,
    KvTrend,
    kv_eta_s,
    kv_trend,
    theil_sen,
)
from agents.silent.stall import AdmissionStalled, FrontendHung


def default_rules() -> tuple[SilentRule, ...]:
    """A fresh set of the silent-failure rules for one engine (they keep per-engine state)."""
    return (
        AdmissionStalled(),
        GpuWedged(),
        RankDivergence(),
        FrontendHung(),
        LatencyDrift(),
        KvExhaustionEta(),
    )


def eta_of(rules: Sequence[object]) -> float | None:
    """The KV ETA held by the KvExhaustionEta among ``rules`` (None when there is none or no estimate)."""
    return next((r.eta_s for r in rules if isinstance(r, KvExhaustionEta)), None)


__all__ = [
    "DROP_BELOW_FIT",
    "LOAD_BINS",
    "RISE_FLOOR",
    "AdmissionStalled",
    "Finding",
    "FrontendHung",
    "GpuWedged",
    "KvExhaustionEta",
    "KvTrend",
    "LatencyDrift",
    "Marker",
    "RankDivergence",
    "SilentRule",
    "SilentThresholds",
    "bin_label",
    "default_rules",
    "eta_of",
    "kv_eta_s",
    "kv_trend",
    "load_bin",
    "theil_sen",
]
