"""The silent-failure faults' pure parts: grammar, fault clock, the model's switches, texts, ledger, vLLM gauges.

The same faults on a real simulated engine over HTTP: tests/agents/sim/test_sim_silent_faults.py.
"""

from __future__ import annotations

import pytest

from agents.sim import cli, dialects, ledger
from agents.sim import openai_api as openai
from agents.sim.config import SimConfig
from agents.sim.faults import FaultClock, FaultSpecError, parse_fault
from agents.sim.model import Gauges, ModelConfig, QueueModel

CFG = ModelConfig(
    max_num_seqs=8,
    kv_tokens=8192,
    max_model_len=1024,
    decode_s=0.01,
    decode_slowdown=0.0,
    prefill_s_per_token=0.001,
)


def run_until(model: QueueModel, t0: float, t1: float, dt: float = 0.005) -> float:
    t = t0
    while t < t1:
        t += dt
        model.step(t)
    return t


def submit(model: QueueModel, t: float, prompt: int = 10, gen: int = 50, ignore_eos: bool = True):
    req = model.new_request(prompt, gen, t, ignore_eos=ignore_eos)
    model.submit(req)
    return req


# --- grammar and clock --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "at", "params"),
    [
        ("admission-stall@10", 10.0, {"trickle": 2.0}),
        ("admission-stall@1:trickle=0.5,for=20", 1.0, {"trickle": 0.5, "for": 20.0}),
        ("gpu-wedge@3:for=5", 3.0, {"for": 5.0}),
        ("rank-diverge@2", 2.0, {}),
        ("frontend-hang", 0.0, {}),
        ("wrong-answers@7.5", 7.5, {}),
        ("drift@4", 4.0, {"factor": 3.0}),
        ("drift@4:factor=5,for=60", 4.0, {"factor": 5.0, "for": 60.0}),
        ("hang@1:for=2", 1.0, {"for": 2.0}),
    ],
)
def test_new_fault_specs_parse(spec: str, at: float, params: dict[str, float]) -> None:
    fault = parse_fault(spec)
    assert fault.at == at and dict(fault.params) == params
    assert fault.until == (at + params["for"] if "for" in params else None)


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("drift@1:factor=0", "factor must be > 0"),
        ("admission-stall@1:trickle=-1", "trickle must be > 0"),
        ("gpu-wedge@1:for=0", "for must be > 0"),
        ("gpu-wedge@1:factor=2", "unknown parameter 'factor'"),
        ("wrong-answers@x", "is not a number"),
        ("frontend-hang@-1", "T must be >= 0"),
    ],
)
def test_bad_new_fault_specs_say_why(spec: str, words: str) -> None:
    with pytest.raises(FaultSpecError, match=words):
        parse_fault(spec)


def test_fault_clock_ends_faults_with_a_duration_once() -> None:
    clock = FaultClock(
        [parse_fault("gpu-wedge@1:for=2"), parse_fault("drift@2"), parse_fault("hang@0:for=5")]
    )
    assert [f.kind for f in clock.due(0.5)] == ["hang"] and clock.ended(0.5) == []
    assert [f.kind for f in clock.due(1.0)] == ["gpu-wedge"]
    assert [f.kind for f in clock.due(2.5)] == ["drift"]
    assert [f.kind for f in clock.ended(3.0)] == ["gpu-wedge"]
    assert clock.ended(4.0) == []
    assert [f.kind for f in clock.ended(9.0)] == ["hang"]  # drift has no for=: it never ends
    assert clock.ended(99.0) == [] and clock.pending == 0


def test_rank_diverge_needs_two_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    with pytest.raises(cli.UsageError, match="'rank-diverge' needs an engine on two or more GPUs"):
        cli.parse_config(["--dialect", "vllm", "--fault", "rank-diverge@1"])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    cfg = cli.parse_config(["--dialect", "vllm", "--fault", "rank-diverge@1"])
    assert cfg.gpus == (2, 5) and cfg.faults[0].kind == "rank-diverge"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert cli.parse_config(["--dialect", "vllm"]).gpus == (0,)


# --- the model's switches -------------------------------------------------------------------------


def test_admission_stall_defers_waiting_holds_one_running_and_trickles() -> None:
    model = QueueModel(CFG)
    for _ in range(4):
        submit(model, 0.0, gen=40)
    t = run_until(model, 0.0, 0.1)
    assert model.gauges.running == 4 and model.gauges.deferred == 0
    model.admission_stalled = True
    model.stall_trickle_s = 0.5
    late = [submit(model, t, gen=40) for _ in range(3)]
    t = run_until(model, t, 1.0)  # three of the four finish; the held one only trickles
    g = model.gauges
    assert (g.running, g.waiting, g.deferred) == (1, 3, 3) and g.kv_usage < 0.05
    assert all(r.state == "waiting" for r in late)
    before = model.totals.generation_tokens
    t = run_until(model, t, 3.0)
    trickled = model.totals.generation_tokens - before
    assert 2 <= trickled <= 5  # one token per 0.5 s from the held request, nothing else
    model.admission_stalled = False
    run_until(model, t, 6.0)
    assert all(r.state == "finished" for r in late) and model.gauges.deferred == 0


def test_admission_stall_on_an_idle_engine_runs_nothing_and_emits_no_iterations() -> None:
    sink_events: list[str] = []

    class Sink:
        def observe(self, name: str, value: float) -> None:
            sink_events.append(name)

        def inc(self, name: str, amount: float = 1.0) -> None:
            sink_events.append(name)

        def iteration(self, gauges: Gauges, prefill: int, decode: int, now: float) -> None:
            pass

        def idle(self, gauges: Gauges, now: float) -> None:
            pass

    model = QueueModel(CFG, sink=Sink())
    model.admission_stalled = True
    req = submit(model, 0.0)
    run_until(model, 0.0, 1.0)
    assert req.state == "waiting" and model.gauges == Gauges(0, 1, 0, CFG.kv_tokens, 1)
    assert "iteration_tokens" not in sink_events and model.totals.generation_tokens == 0
    assert model.last_receive is None  # no output: SGLang's /health_generate would not see any


