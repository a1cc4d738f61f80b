"""The silent-failure faults on a real simulated engine process, seen the way a monitor sees them:
over HTTP (/health, /metrics, completions) and through the simulated-GPU ledger (agents/gpu/simulated.py).

Every fault here answers /health 200 while users get nothing, or get wrong text.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from agents.gpu.simulated import SimulatedGpuSource
from tests.support.simproc import ROOT, SimProc, sim_engine

FAST = ("--decode-ms", "5", "--seed", "3")  # load requests (16..256 tokens) finish within ~1.5 s


def metrics(eng: SimProc) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics: (name, sorted labels) -> value (asserts the 200)."""
    r = httpx.get(eng.url + "/metrics", timeout=5)
    assert r.status_code == 200
    out = {}
    for line in r.text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, val = line.rpartition(" ")
        name, _, labels = head.partition("{")
        pairs = (
            tuple(sorted(tuple(p.split("=", 1)) for p in labels.rstrip("}").split(",") if p))
            if labels
            else ()
        )
        out[(name, tuple((k, v.strip('"')) for k, v in pairs))] = float(val)
    return out


def sample(m: dict, name: str, **labels: str) -> float:
    want = set(labels.items())
    found = [v for (n, lab), v in m.items() if n == name and want <= set(lab)]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def healthy(eng: SimProc, path: str = "/health") -> bool:
    return httpx.get(eng.url + path, timeout=5).status_code == 200


def until(predicate, timeout: float, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        got = predicate()
        if got or time.monotonic() >= deadline:
            return got
        time.sleep(step)


def complete(eng: SimProc, prompt: str, max_tokens: int = 6, timeout: float = 5.0, **extra) -> str:
    body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0, **extra}
    r = httpx.post(eng.url + "/v1/completions", json=body, timeout=timeout)
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["text"]


def gpu_utils(ledger: Path, count: int) -> list[float | None]:
    return [g.util_pct for g in SimulatedGpuSource(ledger, count=count).poll().gpus]


# --- admission-stall ----------------------------------------------------------------------------


def test_admission_stall_defers_waiting_keeps_kv_free_trickles_then_recovers(tmp_path: Path) -> None:
    spec = "admission-stall@2:trickle=0.5,for=4"
    with sim_engine("vllm", "--load", "25", *FAST, "--fault", spec, tmp=tmp_path) as eng:
        eng.wait_ready()
        t_ready = time.monotonic()
        busy = until(lambda: sample(metrics(eng), "vllm:num_requests_running") >= 2, timeout=1.5, step=0.05)
        assert busy and time.monotonic() - t_ready < 2.0, (
            "the load never ran two requests at once before the stall"
        )
        time.sleep(max(0.0, t_ready + 3.8 - time.monotonic()))  # past T + the ~1.5 s running requests need
        first, t_first = metrics(eng), time.monotonic()
        time.sleep(1.0)
        second, t_second = metrics(eng), time.monotonic()
        assert healthy(eng)
        assert t_second - t_ready < 5.8, "the machine was too slow to see the stall before it ended"
        for m in (first, second):
            waiting = sample(m, "vllm:num_requests_waiting")
            assert sample(m, "vllm:num_requests_running") <= 1
            assert sample(m, "vllm:num_requests_waiting_by_reason", reason="deferred") == waiting
            assert sample(m, "vllm:num_requests_waiting_by_reason", reason="capacity") == 0
            assert sample(m, "vllm:kv_cache_usage_perc") < 0.1
        assert sample(second, "vllm:num_requests_waiting") > sample(first, "vllm:num_requests_waiting") >= 10
        trickle = sample(second, "vllm:generation_tokens_total") - sample(
            first, "vllm:generation_tokens_total"
        )
        assert trickle <= (t_second - t_first) / 0.5 + 1  # one running request at one token per 0.5 s at most
        # for=4: at T+4 admission resumes and the queue drains
        drained = until(
            lambda: (
                sample(metrics(eng), "vllm:num_requests_waiting_by_reason", reason="deferred") == 0
                and sample(metrics(eng), "vllm:num_requests_running") >= 2
            ),
            timeout=8.0,
        )
        assert drained
        flowing = sample(second, "vllm:generation_tokens_total") + 50
        assert until(lambda: sample(metrics(eng), "vllm:generation_tokens_total") > flowing, timeout=4.0)


def test_waiting_by_reason_is_capacity_when_the_engine_is_merely_full(tmp_path: Path) -> None:
    with sim_engine("vllm", "--load", "40", *FAST, "--max-num-seqs", "2", tmp=tmp_path) as eng:
        eng.wait_ready()

        def queued() -> dict | None:
            m = metrics(eng)
            return m if sample(m, "vllm:num_requests_waiting") >= 3 else None

        m = until(queued, timeout=4.0)
        assert m, "no queue formed"
        assert sample(m, "vllm:num_requests_waiting_by_reason", reason="capacity") == sample(
            m, "vllm:num_requests_waiting"
        )
        assert sample(m, "vllm:num_requests_waiting_by_reason", reason="deferred") == 0


