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
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

DEMO_ENV = "LLMCONSOLE_DEMO_DIR"  # set on every agent the demo starts: the work directory
MARKER_ENV = "LLMCONSOLE_ENGINE_ID"  # the supervisor's marker on every engine process
SIM_GPU_ENV = "LLMCONSOLE_SIM_GPU_DIR"  # the simulated-GPU ledger (under an agent's state_dir)
DIALECTS = ("vllm", "sglang", "tgi")
WAITING_STATES = frozenset({"stopped", "starting", "unreachable"})  # an engine in these has not come up yet


class DemoError(Exception):
    """The fleet could not be started; the message is one line for the user."""


# --- the plan (pure) ------------------------------------------------------------------------------


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
    hang_at_s=60, crash_at_s=15, hung_after_s=20, canary_interval_s=3, canary_timeout_s=3,
    kv_pressure_for_s=10, preemption_storm_for_s=5, backoff_initial_s=2, backoff_max_s=8,
    stats_window_s=30, history_s=900,
)  # fmt: skip
FAST = Timings(
    hang_at_s=8, crash_at_s=2, hung_after_s=4, canary_interval_s=1, canary_timeout_s=1,
    kv_pressure_for_s=2, preemption_storm_for_s=2, backoff_initial_s=0.5, backoff_max_s=1,
    stats_window_s=10, history_s=120,
)  # fmt: skip


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
        EnginePlan("llama-70b", "vllm", "sim/llama-3.3-70b-instruct",
                   ("--load", "3", "--worker", "--fault", f"hang@{t.hang_at_s:g}"),
                   f"hangs {t.hang_at_s:g} s after ready (ENGINE_HUNG, HEALTH_LIES)"),
        EnginePlan("deepseek-v2", "sglang", "sim/deepseek-v2-lite",
                   ("--load", "2", "--fault", f"crash@{t.crash_at_s:g}"),
                   f"crashes {t.crash_at_s:g} s after every start (CRASH_LOOP)"),
        EnginePlan("llama-kv", "vllm", "sim/llama-3.1-8b-long",
                   ("--load", "11", "--kv-tokens", "6000", "--max-num-seqs", "32", "--decode-ms", "20"),
                   "more load than its KV cache holds (KV_PRESSURE, PREEMPTION_STORM, growing queue)"),
    ]  # fmt: skip


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


def toml_value(value: object) -> str:
    """A TOML value for str/int/float/bool/list (JSON's spelling of these is valid TOML)."""
    if isinstance(value, float) and value.is_integer():
        return f"{value:.1f}"
    return json.dumps(value)


def toml_table(header: str, values: dict[str, object]) -> list[str]:
    return [header] + [f"{k} = {toml_value(v)}" for k, v in values.items()]


def thresholds_table(t: Timings) -> dict[str, object]:
    return {
        "ttft_p95_s": t.ttft_p95_s, "hung_after_s": t.hung_after_s, "kv_pressure": t.kv_pressure,
        "kv_pressure_for_s": t.kv_pressure_for_s, "crash_loop_restarts": t.crash_loop_restarts,
        "crash_loop_window_s": t.crash_loop_window_s, "preemption_storm_for_s": t.preemption_storm_for_s,
    }  # fmt: skip


DEMO_NOTE = [
    "# llmconsole demo: a SIMULATED fleet on this machine, generated by `llmconsole demo`.",
    "# The thresholds, canary interval and backoffs below are DEMO VALUES, chosen so the scripted",
    "# incidents show within a minute or two; they are not recommendations for production.",
]


