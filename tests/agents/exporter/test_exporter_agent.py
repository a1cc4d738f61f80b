"""A real agent's /metrics, scraped as Prometheus would, with simulated engines of all three dialects.

One agent supervises a vLLM, an SGLang and a TGI simulated engine under load that hang after a while:
- under load, the normalized counters and histogram counts increase between two scrapes of the agent;
- once the engines hang (their counters freeze), each exported histogram (buckets, ``_count``) and the
  generated-token counter equal the engine's own, read from the engine's /metrics by a different parser;
- a family the dialect lacks is absent (TGI: no TTFT histogram, no KV gauge, no preemptions; SGLang: no
  error counter);
- ``promtool check metrics`` accepts the exposition, before the hang and with alerts active after it.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.agentproc import Agent, free_port, kill_everything, sim, write_config

PROMTOOL = shutil.which("promtool")
HANG_AFTER_S = 60  # seconds after ready: time enough to see the counters move first, even on a loaded machine
# The engines' own family names (vLLM 0.32, SGLang, TGI), independent of the adapters' tables.
OWN = {
    "vllm": {
        "ttft": "vllm:time_to_first_token_seconds",
        "itl": "vllm:inter_token_latency_seconds",
        "e2e": "vllm:e2e_request_latency_seconds",
        "queue_time": "vllm:request_queue_time_seconds",
        "generation_tokens": "vllm:generation_tokens_total",
    },
    "sglang": {
        "ttft": "sglang:time_to_first_token_seconds",
        "itl": "sglang:inter_token_latency_seconds",
        "e2e": "sglang:e2e_request_latency_seconds",
        "queue_time": "sglang:queue_time_seconds",
        "generation_tokens": "sglang:generation_tokens_total",
    },
    "tgi": {
        "itl": "tgi_request_mean_time_per_token_duration",
        "e2e": "tgi_request_duration",
        "queue_time": "tgi_request_queue_duration",
        "generation_tokens": "tgi_request_generated_tokens_sum",
    },
}
HISTOGRAMS = ("ttft", "itl", "e2e", "queue_time")
COUNTERS = ("generation_tokens_total", "prompt_tokens_total")
ABSENT = {
    "tgi": (
        "llmconsole_engine_ttft_seconds_count",
        "llmconsole_engine_ttft_seconds_bucket",
        "llmconsole_engine_kv_cache_usage_ratio",
        "llmconsole_engine_preemptions_total",
    ),
    "sglang": ("llmconsole_engine_request_errors_total",),
}

Samples = dict[str, list[tuple[dict[str, str], float]]]


def parsed(text: str) -> Samples:
    out: Samples = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def values(got: Samples, name: str, engine: str) -> list[float]:
    return [v for labels, v in got.get(name, []) if labels.get("engine") == engine]


def exported_histogram(got: Samples, engine: str, logical: str) -> tuple[dict[float, float], list[float]]:
    name = f"llmconsole_engine_{logical}_seconds"
    bucket = {
        float(labels["le"]): v
        for labels, v in got.get(name + "_bucket", [])
        if labels.get("engine") == engine
    }
    return bucket, values(got, name + "_count", engine)


def own_histogram(got: Samples, family: str) -> tuple[dict[float, float], list[float]]:
    bucket = {float(labels["le"]): v for labels, v in got.get(family + "_bucket", [])}
    return bucket, [v for _, v in got.get(family + "_count", [])]


def promtool_check(text: str) -> None:
    if PROMTOOL is None:
        return
    done = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=text.encode(), capture_output=True, timeout=60
    )
    complaints = (done.stdout + done.stderr).decode()
    assert done.returncode == 0 and not complaints.strip(), complaints


@pytest.fixture
def loaded(tmp_path: Path):
    port = free_port()
    args = ["--load", "8", "--fault", f"hang@{HANG_AFTER_S}"]
    engines = [
        {
            "id": "v",
            "kind": "vllm",
            "model": "sim-llama",
            "port": free_port(),
            "gpus": [0],
            "command": sim("vllm"),
            "args": args,
        },
        {
            "id": "s",
            "kind": "sglang",
            "model": "sim-qwen",
            "served_model_name": "qwen",
            "port": free_port(),
            "gpus": [1],
            "command": sim("sglang"),
            "args": args,
        },
        {
            "id": "t",
            "kind": "tgi",
            "model": "sim-mistral",
            "port": free_port(),
            "metrics_port": free_port(),
            "gpus": [2],
            "command": sim("tgi"),
            "args": args,
        },
    ]
    agent = Agent(write_config(tmp_path, port, engines), port)
    agent.start()
    try:
        yield agent, {e["id"]: e for e in engines}
    finally:
        kill_everything(agent, tmp_path / "state")


def scrape(agent: Agent) -> tuple[str, Samples]:
    r = httpx.get(agent.url + "/metrics", timeout=5)
    assert r.status_code == 200, r.text[:300]
    return r.text, parsed(r.text)


def poll(agent: Agent, what: str, cond: Callable[[Samples], bool], timeout: float) -> tuple[str, Samples]:
    deadline = time.monotonic() + timeout
    while True:
        assert agent.proc and agent.proc.poll() is None, f"agent exited: {agent.stderr_text()[-2000:]}"
        try:
            text, got = scrape(agent)
        except httpx.TransportError:  # not listening yet
            text, got = "", {}
        if got and cond(got):
            return text, got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last /metrics:\n{text[-4000:]}")
        time.sleep(0.3)


def own_metrics(engine: dict) -> Samples:
    port = engine.get("metrics_port", engine["port"])
    return parsed(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text)


def test_agent_exports_the_engines_own_counters_and_histograms(loaded) -> None:
    agent, engines = loaded
    names = [f"llmconsole_engine_{c}" for c in COUNTERS] + [
        f"llmconsole_engine_{h}_seconds_count" for h in HISTOGRAMS
    ]

    def compared(eid: str) -> list[str]:  # TGI has no TTFT histogram
        return [
            n for n in names if not (n.startswith("llmconsole_engine_ttft") and engines[eid]["kind"] == "tgi")
        ]

    # every compared family, not only one: an engine creates a histogram at its first observation (TGI's
    # mean-time-per-token one appears after its e2e one), and a family absent here could never "move"
    live = lambda got: all(values(got, n, eid) for eid in engines for n in compared(eid))  # noqa: E731
    text, first = poll(agent, "cumulative series of every engine", live, timeout=90)
    promtool_check(text)

    # 1. under load the counters and histogram counts move between two scrapes
    def moved(got: Samples) -> bool:
        for eid in engines:
            for name in compared(eid):
                before, after = values(first, name, eid), values(got, name, eid)
                if len(before) != 1 or len(after) != 1 or not after[0] > before[0]:
                    return False
        return True

    text, _ = poll(agent, "counters to increase", moved, timeout=60)
    promtool_check(text)

    # 2. once hung (counters frozen), what the agent exports is exactly the engine's own data
    def same_as_engines(got: Samples) -> bool:
        for eid, e in engines.items():
            own = own_metrics(e)
            spec = OWN[e["kind"]]
            for logical in HISTOGRAMS:
                if logical not in spec:
                    continue
                theirs, ours = own_histogram(own, spec[logical]), exported_histogram(got, eid, logical)
                assert len(theirs[1]) == 1, f"{spec[logical]}: one series expected in the simulated engine"
                if ours != theirs:
                    return False
            if values(got, "llmconsole_engine_generation_tokens_total", eid) != [
                v for _, v in own[spec["generation_tokens"]]
            ]:
                return False
        return all(values(got, "llmconsole_alerts_active", eid) for eid in engines)  # the hang is seen too

    text, got = poll(
        agent, "exports equal to the engines' own data after the hang", same_as_engines, timeout=120
    )
    promtool_check(text)  # with alerts active: summaries as label values

    # 3. families a dialect does not have are absent, never zero; the rest carry host/engine/kind/model
    for eid, e in engines.items():
        for name in ABSENT.get(e["kind"], ()):
            assert values(got, name, eid) == [], f"{name} exported for {e['kind']}"
        (labels,) = [ls for ls, _ in got["llmconsole_engine_e2e_seconds_count"] if ls["engine"] == eid]
        assert (
            labels["kind"] == e["kind"]
            and labels["model"] == e.get("served_model_name", e["model"])
            and labels["host"]
        )
        assert values(got, "llmconsole_engine_info", eid) == [1.0]
    assert values(got, "llmconsole_engine_kv_cache_usage_ratio", "v") and values(
        got, "llmconsole_engine_preemptions_total", "s"
    )
    for labels, _ in got["llmconsole_alerts_active"]:
        assert labels["host"] and labels["summary"] and labels["code"]
    snap = agent.snap()
    assert snap is not None
    (info,) = got["llmconsole_host_info"]
    assert info[0]["host"] == snap["host"] and info[0]["boot_id"] == (snap["boot_id"] or "")
    if PROMTOOL is None:
        pytest.skip(
            "promtool not installed (Debian: apt-get install --no-install-recommends prometheus): "
            "the exports were checked, `promtool check metrics` was not"
        )
