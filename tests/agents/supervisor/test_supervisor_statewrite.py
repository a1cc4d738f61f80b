"""State writes that fail, unrecorded launches on an engine's port, persisted restarts and the event sink
(issue 10 §3, §8, §9), against real processes.

A state directory that fails for root too: ``<state_dir>/engines`` replaced by a regular file (mode bits
do not stop root; a file where a directory is expected does).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import tests.support.procs.supervisor_testkit as K
from agents.supervisor import statefile
from agents.supervisor.ownership import agent_tag, find_own_launch, new_marker, owns
from agents.supervisor.plan import MARKER_VAR

pytestmark = pytest.mark.timeout(90)


def _break(state_dir: Path) -> Path:
    """Make every engine state write fail (for root as well); returns where the old records went."""
    saved = state_dir / "engines.saved"
    (state_dir / "engines").rename(saved)
    (state_dir / "engines").write_text("not a directory\n")
    return saved


def _mend(state_dir: Path, saved: Path) -> None:
    (state_dir / "engines").unlink()
    saved.rename(state_dir / "engines")


async def _crash(sup) -> int:
    """SIGKILL the leader and wait for the relaunch to be ready; returns the new leader's PID."""
    old, restarts = sup.pid, sup.restarts
    os.kill(old, signal.SIGKILL)
    assert await K.wait_until(
        lambda: sup.restarts == restarts + 1 and sup.state == "ready" and sup.pid != old, timeout=30
    ), sup.events
    return sup.pid


def test_markers_name_the_engine_and_the_state_dir(tmp_path: Path) -> None:
    tag = agent_tag(tmp_path / "state")
    assert tag == agent_tag(str(tmp_path / "state" / ".." / "state")) and tag != agent_tag(tmp_path / "other")
    m = new_marker("e1", tag)
    assert owns(m, "e1", tag) and not owns(m, "e2", tag) and not owns(m, "e1", agent_tag(tmp_path / "other"))
    assert not owns(new_marker(f"e1:{tag}", tag), "e1", tag)  # an id containing ':' never aliases another
    assert not owns("e1:0123456789abcdef0123456789abcdef", "e1", tag)  # a marker of an older agent
    assert not owns(None, "e1", tag) and not owns("", "e1", tag)


async def test_failed_state_write_is_exposed_logged_once_and_retried(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.ERROR, logger="agents.supervisor.engine")
    async with K.kit(tmp_path) as k:
        port = K.free_port()
        sup = k.make(K.engine_argv("--port", str(port)), port, is_ready=K.tcp_ready(port))
        await sup.start()
        await K.wait_state(sup, "ready", timeout=30)
        assert sup.state_error is None
        saved = _break(k.state_dir)
        p2 = await _crash(sup)
        assert (
            sup.state_error is not None and "(EEXIST)" in sup.state_error and f"PID {p2}" in sup.state_error
        )
        assert str(tmp_path) not in sup.state_error and "\n" not in sup.state_error
        await _crash(sup)  # the same cause again, and the periodic retries: still one log line
        assert await K.wait_until(lambda: sup.state_errors >= 4, timeout=30)  # retried while the engine runs
        lines = [r for r in caplog.records if "EEXIST" in r.getMessage()]
        assert len(lines) == 1, [r.getMessage() for r in caplog.records]
        assert any(
            e["reason"].startswith("state file write failed: File exists (EEXIST)") for e in sup.events
        )
        _mend(k.state_dir, saved)
        assert await K.wait_until(lambda: sup.state_error is None, timeout=30)  # the retry succeeded
        assert json.loads(sup.state_path.read_text())["pid"] == sup.pid


async def test_unrecorded_launch_on_the_port_is_adopted_not_blamed(tmp_path: Path) -> None:
    """The issue's sequence: a restart whose record could not be written leaves the old PID in the state
    file; the next agent must adopt the running engine instead of failing with "in use by" itself."""
    async with K.kit(tmp_path) as k:
        port, pf = K.free_port(), k.pidfile()
        argv = K.engine_argv("--port", str(port), "--child", "--pidfile", str(pf))
        a = k.make(argv, port, is_ready=K.tcp_ready(port))
        await a.start()
        await K.wait_state(a, "ready", timeout=30)
        saved = _break(k.state_dir)
        running = await _crash(a)
        assert a.state_error is not None
        await a.shutdown(stop_engines=False)  # agent gone; the record still names the first, dead PID
        _mend(k.state_dir, saved)
        stale = json.loads(a.state_path.read_text())
        assert stale["pid"] != running and not K.alive(stale["pid"])

        b = k.make(argv, port, is_ready=K.tcp_ready(port))
        await b.adopt_or_start()
        assert b.state == "ready" and b.adopted and b.pid == running, b.events
        assert any(
            f"adopted PID {running} from an unrecorded launch found on port {port}" in e["reason"]
            for e in b.events
        )
        assert json.loads(b.state_path.read_text())["pid"] == running  # recorded now
        assert K.read_pidfile(pf)["leader"] == running  # nothing new was launched
        # and it is supervised: a crash is noticed and restarted
        await _crash(b)