def agent_toml(
    host: HostPlan,
    hostdir: Path,
    listen_port: int,
    engine_ports: dict[str, tuple[int, int | None]],
    t: Timings,
) -> str:
    """The agent's config.toml for one host (engine_ports: id → (port, metrics_port))."""
    agent = {
        "listen": f"127.0.0.1:{listen_port}", "host": host.name, "interval_s": t.interval_s, "history_s": t.history_s,
        "stats_window_s": t.stats_window_s, "state_dir": str(hostdir / "state"), "gpu_source": "simulated",
        "canary_interval_s": t.canary_interval_s, "canary_timeout_s": t.canary_timeout_s,
        "stop_engines_on_exit": True, "tokens_file": str(hostdir / "tokens"),
        "backoff_initial_s": t.backoff_initial_s, "backoff_max_s": t.backoff_max_s,
        "start_retries": 3, "startup_timeout_s": 60.0, "stop_timeout_s": t.stop_timeout_s,
        "gpu_release_timeout_s": 5.0,
    }  # fmt: skip
    lines = [*DEMO_NOTE, f"# Host {host.name}.", "", *toml_table("[agent]", agent), ""]
    lines += toml_table("[thresholds]", thresholds_table(t))
    for gpu, e in enumerate(host.engines):
        port, metrics_port = engine_ports[e.id]
        entry: dict[str, object] = {"id": e.id, "kind": e.kind, "model": e.model, "port": port, "gpus": [gpu % 4]}
        if e.managed:
            entry.update(command=[sys.executable, "-m", "agents.sim", "--dialect", e.kind], args=list(e.args))
        else:
            entry["managed"] = False
        if metrics_port is not None:
            entry["metrics_port"] = metrics_port
        note = [f"# SIMULATED incident: {e.incident}"] if e.incident else []
        if not e.managed:
            note = [f"# WATCHED (managed = false): {WATCHED_NOTE}. Without restart_command, stop_command and",
                    "# start_command its actions are refused, with the reason shown."]
        lines += ["", *note, *toml_table("[[agent.engines]]", entry)]
    return "\n".join(lines) + "\n"


def watched_argv(e: EnginePlan, port: int) -> list[str]:
    """The command the demo runs a watched engine with (the simulated engine, outside any agent)."""
    return [sys.executable, "-m", "agents.sim", "--dialect", e.kind, "--port", str(port), "--model", e.model, *e.args]


def console_toml(hosts: Iterable[tuple[str, str, Path]], t: Timings) -> str:
    """The console's config for the fleet: (name, url, token_file) per host."""
    lines = [
        *DEMO_NOTE,
        "",
        *toml_table("[console]", {"refresh_s": 1.0, "request_timeout_s": 2.0, "stale_after_s": 5.0}),
        "",
    ]
    lines += toml_table("[thresholds]", thresholds_table(t))
    for name, url, token_file in hosts:
        lines += [
            "",
            *toml_table("[[console.hosts]]", {"name": name, "url": url, "token_file": str(token_file)}),
        ]
    return "\n".join(lines) + "\n"


