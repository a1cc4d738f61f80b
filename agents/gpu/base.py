"""The GPU data source contract: one blocking ``poll()`` returning plain, immutable readings.

A value the source cannot provide is None (never 0): "unsupported" and "zero" must look different.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

NVML_LABEL = "nvml"
SIMULATED_LABEL = "simulated"


def unavailable_label(reason: str) -> str:
    """The ``gpu_source`` label of a source that has no GPU data, with the reason why."""
    return f"unavailable: {reason}"


@dataclass(frozen=True, slots=True)
class GpuProcessReading:
    """One process holding memory on one GPU; ``mem_bytes`` is None when the driver does not say."""

    pid: int
    mem_bytes: int | None


@dataclass(frozen=True, slots=True)
class GpuReading:
    """One GPU at one poll. Units are in the names; every field None when unsupported or unreadable.

    ``throttle_reasons`` is () when the GPU reports no active reason and None when it cannot tell;
    ``processes`` likewise is () for "none" and None for "unknown". ``xid_last`` is the most recent
    critical Xid seen since the source opened; ``xid_count`` counts them (0: watching, none seen;
    None: this GPU cannot report Xid events), so a repeated Xid is still a new event.
    """

    index: int
    uuid: str | None = None
    name: str | None = None
    mem_used_bytes: int | None = None
    mem_total_bytes: int | None = None
    util_pct: float | None = None
    temp_c: float | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    ecc_uncorrected: int | None = None
    xid_last: int | None = None
    throttle_reasons: tuple[str, ...] | None = None
    processes: tuple[GpuProcessReading, ...] | None = None
    xid_count: int | None = None


@dataclass(frozen=True, slots=True)
class GpuPoll:
    """One poll of a source: its ``gpu_source`` label, the GPUs, and partial-collection errors."""

    source_label: str
    gpus: tuple[GpuReading, ...] = ()
    errors: tuple[str, ...] = ()


@runtime_checkable
class GpuSource(Protocol):
    """Where GPU readings come from (NVML, the simulation, or nothing)."""

    def poll(self) -> GpuPoll:
        """Read every GPU now (blocking; the collector runs it in a worker thread)."""
        ...

    def pids_on_gpus(self) -> set[int]:
        """Every PID currently holding memory on any GPU (for waiting on memory release)."""
        ...

    def close(self) -> None:
        """Release the source's resources; safe to call twice."""
        ...