async def test_no_state_file_at_all_still_adopts_own_engine(tmp_path: Path) -> None:
    async with K.kit(tmp_path) as k:
        port = K.free_port()
        argv = K.engine_argv("--port", str(port))
        a = k.make(argv, port, is_ready=K.tcp_ready(port))
        await a.start()
        await K.wait_state(a, "ready", timeout=30)
        pid = a.pid
        await a.shutdown(stop_engines=False)
        a.state_path.unlink()
        b = k.make(argv, port, is_ready=K.tcp_ready(port))
        await b.start()  # an operator start takes the same path as adopt_or_start's fresh start
        assert b.adopted and b.pid == pid and b.state == "ready", b.events


async def test_another_agents_engine_on_the_port_is_never_adopted(tmp_path: Path) -> None:
    """Same engine id, same port, but launched by an agent on another state directory: not ours."""
    other = K.Kit(tmp_path / "other")
    try:
        async with K.kit(tmp_path) as k:
            port = K.free_port()
            argv = K.engine_argv("--port", str(port))
            foreign = other.make(argv, port, is_ready=K.tcp_ready(port))
            await foreign.start()
            await K.wait_state(foreign, "ready", timeout=30)
            sup = k.make(argv, port, is_ready=K.tcp_ready(port))
            await sup.adopt_or_start()
            assert sup.state == "failed" and not sup.adopted
            assert f"in use by PID {foreign.pid}" in sup.reason
            assert K.alive(foreign.pid)  # never signalled
    finally:
        await other.close()


async def test_unrecorded_leftover_without_its_leader_is_reported(tmp_path: Path) -> None:
    """A process carrying this engine's marker holds the port but leads no session of its own (its
    launch's leader is gone): reported as an unrecorded leftover, never adopted or signalled."""
    async with K.kit(tmp_path) as k:
        port = K.free_port()
        env = {**os.environ, MARKER_VAR: new_marker("eng", agent_tag(k.state_dir))}
        holder = subprocess.Popen(
            [sys.executable, K.LISTENER, str(port)], stdout=subprocess.PIPE, text=True, env=env
        )
        k.extra_pids.append(holder.pid)
        try:
            assert holder.stdout.readline().strip() == "listening"
            own = find_own_launch(holder.pid, "eng", agent_tag(k.state_dir))
            assert own is not None and own.pid == holder.pid and not own.leader
            events: list[tuple[str, str, str]] = []
            sup = k.make(K.engine_argv("--port", str(port)), port, on_event=lambda *e: events.append(e))
            await sup.adopt_or_start()
            assert sup.state == "failed" and not sup.adopted
            assert f"in use by PID {holder.pid}" in sup.reason and "unrecorded leftover" in sup.reason
            assert events and events[-1][:2] == ("refuse", "eng") and "unrecorded leftover" in events[-1][2]
            assert holder.poll() is None
        finally:
            holder.kill()
            holder.wait()


async def test_restarts_survive_readoption_and_backoff(tmp_path: Path) -> None:
    async with K.kit(tmp_path) as k:
        port = K.free_port()
        argv = K.engine_argv("--port", str(port))
        a = k.make(argv, port, is_ready=K.tcp_ready(port))
        await a.start()
        await K.wait_state(a, "ready", timeout=30)
        await _crash(a)
        await _crash(a)
        assert a.restarts == 2 and json.loads(a.state_path.read_text())["restarts"] == 2
        pid = a.pid
        await a.shutdown(stop_engines=False)

        b = k.make(argv, port, is_ready=K.tcp_ready(port))
        assert (
            b.restarts == 2 and b.restarts_inherited == 2
        )  # known before adoption (the collector's baseline)
        await b.adopt_or_start()
        assert b.adopted and b.pid == pid and b.restarts == 2
        await _crash(b)
        assert b.restarts == 3 and json.loads(b.state_path.read_text())["restarts"] == 3

        # killed while the engine backs off: the record stays (dead PID), so the count is not lost either
        c_policy = K.fast_policy(backoff_initial_s=30.0, backoff_max_s=30.0)
        await b.shutdown(stop_engines=False)
        c = k.make(argv, port, policy=c_policy, is_ready=K.tcp_ready(port))
        await c.adopt_or_start()
        assert c.adopted and c.restarts == 3
        os.kill(c.pid, signal.SIGKILL)
        await K.wait_state(c, "backoff", timeout=30)
        await c.shutdown(stop_engines=False)
        assert c.state_path.exists()
        d = k.make(argv, port, is_ready=K.tcp_ready(port))
        assert d.restarts == 3
        await d.adopt_or_start()
        await K.wait_state(d, "ready", timeout=30)
        assert not d.adopted and d.restarts == 3


