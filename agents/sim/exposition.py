"""A tiny metric registry that renders Prometheus text the way each real engine's library does.

Three styles, matching what the real engines emit:
- ``python``: prometheus_client in single-process mode (vLLM): counters as ``x_total`` plus an
  ``x_created`` gauge family, histograms as buckets, ``_count``, ``_sum`` then a ``_created`` family;
- ``python_mp``: prometheus_client in multiprocess mode (SGLang): no ``_created``; histograms as
  ``_sum``, buckets, ``_count``;
- ``rust``: metrics-exporter-prometheus (TGI): counters without ``_total``, integer counter values,
  histograms as buckets, ``_sum``, ``_count``.
Labels are written sorted by name (as prometheus_client does); values use prometheus_client's
``floatToGoString`` for the Python styles.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client.utils import floatToGoString

LabelKey = tuple[tuple[str, str], ...]


def _key(labels: Mapping[str, str]) -> LabelKey:
    return tuple(sorted(labels.items()))


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _labels_text(key: LabelKey, extra: tuple[str, str] | None = None) -> str:
    items = list(key)
    if extra is not None:
        items.append(extra)
        items.sort()
    if not items:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in items) + "}"


def _help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


@dataclass(slots=True)
class _HistValue:
    bounds: tuple[float, ...]
    counts: list[float]  # per bucket, non-cumulative; last is +Inf
    total: float = 0.0
    n: float = 0.0

    def observe(self, value: float) -> None:
        for i, b in enumerate(self.bounds):
            if value <= b:
                self.counts[i] += 1
                break
        else:
            self.counts[-1] += 1
        self.total += value
        self.n += 1


@dataclass(slots=True)
class Metric:
    """One family. ``name`` is the registered name (counters without ``_total``)."""

    name: str
    kind: str  # counter | gauge | histogram
    help: str | None  # None: no HELP line (as for a Rust metric never described)
    bounds: tuple[float, ...] = ()
    values: dict[LabelKey, float] = field(default_factory=dict)
    hists: dict[LabelKey, _HistValue] = field(default_factory=dict)
    created: dict[LabelKey, float] = field(default_factory=dict)

    def declare(self, labels: Mapping[str, str], created: float) -> None:
        """Make a series exist (at 0) before its first update, as a labelled child that was created."""
        key = _key(labels)
        if self.kind == "histogram":
            self.hists.setdefault(key, _HistValue(self.bounds, [0.0] * (len(self.bounds) + 1)))
        else:
            self.values.setdefault(key, 0.0)
        self.created.setdefault(key, created)

    def inc(self, labels: Mapping[str, str], amount: float = 1.0) -> None:
        key = _key(labels)
        self.values[key] = self.values.get(key, 0.0) + amount

    def set(self, labels: Mapping[str, str], value: float) -> None:
        self.values[_key(labels)] = value

    def observe(self, labels: Mapping[str, str], value: float) -> None:
        key = _key(labels)
        hist = self.hists.get(key)
        if hist is None:
            hist = self.hists[key] = _HistValue(self.bounds, [0.0] * (len(self.bounds) + 1))
        hist.observe(value)

    def get(self, labels: Mapping[str, str]) -> float:
        return self.values.get(_key(labels), 0.0)


class Registry:
    """An ordered set of families rendered in one style."""

    def __init__(self, style: str, created: float = 0.0) -> None:
        if style not in ("python", "python_mp", "rust"):
            raise ValueError(f"unknown style {style!r}")
        self.style = style
        self.created = created
        self._metrics: dict[str, Metric] = {}

    def add(self, name: str, kind: str, help: str | None, bounds: Sequence[float] = ()) -> Metric:
        metric = Metric(name, kind, help, tuple(float(b) for b in bounds))
        self._metrics[name] = metric
        return metric

    def __getitem__(self, name: str) -> Metric:
        return self._metrics[name]

    def __contains__(self, name: str) -> bool:
        return name in self._metrics

    def render(self) -> str:
        out: list[str] = []
        for metric in self._metrics.values():
            out.extend(self._render(metric))
        return "\n".join(out) + "\n" if out else ""

    # --- styles -------------------------------------------------------------------------------
    def _num(self, value: float) -> str:
        if self.style == "rust":
            if math.isinf(value):
                return "+Inf" if value > 0 else "-Inf"
            if value == int(value) and abs(value) < 1e15:
                return str(int(value))
            return repr(float(value))
        return floatToGoString(value)

    def _le(self, bound: float) -> str:
        if self.style == "rust":
            return repr(bound) if bound != int(bound) else str(int(bound))
        return floatToGoString(bound)

    def _header(self, name: str, kind: str, help: str | None) -> Iterable[str]:
        if help is not None:
            yield f"# HELP {name} {_help(help)}"
        yield f"# TYPE {name} {kind}"

    def _render(self, m: Metric) -> Iterable[str]:
        python = self.style != "rust"
        if not python and not m.values and not m.hists:
            return  # a Rust metric appears only once it has been touched
        if m.kind == "counter":
            sample = f"{m.name}_total" if python else m.name
            yield from self._header(sample, "counter", m.help)
            for key, value in m.values.items():
                yield f"{sample}{_labels_text(key)} {self._num(value)}"
            yield from self._created(m, m.values.keys())
        elif m.kind == "gauge":
            yield from self._header(m.name, "gauge", m.help)
            for key, value in m.values.items():
                yield f"{m.name}{_labels_text(key)} {self._num(value)}"
        else:
            yield from self._header(m.name, "histogram", m.help)
            for key, hist in m.hists.items():
                yield from self._histogram(m.name, key, hist)
            yield from self._created(m, m.hists.keys())

    def _histogram(self, name: str, key: LabelKey, hist: _HistValue) -> Iterable[str]:
        buckets = []
        cumulative = 0.0
        for bound, count in zip((*hist.bounds, math.inf), hist.counts, strict=True):
            cumulative += count
            le = "+Inf" if math.isinf(bound) else self._le(bound)
            buckets.append(f"{name}_bucket{_labels_text(key, ('le', le))} {self._num(cumulative)}")
        count = f"{name}_count{_labels_text(key)} {self._num(hist.n)}"
        total = f"{name}_sum{_labels_text(key)} {self._num(hist.total)}"
        if self.style == "python":
            yield from (*buckets, count, total)
        elif self.style == "python_mp":
            yield from (total, *buckets, count)
        else:
            yield from (*buckets, total, count)

    def _created(self, m: Metric, keys: Iterable[LabelKey]) -> Iterable[str]:
        if self.style != "python":
            return
        keys = list(keys)
        if not keys:
            return
        yield from self._header(f"{m.name}_created", "gauge", m.help)
        for key in keys:
            yield f"{m.name}_created{_labels_text(key)} {self._num(m.created.get(key, self.created))}"
