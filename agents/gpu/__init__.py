"""GPU data sources: NVML, the simulation, or an honest "unavailable: <reason>"."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any, Literal

from agents.gpu.base import GpuPoll, GpuProcessReading, GpuReading, GpuSource
from agents.gpu.unavailable import UnavailableGpuSource

__all__ = [
    "GpuPoll",
    "GpuProcessReading",
    "GpuReading",
    "GpuSource",
    "UnavailableGpuSource",
    "open_gpu_source",
]

_log = logging.getLogger(__name__)
GpuKind = Literal["nvml", "simulated", "none"]


def open_gpu_source(kind: GpuKind, *, sim_dir: Path | None = None, nvml_module: Any = None) -> GpuSource:
    """Open the configured GPU source; never raises for a missing GPU, driver or library.

    ``"nvml"`` imports ``pynvml`` (or uses ``nvml_module``) and initialises it; on any failure the
    result is an UnavailableGpuSource whose label says why. ``"simulated"`` reads the ledger in
    ``sim_dir``. ``"none"`` is unavailable: "disabled in config".
    """
    if kind == "none":
        return UnavailableGpuSource("disabled in config")
    if kind == "simulated":
        if sim_dir is None:
            return UnavailableGpuSource("simulated GPUs need a ledger directory (sim_dir)")
        from agents.gpu.simulated import SimulatedGpuSource

        return SimulatedGpuSource(sim_dir)
    if kind == "nvml":
        return _open_nvml(nvml_module)
    return UnavailableGpuSource(f"unknown gpu_source {kind!r} (expected nvml, simulated or none)")


def _open_nvml(nvml_module: Any) -> GpuSource:
    from agents.gpu.nvml import NvmlUnavailable, open_nvml

    if nvml_module is None:
        try:
            nvml_module = importlib.import_module("pynvml")
        except ImportError:
            return _unavailable("pynvml not installed")
    try:
        return open_nvml(nvml_module)
    except NvmlUnavailable as err:
        return _unavailable(str(err))


def _unavailable(reason: str) -> GpuSource:
    _log.warning("GPU data unavailable: %s", reason)
    return UnavailableGpuSource(reason)
