"""The demo fleet: plan, write configs for, start, watch and tear down local agents on simulated engines.

Every agent is the real one (``python -m console.cli agent``), started in its own session with
``--stop-engines-on-exit``; its engines are the simulated engine (``python -m agents.sim``), which become
simulated by their command alone. One engine of the first host is *watched* (``managed = false``): the demo
starts it itself, in its own session, as a systemd unit or a container would, and its agent only finds it on
its port and watches it (the snapshot says ``managed: false``; it has no action commands, so its actions are
refused with the key to set). Everything lives under one work directory.

Teardown (:meth:`DemoFleet.stop`) is idempotent and leaves nothing behind: SIGTERM to every agent (they
stop their engines) and to every watched engine (no agent stops those), a short wait, then SIGKILL to every
process group and every process still marked as one of this fleet's (the supervisor's ``LLMCONSOLE_ENGINE_ID`` marker together with a
``LLMCONSOLE_SIM_GPU_DIR`` under the work directory, or the demo's own ``LLMCONSOLE_DEMO_DIR``), and every
child that was reparented to this process is reaped.

The plan is :mod:`console.demo_plan`, the files the fleet writes :mod:`console.demo_config`, and the process
helpers (ports, markers, reaping) :mod:`console.demo_procs`; this module runs them as one fleet.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from console.demo_config import (
    DemoError,
    agent_argv,
    agent_toml,
    console_toml,
    operator_tokens,
    watched_argv,
    write_private,
)
from console.demo_plan import FAST, NORMAL, WATCHED, EnginePlan, HostPlan, Timings, plan_fleet
from console.demo_plan import WATCHED_NOTE as WATCHED_NOTE
from console.demo_procs import (
    DEMO_ENV,
    PR_SET_CHILD_SUBREAPER,
    SIM_GPU_ENV,
    agent_preexec,
    free_ports,
    is_subreaper,
    marked_pids,
    prctl,
    reap_orphans,
)
from console.demo_procs import _is_zombie as _is_zombie

WAITING_STATES = frozenset({"stopped", "starting", "unreachable"})  # an engine in these has not come up yet


@dataclass(slots=True)
class AgentProc:
    plan: HostPlan
    hostdir: Path
    port: int
    config: Path
    token_file: Path
    token: str = field(repr=False, default="")
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.hostdir / "agent.log"

    def log_tail(self) -> str:
        """The agent log's most telling line: the agent's own one-line error, an OS error (uvicorn's
        failed bind), else the last line."""
        with contextlib.suppress(OSError):
            lines = [ln.strip() for ln in self.log.read_text(errors="replace").splitlines() if ln.strip()]
            for marker in ("llmconsole agent: error:", "[Errno"):
                found = [ln for ln in lines if marker in ln]
                if found:
                    return found[-1]
            return lines[-1] if lines else ""
        return ""


@dataclass
class DemoFleet:
    """The demo's agents and everything under them. Create, :meth:`prepare`, :meth:`start`,
    :meth:`wait_ready`; :meth:`stop` always (it is safe to call at any point, and more than once)."""

    workdir: Path
    plans: list[HostPlan]
    timings: Timings
    agents: list[AgentProc] = field(default_factory=list)
    console_config: Path | None = None
    stopped: bool = False
    # (agent, engine, port, gpu) of each watched engine
    watched: list[tuple[AgentProc, EnginePlan, int, int]] = field(default_factory=list)
    watched_procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    subreaper_before: bool | None = None  # this process was a subreaper before start() (None: not started)

    @property
    def engine_count(self) -> int:
        return sum(len(p.engines) for p in self.plans)

    def prepare(self) -> None:
        """Write every agent's config, tokens file and token, and the console config."""
        hosts = []
        tgis_total = sum(1 for p in self.plans for e in p.engines if e.kind == "tgi")
        ports = iter(
            free_ports(len(self.plans) + self.engine_count + tgis_total)
        )  # all at once: all distinct
        tokens = iter(operator_tokens([self.workdir / plan.name / "tokens" for plan in self.plans]))
        for plan in self.plans:
            hostdir = self.workdir / plan.name
            hostdir.mkdir(parents=True, exist_ok=True)
            tgis = [e.id for e in plan.engines if e.kind == "tgi"]
            listen, rest = next(ports), ports
            engine_ports = {e.id: (next(rest), None) for e in plan.engines}
            for eid in tgis:
                engine_ports[eid] = (engine_ports[eid][0], next(rest))
            token = next(tokens)
            token_file = hostdir / "operator.token"
            write_private(token_file, token + "\n")
            config = hostdir / "agent.toml"
            config.write_text(agent_toml(plan, hostdir, listen, engine_ports, self.timings))
            self.agents.append(AgentProc(plan, hostdir, listen, config, token_file, token))
            self.watched += [
                (self.agents[-1], e, engine_ports[e.id][0], gpu % 4)
                for gpu, e in enumerate(plan.engines)
                if not e.managed
            ]
            hosts.append((plan.name, f"http://127.0.0.1:{listen}", token_file))
        self.console_config = self.workdir / "console.toml"
        self.console_config.write_text(console_toml(hosts, self.timings))

    def start(self) -> None:
        if self.subreaper_before is None:
            self.subreaper_before = is_subreaper()
        prctl(PR_SET_CHILD_SUBREAPER, 1)  # orphans of a killed agent come back to us to be reaped
        env = {**os.environ, DEMO_ENV: str(self.workdir)}
        for agent, e, port, gpu in self.watched:  # engines no agent starts: as a systemd unit would
            if self.stopped:
                return
            ledger = agent.hostdir / "state" / "sim-gpu"  # the agent's simulated GPUs attribute its memory
            with open(agent.hostdir / f"{e.id}.log", "ab") as log:
                self.watched_procs.append(
                    subprocess.Popen(
                        watched_argv(e, port),
                        cwd=agent.hostdir,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=log,
                        env={**env, SIM_GPU_ENV: str(ledger), "CUDA_VISIBLE_DEVICES": str(gpu)},
                        start_new_session=True,
                        preexec_fn=agent_preexec,
                    )
                )
        for agent in self.agents:
            if self.stopped:
                return
            with open(agent.log, "ab") as log:
                agent.proc = subprocess.Popen(
                    agent_argv(agent.config),
                    cwd=agent.hostdir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                    start_new_session=True,
                    preexec_fn=agent_preexec,
                )

    def engine_states(self, client: httpx.Client) -> dict[str, dict[str, str]]:
        """host → {engine id → state}; an agent that does not answer yet maps to {}."""
        out: dict[str, dict[str, str]] = {}
        for agent in self.agents:
            out[agent.plan.name] = {}
            with contextlib.suppress(httpx.HTTPError, ValueError, KeyError, TypeError):
                if client.get(agent.url + "/healthz").status_code != 200:
                    continue
                r = client.get(agent.url + "/v1/snapshot", headers={"Authorization": f"Bearer {agent.token}"})
                if r.status_code == 200:
                    out[agent.plan.name] = {e["id"]: e["state"] for e in r.json()["engines"]}
        return out

    def wait_ready(self, timeout_s: float, progress: Callable[[int, int], None]) -> None:
        """Until every agent answers and every engine has left "starting"; DemoError on timeout or when
        an agent exits."""
        deadline = time.monotonic() + timeout_s
        total = self.engine_count
        with httpx.Client(timeout=2.0) as client:
            while True:
                for agent in self.agents:
                    code = agent.proc.poll() if agent.proc else None
                    if code is not None:
                        tail = agent.log_tail()
                        raise DemoError(
                            f"agent {agent.plan.name} exited with code {code}" + (f": {tail}" if tail else "")
                        )
                states = self.engine_states(client)
                ready = sum(1 for host in states.values() for s in host.values() if s not in WAITING_STATES)
                progress(ready, total)
                if ready == total:
                    return
                if time.monotonic() >= deadline:
                    waiting = [
                        f"{h}/{e}" for h, es in states.items() for e, s in es.items() if s in WAITING_STATES
                    ]
                    silent = [a.plan.name for a in self.agents if not states.get(a.plan.name)]
                    what = ", ".join(waiting + [f"agent {n} not answering" for n in silent])
                    raise DemoError(
                        f"the demo fleet was not ready within {timeout_s:g} s ({ready}/{total} engines ready; waiting for {what})"
                    )
                time.sleep(0.25)

    def dead_agents(self) -> list[AgentProc]:
        return [a for a in self.agents if a.proc is not None and a.proc.poll() is not None]

    def stop(self, grace_s: float = 6.0) -> None:
        """SIGTERM the agents (they stop their engines), wait up to ``grace_s``, SIGKILL every process
        group and marked process left, reap what was reparented to us. Idempotent."""
        if self.stopped:
            return
        self.stopped = True
        procs = [a.proc for a in self.agents if a.proc is not None] + self.watched_procs
        # agents stop their engines; the watched ones the demo stops itself, as their owner would
        for p in procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(max(0.0, deadline - time.monotonic()))
        while marked_pids(self.workdir) and time.monotonic() < deadline:  # agents gone, engines stopping
            reap_orphans()
            time.sleep(0.1)
        self._kill_leftovers(procs)
        if self.subreaper_before is False:  # orphans of what runs next in this process are not ours
            prctl(PR_SET_CHILD_SUBREAPER, 0)

    def _kill_leftovers(self, procs: list[subprocess.Popen[bytes]]) -> None:
        for _ in range(50):
            left = marked_pids(self.workdir)
            groups = {p.pid for p in procs if p.poll() is None}  # each agent leads its own session and group
            for pid in left:
                with contextlib.suppress(OSError):
                    groups.add(os.getpgid(pid))
            for pgid in groups:
                if pgid > 1 and pgid != os.getpgrp():
                    with contextlib.suppress(OSError):
                        os.killpg(pgid, signal.SIGKILL)
            for pid in left:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            for p in procs:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(1.0)
            reap_orphans()
            if not left and all(p.poll() is not None for p in procs):
                return
            time.sleep(0.1)


__all__ = [
    "DEMO_ENV",
    "FAST",
    "NORMAL",
    "WATCHED",
    "AgentProc",
    "DemoError",
    "DemoFleet",
    "EnginePlan",
    "HostPlan",
    "Timings",
    "agent_toml",
    "console_toml",
    "marked_pids",
    "operator_tokens",
    "plan_fleet",
    "watched_argv",
]
