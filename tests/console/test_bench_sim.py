"""`llmconsole bench` against real simulated engines (real processes on loopback), all three dialects.

What it proves: the benchmark's numbers come from real streamed requests and the engine's own /metrics
(read by the project's adapters); ``prefix-repetition`` shows a higher prefix-cache hit rate and a lower
TTFT than ``random`` (vLLM, SGLang; TGI exports no hit rate, so it is null with its reason, but the TTFT
still drops); the chat endpoint, sweeps, Poisson rates and the SLO search run inside their bounds; a
fleet target ``HOST/ENGINE`` resolves through the console config and the agent's snapshot; Ctrl-C keeps
partial results; and ``calc breakeven --measured`` prices the measured throughput.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from console.cli import main
from tests.support.agentproc import free_port, kill_everything, sim
from tests.support.secure_agent import SecureAgent, write_tokens
from tests.support.secure_agent import write_config as secure_config
from tests.support.simproc import ROOT, SimProc, sim_engine

FAST = ("--tick-ms", "2", "--decode-ms", "4", "--prefill-ms-per-1k", "300")
SMALL = (
    "--quiet",
    "--json",
    "--concurrency",
    "4",
    "--output-len",
    "4",
    "--max-requests",
    "16",
    "--metrics-interval",
    "0.2",
    "--duration",
    "30",
    "--drain",
    "10",
)


def bench(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict | None, str]:
    code = main(["bench", *argv])
    out, err = capsys.readouterr()
    doc = json.loads(out) if out.strip().startswith("{") else None
    return code, doc, err


@pytest.fixture(scope="module")
def vllm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimProc]:
    with sim_engine("vllm", *FAST, tmp=tmp_path_factory.mktemp("vllm")) as eng:
        eng.wait_ready()
        yield eng


@pytest.mark.parametrize("dialect", ["vllm", "sglang", "tgi"])
def test_prefix_repetition_beats_random_on_every_dialect(
    dialect: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = ("--enable-metrics",) if dialect == "sglang" else ()
    with sim_engine(dialect, *FAST, *extra, tmp=tmp_path) as eng:
        eng.wait_ready()
        docs = {}
        for workload in ("random", "prefix-repetition"):
            code, doc, err = bench(
                capsys,
                eng.url,
                *SMALL,
                "--workload",
                workload,
                "--input-len",
                "512",
                "--prefix-count",
                "2",
                "--prefix-len",
                "448",
                "--suffix-len",
                "64",
            )
            assert code == 0, err
            docs[workload] = doc
    rnd, pre = docs["random"], docs["prefix-repetition"]
    for doc in (rnd, pre):
        assert doc["schema"] == "llmconsole.bench/1" and doc["completed"] == 16 and doc["failed"] == 0
        assert doc["target"]["engine"] == dialect and doc["engine_metrics"]["simulated"] is True
        assert doc["output_tokens_source"] == "usage" and doc["input_tokens_source"] == "usage"
        assert 1 <= doc["max_concurrent_requests"] <= 4 and doc["request_throughput"] > 0
        assert doc["mean_tpot_ms"] is not None and doc["p99_itl_ms"] is not None
        assert doc["engine_metrics"]["max_running"] >= 1
    assert pre["p50_ttft_ms"] < 0.7 * rnd["p50_ttft_ms"], (pre["p50_ttft_ms"], rnd["p50_ttft_ms"])
    em_r, em_p = rnd["engine_metrics"], pre["engine_metrics"]
    if dialect == "tgi":
        assert em_p["prefix_cache_hit_rate"] is None
        assert em_p["null_reasons"]["prefix_cache_hit_rate"] == "not exposed by this engine"
        assert em_p["preemptions"] is None and em_p["max_kv_cache_usage"] is None
    else:
        assert em_r["prefix_cache_hit_rate"] < 0.05 and em_p["prefix_cache_hit_rate"] > 0.6
        assert em_p["preemptions"] == 0 and em_p["max_kv_cache_usage"] > 0
        assert em_p["prompt_tokens"] == pre["total_input_tokens"]
    expected = (
        "the engine's tokenizer (POST /tokenize)"
        if dialect == "vllm"
        else "characters (no tokenizer at hand)"
    )
    assert rnd["workload"]["tokenization"]["source"] == expected
    assert rnd["total_input_tokens"] == 16 * 512  # the sim counts chars/4: the generated lengths are exact


def test_chat_endpoint_and_table(vllm: SimProc, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "bench",
            vllm.url,
            "--endpoint",
            "chat",
            "--concurrency",
            "2",
            "--max-requests",
            "6",
            "--input-len",
            "64",
            "--output-len",
            "5",
            "--ignore-eos",
            "--quiet",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert re.search(r"^completed\s+6$", out, re.M), out
    assert "TPOT (vLLM def.) p99 ms" in out and "/v1/chat" in out and "(SIMULATED)" in out
    code, doc, err = bench(
        capsys,
        vllm.url,
        "--endpoint",
        "chat",
        "--concurrency",
        "2",
        "--max-requests",
        "6",
        "--input-len",
        "64",
        "--output-len",
        "5",
        "--ignore-eos",
        "--quiet",
        "--json",
    )
    assert doc["total_output_tokens"] == 30 and doc["completed"] == 6  # exact: ignore_eos and usage


def test_sweep_and_rate(vllm: SimProc, capsys: pytest.CaptureFixture[str]) -> None:
    code, doc, err = bench(
        capsys,
        vllm.url,
        "--quiet",
        "--json",
        "--sweep",
        "1,4",
        "--max-requests",
        "12",
        "--input-len",
        "32",
        "--output-len",
        "4",
    )
    assert code == 0, err
    assert doc["mode"] == "sweep" and [r["load"]["max_concurrency"] for r in doc["runs"]] == [1, 4]
    assert doc["runs"][0]["max_concurrent_requests"] == 1 and doc["runs"][1]["max_concurrent_requests"] == 4
    best = max(range(2), key=lambda i: doc["runs"][i]["total_token_throughput"])
    assert (
        doc["headline_run"] == best
        and doc["total_token_throughput"] == doc["runs"][best]["total_token_throughput"]
    )
    code, doc, err = bench(
        capsys,
        vllm.url,
        "--quiet",
        "--json",
        "--rate",
        "20",
        "--burstiness",
        "0.5",
        "--max-requests",
        "30",
        "--input-len",
        "32",
        "--output-len",
        "4",
        "--seed",
        "7",
    )
    assert code == 0, err
    assert doc["request_rate"] == 20 and doc["burstiness"] == 0.5 and doc["completed"] == 30
    assert 8 <= doc["request_throughput"] <= 40, doc["request_throughput"]  # ~20/s over 30 gamma arrivals


def test_slo_search_finds_a_passing_rate(vllm: SimProc, capsys: pytest.CaptureFixture[str]) -> None:
    code, doc, err = bench(
        capsys,
        vllm.url,
        "--quiet",
        "--json",
        "--slo",
        "ttft_p99=2,e2el_p99=5",
        "--slo-start-rate",
        "4",
        "--slo-max-runs",
        "2",
        "--max-requests",
        "10",
        "--input-len",
        "32",
        "--output-len",
        "4",
    )
    assert code == 0, err
    assert doc["mode"] == "slo-search" and [r["load"]["request_rate"] for r in doc["runs"]] == [4, 8]
    assert all(r["slo_met"] for r in doc["runs"]) and doc["headline_run"] == 1
    assert doc["request_goodput"] == pytest.approx(doc["request_throughput"])  # every request within the SLO
    assert doc["sustained"]["source"] == "slo"
    code, doc, err = bench(
        capsys,
        vllm.url,
        "--quiet",
        "--json",
        "--slo",
        "ttft_p99=0.000001",
        "--rate",
        "5",
        "--max-requests",
        "5",
        "--input-len",
        "32",
        "--output-len",
        "4",
    )
    assert code == 0 and doc["runs"][0]["slo_met"] is False and doc["sustained"] is None
    assert doc["request_goodput"] == 0


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--slo", "ttfb_p99=1"], "unknown metric 'ttfb_p99'"),
        (["--rate", "0"], "--rate must be"),
        (["--sweep", "1,x"], "--sweep: 'x' is not a number"),
        (["--max-requests", "0"], "--max-requests must be"),
        (["--workload", "jsonl"], "needs --prompts-file"),
    ],
)
def test_bad_arguments_are_one_line(argv: list[str], words: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "http://127.0.0.1:9", *argv])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and err.count("\n") == 1 and words in err, err


def test_unreachable_and_not_openai_targets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", f"http://127.0.0.1:{free_port()}", "--quiet"])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and err.count("\n") == 1 and "cannot reach" in err and "refused" in err
    # a real HTTP server that is not an engine: the simulated TGI's Prometheus listener serves only /metrics
    metrics_port = free_port()
    with sim_engine("tgi", "--prometheus-port", str(metrics_port), tmp=tmp_path) as eng:
        eng.wait_ready()
        code = main(["bench", f"http://127.0.0.1:{metrics_port}", "--quiet"])
        out, err = capsys.readouterr()
        assert code == 2 and out == "" and err.count("\n") == 1
        assert "is not an OpenAI-compatible server: GET /v1/models answered HTTP 404" in err
        code = main(["bench", eng.url, "--model", "no-such-model", "--quiet"])
        out, err = capsys.readouterr()
        assert code == 2 and "does not serve model 'no-such-model'" in err and err.count("\n") == 1


def test_malformed_jsonl_and_foreign_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "a"}\n{"prompt": "b"\n')
    code = main(["bench", "http://127.0.0.1:9", "--workload", "jsonl", "--prompts-file", str(prompts)])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and err.count("\n") == 1 and "p.jsonl line 2: not JSON" in err
    foreign = tmp_path / "status.json"
    foreign.write_text(json.dumps({"schema": "llmconsole.status/1", "hosts": []}))
    for argv in (
        ["bench", "--compare", str(foreign), str(foreign)],
        ["calc", "breakeven", "--gpu-hourly", "2", "--api", "gpt-5", "--measured", str(foreign)],
    ):
        code = main(argv)
        out, err = capsys.readouterr()
        assert code == 2 and out == "" and err.count("\n") == 1 and "not a llmconsole.bench result" in err, (
            err
        )
    code = main(["bench", "nohost/noengine", "--config", str(tmp_path / "none.toml")])
    out, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1


def test_jsonl_messages_and_compare(
    vllm: SimProc, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts = tmp_path / "chat.jsonl"
    prompts.write_text(
        "\n".join(
            json.dumps({"messages": [{"role": "user", "content": f"question {i} " * 20}], "max_tokens": 3})
            for i in range(4)
        )
        + "\n"
    )
    code = main(["bench", vllm.url, "--workload", "jsonl", "--prompts-file", str(prompts), "--quiet"])
    assert code == 2 and "use --endpoint chat" in capsys.readouterr().err
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    for path, conc in ((a, "1"), (b, "4")):
        code, _, err = bench(
            capsys,
            vllm.url,
            "--workload",
            "jsonl",
            "--prompts-file",
            str(prompts),
            "--endpoint",
            "chat",
            "--concurrency",
            conc,
            "--max-requests",
            "8",
            "--quiet",
            "--output",
            str(path),
        )
        assert code == 0, err
    code = main(["bench", "--compare", str(a), str(b), "--json"])
    doc = json.loads(capsys.readouterr().out)
    rows = {r["key"]: r for r in doc["rows"]}
    da, db = json.loads(a.read_text()), json.loads(b.read_text())
    assert code == 0 and da["total_output_tokens"] == 8 * 3
    assert rows["request_throughput"]["ratio"] == pytest.approx(
        db["request_throughput"] / da["request_throughput"]
    )
    code = main(["bench", "--compare", str(a), str(b)])
    out = capsys.readouterr().out
    assert code == 0 and "B/A" in out and "requests/s" in out


def test_fleet_target_through_the_console_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    agent_port, engine_port = free_port(), free_port()
    engines = [
        {
            "id": "e1",
            "kind": "vllm",
            "model": "sim-llama",
            "port": engine_port,
            "gpus": [0, 1],
            "command": sim("vllm"),
            "args": list(FAST),
        }
    ]
    tokens = write_tokens(tmp_path / "tokens", ops="operator", eye="viewer")
    config = secure_config(tmp_path, agent_port, engines, agent={"tokens_file": str(tmp_path / "tokens")})
    agent = SecureAgent(config, agent_port, token=tokens["ops"])
    for name in ("ops", "eye"):
        (tmp_path / f"{name}.token").write_text(tokens[name] + "\n")
        (tmp_path / f"{name}.token").chmod(0o600)
    console = tmp_path / "console.toml"
    console.write_text(
        f'[[console.hosts]]\nname = "h1"\nurl = "http://127.0.0.1:{agent_port}"\n'
        f'token_file = "{tmp_path / "ops.token"}"\n'
    )
    viewer = tmp_path / "viewer.toml"
    viewer.write_text(console.read_text().replace("ops.token", "eye.token"))
    agent.start()
    try:
        agent.wait("engine ready", lambda s: any(e["state"] == "ready" for e in s["engines"]), timeout=30)
        # load on production needs the operator role: a viewer's token is refused before any request
        code = main(["bench", "h1/e1", "--config", str(viewer), "--quiet", "--max-requests", "4"])
        err = capsys.readouterr().err
        assert code == 2 and "the agent refused the benchmark (HTTP 403)" in err and err.count("\n") == 1, err
        code, doc, err = bench(
            capsys,
            "h1/e1",
            "--config",
            str(console),
            "--quiet",
            "--json",
            "--max-requests",
            "4",
            "--input-len",
            "32",
            "--output-len",
            "4",
        )
        assert code == 0, err
        assert doc["target"]["fleet"] == {
            "host": "h1",
            "engine": "e1",
            "route": "http",
            "agent_url": f"http://127.0.0.1:{agent_port}",
            "simulated": True,
        }
        assert doc["target"]["base_url"] == f"http://127.0.0.1:{engine_port}" and doc["model"] == "sim-llama"
        assert doc["target"]["gpus"] == 2 and doc["sustained"]["gpus"] == 2 and doc["completed"] == 4
        gpu = doc["gpu_metrics"]  # the engine's GPUs through the agent (simulated: memory and busy, no power)
        assert gpu["indices"] == [0, 1] and gpu["gpu_source"] == "simulated" and gpu["samples"] >= 1
        assert gpu["max_memory_used_bytes"] > 0 and gpu["max_util_pct"] == 100.0
        assert gpu["mean_power_w"] is None and gpu["output_tokens_per_joule"] is None
        assert "gpu_source simulated" in gpu["null_reasons"]["output_tokens_per_joule"]
        assert "token" not in json.dumps(doc["target"]).lower()  # the agent's token never lands in a result
        audit = [json.loads(line) for line in (tmp_path / "state" / "audit.log").read_text().splitlines()]
        benches = [(r["action"], r["result"]) for r in audit if str(r.get("action", "")).startswith("bench")]
        assert ("bench-start", "denied: role viewer") in benches
        assert ("bench-start", "allowed") in benches and benches[-1] == ("bench-end", "allowed")
        start = next(r for r in audit if r.get("action") == "bench-start" and r["result"] == "allowed")
        assert start["workload"].startswith("random 32→4 tokens") and start["params"]["bounds"]
        for target, words in (("h2/e1", "no host 'h2'"), ("h1/e9", "no engine 'e9' on h1 (engines: e1)")):
            code = main(["bench", target, "--config", str(console), "--quiet"])
            err = capsys.readouterr().err
            assert code == 2 and words in err and err.count("\n") == 1
    finally:
        kill_everything(agent, tmp_path / "state")


def _successes(url: str) -> float:
    text = httpx.get(url + "/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("vllm:request_success_total{")
    )


def test_ctrl_c_stops_cleanly_and_keeps_partial_results(vllm: SimProc, tmp_path: Path) -> None:
    out_path = tmp_path / "partial.json"
    base = _successes(vllm.url)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "console.cli",
            "bench",
            vllm.url,
            "--concurrency",
            "2",
            "--max-requests",
            "100000",
            "--duration",
            "120",
            "--output-len",
            "60",
            "--ignore-eos",
            "--input-len",
            "16",
            "--output",
            str(out_path),
            "--quiet",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _successes(vllm.url) - base < 4:
            time.sleep(0.2)
        assert _successes(vllm.url) - base >= 4, "the benchmark never got going"
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 130, stderr
    assert "stopping: keeping the results so far" in stderr and "Traceback" not in stderr
    doc = json.loads(out_path.read_text())
    assert doc["interrupted"] is True and doc["stopped_by"] == "interrupt"
    assert doc["completed"] >= 3 and doc["incomplete"] >= 1 and doc["failed"] == 0
    assert "INTERRUPTED: partial results" in stdout


def test_calc_breakeven_uses_the_measurement(
    vllm: SimProc, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "r.json"
    code, _, err = bench(
        capsys,
        vllm.url,
        "--quiet",
        "--concurrency",
        "4",
        "--max-requests",
        "12",
        "--input-len",
        "64",
        "--output-len",
        "8",
        "--gpus",
        "2",
        "--output",
        str(path),
    )
    assert code == 0, err
    measured = json.loads(path.read_text())["sustained"]
    code = main(
        [
            "calc",
            "breakeven",
            "--gpu-hourly",
            "2.5",
            "--gpus",
            "4",
            "--api",
            "claude-opus-5",
            "--measured",
            str(path),
            "--json",
        ]
    )
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and doc["capacity_source"] == "measured"
    per_gpu = measured["total_tokens_per_s"] / 2
    assert doc["measured"]["total_tokens_per_s_per_gpu"] == pytest.approx(per_gpu)
    assert doc["capacity_tokens_per_day"] == pytest.approx(per_gpu * 4 * 86400)
    code = main(
        ["calc", "breakeven", "--gpu-hourly", "2.5", "--api", "claude-opus-5", "--measured", str(path)]
    )
    out = capsys.readouterr().out
    assert code == 0 and "MEASURED by llmconsole bench on a SIMULATED engine" in out and str(path) in out
    code = main(
        [
            "calc",
            "breakeven",
            "--gpu",
            "a100-80gb",
            "--api",
            "claude-opus-5",
            "--model",
            "llama-3.3-70b",
            "--quant",
            "int4",
        ]
    )
    assert code == 0 and "ESTIMATE from the catalog" in capsys.readouterr().out
