"""``GET /v1/bundle`` on a real agent with real (simulated) engines.

One agent supervises two simulated vLLM engines. ``leaky`` starts through a wrapper that plants its
secret everywhere an engine can: its log (bare, ``api_key=``, an ``Authorization: Basic`` header), its
command line and the ``model_name`` label of every metric (``--served-model-name``), plus a logged prompt
and completion. ``worker`` has a SIM::Worker child that the hang test SIGSTOPs, as the real-vLLM stage does.
The bundle must: need an operator token and be audited; contain the layout the README promises; hold no
planted secret, token or prompt in any byte of any file; and, for the hung engine, hold readable Python
stacks of the API server and say that the stopped worker could not be read.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Iterator

import pytest

from agents import stacks
from agents.bundle_files import verify_bundle
from tests.support.agentproc import engine, free_port, kill_everything, sim
from tests.support.secure_agent import SecureAgent, write_config, write_tokens

KEY = "sentinel-BUNDLE-key-7f3a9"
AGENT_SECRET = "sentinel-AGENT-env-88c1"
PROMPT = "PROMPT-SENTINEL tell me the launch codes"
COMPLETION = "COMPLETION-SENTINEL the codes are"
WRAPPER = """
import os, sys
key = os.environ["VLLM_API_KEY"]
print(f"non-default args: {{'api_key': '{key}'}}", flush=True)
print(f"curl -H 'Authorization: Basic {key}' http://127.0.0.1/v1/models", flush=True)
print(f"the key is {key}", flush=True)
print("INFO [logger.py:43] Received request cmpl-9-0: prompt: '%s', params: SamplingParams(n=1)" % @PROMPT@, flush=True)
print("INFO [logger.py:60] Generated response cmpl-9-0: output: '%s', finish_reason: stop" % @COMPLETION@, flush=True)
os.execv(sys.executable, [sys.executable, "-m", "agents.sim", "--dialect", "vllm", *sys.argv[1:],
                          "--served-model-name", f"label-{key}"])
