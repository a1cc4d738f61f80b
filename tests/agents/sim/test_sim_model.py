"""Unit tests of the simulated engine's pure parts: queueing model, faults, exposition, CLI parsing."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from agents.sim import cli, dialects, ledger
from agents.sim import openai_api as openai
from agents.sim.config import SimConfig
from agents.sim.exposition import Registry
from agents.sim.faults import FaultClock, FaultSpecError, parse_fault, parse_faults
from agents.sim.model import Gauges, ModelConfig, PoissonLoad, QueueModel


class RecordingSink:
    """Records every event the model emits."""

    def __init__(self) -> None:
        self.events: list[tuple] = []
        self.counters: dict[str, float] = {}
        self.observed: dict[str, list[float]] = {}

    def observe(self, name: str, value: float) -> None:
        self.events.append(("observe", name, round(value, 9)))
        self.observed.setdefault(name, []).append(value)

    def inc(self, name: str, amount: float = 1.0) -> None:
        self.events.append(("inc", name, amount))
        self.counters[name] = self.counters.get(name, 0.0) + amount

    def iteration(self, gauges: Gauges, prefill_tokens: int, decode_tokens: int, now: float) -> None:
        self.events.append(("iteration", gauges, prefill_tokens, decode_tokens, round(now, 9)))

    def idle(self, gauges: Gauges, now: float) -> None:
        self.events.append(("idle", gauges, round(now, 9)))


def run_until(model: QueueModel, t0: float, t1: float, dt: float = 0.005) -> float:
    t = t0
    while t < t1:
        t += dt
        model.step(t)
    return t


CFG = ModelConfig(
    max_num_seqs=4,
    kv_tokens=4096,
    max_model_len=1024,
    decode_s=0.01,
    decode_slowdown=0.0,
    prefill_s_per_token=0.0,
)


# --- the queueing model ------------------------------------------------------------------------


def test_fifo_admission_with_one_slot() -> None:
    model = QueueModel(
        ModelConfig(
            max_num_seqs=1,
            kv_tokens=4096,
            max_model_len=1024,
            decode_s=0.01,
            decode_slowdown=0.0,
            prefill_s_per_token=0.0,
        )
    )
    reqs = [model.new_request(10, 3, 0.0, ignore_eos=True, request_id=name) for name in "abc"]
    for req in reqs:
        model.submit(req)
    model.step(0.0)
    assert model.gauges.running == 1 and model.gauges.waiting == 2
    run_until(model, 0.0, 0.2)
    assert all(r.done and r.finish_reason == "length" and r.generated == 3 for r in reqs)
    firsts = [r.first_token_at for r in reqs]
    assert firsts == sorted(firsts) and len(set(firsts)) == 3
    # a request starts only after the previous one finished (one slot)
    assert reqs[1].first_scheduled >= reqs[0].finished_at
    assert reqs[2].first_scheduled >= reqs[1].finished_at


def test_ttft_queue_time_and_itl_are_recorded_at_the_right_moments() -> None:
    sink = RecordingSink()
    cfg = ModelConfig(
        max_num_seqs=2,
        kv_tokens=4096,
        max_model_len=1024,
        decode_s=0.01,
        decode_slowdown=0.0,
        prefill_s_per_token=0.001,
    )
    model = QueueModel(cfg, sink=sink)
    model.step(0.0)
    req = model.new_request(100, 4, 0.0, ignore_eos=True)
    model.submit(req)
    run_until(model, 0.0, 1.0)
    # first iteration: decode 0.01 + prefill 100 * 0.001 = 0.11 s
    assert sink.observed["queue_time"] == [pytest.approx(0.0)]
    assert sink.observed["ttft"] == [pytest.approx(0.11)]
    assert sink.observed["itl"] == [pytest.approx(0.01)] * 3
    assert sink.observed["e2e"] == [pytest.approx(0.14)]
    assert sink.counters["prompt_tokens"] == 100 and sink.counters["generation_tokens"] == 4
    assert sink.counters["finished:length"] == 1
    assert req.first_token_at == pytest.approx(0.11)


def test_natural_stop_versus_length() -> None:
    model = QueueModel(CFG, seed=3)
    stopping = model.new_request(5, 1000, 0.0)  # no ignore_eos: stops at its drawn EOS length
    capped = model.new_request(5, 4, 0.0)  # max_tokens below any drawn EOS length (>= 8)
    for r in (stopping, capped):
        model.submit(r)
    run_until(model, 0.0, 5.0)
    assert stopping.finish_reason == "stop" and stopping.generated == stopping.stop_at
    assert capped.finish_reason == "length" and capped.generated == 4
    assert model.totals.finished == {"stop": 1, "length": 1}


def test_preemption_when_kv_is_full_recomputes_the_newest() -> None:
    sink = RecordingSink()
    cfg = ModelConfig(
        max_num_seqs=4,
        kv_tokens=260,
        max_model_len=200,
        decode_s=0.01,
        decode_slowdown=0.0,
        prefill_s_per_token=0.0,
    )
    model = QueueModel(cfg, sink=sink)
    old = model.new_request(100, 80, 0.0, ignore_eos=True, request_id="old")
    new = model.new_request(100, 80, 0.0, ignore_eos=True, request_id="new")
    model.submit(old)
    model.submit(new)
    model.step(0.0)
    assert model.gauges.running == 2 and model.gauges.kv_used == 200
    t = 0.0
    while not new.num_preemptions and t < 2.0:
        t += 0.01
        model.step(t)
    assert new.num_preemptions >= 1 and old.num_preemptions == 0  # the most recently admitted goes
    assert model.totals.preemptions >= 1 and sink.counters["preemptions"] == model.totals.preemptions
    assert model.gauges.waiting == 1 and model.gauges.running == 1
    run_until(model, t, 10.0, dt=0.01)
    assert old.done and new.done and new.generated == 80  # the recomputed request keeps its tokens
    assert old.finished_at < new.finished_at


def test_kv_never_exceeds_capacity_and_counters_are_monotonic() -> None:
    cfg = ModelConfig(
        max_num_seqs=16, kv_tokens=2048, max_model_len=1024, decode_s=0.01, prefill_s_per_token=0.00001
    )
    model = QueueModel(cfg, seed=11)
    load = PoissonLoad(60.0, model.rng, cfg.max_model_len)
    prev = (0, 0, 0, 0)
    t = 0.0
    seen_waiting = False
    for _ in range(600):
        t += 0.025
        for at, prompt, gen in load.arrivals(t):
            model.submit(model.new_request(prompt, gen, at, source="load"))
        model.step(t)
        g = model.gauges
        assert 0 <= g.kv_used <= g.kv_capacity
        assert g.running <= cfg.max_num_seqs
        seen_waiting |= g.waiting > 0
        tot = model.totals
        now = (tot.prompt_tokens, tot.generation_tokens, tot.preemptions, sum(tot.finished.values()))
        assert all(a >= b for a, b in zip(now, prev, strict=True))
        prev = now
    assert seen_waiting and model.totals.preemptions > 0 and sum(model.totals.finished.values()) > 10


def test_same_seed_same_history() -> None:
    def history(seed: int) -> list[tuple]:
        sink = RecordingSink()
        model = QueueModel(
            ModelConfig(max_num_seqs=8, kv_tokens=3000, max_model_len=1024), seed=seed, sink=sink
        )
        load = PoissonLoad(30.0, model.rng, 1024)
        t = 0.0
        for _ in range(200):
            t += 0.025
            for at, prompt, gen in load.arrivals(t):
                model.submit(model.new_request(prompt, gen, at, source="load", request_id=f"r{at}"))
            model.step(t)
        return sink.events

    assert history(5) == history(5)
    assert history(5) != history(6)


def test_a_model_that_is_not_stepped_keeps_frozen_gauges() -> None:
    model = QueueModel(CFG)
    for i in range(3):
        model.submit(model.new_request(50, 100, 0.0, ignore_eos=True, request_id=str(i)))
    model.step(0.0)
    frozen = model.gauges
    model.submit(model.new_request(50, 100, 0.01, ignore_eos=True))  # arrives while "hung"
    assert model.gauges == frozen and frozen.running == 3
    model.step(0.05)
    assert model.gauges.running == 4


def test_abort_frees_kv_and_idle_resets_gauges() -> None:
    sink = RecordingSink()
    model = QueueModel(CFG, sink=sink)
    req = model.new_request(100, 500, 0.0, ignore_eos=True)
    model.submit(req)
    model.step(0.0)
    assert model.gauges.kv_used == 100
    model.abort(req)
    model.step(0.05)
    assert req.state == "aborted" and model.gauges == Gauges(0, 0, 0, CFG.kv_tokens)
    assert sink.counters["aborted"] == 1 and any(e[0] == "idle" for e in sink.events)


def test_slow_factor_stretches_iterations() -> None:
    fast, slow = QueueModel(CFG), QueueModel(CFG)
    slow.slow = 4.0
    done = []
    for m in (fast, slow):
        m.step(0.0)
        req = m.new_request(10, 10, 0.0, ignore_eos=True)
        m.submit(req)
        run_until(m, 0.0, 1.0, dt=0.001)
        done.append(req.finished_at)
    assert done[0] == pytest.approx(0.1) and done[1] == pytest.approx(0.4)


def test_request_validation() -> None:
    model = QueueModel(CFG)
    with pytest.raises(ValueError):
        model.new_request(0, 5, 0.0)
    with pytest.raises(ValueError):
        model.new_request(1000, 100, 0.0)
    with pytest.raises(ValueError):
        ModelConfig(kv_tokens=100, max_model_len=200)


def test_poisson_load_rate_and_determinism() -> None:
    a = PoissonLoad(20.0, random.Random(1), 1024)
    b = PoissonLoad(20.0, random.Random(1), 1024)
    arrivals_a = [x for t in range(1, 101) for x in a.arrivals(t * 0.1)]
    arrivals_b = [x for t in range(1, 101) for x in b.arrivals(t * 0.1)]
    assert arrivals_a == arrivals_b
    assert 120 < len(arrivals_a) < 280  # about 200 in 10 s
    assert all(p + g <= 1024 and p >= 1 and g >= 1 for _, p, g in arrivals_a)
    assert [t for t, _, _ in arrivals_a] == sorted(t for t, _, _ in arrivals_a)
    assert list(PoissonLoad(0.0, random.Random(1), 1024).arrivals(100.0)) == []


# --- faults ------------------------------------------------------------------------------------


def test_parse_faults() -> None:
    assert parse_fault("hang@3").at == 3.0
    crash = parse_fault("crash@1.5:code=0")
    assert crash.kind == "crash" and crash.at == 1.5 and crash.param("code") == 0
    assert parse_fault("crash").param("code") == 1 and parse_fault("crash").at == 0.0
    assert parse_fault("slow@2:factor=3").param("factor") == 3.0
    assert parse_fault("start-fail").at is None and parse_fault("start-fail:code=4").param("code") == 4
    assert parse_fault("startup-delay:s=2").param("s") == 2.0
    assert parse_fault("metrics-huge@1").param("mb") == 50.0
    assert parse_fault("metrics-slow@0:bps=5").param("bps") == 5.0


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "explode",
        "hang@soon",
        "hang@-1",
        "crash@1:code=300",
        "crash@1:signal=9",
        "slow@1:factor=0",
        "start-fail@3",
        "startup-delay@1:s=2",
        "crash@1:code",
        "metrics-huge@1:mb=nan",
        "slow@1:factor=x",
    ],
)
def test_bad_fault_specs(spec: str) -> None:
    with pytest.raises(FaultSpecError) as info:
        parse_fault(spec)
    assert "\n" not in str(info.value)


def test_fault_clock_releases_each_fault_once() -> None:
    clock = FaultClock(parse_faults(["slow@2:factor=2", "hang@1", "start-fail"]))
    assert clock.due(0.5) == []
    assert [f.kind for f in clock.due(1.0)] == ["hang"]
    assert clock.due(1.5) == []
    assert [f.kind for f in clock.due(10)] == ["slow"]
    assert clock.pending == 0
    with pytest.raises(FaultSpecError):
        parse_faults(["start-fail", "start-fail:code=2"])


# --- exposition --------------------------------------------------------------------------------


def test_python_style_renders_like_prometheus_client() -> None:
    reg = Registry("python", created=1.5e9)
    c = reg.add("x:req", "counter", "Requests.")
    c.declare({"model_name": "m", "engine": "0"}, 1.5e9)
    c.inc({"engine": "0", "model_name": "m"}, 3)
    h = reg.add("x:lat_seconds", "histogram", "Latency.", [0.1, 1.0])
    for v in (0.05, 0.5, 5.0):
        h.observe({"model_name": "m"}, v)
    text = reg.render()
    assert 'x:req_total{engine="0",model_name="m"} 3.0' in text
    assert 'x:req_created{engine="0",model_name="m"} 1.5e+09' in text
    assert 'x:lat_seconds_bucket{le="0.1",model_name="m"} 1.0' in text
    assert 'x:lat_seconds_bucket{le="+Inf",model_name="m"} 3.0' in text
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    assert fams["x:req"].type == "counter" and fams["x:lat_seconds"].type == "histogram"


def test_rust_style_counters_have_no_total_suffix() -> None:
    reg = Registry("rust")
    reg.add("tgi_request_success", "counter", "Successes").inc({}, 2)
    reg.add("tgi_untouched", "counter", "never used")
    reg.add("tgi_batch_max_total_tokens", "gauge", None).set({}, 100)
    text = reg.render()
    assert "# TYPE tgi_request_success counter\ntgi_request_success 2\n" in text
    assert "tgi_untouched" not in text  # Rust metrics appear once touched
    assert "# HELP tgi_batch_max_total_tokens" not in text and "tgi_batch_max_total_tokens 100" in text
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    assert fams["tgi_request_success"].type == "counter"


def test_bucket_helpers() -> None:
    assert dialects.buckets_1_2_5(500) == [1, 2, 5, 10, 20, 50, 100, 200, 500]
    tgi = dialects.tgi_duration_buckets()
    assert len(tgi) == 35 and tgi[0] == pytest.approx(0.00015)
    assert all(b / a == pytest.approx(1.5) for a, b in zip(tgi, tgi[1:], strict=False))
    assert tgi[-1] == pytest.approx(0.00015 * 1.5**34)


# --- openai request parsing --------------------------------------------------------------------


def test_parse_completion_requests() -> None:
    req = openai.parse_completion(b'{"prompt": "one two three", "max_tokens": 5}', False, "m", 100)
    assert req.prompt_tokens == 4 and req.max_tokens == 5 and not req.stream  # ceil(13/4) = 4 > 3 words
    assert openai.parse_completion(b'{"prompt": [1,2,3]}', False, "m", 100).max_tokens == 97
    chat = openai.parse_completion(
        b'{"messages": [{"role": "user", "content": "hi"}], "stream": true}', True, "m", 100
    )
    assert chat.chat and chat.stream and chat.prompt_tokens == 3 + 4 + 1
    for body, status in (
        (b"not json", 400),
        (b"[]", 400),
        (b'{"prompt": ""}', 400),
        (b'{"prompt": 5}', 400),
        (b'{"prompt": "x", "max_tokens": 0}', 400),
        (b'{"prompt": "x", "n": 2}', 400),
        (b'{"prompt": "x", "max_tokens": 1000}', 400),
        (b'{"prompt": "x", "model": "y"}', 404),
        (b'{"prompt": "x", "stream": "yes"}', 400),
    ):
        with pytest.raises(openai.BadRequest) as info:
            openai.parse_completion(body, False, "m", 100)
        assert info.value.status == status
    assert openai.text_of(7, 0, 3) == openai.text_of(7, 0, 3) and len(openai.text_of(7, 0, 3).split()) == 3


# --- CLI parsing (no process) ------------------------------------------------------------------


def test_vllm_flags_and_unknown_flags() -> None:
    cfg = cli.parse_config(
        [
            "--dialect",
            "vllm",
            "/models/llama",
            "--port",
            "8001",
            "--max-model-len",
            "2048",
            "--tensor-parallel-size",
            "2",
            "--enforce-eager",
            "--served-model-name",
            "llama",
            "--gpu-memory-utilization=0.9",
        ]
    )
    assert (cfg.model, cfg.served_name, cfg.port, cfg.host) == ("/models/llama", "llama", 8001, "127.0.0.1")
    assert cfg.model_config.max_model_len == 2048
    assert cfg.ignored == ("--tensor-parallel-size", "2", "--enforce-eager", "--gpu-memory-utilization=0.9")
    legacy = cli.parse_config(["--dialect", "vllm", "--model", "/m", "--host", "0.0.0.0"])
    assert legacy.model == legacy.served_name == "/m" and legacy.port == 8000 and legacy.host == "0.0.0.0"


def test_sglang_and_tgi_flags() -> None:
    sg = cli.parse_config(
        [
            "--dialect",
            "sglang",
            "--model-path",
            "/m",
            "--enable-metrics",
            "--max-running-requests",
            "7",
            "--tp",
            "2",
        ]
    )
    assert sg.model == "/m" and sg.metrics_enabled and sg.port == 30000 and sg.model_config.max_num_seqs == 7
    assert sg.ignored == ("--tp", "2")
    assert not cli.parse_config(["--dialect", "sglang", "--model-path", "/m"]).metrics_enabled
    tgi = cli.parse_config(
        [
            "--dialect",
            "tgi",
            "--model-id",
            "org/m",
            "--hostname",
            "127.0.0.2",
            "--prometheus-port",
            "9100",
            "--max-total-tokens",
            "3000",
            "--num-shard",
            "2",
        ]
    )
    assert (tgi.model, tgi.host, tgi.port, tgi.metrics_port) == ("org/m", "127.0.0.2", 3000, 9100)
    assert tgi.model_config.max_model_len == 3000 and tgi.ignored == ("--num-shard", "2")
    assert cli.parse_config(["--dialect", "tgi"]).metrics_port == 9000


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--dialect", "llama"],
        ["--dialect", "vllm", "--port", "abc"],
        ["--dialect", "vllm", "--port", "70000"],
        ["--dialect", "vllm", "--fault", "boom"],
        ["--dialect", "vllm", "--load", "-1"],
        ["--dialect", "sglang", "positional"],
        ["--dialect", "vllm", "a", "--model", "b"],
        ["--dialect", "vllm", "--kv-tokens", "100", "--max-model-len", "200"],
        ["--dialect", "vllm", "--seed"],
    ],
)
def test_bad_command_lines(argv: list[str]) -> None:
    with pytest.raises(cli.UsageError) as info:
        cli.parse_config(argv)
    assert "\n" not in str(info.value)


def test_dialect_metrics_render_and_parse() -> None:
    for name in dialects.NAMES:
        d = dialects.get(name)
        cfg = SimConfig(dialect=name, model="m", served_name="m", host="127.0.0.1", port=1)
        sink = d.make_metrics(cfg, 1.7e9, lambda line: None)
        sink.mark_simulated(name)
        model = QueueModel(ModelConfig(kv_tokens=4096, max_model_len=1024), sink=sink)
        model.submit(model.new_request(20, 5, 0.0, ignore_eos=True))
        run_until(model, 0.0, 1.0)
        fams = {f.name: f for f in text_string_to_metric_families(sink.render())}
        assert fams["llmconsole_simulated"].samples[0].labels == {"dialect": name}
        assert fams["llmconsole_simulated"].samples[0].value == 1.0


def test_ledger_helpers(tmp_path) -> None:
    assert ledger.gpus_from_env({}) == [0]
    assert ledger.gpus_from_env({"CUDA_VISIBLE_DEVICES": "2, 3,GPU-abc"}) == [2, 3]
    assert ledger.gpus_from_env({"CUDA_VISIBLE_DEVICES": ""}) == []
    engine, worker = ledger.split_memory(18, True)
    assert engine + worker == 18 * ledger.GIB and worker == 8 * engine
    assert ledger.split_memory(18, False) == (18 * ledger.GIB, 0)
    path = ledger.write(tmp_path, ledger.record(42, [0], 5, "engine", "vllm", "m"))
    (tmp_path / "junk.json").write_text("{")
    assert ledger.read_all(tmp_path) == [
        {"pid": 42, "gpus": [0], "mem_bytes": 5, "role": "engine", "dialect": "vllm", "model": "m"}
    ]
    ledger.remove(path)
    assert ledger.read_all(tmp_path) == []


def test_add_parser_hands_the_whole_tail_to_run() -> None:
    import argparse

    top = argparse.ArgumentParser(prog="llmconsole")
    sub = top.add_subparsers(dest="cmd")
    cli.add_parser(sub)
    args = top.parse_args(["sim-engine", "--dialect", "vllm", "/m", "--tensor-parallel-size", "2", "-h"])
    assert args.sim_argv == ["--dialect", "vllm", "/m", "--tensor-parallel-size", "2", "-h"]
    assert args.func is cli.run


def test_main_reports_bad_arguments_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--dialect", "vllm", "--fault", "crash@1:code=x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("llmconsole sim-engine: error: argument --fault:")


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
        lambda kids: (
            st.lists(kids, max_size=4)
            | st.dictionaries(
                st.sampled_from(
                    [
                        "prompt",
                        "messages",
                        "max_tokens",
                        "n",
                        "stream",
                        "model",
                        "ignore_eos",
                        "stream_options",
                        "role",
                        "content",
                        "max_completion_tokens",
                    ]
                ),
                kids,
                max_size=5,
            )
        ),
        max_leaves=12,
    ),
    st.booleans(),
)
def test_any_json_body_is_accepted_or_a_4xx(body, chat: bool) -> None:
    raw = json.dumps(body).encode()
    try:
        req = openai.parse_completion(raw, chat, "m", 256)
    except openai.BadRequest as exc:
        assert 400 <= exc.status < 500 and exc.message
    else:
        assert req.prompt_tokens >= 1 and req.max_tokens >= 1 and req.prompt_tokens + req.max_tokens <= 256
