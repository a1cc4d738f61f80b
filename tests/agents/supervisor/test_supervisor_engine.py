"""EngineSupervisor lifecycle against real processes (reliability.md §2.1, §2.3, §2.4, §2.5)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import tests.support.procs.supervisor_testkit as K
from agents.supervisor import MARKER_VAR
from agents.supervisor.proctree import marker_pids, read_stat
from agents.supervisor.reaper import _child_pids

pytestmark = pytest.mark.timeout(60)


def _delays(sup) -> list[float]:
    return [
        float(re.match(r"restart in ([0-9.]+)s", e["reason"]).group(1))
        for e in sup.events
        if e["state"] == "backoff"
    ]


async def test_start_ready_via_is_ready(tmp_path: Path) -> None:
    async with K.kit(tmp_path) as k:
        port = K.free_port()
        sup = k.make(
            K.engine_argv("--port", str(port), "--ready-after", "0.3"), port, is_ready=K.tcp_ready(port)
        )
        assert sup.state == "stopped" and sup.pid is None and sup.uptime_s is None
        await sup.start()
        assert sup.state == "starting" and sup.pid is not None
        assert sup.loading_elapsed_s is not None
        await K.wait_state(sup, "ready")
        assert sup.loading_elapsed_s is None
        assert sup.uptime_s >= 0.25  # it could not have been ready before it listened
        assert sup.start_attempts == 1 and sup.restarts == 0 and not sup.adopted
        assert [e["state"] for e in sup.events] == ["starting", "ready"]
        # the marker is in the engine's environment, and the state file names the leader
        environ = Path(f"/proc/{sup.pid}/environ").read_bytes().split(b"\0")
        assert f"{MARKER_VAR}={sup.marker}".encode() in environ
        rec = json.loads(sup.state_path.read_text())
        assert rec["pid"] == sup.pid and rec["marker"] == sup.marker and rec["port"] == port
        assert "listening on" in "\n".join(sup.log_tail(10))
        await sup.stop()
        assert sup.state == "stopped" and not sup.state_path.exists() and sup.pid is None


async def test_sigkill_leader_kills_whole_tree_and_restarts(tmp_path: Path) -> None:
    async with K.kit(tmp_path) as k:
        port, pf = K.free_port(), k.pidfile()
        # tree_refresh_s is long so the escaped process is never seen as a descendant before the kill:
        # only the marker scan at kill time can find it
        sup = k.make(
            K.engine_argv("--port", str(port), "--child", "--escape", "--pidfile", str(pf)),
            port,
            is_ready=K.tcp_ready(port),
            tree_refresh_s=60.0,
        )
        await sup.start()
        await K.wait_state(sup, "ready")
        assert await K.wait_until(lambda: len(K.read_pidfile(pf)) == 6)
        old = K.read_pidfile(pf)
        assert read_stat(old["grandchild-setsid"]).session != read_stat(old["leader"]).session
        # the escaped process is in no group/session of the tree and no member's descendant
        assert await K.wait_until(lambda: not K.alive(old["escaper"]))
        assert read_stat(old["escaped"]).ppid not in old.values()
        live = {p for p in old.values() if K.alive(p)}
        assert marker_pids(sup.marker) == live and old["escaped"] not in sup.pids
        old_marker = sup.marker
        k.extra_pids += list(old.values())  # the safety net must still see them after the reset below
        pf.write_text("")
        t0 = time.monotonic()
        os.kill(old["leader"], signal.SIGKILL)
        await K.wait_state(sup, "backoff")
        assert time.monotonic() - t0 < 2.0  # exit noticed and tree cleaned promptly
        # nothing of the old tree survives: same-group grandchild, setsid grandchild, all of it
        assert {role: K.alive(pid) for role, pid in old.items()} == dict.fromkeys(old, False)
        assert marker_pids(old_marker) == set()
        assert sup.last_exit["signal"] == signal.SIGKILL and sup.last_exit["code"] is None
        exited = [e for e in sup.events if e["state"] == "exited"]
        assert (
            exited and exited[-1]["signal"] == 9 and "killed by SIGKILL unexpectedly" in exited[-1]["reason"]
        )
        await K.wait_state(sup, "ready")
        assert sup.restarts == 1 and sup.pid != old["leader"]
        assert await K.wait_until(lambda: len(K.read_pidfile(pf)) == 6)
        # no zombies: orphans reparented to us (the subreaper) were reaped
        zombies = [
            p for p in _child_pids() if (i := read_stat(p)) is not None and i.dead and p in old.values()
        ]
        assert zombies == []


async def test_exit_code_zero_is_a_crash(tmp_path: Path) -> None:
    async with K.kit(tmp_path) as k:
        sup = k.make(K.engine_argv("--exit-after", "0.3", "--exit-code", "0"), is_ready=lambda: True)
        await sup.start()
        assert await K.wait_until(lambda: sup.restarts >= 1)
        assert sup.last_exit["code"] == 0 and sup.last_exit["signal"] is None
        assert any(
            e["state"] == "exited" and e["reason"].startswith("exited 0 unexpectedly") for e in sup.events
        )


async def test_backoff_doubles_to_max_then_resets_after_stable_running(tmp_path: Path) -> None:
    async with K.kit(tmp_path) as k:
        crashy = k.make(
            K.engine_argv("--exit-after", "0.15", "--exit-code", "1"),
            engine_id="crashy",
            is_ready=lambda: True,
            policy=K.fast_policy(backoff_reset_s=30.0),
        )
        await crashy.start()
        assert await K.wait_until(lambda: crashy.restarts >= 4, timeout=20)
        await crashy.stop()
        assert _delays(crashy)[:4] == [0.1, 0.2, 0.4, 0.4]
        # the delay really elapsed between the exit and the next start
        ev = crashy.events
        gaps = [
            b["mono"] - a["mono"]
            for a, b in zip(ev, ev[1:], strict=False)
            if a["state"] == "backoff" and b["state"] == "starting"
        ]
        assert gaps[:3] and all(g >= d * 0.95 for g, d in zip(gaps, [0.1, 0.2, 0.4], strict=False))

        stable = k.make(
            K.engine_argv("--exit-after", "0.5", "--exit-code", "1"),
            engine_id="stable",
            is_ready=lambda: True,
            policy=K.fast_policy(backoff_reset_s=0.3),
        )
        await stable.start()
        assert await K.wait_until(lambda: stable.restarts >= 3, timeout=20)
        await stable.stop()
        assert _delays(stable)[:3] == [0.1, 0.1, 0.1]  # each run outlived backoff_reset_s


async def test_backoff_runs_on_the_injected_monotonic_clock(tmp_path: Path) -> None:
    """Default 10 s backoff, driven by a fake clock: no restart until the fake clock passes it."""
    now = [1000.0]
    async with K.kit(tmp_path) as k:
        sup = k.make(
            K.engine_argv("--exit-after", "0.1", "--exit-code", "3"),
            is_ready=lambda: True,
            clock=lambda: now[0],
            policy=K.fast_policy(backoff_initial_s=10.0, backoff_max_s=300.0),
        )
        await sup.start()
        await K.wait_state(sup, "backoff")
        assert sup.backoff_remaining_s == pytest.approx(10.0)
        await asyncio.sleep(0.3)  # real time passes, fake time does not
        assert sup.state == "backoff" and sup.restarts == 0
        now[0] += 9.9
        await asyncio.sleep(0.2)
        assert sup.state == "backoff" and sup.backoff_remaining_s == pytest.approx(0.1)
        now[0] += 0.2
        await K.wait_state(sup, "starting", "ready", "exited")
        assert sup.restarts == 1


async def test_startup_failure_spends_budget_then_fails_with_stderr_line(tmp_path: Path) -> None:
    async with K.kit(tmp_path) as k:
        port = K.free_port()
        msg = "error: unrecognized arguments: --foo"
        sup = k.make(
            K.engine_argv("--say", "loading model", "--say", msg, "--exit-after", "0", "--exit-code", "2"),
            port,
            is_ready=K.tcp_ready(port),
            policy=K.fast_policy(start_retries=2),
        )
        await sup.start()
        await K.wait_state(sup, "failed")
        assert sup.reason == f"exited 2 during startup: {msg}"
        assert sup.start_attempts == 3 and sup.restarts == 2
        assert _delays(sup) == [0.1, 0.2]
        assert sup.last_exit["code"] == 2
        assert sup.last_exit["stderr_tail"][-2:] == ["loading model", msg]
        assert sup.pid is None and sup.pids == ()
        # failed is terminal: nothing more happens on its own
        await asyncio.sleep(0.4)
        assert sup.state == "failed" and sup.start_attempts == 3
        # an operator start gets a fresh budget
        await sup.start()
        assert sup.start_attempts == 1
        await K.wait_state(sup, "failed")


async def test_missing_or_unexecutable_binary_fails_at_once(tmp_path: Path) -> None:
    script = tmp_path / "not-executable.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o644)
    async with K.kit(tmp_path) as k:
        for argv, words in (
            (("/nonexistent/bin/vllm", "serve"), "No such file"),
            ((str(script),), "Permission denied"),
        ):
            sup = k.make(argv, engine_id=f"e{len(k.sups)}")
            await sup.start()
            assert sup.state == "failed", sup.reason
            assert words in sup.reason and argv[0] in sup.reason
            assert sup.restarts == 0 and sup.pid is None
            await asyncio.sleep(0.3)
            assert sup.state == "failed" and [e["state"] for e in sup.events] == ["failed"]


@pytest.mark.parametrize("reuseport", [False, True])
async def test_port_held_by_foreign_listener_fails_with_its_pid(tmp_path: Path, reuseport: bool) -> None:
    port = K.free_port()
    holder = subprocess.Popen(
        [sys.executable, K.LISTENER, str(port), *(["--reuseport"] if reuseport else [])],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "listening"
        async with K.kit(tmp_path) as k:
            pf = k.pidfile()
            sup = k.make(K.engine_argv("--port", str(port), "--pidfile", str(pf)), port)
            await sup.start()
            assert sup.state == "failed"
            assert f"in use by PID {holder.pid} (" in sup.reason and "listener.py" in sup.reason
            assert sup.start_attempts == 0 and sup.pid is None
            await asyncio.sleep(0.3)
            assert sup.state == "failed" and K.read_pidfile(pf) == {}  # no retry loop, never spawned
    finally:
        holder.kill()
        holder.wait()


async def test_stop_escalates_to_sigkill_for_sigterm_ignoring_child(tmp_path: Path) -> None:
    async with K.kit(tmp_path) as k:
        port, pf = K.free_port(), k.pidfile()
        sup = k.make(
            K.engine_argv("--port", str(port), "--child", "--ignore-term", "child", "--pidfile", str(pf)),
            port,
            is_ready=K.tcp_ready(port),
            policy=K.fast_policy(stop_timeout_s=0.5),
        )
        await sup.start()
        await K.wait_state(sup, "ready")
        assert await K.wait_until(lambda: len(K.read_pidfile(pf)) == 4)
        pids = K.read_pidfile(pf)
        t0 = time.monotonic()
        await sup.stop()
        took = time.monotonic() - t0
        assert sup.state == "stopped", sup.reason
        assert took >= 0.5  # the child ignored SIGTERM: only SIGKILL after the timeout ended it
        assert not any(K.alive(p) for p in pids.values())
        assert sup.last_exit["signal"] == signal.SIGTERM  # the leader itself obeyed SIGTERM
        assert [e["state"] for e in sup.events][-2:] == ["stopping", "stopped"]


async def test_stop_of_sigstopped_engine_needs_sigkill(tmp_path: Path) -> None:
    async with K.kit(tmp_path) as k:
        port = K.free_port()
        sup = k.make(
            K.engine_argv("--port", str(port)),
            port,
            is_ready=K.tcp_ready(port),
            policy=K.fast_policy(stop_timeout_s=0.4),
        )
        await sup.start()
        await K.wait_state(sup, "ready")
        pid = sup.pid
        os.kill(pid, signal.SIGSTOP)
        assert await K.wait_until(lambda: read_stat(pid).state in ("T", "t"))
        t0 = time.monotonic()
        await sup.stop()
        assert sup.state == "stopped" and time.monotonic() - t0 >= 0.4
        assert not K.alive(pid)
        assert sup.last_exit["signal"] == signal.SIGKILL  # SIGTERM stayed pending on the stopped process


async def test_startup_timeout_counts_only_time_without_progress(tmp_path: Path) -> None:
    async with K.kit(tmp_path) as k:
        never = K.free_port()
        silent = k.make(
            K.engine_argv(),
            engine_id="silent",
            is_ready=K.tcp_ready(never),
            policy=K.fast_policy(startup_timeout_s=0.5, start_retries=0),
        )
        chatty = k.make(
            K.engine_argv("--tick", "0.1"),
            engine_id="chatty",
            is_ready=K.tcp_ready(never),
            policy=K.fast_policy(startup_timeout_s=0.5, start_retries=0),
        )
        await silent.start()
        await chatty.start()
        await K.wait_state(silent, "failed")
        assert (
            silent.reason.startswith("not ready after") and "without progress during startup" in silent.reason
        )
        await asyncio.sleep(1.2 - chatty.loading_elapsed_s if chatty.loading_elapsed_s < 1.2 else 0)
        assert chatty.state == "starting" and chatty.loading_elapsed_s >= 1.0  # loading, not failure
        assert chatty.log_tail(1)[0].startswith("tick")


async def test_gpu_release_delays_restart_and_never_released_fails(tmp_path: Path) -> None:
    held: set[int] = set()

    async def gpu_pids() -> set[int]:
        return set(held)

    async with K.kit(tmp_path) as k:
        sup = k.make(
            K.engine_argv(),
            is_ready=lambda: True,
            gpu_pids=gpu_pids,
            policy=K.fast_policy(gpu_release_timeout_s=5.0),
        )
        await sup.start()
        await K.wait_state(sup, "ready")
        old = sup.pid
        held.add(old)  # the "driver" still charges memory to the dead PID
        os.kill(old, signal.SIGKILL)
        await K.wait_state(sup, "exited")
        await asyncio.sleep(0.6)
        assert sup.state == "exited" and sup.restarts == 0
        assert str(old) in sup.reason and "waiting for GPU memory release" in sup.reason
        held.clear()
        await K.wait_state(sup, "ready")
        assert sup.restarts == 1

        stuck = {999_999}
        sup2 = k.make(
            K.engine_argv(),
            engine_id="stuck",
            is_ready=lambda: True,
            gpu_pids=lambda: stuck,
            policy=K.fast_policy(gpu_release_timeout_s=0.4),
        )
        await sup2.start()
        await K.wait_state(sup2, "ready")
        stuck.add(sup2.pid)
        victim = sup2.pid
        os.kill(victim, signal.SIGKILL)
        await K.wait_state(sup2, "failed")
        assert sup2.reason == f"GPU memory not released by PIDs [{victim}] after 0.4s"
        await asyncio.sleep(0.3)
        assert sup2.state == "failed" and sup2.restarts == 0


async def test_collector_health_states_and_crash_from_degraded(tmp_path: Path) -> None:
    async with K.kit(tmp_path) as k:
        sup = k.make(K.engine_argv(), is_ready=None)
        assert not sup.set_health("degraded", "x")  # not running: ignored
        await sup.start()
        await asyncio.sleep(0.2)
        assert sup.state == "starting"  # no is_ready: waits for mark_ready()
        assert sup.mark_ready("health endpoint answered")
        assert sup.state == "ready"
        assert sup.set_health("hung", "no token progress for 30s") and sup.state == "hung"
        with pytest.raises(ValueError):
            sup.set_health("exited", "nope")
        os.kill(sup.pid, signal.SIGKILL)
        await K.wait_state(sup, "backoff")
        assert "unexpectedly" in sup.reason  # a runtime crash, not a start-up failure


async def test_restart_on_exit_false_leaves_engine_exited(tmp_path: Path) -> None:
    async with K.kit(tmp_path) as k:
        sup = k.make(
            K.engine_argv("--exit-after", "0.1", "--exit-code", "5"),
            is_ready=lambda: True,
            policy=K.fast_policy(restart_on_exit=False),
        )
        await sup.start()
        await K.wait_state(sup, "exited")
        await asyncio.sleep(0.3)
        assert sup.state == "exited" and sup.restarts == 0 and sup.last_exit["code"] == 5


async def test_operator_restart_and_idempotent_start(tmp_path: Path) -> None:
    async with K.kit(tmp_path) as k:
        pf = k.pidfile()
        sup = k.make(K.engine_argv("--child", "--pidfile", str(pf)), is_ready=lambda: True)
        await sup.start()
        await K.wait_state(sup, "ready")
        first = sup.pid
        await sup.start()  # already supervising: no second process
        assert sup.pid == first and sup.start_attempts == 1
        assert await K.wait_until(lambda: len(K.read_pidfile(pf)) == 4)
        old = K.read_pidfile(pf)
        await sup.restart()
        assert not any(K.alive(p) for p in old.values())
        await K.wait_state(sup, "ready")
        assert sup.pid != first and sup.restarts == 0 and sup.start_attempts == 1  # operator action
        states = [e["state"] for e in sup.events]
        assert states[-4:] == ["stopping", "stopped", "starting", "ready"]
        snap = sup.snapshot()
        assert snap["state"] == "ready" and snap["pid"] == sup.pid and snap["last_exit"]["signal"] == 15
        assert snap["uptime_s"] is not None and snap["backoff_remaining_s"] is None


async def test_operator_start_during_backoff_starts_now(tmp_path: Path) -> None:
    async with K.kit(tmp_path) as k:
        sup = k.make(
            K.engine_argv(),
            is_ready=lambda: True,
            policy=K.fast_policy(backoff_initial_s=30.0, backoff_max_s=60.0),
        )
        await sup.start()
        await K.wait_state(sup, "ready")
        os.kill(sup.pid, signal.SIGKILL)
        await K.wait_state(sup, "backoff")
        assert sup.backoff_remaining_s > 25
        await sup.start()
        assert sup.state == "starting" and sup.backoff_remaining_s is None
        await K.wait_state(sup, "ready")


async def test_log_redactor_is_applied_to_the_engine_log_on_disk(tmp_path: Path) -> None:
    """The runtime hands every supervisor the API's redactor; the engine's log file is masked with it."""
    from agents.redact import Redactor

    secret = "Zq8xPlainValue123"
    async with K.kit(tmp_path) as k:
        sup = k.make(
            K.engine_argv("--say", f"loaded with key {secret}", "--tick", "0.05"),
            is_ready=lambda: True,
            log_redact=Redactor([secret]),
        )
        await sup.start()
        await K.wait_state(sup, "ready")
        assert await K.wait_until(
            lambda: any("loaded with key" in line for line in sup.log_tail(50)), timeout=30
        )
        assert await K.wait_until(lambda: secret not in sup.log_path.read_text(), timeout=30)
        assert "loaded with key" in sup.log_path.read_text()
        assert not any(secret in line for line in sup.log_tail(50))
