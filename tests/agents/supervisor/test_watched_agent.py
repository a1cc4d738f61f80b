"""Watched engines (issue 13) end to end: a real agent watches simulated engines that the test starts outside
it, each in its own session, through a wrapper that writes a flag file if the engine ever receives a catchable
signal (SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1/2): the agent must never signal a watched engine.

Every process is real; the test kills what it started (engines, workers, the agent) in ``finally``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.support.agentproc import engine, free_port, sim, write_config
from tests.support.secure_agent import SecureAgent, write_tokens
from tests.support.secure_agent import write_config as write_config_tables  # inline tables (env)

ROOT = Path(__file__).resolve().parents[3]

# The simulated engine in this very process, with a flag written by any catchable signal. The simulator
# installs its own SIGTERM/SIGINT handler on its event loop (a clean stop), so that handler is wrapped too.
WRAPPER = r"""
import signal, sys
flag = sys.argv[1]

def caught(signum, frame=None):
    with open(flag, "a") as fh:
        fh.write(f"{signal.Signals(signum).name}\n")

for sig in (signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM, signal.SIGINT):
    signal.signal(sig, caught)
from agents.sim import engine as sim_engine

original = sim_engine.Runtime.request_stop
def request_stop(self):
    caught(signal.SIGTERM)
    original(self)
sim_engine.Runtime.request_stop = request_stop
from agents.sim.cli import main
sys.exit(main(sys.argv[2:]))
"""


class Watched:
    """Simulated engines started by the test (never by the agent), one at a time on one port."""

    def __init__(self, tmp: Path, port: int, ledger: Path, gpu: int = 1) -> None:
        self.tmp, self.port, self.ledger, self.gpu = tmp, port, ledger, gpu
        self.wrapper = tmp / "watched_engine.py"
        self.wrapper.write_text(WRAPPER)
        self.flag = tmp / "signalled"
        self.pidfile = tmp / "engine.pid"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.extra_pids: set[int] = set()

    def argv(self, *extra: str) -> list[str]:
        return [
            sys.executable,
            str(self.wrapper),
            str(self.flag),
            "--dialect",
            "vllm",
            "--port",
            str(self.port),
            "--model",
            "sim/watched",
            "--load",
            "2",
            *extra,
        ]

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "LLMCONSOLE_SIM_GPU_DIR": str(self.ledger),
            "CUDA_VISIBLE_DEVICES": str(self.gpu),
        }

    def start(self, *extra: str) -> int:
        with open(self.tmp / "engine.log", "ab") as log:
            proc = subprocess.Popen(
                self.argv(*extra),
                cwd=ROOT,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        self.procs.append(proc)
        self.pidfile.write_text(f"{proc.pid}\n")
        return proc.pid

    def pid(self) -> int:
        return int(self.pidfile.read_text().split()[0])

    def restart_script(self) -> Path:
        """What an operator's restart_command might be: kill the engine, start it again in its own session."""
        script = self.tmp / "restart-engine.sh"
        relaunch = " ".join(json.dumps(a) for a in self.argv())
        script.write_text(
            "#!/bin/sh\n"
            f"old=$(cat {self.pidfile})\n"
            'echo "restarting engine PID $old"\n'
            'kill -9 "$old"\n'
            "while kill -0 \"$old\" 2>/dev/null && ! grep -q '^[^ ]* ([^)]*) Z' /proc/$old/stat; do sleep 0.05; done\n"
            f"CUDA_VISIBLE_DEVICES={self.gpu} LLMCONSOLE_SIM_GPU_DIR={self.ledger} "
            f"setsid {relaunch} >> {self.tmp / 'engine.log'} 2>&1 < /dev/null &\n"
            f"echo $! > {self.pidfile}\n"
            'echo "started engine PID $!"\n'
        )
        script.chmod(0o755)
        return script

    def signals(self) -> str:
        return self.flag.read_text() if self.flag.exists() else ""

    def cleanup(self) -> None:
        pids = {p.pid for p in self.procs} | self.extra_pids
        with contextlib.suppress(OSError, ValueError):
            pids.add(self.pid())
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        for p in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(5)