async def test_restarts_from_another_boot_are_not_inherited(tmp_path: Path) -> None:
    async with K.kit(tmp_path) as k:
        path = k.state_dir / "engines" / "eng.json"
        statefile.write_atomic(
            path,
            {
                "schema": statefile.SCHEMA,
                "engine_id": "eng",
                "boot_id": "00000000-0000-0000-0000-000000000000",
                "pid": 999_999,
                "starttime": 1,
                "create_time": None,
                "cmdline_sha256": None,
                "marker": "eng:x",
                "host": "127.0.0.1",
                "port": 0,
                "log_path": "/dev/null",
                "launched_at": "2026-01-01T00:00:00Z",
                "restarts": 7,
            },
        )
        assert k.make(K.engine_argv()).restarts == 0
        data = json.loads(path.read_text())
        data.pop("restarts")  # a file written before restarts were recorded still loads
        assert statefile.EngineRecord.from_json(data).restarts == 0
        data["restarts"] = -1
        with pytest.raises(ValueError, match="restarts"):
            statefile.EngineRecord.from_json(data)


async def test_event_sink_gets_backoff_restart_adopt_and_survives_a_failing_sink(
    tmp_path: Path, caplog
) -> None:
    async with K.kit(tmp_path) as k:
        port = K.free_port()
        argv = K.engine_argv("--port", str(port))
        events: list[tuple[str, str, str]] = []
        a = k.make(argv, port, is_ready=K.tcp_ready(port), on_event=lambda *e: events.append(e))
        await a.start()
        await K.wait_state(a, "ready", timeout=30)
        new = await _crash(a)
        assert await K.wait_until(lambda: [e[0] for e in events] == ["backoff", "restart"]), events
        backoff, restart = events
        assert backoff[1] == "eng" and backoff[2].startswith(
            "next start in 0.1 s after 1 crash: killed by SIGKILL"
        )
        assert restart[1] == "eng" and restart[2].startswith("automatic: killed by SIGKILL unexpectedly")
        assert restart[2].endswith(f"relaunched as PID {new}")
        await a.shutdown(stop_engines=False)

        def broken(*_e: str) -> None:
            raise OSError("audit log unavailable")

        caplog.set_level(logging.ERROR, logger="agents.supervisor.engine")
        b = k.make(argv, port, is_ready=K.tcp_ready(port), on_event=broken)
        await b.adopt_or_start()
        assert b.adopted and b.state == "ready" and b.sink_errors == 1
        await _crash(b)  # supervision goes on through backoff and restart despite the sink
        assert b.sink_errors == 3
        assert sum("event sink failed" in r.getMessage() for r in caplog.records) == 3
        b.set_event_sink(lambda *e: events.append(e))
        await _crash(b)
        assert [e[0] for e in events[-2:]] == ["backoff", "restart"]


async def test_start_up_budget_spent_is_a_backoff_decision(tmp_path: Path) -> None:
    async with K.kit(tmp_path) as k:
        events: list[tuple[str, str, str]] = []
        sup = k.make(
            K.engine_argv("--exit-after", "0", "--exit-code", "3"),
            policy=K.fast_policy(start_retries=1),
            on_event=lambda *e: events.append(e),
        )
        await sup.start()
        await K.wait_state(sup, "failed", timeout=30)
        assert [e[0] for e in events] == ["backoff", "restart", "backoff"], events
        assert events[0][2].startswith(
            "next start in 0.1 s after 1 start-up failure: exited 3 during startup"
        )
        assert events[-1][2].startswith(
            "no retry left after 2 start-up failures; failed: exited 3 during startup"
        )
