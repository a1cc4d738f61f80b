"""Each simulated dialect's /metrics text, from a fixed scenario, byte for byte against a golden file.

The golden files under tests/data/sim/ pin every family name, label, bucket bound, HELP/TYPE line and
sample order the simulator serves. Regenerate them (after a deliberate change only) with
``.venv/bin/python tests/agents/sim/test_sim_dialects_golden.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from agents.sim import dialects
from agents.sim.config import SimConfig
from agents.sim.model import ModelConfig, QueueModel

GOLDEN = Path(__file__).resolve().parents[2] / "data" / "sim"
CREATED = 1_700_000_000.25  # the fixed wall-clock ``_created`` value
# Small KV pool so eight long requests preempt; a non-zero prefill cost so latencies differ.
MODEL = ModelConfig(
    max_num_seqs=8,
    kv_tokens=1024,
    max_model_len=512,
    decode_s=0.01,
    decode_slowdown=0.02,
    prefill_s_per_token=0.0001,
)


def _advance(model: QueueModel, t: float, until: float, dt: float = 0.005) -> float:
    while t < until:
        t += dt
        model.step(t)
    return t


def scenario(name: str) -> str:
    """The exposition after start-up, mid-load (gauges busy, preemptions) and after the load drained."""
    cfg = SimConfig(
        dialect=name,
        model="/models/sim-llama",
        served_name="sim-llama",
        host="127.0.0.1",
        port=1,
        model_config=MODEL,
    )
    sink = dialects.get(name).make_metrics(cfg, CREATED, lambda line: None)
    sink.mark_simulated(name)
    parts = [sink.render()]
    model = QueueModel(MODEL, seed=7, sink=sink)
    requests = [model.new_request(100 + 20 * i, 200 + 10 * i, 0.0, ignore_eos=i % 2 == 0) for i in range(8)]
    for req in requests:
        model.submit(req)
    sink.inc("rejected:validation")
    t = _advance(model, 0.0, 0.5)
    model.abort(requests[-1])
    t = _advance(model, t, 1.0)
    parts.append(sink.render())
    _advance(model, t, 60.0, dt=0.05)
    assert model.pending == 0
    parts.append(sink.render())
    return "\n# ---- next state ----\n".join(parts)


@pytest.mark.parametrize("name", ["vllm", "sglang", "tgi"])
def test_exposition_matches_golden(name: str) -> None:
    assert tuple(dialects.NAMES) == ("vllm", "sglang", "tgi")
    expected = (GOLDEN / f"{name}.metrics.txt").read_text()
    assert scenario(name) == expected


def test_scenario_exercises_preemption_and_every_state() -> None:
    text = scenario("vllm")
    assert text.count("# ---- next state ----") == 2
    drained = text.split("next state")[-1]
    assert 'vllm:num_preemptions_total{engine="0",model_name="sim-llama"} 0.0' not in drained
    assert (
        'vllm:request_success_total{engine="0",finished_reason="length",model_name="sim-llama"} 0.0'
        not in drained
    )


if __name__ == "__main__":
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for dialect in dialects.NAMES:
        (GOLDEN / f"{dialect}.metrics.txt").write_text(scenario(dialect))
        print(f"wrote {GOLDEN / f'{dialect}.metrics.txt'}", file=sys.stderr)