# --- gpu-wedge, rank-diverge, and the hang for contrast ---------------------------------------------


def test_gpu_wedge_freezes_tokens_with_requests_running_and_the_gpu_busy(tmp_path: Path) -> None:
    ledger = tmp_path / "gpus"
    env = {"LLMCONSOLE_SIM_GPU_DIR": str(ledger), "CUDA_VISIBLE_DEVICES": "0"}
    with sim_engine(
        "vllm", "--load", "20", *FAST, "--fault", "gpu-wedge@1:for=4", tmp=tmp_path, env=env
    ) as eng:
        eng.wait_ready()
        assert "util_pct" not in json.loads(
            (ledger / f"{eng.pid}.json").read_text()
        )  # healthy: reader's default
        t_ready = time.monotonic()
        time.sleep(1.5)
        first = metrics(eng)
        time.sleep(0.8)
        second = metrics(eng)
        assert healthy(eng)
        assert time.monotonic() - t_ready < 4.8, "the machine was too slow to see the wedge before it ended"
        for name in ("vllm:generation_tokens_total", "vllm:prompt_tokens_total", "vllm:num_requests_running"):
            assert sample(first, name) == sample(second, name), name
        assert sample(second, "vllm:num_requests_running") >= 1
        assert json.loads((ledger / f"{eng.pid}.json").read_text())["util_pct"] == 100
        assert gpu_utils(ledger, 1) == [100.0]
        # for=4: the kernel returns at T+4, tokens flow again, the engine stops claiming 100 %
        assert until(
            lambda: (
                sample(metrics(eng), "vllm:generation_tokens_total")
                > sample(second, "vllm:generation_tokens_total")
            ),
            timeout=5.0,
        )
        assert until(
            lambda: "util_pct" not in json.loads((ledger / f"{eng.pid}.json").read_text()), timeout=2.0
        )


def test_rank_diverge_one_gpu_busy_the_other_idle_and_no_progress(tmp_path: Path) -> None:
    ledger = tmp_path / "gpus"
    env = {"LLMCONSOLE_SIM_GPU_DIR": str(ledger), "CUDA_VISIBLE_DEVICES": "0,1"}
    with sim_engine("vllm", "--load", "20", *FAST, "--fault", "rank-diverge@1", tmp=tmp_path, env=env) as eng:
        eng.wait_ready()
        assert gpu_utils(ledger, 2) == [100.0, 100.0]  # healthy and holding memory: the reader's busy default
        assert until(lambda: gpu_utils(ledger, 2) == [100.0, 0.0], timeout=3.0)
        first = metrics(eng)
        time.sleep(0.8)
        second = metrics(eng)
        assert healthy(eng)
        assert (
            sample(first, "vllm:generation_tokens_total")
            == sample(second, "vllm:generation_tokens_total")
            > 0
        )
        assert sample(second, "vllm:num_requests_running") >= 1
        entry = json.loads((ledger / f"{eng.pid}.json").read_text())
        assert entry["gpus"] == [0, 1] and entry["util_pct_by_gpu"] == {"0": 100.0, "1": 0.0}


def test_rank_diverge_on_one_gpu_is_refused_with_one_line(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "agents.sim", "--dialect", "vllm", "--fault", "rank-diverge@1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=20,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": "0"},
    )
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "llmconsole sim-engine: error: argument --fault: fault 'rank-diverge' needs an "
        "engine on two or more GPUs (CUDA_VISIBLE_DEVICES gives 1)"
    )


def test_hang_leaves_the_gpu_idle_unlike_a_wedge(tmp_path: Path) -> None:
    ledger = tmp_path / "gpus"
    env = {"LLMCONSOLE_SIM_GPU_DIR": str(ledger), "CUDA_VISIBLE_DEVICES": "0"}
    with sim_engine("vllm", "--load", "20", *FAST, "--fault", "hang@0.5:for=3", tmp=tmp_path, env=env) as eng:
        eng.wait_ready()
        assert until(lambda: gpu_utils(ledger, 1) == [0.0], timeout=2.0)
        before = sample(metrics(eng), "vllm:generation_tokens_total")
        assert healthy(eng)
        assert until(lambda: sample(metrics(eng), "vllm:generation_tokens_total") > before, timeout=5.0)
        assert gpu_utils(ledger, 1) == [100.0]  # the hang ended: back to the default


# --- frontend-hang ------------------------------------------------------------------------------


