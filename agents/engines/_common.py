"""What the three adapters share: the OpenAI-style HTTP routes, environment building and label-aware
reading. Each adapter supplies its class attributes and ``_read_part``; only real differences remain in
the per-engine modules."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping

from agents.engines._aggregate import Layout, Part, read_parts
from agents.engines._launch import build_env
from agents.engines.base import EngineAdapter, LaunchSpec, Reading, url_host
from agents.metrics.model import MetricSet


class HttpEngineAdapter(EngineAdapter):
    health_path = "/health"
    metrics_path = "/metrics"  # on the API port (TGI also serves it on --prometheus-port)
    extra_env: Mapping[str, str] = {}
    WANTED: frozenset[str] = frozenset()  # every sample name read() looks at
    LAYOUT: Layout

    def env(self, spec: LaunchSpec, base: Mapping[str, str]) -> dict[str, str]:
        return build_env(spec, base, dict(self.extra_env) or None)

    def health_url(self, spec: LaunchSpec) -> str:
        return f"http://{url_host(spec.host)}:{spec.port}{self.health_path}"

    def metrics_url(self, spec: LaunchSpec) -> str:
        return f"http://{url_host(spec.host)}:{spec.port}{self.metrics_path}"

    def wanted(self) -> frozenset[str]:
        return self.WANTED

    def read(self, metrics: MetricSet) -> Reading:
        return read_parts(self.kind, self.LAYOUT, metrics, self.WANTED, self._read_part)

    @abstractmethod
    def _read_part(self, metrics: MetricSet, part: Part) -> Reading: ...
