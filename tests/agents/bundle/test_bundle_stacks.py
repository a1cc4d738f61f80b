"""py-spy stacks of hung engines (agents/stacks.py) on real processes: a running Python process is read, a
SIGSTOPped one is reported as stopped, a missing py-spy is named with the install hint, and the alert hook
captures once per incident (and puts the outcome in the alert's evidence)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from agents import stacks
from agents.schema import Alert

PY_SPY, NO_PY_SPY = stacks.find_py_spy()
needs_py_spy = pytest.mark.skipif(
    PY_SPY is None, reason=f"{NO_PY_SPY} (pip install 'llmconsole[diagnostics]')"
)

CHILD = textwrap.dedent(
    """
    import sys, time
    def wait_for_work_deep_inside():
        print("ready", flush=True)
        while True:
            time.sleep(0.05)
    wait_for_work_deep_inside()
    """
)


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen]]:
    procs: list[subprocess.Popen] = []
    try:
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGCONT)
                p.kill()
                p.wait(5)


def _spawn(procs: list[subprocess.Popen]) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    procs.append(p)
    assert p.stdout is not None and p.stdout.readline() == b"ready\n"
    return p


@needs_py_spy
async def test_a_running_process_is_read_and_a_stopped_one_reported(children: list[subprocess.Popen]) -> None:
    running, stopped = _spawn(children), _spawn(children)
    os.kill(stopped.pid, signal.SIGSTOP)
    deadline = time.monotonic() + 5
    while stacks.proc_state(stopped.pid)[1] != "stopped" and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    got = await stacks.capture([running.pid, stopped.pid, running.pid], trigger="ENGINE_HUNG", py_spy=PY_SPY)
    assert got.problem is None and got.tool == PY_SPY
    assert [p.pid for p in got.processes] == sorted([running.pid, stopped.pid])
    by_pid = {p.pid: p for p in got.processes}
    ok = by_pid[running.pid]
    assert ok.ok and "wait_for_work_deep_inside" in ok.text and f"Process {running.pid}" in ok.text
    bad = by_pid[stopped.pid]
    assert not bad.ok and bad.text is None and bad.state == "stopped"
    assert bad.error.startswith("the process is stopped (state stopped, e.g. SIGSTOP)")
    brief = got.brief()
    assert brief["read"] == 1 and brief["of"] == 2 and brief["status"] == "captured"
    assert {p["pid"]: p["read"] for p in brief["processes"]} == {running.pid: True, stopped.pid: False}


async def test_without_py_spy_every_process_says_why(
    children: list[subprocess.Popen], tmp_path: Path
) -> None:
    p = _spawn(children)
    got = await stacks.capture([p.pid], trigger="ENGINE_HUNG", py_spy=None)
    assert got.problem == stacks.INSTALL_HINT and "llmconsole[diagnostics]" in got.problem
    assert [(x.pid, x.ok, x.error) for x in got.processes] == [(p.pid, False, stacks.INSTALL_HINT)]
    assert got.brief()["status"] == "unavailable"
    assert stacks.find_py_spy({"LLMCONSOLE_PY_SPY": "off", "PATH": ""}) == (
        None,
        "stack capture is disabled (LLMCONSOLE_PY_SPY='off')",
    )
    missing = str(tmp_path / "py-spy")
    assert (
        stacks.find_py_spy({"LLMCONSOLE_PY_SPY": missing})[1]
        == f"LLMCONSOLE_PY_SPY names {missing!r}, which is not an executable file"
    )
    assert stacks.find_py_spy({"PATH": str(tmp_path)})[0] in (
        None,
        os.path.join(os.path.dirname(sys.executable), "py-spy"),
    )


async def test_a_vanished_process_and_a_non_python_one_are_explained(
    children: list[subprocess.Popen],
) -> None:
    if PY_SPY is None:
        pytest.skip(NO_PY_SPY or "")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(5)
    sleeper = subprocess.Popen(["sleep", "30"])
    children.append(sleeper)
    got = await stacks.capture([gone.pid, sleeper.pid], trigger="ENGINE_HUNG", py_spy=PY_SPY)
    by_pid = {p.pid: p for p in got.processes}
    assert by_pid[gone.pid].error == "the process is gone (it exited before it could be read)"
    assert not by_pid[sleeper.pid].ok and by_pid[sleeper.pid].error  # a native binary: py-spy's own reason


class FakeWatch:
    """What the hook reads of an engine's watch: its supervisor's tree pids (a real process here)."""

    def __init__(self, *pids: int) -> None:
        self.supervisor = SimpleNamespace(pids=pids)


def _hung(since: str) -> Alert:
    return Alert(
        code="ENGINE_HUNG", severity="critical", since=since, summary="hung", evidence={"stalled_s": 3}
    )


@needs_py_spy
async def test_the_hook_captures_once_per_incident(
    children: list[subprocess.Popen], monkeypatch: pytest.MonkeyPatch
) -> None:
    p = _spawn(children)
    watch = FakeWatch(p.pid)
    other = Alert(code="KV_PRESSURE", severity="warning", since="t0", summary="kv", evidence={})
    out = stacks.on_alerts(watch, (_hung("t1"), other))
    assert out[0].evidence["stacks"]["status"] == "capturing" and out[0].evidence["stalled_s"] == 3
    assert "stacks" not in out[1].evidence
    deadline = time.monotonic() + 20
    while not stacks.captures(watch) and time.monotonic() < deadline:
        stacks.on_alerts(watch, (_hung("t1"),))  # later ticks of the same incident start nothing new
        await asyncio.sleep(0.1)
    assert len(stacks.captures(watch)) == 1
    done = stacks.on_alerts(watch, (_hung("t1"),))[0].evidence["stacks"]
    assert done["status"] == "captured" and done["read"] == 1 and done["processes"][0]["pid"] == p.pid
    assert stacks.on_alerts(watch, (other,)) == (other,)  # the incident ends
    again = stacks.on_alerts(
        watch, (_hung("t2"),)
    )  # a new incident within the cooldown: the last capture stands
    assert again[0].evidence["stacks"]["status"] == "captured" and len(stacks.captures(watch)) == 1
    stacks.on_alerts(watch, ())
    monkeypatch.setattr(stacks, "COOLDOWN_S", 0.0)
    assert stacks.on_alerts(watch, (_hung("t3"),))[0].evidence["stacks"]["status"] == "capturing"
    while len(stacks.captures(watch)) < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert len(stacks.captures(watch)) == 2


async def test_the_hook_never_breaks_collection() -> None:
    broken = FakeWatch()
    del broken.supervisor  # no supervisor: the hook logs and hands the alerts back unchanged
    alerts = (_hung("t1"),)
    assert stacks.on_alerts(broken, alerts) == alerts
    assert stacks.on_alerts(object(), alerts) == alerts  # not even weakly referable


def test_py_spys_cause_line_is_kept_and_its_other_detail_dropped() -> None:
    from agents.stacks import _reason_lines

    err = "Error: Failed to get stack traces\nCaused by:\n    Permission denied (os error 13)\n    backtrace noise\n"
    assert _reason_lines(err) == [
        "Error: Failed to get stack traces",
        "Caused by:",
        "Permission denied (os error 13)",
    ]
    assert _reason_lines("Error: x\n    indented detail\n") == ["Error: x"]