def test_frontend_hang_reads_requests_but_never_answers_while_gauges_stay_zero(tmp_path: Path) -> None:
    with sim_engine("vllm", "--load", "20", *FAST, "--fault", "frontend-hang@0.5:for=7", tmp=tmp_path) as eng:
        eng.wait_ready()
        t_ready = time.monotonic()
        time.sleep(2.2)  # the load stops at T; what was running finishes
        before = metrics(eng)
        assert sample(before, "vllm:generation_tokens_total") > 0  # it served the load before T
        with pytest.raises(httpx.ReadTimeout):  # the body was sent and read; no status line ever comes
            httpx.post(eng.url + "/v1/completions", json={"prompt": "hello", "max_tokens": 2}, timeout=1.0)
        with (
            pytest.raises(httpx.ReadTimeout),
            httpx.stream(
                "POST",
                eng.url + "/v1/completions",
                timeout=1.0,
                json={"prompt": "hello", "max_tokens": 2, "stream": True},
            ),
        ):
            pass
        after = metrics(eng)
        assert time.monotonic() - t_ready < 7.0, "the machine was too slow to see the fault before it ended"
        assert healthy(eng)
        for m in (before, after):
            assert sample(m, "vllm:num_requests_running") == 0 and sample(m, "vllm:num_requests_waiting") == 0
        assert sample(after, "vllm:generation_tokens_total") == sample(before, "vllm:generation_tokens_total")
        time.sleep(max(0.0, t_ready + 7.7 - time.monotonic()))  # for=7: requests reach the scheduler again
        assert complete(eng, "hello again", timeout=3.0) != ""


def test_frontend_hang_fails_sglang_health_generate_but_not_health(tmp_path: Path) -> None:
    args = ["--model-path", "m", "--fault", "frontend-hang@0.2", "--health-generate-timeout", "1"]
    with sim_engine("sglang", *args, tmp=tmp_path) as eng:
        eng.wait_ready()
        time.sleep(0.4)
        t0 = time.monotonic()
        assert httpx.get(eng.url + "/health_generate", timeout=5).status_code == 503
        assert 0.9 <= time.monotonic() - t0 < 3.0
        assert healthy(eng)


# --- wrong-answers ------------------------------------------------------------------------------


def test_temperature_zero_is_deterministic_then_wrong_answers_then_right_again(tmp_path: Path) -> None:
    with sim_engine("vllm", "--decode-ms", "2", "--fault", "wrong-answers@4:for=2.5", tmp=tmp_path) as eng:
        eng.wait_ready()
        t_ready = time.monotonic()
        capital = "What is the capital of France? Answer in one word."
        ref = complete(eng, capital)
        natural = complete(eng, "Count to ten.", max_tokens=300)  # ends at its own EOS length
        assert complete(eng, capital) == ref and complete(eng, "Count to ten.", max_tokens=300) == natural
        assert len(ref.split()) == 6 and complete(eng, "Name a colour.") != ref
        with httpx.stream(
            "POST",
            eng.url + "/v1/completions",
            timeout=5,
            json={"prompt": capital, "max_tokens": 6, "temperature": 0, "stream": True},
        ) as resp:
            chunks = [
                json.loads(line[6:])
                for line in resp.iter_lines()
                if line.startswith("data: ") and line != "data: [DONE]"
            ]
        assert "".join(c["choices"][0]["text"] for c in chunks) == ref  # streamed = non-streamed
        assert time.monotonic() - t_ready < 3.8, "the machine was too slow to finish before T"
        time.sleep(max(0.0, t_ready + 4.2 - time.monotonic()))
        wrong = [complete(eng, capital) for _ in range(4)]
        assert all(w != ref and len(w.split()) == 6 for w in wrong)  # plausible: same length, other words
        assert all(a != b for a, b in zip(wrong, wrong[1:], strict=False))  # and not even stable
        long_wrong = complete(eng, "Count to ten.", max_tokens=300)
        assert long_wrong != natural and len(long_wrong.split()) == len(natural.split())
        assert time.monotonic() - t_ready < 6.4, "the machine was too slow to see the fault before it ended"
        time.sleep(max(0.0, t_ready + 6.7 - time.monotonic()))
        assert complete(eng, capital) == ref  # for=2.5: right again


# --- drift --------------------------------------------------------------------------------------


def test_drift_makes_ttft_slower_at_the_same_load_and_leaves_decode_alone(tmp_path: Path) -> None:
    args = ["--decode-ms", "20", "--prefill-ms-per-1k", "100", "--fault", "drift@3:factor=4"]
    with sim_engine("vllm", *args, tmp=tmp_path) as eng:
        eng.wait_ready()
        t_ready = time.monotonic()
        prompts = (f"{i} " + " ".join(["word"] * 200) for i in range(100))  # distinct: no prefix-cache hits

        def phase(n: int) -> tuple[float, float]:
            m0 = metrics(eng)
            for _ in range(n):
                complete(eng, next(prompts), max_tokens=8, ignore_eos=True)
            m1 = metrics(eng)

            def mean(name: str) -> float:
                d_sum = sample(m1, name + "_sum") - sample(m0, name + "_sum")
                return d_sum / (sample(m1, name + "_count") - sample(m0, name + "_count"))

            return mean("vllm:time_to_first_token_seconds"), mean("vllm:inter_token_latency_seconds")

        ttft0, itl0 = phase(3)  # one request at a time: the same load before and after
        assert time.monotonic() - t_ready < 2.9, "the machine was too slow to finish before T"
        time.sleep(max(0.0, t_ready + 3.2 - time.monotonic()))
        ttft1, itl1 = phase(3)
        assert ttft1 >= 3.5 * ttft0 and ttft0 > 0
        assert itl1 == pytest.approx(itl0, rel=0.1)
        assert healthy(eng)
