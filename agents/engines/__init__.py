"""The engine adapters, by kind, and dialect detection from an exposition's metric names."""

from __future__ import annotations

from agents.engines.base import EngineAdapter
from agents.engines.sglang import SglangAdapter
from agents.engines.tgi import TgiAdapter
from agents.engines.vllm import VllmAdapter
from agents.metrics.model import MetricSet

ADAPTERS: dict[str, EngineAdapter] = {
    adapter.kind: adapter for adapter in (VllmAdapter(), SglangAdapter(), TgiAdapter())
}


class UnknownEngine(ValueError):
    """An engine kind no adapter handles."""

    def __init__(self, kind: object) -> None:
        super().__init__(f"unknown engine kind {kind!r}; valid kinds: {', '.join(ADAPTERS)}")
        self.kind = kind


def get_adapter(kind: str) -> EngineAdapter:
    """The adapter for ``kind`` ("vllm", "sglang" or "tgi"); UnknownEngine for anything else."""
    try:
        return ADAPTERS[kind]
    except (KeyError, TypeError):
        raise UnknownEngine(kind) from None


def all_wanted() -> frozenset[str]:
    """Every sample name any adapter reads (parse with this, then detect and read)."""
    return frozenset().union(*(adapter.wanted() for adapter in ADAPTERS.values()))


def detect_kind(metrics: MetricSet) -> str | None:
    """The kind whose adapter scores ``metrics`` highest, or None when no adapter scores above 0."""
    best, best_score = None, 0.0
    for kind, adapter in ADAPTERS.items():
        score = adapter.detect(metrics)
        if score > best_score:
            best, best_score = kind, score
    return best
