"""Watched engines (issue 13), the parts: who owns a port, the action-command policy and runner, the watcher's
state machine on a real listener, and the wire schema's golden watched engine.

Every process here is real (loopback listeners, shell scripts); each is killed in a ``finally``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures.thread  # noqa: F401 - imported lazily by asyncio.to_thread: needed in the unprivileged child
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from agents.schema import ENGINE_STATES, SERVING_STATES, ActionAvailability, from_json, to_dict
from agents.supervisor import REAPER, EngineSupervisor, Policy, ProcessPlan
from agents.supervisor.actions import BUILTIN_ACTION_COMMANDS, action_refusal, command_env, run_command
from agents.supervisor.portowner import PortOwners, owner_launch, tree_root
from agents.supervisor.watched import HealthAnswer, Identity, WatchedEngine, WatchPlan

GOLDEN = Path(__file__).resolve().parents[2] / "data" / "snapshots" / "v1" / "watched.json"

HOLDER = r"""
import ctypes, os, socket, sys, time
port, forks, undumpable = int(sys.argv[1]), sys.argv[2] == "fork", sys.argv[3] == "undumpable"
if undumpable:
    ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: other users' and same-user /proc/<pid>/fd reads fail
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen(8)
if forks and os.fork() == 0:  # a worker that inherits the listening socket, like uvicorn's
    time.sleep(60)
    os._exit(0)
print("listening", flush=True)
while True:
    conn, _ = s.accept()
    conn.close()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _hold(port: int, *, fork: bool = False, undumpable: bool = False) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            HOLDER,
            str(port),
            "fork" if fork else "-",
            "undumpable" if undumpable else "-",
        ],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "listening"
    return proc


