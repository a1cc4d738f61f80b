"""The dialect contract: everything in which the simulated vLLM, SGLang and TGI differ.

A ``Dialect`` owns its launch flags, its metric names/types/labels/buckets (a ``TableSink``
subclass), its health semantics, its log lines (loading, readiness, periodic stats, crash, start
failure) and its error bodies. The runtime and the HTTP app never branch on the dialect's name; they
ask the dialect.
"""

from __future__ import annotations

import argparse
from abc import ABC, abstractmethod
from typing import Any

from agents.sim.config import SimConfig
from agents.sim.model import Gauges
from agents.sim.sink import Log, TableSink


class Dialect(ABC):
    """One engine's outward behaviour."""

    name: str
    title: str
    default_port: int
    listens_while_loading = False  # SGLang: listen during start-up, /health 503 until ready
    has_health_generate = False  # SGLang's /health_generate
    has_tokenize = False  # vLLM's POST /tokenize (the engine's own tokenizer, here the simulator's estimate)
    # engine boolean flags we do not implement (so the flag parser does not eat the next token)
    boolean_flags: frozenset[str] = frozenset()

    # --- launch flags -------------------------------------------------------------------------
    @abstractmethod
    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Add the real engine's flags that the simulator honours."""

    @abstractmethod
    def resolve(self, ns: argparse.Namespace) -> dict[str, Any]:
        """From parsed flags: model, served_name, metrics_enabled, metrics_port (others are common)."""

    # --- metrics ------------------------------------------------------------------------------
    @abstractmethod
    def make_metrics(self, cfg: SimConfig, created: float, log: Log) -> TableSink: ...

    def extra_metrics_text(self) -> str:
        """Text prepended to /metrics (process/python collectors where the engine has them)."""
        return ""

    # --- HTTP ---------------------------------------------------------------------------------
    def info(self, cfg: SimConfig) -> dict[str, Any] | None:
        """The JSON of ``GET /info`` (TGI), or None when the engine has no such route."""
        return None

    def error_body(self, status: int, message: str, kind: str = "validation") -> dict[str, Any]:
        names = {400: "BadRequestError", 404: "NotFoundError", 413: "BadRequestError", 422: "BadRequestError"}
        return {
            "object": "error",
            "message": message,
            "type": names.get(status, "BadRequestError"),
            "param": None,
            "code": status,
        }

    def validation_status(self) -> int:
        return 400

    # --- logs ---------------------------------------------------------------------------------
    @abstractmethod
    def boot_lines(self, cfg: SimConfig) -> list[str]: ...

    @abstractmethod
    def loading_line(self, cfg: SimConfig, done: int, total: int, elapsed: float) -> str: ...

    @abstractmethod
    def loaded_lines(self, cfg: SimConfig, load_s: float) -> list[str]: ...

    def listening_lines(self, cfg: SimConfig) -> list[str]:
        """Lines when the socket is bound before loading finished (dialects that listen while loading)."""
        return []

    @abstractmethod
    def ready_lines(self, cfg: SimConfig) -> list[str]:
        """Lines printed once the engine serves; the last one is the engine's readiness line."""

    @abstractmethod
    def crash_lines(self, cfg: SimConfig) -> list[str]:
        """Lines printed when the engine dies at run time; the last one is the engine's last word."""

    @abstractmethod
    def start_fail_lines(self, cfg: SimConfig) -> list[str]: ...

    @abstractmethod
    def shutdown_lines(self, cfg: SimConfig) -> list[str]: ...

    def bind_error_lines(self, cfg: SimConfig, port: int, error: str) -> list[str]:
        return [
            f"OSError: [Errno 98] error while attempting to bind on address ('{cfg.host}', {port}): {error}"
        ]

    def stats_line(
        self, prompt_tps: float, gen_tps: float, gauges: Gauges, preemptions: int, hit_rate: float
    ) -> str | None:
        """A periodic throughput line (vLLM's LoggingStatLogger), or None."""
        return None