def test_wedge_freezes_an_iteration_in_flight_and_resume_has_no_burst() -> None:
    model = QueueModel(CFG)
    model.wedged = True
    t = run_until(model, 0.0, 0.5)
    assert not model.wedge_struck  # idle: the wedge waits for a kernel to launch
    req = submit(model, t, gen=500)
    t = run_until(model, t, 2.0)
    assert model.wedge_struck and model.gauges.running == 1 and req.generated == 0
    model.wedged = False
    model.resume(t)
    run_until(model, t, t + 0.1)
    assert 1 <= req.generated <= 12  # ~0.1 s of 10 ms steps, not 2 s worth of catch-up


def test_drift_multiplies_prefill_steps_only() -> None:
    def latencies(factor: float) -> tuple[float, float]:
        model = QueueModel(CFG)
        model.prefill_factor = factor
        t = run_until(model, 0.0, 0.1)  # idle: engine time follows the clock
        req = submit(model, t, prompt=100, gen=20)
        run_until(model, t, 2.0)
        assert req.state == "finished"
        ttft = (req.first_token_at or 0.0) - req.arrival
        itl = ((req.finished_at or 0.0) - (req.first_token_at or 0.0)) / (req.generated - 1)
        return ttft, itl

    (ttft1, itl1), (ttft3, itl3) = latencies(1.0), latencies(3.0)
    assert ttft3 == pytest.approx(3 * ttft1) and itl3 == pytest.approx(itl1)


def test_eos_seed_fixes_the_natural_length() -> None:
    model = QueueModel(CFG)
    lengths = {model.new_request(10, 200, 0.0, eos_seed=1234).stop_at for _ in range(5)}
    assert len(lengths) == 1
    assert len({model.new_request(10, 200, 0.0).stop_at for _ in range(40)}) > 1


# --- texts ------------------------------------------------------------------------------------------


def test_temperature_zero_seeds_text_from_the_prompt() -> None:
    def parse(body: dict, chat: bool = False) -> openai.CompletionRequest:
        return openai.parse_completion(openai.json.dumps(body).encode(), chat, "m", 1024)

    a = parse({"prompt": "what is two plus two", "temperature": 0})
    assert (
        a.text_seed is not None
        and a.text_seed == parse({"prompt": "what is two plus two", "temperature": 0.0}).text_seed
    )
    assert parse({"prompt": "what is three plus three", "temperature": 0}).text_seed != a.text_seed
    assert parse({"prompt": "what is two plus two"}).text_seed is None  # default temperature samples
    assert parse({"prompt": "what is two plus two", "temperature": 0.7}).text_seed is None
    chat = parse({"messages": [{"role": "user", "content": "hi"}], "temperature": 0}, chat=True)
    assert (
        chat.text_seed is not None and chat.text_seed != parse({"prompt": "hi", "temperature": 0}).text_seed
    )
    for bad in (-1, "0", True, None.__class__):
        with pytest.raises(openai.BadRequest, match="temperature"):
            parse({"prompt": "x", "temperature": bad if bad is not None.__class__ else [0]})


def test_wrong_seeds_never_repeat_the_right_answer_or_the_previous_one() -> None:
    for seed in (0, 5, 2**32 - 1, 123456789):
        right = openai.text_of(seed, 0, 6)
        answers = [openai.text_of(openai.wrong_seed(seed, n), 0, 6) for n in range(60)]
        assert all(a != right and a.split()[0] != right.split()[0] for a in answers)
        assert all(x != y for x, y in zip(answers, answers[1:], strict=False))


# --- ledger and vLLM gauges ---------------------------------------------------------------------------


def test_ledger_record_carries_utilization_only_when_given() -> None:
    plain = ledger.record(9, [0, 1], 5, "engine", "vllm", "m")
    assert "util_pct" not in plain and "util_pct_by_gpu" not in plain
    busy = ledger.record(9, [0, 1], 5, "engine", "vllm", "m", 100.0, {0: 100.0, 1: 0.0})
    assert busy["util_pct"] == 100.0 and busy["util_pct_by_gpu"] == {"0": 100.0, "1": 0.0}


def test_vllm_waiting_by_reason_splits_capacity_and_deferred() -> None:
    cfg = SimConfig(dialect="vllm", model="m", served_name="m", host="127.0.0.1", port=1)
    dialect = dialects.get("vllm")
    sink = dialect.make_metrics(cfg, 0.0, lambda line: None)
    sink.set_gauges(Gauges(running=1, waiting=7, kv_used=10, kv_capacity=100, deferred=5))
    text = sink.render()
    assert 'vllm:num_requests_waiting{engine="0",model_name="m"} 7.0' in text
    assert 'vllm:num_requests_waiting_by_reason{engine="0",model_name="m",reason="capacity"} 2.0' in text
    assert 'vllm:num_requests_waiting_by_reason{engine="0",model_name="m",reason="deferred"} 5.0' in text
    line = dialect.stats_line(0.0, 0.5, Gauges(1, 7, 10, 100, 7), 0, 0.0)
    assert (
        line is not None and "Running: 1 reqs, Waiting: 7 reqs, Deferred: 7 reqs, GPU KV cache usage" in line
    )
    assert "Deferred" not in (dialect.stats_line(0.0, 0.5, Gauges(1, 7, 10, 100), 0, 0.0) or "")
