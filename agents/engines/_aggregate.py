"""Label aggregation shared by the adapters: split an exposition into parts and reduce series.

An engine's exposition can carry one series per *part* (vLLM: per ``model_name`` and data-parallel
``engine``; SGLang: per ``model_name`` and ``dp_rank``) and, inside a part, copies of the same series
per *replica* (SGLang's ``tp_rank``/``pp_rank``/``moe_ep_rank``: every rank of one scheduler reports the
same numbers). The rules, applied by :class:`Layout`:

* inside a part, series that differ only in replica labels are copies: take the **max** (never the sum,
  which would multiply the value by the TP size); series that differ in any other label (a
  ``finished_reason``, an ``err``, a custom label) are distinct: **sum** them;
* across parts, :func:`combine` sums counters and request gauges, merges histograms bucket-wise, and takes
  the **max** of the KV-cache usage (see ``GAUGE_COMBINE``).

A name absent from a part gives None (the engine does not expose it there), never 0.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from agents.engines.base import COUNTERS, GAUGES, HISTOGRAMS, Reading
from agents.metrics.model import Histogram, Labels, MetricSet
from agents.metrics.window import histogram_from_samples, merge

Part = tuple[str, str]  # (model name, engine index); ("", "0") when the engine has no such labels
Where = Callable[[Labels], bool]

# How one logical gauge combines across parts. Requests add up. KV-cache usage takes the max: each
# data-parallel engine has its own KV pool, and the fullest one is the one that preempts and queues,
# so an average would hide exactly the engine that is in trouble.
GAUGE_COMBINE: Mapping[str, Callable[[Iterable[float]], float]] = {
    "requests_running": sum,
    "requests_waiting": sum,
    "kv_cache_usage": max,
    "requests_waiting_capacity": sum,
    "requests_waiting_deferred": sum,
}


@dataclass(frozen=True, slots=True)
class Layout:
    """Which labels name a part and which only name a replica of the same numbers."""

    model_label: str | None = None
    engine_label: str | None = None
    default_engine: str = "0"  # the engine index of series without ``engine_label`` (no DP: one engine)
    replica_labels: frozenset[str] = frozenset()

    def part_of(self, labels: Labels) -> Part:
        model = labels.get(self.model_label, "") if self.model_label else ""
        engine = (
            labels.get(self.engine_label, self.default_engine) if self.engine_label else self.default_engine
        )
        return model, engine

    def copy_key(self, labels: Labels) -> tuple[tuple[str, str], ...]:
        """The labels that make a series distinct inside a part (replica labels and ``le`` removed)."""
        skip = self.replica_labels
        return tuple(
            sorted(
                (k, v)
                for k, v in labels.items()
                if k != "le" and k not in skip and k != self.model_label and k != self.engine_label
            )
        )

    def parts(self, metrics: MetricSet, names: Iterable[str]) -> list[Part]:
        """Every part that has a series for any of ``names``, sorted."""
        found: set[Part] = set()
        if isinstance(metrics, PartIndex) and metrics.layout is self:
            for name in names:
                found.update(metrics.by_part(name))
            return sorted(found)
        for name in names:
            for labels, _ in metrics.get(name):
                found.add(self.part_of(labels))
        return sorted(found)

    def series(self, metrics: MetricSet, name: str, part: Part) -> list[tuple[Labels, float]]:
        """The series of ``name`` in ``part``, in exposition order."""
        if isinstance(metrics, PartIndex) and metrics.layout is self:
            return metrics.by_part(name).get(part, [])
        part_of = self.part_of
        return [(labels, value) for labels, value in metrics.get(name) if part_of(labels) == part]

    # --- one part -----------------------------------------------------------------------------------
    def scalar(
        self,
        metrics: MetricSet,
        candidates: Sequence[str],
        part: Part,
        *,
        where: Where | None = None,
        across: Callable[[Iterable[float]], float] = sum,
    ) -> float | None:
        """The value of the first of ``candidates`` that has series in ``part``.

        Replicas are reduced with max, distinct series with ``across``. Series rejected by ``where``
        are ignored, so a family present without a matching series gives 0.0 (it exists, nothing
        matched); a family absent from the part gives None.
        """
        for name in candidates:
            series = self.series(metrics, name, part)
            if not series:
                continue
            copies: dict[tuple[tuple[str, str], ...], float] = {}
            for labels, value in series:
                if where is not None and not where(labels):
                    continue
                key = self.copy_key(labels)
                old = copies.get(key)
                copies[key] = value if old is None else max(old, value)
            return float(across(copies.values())) if copies else 0.0
        return None

    def labelled(self, metrics: MetricSet, name: str, part: Part, label: str, value: str) -> float | None:
        """The value of ``name``'s series in ``part`` whose ``label`` is ``value`` (replicas max, others sum);
        None when no such series exists (unlike :meth:`scalar` with ``where``, which gives 0.0)."""
        if not any(labels.get(label) == value for labels, _ in self.series(metrics, name, part)):
            return None
        return self.scalar(metrics, (name,), part, where=lambda labels: labels.get(label) == value)

    def histogram(self, metrics: MetricSet, candidates: Sequence[str], part: Part) -> Histogram | None:
        """The histogram of the first of ``candidates`` (base names) that has buckets in ``part``."""
        for base in candidates:
            groups = self._histogram_groups(metrics, base, part)
            if not groups:
                continue
            merged: Histogram | None = None
            for copies in groups.values():
                one = replica_max(copies)
                if one is None:
                    continue
                merged = one if merged is None else merge(merged, one)
            return merged
        return None

    def _histogram_groups(
        self, metrics: MetricSet, base: str, part: Part
    ) -> dict[tuple[tuple[str, str], ...], list[Histogram]]:
        """Histograms of ``base`` in ``part``, grouped by distinct series, one entry per replica."""
        buckets = _bucket_series(self.series(metrics, base + "_bucket", part))
        if not buckets:
            return {}
        sums = self._by_series(metrics, base + "_sum", part)
        counts = self._by_series(metrics, base + "_count", part)
        groups: dict[tuple[tuple[str, str], ...], list[Histogram]] = {}
        for key, pairs in buckets.items():
            hist = histogram_from_samples(pairs, sums.get(key), counts.get(key))
            if hist is None:
                continue
            groups.setdefault(self.copy_key(dict(key)), []).append(hist)
        return groups

    def _by_series(
        self, metrics: MetricSet, name: str, part: Part
    ) -> dict[tuple[tuple[str, str], ...], float]:
        return {_series_key(labels): value for labels, value in self.series(metrics, name, part)}


class PartIndex(MetricSet):
    """An exposition as :func:`read_parts` hands it to an adapter: the same samples, types and problems, with
    each name's series split by ``layout``'s parts once, on first use, instead of filtered again by every
    lookup of every part (the agent reads every engine every second)."""

    __slots__ = ("layout", "_by_part")

    def __init__(self, metrics: MetricSet, layout: Layout) -> None:
        super().__init__(metrics.samples, metrics.types, metrics.problems, metrics.lines)
        self.layout = layout
        self._by_part: dict[str, dict[Part, list[tuple[Labels, float]]]] = {}

    def by_part(self, name: str) -> dict[Part, list[tuple[Labels, float]]]:
        found = self._by_part.get(name)
        if found is None:
            found = {}
            part_of = self.layout.part_of
            for sample in self.samples.get(name, ()):
                key = part_of(sample[0])
                if key in found:
                    found[key].append(sample)
                else:
                    found[key] = [sample]
            self._by_part[name] = found
        return found


def _series_key(labels: Labels) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in labels.items() if k != "le"))


def _bucket_series(
    samples: Sequence[tuple[Labels, float]],
) -> dict[tuple[tuple[str, str], ...], list[tuple[float, float]]]:
    """``_bucket`` samples grouped by series (:func:`_series_key`) as (bound, value) in exposition order;
    samples without a readable ``le`` are left out.

    Fast path: the buckets of one series carry their labels in one order (as client libraries write them),
    so they are grouped by their labels as written and each group's key is sorted once. Should two groups
    name one series (labels written in different orders), the careful grouping, one sorted key per
    sample, is used instead, so the result never depends on the path."""
    raw: dict[tuple[tuple[str, str], ...], list[tuple[float, float]]] = {}
    for labels, value in samples:
        rest = labels.copy()
        le = rest.pop("le", None)
        if le is None:
            continue
        try:
            bound = float(le)
        except ValueError:
            continue
        key = tuple(rest.items())
        group = raw.get(key)
        if group is None:
            raw[key] = [(bound, value)]
        else:
            group.append((bound, value))
    grouped = {tuple(sorted(key)): pairs for key, pairs in raw.items()}
    if len(grouped) == len(raw):
        return grouped
    careful: dict[tuple[tuple[str, str], ...], list[tuple[float, float]]] = {}
    for labels, value in samples:
        if "le" in labels:
            try:
                bound = float(labels["le"])
            except ValueError:
                continue
            careful.setdefault(_series_key(labels), []).append((bound, value))
    return careful


def replica_max(copies: Sequence[Histogram]) -> Histogram | None:
    """One histogram from replicas of the same one (SGLang's TP ranks): bucket-wise max.

    The max of non-decreasing cumulative counts is itself non-decreasing in time, so deltas between
    scrapes stay valid even when the replicas were updated at slightly different moments. Replicas
    with different bucket bounds cannot be compared bucket-wise: the one with the largest count wins.
    """
    if not copies:
        return None
    first = copies[0]
    if len(copies) == 1:
        return first
    if any(h.bounds != first.bounds for h in copies[1:]):
        return max(copies, key=lambda h: h.count)
    return Histogram(
        bounds=first.bounds,
        cumulative=tuple(max(column) for column in zip(*(h.cumulative for h in copies), strict=True)),
        sum=max(h.sum for h in copies),
        count=max(h.count for h in copies),
    )


# --- across parts --------------------------------------------------------------------------------------
def combine(kind: str, parts: Mapping[Part, Reading]) -> Reading:
    """One Reading from per-part Readings: counters summed, histograms merged, gauges by GAUGE_COMBINE.

    A logical metric that no part has stays None. ``parts`` of the result is keyed ``"<model>/<engine>"``
    and is empty when there is only one part.
    """
    readings = list(parts.values())
    if not readings:
        return empty_reading(kind)
    if len(readings) == 1:
        only = readings[0]
        return Reading(kind, only.gauges, only.counters, only.histograms, only.models, {})
    gauges = {name: _fold([r.gauges[name] for r in readings], GAUGE_COMBINE[name]) for name in GAUGES}
    counters = {name: _fold([r.counters[name] for r in readings], sum) for name in COUNTERS}
    histograms: dict[str, Histogram | None] = {}
    for name in HISTOGRAMS:
        merged: Histogram | None = None
        for reading in readings:
            hist = reading.histograms[name]
            if hist is not None:
                merged = hist if merged is None else merge(merged, hist)
        histograms[name] = merged
    models = tuple(sorted({m for r in readings for m in r.models}))
    keyed = {f"{model}/{engine}": reading for (model, engine), reading in sorted(parts.items())}
    return Reading(kind, gauges, counters, histograms, models, keyed)


def _fold(values: Iterable[float | None], how: Callable[[Iterable[float]], float]) -> float | None:
    present = [v for v in values if v is not None]
    return float(how(present)) if present else None


def empty_reading(kind: str) -> Reading:
    """A Reading where every logical metric is None (nothing of this engine was found)."""
    return Reading(
        kind,
        dict.fromkeys(GAUGES),
        dict.fromkeys(COUNTERS),
        dict.fromkeys(HISTOGRAMS),
    )


def histogram_names(bases: Iterable[str]) -> set[str]:
    """The sample names a histogram family is exposed under."""
    return {base + suffix for base in bases for suffix in ("_bucket", "_sum", "_count")}


def prefix_share(metrics: MetricSet, prefix: str) -> float:
    """The share of distinct sample names in ``metrics`` that start with ``prefix`` (0..1)."""
    names = [name for name, series in metrics.samples.items() if series]
    if not names:
        return 0.0
    return sum(1 for name in names if name.startswith(prefix)) / len(names)


def read_parts(
    kind: str,
    layout: Layout,
    metrics: MetricSet,
    names: Iterable[str],
    read_part: Callable[[MetricSet, Part], Reading],
) -> Reading:
    """Split ``metrics`` into the parts found among ``names``, read each, and :func:`combine` them."""
    indexed = PartIndex(metrics, layout)
    return combine(kind, {part: read_part(indexed, part) for part in layout.parts(indexed, names)})


def part_reading(
    kind: str,
    part: Part,
    gauges: Mapping[str, float | None],
    counters: Mapping[str, float | None],
    histograms: Mapping[str, Histogram | None],
) -> Reading:
    """A Reading for one part, checking that it fills exactly the logical names of the contract."""
    if set(gauges) != set(GAUGES) or set(counters) != set(COUNTERS) or set(histograms) != set(HISTOGRAMS):
        raise ValueError(f"{kind} adapter filled the wrong logical names")
    model = part[0]
    return Reading(kind, dict(gauges), dict(counters), dict(histograms), (model,) if model else ())
