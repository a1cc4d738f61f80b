"""Run `llmconsole agent` (a real subprocess) on a generated config that supervises real vLLM engines.

Every engine this module configures carries ``LLMCONSOLE_E2E_RUN=<run id>`` and ``LLMCONSOLE_E2E_OWNER=<pid
of the test process>`` in its environment. vLLM retitles its EngineCore and Worker with setproctitle, which
overwrites their /proc environment, so ``kill_run`` finds a run's processes by that marker (API servers,
resource trackers) *and* by session id (each engine is launched in its own session: sid == leader PID);
``kill_orphans`` clears what a crashed earlier run left behind.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import httpx
import psutil

from agents.supervisor.proctree import read_stat

ROOT = Path(__file__).resolve().parents[3]
RUN_VAR = "LLMCONSOLE_E2E_RUN"
OWNER_VAR = "LLMCONSOLE_E2E_OWNER"
SERVED = "tiny-llama"
SERVING = ("ready", "degraded", "hung")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- config -------------------------------------------------------------------------------------------
def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str | Path):
        return json.dumps(str(v))  # JSON string escapes are valid TOML basic-string escapes
    if isinstance(v, list | tuple):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"no TOML form for {type(v).__name__}")


def vllm_engine(
    engine_id: str,
    python: Path,
    model_dir: Path,
    run_id: str,
    args: Iterable[str],
    *,
    cache_root: Path | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One ``[[agent.engines]]`` table for a real vLLM on CPU, launched the way DESIGN.md says works.
    ``cache_root`` (VLLM_CACHE_ROOT: torch.compile artifacts) keeps vLLM's cache beside the e2e cache."""
    env = {"VLLM_CPU_KVCACHE_SPACE": "1", RUN_VAR: run_id, OWNER_VAR: str(os.getpid())}
    if cache_root is not None:
        env["VLLM_CACHE_ROOT"] = str(cache_root)
    return {
        "id": engine_id,
        "kind": "vllm",
        "model": str(model_dir),
        "served_model_name": SERVED,
        "port": free_port(),
        "command": [str(python), "-m", "vllm.entrypoints.openai.api_server"],
        "args": list(args),
        # The adapter adds HF_HUB_OFFLINE / VLLM_NO_USAGE_STATS / DO_NOT_TRACK itself.
        "env": env,
        "canary": True,
        **extra,
    }


