"""The calculator screen's live-fleet pricing lines, computed without Textual: one line per running engine
(its measured $/1M tokens against the chosen APIs) and, under a benchmarked engine, its cost at the measured
capacity. Toned text parts as in console/calc/present.py (re-exported there as ``live_parts``).
"""

from __future__ import annotations

from collections.abc import Sequence

from console.calc.catalog import Catalog
from console.calc.live import AtCapacity, LiveCost, LiveEngine, live_cost
from console.calc.measured import Measured
from console.calc.units import tokens, usd


def live_parts(
    engines: Sequence[LiveEngine],
    cat: Catalog,
    apis: Sequence[str],
    input_share: float,
    measured: Measured | None = None,
) -> tuple[tuple[str, str], ...]:
    """One line per running engine: its measured cost per 1M tokens against the chosen APIs; under the
    engine that ``measured`` (a loaded bench result) is a benchmark of, its cost at the measured capacity."""
    if not engines:
        return (
            (
                "No engines in the fleet (open the calculator from the console to price running engines).",
                "missing",
            ),
        )
    chosen = [cat.api(a) for a in apis]
    parts: list[tuple[str, str]] = []
    for engine in engines:
        cost = live_cost(engine, cat, chosen, input_share, measured)
        gpu = cost.gpu.slug if cost.gpu else (engine.gpu_name or "unknown GPU")
        parts.append((f"{engine.host}/{engine.engine}", "live"))
        if engine.simulated:
            parts.append((" SIMULATED", "simulated"))
        parts.append((f" {engine.model or '?'} · {engine.gpu_count} × {gpu} · ", "dim"))
        parts += _live_figures(cost)
        parts.append(("\n", "live"))
        if cost.at_capacity is not None:
            parts += _at_capacity_line(cost.at_capacity, engine.gpu_count)
    return tuple(parts)


def _live_figures(cost: LiveCost) -> list[tuple[str, str]]:
    tps = cost.engine.tokens_per_s
    out = [(f"{tps:,.1f} tok/s" if tps is not None else "— tok/s", "live" if tps is not None else "missing")]
    if cost.cost_per_mtok is None:
        return out + [(f" · {cost.note}", "missing" if tps is None else "warn")]
    now = " at current load" if cost.at_capacity is not None else ""
    figures = f" → {tokens(cost.tokens_per_day)}/day · {usd(cost.cost_per_day)}/day · {usd(cost.cost_per_mtok)}/1M{now}"
    out.append((figures, "live"))
    for c in cost.comparisons:
        tone = "ok" if c.ratio is not None and c.ratio < 1 else "warn"
        out.append((f" · {c.ratio:.2f}× {c.api.slug}" if c.ratio is not None else f" · ? {c.api.slug}", tone))
    return out


def _at_capacity_line(a: AtCapacity, gpus: int) -> list[tuple[str, str]]:
    """The engine at the throughput its loaded benchmark sustained, labelled as measured (and SIMULATED)."""
    m = a.measured
    out = [("  ↳ ", "dim"), (m.source_text(), "simulated" if m.simulated else "info")]
    out.append((f": {a.tokens_per_s:,.1f} tok/s on {gpus} GPU{'s' if gpus != 1 else ''}", "live"))
    if a.cost_per_mtok is not None:
        out.append((f" → {usd(a.cost_per_mtok)}/1M at measured capacity", "live"))
    else:
        out.append((" · no $/hour for this GPU", "missing"))
    if a.load is not None:
        out.append((f" · current load {a.load:.0%} of it", "dim"))
    return [*out, (f" · {m.path}\n", "dim")]


__all__ = ["live_parts"]
