"""Re-adoption after an agent restart, and its negative cases (reliability.md §2.2)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import tests.support.procs.supervisor_testkit as K
from agents.supervisor import statefile
from agents.supervisor.adopt import judge
from agents.supervisor.proctree import boot_id, cmdline_hash, read_stat

pytestmark = pytest.mark.timeout(60)


async def _connect(port: int) -> bool:
    return await K.tcp_ready(port)()


async def test_adopt_after_supervisor_is_dropped_without_stop(tmp_path: Path) -> None:
    async with K.kit(tmp_path) as k:
        port, pf = K.free_port(), k.pidfile()
        argv = K.engine_argv("--port", str(port), "--child", "--pidfile", str(pf))
        a = k.make(argv, port, is_ready=K.tcp_ready(port))
        await a.start()
        await K.wait_state(a, "ready")
        assert await K.wait_until(lambda: len(K.read_pidfile(pf)) == 4)
        pid, tree = a.pid, set(K.read_pidfile(pf).values())
        await asyncio.sleep(0.3)
        uptime_a = a.uptime_s
        await a.shutdown(stop_engines=False)  # the agent goes away; the engine must not
        assert K.alive(pid) and a.state_path.exists()

        b = k.make(argv, port, is_ready=K.tcp_ready(port))
        await b.adopt_or_start()
        assert b.adopted and b.pid == pid and b.state == "ready", b.events
        assert b.uptime_s >= uptime_a  # continues from the launch, not from the adoption
        assert (
            K.read_pidfile(pf).get("leader") == pid and len(pf.read_text().splitlines()) == 4
        )  # no new process
        assert await K.wait_until(lambda: set(b.pids) == tree)
        assert b.start_attempts == 0 and b.restarts == 0
        # the adopted engine is supervised: a crash is noticed and restarted with a new process
        os.kill(pid, signal.SIGKILL)
        assert await K.wait_until(lambda: b.state == "backoff" or b.restarts >= 1)
        assert not any(K.alive(p) for p in tree)
        await K.wait_state(b, "ready")
        assert b.restarts == 1 and b.pid != pid and not b.adopted


async def test_adopt_after_real_agent_process_is_sigkilled(tmp_path: Path) -> None:
    async with K.kit(tmp_path) as k:
        port, pf = K.free_port(), k.pidfile()
        agent = subprocess.Popen(
            [
                sys.executable,
                str(K.PROCS / "agent_like.py"),
                str(k.state_dir),
                str(k.log_dir),
                str(port),
                "--port",
                str(port),
                "--child",
                "--pidfile",
                str(pf),
                "--tick",
                "0.05",
            ],
            stdout=subprocess.PIPE,
            text=True,
            cwd=str(Path(__file__).parents[3]),
        )
        try:
            line = await asyncio.to_thread(agent.stdout.readline)
            assert line.startswith("READY "), line
            pid = int(line.split()[1])
            assert await K.wait_until(lambda: len(K.read_pidfile(pf)) == 4)
            k.extra_pids += list(K.read_pidfile(pf).values())
            agent.kill()  # agent crash: SIGKILL, no cleanup of any kind
            agent.wait()
            await asyncio.sleep(0.3)
            assert K.alive(pid) and await _connect(port)  # the engine kept serving, no EPIPE death
            size_before = (k.log_dir / "eng.log").stat().st_size

            b = k.make(
                K.engine_argv("--port", str(port), "--child", "--pidfile", str(pf), "--tick", "0.05"),
                port,
                is_ready=K.tcp_ready(port),
            )
            await b.adopt_or_start()
            assert b.adopted and b.pid == pid and b.state == "ready", b.events
            assert len(pf.read_text().splitlines()) == 4
            # its output still reaches the log file and the adopted tail
            assert await K.wait_until(lambda: (k.log_dir / "eng.log").stat().st_size > size_before)
            assert b.log_tail(1)[0].startswith("tick")
            old = K.read_pidfile(pf)
            await b.stop()
            assert b.state == "stopped", b.reason
            assert not any(K.alive(p) for p in old.values())
            assert b.last_exit["code"] is None and b.last_exit["signal"] is None  # not our child: unknown
        finally:
            if agent.poll() is None:
                agent.kill()
                agent.wait()


def _record_for(pid: int, **over) -> dict:
    info = read_stat(pid)
    rec = statefile.EngineRecord(
        engine_id="eng",
        boot_id=boot_id(),
        pid=pid,
        starttime=info.starttime,
        create_time=None,
        cmdline_sha256=cmdline_hash(pid),
        marker="eng:0123456789abcdef",
        host="127.0.0.1",
        port=0,
        log_path="/dev/null",
        launched_at="2026-01-01T00:00:00Z",
    ).to_json()
    rec.update(over)
    return rec


@pytest.fixture
def sleeper():
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    proc.kill()
    proc.wait()


@pytest.mark.parametrize("port_held", [False, True])
async def test_pid_reuse_is_never_adopted_nor_signalled(tmp_path: Path, sleeper, port_held: bool) -> None:
    port = K.free_port()
    holder = None
    if port_held:
        holder = subprocess.Popen([sys.executable, K.LISTENER, str(port)], stdout=subprocess.PIPE, text=True)
        assert holder.stdout.readline().strip() == "listening"
    try:
        async with K.kit(tmp_path) as k:
            rec = _record_for(sleeper.pid, starttime=read_stat(sleeper.pid).starttime - 7, port=port)
            statefile.write_atomic(k.state_dir / "engines" / "eng.json", rec)
            sup = k.make(K.engine_argv("--port", str(port)), port, is_ready=K.tcp_ready(port))
            await sup.adopt_or_start()
            assert not sup.adopted
            if port_held:
                assert sup.state == "failed"
                assert sup.reason.startswith(
                    f"state file names PID {sleeper.pid} but it is a different process; "
                    "not adopted (start time differs, launch marker missing)"
                )
                assert f"in use by PID {holder.pid}" in sup.reason
            else:
                await K.wait_state(sup, "ready")
                assert sup.pid != sleeper.pid
                assert any("port is free, starting fresh" in e["reason"] for e in sup.events)
            await asyncio.sleep(0.2)
            assert sleeper.poll() is None and read_stat(sleeper.pid).state == "S"  # untouched
    finally:
        if holder is not None:
            holder.kill()
            holder.wait()


async def test_boot_id_mismatch_starts_fresh_without_touching_the_pid(tmp_path: Path, sleeper) -> None:
    async with K.kit(tmp_path) as k:
        rec = _record_for(sleeper.pid, boot_id="00000000-0000-0000-0000-000000000000")
        statefile.write_atomic(k.state_dir / "engines" / "eng.json", rec)
        sup = k.make(K.engine_argv(), is_ready=lambda: True)
        await sup.adopt_or_start()
        assert not sup.adopted and sup.pid != sleeper.pid
        await K.wait_state(sup, "ready")
        assert any("another boot" in e["reason"] for e in sup.events)
        assert sleeper.poll() is None
        assert json.loads(sup.state_path.read_text())["pid"] == sup.pid  # replaced by the new launch


async def test_dead_leader_orphans_carrying_the_marker_are_killed_before_fresh_start(tmp_path: Path) -> None:
    async with K.kit(tmp_path) as k:
        pf = k.pidfile()
        argv = K.engine_argv("--child", "--pidfile", str(pf))
        a = k.make(argv, is_ready=lambda: True)
        await a.start()
        await K.wait_state(a, "ready")
        assert await K.wait_until(lambda: len(K.read_pidfile(pf)) == 4)
        old = K.read_pidfile(pf)
        await a.shutdown(stop_engines=False)
        os.kill(old["leader"], signal.SIGKILL)  # the leader dies while no agent watches
        assert await K.wait_until(lambda: not K.alive(old["leader"]))
        assert K.alive(old["child"]) and K.alive(old["grandchild-setsid"])  # orphans hold on

        b = k.make(argv, is_ready=lambda: True)
        await b.adopt_or_start()
        assert not b.adopted and b.pid not in old.values()
        assert not any(K.alive(p) for p in old.values())
        assert any("killed leftover processes of the previous launch" in e["reason"] for e in b.events)


async def test_corrupt_state_file_starts_fresh(tmp_path: Path) -> None:
    async with K.kit(tmp_path) as k:
        path = k.state_dir / "engines" / "eng.json"
        path.parent.mkdir(parents=True)
        path.write_text("{not json")
        sup = k.make(K.engine_argv(), is_ready=lambda: True)
        await sup.adopt_or_start()
        await K.wait_state(sup, "ready")
        assert any(e["reason"].startswith("state file ignored: corrupt state file") for e in sup.events)


async def test_shutdown_with_stop_engines_stops(tmp_path: Path) -> None:
    async with K.kit(tmp_path) as k:
        sup = k.make(K.engine_argv(), is_ready=lambda: True)
        await sup.start()
        await K.wait_state(sup, "ready")
        pid = sup.pid
        await sup.shutdown(stop_engines=True)
        assert sup.state == "stopped" and not K.alive(pid) and not sup.state_path.exists()


def test_judge_rules(tmp_path: Path, sleeper) -> None:
    good = statefile.EngineRecord.from_json(_record_for(sleeper.pid))
    # the sleeper lacks the marker: a live PID that fails any check is refused
    v = judge(good, boot_id())
    assert v.action == "refuse" and "launch marker missing" in v.reason and "start time" not in v.reason
    assert judge(good, None).action == "refuse"
    other = statefile.EngineRecord.from_json(_record_for(sleeper.pid, boot_id="x"))
    assert judge(other, boot_id()).action == "fresh"
    t0 = time.monotonic()
    sleeper.kill()
    sleeper.wait()
    assert time.monotonic() - t0 < 5
    v = judge(good, boot_id())
    assert v.action == "fresh" and v.leftovers_ours


async def test_engine_that_changes_its_command_line_stays_adoptable(tmp_path: Path) -> None:
    """Engines retitle themselves (setproctitle) or exec: the state file follows the live cmdline."""
    async with K.kit(tmp_path) as k:
        port = K.free_port()
        argv = ("/bin/sh", "-c", f"sleep 0.2; exec {sys.executable} {K.FAKE} --port {port}")
        a = k.make(argv, port, is_ready=K.tcp_ready(port))
        await a.start()
        launch_hash = json.loads(a.state_path.read_text())["cmdline_sha256"]
        await K.wait_state(a, "ready")
        pid = a.pid
        assert await K.wait_until(
            lambda: json.loads(a.state_path.read_text())["cmdline_sha256"] != launch_hash
        )
        assert json.loads(a.state_path.read_text())["cmdline_sha256"] == cmdline_hash(pid)
        await a.shutdown(stop_engines=False)
        b = k.make(argv, port, is_ready=K.tcp_ready(port))
        await b.adopt_or_start()
        assert b.adopted and b.pid == pid and b.state == "ready", b.events


async def test_dead_leader_orphans_without_the_marker_are_found_by_session(tmp_path: Path) -> None:
    """vLLM retitles EngineCore/Worker, which wipes their /proc environ (no marker). If the API server
    dies while no agent watches, the next agent must still kill them: they stay in the leader's session."""
    child_pid = tmp_path / "child.pid"
    code = (
        "import subprocess, sys, time\n"
        "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'], env={})\n"
        f"open({str(child_pid)!r}, 'w').write(str(c.pid))\n"
        "time.sleep(600)\n"
    )
    async with K.kit(tmp_path) as k:
        argv = [sys.executable, "-c", code]
        a = k.make(argv, is_ready=lambda: True)
        await a.start()
        await K.wait_state(a, "ready")
        assert await K.wait_until(lambda: child_pid.exists() and child_pid.read_text().strip() != "")
        child = int(child_pid.read_text())
        assert b"LLMCONSOLE_ENGINE_ID" not in Path(f"/proc/{child}/environ").read_bytes()
        leader = a.pid
        await a.shutdown(stop_engines=False)
        os.kill(leader, signal.SIGKILL)  # the leader dies while no agent watches
        assert await K.wait_until(lambda: not K.alive(leader))
        assert K.alive(child)

        b = k.make(argv, is_ready=lambda: True)
        await b.adopt_or_start()
        try:
            assert not K.alive(child), "the marker-less orphan in the old session must be killed"
            assert any("killed leftover processes of the previous launch" in e["reason"] for e in b.events)
        finally:
            if K.alive(child):
                os.kill(child, signal.SIGKILL)
