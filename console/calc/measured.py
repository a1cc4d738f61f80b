"""Capacity from a measurement: the sustained throughput of an ``llmconsole bench`` result.

``sustained`` in the result is the run a deployment can be priced on: with an SLO, the highest load that
met it; without one, the run with the highest total token throughput. Break-even tokens/day count input
and output tokens alike, so capacity uses the *total* token throughput (the output throughput is reported
next to it). Per GPU: divided by the GPUs the benchmarked engine used (the fleet knows them, or
``bench --gpus N``); a deployment of ``gpus`` GPUs serves ``gpus`` × that. When the result does not say
how many GPUs it ran on, the measured engine is taken to be the deployment being priced, and the text
says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from console.bench.result import ResultError, load
from console.calc.errors import CalcError
from console.calc.units import SECONDS_PER_DAY


@dataclass(frozen=True, slots=True)
class Measured:
    path: str
    total_tokens_per_s: float  # of the benchmarked engine
    output_tokens_per_s: float
    gpus: int | None  # GPUs of the benchmarked engine, None when the result does not say
    source: str  # "slo", "single run", "best of sweep"
    slo: dict[str, float] | None
    input_share: float | None  # of the benchmark's traffic
    model: str | None
    engine: str | None
    target: str | None
    simulated: bool

    def per_gpu(self, gpus: int) -> tuple[float, float]:
        """(total, output) tokens/s per GPU; ``gpus`` stands in when the result does not say."""
        n = self.gpus or gpus
        return self.total_tokens_per_s / n, self.output_tokens_per_s / n

    def tokens_per_day(self, gpus: int) -> float:
        """Total tokens/day a deployment of ``gpus`` GPUs serves at the measured rate."""
        return self.per_gpu(gpus)[0] * gpus * SECONDS_PER_DAY

    def describe(self, gpus: int) -> dict[str, Any]:
        total, output = self.per_gpu(gpus)
        return {"path": self.path, "source": self.source, "slo": self.slo, "model": self.model,
                "engine": self.engine, "target": self.target, "simulated": self.simulated,
                "measured_gpus": self.gpus, "gpus_assumed": self.gpus is None,
                "total_tokens_per_s": self.total_tokens_per_s, "output_tokens_per_s": self.output_tokens_per_s,
                "total_tokens_per_s_per_gpu": total, "output_tokens_per_s_per_gpu": output,
                "input_share": self.input_share}

    def label(self, gpus: int, input_share: float | None = None) -> str:
        total, output = self.per_gpu(gpus)
        how = {"slo": "the highest load that met its SLO", "best of sweep": "the best run of a sweep",
               "single run": "one run"}.get(self.source, self.source)
        if self.source == "slo" and self.slo:
            how += " (" + ", ".join(f"{k} ≤ {v:g} s" for k, v in self.slo.items()) + ")"
        on = f"{self.gpus} GPU{'s' if self.gpus != 1 else ''}" if self.gpus else f"{gpus} GPU(s), assumed"
        sim = " a SIMULATED engine," if self.simulated else ""
        mix = ""
        if self.input_share is not None and input_share is not None and abs(self.input_share - input_share) > 0.05:
            mix = f"; the benchmark's traffic was {self.input_share:.0%} input, priced here at {input_share:.0%}"
        return (f" (MEASURED by llmconsole bench on{sim} {how}: {total:,.1f} total / {output:,.1f} output tokens/s "
                f"per GPU, measured on {on}{mix}; {self.path})")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        return None
    return float(value)


def load_measured(path: str) -> Measured:
    """The sustained throughput of a bench result; CalcError (one line) for a file that has none."""
    try:
        doc = load(path)
    except ResultError as exc:
        raise CalcError(f"--measured: {exc}") from None
    s = doc.get("sustained")
    if not isinstance(s, dict):
        why = "no run met its SLO" if doc.get("slo") else "no request completed"
        raise CalcError(f"--measured: {path} has no sustained throughput ({why})")
    total, output = _number(s.get("total_tokens_per_s")), _number(s.get("output_tokens_per_s"))
    if not total or output is None:
        raise CalcError(f"--measured: {path} has no usable sustained throughput")
    gpus = s.get("gpus")
    if not (isinstance(gpus, int) and not isinstance(gpus, bool) and gpus >= 1):
        gpus = None
    slo = doc.get("slo")
    objectives = slo.get("objectives") if isinstance(slo, dict) else None
    target = doc.get("target") if isinstance(doc.get("target"), dict) else {}
    em = doc.get("engine_metrics") if isinstance(doc.get("engine_metrics"), dict) else {}
    fleet = target.get("fleet") if isinstance(target.get("fleet"), dict) else {}
    return Measured(
        path, total, output, gpus, str(s.get("source") or "?"),
        objectives if isinstance(objectives, dict) else None, _number(s.get("input_share")),
        doc.get("model") if isinstance(doc.get("model"), str) else None,
        target.get("engine") if isinstance(target.get("engine"), str) else None,
        target.get("target") if isinstance(target.get("target"), str) else None,
        bool(em.get("simulated") or fleet.get("simulated")),
    )  # fmt: skip
