"""The screen's view data, computed without Textual: field parsing, bars, chart, break-even lines, and the seed
preset's explanation built from the same functions (its numbers are checked against the research)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from console.calc.catalog import builtin
from console.calc.errors import CalcError
from console.calc.live import LiveEngine
from console.calc.present import Form, compute, parse
from console.calc.presets import engine_form, example_explanation, example_form, int4_form
from console.calc.units import GB, GiB

CAT = builtin()
HF_GPT_OSS = str(__import__("pathlib").Path(__file__).resolve().parents[1] / "data" / "hf" / "gpt-oss-120b")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"gpus": "abc"}, "GPUs: expected a number, got 'abc'"),
        ({"gpus": "1.5"}, "GPUs: expected a whole number, got '1.5'"),
        ({"gpus": "0"}, "GPUs: must be greater than 0"),
        ({"seq_len": "long"}, "sequence length: expected a number, got 'long'"),
        ({"gpu_memory_utilization": "1.2"}, "vLLM memory utilization: must be between 0 and 1"),
        ({"gpu_hourly": "-3"}, "GPU $/hour: must be greater than 0"),
        ({"input_share": "nan"}, "input share: must be"),
        ({"tokens_per_day": "lots"}, "tokens/day: expected a number"),
        ({"model": "llama-99"}, "unknown model 'llama-99'"),
        ({"model_path": "/no/such/config.json"}, "no such file"),
    ],
)
def test_parse_errors_name_the_field(change: dict, message: str) -> None:
    with pytest.raises(CalcError) as e:
        compute(replace(Form(), **change), CAT)
    assert message in str(e.value)


def test_parse_accepts_suffixes_and_defaults() -> None:
    inp = parse(replace(Form(), tokens_per_day="20M", gpu_hourly=""), CAT)
    assert inp.tokens_per_day == 20e6
    assert inp.hourly == CAT.gpu("a100-80gb").default_hourly
    assert parse(replace(Form(), tokens_per_day="1,500k"), CAT).tokens_per_day == 1.5e6
    assert parse(Form(quant="native"), CAT).vram.quant is None
    assert parse(replace(Form(), model_path=HF_GPT_OSS), CAT).model.slug == "gpt-oss-120b"


def test_bars_add_up_to_the_memory() -> None:
    view = compute(replace(Form(), quant="int4", gpus="2"), CAT)
    r = view.results["vllm"]
    assert len(view.bars) == 2 and {b.label for b in view.bars} == {"GPU 0", "GPU 1"}
    bar = view.bars[0]
    parts = {label: v for label, v, _ in bar.segments}
    assert bar.unit == "GiB" and bar.total == pytest.approx(r.memory_per_gpu / GiB)
    assert sum(parts.values()) == pytest.approx(r.memory_per_gpu / GiB)  # fits: the parts are the memory
    assert parts["reserve"] == pytest.approx(r.reserved_per_gpu / GiB)
    flat = compute(replace(Form(), quant="int4", overhead="flat"), CAT)
    assert flat.bars[0].unit == "GB" and "reserve" not in {label for label, _, _ in flat.bars[0].segments}
    assert sum(v for _, v, _ in flat.bars[0].segments) == pytest.approx(80.0)


def test_one_verdict_in_the_bar_the_table_and_the_text() -> None:
    """The verdict's "to spare" is the bar's "KV spare" part and the table's "KV spare" row; the table's
    rows are the bar's parts (no "overheads + reserve" on one side and "overhead" on the other)."""
    form = replace(Form(), quant="int4")
    view = compute(form, CAT)
    r = view.results["vllm"]
    parts = {label: v for label, v, _ in view.bars[0].segments}
    verdict = "".join(t for t, _ in view.verdict)
    assert f"FITS: {parts['KV spare']:,.2f} GiB per GPU of KV cache to spare" in verdict
    assert f"({r.max_concurrent_seqs:,} such sequences" in verdict
    rows = {row[0]: row[1] for row in view.modes[1:]}
    assert rows["KV spare per GPU"] == f"{parts['KV spare']:,.2f} GiB"
    assert rows["overheads per GPU"] == f"{parts['overheads']:,.2f} GiB"
    assert rows["reserve (1 − util) per GPU"] == f"{parts['reserve']:,.2f} GiB"
    assert rows["weights per GPU"] == f"{parts['weights']:,.2f} GiB"
    assert rows[f"KV one {r.seq_len:,}-token seq"] == f"{parts['KV one seq']:,.2f} GiB"
    assert rows["verdict"].startswith("FITS (+" + f"{parts['KV spare']:,.2f} GiB")
    assert "reserve" in "".join(t for t, _ in view.bar_note)


def test_sequence_beyond_the_context_is_its_own_verdict() -> None:
    view = compute(replace(Form(), model="qwen3-32b", gpu="h200", seq_len="100000"), CAT)
    text = "".join(t for t, _ in view.verdict)
    assert "LONGER THAN THE MODEL'S CONTEXT: 100,000 > 40,960 tokens" in text and "FITS" not in text
    assert view.verdict[1][1] == "crit"
    assert parse(replace(Form(), model="qwen3-32b"), CAT).vram.seq_len == 8192  # empty field: the default


