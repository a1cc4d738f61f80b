"""A running engine's real cost per 1M tokens, from its measured throughput and its GPUs.

The console builds :class:`LiveEngine` values from its fleet state (prompt + generation tokens/s over the
agent's window); this module prices them: ``$/hour × GPUs ÷ (tokens/s × 3600) × 1e6``. A throughput the
engine does not report stays None (no price), an idle engine costs money for no tokens (no per-token price,
said so), and simulated engines stay labelled SIMULATED. With an ``llmconsole bench`` result of that very
engine loaded (:class:`~console.calc.measured.Measured`), the engine is also priced at its measured capacity:
what a token would cost if it served as much as the benchmark showed it can.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from console.calc.catalog import Api, Catalog, Gpu
from console.calc.measured import Measured
from console.calc.units import SECONDS_PER_DAY


@dataclass(frozen=True, slots=True)
class LiveEngine:
    """One running engine as the fleet sees it (built by the console from its state)."""

    host: str
    engine: str
    model: str | None
    gpu_count: int
    gpu_name: str | None  # as NVML reports it ("NVIDIA H100 80GB HBM3")
    tokens_per_s: float | None  # prompt + generation tokens per second, measured; None = not reported
    simulated: bool


@dataclass(frozen=True, slots=True)
class ApiComparison:
    api: Api
    blended_per_mtok: float
    ratio: float | None  # live $/1M ÷ API $/1M (<1: self-hosting is cheaper); None without a live price


@dataclass(frozen=True, slots=True)
class AtCapacity:
    """The engine priced at the throughput its benchmark sustained (scaled to the engine's GPUs)."""

    measured: Measured
    tokens_per_s: float
    cost_per_mtok: float | None  # None without a $/hour for the GPU
    load: float | None  # the current throughput ÷ the measured capacity; None when not reported


@dataclass(frozen=True, slots=True)
class LiveCost:
    engine: LiveEngine
    gpu: Gpu | None
    hourly: float | None  # USD per GPU-hour used
    tokens_per_day: float | None
    cost_per_day: float | None
    cost_per_mtok: float | None
    note: str | None  # why a figure is missing
    comparisons: tuple[ApiComparison, ...] = ()
    at_capacity: AtCapacity | None = None  # with a benchmark of this engine loaded

    @property
    def label(self) -> str:
        return f"{self.engine.host}/{self.engine.engine}" + (" SIMULATED" if self.engine.simulated else "")


def live_cost(
    engine: LiveEngine,
    cat: Catalog,
    apis: Iterable[Api] = (),
    input_share: float = 0.7,
    measured: Measured | None = None,
) -> LiveCost:
    """Price ``engine`` with the catalog's $/hour for its GPU (a ``[calculator] gpu_hourly`` override wins),
    and at its measured capacity when ``measured`` is a benchmark of this engine."""
    gpu = cat.find_gpu(engine.gpu_name)
    hourly = gpu.default_hourly if gpu is not None else None
    per_day = hourly * engine.gpu_count * 24 if hourly is not None and engine.gpu_count > 0 else None
    tps = engine.tokens_per_s
    tokens_day = tps * SECONDS_PER_DAY if tps is not None else None
    per_mtok, note = None, None
    if gpu is None:
        note = (
            f"GPU {engine.gpu_name!r} is not in the catalog: no $/hour" if engine.gpu_name else "GPU unknown"
        )
    elif engine.gpu_count <= 0:
        note = "no GPUs attributed to this engine"
    elif tps is None:
        note = "throughput not reported"
    elif tps <= 0:
        note = "idle: paying for GPUs, serving no tokens"
    else:
        per_mtok = hourly * engine.gpu_count / (tps * 3600) * 1e6  # type: ignore[operator]
    comparisons = tuple(
        ApiComparison(api, api.blended(input_share), _ratio(per_mtok, api.blended(input_share)))
        for api in apis
    )
    at_capacity = _at_capacity(engine, measured, hourly) if measured is not None else None
    return LiveCost(engine, gpu, hourly, tokens_day, per_day, per_mtok, note, comparisons, at_capacity)


def _at_capacity(engine: LiveEngine, measured: Measured, hourly: float | None) -> AtCapacity | None:
    if engine.gpu_count <= 0 or not measured.matches(engine.host, engine.engine, engine.model):
        return None
    tps = measured.per_gpu(engine.gpu_count)[0] * engine.gpu_count
    per_mtok = hourly * engine.gpu_count / (tps * 3600) * 1e6 if hourly is not None else None
    load = engine.tokens_per_s / tps if engine.tokens_per_s is not None else None
    return AtCapacity(measured, tps, per_mtok, load)


def _ratio(live: float | None, api: float) -> float | None:
    if live is None or api <= 0:
        return None
    return live / api
