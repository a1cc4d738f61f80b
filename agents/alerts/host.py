"""Host-level alerts from one GPU poll: STATE_WRITE_FAILED, ORPHAN_GPU_MEMORY, GPU_XID, GPU_ECC,
GPU_THERMAL."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agents.alerts.text import severity_key
from agents.schema import Alert


@dataclass(frozen=True, slots=True)
class GpuFacts:
    index: int
    ecc_uncorrected: int | None
    xid_last: int | None
    throttle_reasons: tuple[str, ...]
    processes: tuple[tuple[int, int | None], ...]  # (pid, mem_bytes)


THERMAL_REASONS = frozenset(
    {"hw_thermal_slowdown", "sw_thermal_slowdown", "hw_power_brake_slowdown", "hw_slowdown"}
)


def host_alerts(
    gpus: Sequence[GpuFacts],
    supervised_pids: Iterable[int],
    wall: str,
    previous: Mapping[str, Alert] | None = None,
    describe=lambda pid: None,
    state_errors: Mapping[str, str] | None = None,
    unobserved: Sequence[str] = (),
    visible: Callable[[int], bool] = lambda pid: True,
) -> tuple[Alert, ...]:
    """Host-level alerts from one GPU poll. ``previous`` (by code) keeps each alert's ``since``.
    ``state_errors``: engine id -> why its last state-file write failed (STATE_WRITE_FAILED).
    ``unobserved``: watched engines whose owner process cannot be seen; ``visible(pid)``: the agent can see
    the process. A GPU process outside every known tree is an orphan only when the agent can see it and no
    watched engine's owner is hidden; otherwise its owner is "not visible" (evidence, never an orphan)."""
    known = set(supervised_pids)
    found: list[tuple[str, str, str, dict[str, Any]]] = []
    if state_errors:
        ids = sorted(state_errors)
        shown = ", ".join(ids[:3]) + (f" and {len(ids) - 3} more" if len(ids) > 3 else "")
        found.append(
            (
                "STATE_WRITE_FAILED",
                "critical",
                f"state file not written for {shown}: {state_errors[ids[0]]}",
                {"engines": [{"engine": eid, "reason": state_errors[eid]} for eid in ids]},
            )
        )
    orphan = _orphan_memory(gpus, known, describe, unobserved, visible)
    if orphan is not None:
        found.append(orphan)
    xids = [{"gpu": g.index, "xid": g.xid_last} for g in gpus if g.xid_last is not None]
    if xids:
        found.append(("GPU_XID", "critical", f"critical Xid event on GPU {xids[0]['gpu']}", {"events": xids}))
    ecc = [{"gpu": g.index, "ecc_uncorrected": g.ecc_uncorrected} for g in gpus if g.ecc_uncorrected]
    if ecc:
        found.append(("GPU_ECC", "critical", f"uncorrected ECC errors on GPU {ecc[0]['gpu']}", {"gpus": ecc}))
    hot = [
        {"gpu": g.index, "reasons": sorted(THERMAL_REASONS.intersection(g.throttle_reasons))}
        for g in gpus
        if THERMAL_REASONS.intersection(g.throttle_reasons)
    ]
    if hot:
        found.append(
            (
                "GPU_THERMAL",
                "warning",
                f"GPU {hot[0]['gpu']} throttled: {', '.join(hot[0]['reasons'])}",
                {"gpus": hot},
            )
        )
    prev = previous or {}
    alerts = [
        Alert(code=c, severity=s, since=prev[c].since if c in prev else wall, summary=m, evidence=e)
        for c, s, m, e in found
    ]
    return tuple(sorted(alerts, key=severity_key))


def _orphan_memory(
    gpus: Sequence[GpuFacts],
    known: set[int],
    describe: Callable[[int], Any],
    unobserved: Sequence[str],
    visible: Callable[[int], bool],
) -> tuple[str, str, str, dict[str, Any]] | None:
    """ORPHAN_GPU_MEMORY: GPU processes outside every known tree that the agent can see (see host_alerts)."""
    orphans: list[dict[str, Any]] = []
    hidden: list[dict[str, Any]] = []
    for g in gpus:
        for pid, mem in g.processes:
            if pid in known:
                continue
            if unobserved or not visible(pid):
                hidden.append({"gpu": g.index, "pid": pid, "mem_bytes": mem, "owner": "not visible"})
            else:
                orphans.append({"gpu": g.index, "pid": pid, "mem_bytes": mem, "process": describe(pid)})
    if not orphans:
        return None
    held = sum(o["mem_bytes"] or 0 for o in orphans)
    evidence: dict[str, Any] = {"processes": orphans}
    if hidden:
        evidence["owner_not_visible"] = hidden
        evidence["unobserved_engines"] = list(unobserved)
    return (
        "ORPHAN_GPU_MEMORY",
        "critical",
        f"{len(orphans)} process(es) outside any supervised engine hold {held / 2**30:.1f} GiB of GPU memory",
        evidence,
    )