def _kill_group(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(5)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


# --- who owns a port ----------------------------------------------------------------------------------------


def test_the_listening_sockets_owner_and_its_tree_are_found() -> None:
    port = _free_port()
    assert PortOwners("127.0.0.1", port).find().listener is None  # nothing listens
    proc = _hold(port, fork=True)
    try:
        owners = PortOwners("127.0.0.1", port)
        found = owners.find()
        assert found.listener == f"127.0.0.1:{port}" and found.pid == proc.pid and found.unseen is None
        children = [p for p in found.pids if p != proc.pid]
        assert (
            len(children) == 1 and proc.pid in found.pids
        )  # the forked holder is in the tree, the owner is the parent
        assert found.name == "python" or (found.name or "").startswith("python")
        again = owners.find()
        assert again.key == found.key  # the same process: same (pid, start time)
    finally:
        _kill_group(proc)
    # a new process on the same port is a new owner (another identity)
    proc2 = _hold(port)
    try:
        after = owners.find()
        assert after.pid == proc2.pid and after.key != found.key
    finally:
        _kill_group(proc2)
    assert owners.find().listener is None


def test_an_owner_the_agent_may_not_inspect_is_reported_as_unseen() -> None:
    """Root may read any /proc/<pid>/fd, so as root the reader drops to nobody (a real other user); as a
    normal user the holder makes itself undumpable, which hides its fds from its own user too."""
    port = _free_port()
    root = os.geteuid() == 0
    proc = _hold(port, undumpable=not root)
    try:
        if not root:
            got = PortOwners("127.0.0.1", port).find()
            result = [got.listener, got.pid, got.unseen]
        else:
            result = _as_nobody(lambda: _found(port))
        listener, pid, unseen = result
        assert listener == f"127.0.0.1:{port}" and pid is None
        assert unseen and "not readable" in unseen and "another user" in unseen
    finally:
        _kill_group(proc)


def test_an_owner_launch_is_read_from_proc_and_an_unreadable_environment_is_said() -> None:
    """The owner's argv and environment are the process's own; another user's environment is not visible."""
    port = _free_port()
    proc = _hold(port, fork=True)
    try:
        assert tree_root(tuple(sorted({proc.pid, *PortOwners("127.0.0.1", port).find().pids}))) == proc.pid
        mine = owner_launch(proc.pid)
        assert (
            mine.argv is not None
            and mine.argv[0] == sys.executable
            and mine.argv[-3:] == (str(port), "fork", "-")
        )
        assert mine.env is not None and mine.env.get("PATH") == os.environ.get("PATH") and mine.unseen is None
    finally:
        _kill_group(proc)
    if os.geteuid() == 0:  # as nobody, this (root's) process: its command line is public, its environment not
        target = os.getpid()
        argv_seen, env_seen, unseen = _as_nobody(lambda: _launch_seen(target))
    else:  # an undumpable process of the same user hides its environment too
        hidden = _hold(_free_port(), undumpable=True)
        try:
            argv_seen, env_seen, unseen = _launch_seen(hidden.pid)
        finally:
            _kill_group(hidden)
    assert argv_seen and not env_seen
    assert unseen.startswith("environment of PID ") and "not visible (another user's process" in unseen


def _launch_seen(pid: int) -> list:
    got = owner_launch(pid)
    return [got.argv is not None, got.env is not None, got.unseen]


def _found(port: int) -> list:
    got = PortOwners("127.0.0.1", port).find()
    return [got.listener, got.pid, got.unseen]


def test_an_engine_whose_owner_cannot_be_seen_is_watched_by_http_and_says_what_is_missing() -> None:
    port = _free_port()
    root = os.geteuid() == 0
    proc = _hold(port, undumpable=not root)
    try:
        state, pid, pids, info = _as_nobody(lambda: _watch_once(port)) if root else _watch_once(port)
        assert state == "ready" and pid is None and pids == []
        assert info["listener"] == f"127.0.0.1:{port}" and info["owner"] is None
        assert info["unobserved"][0].startswith(
            "processes: no process this agent may inspect holds the listening socket"
        )
        assert info["unobserved"][0].endswith("; pid, RSS, uptime and GPU attribution are unavailable")
        assert info["unobserved"][1] == (
            "command line, environment and version: not visible without the owner process; "
            "DANGEROUS_FLAG and ENGINE_ADVISORY are not checked"
        )
    finally:
        _kill_group(proc)


def _watch_once(port: int) -> list:
    eng = WatchedEngine(WatchPlan("w", "127.0.0.1", port), health=_Health())
    asyncio.run(eng.observe_once())
    return [eng.state, eng.pid, list(eng.pids), to_dict(eng.watch_info)]


def _as_nobody(fn) -> list:
    """Run ``fn`` in a forked child that became user nobody; its JSON result comes back through a pipe."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no new imports (the interpreter's own files are not readable by nobody)
        code = 1
        try:
            os.close(r)
            os.setgroups([])
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            os.write(w, json.dumps(fn()).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as fh:
        data = fh.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the unprivileged child failed"
    return json.loads(data)


# --- the action-command policy --------------------------------------------------------------------------------


def test_policy_allows_the_built_in_service_managers_by_name_and_nothing_else(tmp_path: Path) -> None:
    assert BUILTIN_ACTION_COMMANDS == ("systemctl", "docker", "podman")
    assert action_refusal(("systemctl", "restart", "vllm@llama70b"), None, "restart_command") is None
    assert action_refusal(("docker", "restart", "vllm-llama70b"), None, "restart_command") is None
    why = action_refusal(("/bin/sh", "-c", "kill 1"), None, "restart_command")
    assert why and "'sh' is not a built-in action command" in why and "allowed_action_commands" in why
    why = action_refusal((sys.executable, "-m", "agents.sim"), None, "start_command")
    assert why and why.startswith("start_command:") and "allowed_action_commands" in why


def test_policy_refuses_secrets_and_control_characters_whatever_the_list(tmp_path: Path) -> None:
    why = action_refusal(("docker", "login", "--password", "hunter2hunter2"), None, "restart_command")
    assert why and "takes a secret" in why and "hunter2" not in why and "env =" not in why
    assert "Environment=" in why  # where such a secret belongs for a command
    why = action_refusal(("systemctl", "restart", "vllm\n"), None, "restart_command")
    assert why and "control character" in why


def test_an_allow_list_replaces_the_built_in_names_and_is_compared_by_real_path(tmp_path: Path) -> None:
    script = tmp_path / "restart.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    link = tmp_path / "link.sh"
    link.symlink_to(script)
    allowed = (script,)
    assert action_refusal((str(script),), allowed, "restart_command") is None
    assert action_refusal((str(link),), allowed, "restart_command") is None  # same real file
    why = action_refusal(("/usr/bin/systemctl", "restart", "x"), allowed, "restart_command")
    assert why and "is not in [agent] allowed_action_commands" in why
    why = action_refusal(("systemctl", "restart", "x"), allowed, "restart_command")  # not resolved on PATH
    assert why and "not found on PATH" in why
    script.chmod(0o757)  # anyone could replace what the agent runs
    why = action_refusal((str(script),), allowed, "restart_command")
    assert why and "writable by others" in why


def test_command_env_adds_only_the_service_managers_client_variables() -> None:
    env = command_env(
        {"PATH": "/usr/bin"}, {"DOCKER_HOST": "unix:///x.sock", "HF_TOKEN": "hf_secret", "HOME": "/root"}
    )
    assert env == {"PATH": "/usr/bin", "DOCKER_HOST": "unix:///x.sock"}


# --- running an action command ----------------------------------------------------------------------------------


def _script(tmp: Path, name: str, body: str) -> Path:
    path = tmp / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


async def test_a_failing_command_reports_its_exit_status_and_output_tail(tmp_path: Path) -> None:
    fails = _script(tmp_path, "fails.sh", "echo starting\necho 'unit vllm@x not found' >&2\nexit 3\n")
    REAPER.acquire()
    try:
        got = await run_command(
            (str(fails),), {"PATH": os.environ["PATH"]}, key="restart_command", timeout_s=10, reaper=REAPER
        )
        missing = await run_command(
            (str(tmp_path / "nope"),), {}, key="stop_command", timeout_s=10, reaper=REAPER
        )
    finally:
        REAPER.release()
    assert not got.ok and got.status is not None and got.status.code == 3 and not got.timed_out
    assert got.tail == ("starting", "unit vllm@x not found")
    assert got.describe().startswith("restart_command exited 3 after ") and got.describe().endswith(
        "; output: unit vllm@x not found"
    )
    assert not missing.ok and missing.pid is None
    assert missing.describe().startswith("stop_command could not start: No such file or directory")


async def test_a_hanging_command_is_stopped_at_its_timeout_but_a_protected_process_is_spared(
    tmp_path: Path,
) -> None:
    pids = tmp_path / "pids"
    # the command starts two children in its own process group, records them, then hangs
    hangs = _script(
        tmp_path,
        "hangs.sh",
        f"sleep 60 & echo $! >> {pids}\nsleep 60 & echo $! >> {pids}\n"
        "echo 'waiting for the unit' >&2\nwait\n",
    )
    spared: list[int] = []

    def protect() -> list[int]:  # the first child plays the watched engine's process: never signalled
        lines = pids.read_text().split() if pids.exists() else []
        spared[:] = [int(lines[0])] if lines else []
        return spared

    REAPER.acquire()
    started = time.monotonic()
    try:
        got = await run_command(
            (str(hangs),),
            {"PATH": os.environ["PATH"]},
            key="stop_command",
            timeout_s=1.0,
            reaper=REAPER,
            protect=protect,
        )
    finally:
        REAPER.release()
    took = time.monotonic() - started
    children = [int(x) for x in pids.read_text().split()]
    try:
        assert got.timed_out and not got.ok and took < 1.0 + 2 * 2.0 + 1.5
        assert got.status is not None and got.status.signal == signal.SIGTERM
        text = got.describe()
        assert "did not finish within 1s (stop_timeout_s): stopped, killed by SIGTERM" in text
        assert text.endswith("output: waiting for the unit")
        assert spared == [children[0]] and _alive(children[0]), "the protected process is never signalled"
        deadline = time.monotonic() + 3
        while _alive(children[1]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(children[1]), "the command's other process was stopped with it"
    finally:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# --- the watcher's state machine on a real listener -------------------------------------------------------------


class _Health:
    """The HTTP side of the watcher, answered from the test (the listener under watch is real)."""

    def __init__(self) -> None:
        self.status: int | None = 200

    async def __call__(self) -> HealthAnswer:
        return HealthAnswer(self.status, None if self.status == 200 else "no complete response within 2s")


async def test_states_restarts_and_exits_follow_the_port(tmp_path: Path) -> None:
    port = _free_port()
    health = _Health()
    events: list[tuple[str, str, str]] = []
    identity = Identity("vllm", None)

    async def identify() -> Identity:
        return identity

    plan = WatchPlan(
        "w", "127.0.0.1", port, refusals={"restart": "set restart_command"}, startup_timeout_s=0.5
    )
    eng = WatchedEngine(plan, health=health, identify=identify, on_event=lambda *e: events.append(e))
    await eng.observe_once()
    assert eng.state == "stopped" and eng.pid is None and eng.reason and "not started yet" in eng.reason
    assert eng.actions.restart == "set restart_command" and eng.actions.start is None
    proc = _hold(port)
    try:
        await eng.observe_once()
        assert (
            eng.state == "ready" and eng.pid == proc.pid and eng.restarts == 0
        )  # a first sighting is no restart
        assert eng.watch_info.listener == f"127.0.0.1:{port}" and eng.watch_info.kind_seen == "vllm"
        assert eng.set_health("hung", "no progress") and eng.state == "hung"
        identity = Identity("sglang", "serves sglang metrics, not vllm: check kind")
        eng._identify_at = 0.0  # the next identity check is due now
        await eng.observe_once()
        assert eng.state == "hung"  # identity does not override a hang; it keeps a "ready" degraded:
        eng.set_health("ready", "healthy")
        assert eng.state == "degraded" and eng.reason == "serves sglang metrics, not vllm: check kind"
        identity = Identity("vllm", None)
        eng._identify_at = 0.0
        await eng.observe_once()
        eng.set_health("ready", "healthy")
        assert eng.state == "ready"
    finally:
        _kill_group(proc)
    await eng.observe_once()
    assert eng.state == "stopped" and eng.last_exit is not None and eng.last_exit["code"] is None
    proc = _hold(port)
    try:
        health.status = None  # listening, not answering
        await eng.observe_once()
        assert eng.restarts == 1 and eng.pid == proc.pid
        assert eng.state == "starting"  # its process is younger than startup_timeout_s: loading
        await asyncio.sleep(0.6)
        await eng.observe_once()
        assert eng.state == "unreachable" and "no HTTP answer" in (eng.reason or "")
        health.status = 503
        await eng.observe_once()
        assert eng.state == "degraded" and eng.reason == "health check failed: HTTP 503"
        assert eng.state in SERVING_STATES and "unreachable" in ENGINE_STATES
    finally:
        _kill_group(proc)
    assert [e[0] for e in events] == ["exit-observed", "restart-observed"]
    assert all(e[1] == "w" for e in events)


async def test_an_owner_replaced_between_two_looks_is_a_restart_judged_afresh() -> None:
    port = _free_port()
    health = _Health()
    eng = WatchedEngine(WatchPlan("w", "127.0.0.1", port, startup_timeout_s=60), health=health)
    proc = _hold(port)
    try:
        await eng.observe_once()
        assert eng.state == "ready"
        eng.set_health("hung", "no token progress")  # as the watch would flag it
    finally:
        _kill_group(proc)
    proc = _hold(port)  # systemd's Restart=always: back before the next look
    try:
        health.status = None  # the new process is loading
        await eng.observe_once()
        assert eng.restarts == 1 and eng.pid == proc.pid
        assert eng.state == "starting", "a reloading engine is not left hung"
        assert any(e["reason"].startswith("restart observed: PID") for e in eng.events)
        health.status = 200
        await eng.observe_once()
        assert eng.state == "ready" and eng.restarts == 1
    finally:
        _kill_group(proc)


def test_every_engine_reports_its_actions_a_managed_one_refused_by_policy_too(tmp_path: Path) -> None:
    sup = EngineSupervisor(ProcessPlan("m", ("/bin/sh",)), Policy(), tmp_path / "state", tmp_path / "logs")
    assert sup.managed is True and sup.watch_info is None and sup.actions == ActionAvailability()
    why = "refused by launch policy: command '/bin/sh' is not a built-in engine launcher"
    sup.refuse(why)
    assert sup.actions == ActionAvailability(start=why, stop=None, restart=why)
    watched = WatchedEngine(
        WatchPlan(
            "w",
            "127.0.0.1",
            1,
            commands={"restart": ("systemctl", "restart", "w")},
            refusals={"start": "set start_command", "stop": "set stop_command"},
        ),
        health=_Health(),
    )
    assert watched.managed is False and watched.action_refusal("restart") is None
    assert watched.actions == ActionAvailability(
        start="set start_command", stop="set stop_command", restart=None
    )


# --- the wire schema ------------------------------------------------------------------------------------------


def test_golden_watched_engine_round_trips() -> None:
    text = GOLDEN.read_text()
    snap = from_json(text)
    assert to_dict(snap) == json.loads(text)
    watched, managed = snap.engines
    assert watched.managed is False and watched.state == "unreachable" and watched.pid is None
    assert watched.watch is not None and watched.watch.owner is None and watched.watch.unobserved
    assert (
        watched.actions is not None
        and watched.actions.restart is None
        and "stop_command" in (watched.actions.stop or "")
    )
    assert managed.managed is True and managed.watch is None
    # an older agent's engine (no managed/actions/watch keys) reads as managed with actions not reported
    old = json.loads(text)
    for key in ("managed", "actions", "watch"):
        del old["engines"][1][key]
    legacy = from_json(json.dumps(old)).engines[1]
    assert legacy.managed is True and legacy.actions is None and legacy.watch is None