def test_legend_entries_are_never_alike() -> None:
    from console.calc.present import legend_labels

    names = ["Llama 3.3 70B Instruct on Together AI", "Llama 3.3 70B Instruct on Fireworks AI", "GPT-5"]
    labels = legend_labels(names)
    assert len(set(labels)) == 3 and labels[2] == "GPT-5" and all(len(x) <= 28 for x in labels)
    assert "Together" in labels[0] and "Fireworks" in labels[1]
    assert len(set(legend_labels(["same name that is long enough to cut"] * 2))) == 2


def test_many_gpus_are_summarised() -> None:
    view = compute(replace(Form(), model="llama-3.1-405b", gpu="h100-80gb", gpus="16", quant="fp8"), CAT)
    assert len(view.bars) == 9 and view.bars[-1].label == "+8 more"


def test_does_not_fit_bars_exceed_the_memory() -> None:
    view = compute(example_form(), CAT)
    bar = view.bars[0]
    assert sum(v for _, v, _ in bar.segments) > bar.total
    assert view.verdict[1][1] == "crit" and "DOES NOT FIT: short by" in view.verdict[1][0]
    r = view.results["flat"]
    over = sum(v for _, v, _ in bar.segments) - bar.total
    assert over == pytest.approx(-r.margin_per_gpu / GB)  # over the memory by exactly the shortfall


def test_chart_marks_crossings_and_capacity() -> None:
    view = compute(replace(int4_form(), apis=("claude-opus-4.5", "deepinfra-llama-3.3-70b")), CAT)
    chart = view.chart
    assert chart is not None and chart.capacity is not None
    names = [name for name, _, _ in chart.crossings]
    assert names == [
        "Claude Opus 4.5 / 4.6 / 4.7 / 4.8"
    ]  # DeepInfra's break-even is beyond capacity: no crossing
    _, x, y = chart.crossings[0]
    assert x == pytest.approx(60 / (11 / 1e6)) and y == pytest.approx(1825.0)
    assert chart.self_host[0] == (0.0, pytest.approx(1825.0))
    assert chart.y_max == pytest.approx(2 * max(y for _, y in chart.self_host))
    text = "".join(t for t, _ in view.costs)
    assert "UNREACHABLE" in text and "reachable" in text


def test_chart_without_self_hosting() -> None:
    chart = compute(example_form(), CAT).chart
    assert chart is not None and chart.self_host == () and chart.capacity is None and chart.crossings == ()
    assert "does not fit" in chart.note
    assert chart.unservable_cost == pytest.approx(1825.0)  # the GPUs' cost, drawn for reference
    assert chart.y_max == pytest.approx(2 * 1825.0)
    assert chart.x_max == pytest.approx(1.5 * 60 / (11 / 1e6))  # 1.5 x the nearest break-even


def test_volume_priced_both_ways() -> None:
    view = compute(replace(int4_form(), tokens_per_day="10M", apis=("claude-opus-4.5",)), CAT)
    text = "".join(t for t, _ in view.costs)
    assert "at 10.00M/day: API $3,345.83/month vs self-host $1,825.00/month" in text


def test_no_api_chosen() -> None:
    view = compute(replace(Form(), apis=()), CAT)
    assert view.costs[-1] == ("Pick at least one API to compare against.", "missing")


def test_seed_explanation_reproduces_the_research() -> None:
    text = "".join(t for t, _ in example_explanation(CAT))
    for fragment in (
        "141.1 GB of weights",
        "148.1 GB",
        "it does not fit",
        "5.45M tokens/day",
        "68.18M",
        "INT4 (39.8 GB",
        "$60.00/day",
    ):
        assert fragment in text, fragment


def test_int4_preset_fits_with_research_concurrency() -> None:
    view = compute(replace(int4_form(), overhead="vllm"), CAT)
    r = view.results["vllm"]
    assert r.fits and r.max_concurrent_seqs in (12, 13)
    assert r.weights_bytes / GB == pytest.approx(39.8, abs=0.05)


def test_engine_form_uses_the_running_engines_numbers() -> None:
    e = LiveEngine(
        "gpu01", "llama70b", "/models/Llama-3.3-70B-Instruct-AWQ", 2, "NVIDIA H100 80GB HBM3", 1000.0, False
    )
    form, notes = engine_form(Form(model="qwen3-32b", gpu="l4"), e, CAT)
    assert (form.model, form.quant, form.gpu, form.gpus) == ("llama-3.3-70b", "int4", "h100-80gb", "2")
    assert form.tokens_per_day == "86400000" and notes == ()
    fp8 = LiveEngine("h", "e", "RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic", 4, "NVIDIA H200", None, True)
    form, notes = engine_form(Form(), fp8, CAT)
    assert (form.quant, form.gpu, form.gpus, form.tokens_per_day) == ("fp8", "h200", "4", "")
    assert [tone for _, tone in notes] == ["missing", "simulated"]
    odd = LiveEngine("h", "e", "sim/llama-3-8b", 1, "Voodoo 5", 5.0, False)
    form, notes = engine_form(Form(), odd, CAT)
    assert (form.model, form.gpu) == (Form().model, Form().gpu)  # kept, and said so
    assert "'sim/llama-3-8b' is not in the catalog" in notes[0][0] and "'Voodoo 5'" in notes[1][0]
