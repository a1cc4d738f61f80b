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
from urllib.parse import urlsplit

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
    fleet_host: str | None = None  # HOST/ENGINE of the fleet, when the benchmark named its target that way
    fleet_engine: str | None = None
    url_host: str | None = None  # the host of the URL the benchmark drove, when it was given one

    def per_gpu(self, gpus: int) -> tuple[float, float]:
        """(total, output) tokens/s per GPU; ``gpus`` stands in when the result does not say."""
        n = self.gpus or gpus
        return self.total_tokens_per_s / n, self.output_tokens_per_s / n

    def tokens_per_day(self, gpus: int) -> float:
        """Total tokens/day a deployment of ``gpus`` GPUs serves at the measured rate."""
        return self.per_gpu(gpus)[0] * gpus * SECONDS_PER_DAY

    def describe(self, gpus: int) -> dict[str, Any]:
        total, output = self.per_gpu(gpus)
        return {
            "path": self.path,
            "source": self.source,
            "slo": self.slo,
            "model": self.model,
            "engine": self.engine,
            "target": self.target,
            "simulated": self.simulated,
            "measured_gpus": self.gpus,
            "gpus_assumed": self.gpus is None,
            "total_tokens_per_s": self.total_tokens_per_s,
            "output_tokens_per_s": self.output_tokens_per_s,
            "total_tokens_per_s_per_gpu": total,
            "output_tokens_per_s_per_gpu": output,
            "input_share": self.input_share,
        }

    def source_text(self) -> str:
        """Where the capacity comes from: "MEASURED by llmconsole bench on a SIMULATED engine, one run"."""
        how = {
            "slo": "the highest load that met its SLO",
            "best of sweep": "the best run of a sweep",
            "single run": "one run",
        }.get(self.source, self.source)
        if self.source == "slo" and self.slo:
            how += " (" + ", ".join(f"{k} ≤ {v:g} s" for k, v in self.slo.items()) + ")"
        sim = " a SIMULATED engine," if self.simulated else ""
        return f"MEASURED by llmconsole bench on{sim} {how}"

    def label(self, gpus: int, input_share: float | None = None) -> str:
        total, output = self.per_gpu(gpus)
        on = f"{self.gpus} GPU{'s' if self.gpus != 1 else ''}" if self.gpus else f"{gpus} GPU(s), assumed"
        if self.model:
            on += f" serving {self.model}"
        mix = ""
        if (
            self.input_share is not None
            and input_share is not None
            and abs(self.input_share - input_share) > 0.05
        ):
            mix = f"; the benchmark's traffic was {self.input_share:.0%} input, priced here at {input_share:.0%}"
        return (
            f" ({self.source_text()}: {total:,.1f} total / {output:,.1f} output tokens/s "
            f"per GPU, measured on {on}{mix}; {self.path})"
        )

    def matches(self, host: str, engine: str, model: str | None) -> bool:
        """Whether this measurement is of the fleet's engine ``host``/``engine``: the benchmark named it as
        HOST/ENGINE, or drove a URL on ``host`` serving the same model. Models that both sides know must agree
        (an engine relaunched with another model is no longer what was measured)."""
        same_model = self.model is None or model is None or self.model == model
        if self.fleet_host is not None:
            return self.fleet_host == host and self.fleet_engine == engine and same_model
        return self.url_host == host and self.model is not None and self.model == model


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        return None
    return float(value)


def load_measured(path: str, what: str = "--measured") -> Measured:
    """The sustained throughput of a bench result; CalcError (one line, starting with ``what``) for a file
    that has none."""
    try:
        doc = load(path)
    except ResultError as exc:
        raise CalcError(f"{what}: {exc}") from None
    s = doc.get("sustained")
    if not isinstance(s, dict):
        why = "no run met its SLO" if doc.get("slo") else "no request completed"
        raise CalcError(f"{what}: {path} has no sustained throughput ({why})")
    total, output = _number(s.get("total_tokens_per_s")), _number(s.get("output_tokens_per_s"))
    if not total or output is None:
        raise CalcError(f"{what}: {path} has no usable sustained throughput")
    gpus = s.get("gpus")
    if not (isinstance(gpus, int) and not isinstance(gpus, bool) and gpus >= 1):
        gpus = None
    slo = doc.get("slo")
    objectives = slo.get("objectives") if isinstance(slo, dict) else None
    target = _dict(doc.get("target"))
    fleet = _dict(target.get("fleet"))
    return Measured(
        path,
        total,
        output,
        gpus,
        str(s.get("source") or "?"),
        objectives if isinstance(objectives, dict) else None,
        _number(s.get("input_share")),
        _text(doc.get("model")),
        _text(target.get("engine")),
        _text(target.get("target")),
        bool(_dict(doc.get("engine_metrics")).get("simulated") or fleet.get("simulated")),
        _text(fleet.get("host")),
        _text(fleet.get("engine")),
        None if fleet else _host_of(target.get("base_url")),
    )


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _host_of(url: Any) -> str | None:
    if not isinstance(url, str):
        return None
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None
