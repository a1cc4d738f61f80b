"""The three engine dialects the simulator speaks, by name: vLLM, SGLang, TGI.

One module per dialect (``vllm``, ``sglang``, ``tgi``), each a ``Dialect`` (``base``) with its own
``TableSink`` of metric families, as agents/engines/ holds one adapter per engine kind.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from agents.sim.dialects.base import Dialect
from agents.sim.dialects.sglang import Sglang, SglangMetrics
from agents.sim.dialects.tgi import Tgi, TgiMetrics, tgi_duration_buckets
from agents.sim.dialects.vllm import Vllm, VllmMetrics, buckets_1_2_5

__all__ = [
    "DIALECTS",
    "NAMES",
    "Dialect",
    "Sglang",
    "SglangMetrics",
    "Tgi",
    "TgiMetrics",
    "Vllm",
    "VllmMetrics",
    "buckets_1_2_5",
    "get",
    "tgi_duration_buckets",
]

DIALECTS: Mapping[str, Dialect] = {d.name: d for d in (Vllm(), Sglang(), Tgi())}
NAMES: Sequence[str] = tuple(DIALECTS)


def get(name: str) -> Dialect:
    """The dialect called ``name``; KeyError for any other (the CLI checks ``NAMES`` first)."""
    return DIALECTS[name]