def write_config(
    path: Path,
    listen_port: int,
    state_dir: Path,
    engines: list[dict[str, Any]],
    agent: Mapping[str, Any] | None = None,
    thresholds: Mapping[str, Any] | None = None,
    slo: Mapping[str, Any] | None = None,
) -> Path:
    """The agent's TOML: ``[agent]``, ``[thresholds]``, ``[slo]`` (when given; one per agent) and the engines."""
    settings = {
        "listen": f"127.0.0.1:{listen_port}",
        "state_dir": str(state_dir),
        "gpu_source": "none",
        **(agent or {}),
    }
    lines = ["[agent]", *(f"{k} = {toml_value(v)}" for k, v in settings.items()), ""]
    lines += ["[thresholds]", *(f"{k} = {toml_value(v)}" for k, v in (thresholds or {}).items())]
    if slo is not None:
        lines += ["", "[slo]", *(f"{k} = {toml_value(v)}" for k, v in slo.items())]
    for e in engines:
        lines += ["", "[[agent.engines]]", *(f"{k} = {toml_value(v)}" for k, v in e.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


# --- the agent process --------------------------------------------------------------------------------
class AgentProc:
    """`python -m console.cli agent --config PATH`, its stderr appended to ``log``."""

    def __init__(self, config: Path, port: int, log: Path) -> None:
        self.config, self.port, self.log = config, port, log
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        with open(self.log, "ab") as fh:
            fh.write(f"\n=== agent start #{self.starts} ===\n".encode())
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "console.cli",
                    "agent",
                    "--config",
                    str(self.config),
                    "--log-level",
                    "info",
                ],
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
            )

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL (an agent crash): its engines keep running."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def terminate(self, timeout: float = 20.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def log_tail(self, n: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        return ""

    def snap(self) -> dict | None:
        try:
            r = httpx.get(self.url + "/v1/snapshot", timeout=3, trust_env=False)
        except httpx.HTTPError:
            return None
        return r.json() if r.status_code == 200 else None

    def engine(self, engine_id: str) -> dict | None:
        s = self.snap()
        return None if s is None else find_engine(s, engine_id)

    def wait(self, what: str, cond: Callable[[dict], bool], timeout: float, poll_s: float = 0.5) -> dict:
        """Poll /v1/snapshot until ``cond(snapshot)``; fail with the last engines' view and the agent log."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if not self.alive:
                raise AssertionError(f"agent exited while waiting for {what}:\n{self.log_tail()}")
            last = self.snap()
            if last is not None:
                try:
                    if cond(last):
                        return last
                except (KeyError, TypeError, StopIteration):
                    pass
            time.sleep(poll_s)
        engines = [summarize(e) for e in (last or {}).get("engines", [])]
        raise AssertionError(
            f"timed out after {timeout:.0f}s waiting for {what}; engines: "
            f"{json.dumps(engines, indent=1)[:4000]}\nagent log:\n{self.log_tail()}"
        )


class Recorder:
    """Polls an agent's ``/v1/snapshot`` every ``poll_s`` in a background thread for a whole stage and keeps,
    per poll, each engine's state, alerts (code -> alert), ``kv_eta_s``, KV usage and ``slo``: what "never
    raised during the stage" and "which came first" are judged on. Polls that got no snapshot (the agent
    restarting) are counted, not recorded."""

    def __init__(self, agent: AgentProc, poll_s: float = 1.0) -> None:
        self.agent, self.poll_s = agent, poll_s
        self.records: list[tuple[float, dict[str, dict[str, Any]]]] = []
        self.missed = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="snapshot-recorder", daemon=True)

    def start(self) -> Recorder:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _main(self) -> None:
        while not self._stop.is_set():
            snap = self.agent.snap() if self.agent.alive else None
            t = time.monotonic()
            if snap is None:
                self.missed += 1
            else:
                view = {
                    e["id"]: {
                        "state": e.get("state"),
                        "alerts": {a["code"]: a for a in e.get("alerts") or ()},
                        "kv_eta_s": e.get("kv_eta_s"),
                        "kv": (e.get("stats") or {}).get("kv_cache_usage"),
                        "slo": e.get("slo"),
                        "canary": e.get("canary"),
                        "stats_age_s": e.get("stats_age_s"),
                    }
                    for e in snap.get("engines", ())
                }
                with self._lock:
                    self.records.append((t, view))
            self._stop.wait(self.poll_s)

    def sync(self, timeout: float = 10.0) -> None:
        """Wait until a poll started after now was recorded (what a test just saw is in the record)."""
        now = time.monotonic()
        deadline = now + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self.records and self.records[-1][0] > now:
                    return
            time.sleep(0.1)
        raise AssertionError(f"the snapshot recorder recorded nothing for {timeout:.0f} s")

    def since(self, t0: float, engine_id: str) -> list[tuple[float, dict[str, Any]]]:
        """(t, view) of ``engine_id`` in every poll at or after ``t0``, oldest first."""
        with self._lock:
            return [(t, v[engine_id]) for t, v in self.records if t >= t0 and engine_id in v]

    def first(
        self, t0: float, engine_id: str, cond: Callable[[dict[str, Any]], bool]
    ) -> tuple[float, dict[str, Any]] | None:
        """The first poll at or after ``t0`` where ``cond(view)`` held, or None."""
        return next(((t, v) for t, v in self.since(t0, engine_id) if cond(v)), None)

    def codes(self, engine_id: str) -> dict[str, int]:
        """Every alert code seen on ``engine_id`` during the recording, with the number of polls showing it."""
        seen: dict[str, int] = {}
        for _, v in self.since(-math.inf, engine_id):
            for code in v["alerts"]:
                seen[code] = seen.get(code, 0) + 1
        return seen


def find_engine(snap: dict, engine_id: str) -> dict:
    return next(e for e in snap["engines"] if e["id"] == engine_id)


def summarize(e: dict) -> dict:
    return {
        k: e.get(k)
        for k in (
            "id",
            "state",
            "pid",
            "restarts",
            "uptime_s",
            "stats",
            "health",
            "canary",
            "alerts",
            "last_exit",
        )
    }


def alert_codes(e: dict) -> set[str]:
    return {a["code"] for a in e.get("alerts") or ()}


# --- processes ------------------------------------------------------------------------------------------
def tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def titled(pid: int, title: str) -> list[psutil.Process]:
    """Processes of ``pid``'s tree whose name or command line starts with ``title`` (vLLM's setproctitle)."""
    found = []
    for p in tree(pid):
        with contextlib.suppress(psutil.Error):
            if p.name().startswith(title) or " ".join(p.cmdline()).startswith(title):
                found.append(p)
    return found


def alive(pids: Iterable[int]) -> set[int]:
    """The PIDs that still exist and are not zombies."""
    out = set()
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.add(pid)
    return out


def sessions_of(pids: Iterable[int]) -> set[int]:
    """The session ids of ``pids`` (an engine leader runs in its own session: sid == its pid), never ours."""
    own = os.getsid(0)
    out = set()
    for pid in pids:
        info = read_stat(pid)
        if info is not None and info.session not in (0, own):
            out.add(info.session)
    return out


def session_pids(sessions: Iterable[int]) -> set[int]:
    """Live processes in any of ``sessions``: how an engine's EngineCore and Worker are found even after
    their API server died (their environment is unreadable: vLLM's setproctitle overwrites it)."""
    wanted = set(sessions) - {0, os.getsid(0)}
    if not wanted:
        return set()
    found = set()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            info = read_stat(int(entry.name))
            if info is not None and info.session in wanted and not info.dead:
                found.add(info.pid)
    return found


def marked_pids(run_id: str) -> set[int]:
    """Live processes whose environment carries this run's marker (API servers, resource trackers)."""
    return {p.pid for p, env in _env_iter() if env.get(RUN_VAR) == run_id}


def run_pids(run_id: str, leaders: Iterable[int] = ()) -> set[int]:
    """Every live process of this run: the marked ones and everything in their sessions or in the
    sessions of ``leaders`` (engine PIDs the agents reported, alive or not)."""
    marked = marked_pids(run_id)
    return marked | session_pids(sessions_of(marked) | set(leaders))


def state_file_pids(state_dir: Path) -> set[int]:
    """Engine leader PIDs recorded in an agent's state files (``state_dir/engines/*.json``)."""
    pids = set()
    for f in (state_dir / "engines").glob("*.json"):
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
            pids.add(int(json.loads(f.read_text())["pid"]))
    return pids


def kill_run(run_id: str, leaders: Iterable[int] = ()) -> set[int]:
    """SIGKILL every process of the run; returns the survivors (empty on success)."""
    for _ in range(3):  # a process may be mid-fork on the first pass
        pids = run_pids(run_id, leaders)
        if not pids:
            break
        _kill(pids)
    return alive(run_pids(run_id, leaders))


def venv_orphans(venv: Path) -> set[int]:
    """Processes running code from the e2e virtualenv whose session leader is gone: engines left
    behind when an API server died without a supervisor to clean up (EngineCore and Worker survive it)."""
    needle = str(venv)
    found = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        info = read_stat(int(entry.name))
        if info is None or info.dead or info.session in (0, os.getsid(0)) or psutil.pid_exists(info.session):
            continue
        with contextlib.suppress(OSError), open(f"/proc/{info.pid}/maps") as fh:
            if needle in fh.read():
                found.add(info.pid)
    return found


def kill_orphans(venv: Path | None = None) -> None:
    """SIGKILL e2e engines left behind by a test process that no longer exists (a crashed earlier run)."""
    dead_owner = {p.pid for p, env in _env_iter() if OWNER_VAR in env and not _owner_alive(env[OWNER_VAR])}
    pids = dead_owner | session_pids(sessions_of(dead_owner))
    if venv is not None:
        pids |= venv_orphans(venv)
    _kill(pids)


def _owner_alive(pid_text: str) -> bool:
    try:
        return psutil.pid_exists(int(pid_text))
    except ValueError:
        return False


def _env_iter():
    for p in psutil.process_iter(["pid"]):
        try:
            yield p, p.environ()
        except (psutil.Error, OSError):
            continue


def _kill(pids: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while alive(pids) and time.monotonic() < deadline:
        time.sleep(0.1)
