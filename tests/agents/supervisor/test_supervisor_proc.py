"""Process-tree finding/killing, the reaper, and the port pre-flight, on real processes."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from agents.supervisor import MARKER_VAR, REAPER, ExitStatus
from agents.supervisor.portcheck import check_port
from agents.supervisor.proctree import ProcessTree, marker_pids, read_marker, read_stat, signal_identified

FAKE = str(Path(__file__).resolve().parents[2] / "support" / "procs" / "fake_engine.py")
LISTENER = str(Path(__file__).resolve().parents[2] / "support" / "procs" / "listener.py")
pytestmark = pytest.mark.timeout(60)


def _alive(pid: int) -> bool:
    info = read_stat(pid)
    return info is not None and not info.dead


def _wait(pred, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_read_stat_survives_hostile_process_names() -> None:
    code = (
        "import ctypes,time; ctypes.CDLL(None).prctl(15, b'x) (y) S 1 2', 0, 0, 0); "
        "print('ok', flush=True); time.sleep(30)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ok"
        assert Path(f"/proc/{proc.pid}/comm").read_text().strip() == "x) (y) S 1 2"
        info = read_stat(proc.pid)
        assert info.ppid == os.getpid() and info.pgrp == os.getpgrp() and info.state in "RS"
        assert info.starttime > read_stat(os.getpid()).starttime
    finally:
        proc.kill()
        proc.wait()
    assert read_stat(10**9) is None


async def test_tree_found_by_group_and_marker_even_after_leader_dies(tmp_path: Path) -> None:
    REAPER.acquire()  # subreaper + orphan reaping for this test
    marker = f"t:{uuid.uuid4().hex}"
    pf = tmp_path / "pids"
    env = {"PATH": "/usr/bin:/bin", MARKER_VAR: marker}
    leader = subprocess.Popen(
        [sys.executable, FAKE, "--child", "--pidfile", str(pf)], env=env, start_new_session=True
    )
    REAPER.leave_alone(leader.pid)  # this test waits for its own child
    pids: dict[str, int] = {}
    try:
        assert _wait(lambda: len(pf.read_text().splitlines()) == 4 if pf.exists() else False)
        pids = {line.split()[1]: int(line.split()[0]) for line in pf.read_text().splitlines()}
        assert read_marker(pids["grandchild-setsid"]) == marker
        assert marker_pids(marker) == set(pids.values())
        assert marker_pids(marker[:-1]) == set()  # exact value, never a prefix
        tree = ProcessTree(marker, leader.pid, read_stat(leader.pid).starttime, leader.pid, leader.pid)
        assert tree.refresh(fresh=True) == set(pids.values())
        leader.kill()
        leader.wait()
        # orphans: reparented to us (subreaper), the setsid one in its own session, still found
        assert _wait(lambda: read_stat(pids["child"]).ppid == os.getpid())
        assert tree.survivors() == set(pids.values()) - {leader.pid}
        assert tree.signal(signal.SIGKILL) >= 2  # the group at once, then the setsid escapee
        assert _wait(lambda: not any(_alive(p) for p in pids.values()))
        assert tree.survivors() == set()
        before = REAPER.orphans_reaped
        await asyncio.sleep(0)
        REAPER.reap_now()
        assert all(read_stat(p) is None for p in pids.values() if p != leader.pid)  # no zombies
        assert REAPER.orphans_reaped >= before
    finally:
        for pid in pids.values():
            info = read_stat(pid)
            if info is not None and not info.dead:
                os.kill(pid, signal.SIGKILL)
        REAPER.release()


def test_signal_identified_refuses_a_recycled_identity() -> None:
    proc = subprocess.Popen(["sleep", "30"])
    try:
        start = read_stat(proc.pid).starttime
        assert not signal_identified(proc.pid, start + 1, signal.SIGKILL)
        time.sleep(0.1)
        assert proc.poll() is None
        assert not signal_identified(os.getpid(), read_stat(os.getpid()).starttime, signal.SIGKILL)
        assert signal_identified(proc.pid, start, signal.SIGKILL)
        assert proc.wait(5) == -signal.SIGKILL
        assert not signal_identified(proc.pid, start, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()


async def test_reaper_reaps_reparented_orphans_and_leaves_others_alone() -> None:
    REAPER.acquire()
    try:
        sh = subprocess.Popen(
            ["sh", "-c", "sleep 0.3 & echo $!"], stdout=subprocess.PIPE, text=True, start_new_session=True
        )
        REAPER.leave_alone(sh.pid)
        orphan = int(sh.stdout.readline())
        assert sh.wait(5) == 0  # its status was left to its owner
        assert read_stat(orphan).ppid == os.getpid()  # reparented to the subreaper
        before = REAPER.orphans_reaped
        deadline = time.monotonic() + 5
        while read_stat(orphan) is not None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # SIGCHLD / the periodic timer do the reaping
        assert read_stat(orphan) is None and REAPER.orphans_reaped >= before + 1
    finally:
        REAPER.release()


def test_exit_status_descriptions() -> None:
    assert ExitStatus.from_wait(2 << 8) == ExitStatus(2, None)
    assert ExitStatus.from_wait(signal.SIGKILL) == ExitStatus(None, 9)
    assert ExitStatus(2, None).describe() == "exited 2"
    assert ExitStatus(None, 9).describe() == "killed by SIGKILL"
    assert "unknown" in ExitStatus(None, None).describe()


def test_port_check_free_held_reuseport_and_bad_hosts() -> None:
    port = _free_port()
    assert check_port("127.0.0.1", port).free
    assert check_port("127.0.0.1", 0).free
    for extra in ([], ["--reuseport"]):
        holder = subprocess.Popen(
            [sys.executable, LISTENER, str(port), *extra], stdout=subprocess.PIPE, text=True
        )
        try:
            assert holder.stdout.readline().strip() == "listening"
            res = check_port("127.0.0.1", port)
            assert not res.free and res.holder_pid == holder.pid and "listener.py" in res.holder_cmdline
            assert res.error == f"port 127.0.0.1:{port} in use by PID {holder.pid} ({res.holder_cmdline})"
            assert not check_port("0.0.0.0", port).free  # the wildcard overlaps the loopback listener
        finally:
            holder.kill()
            holder.wait()
    res = check_port("no-such-host.invalid", port)
    assert not res.free and res.error.startswith("cannot resolve engine host")
    res = check_port("192.0.2.1", port)  # TEST-NET: not an address of this machine
    assert not res.free and res.error.startswith("cannot bind 192.0.2.1")


def test_time_wait_from_a_previous_run_does_not_block_a_restart() -> None:
    port = _free_port()
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(1)
    cli = socket.create_connection(("127.0.0.1", port))
    conn, _ = srv.accept()
    conn.close()  # the server side closes first: its end goes to TIME_WAIT on `port`
    time.sleep(0.05)
    cli.close()
    srv.close()
    assert check_port("127.0.0.1", port).free
