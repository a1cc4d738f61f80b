"""The demo fleet's plan (pure): which simulated engines run on which demo host, with which scripted
incidents, and the demo's fault times, thresholds and supervision timings (much shorter than production)."""

from __future__ import annotations

from dataclasses import dataclass

DIALECTS = ("vllm", "sglang", "tgi")


@dataclass(frozen=True, slots=True)
class Timings:
    """Demo values for fault times, alert thresholds and supervision (much shorter than production)."""

    hang_at_s: float
    crash_at_s: float
    hung_after_s: float
    canary_interval_s: float
    canary_timeout_s: float
    kv_pressure_for_s: float
    preemption_storm_for_s: float
    backoff_initial_s: float
    backoff_max_s: float
    stats_window_s: float
    history_s: float
    interval_s: float = 1.0
    crash_loop_restarts: int = 3
    crash_loop_window_s: float = 300.0
    kv_pressure: float = 0.9
    ttft_p95_s: float = 0.5
    stop_timeout_s: float = 3.0


NORMAL = Timings(
    hang_at_s=60,
    crash_at_s=15,
    hung_after_s=20,
    canary_interval_s=3,
    canary_timeout_s=3,
    kv_pressure_for_s=10,
    preemption_storm_for_s=5,
    backoff_initial_s=2,
    backoff_max_s=8,
    stats_window_s=30,
    history_s=900,
)
FAST = Timings(
    hang_at_s=8,
    crash_at_s=2,
    hung_after_s=4,
    canary_interval_s=1,
    canary_timeout_s=1,
    kv_pressure_for_s=2,
    preemption_storm_for_s=2,
    backoff_initial_s=0.5,
    backoff_max_s=1,
    stats_window_s=10,
    history_s=120,
)


@dataclass(frozen=True, slots=True)
class EnginePlan:
    id: str
    kind: str
    model: str
    args: tuple[str, ...]
    incident: str | None = None  # what the scripted fault shows, for the banner
    managed: bool = True  # False: started by the demo outside the agent, which only watches it


@dataclass(frozen=True, slots=True)
class HostPlan:
    name: str
    engines: tuple[EnginePlan, ...]


# Healthy engines, one per dialect: (id, model, args). The vLLM one has a worker child, like EngineCore.
_HEALTHY = {
    "vllm": ("llama-8b", "sim/llama-3.1-8b-instruct", ("--load", "4", "--worker")),
    "sglang": ("qwen-7b", "sim/qwen2.5-7b-instruct", ("--load", "3")),
    "tgi": ("mistral-7b", "sim/mistral-7b-instruct", ("--load", "2")),
}


def _incidents(t: Timings) -> list[EnginePlan]:
    return [
        EnginePlan(
            "llama-70b",
            "vllm",
            "sim/llama-3.3-70b-instruct",
            ("--load", "3", "--worker", "--fault", f"hang@{t.hang_at_s:g}"),
            f"hangs {t.hang_at_s:g} s after ready (ENGINE_HUNG, HEALTH_LIES)",
        ),
        EnginePlan(
            "deepseek-v2",
            "sglang",
            "sim/deepseek-v2-lite",
            ("--load", "2", "--fault", f"crash@{t.crash_at_s:g}"),
            f"crashes {t.crash_at_s:g} s after every start (CRASH_LOOP)",
        ),
        EnginePlan(
            "llama-kv",
            "vllm",
            "sim/llama-3.1-8b-long",
            ("--load", "11", "--kv-tokens", "6000", "--max-num-seqs", "32", "--decode-ms", "20"),
            "more load than its KV cache holds (KV_PRESSURE, PREEMPTION_STORM, growing queue)",
        ),
    ]


def plan_fleet(hosts: int, timings: Timings) -> list[HostPlan]:
    """``hosts`` hosts; the three incidents spread round-robin, and every host filled with healthy
    engines of the dialects it does not have yet (so each host runs all three)."""
    if hosts < 1:
        raise ValueError("hosts must be at least 1")
    per_host: list[list[EnginePlan]] = [[] for _ in range(hosts)]
    for i, incident in enumerate(_incidents(timings)):
        per_host[i % hosts].append(incident)
    plans = []
    for i, engines in enumerate(per_host):
        have = {e.kind for e in engines}
        for kind in DIALECTS:
            if kind not in have:
                eid, model, args = _HEALTHY[kind]
                engines.append(EnginePlan(eid, kind, model, args))
        if i == 0:
            engines.append(WATCHED)
        plans.append(HostPlan(f"demo-gpu{i + 1:02d}", tuple(engines)))
    return plans


# Started by the demo itself beside the first host's agent, which only watches it (managed = false).
WATCHED = EnginePlan("llama-8b-ext", "vllm", "sim/llama-3.1-8b-external", ("--load", "2"), managed=False)
WATCHED_NOTE = "started outside its agent (like a systemd unit or a container); the agent only watches it"
