"""Live engines priced from measured throughput: $/hour × GPUs ÷ tokens/hour, against each API; missing,
idle, unknown-GPU and simulated engines each look different."""

from __future__ import annotations

import pytest

from console.calc.catalog import builtin, catalog
from console.calc.live import LiveEngine, live_cost
from console.calc.present import live_parts

CAT = builtin()


def engine(**kw) -> LiveEngine:  # noqa: ANN003
    base = {
        "host": "gpu01",
        "engine": "llama70b",
        "model": "llama-3.3-70b",
        "gpu_count": 2,
        "gpu_name": "NVIDIA H100 80GB HBM3",
        "tokens_per_s": 1000.0,
        "simulated": False,
    }
    return LiveEngine(**{**base, **kw})


def test_cost_per_million_from_measured_throughput() -> None:
    opus, together = CAT.api("claude-opus-4.5"), CAT.api("together-llama-3.3-70b")
    c = live_cost(engine(), CAT, [opus, together], 0.7)
    hourly = CAT.gpu("h100-80gb").default_hourly
    assert c.gpu is not None and c.gpu.slug == "h100-80gb"
    assert c.tokens_per_day == 1000.0 * 86_400
    assert c.cost_per_day == pytest.approx(hourly * 2 * 24)
    assert c.cost_per_mtok == pytest.approx(hourly * 2 / 3.6)  # $/h ÷ 3.6M tokens per hour × 1M
    ratios = {x.api.slug: x.ratio for x in c.comparisons}
    assert ratios["claude-opus-4.5"] == pytest.approx(c.cost_per_mtok / 11.0)
    assert ratios["together-llama-3.3-70b"] == pytest.approx(c.cost_per_mtok / 0.88)
    assert c.note is None


def test_config_override_prices_the_gpu() -> None:
    cat = catalog(gpu_hourly={"h100-80gb": 1.0})
    assert live_cost(engine(), cat).cost_per_mtok == pytest.approx(2 / 3.6)


def test_missing_idle_unknown() -> None:
    missing = live_cost(engine(tokens_per_s=None), CAT)
    assert (
        missing.cost_per_mtok is None
        and missing.tokens_per_day is None
        and missing.note == "throughput not reported"
    )
    idle = live_cost(engine(tokens_per_s=0.0), CAT)
    assert idle.cost_per_mtok is None and idle.tokens_per_day == 0 and idle.cost_per_day is not None
    assert "idle" in (idle.note or "")
    unknown = live_cost(engine(gpu_name="Voodoo 5 6000"), CAT)
    assert (
        unknown.gpu is None and unknown.cost_per_mtok is None and "not in the catalog" in (unknown.note or "")
    )
    nogpu = live_cost(engine(gpu_count=0), CAT)
    assert nogpu.cost_per_mtok is None and nogpu.note == "no GPUs attributed to this engine"


def test_parts_label_simulated_and_missing_differently() -> None:
    parts = live_parts(
        [
            engine(),
            engine(engine="sim", simulated=True, tokens_per_s=None),
            engine(engine="idle", tokens_per_s=0.0),
        ],
        CAT,
        ["claude-opus-4.5"],
        0.7,
    )
    assert (" SIMULATED", "simulated") in parts
    text = "".join(t for t, _ in parts)
    lines = text.splitlines()
    assert lines[0].startswith("gpu01/llama70b ") and "/1M" in lines[0] and "claude-opus-4.5" in lines[0]
    assert "— tok/s" in lines[1] and "throughput not reported" in lines[1]
    assert "idle" in lines[2]
    tones = dict(parts)
    assert tones["— tok/s"] == "missing"
    assert live_parts([], CAT, [], 0.7)[0][1] == "missing"