# --- processes ------------------------------------------------------------------------------------


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_ports(n: int, rng: random.Random | None = None) -> list[int]:
    """``n`` distinct free loopback ports, held together while choosing so they differ. Chosen below the
    kernel's ephemeral range when possible: a port from ``bind(0)`` is free only until the next outgoing
    connection on this busy machine takes it as its source port."""
    rng = rng or random.Random()
    low = _ephemeral_low()
    socks: list[socket.socket] = []
    try:
        for _ in range(50 * n):
            if len(socks) == n or low <= 11000:
                break
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", rng.randrange(10000, low)))
            except OSError:
                s.close()
                continue
            socks.append(s)
        while len(socks) < n:  # fallback: whatever the kernel gives
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _prctl(option: int, arg: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(option, arg, 0, 0, 0)


PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def _agent_preexec() -> None:
    # If the demo dies without cleaning up (SIGKILL), the agent still gets SIGTERM and stops its engines.
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    out = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            out[key.decode(errors="replace")] = value.decode(errors="replace")
    return out


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # gone
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def marked_pids(workdir: Path) -> set[int]:
    """Live processes of this demo: agents (``LLMCONSOLE_DEMO_DIR``) and engines (supervisor marker +
    a simulated-GPU ledger under the work directory)."""
    root = str(workdir)
    found = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        pid = int(entry.name)
        env = _environ(pid)
        ours = env.get(DEMO_ENV) == root or (
            MARKER_ENV in env and env.get(SIM_GPU_ENV, "").startswith(root + os.sep)
        )
        if ours and not _is_zombie(pid):
            found.add(pid)
    return found


def _reap_orphans() -> None:
    """Reap children reparented to us (we are a subreaper: engines whose agent died). Called only once the
    agents themselves have been waited for, so no Popen's exit status is taken from it."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


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
    watched: list[tuple[AgentProc, EnginePlan, int, int]] = field(default_factory=list)  # (agent, engine, port, gpu)
    watched_procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

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
            _write_private(token_file, token + "\n")
            config = hostdir / "agent.toml"
            config.write_text(agent_toml(plan, hostdir, listen, engine_ports, self.timings))
            self.agents.append(AgentProc(plan, hostdir, listen, config, token_file, token))
            self.watched += [(self.agents[-1], e, engine_ports[e.id][0], gpu % 4)
                             for gpu, e in enumerate(plan.engines) if not e.managed]
            hosts.append((plan.name, f"http://127.0.0.1:{listen}", token_file))
        self.console_config = self.workdir / "console.toml"
        self.console_config.write_text(console_toml(hosts, self.timings))

    def start(self) -> None:
        _prctl(PR_SET_CHILD_SUBREAPER, 1)  # orphans of a killed agent come back to us to be reaped
        env = {**os.environ, DEMO_ENV: str(self.workdir)}
        for agent, e, port, gpu in self.watched:  # engines no agent starts: as a systemd unit would
            if self.stopped:
                return
            ledger = agent.hostdir / "state" / "sim-gpu"  # the agent's simulated GPUs attribute its memory
            with open(agent.hostdir / f"{e.id}.log", "ab") as log:
                self.watched_procs.append(subprocess.Popen(
                    watched_argv(e, port), cwd=agent.hostdir, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                    env={**env, SIM_GPU_ENV: str(ledger), "CUDA_VISIBLE_DEVICES": str(gpu)},
                    start_new_session=True, preexec_fn=_agent_preexec,
                ))  # fmt: skip
        for agent in self.agents:
            if self.stopped:
                return
            with open(agent.log, "ab") as log:
                agent.proc = subprocess.Popen(
                    [sys.executable, "-m", "console.cli", "agent", "--config", str(agent.config),
                     "--stop-engines-on-exit", "--log-level", "warning"],
                    cwd=agent.hostdir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=log, start_new_session=True, preexec_fn=_agent_preexec,
                )  # fmt: skip

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
        for p in procs:  # agents stop their engines; the watched ones the demo stops itself, as their owner would
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(max(0.0, deadline - time.monotonic()))
        while marked_pids(self.workdir) and time.monotonic() < deadline:  # agents gone, engines stopping
            _reap_orphans()
            time.sleep(0.1)
        self._kill_leftovers(procs)

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
            _reap_orphans()
            if not left and all(p.poll() is not None for p in procs):
                return
            time.sleep(0.1)


def operator_tokens(tokens_files: list[Path]) -> list[str]:
    """One operator token per agent's tokens file, made by the agent's own ``agent token add`` (it stores the
    hash, file 0600, and prints the token once), all at once: the tokens file's format stays the agent's."""
    add = ["agent", "token", "add", "demo-operator", "--role", "operator"]
    argv = [sys.executable, "-m", "console.cli", *add]
    procs: list[subprocess.Popen[str]] = []
    try:
        for path in tokens_files:
            procs.append(
                subprocess.Popen(
                    [*argv, "--tokens-file", str(path)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        tokens = []
        for proc, path in zip(procs, tokens_files, strict=True):
            out, err = proc.communicate(timeout=60)
            if proc.returncode != 0 or not out.strip():
                why = err.strip().splitlines()[-1] if err.strip() else f"exit code {proc.returncode}"
                raise DemoError(f"cannot make the operator token of {path}: {why}")
            tokens.append(out.strip())
        return tokens
    except subprocess.TimeoutExpired:
        raise DemoError("`llmconsole agent token add` did not finish within 60 s") from None
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


__all__ = [
    "DEMO_ENV", "FAST", "NORMAL", "WATCHED", "AgentProc", "DemoError", "DemoFleet", "EnginePlan", "HostPlan",
    "Timings", "agent_toml", "console_toml", "marked_pids", "operator_tokens", "plan_fleet", "watched_argv",
]  # fmt: skip
