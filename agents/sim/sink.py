"""Routes the queueing model's dialect-neutral events onto one dialect's metric registry by table."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from agents.sim.exposition import Registry
from agents.sim.model import Gauges

Route = tuple[str, Mapping[str, str]]  # (registered metric name, labels)
Log = Callable[[str], None]

SIMULATED_METRIC = "llmconsole_simulated"
SIMULATED_HELP = (
    "1: this endpoint is a SIMULATED engine (llmconsole sim-engine), not a real inference engine."
)


class TableSink:
    """A ``StatsSink`` whose ``observe``/``inc`` follow tables; gauges are set by the subclass hooks."""

    def __init__(
        self,
        registry: Registry,
        observe: Mapping[str, Sequence[Route]],
        inc: Mapping[str, Sequence[Route]],
        log: Log | None = None,
    ) -> None:
        self.registry = registry
        self._observe = observe
        self._inc = inc
        self.log: Log = log or (lambda line: None)

    def observe(self, name: str, value: float) -> None:
        for metric, labels in self._observe.get(name, ()):
            self.registry[metric].observe(labels, value)

    def inc(self, name: str, amount: float = 1.0) -> None:
        for metric, labels in self._inc.get(name, ()):
            self.registry[metric].inc(labels, amount)

    def iteration(self, gauges: Gauges, prefill_tokens: int, decode_tokens: int, now: float) -> None:
        self.set_gauges(gauges)

    def idle(self, gauges: Gauges, now: float) -> None:
        self.set_gauges(gauges)

    def set_gauges(self, gauges: Gauges) -> None:
        """Publish the scheduler gauges (subclasses map them onto their names)."""

    def mark_simulated(self, dialect: str) -> None:
        self.registry.add(SIMULATED_METRIC, "gauge", SIMULATED_HELP).set({"dialect": dialect}, 1.0)

    def render(self) -> str:
        return self.registry.render()
