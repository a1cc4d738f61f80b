"""Metrics-drift guard: does a real vLLM exposition still carry every sample the vLLM adapter reads?

The adapter reads some logical metrics under several names (the current one first, then names older
versions used). A current engine must expose the *preferred* name of every group; the older alternatives
are fallbacks, and their absence is expected. ``metric_groups`` derives the groups from the adapter's
own name tables and is checked to cover exactly ``adapter.wanted()``, so a name the adapter starts reading
without a group here fails loudly instead of slipping past the guard.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

HIST_SUFFIXES = ("_bucket", "_sum", "_count")
# Names the adapter reads that are newer than the stage's vLLM: the adapter reads None without them (not drift),
# but the guard must still know them, so an unknown new name keeps failing it.
NEWER_THAN_STAGE = {
    "vllm:num_requests_waiting_by_reason": "vLLM PR 38435 (merged 2026-03), newer than the stage's vLLM 0.32",
}


def metric_groups() -> dict[str, tuple[str, ...]]:
    """Logical sample -> exposed names, preferred first (from agents.engines.vllm's tables)."""
    from agents.engines import vllm

    groups: dict[str, tuple[str, ...]] = {}
    for logical, names in (*vllm.GAUGE_NAMES.items(), *vllm.COUNTER_NAMES.items()):
        groups[logical] = tuple(names)
    groups["request_errors"] = (vllm.FINISHED,)  # its finished_reason="error" series
    groups["requests"] = (vllm.FINISHED,)  # every finished_reason summed
    pairs = vllm.PREFIX_CACHE_PAIRS
    groups["prefix_cache_hits"] = tuple(hits for hits, _ in pairs)
    groups["prefix_cache_queries"] = tuple(queries for _, queries in pairs)
    for logical, names in vllm.HISTOGRAM_NAMES.items():
        for suffix in HIST_SUFFIXES:
            groups[f"{logical}{suffix}"] = tuple(n + suffix for n in names)
    return groups


def required_labels() -> tuple[str, ...]:
    from agents.engines import vllm

    return (vllm.LAYOUT.model_label, vllm.LAYOUT.engine_label)


@dataclass(frozen=True, slots=True)
class DriftReport:
    missing: tuple[tuple[str, str], ...]  # (logical, preferred name) absent from the exposition
    fallback_only: tuple[tuple[str, str], ...]  # (logical, alternative found instead of the preferred)
    unlabelled: tuple[tuple[str, str], ...]  # (sample name, label) a required sample lacks
    uncovered: tuple[str, ...]  # names adapter.wanted() reads that no group lists
    ungrouped_extra: tuple[str, ...]  # names in the groups that wanted() does not read

    @property
    def ok(self) -> bool:
        return not (
            self.missing or self.fallback_only or self.unlabelled or self.uncovered or self.ungrouped_extra
        )

    def explain(self) -> str:
        parts = []
        if self.missing:
            parts.append(
                "missing from the real /metrics: " + ", ".join(f"{n} (for {lg})" for lg, n in self.missing)
            )
        if self.fallback_only:
            parts.append(
                "only an older name exposed: " + ", ".join(f"{n} (for {lg})" for lg, n in self.fallback_only)
            )
        if self.unlabelled:
            parts.append(
                "samples without a label the adapter groups by: "
                + ", ".join(f"{n} lacks {lb!r}" for n, lb in self.unlabelled)
            )
        if self.uncovered:
            parts.append(
                "the adapter reads names this guard does not know (update drift.metric_groups): "
                + ", ".join(self.uncovered)
            )
        if self.ungrouped_extra:
            parts.append(
                "this guard lists names the adapter no longer reads: " + ", ".join(self.ungrouped_extra)
            )
        return "; ".join(parts) or "no drift"


def check(
    exposed: Mapping[str, Iterable[Mapping[str, str]]],
    wanted: frozenset[str],
    groups: Mapping[str, tuple[str, ...]] | None = None,
    labels: tuple[str, ...] | None = None,
) -> DriftReport:
    """``exposed``: sample name -> the label sets of its series (from a real scrape)."""
    groups = metric_groups() if groups is None else groups
    labels = required_labels() if labels is None else labels
    missing, fallback_only, unlabelled = [], [], []
    for logical, names in groups.items():
        preferred = names[0]
        if preferred in exposed:
            for series in exposed[preferred]:
                unlabelled.extend((preferred, lb) for lb in labels if lb not in series)
            continue
        alternative = next((n for n in names[1:] if n in exposed), None)
        if alternative is None:
            missing.append((logical, preferred))
        else:
            fallback_only.append((logical, alternative))
    grouped = {n for names in groups.values() for n in names}
    return DriftReport(
        missing=tuple(missing),
        fallback_only=tuple(fallback_only),
        unlabelled=tuple(sorted(set(unlabelled))),
        uncovered=tuple(sorted(wanted - grouped - set(NEWER_THAN_STAGE))),
        ungrouped_extra=tuple(sorted(grouped - wanted)),
    )
