"""Wire the agent together from its config: supervisors, watches and the collector.

``AgentRuntime`` is what the API talks to (snapshots, history, logs, actions); ``agents.server.serve``
runs it with the HTTP API in one asyncio loop.

The supervisors' automatic decisions (restarts, backoff, adoptions, refusals) go to one event sink,
``set_event_sink(sink)``, called as ``sink(action, engine_id, result)`` (the audit log, with actor
"agent"). Events raised before a sink is set (e.g. launch-policy refusals while the runtime is built) are
kept, up to ``EVENT_BACKLOG``, and delivered when it is set. A sink that raises is logged and never stops
supervision.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import sys
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path

from agents.api import ActionError
from agents.benchmarks import BenchmarkBook
from agents.collector import Collector
from agents.config import AgentConfig, EngineConfig
from agents.engines import get_adapter
from agents.gpu import open_gpu_source
from agents.gpu.base import GpuSource
from agents.http1 import Http1Client
from agents.launchguard import LaunchPolicy, refusal
from agents.redact import Redactor, secret_values
from agents.schema import HostSnapshot
from agents.supervisor import EngineSupervisor, Policy, ProcessPlan
from agents.supervisor.proctree import boot_id
from agents.supervisor.watchsetup import build_watched
from agents.watch import EngineWatch

log = logging.getLogger(__name__)

SIM_GPU_ENV = "LLMCONSOLE_SIM_GPU_DIR"
EVENT_BACKLOG = 256
EventSink = Callable[[str, str, str], None]  # (action, engine_id, result)

# The engine environment starts from these variables of the agent's own environment, nothing else
# (secrets and proxies of the agent's shell never reach an engine unless the config names them).
# PYTHONPATH and LD_LIBRARY_PATH are left out on purpose (each can make the engine load foreign code):
# an engine that needs them gets them from its own `env` in the config.
ENV_ALLOW = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "VIRTUAL_ENV",
    "CUDA_HOME",
    "HF_HOME",
    "NVIDIA_VISIBLE_DEVICES",
)


def scrubbed_env(source: Mapping[str, str]) -> dict[str, str]:
    return {k: source[k] for k in ENV_ALLOW if k in source}


def resolve_executable(argv: list[str], path: str | None) -> list[str]:
    """argv with argv[0] resolved to an absolute path: searched on PATH, then beside this Python's
    scripts (so ``llmconsole`` in a command works from an unactivated virtualenv). Unresolvable names are
    left as they are; the supervisor then reports them as missing."""
    if not argv or os.sep in argv[0]:
        return argv
    search = os.pathsep.join(p for p in (path, os.path.dirname(sys.executable)) if p)
    found = shutil.which(argv[0], path=search)
    return [found, *argv[1:]] if found else argv


def policy_for(engine: EngineConfig) -> Policy:
    s = engine.supervision
    return Policy(
        backoff_initial_s=s.backoff_initial_s,
        backoff_max_s=s.backoff_max_s,
        backoff_reset_s=s.backoff_reset_s,
        start_retries=s.start_retries,
        startup_timeout_s=s.startup_timeout_s,
        stop_timeout_s=s.stop_timeout_s,
        gpu_release_timeout_s=s.gpu_release_timeout_s,
    )


class AgentRuntime:
    def __init__(
        self, config: AgentConfig, *, gpu: GpuSource | None = None, environ: Mapping[str, str] | None = None
    ) -> None:
        self.config = config
        self.history_s = config.history_s
        self.state_dir = Path(config.state_dir).expanduser()
        self.log_dir = Path(config.log_dir or self.state_dir / "logs").expanduser()
        self.sim_gpu_dir = self.state_dir / "sim-gpu"
        for d in (self.state_dir, self.log_dir, self.sim_gpu_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.gpu = gpu or open_gpu_source(config.gpu_source, sim_dir=self.sim_gpu_dir)  # type: ignore[arg-type]
        # The one HTTP client of the engine probes (scrape, health, canary): keep-alive, and a request on an
        # idle connection the engine closed meanwhile is retried once on a new one (agents/http1.py).
        self.http = Http1Client()
        self.benchmarks = BenchmarkBook()  # benchmarks announced through the API (agents/bench_api.py)
        base_env = scrubbed_env(os.environ if environ is None else environ)
        if config.gpu_source == "simulated":
            base_env[SIM_GPU_ENV] = str(self.sim_gpu_dir)
        self.supervisors: dict[str, EngineSupervisor] = {}
        self.watches: dict[str, EngineWatch] = {}
        self._sink: EventSink | None = None
        self._backlog: deque[tuple[str, str, str]] = deque(maxlen=EVENT_BACKLOG)
        self.sink_errors = 0
        self.policy = LaunchPolicy.of(config)
        self.refused: dict[str, str] = {}  # engine id -> why the launch guard refuses it
        # engine log files are masked on disk with the same secrets the API masks in its answers
        self.redactor = Redactor(v for e in config.engines for v in secret_values(e.env))
        for engine in config.engines:
            self._add_engine(engine, base_env)
        self.collector = Collector(
            list(self.watches.values()),
            self.gpu,
            interval_s=config.interval_s,
            history_s=config.history_s,
            host=config.host,
            boot_id=boot_id(),
        )
        self._tasks: set[asyncio.Task[None]] = set()

    def _add_engine(self, engine: EngineConfig, base_env: dict[str, str]) -> None:
        adapter = get_adapter(engine.kind)
        spec = engine.launch_spec()
        if (
            not engine.managed
        ):  # watched through its port, never launched or signalled (agents/supervisor/watched.py)
            watched = build_watched(
                engine,
                self.config,
                adapter,
                spec,
                self.http,
                base_env,
                on_event=self._emit,
                redact=self.redactor,
            )
            self.supervisors[engine.id] = watched  # type: ignore[assignment]  # the same surface
            self.watches[engine.id] = EngineWatch(
                engine,
                self.config,
                watched,
                adapter,
                spec,
                self.http,  # type: ignore[arg-type]
                benchmarks=self.benchmarks,
            )
            return
        plan = ProcessPlan(
            engine_id=engine.id,
            argv=tuple(resolve_executable(adapter.argv(spec), base_env.get("PATH"))),
            env=adapter.env(spec, base_env),
            host=spec.host,
            port=spec.port,
        )
        refused = refusal(plan.argv, plan.env, engine.model, self.policy)
        holder: dict[str, EngineWatch] = {}

        async def is_ready() -> bool:
            return await holder["watch"].is_ready()

        async def gpu_pids() -> set[int]:
            return await asyncio.to_thread(self.gpu.pids_on_gpus)

        sup = EngineSupervisor(
            plan,
            policy_for(engine),
            self.state_dir,
            self.log_dir,
            is_ready=is_ready,
            gpu_pids=gpu_pids,
            on_event=self._emit,
            log_redact=self.redactor,
        )
        watch = EngineWatch(engine, self.config, sup, adapter, spec, self.http, benchmarks=self.benchmarks)
        holder["watch"] = watch
        self.supervisors[engine.id] = sup
        self.watches[engine.id] = watch
        if refused:
            self.refused[engine.id] = refused
            sup.refuse(f"refused by launch policy: {refused}")  # never launched; start/restart say why
            log.error("engine %s refused by launch policy: %s", engine.id, refused)

    # --- automatic decisions -> the event sink ---------------------------------------------------------------
    def set_event_sink(self, sink: EventSink | None) -> None:
        """Send every automatic decision to ``sink(action, engine_id, result)``; the backlog goes first."""
        self._sink = sink
        while sink is not None and self._backlog and self._sink is sink:
            self._deliver(sink, *self._backlog.popleft())

    def _emit(self, action: str, engine_id: str, result: str) -> None:
        sink = self._sink
        if sink is None:
            self._backlog.append((action, engine_id, result))
        else:
            self._deliver(sink, action, engine_id, result)

    def _deliver(self, sink: EventSink, action: str, engine_id: str, result: str) -> None:
        try:
            sink(action, engine_id, result)
        except Exception as exc:  # the audit trail failing must never stop supervision
            self.sink_errors += 1
            log.error("event sink failed on %s %s: %s: %s", action, engine_id, type(exc).__name__, exc)

    # --- AgentRuntime protocol (used by the API) -----------------------------------------------------------
    def latest(self) -> HostSnapshot | None:
        return self.collector.latest()

    def latest_json(self) -> str | None:
        return self.collector.latest_json()

    def history_json(self, seconds: float) -> str:
        return self.collector.history_json(seconds)

    def engine_ids(self) -> list[str]:
        return list(self.supervisors)

    def logs(self, engine_id: str, lines: int) -> list[str]:
        return self.supervisors[engine_id].log_tail(lines)

    async def act(self, engine_id: str, action: str) -> str:
        sup = self.supervisors.get(engine_id)
        if sup is None:
            raise ActionError(f"no engine {engine_id!r}")
        if engine_id in self.refused and action != "stop":
            raise ActionError(f"engine {engine_id} is refused by launch policy: {self.refused[engine_id]}")
        if (why := sup.action_refusal(action)) is not None:  # e.g. a watched engine without that command
            raise ActionError(why)
        if action == "start" and sup.state not in ("stopped", "failed", "exited", "backoff"):
            raise ActionError(f"engine {engine_id} is {sup.state}; stop it first or use restart")
        if action == "stop" and sup.state in ("stopped", "stopping"):
            raise ActionError(f"engine {engine_id} is already {sup.state}")
        coro = {"start": sup.start, "stop": sup.stop, "restart": sup.restart}[action]()
        self._spawn(coro, f"{action} {engine_id}")
        await asyncio.sleep(0)  # let the action take its first step so the reported state is current
        return sup.state

    # --- lifecycle ------------------------------------------------------------------------------------------
    def _spawn(self, coro, what: str) -> None:
        task = asyncio.create_task(coro, name=what)
        self._tasks.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("%s failed", what, exc_info=t.exception())

        task.add_done_callback(done)

    async def start(self) -> None:
        for engine in self.config.engines:
            sup = self.supervisors[engine.id]
            if engine.autostart and engine.id not in self.refused:
                self._spawn(sup.adopt_or_start(), f"adopt-or-start {engine.id}")
        self._spawn(self.collector.run(), "collector")

    async def shutdown(self, stop_engines: bool | None = None) -> None:
        stop = self.config.stop_engines_on_exit if stop_engines is None else stop_engines
        self.collector.stop()
        for watch in self.watches.values():
            await watch.close()
        await asyncio.gather(
            *(s.shutdown(stop_engines=stop) for s in self.supervisors.values()), return_exceptions=True
        )
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.http.aclose()
        with contextlib.suppress(Exception):
            self.gpu.close()
