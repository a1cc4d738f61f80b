"""Failure injection against a real agent: every fault lands on its own engine and only there.

One `llmconsole agent` subprocess supervises simulated engines that crash-loop, run out of KV cache,
serve garbage / huge / trickling metrics, fail to start, cannot be executed, or find their port taken,
next to one healthy engine that must stay ready and alert-free. A foreign process holding simulated GPU
memory raises ORPHAN_GPU_MEMORY.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.agentproc import ROOT, Agent, engine, free_port, kill_everything, sim, write_config


def codes(e: dict) -> set[str]:
    return {a["code"] for a in e["alerts"]}


@pytest.fixture
def faulty(tmp_path: Path):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    held_port = holder.getsockname()[1]
    engines = [
        {
            "id": "healthy",
            "kind": "vllm",
            "model": "ok",
            "port": free_port(),
            "command": sim("vllm"),
            "args": ["--load", "2"],
        },
        {
            "id": "crashy",
            "kind": "vllm",
            "model": "c",
            "port": free_port(),
            "command": sim("vllm"),
            "args": ["--fault", "crash@0.5:code=3"],
        },
        {
            "id": "kvfull",
            "kind": "vllm",
            "model": "k",
            "port": free_port(),
            "command": sim("vllm"),
            "args": ["--load", "40", "--kv-tokens", "1500", "--max-num-seqs", "32", "--decode-ms", "20"],
        },
        {
            "id": "garbage",
            "kind": "sglang",
            "model": "g",
            "port": free_port(),
            "command": sim("sglang"),
            "args": ["--load", "1", "--fault", "metrics-garbage@1"],
        },
        {
            "id": "huge",
            "kind": "vllm",
            "model": "h",
            "port": free_port(),
            "command": sim("vllm"),
            "args": ["--fault", "metrics-huge@1:mb=20"],
        },
        {
            "id": "trickle",
            "kind": "tgi",
            "model": "t",
            "port": free_port(),
            "command": sim("tgi"),
            "args": ["--fault", "metrics-slow@1:bps=20"],
            "metrics_port": free_port(),
        },
        {
            "id": "startfail",
            "kind": "vllm",
            "model": "s",
            "port": free_port(),
            "command": sim("vllm"),
            "args": ["--fault", "start-fail:code=1"],
            "start_retries": 1,
        },
        {
            "id": "noexec",
            "kind": "vllm",
            "model": "n",
            "port": free_port(),
            "command": ["/nonexistent/bin/vllm-engine"],
        },
        {"id": "portheld", "kind": "vllm", "model": "p", "port": held_port, "command": sim("vllm")},
    ]
    config = write_config(
        tmp_path,
        free_port(),
        engines,
        agent={"metrics_max_bytes": 1_000_000},
        thresholds={
            "crash_loop_restarts": 2,
            "crash_loop_window_s": 120,
            "kv_pressure": 0.9,
            "kv_pressure_for_s": 1.0,
            "preemption_storm_for_s": 1.0,
            "ttft_p95_s": 1000.0,
        },
    )
    agent = Agent(config, int(config.read_text().split('listen = "127.0.0.1:')[1].split('"')[0]))
    # A process outside the agent's supervision holding simulated GPU memory (a leftover worker).
    ledger = tmp_path / "state" / "sim-gpu"
    ledger.mkdir(parents=True)
    env = {**os.environ, "LLMCONSOLE_SIM_GPU_DIR": str(ledger), "CUDA_VISIBLE_DEVICES": "3"}
    foreign = subprocess.Popen(
        [*sim("vllm"), "--port", str(free_port())],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    agent.start()
    try:
        yield agent, foreign
    finally:
        foreign.kill()
        foreign.wait(10)
        holder.close()
        kill_everything(agent, tmp_path / "state")


def test_each_fault_is_flagged_on_its_own_engine(faulty) -> None:
    agent, foreign = faulty

    def done(s: dict) -> bool:
        want = {
            "crashy": "CRASH_LOOP" in codes(engine(s, "crashy")),
            "kvfull": {"KV_PRESSURE", "PREEMPTION_STORM"} <= codes(engine(s, "kvfull")),
            "garbage": "METRICS_STALE" in codes(engine(s, "garbage")),
            "huge": "METRICS_STALE" in codes(engine(s, "huge")),
            "trickle": bool({"METRICS_STALE", "METRICS_UNREACHABLE"} & codes(engine(s, "trickle"))),
            "startfail": engine(s, "startfail")["state"] == "failed",
            "noexec": engine(s, "noexec")["state"] == "failed",
            "portheld": engine(s, "portheld")["state"] == "failed",
            "orphan": "ORPHAN_GPU_MEMORY" in {a["code"] for a in s["alerts"]},
        }
        done.missing = sorted(k for k, v in want.items() if not v)  # type: ignore[attr-defined]
        return all(want.values())

    try:
        snap = agent.wait("every fault flagged", done, timeout=60)
    except AssertionError as exc:
        raise AssertionError(f"still missing: {done.missing}") from exc  # type: ignore[attr-defined]

    crashy = engine(snap, "crashy")
    assert crashy["restarts"] >= 2 and crashy["last_exit"]["code"] == 3
    assert any("EngineDeadError" in line for line in crashy["last_exit"]["stderr_tail"])
    loop = next(a for a in crashy["alerts"] if a["code"] == "CRASH_LOOP")
    assert loop["severity"] == "critical" and loop["evidence"]["restarts_in_window"] >= 2

    kv = next(a for a in engine(snap, "kvfull")["alerts"] if a["code"] == "KV_PRESSURE")
    assert (
        kv["evidence"]["kv_p90"] >= 0.9 and kv["evidence"]["samples_at_or_above"] >= 1
    )  # judged over its window

    for eid, fragment in (("garbage", "malformed exposition"), ("huge", "larger than 1000000 bytes")):
        stale = next(a for a in engine(snap, eid)["alerts"] if a["code"] == "METRICS_STALE")
        assert fragment in stale["evidence"]["error"], stale

    startfail = engine(snap, "startfail")
    assert "during startup" in startfail["events"][-1]["reason"]
    assert any("No common block size" in line for line in startfail["last_exit"]["stderr_tail"])
    print("noexec:", engine(snap, "noexec")["events"][-1]["reason"])
    assert "/nonexistent/bin/vllm-engine" in engine(snap, "noexec")["events"][-1]["reason"]
    held = engine(snap, "portheld")["events"][-1]["reason"]
    assert f"in use by PID {os.getpid()}" in held  # the test process holds the port

    orphan = next(a for a in snap["alerts"] if a["code"] == "ORPHAN_GPU_MEMORY")
    assert foreign.pid in {p["pid"] for p in orphan["evidence"]["processes"]}

    healthy = engine(snap, "healthy")
    assert healthy["state"] == "ready" and healthy["alerts"] == [] and healthy["restarts"] == 0
    assert healthy["stats"]["requests_running"] is not None


def test_invalid_config_exits_2_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "config.toml"
    bad.write_text('[agent]\ninterval_s = "fast"\n')
    out = subprocess.run(
        [sys.executable, "-m", "console.cli", "agent", "--config", str(bad)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "interval_s" in lines[0] and "Traceback" not in out.stderr


def test_taken_listen_port_is_one_line_exit_2_and_starts_nothing(tmp_path: Path) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    engines = [{"id": "e", "kind": "vllm", "model": "m", "port": free_port(), "command": sim("vllm")}]
    config = write_config(tmp_path, port, engines)
    try:
        out = subprocess.run(
            [sys.executable, "-m", "console.cli", "agent", "--config", str(config)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        holder.close()
    assert out.returncode == 2
    assert (
        out.stderr.strip()
        == f"llmconsole agent: error: cannot listen on 127.0.0.1:{port}: address already in use (another agent?)"
    )
    assert not (tmp_path / "state" / "engines" / "e.json").exists()  # no engine was launched


def test_audit_verb_is_dispatched_by_the_agent_cli(tmp_path: Path) -> None:
    """`llmconsole agent audit ...` reaches agents/audit_cli.py, not the agent's own argument parser."""
    run = [sys.executable, "-m", "console.cli", "agent", "audit"]
    out = subprocess.run([*run, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "verify" in out.stdout, out.stderr
    missing = tmp_path / "missing.toml"
    out = subprocess.run(
        [*run, "verify", "--config", str(missing)], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and str(missing) in out.stderr
