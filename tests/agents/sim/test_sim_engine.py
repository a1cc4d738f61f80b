"""The simulated engine as a real process: HTTP API, metrics fidelity, faults, worker, ledger, signals."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.simproc import ROOT, free_port, pid_alive, sim_engine, start_sim

FIXTURE = ROOT / "tests" / "data" / "metrics" / "vllm-0.32-cpu.loaded.prom"

# name -> type, per dialect (the names the brief requires, as the real engines expose them)
REQUIRED = {
    "vllm": {
        "vllm:num_requests_running": "gauge",
        "vllm:num_requests_waiting": "gauge",
        "vllm:kv_cache_usage_perc": "gauge",
        "vllm:num_preemptions": "counter",
        "vllm:prompt_tokens": "counter",
        "vllm:generation_tokens": "counter",
        "vllm:request_success": "counter",
        "vllm:prefix_cache_queries": "counter",
        "vllm:prefix_cache_hits": "counter",
        "vllm:time_to_first_token_seconds": "histogram",
        "vllm:inter_token_latency_seconds": "histogram",
        "vllm:e2e_request_latency_seconds": "histogram",
        "vllm:request_queue_time_seconds": "histogram",
    },
    "sglang": {
        "sglang:num_running_reqs": "gauge",
        "sglang:num_queue_reqs": "gauge",
        "sglang:token_usage": "gauge",
        "sglang:num_retracted_requests": "counter",
        "sglang:prompt_tokens": "counter",
        "sglang:generation_tokens": "counter",
        "sglang:cached_tokens": "counter",
        "sglang:time_to_first_token_seconds": "histogram",
        "sglang:inter_token_latency_seconds": "histogram",
        "sglang:e2e_request_latency_seconds": "histogram",
        "sglang:queue_time_seconds": "histogram",
        "sglang:gen_throughput": "gauge",
    },
    "tgi": {
        "tgi_queue_size": "gauge",
        "tgi_batch_current_size": "gauge",
        "tgi_request_success": "counter",
        "tgi_request_failure": "counter",
        "tgi_request_count": "counter",
        "tgi_request_duration": "histogram",
        "tgi_request_queue_duration": "histogram",
        "tgi_request_mean_time_per_token_duration": "histogram",
        "tgi_request_input_length": "histogram",
        "tgi_request_generated_tokens": "histogram",
    },
}
DIALECT_ARGS = {
    "vllm": ["/models/sim-llama", "--served-model-name", "sim-llama"],
    "sglang": ["--model-path", "/models/sim-llama", "--served-model-name", "sim-llama", "--enable-metrics"],
    "tgi": ["--model-id", "/models/sim-llama", "--served-model-name", "sim-llama"],
}

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_lines(text: str) -> tuple[dict[str, str], list[tuple[str, dict[str, str], float]]]:
    """(# TYPE declarations, samples) of an exposition, without any library."""
    types: dict[str, str] = {}
    samples = []
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
        elif line and not line.startswith("#"):
            m = SAMPLE.match(line)
            assert m, f"unparsable line {line!r}"
            samples.append((m.group(1), dict(LABEL.findall(m.group(3) or "")), float(m.group(4))))
    return types, samples


def value(text: str, name: str, **labels: str) -> float:
    _, samples = parse_lines(text)
    for sample, lab, v in samples:
        if sample == name and all(lab.get(k) == want for k, want in labels.items()):
            return v
    raise AssertionError(f"{name}{labels} not in exposition")


def families(text: str) -> dict[str, str]:
    return {f.name: f.type for f in text_string_to_metric_families(text)}


def get(url: str, timeout: float = 5.0) -> httpx.Response:
    return httpx.get(url, timeout=timeout)


def post(url: str, body: dict, timeout: float = 5.0) -> httpx.Response:
    return httpx.post(url, json=body, timeout=timeout)


def wait_until(predicate, timeout: float, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(step)
    return predicate()


# --- the three dialects ------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", ["vllm", "sglang", "tgi"])
def test_dialect_serves_completions_health_and_metrics(dialect: str, tmp_path: Path) -> None:
    extra = ["--prometheus-port", str(free_port())] if dialect == "tgi" else []
    with sim_engine(dialect, *DIALECT_ARGS[dialect], *extra, tmp=tmp_path) as eng:
        eng.wait_ready()
        first = eng.stderr_lines()[0]
        assert "SIMULATED" in first and dialect in first and "sim-llama" in first
        models = get(eng.url + "/v1/models").json()
        assert models["data"][0]["id"] == "sim-llama" and models["data"][0]["owned_by"] == "llmconsole-sim"

        r = post(
            eng.url + "/v1/completions",
            {"model": "sim-llama", "prompt": "say something", "max_tokens": 5, "ignore_eos": True},
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert (
            body["choices"][0]["finish_reason"] == "length" and len(body["choices"][0]["text"].split()) == 5
        )
        assert body["usage"] == {"prompt_tokens": 4, "completion_tokens": 5, "total_tokens": 9}

        with httpx.stream(
            "POST",
            eng.url + "/v1/chat/completions",
            timeout=5.0,
            json={
                "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 4,
                "ignore_eos": True,
                "stream": True,
                "stream_options": {"include_usage": True},
            },
        ) as resp:
            assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
            events = [line[len("data: ") :] for line in resp.iter_lines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        chunks = [json.loads(e) for e in events[:-1]]
        content = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]
        assert len(content) == 4 and chunks[0]["choices"][0]["delta"]["role"] == "assistant"
        assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "length"
        assert chunks[-1]["usage"]["completion_tokens"] == 4

        bad = post(eng.url + "/v1/completions", {"prompt": "x", "max_tokens": -3})
        assert 400 <= bad.status_code < 500 and isinstance(bad.json(), dict)
        assert post(eng.url + "/v1/completions", {"prompt": "x", "model": "other"}).status_code == 404
        assert httpx.post(eng.url + "/v1/completions", content=b"{nope", timeout=5).status_code in (400, 422)
        assert get(eng.url + "/nope").status_code == 404

        text = get(eng.url + "/metrics").text
        fams = families(text)
        for name, kind in REQUIRED[dialect].items():
            assert fams.get(name) == kind, (name, fams.get(name))
        assert value(text, "llmconsole_simulated", dialect=dialect) == 1.0
        if dialect == "tgi":
            second = get(f"http://127.0.0.1:{extra[1]}/metrics").text
            assert families(second).keys() >= REQUIRED["tgi"].keys()
            assert value(second, "tgi_request_success") == 2
            assert value(second, "tgi_request_failure", err="validation") >= 2
            _, samples = parse_lines(second)
            assert all(set(lab) <= {"le", "err"} for n, lab, _ in samples if n.startswith("tgi_"))
            info = get(eng.url + "/info").json()
            assert info["model_id"] == "/models/sim-llama" and info["max_total_tokens"] == 4096


def test_label_sets_by_dialect(tmp_path: Path) -> None:
    """SGLang splits scheduler-side and tokenizer-side labels."""
    with sim_engine("sglang", "--model-path", "m", "--enable-metrics", tmp=tmp_path) as eng:
        eng.wait_ready()
        post(eng.url + "/v1/completions", {"prompt": "a b", "max_tokens": 2})
        _, samples = parse_lines(get(eng.url + "/metrics").text)
    labels = {name: set(lab) - {"le"} for name, lab, _ in samples}
    sched = {"engine_type", "model_name", "pp_rank", "tp_rank"}
    assert labels["sglang:num_running_reqs"] == sched and labels["sglang:queue_time_seconds_bucket"] == sched
    assert labels["sglang:prompt_tokens_total"] == {"model_name"}
    assert labels["sglang:time_to_first_token_seconds_bucket"] == {"model_name"}
    assert not any(n.endswith("_created") for n in labels)  # multiprocess mode
    assert [lab for n, lab, _ in samples if n == "sglang:time_to_first_token_seconds_bucket"][0][
        "le"
    ] == "0.1"


def test_vllm_names_labels_types_and_buckets_match_the_real_032_fixture(tmp_path: Path) -> None:
    real_types, real_samples = parse_lines(FIXTURE.read_text())
    with sim_engine("vllm", "--model", "tiny-llama", "--max-model-len", "512", tmp=tmp_path) as eng:
        eng.wait_ready()
        post(eng.url + "/v1/completions", {"prompt": "hello world", "max_tokens": 3})
        sim_types, sim_samples = parse_lines(get(eng.url + "/metrics").text)

    def label_names(samples):
        out: dict[str, set[frozenset[str]]] = {}
        for name, lab, _ in samples:
            out.setdefault(name, set()).add(frozenset(lab))
        return out

    def le_sets(samples):
        out: dict[str, list[str]] = {}
        for name, lab, _ in samples:
            if name.endswith("_bucket"):
                out.setdefault(f"{name}|{sorted((k, v) for k, v in lab.items() if k != 'le')}", []).append(
                    lab["le"]
                )
        return out

    real_labels, sim_labels = label_names(real_samples), label_names(sim_samples)
    common = [n for n in sim_labels if n in real_labels and n.startswith("vllm:")]
    required = [
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "vllm:num_preemptions_total",
        "vllm:prompt_tokens_total",
        "vllm:generation_tokens_total",
        "vllm:request_success_total",
        "vllm:prefix_cache_queries_total",
        "vllm:prefix_cache_hits_total",
        "vllm:num_preemptions_created",
        "vllm:time_to_first_token_seconds_bucket",
        "vllm:inter_token_latency_seconds_bucket",
        "vllm:e2e_request_latency_seconds_bucket",
        "vllm:request_queue_time_seconds_bucket",
        "vllm:time_to_first_token_seconds_count",
    ]
    assert set(required) <= set(common)
    for name in common:
        if name == "vllm:cache_config_info":
            assert sim_labels[name] and all(ls <= next(iter(real_labels[name])) for ls in sim_labels[name])
            continue
        assert sim_labels[name] == real_labels[name], name
    for name in (n for n in sim_types if n in real_types):
        assert sim_types[name] == real_types[name], name
    sim_vllm_types = {n for n in sim_types if n.startswith("vllm:")}
    assert sim_vllm_types <= set(real_types), sim_vllm_types - set(real_types)
    real_le, sim_le = le_sets(real_samples), le_sets(sim_samples)
    vllm_hists = [k for k in sim_le if k.startswith("vllm:")]
    assert len(vllm_hists) >= 16
    for key in vllm_hists:
        assert sim_le[key] == real_le[key], key


def test_sglang_metrics_need_enable_metrics(tmp_path: Path) -> None:
    with sim_engine("sglang", "--model-path", "m", tmp=tmp_path) as eng:
        eng.wait_ready()
        r = get(eng.url + "/metrics")
        assert r.status_code == 404
        assert get(eng.url + "/health_generate").status_code == 200


# --- load, KV pressure, preemptions -------------------------------------------------------------


def test_load_fills_the_kv_cache_and_preempts(tmp_path: Path) -> None:
    args = [
        "--load",
        "40",
        "--max-num-seqs",
        "12",
        "--kv-tokens",
        "2048",
        "--max-model-len",
        "1024",
        "--decode-ms",
        "10",
        "--seed",
        "7",
    ]
    with sim_engine("vllm", *args, tmp=tmp_path) as eng:
        eng.wait_ready()
        seen = {"running": 0.0, "waiting": 0.0, "kv": 0.0, "preemptions": 0.0}

        def saturated() -> bool:
            text = get(eng.url + "/metrics").text
            seen["running"] = max(seen["running"], value(text, "vllm:num_requests_running"))
            seen["waiting"] = max(seen["waiting"], value(text, "vllm:num_requests_waiting"))
            seen["kv"] = max(seen["kv"], value(text, "vllm:kv_cache_usage_perc"))
            seen["preemptions"] = value(text, "vllm:num_preemptions_total")
            return (
                seen["running"] > 0 and seen["waiting"] > 0 and seen["kv"] > 0.9 and seen["preemptions"] > 0
            )

        assert wait_until(saturated, timeout=8.0, step=0.1), seen
        text = get(eng.url + "/metrics").text
        assert value(text, "vllm:generation_tokens_total") > 0
        assert value(text, "vllm:time_to_first_token_seconds_count") > 0


# --- faults ------------------------------------------------------------------------------------


def test_hang_keeps_health_and_freezes_metrics(tmp_path: Path) -> None:
    with sim_engine("vllm", "--load", "20", "--fault", "hang@1", tmp=tmp_path) as eng:
        eng.wait_ready()
        time.sleep(1.5)
        assert get(eng.url + "/health").status_code == 200

        def engine_lines() -> list[str]:
            return [line for line in get(eng.url + "/metrics").text.splitlines() if line.startswith("vllm:")]

        before = engine_lines()
        time.sleep(1.0)
        after = engine_lines()
        assert before == after
        assert value("\n".join(after), "vllm:generation_tokens_total") > 0  # it was working before the hang
        with pytest.raises(httpx.ReadTimeout):
            post(eng.url + "/v1/completions", {"prompt": "are you there", "max_tokens": 2}, timeout=2.0)
        with httpx.stream(
            "POST",
            eng.url + "/v1/completions",
            timeout=httpx.Timeout(5.0, read=1.0),
            json={"prompt": "x", "max_tokens": 2, "stream": True},
        ) as resp:
            assert resp.status_code == 200
            with pytest.raises(httpx.ReadTimeout):
                next(resp.iter_lines())
        assert get(eng.url + "/health").status_code == 200
        assert get(eng.url + "/v1/models").status_code == 200


def test_sglang_health_generate_fails_when_hung(tmp_path: Path) -> None:
    args = ["--model-path", "m", "--fault", "hang@0.3", "--health-generate-timeout", "1"]
    with sim_engine("sglang", *args, tmp=tmp_path) as eng:
        eng.wait_ready()
        time.sleep(0.5)
        t0 = time.monotonic()
        assert get(eng.url + "/health_generate").status_code == 503
        assert 0.9 <= time.monotonic() - t0 < 4.0
        assert get(eng.url + "/health").status_code == 200


@pytest.mark.parametrize(
    ("dialect", "code", "last"),
    [
        (
            "vllm",
            3,
            "EngineDeadError: EngineCore encountered an issue. See stack trace (above) for the root cause.",
        ),
        ("sglang", 0, "Received sigquit from a child process. It usually means the child failed."),
        ("tgi", 1, "Error: ShardFailed"),
    ],
)
def test_crash_exits_with_code_and_last_line(dialect: str, code: int, last: str, tmp_path: Path) -> None:
    extra = ["--prometheus-port", str(free_port())] if dialect == "tgi" else []
    spec = f"crash@1:code={code}" if code != 1 else "crash@1"
    with sim_engine(dialect, "--fault", spec, *extra, tmp=tmp_path) as eng:
        eng.wait_ready()
        t0 = time.monotonic()
        assert eng.wait_exit(timeout=5) == code
        assert time.monotonic() - t0 < 3.0
        assert eng.stderr_lines()[-1].endswith(last)


@pytest.mark.parametrize(
    ("dialect", "spec", "code", "text"),
    [
        ("vllm", "start-fail", 1, "ValueError: No common block size for 16."),
        ("sglang", "start-fail:code=7", 7, "Not enough memory"),
        ("tgi", "start-fail", 1, "Shard 0 failed to start"),
    ],
)
def test_start_fail_exits_before_listening(
    dialect: str, spec: str, code: int, text: str, tmp_path: Path
) -> None:
    eng = start_sim(dialect, "--fault", spec, tmp=tmp_path)
    try:
        assert eng.wait_exit(timeout=10) == code
        err = eng.stderr()
        assert text in err and "SIMULATED" in err.splitlines()[0]
        for ready in ("Application startup complete", "ready to roll", "Connected", "Uvicorn running"):
            assert ready not in err
    finally:
        eng.cleanup()


def test_startup_delay_vllm_does_not_listen_until_loaded(tmp_path: Path) -> None:
    with sim_engine("vllm", "--fault", "startup-delay:s=2", tmp=tmp_path) as eng:
        eng.wait_stderr("Loading safetensors checkpoint shards:   0%")
        with pytest.raises(httpx.ConnectError):
            get(eng.url + "/health", timeout=1)
        eng.wait_ready(timeout=10)
        err = eng.stderr()
        assert err.count("Loading safetensors checkpoint shards") >= 3
        assert err.index("Starting vLLM API server 0 on http://127.0.0.1:") < err.index(
            "Application startup complete."
        )


def test_startup_delay_sglang_listens_with_503(tmp_path: Path) -> None:
    with sim_engine("sglang", "--model-path", "m", "--fault", "startup-delay:s=2", tmp=tmp_path) as eng:
        code = wait_until(lambda: _status(eng.url + "/health"), timeout=5, step=0.05)
        assert code == 503
        assert "ready to roll" not in eng.stderr()
        eng.wait_ready(timeout=10)
        assert eng.stderr_lines()[-1].endswith("The server is fired up and ready to roll!")


def _status(url: str) -> int | None:
    try:
        return get(url, timeout=1).status_code
    except httpx.HTTPError:
        return None


def test_slow_fault_makes_decoding_slower(tmp_path: Path) -> None:
    with sim_engine("vllm", "--decode-ms", "10", "--fault", "slow@1:factor=8", tmp=tmp_path) as eng:
        eng.wait_ready()
        body = {"prompt": "x", "max_tokens": 20, "ignore_eos": True}
        t0 = time.monotonic()
        post(eng.url + "/v1/completions", body)
        fast = time.monotonic() - t0
        time.sleep(max(0.0, 1.2 - fast))
        t0 = time.monotonic()
        post(eng.url + "/v1/completions", body, timeout=10)
        slow = time.monotonic() - t0
        assert slow > 1.2 and slow > 2 * fast  # 20 steps x 80 ms vs 20 x 10 ms


@pytest.mark.parametrize("fault", ["metrics-garbage@0", "metrics-huge@0:mb=2", "metrics-slow@0:bps=20"])
def test_metrics_faults(fault: str, tmp_path: Path) -> None:
    with sim_engine("vllm", "--fault", fault, tmp=tmp_path) as eng:
        eng.wait_ready()
        if fault.startswith("metrics-garbage"):
            r = get(eng.url + "/metrics")
            assert r.status_code == 200
            with pytest.raises(Exception):  # noqa: B017 - any parse error will do
                list(text_string_to_metric_families(r.content.decode("utf-8")))
        elif fault.startswith("metrics-huge"):
            r = get(eng.url + "/metrics", timeout=20)
            assert r.status_code == 200 and len(r.content) >= 2 * 1024 * 1024
            assert "vllm:num_requests_running" in r.text[:200000]
        else:
            received = b""
            t0 = time.monotonic()
            with httpx.stream("GET", eng.url + "/metrics", timeout=5) as resp:
                for piece in resp.iter_bytes():
                    received += piece
                    if time.monotonic() - t0 > 1.5:
                        break
            assert 0 < len(received) < 200  # about 20 bytes/s of a body over 10 kB


# --- worker, ledger, signals -------------------------------------------------------------------


def _worker_of(eng) -> int:
    pids = wait_until(eng.children, timeout=5, step=0.05)
    assert pids, "no worker child"
    return pids[0]


def _comm(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


def test_worker_survives_sigkill_of_its_engine(tmp_path: Path) -> None:
    env = {"LLMCONSOLE_ENGINE_ID": "eng-42"}
    with sim_engine("vllm", "--worker", "--worker-max-s", "60", tmp=tmp_path, env=env) as eng:
        eng.wait_ready()
        worker = _worker_of(eng)
        eng.track(worker)
        assert wait_until(lambda: _comm(worker) == "SIM::Worker", timeout=3, step=0.05)
        assert b"LLMCONSOLE_ENGINE_ID=eng-42" in Path(f"/proc/{worker}/environ").read_bytes().split(b"\0")
        assert os.getpgid(worker) == os.getpgid(eng.pid)
        os.kill(eng.pid, signal.SIGKILL)
        eng.wait_exit(timeout=5)
        time.sleep(0.5)
        assert pid_alive(worker)


def test_worker_setsid_leaves_the_process_group(tmp_path: Path) -> None:
    with sim_engine(
        "tgi", "--worker", "--worker-setsid", "--prometheus-port", str(free_port()), tmp=tmp_path
    ) as eng:
        eng.wait_ready()
        worker = _worker_of(eng)
        eng.track(worker)
        assert wait_until(lambda: os.getsid(worker) == worker, timeout=3, step=0.05)
        assert os.getpgid(worker) != os.getpgid(eng.pid)


def test_sigterm_stops_worker_removes_ledger_and_exits_0(tmp_path: Path) -> None:
    ledger_dir = tmp_path / "gpus"
    env = {"LLMCONSOLE_SIM_GPU_DIR": str(ledger_dir), "CUDA_VISIBLE_DEVICES": "2,3"}
    with sim_engine(
        "vllm", "--model", "m", "--worker", "--sim-gpu-mem-gib", "9", tmp=tmp_path, env=env
    ) as eng:
        eng.wait_ready()
        worker = _worker_of(eng)
        eng.track(worker)
        entries = wait_until(
            lambda: sorted(ledger_dir.glob("*.json")) if len(list(ledger_dir.glob("*.json"))) == 2 else None,
            timeout=5,
            step=0.05,
        )
        assert entries
        records = {json.loads(p.read_text())["role"]: json.loads(p.read_text()) for p in entries}
        assert records["engine"]["pid"] == eng.pid and records["worker"]["pid"] == worker
        assert records["engine"]["gpus"] == records["worker"]["gpus"] == [2, 3]
        assert records["engine"]["mem_bytes"] == 1024**3 and records["worker"]["mem_bytes"] == 8 * 1024**3
        assert records["engine"]["dialect"] == "vllm" and records["worker"]["model"] == "m"
        # an open stream must not delay the shutdown
        stream = httpx.stream(
            "POST",
            eng.url + "/v1/completions",
            timeout=5,
            json={"prompt": "x", "max_tokens": 3000, "stream": True},
        )
        resp = stream.__enter__()
        try:
            t0 = time.monotonic()
            os.kill(eng.pid, signal.SIGTERM)
            assert eng.wait_exit(timeout=5) == 0
            assert time.monotonic() - t0 < 2.0
        finally:
            resp.close()
        assert wait_until(lambda: not pid_alive(worker), timeout=3, step=0.05)
        assert list(ledger_dir.glob("*.json")) == []


def test_sigkill_leaves_ledger_files_behind(tmp_path: Path) -> None:
    ledger_dir = tmp_path / "gpus"
    with sim_engine(
        "sglang", "--model-path", "m", tmp=tmp_path, env={"LLMCONSOLE_SIM_GPU_DIR": str(ledger_dir)}
    ) as eng:
        eng.wait_ready()
        path = ledger_dir / f"{eng.pid}.json"
        assert json.loads(path.read_text())["mem_bytes"] == 18 * 1024**3  # no worker: all on the engine
        os.kill(eng.pid, signal.SIGKILL)
        eng.wait_exit(timeout=5)
        assert path.exists()  # readers treat files of dead pids as released


# --- command line ------------------------------------------------------------------------------


def test_unknown_engine_flags_are_accepted_and_listed_once(tmp_path: Path) -> None:
    with sim_engine(
        "vllm",
        "/models/x",
        "--max-model-len",
        "8192",
        "--tensor-parallel-size",
        "2",
        "--enforce-eager",
        "--enable-prefix-caching",
        "--gpu-memory-utilization",
        "0.9",
        tmp=tmp_path,
    ) as eng:
        eng.wait_ready()
        ignored = [line for line in eng.stderr_lines() if "ignoring engine flags" in line]
        assert len(ignored) == 1  # --enable-prefix-caching is simulated (the prefix cache), so not listed
        assert ignored[0].endswith("--tensor-parallel-size 2 --enforce-eager --gpu-memory-utilization 0.9")
        assert get(eng.url + "/v1/models").json()["data"][0]["max_model_len"] == 8192


@pytest.mark.parametrize(
    "args", [["--fault", "explode@1"], ["--fault", "hang@x"], ["--port", "abc"], ["--load", "-2"]]
)
def test_bad_arguments_exit_2_with_one_line(args: list[str]) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "agents.sim", "--dialect", "vllm", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("llmconsole sim-engine: error: ")
    assert "Traceback" not in out.stderr


def test_port_in_use_fails_cleanly(tmp_path: Path) -> None:
    with sim_engine("vllm", tmp=tmp_path) as first:
        first.wait_ready()
        second = start_sim("vllm", tmp=tmp_path, port=first.port)
        try:
            assert second.wait_exit(timeout=10) == 1
            assert "Traceback" not in second.stderr() and "address" in second.stderr_lines()[-1].lower()
        finally:
            second.cleanup()


def test_a_stopped_worker_stalls_the_engine_until_continued(tmp_path: Path) -> None:
    """SIGSTOP of the worker is the real silent hang: health 200, metrics frozen; SIGCONT resumes."""
    with sim_engine("vllm", "--worker", "--load", "20", tmp=tmp_path) as eng:
        eng.wait_ready()
        worker = _worker_of(eng)
        eng.track(worker)
        time.sleep(0.5)
        os.kill(worker, signal.SIGSTOP)
        try:
            time.sleep(0.3)
            before = value(get(eng.url + "/metrics").text, "vllm:generation_tokens_total")
            time.sleep(1.0)
            assert value(get(eng.url + "/metrics").text, "vllm:generation_tokens_total") == before
            assert get(eng.url + "/health").status_code == 200
        finally:
            os.kill(worker, signal.SIGCONT)
        assert wait_until(
            lambda: value(get(eng.url + "/metrics").text, "vllm:generation_tokens_total") > before, timeout=5
        )


def test_engine_dies_when_its_worker_dies(tmp_path: Path) -> None:
    with sim_engine("vllm", "--worker", tmp=tmp_path) as eng:
        eng.wait_ready()
        worker = _worker_of(eng)
        os.kill(worker, signal.SIGKILL)
        assert eng.wait_exit(timeout=5) == 1
        assert eng.stderr_lines()[-1].startswith("EngineDeadError")


def test_group_sigterm_is_a_clean_stop(tmp_path: Path) -> None:
    """A supervisor's killpg(SIGTERM) reaches engine and worker at once: exit 0, not a crash."""
    argv = [sys.executable, "-m", "agents.sim", "--dialect", "vllm", "--port", str(free_port()), "--worker"]
    err = tmp_path / "err"
    with open(err, "wb") as fh:
        proc = subprocess.Popen(argv, cwd=ROOT, stderr=fh, stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until(lambda: "Application startup complete." in err.read_text(), timeout=10, step=0.05)
        time.sleep(0.3)
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
        assert "EngineDeadError" not in err.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def test_worker_exits_by_itself_after_max_s(tmp_path: Path) -> None:
    ledger_dir = tmp_path / "gpus"
    env = {**os.environ, "LLMCONSOLE_SIM_GPU_DIR": str(ledger_dir)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "agents.sim.worker", "--max-s", "0.5", "--mem-bytes", "7"], cwd=ROOT, env=env
    )
    try:
        assert wait_until(lambda: (ledger_dir / f"{proc.pid}.json").exists(), timeout=5, step=0.02)
        assert json.loads((ledger_dir / f"{proc.pid}.json").read_text())["role"] == "worker"
        assert proc.wait(timeout=5) == 0
        assert not (ledger_dir / f"{proc.pid}.json").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