"""


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureAgent]:
    tmp = tmp_path_factory.mktemp("bundle-agent")
    wrapper = tmp / "leaky_engine.py"
    wrapper.write_text(
        f"#!{sys.executable}\n"
        + WRAPPER.replace("@PROMPT@", repr(PROMPT)).replace("@COMPLETION@", repr(COMPLETION))
    )
    wrapper.chmod(0o700)
    engines = [
        {
            "id": "leaky",
            "kind": "vllm",
            "model": "sim-leaky",
            "port": free_port(),
            "command": [str(wrapper)],
            "args": ["--load", "1"],
            "env": {"VLLM_API_KEY": KEY, "HF_TOKEN": KEY + "-hf", "NCCL_DEBUG": "WARN"},
        },
        {
            "id": "worker",
            "kind": "vllm",
            "model": "sim-w",
            "port": free_port(),
            "command": sim("vllm", "--worker"),
            "args": ["--load", "2"],
        },
    ]
    tokens = write_tokens(tmp / "tokens", ops="operator", watcher="viewer")
    port = free_port()
    allowed = [str(wrapper), os.path.realpath(sys.executable)]
    config = write_config(
        tmp,
        port,
        engines,
        agent={"tokens_file": str(tmp / "tokens"), "allowed_executables": allowed, "host": "gpu-a.internal"},
    )
    proc = SecureAgent(
        config, port, token=tokens["ops"], env={"HF_TOKEN": AGENT_SECRET, "OPENAI_API_KEY": AGENT_SECRET}
    )
    proc.tokens = tokens  # type: ignore[attr-defined]
    proc.start()
    try:
        proc.wait(
            "both engines serving",
            lambda s: all(e["state"] in ("ready", "degraded") for e in s["engines"]),
            timeout=40,
        )
        proc.wait(
            "8 snapshots with health checks and canaries in the ring",  # (slow when the machine is busy)
            lambda s: s["seq"] >= 8 and all(e["health"] and e["canary"] for e in s["engines"]),
            timeout=40,
        )
        yield proc
    finally:
        kill_everything(proc, tmp / "state")


def _get(agent: SecureAgent, params: dict, token: str | None = "ops", timeout: float = 60):
    import httpx

    headers = {"Authorization": f"Bearer {agent.tokens[token]}"} if token else {}  # type: ignore[attr-defined]
    return httpx.get(
        agent.url + "/v1/bundle", params=params, headers=headers, timeout=timeout, trust_env=False
    )


def test_bundles_need_an_operator_and_every_attempt_is_audited(agent: SecureAgent) -> None:
    assert _get(agent, {}, token=None).status_code == 401
    viewer = _get(agent, {}, token="watcher")
    assert viewer.status_code == 403 and "operator needed" in viewer.json()["error"]
    bad = _get(agent, {"since": "5x"})
    assert bad.status_code == 400 and "'since'" in bad.json()["error"]
    assert _get(agent, {"engine": "nope"}).status_code == 404
    r = _get(agent, {"since": "10m", "reason": "INC-42 canary failures\n(second line)"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/gzip"
    assert r.headers["content-disposition"].startswith(
        'attachment; filename="llmconsole-bundle-gpu-a.internal-'
    )
    verdict = verify_bundle(r.content)
    assert verdict.ok, verdict.problem
    m = verdict.manifest
    assert m["reason"] == "INC-42 canary failures (second line)"
    assert m["created_by"]["actor"] == "ops" and m["created_by"]["role"] == "operator"
    assert m["created_by"]["request_id"] == r.headers["x-request-id"]
    assert m["window"]["requested_s"] == 600 and "limited_by" in m["window"]  # the test agent keeps 60 s
    records = [
        json.loads(x) for x in verdict.members["hosts/gpu-a.internal/audit-tail.jsonl"].decode().splitlines()
    ]
    bundles = [x for x in records if x.get("action") == "bundle"]
    assert [x["result"] for x in bundles] == [
        "denied: unauthenticated",
        "denied: role viewer",
        "denied: unknown engine",
        "allowed",
    ]
    assert (
        bundles[-1]["actor"] == "ops"
        and bundles[-1]["reason"] == m["reason"]
        and bundles[-1]["since_s"] == 600
    )
    audit = json.loads(verdict.members["hosts/gpu-a.internal/audit-verify.json"])
    assert audit["ok"] and audit["records"] >= 4


def test_layout_snapshots_in_order_and_evidence_per_engine(agent: SecureAgent) -> None:
    r = _get(agent, {"since": "60"})
    verdict = verify_bundle(r.content)
    assert verdict.ok, verdict.problem
    files = verdict.members
    h = "hosts/gpu-a.internal"
    snaps = [json.loads(line) for line in files[f"{h}/snapshots.jsonl"].decode().splitlines()]
    assert len(snaps) >= 8 and all(s["schema"].startswith("llmconsole.snapshot/1") for s in snaps)
    assert [s["seq"] for s in snaps] == sorted(s["seq"] for s in snaps) and len(
        {s["seq"] for s in snaps}
    ) == len(snaps)
    assert [s["taken_at"] for s in snaps] == sorted(s["taken_at"] for s in snaps)
    assert (
        verdict.manifest["window"]["from"] == snaps[0]["taken_at"]
        and verdict.manifest["window"]["to"] == snaps[-1]["taken_at"]
    )
    facts = json.loads(files[f"{h}/host.json"])
    assert (
        facts["uname"]["release"] == os.uname().release
        and facts["ram_total_bytes"] > 0
        and facts["cpu_count"] >= 1
    )
    assert facts["gpu_source"] == "simulated"
    tree = json.loads(files[f"{h}/processes.json"])
    worker_pids = {p["pid"] for p in tree["engines"]["worker"]}
    assert (
        engine(agent.snap(), "worker")["pid"] in worker_pids and len(worker_pids) >= 2
    )  # API server + SIM::Worker
    assert any(p["gpu_memory"] for p in tree["engines"]["worker"])  # the simulated GPU ledger
    for eid in ("leaky", "worker"):
        base = f"{h}/engines/{eid}"
        info = json.loads(files[f"{base}/engine.json"])
        assert info["id"] == eid and info["argv"][0].endswith(("python", "python3", "leaky_engine.py"))
        assert info["versions"]["version"] == "0.32.0"  # the simulated vLLM logs the version it imitates
        events = [json.loads(x) for x in files[f"{base}/events.jsonl"].decode().splitlines()]
        assert {"starting", "ready"} <= {e["state"] for e in events}
        probes = [json.loads(x) for x in files[f"{base}/probes.jsonl"].decode().splitlines()]
        assert {"health", "canary"} <= {p["probe"] for p in probes} and all(p["at"] for p in probes)
        scrapes = json.loads(files[f"{base}/scrapes.json"])
        assert 1 <= len(scrapes) <= 5
        for s in scrapes:
            assert s["ok"] and "vllm:num_requests_running" in files[f"{base}/{s['file']}"].decode()
    assert files[f"{h}/engines/worker/log-tail.txt"]
    alerts = [json.loads(x) for x in files[f"{h}/alerts.jsonl"].decode().splitlines()]
    assert all(a["transition"] in ("raised", "cleared", "active") for a in alerts)


def test_no_secret_token_or_prompt_reaches_any_byte(agent: SecureAgent) -> None:
    r = _get(agent, {"since": "60", "reason": f"someone pasted {KEY} here"})
    verdict = verify_bundle(r.content)
    assert verdict.ok, verdict.problem
    files = verdict.members
    assert verdict.manifest["reason"] == "someone pasted *** here"  # the manifest is redacted too
    base = "hosts/gpu-a.internal/engines/leaky"
    # the planted values really went somewhere the bundle collects (else the search proves nothing)
    log = files[f"{base}/log-tail.txt"].decode()
    assert "the key is ***" in log and "Authorization: ***" in log
    assert "[line removed by llmconsole bundle: request or response content]" in log
    scrape = files[f"{base}/{json.loads(files[base + '/scrapes.json'])[-1]['file']}"].decode()
    assert 'model_name="label-***"' in scrape
    info = json.loads(files[f"{base}/engine.json"])
    assert (
        "VLLM_API_KEY" not in info["env"]
        and "HF_TOKEN" not in info["env"]
        and info["env"]["NCCL_DEBUG"] == "WARN"
    )
    assert info["env_withheld"]["secret_like_names"] == 2
    running = info["process"]  # the leader as it runs (/proc): its environment is allow-listed the same way
    assert running["pid"] == info["pid"] and running["cmdline"] and "VLLM_API_KEY" not in running["env"]
    assert running["env_withheld"]["secret_like_names"] >= 2 and running["env"]["NCCL_DEBUG"] == "WARN"
    tree = json.loads(files["hosts/gpu-a.internal/processes.json"])  # the command line carries the key too
    assert any(
        "--served-model-name label-***" in " ".join(p.get("cmdline") or []) for p in tree["engines"]["leaky"]
    )
    planted = [
        KEY,
        KEY + "-hf",
        AGENT_SECRET,
        PROMPT,
        COMPLETION,
        "PROMPT-SENTINEL",
        "COMPLETION-SENTINEL",
        agent.tokens["ops"],
        agent.tokens["watcher"],
    ]  # type: ignore[attr-defined]
    hits = [(path, s) for path, data in files.items() for s in planted if s.encode() in data]
    assert hits == []
    for path, data in files.items():  # and in the JSON-escaped forms
        for s in planted:
            assert json.dumps(s)[1:-1].encode() not in data, path


def test_a_hung_engine_bundle_has_readable_stacks_and_names_the_stopped_worker(agent: SecureAgent) -> None:
    if stacks.find_py_spy()[0] is None:
        pytest.skip("py-spy is not installed: pip install 'llmconsole[diagnostics]'")
    snap = agent.snap()
    leader = engine(snap, "worker")["pid"]
    import psutil

    workers = [c.pid for c in psutil.Process(leader).children(recursive=True)]
    assert workers, "the simulated engine has no SIM::Worker child"
    os.kill(workers[0], signal.SIGSTOP)
    try:

        def captured(s: dict) -> bool:
            hung = [a for a in engine(s, "worker")["alerts"] if a["code"] == "ENGINE_HUNG"]
            return bool(hung) and hung[0]["evidence"].get("stacks", {}).get("status") == "captured"

        snap = agent.wait("ENGINE_HUNG with its stacks captured", captured, timeout=40)
        evidence = next(a for a in engine(snap, "worker")["alerts"] if a["code"] == "ENGINE_HUNG")[
            "evidence"
        ]["stacks"]
        assert {p["pid"]: p["read"] for p in evidence["processes"]} == {leader: True, workers[0]: False}
        r = _get(agent, {"since": "60", "engine": "worker", "reason": "hang"})
        verdict = verify_bundle(r.content)
        assert verdict.ok, verdict.problem
    finally:
        os.kill(workers[0], signal.SIGCONT)
    files = verdict.members
    base = "hosts/gpu-a.internal/engines/worker"
    assert not any("/engines/leaky/" in p for p in files)  # engine=worker: only its files
    caps = json.loads(files[f"{base}/stacks.json"])
    procs = {p["pid"]: p for p in caps[-1]["processes"]}
    assert caps[-1]["tool"] and caps[-1]["problem"] is None
    api = files[f"{base}/{procs[leader]['file']}"].decode()
    assert f"Process {leader}" in api and "agents/sim/" in api and "Thread " in api  # readable Python frames
    stopped = procs[workers[0]]
    assert stopped["read"] is False and stopped["file"] is None and stopped["state"] == "stopped"
    assert "stopped" in stopped["error"] and "SIGSTOP" in stopped["error"]
    raised = [json.loads(x) for x in files["hosts/gpu-a.internal/alerts.jsonl"].decode().splitlines()]
    assert any(a["code"] == "ENGINE_HUNG" and a["engine"] == "worker" for a in raised)