def wait(what: str, cond: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def children(pid: int) -> list[int]:
    with contextlib.suppress(OSError):
        return [
            int(x)
            for t in os.listdir(f"/proc/{pid}/task")
            for x in Path(f"/proc/{pid}/task/{t}/children").read_text().split()
        ]
    return []


def audit_records(state_dir: Path, engine_id: str) -> list[dict]:
    path = state_dir / "audit.log"
    lines = path.read_text().splitlines() if path.exists() else []
    return [r for r in map(json.loads, lines) if r.get("engine") == engine_id]


def test_a_watched_engine_beside_a_managed_one(tmp_path: Path) -> None:
    """Stats, canary, GPU attribution and ORPHAN_GPU_MEMORY; a SIGSTOP hang; kill -9 and a relaunch by the
    test counted as an observed restart; an operator restart through restart_command, audited; never a
    signal from the agent; the agent's exit stops the managed engine and leaves the watched one."""
    port, eport = free_port(), free_port()
    state_dir = tmp_path / "state"
    eng = Watched(tmp_path, eport, state_dir / "sim-gpu")
    script = eng.restart_script()
    tokens = write_tokens(tmp_path / "tokens", viewer="viewer", alice="operator")
    config = write_config(
        tmp_path,
        port,
        [
            {
                "id": "managed",
                "kind": "sglang",
                "model": "sim/m",
                "port": free_port(),
                "gpus": [2],
                "command": sim("sglang"),
                "args": ["--load", "1"],
            },
            {
                "id": "watched",
                "kind": "vllm",
                "model": "sim/watched",
                "port": eport,
                "gpus": [1],
                "managed": False,
                "restart_command": [str(script)],
                "stop_timeout_s": 10,
            },
        ],
        agent={
            "tokens_file": str(tmp_path / "tokens"),
            "allowed_action_commands": [str(script)],
            "stop_engines_on_exit": True,
        },
        thresholds={"hung_after_s": 3.0, "crash_loop_restarts": 1},
    )
    agent = SecureAgent(config, port, token=tokens["viewer"])
    first = eng.start("--worker")
    try:
        agent.start()

        def watched(cond: Callable[[dict], bool]) -> Callable[[dict], bool]:
            return lambda s: cond(engine(s, "watched")) and engine(s, "managed")["state"] == "ready"

        snap = agent.wait(
            "both engines ready with live stats and a good canary",
            watched(
                lambda e: (
                    e["state"] == "ready"
                    and e["stats"] is not None
                    and (e["canary"] or {}).get("ok") is True
                    and e["rss_bytes"] is not None
                )
            ),
            timeout=40,
        )
        w, m = engine(snap, "watched"), engine(snap, "managed")
        assert (
            m["managed"] is True
            and m["watch"] is None
            and m["actions"] == {"start": None, "stop": None, "restart": None}
        )
        assert w["managed"] is False and w["pid"] == first and w["restarts"] == 0
        assert w["watch"]["listener"] == f"127.0.0.1:{eport}" and w["watch"]["kind_seen"] == "vllm"
        assert w["watch"]["kind_error"] is None and w["watch"]["owner"].startswith("python")
        assert w["actions"]["restart"] is None
        assert "set stop_command" in w["actions"]["stop"] and "set start_command" in w["actions"]["start"]
        assert w["simulated"] is True and w["stats"]["requests_running"] is not None
        # GPU attribution: the engine and its worker (a child the agent never launched) belong to it
        worker = children(first)
        assert len(worker) == 1
        eng.extra_pids.update(worker)
        gpu1 = {p["pid"]: p["engine_id"] for p in snap["gpus"][1]["processes"]}
        assert gpu1 == {first: "watched", worker[0]: "watched"}
        assert not [a for a in snap["alerts"] if a["code"] == "ORPHAN_GPU_MEMORY"]

        with agent.client() as c:  # an action without its command: 409 naming the key, audited as failed
            r = c.post("/v1/engines/watched/stop", headers={"Authorization": f"Bearer {tokens['alice']}"})
        assert r.status_code == 409 and "set stop_command" in r.json()["error"], r.text

        # SIGSTOP: flagged as for a managed engine
        os.kill(first, signal.SIGSTOP)
        try:
            snap = agent.wait(
                "the stopped engine flagged hung",
                lambda s: engine(s, "watched")["state"] == "hung",
                timeout=20,
            )
            assert "ENGINE_HUNG" in {a["code"] for a in engine(snap, "watched")["alerts"]}
        finally:
            os.kill(first, signal.SIGCONT)
        agent.wait("it recovers", lambda s: engine(s, "watched")["state"] == "ready", timeout=20)

        # kill -9, then relaunch by the test: an observed restart; the worker left behind is an orphan
        os.kill(first, signal.SIGKILL)
        snap = agent.wait(
            "the exit observed",
            lambda s: (
                engine(s, "watched")["state"] == "stopped"
                and "ORPHAN_GPU_MEMORY" in {a["code"] for a in s["alerts"]}
            ),
            timeout=15,
        )
        assert engine(snap, "watched")["last_exit"] is not None and engine(snap, "watched")["pid"] is None
        orphan = next(a for a in snap["alerts"] if a["code"] == "ORPHAN_GPU_MEMORY")
        assert str(worker[0]) in json.dumps(orphan["evidence"])
        os.kill(worker[0], signal.SIGKILL)
        second = eng.start()
        snap = agent.wait(
            "the relaunch counted as a restart",
            lambda s: engine(s, "watched")["state"] == "ready" and engine(s, "watched")["pid"] == second,
            timeout=20,
        )
        w = engine(snap, "watched")
        assert w["restarts"] == 1 and any("restart observed: PID" in (e["reason"] or "") for e in w["events"])
        assert "CRASH_LOOP" in {a["code"] for a in w["alerts"]}  # restarts by systemd or Docker count too

        # an operator restart runs restart_command: 202 at once, audited with its outcome, ready again, not counted
        with agent.client() as c:
            r = c.post("/v1/engines/watched/restart", headers={"Authorization": f"Bearer {tokens['alice']}"})
        assert r.status_code == 202 and r.json()["state"] == "stopping", r.text
        request_id = r.json()["request_id"]
        wait(
            "restart_command's outcome in the audit log",
            lambda: (
                len([r for r in audit_records(state_dir, "watched") if r.get("request_id") == request_id])
                == 2
            ),
        )
        third = eng.pid()
        assert third != second
        snap = agent.wait(
            "the restarted engine ready",
            lambda s: engine(s, "watched")["state"] == "ready" and engine(s, "watched")["pid"] == third,
            timeout=20,
        )
        assert engine(snap, "watched")["restarts"] == 1  # the operator's restart is not an observed crash
        records = [r for r in audit_records(state_dir, "watched") if r.get("request_id") == request_id]
        assert [r["result"] for r in records][0] == "allowed"
        outcome = records[1]
        assert (
            outcome["actor"] == "alice" and outcome["action"] == "restart" and outcome["role"] == "operator"
        )
        assert outcome["result"].startswith("done: restart_command exited 0 after ")
        with agent.client() as c:
            logs = c.get("/v1/engines/watched/logs").json()["lines"]
        assert (
            any(f"restarting engine PID {second}" in ln for ln in logs) and "watched, not launched" in logs[0]
        )

        # the audit trail: the agent observed, never acted on its own
        agent_actions = {r["action"] for r in audit_records(state_dir, "watched") if r["actor"] == "agent"}
        assert agent_actions == {"exit-observed", "restart-observed"}
    finally:
        if agent.proc and agent.proc.poll() is None:
            agent.proc.send_signal(signal.SIGTERM)  # stop_engines_on_exit: the managed engine only
            with contextlib.suppress(subprocess.TimeoutExpired):
                agent.proc.wait(20)
        survivor = eng.pid()
        still_there = alive(survivor)
        received = eng.signals()
        if still_there:  # the detector works: a SIGTERM from the test is written down
            os.kill(survivor, signal.SIGTERM)
            with contextlib.suppress(AssertionError):
                wait("the flag", lambda: eng.signals() != "", timeout=5)
        eng.cleanup()
        if agent.proc and agent.proc.poll() is None:
            agent.proc.kill()
    assert received == "", f"a watched engine received {received!r}"
    assert still_there, "the agent's exit stopped a watched engine"
    assert eng.signals() == "SIGTERM\n", "the signal detector did not fire on the test's own SIGTERM"
    assert agent.proc is not None and agent.proc.returncode == 0


def test_bad_input_is_shown_as_such(tmp_path: Path) -> None:
    """A port served by another kind of engine, by something that is not an engine, by nothing; an action
    command that fails and one that hangs past stop_timeout_s: reported with exit status and output, audited."""
    port = free_port()
    sglang_port, web_port, empty_port = free_port(), free_port(), free_port()
    fails = tmp_path / "fails.sh"
    fails.write_text("#!/bin/sh\necho 'Job for vllm@x.service failed' >&2\nexit 5\n")
    hangs = tmp_path / "hangs.sh"
    hangs.write_text(
        f"#!/bin/sh\necho 'waiting for the unit'\nsleep 60 &\necho $! > {tmp_path / 'hung.pid'}\nwait\n"
    )
    for s in (fails, hangs):
        s.chmod(0o755)
    tokens = write_tokens(tmp_path / "tokens", viewer="viewer", alice="operator")
    config = write_config(
        tmp_path,
        port,
        [
            {"id": "other-kind", "kind": "vllm", "model": "m", "port": sglang_port, "managed": False},
            {"id": "not-an-engine", "kind": "vllm", "model": "m", "port": web_port, "managed": False},
            {
                "id": "nothing",
                "kind": "tgi",
                "model": "m",
                "port": empty_port,
                "managed": False,
                "restart_command": [str(fails)],
                "start_command": [str(hangs)],
                "stop_timeout_s": 1,
            },
        ],
        agent={"tokens_file": str(tmp_path / "tokens"), "allowed_action_commands": [str(fails), str(hangs)]},
    )
    procs = [
        subprocess.Popen(
            [*sim("sglang"), "--port", str(sglang_port), "--enable-metrics"],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        ),
        subprocess.Popen(
            [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(web_port)],
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        ),
    ]
    agent = SecureAgent(config, port, token=tokens["viewer"])
    hung_pid: int | None = None
    try:
        agent.start()
        snap = agent.wait(
            "each watched engine judged",
            lambda s: (
                engine(s, "other-kind")["watch"]["kind_error"] is not None
                and engine(s, "other-kind")["state"] == "degraded"
                and engine(s, "not-an-engine")["watch"]["kind_error"] is not None
                and engine(s, "nothing")["state"] == "stopped"
            ),
            timeout=40,
        )
        other = engine(snap, "other-kind")
        assert other["watch"]["kind_seen"] == "sglang"
        assert other["watch"]["kind_error"].startswith("serves sglang metrics, not vllm")
        web = engine(snap, "not-an-engine")
        assert web["state"] == "degraded"
        assert any(e["reason"] == "health check failed: HTTP 404" for e in web["events"])
        assert web["watch"]["kind_error"] == (
            "cannot confirm a vllm engine: GET /metrics answers HTTP 404 (its "
            "metrics are off, or it is not an LLM engine)"
        )
        assert web["watch"]["owner"].startswith("python") and web["pid"] == procs[1].pid
        nothing = engine(snap, "nothing")
        assert nothing["pid"] is None and nothing["watch"]["listener"] is None and nothing["restarts"] == 0
        assert nothing["actions"]["restart"] is None and nothing["actions"]["start"] is None
        assert "set stop_command" in nothing["actions"]["stop"]

        auth = {"Authorization": f"Bearer {tokens['alice']}"}
        with agent.client() as c:
            assert c.post("/v1/engines/nothing/restart", headers=auth).status_code == 202
        failed = _outcome(agent, tmp_path, "restart")
        assert failed["actor"] == "alice" and failed["result"].startswith(
            "failed: restart_command exited 5 after "
        )
        assert failed["result"].endswith("; output: Job for vllm@x.service failed")
        t0 = time.monotonic()
        with agent.client() as c:
            r = c.post("/v1/engines/nothing/start", headers=auth)
        assert r.status_code == 202 and r.json()["state"] == "starting", r.text
        hung = _outcome(agent, tmp_path, "start")
        assert time.monotonic() - t0 < 8
        assert hung["result"] == (
            "failed: start_command did not finish within 1s (stop_timeout_s): stopped, killed by "
            "SIGTERM; output: waiting for the unit"
        )
        hung_pid = int((tmp_path / "hung.pid").read_text())
        wait("the hung command's child to be gone", lambda: not alive(hung_pid), timeout=5)
        snap = agent.wait("the engine back to stopped", lambda s: engine(s, "nothing")["state"] == "stopped")
        reasons = [e["reason"] for e in engine(snap, "nothing")["events"]]
        assert any(r.startswith("failed: start_command did not finish") for r in reasons)
    finally:
        if agent.proc is not None:
            agent.proc.kill()
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(5)
        if hung_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(hung_pid, signal.SIGKILL)


def _outcome(agent: SecureAgent, tmp: Path, action: str) -> dict:
    """The outcome record of the latest accepted ``action`` on engine "nothing" (the one after "allowed")."""
    found: list[dict] = []

    def done() -> bool:
        recs = [r for r in audit_records(tmp / "state", "nothing") if r["action"] == action]
        found[:] = [r for r in recs if r["result"] not in ("allowed",)]
        return bool(found)

    wait(f"the outcome of {action}", done, timeout=15)
    return found[-1]


def test_launch_keys_on_a_watched_engine_stop_the_agent_before_it_starts(tmp_path: Path) -> None:
    """A config with managed = false and launch keys is refused before anything starts: exit 2, one line."""
    port = free_port()
    config = write_config_tables(
        tmp_path,
        port,
        [
            {
                "id": "w",
                "kind": "vllm",
                "model": "m",
                "port": free_port(),
                "managed": False,
                "command": ["vllm", "serve"],
                "env": {"A": "b"},
            },
        ],
    )
    r = subprocess.run(
        [sys.executable, "-m", "console.cli", "agent", "--config", str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "command, env do not apply to a watched engine (managed = false)" in lines[0]
