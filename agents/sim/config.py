"""The resolved configuration of one simulated engine (built by the CLI, read by the runtime)."""

from __future__ import annotations

from dataclasses import dataclass, field

from agents.sim.faults import Fault
from agents.sim.model import ModelConfig


@dataclass(frozen=True, slots=True)
class SimConfig:
    dialect: str
    model: str  # the model path / id as launched
    served_name: str  # the name in /v1/models and in metric labels
    host: str
    port: int
    model_config: ModelConfig = field(default_factory=ModelConfig)
    faults: tuple[Fault, ...] = ()
    worker: bool = False
    worker_setsid: bool = False
    worker_max_s: float = 1800.0
    load_rps: float = 0.0
    seed: int = 0
    gpu_mem_gib: float = 18.0
    tick_s: float = 0.025
    metrics_enabled: bool = True  # SGLang serves /metrics only with --enable-metrics
    metrics_port: int | None = None  # TGI's second listener (--prometheus-port)
    health_generate_timeout_s: float = 20.0
    log_stats: bool = True
    ignored: tuple[str, ...] = ()
    gpus: tuple[int, ...] = (0,)  # the engine's GPU indices (CUDA_VISIBLE_DEVICES; agents/sim/ledger.py)

    @property
    def url(self) -> str:
        host = self.host if ":" not in self.host else f"[{self.host}]"
        return f"http://{host}:{self.port}"
