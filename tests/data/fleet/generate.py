"""Record the fleet fixture from REAL agents supervising simulated engines (run once, then frozen).

    .venv/bin/python tests/data/fleet/generate.py [--seconds 930] [--out tests/data/fleet]

Starts four `llmconsole agent` subprocesses (tests/support/agentproc.py) with simulated engines and
scripted faults, lets them run for ``--seconds`` (the history window is 900 s), then saves each agent's
``GET /v1/history`` (gzipped, as served) and ``GET /v1/engines/{id}/logs`` for every engine.
Nothing in the saved files is edited; see README.md for what each host shows.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from tests.support.agentproc import Agent, free_port, kill_everything, sim, write_config  # noqa: E402

AGENT = {
    "interval_s": 1.0,
    "history_s": 900,
    "stats_window_s": 60,
    "canary_interval_s": 5.0,
    "canary_timeout_s": 2.0,
    "backoff_initial_s": 10.0,
    "backoff_max_s": 120.0,
}
THRESHOLDS = {"hung_after_s": 30.0}


def e(eid: str, kind: str, model: str, gpus: list[int], *args: str) -> dict:
    return {
        "id": eid,
        "kind": kind,
        "model": model,
        "port": free_port(),
        "gpus": gpus,
        "command": sim(kind),
        "args": list(args),
    }


HOSTS = {
    "gpu01": [
        e("llama-8b", "vllm", "sim/llama-3-8b", [0], "--load", "4", "--worker"),
        e("qwen-7b", "sglang", "sim/qwen2.5-7b", [1], "--load", "2"),
        e("mistral-7b", "tgi", "sim/mistral-7b", [2], "--load", "2"),
        e("llama-hang", "vllm", "sim/llama-3-8b", [3], "--load", "2", "--fault", "hang@600"),
    ],
    "gpu02": [
        e(
            "llama-kv",
            "vllm",
            "sim/llama-3-70b",
            [0, 1],
            "--load",
            "14",
            "--kv-tokens",
            "12000",
            "--max-num-seqs",
            "48",
        ),
        e("phi-crash", "vllm", "sim/phi-3-mini", [2], "--load", "1", "--fault", "crash@45:code=1"),
        e("qwen-slow", "sglang", "sim/qwen2.5-14b", [3], "--load", "2", "--fault", "slow@300:factor=12"),
        e("big-70b", "vllm", "sim/llama-3-70b", [4, 5], "--fault", "startup-delay:s=3000"),
    ],
    "gpu03": [
        e("llama-a", "vllm", "sim/llama-3-8b", [0], "--load", "3"),
        e("mistral-b", "tgi", "sim/mistral-7b", [1], "--load", "1"),
    ],
    "gpu04": [
        e("qwen-c", "sglang", "sim/qwen2.5-7b", [0], "--load", "2"),
        e("llama-d", "vllm", "sim/llama-3-8b", [1], "--load", "2"),
    ],
}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=930.0)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent))
    ns = ap.parse_args()
    out = Path(ns.out)
    tmp = Path(tempfile.mkdtemp(prefix="llmc-fleet-"))
    agents: dict[str, tuple[Agent, Path]] = {}
    try:
        for name, engines in HOSTS.items():
            d = tmp / name
            d.mkdir()
            port = free_port()
            agent = Agent(write_config(d, port, engines, AGENT, THRESHOLDS), port)
            agent.start()
            agents[name] = (agent, d / "state")
        time.sleep(ns.seconds)
        for name, (agent, _) in agents.items():
            hist = httpx.get(agent.url + "/v1/history", params={"seconds": 900}, timeout=30)
            hist.raise_for_status()
            (out / f"{name}.history.json.gz").write_bytes(gzip.compress(hist.content, mtime=0))
            logs = {}
            for eng in HOSTS[name]:
                r = httpx.get(f"{agent.url}/v1/engines/{eng['id']}/logs", params={"lines": 60}, timeout=10)
                logs[eng["id"]] = r.json()["lines"]
            (out / f"{name}.logs.json").write_text(json.dumps(logs, indent=1) + "\n")
            print(name, len(hist.content), "bytes of history")
    finally:
        for agent, state in agents.values():
            kill_everything(agent, state)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
