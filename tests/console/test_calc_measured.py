"""The calculator screen with an ``llmconsole bench`` result loaded (F7): break-even at the measured capacity
(labelled as such, in the CLI's words), the engine it measured priced at that capacity next to its current
load, one error line for a bad file, unloading back to the estimate, and 80×24 still usable.

The result files come from the real benchmark: one real run of ``llmconsole bench`` against a simulated vLLM
engine (a real process on loopback), written by the bench's own writer; the fleet-target variant is the same
runs rebuilt by the result module's own constructor with the target a fleet run records (HOST/ENGINE).
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from textual.app import App
from textual.widgets import Input

from console.bench import result as results
from console.bench.http import split_url
from console.bench.target import Target
from console.calc.catalog import builtin
from console.calc.live import LiveEngine, live_cost
from console.calc.measured import load_measured
from console.calc.present import live_parts
from console.calc.units import SECONDS_PER_DAY, tokens, usd
from console.cli import main
from console.screens import ToneLine
from console.screens.calc import CalcScreen, CostChart, MeasuredPrompt
from tests.support.simproc import sim_engine

FAST = ("--tick-ms", "2", "--decode-ms", "4", "--prefill-ms-per-1k", "300")
RUN = ("--quiet", "--concurrency", "4", "--max-requests", "12", "--input-len", "64", "--output-len", "8")
H100 = "NVIDIA H100 80GB HBM3"


@pytest.fixture(scope="module")
def url_result(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A real `llmconsole bench URL --gpus 2 --output r.json` run against a simulated vLLM engine."""
    tmp = tmp_path_factory.mktemp("bench")
    path = tmp / "r.json"
    with sim_engine("vllm", *FAST, tmp=tmp) as eng:
        eng.wait_ready()
        assert main(["bench", eng.url, *RUN, "--gpus", "2", "--output", str(path)]) == 0
    yield path


@pytest.fixture(scope="module")
def fleet_result(url_result: Path) -> Path:
    """The same runs as a benchmark of the fleet's gpu01/llama70b records them (its target is HOST/ENGINE)."""
    doc = results.load(str(url_result))
    origin, prefix = split_url(doc["target"]["base_url"])
    target = Target("gpu01/llama70b", origin, prefix, doc["target"]["metrics_url"], kind="vllm", gpus=2)
    agent = "http://127.0.0.1:9300"
    target.fleet = {
        "host": "gpu01",
        "engine": "llama70b",
        "route": "http",
        "agent_url": agent,
        "simulated": True,
    }
    rebuilt = results.build(
        mode=doc["mode"],
        target={**target.describe(), "gpus": 2},
        model="llama-3.3-70b",
        endpoint=doc["endpoint"],
        workload=doc["workload"],
        bounds=doc["bounds"],
        slo=None,
        runs=doc["runs"],
        gpus=2,
        interrupted=False,
    )
    path = url_result.with_name("fleet.json")
    path.write_text(results.dumps(rebuilt) + "\n", encoding="utf-8")
    return path


def sustained(path: Path) -> dict:
    """The numbers as the file holds them (read here, not through the code under test)."""
    return json.loads(path.read_text())["sustained"]


class CalcApp(App[None]):
    def __init__(self, live: Callable[[], list[LiveEngine]] | None = None) -> None:
        super().__init__()
        self.live = live

    def on_mount(self) -> None:
        self.push_screen(CalcScreen(live_engines=self.live))


async def settle(pilot) -> None:  # noqa: ANN001
    for _ in range(4):
        await pilot.pause()


def text(screen: CalcScreen | MeasuredPrompt, wid: str) -> str:
    return screen.query_one(wid, ToneLine).plain


async def enter_path(pilot, path: str) -> None:  # noqa: ANN001
    """F7, the path, Enter: as the operator does it."""
    await pilot.press("f7")
    await settle(pilot)
    prompt = pilot.app.screen
    assert isinstance(prompt, MeasuredPrompt)
    field = prompt.query_one("#measured-path", Input)
    assert field.has_focus
    field.value = path
    await pilot.press("enter")
    await settle(pilot)


async def test_loaded_result_is_the_capacity_and_unloading_returns_to_the_estimate(url_result: Path) -> None:
    s = sustained(url_result)
    per_gpu = s["total_tokens_per_s"] / 2  # the run was on 2 GPUs (--gpus 2)
    app = CalcApp()
    async with app.run_test(size=(160, 60)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, CalcScreen)
        estimate = text(screen, "#costs")
        assert (
            "ESTIMATE from the catalog: llama-3.3-70b int4 on 1 x a100-80gb" in estimate and "F7" in estimate
        )
        assert "MEASURED" not in estimate
        estimated = screen.query_one("#chart", CostChart).chart
        assert estimated is not None and estimated.capacity_label == "capacity"

        await enter_path(pilot, str(url_result))
        assert app.screen is screen and screen.measured is not None
        costs = text(screen, "#costs")
        assert f"serves ≈{tokens(per_gpu * SECONDS_PER_DAY)} tokens/day" in costs
        assert (
            "MEASURED by llmconsole bench on a SIMULATED engine, one run" in costs
            and str(url_result) in costs
        )
        assert f"{per_gpu:,.1f} total / {s['output_tokens_per_s'] / 2:,.1f} output tokens/s per GPU" in costs
        assert "ESTIMATE" not in costs
        chart = screen.query_one("#chart", CostChart).chart
        assert chart is not None and chart.capacity_label == "measured capacity"
        assert chart.capacity == pytest.approx(per_gpu * SECONDS_PER_DAY)
        # the CLI says the same about the same file
        label = load_measured(str(url_result)).label(1, float(screen.form.input_share))
        assert label.strip() in costs

        screen.query_one(
            "#gpus", Input
        ).value = "4"  # a deployment of 4 GPUs serves 4 × the measured per-GPU rate
        await settle(pilot)
        assert screen.query_one("#chart", CostChart).chart.capacity == pytest.approx(
            4 * per_gpu * SECONDS_PER_DAY
        )
        assert f"serves ≈{tokens(4 * per_gpu * SECONDS_PER_DAY)} tokens/day" in text(screen, "#costs")

        await pilot.press("f7")  # the prompt offers what is loaded; Escape keeps it
        await settle(pilot)
        assert app.screen.query_one("#measured-path", Input).value == str(url_result)
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is screen and screen.measured is not None

        await enter_path(pilot, "")  # an empty path: back to the catalog estimate
        assert app.screen is screen and screen.measured is None
        assert "ESTIMATE from the catalog" in text(screen, "#costs") and "MEASURED" not in text(
            screen, "#costs"
        )
        assert screen.query_one("#chart", CostChart).chart.capacity_label == "capacity"


async def test_a_bad_file_is_one_line_and_keeps_what_was_loaded(url_result: Path, tmp_path: Path) -> None:
    foreign = tmp_path / "status.json"
    foreign.write_text(json.dumps({"schema": "llmconsole.status/1", "hosts": []}))
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    empty = tmp_path / "empty.json"  # a real result in which no request completed: nothing to price
    nothing = results.build(
        mode="single",
        target={"target": "http://127.0.0.1:9", "engine": None, "gpus": None},
        model="m",
        endpoint="completions",
        workload={},
        bounds={},
        slo=None,
        runs=[],
        gpus=None,
        interrupted=False,
    )
    empty.write_text(results.dumps(nothing))
    cases = {
        str(foreign): "is not a llmconsole.bench result",
        str(garbage): "is not JSON",
        str(tmp_path / "missing.json"): "missing.json",
        str(empty): "has no sustained throughput (no request completed)",
    }
    app = CalcApp()
    async with app.run_test(size=(160, 60)) as pilot:
        await settle(pilot)
        screen = app.screen
        await enter_path(pilot, str(url_result))
        loaded = screen.measured
        assert loaded is not None
        for path, why in cases.items():
            await enter_path(pilot, path)
            prompt = app.screen
            assert isinstance(prompt, MeasuredPrompt), path  # the prompt stays: fix the path or Escape
            error = text(prompt, "#measured-error")
            assert error.startswith("✗ bench result: ") and why in error and "\n" not in error, error
            assert "Traceback" not in error and "--measured" not in error
            await pilot.press("escape")
            await settle(pilot)
            assert app.screen is screen and screen.measured is loaded  # what was loaded stays
        assert "MEASURED by llmconsole bench" in text(screen, "#costs")


def engines() -> list[LiveEngine]:
    return [
        LiveEngine("gpu01", "llama70b", "llama-3.3-70b", 2, H100, 900.0, False),
        LiveEngine("gpu02", "llama70b", "llama-3.3-70b", 2, H100, 900.0, False),
        LiveEngine("gpu01", "qwen", "qwen3-32b", 1, H100, None, False),
    ]


async def test_the_measured_engine_is_priced_at_its_measured_capacity(fleet_result: Path) -> None:
    s = sustained(fleet_result)
    capacity = s["total_tokens_per_s"]  # measured on 2 GPUs; the engine has 2
    hourly = builtin().gpu("h100-80gb").default_hourly
    app = CalcApp(engines)
    async with app.run_test(size=(180, 60)) as pilot:
        await settle(pilot)
        screen = app.screen
        before = text(screen, "#live")
        assert "measured capacity" not in before and "at current load" not in before
        await enter_path(pilot, str(fleet_result))
        lines = text(screen, "#live").splitlines()
        live_per_mtok = usd(hourly * 2 / (900.0 * 3600) * 1e6)
        assert lines[0].startswith("gpu01/llama70b ") and f"{live_per_mtok}/1M at current load" in lines[0]
        at_cap = lines[1]
        assert at_cap.startswith("  ↳ MEASURED by llmconsole bench on a SIMULATED engine, one run: ")
        assert f"{capacity:,.1f} tok/s on 2 GPUs" in at_cap
        assert f"→ {usd(hourly * 2 / (capacity * 3600) * 1e6)}/1M at measured capacity" in at_cap
        assert f"current load {900.0 / capacity:.0%} of it" in at_cap and str(fleet_result) in at_cap
        assert lines[2].startswith("gpu02/llama70b ") and "measured" not in lines[2]  # another engine
        assert lines[3].startswith("gpu01/qwen ") and len(lines) == 4  # same host, another engine and model
        parts = screen.query_one("#live", ToneLine).parts
        assert ("MEASURED by llmconsole bench on a SIMULATED engine, one run", "simulated") in parts
        # the break-even above uses the same file, in the same words
        assert "MEASURED by llmconsole bench on a SIMULATED engine, one run" in text(screen, "#costs")


def test_which_engine_a_result_belongs_to(url_result: Path, fleet_result: Path) -> None:
    fleet = load_measured(str(fleet_result))
    assert (fleet.fleet_host, fleet.fleet_engine, fleet.model) == ("gpu01", "llama70b", "llama-3.3-70b")
    assert fleet.matches("gpu01", "llama70b", "llama-3.3-70b") and fleet.matches("gpu01", "llama70b", None)
    assert not fleet.matches("gpu01", "llama70b", "qwen3-32b")  # relaunched with another model
    assert not fleet.matches("gpu02", "llama70b", "llama-3.3-70b")
    url = load_measured(str(url_result))  # a URL run: the URL's host and the served model must both agree
    model = json.loads(url_result.read_text())["model"]
    assert url.fleet_host is None and url.url_host == "127.0.0.1" and url.model == model
    assert url.matches("127.0.0.1", "any", model)
    assert not url.matches("127.0.0.1", "any", None) and not url.matches("gpu01", "any", model)


async def test_80x24_with_a_result_loaded(fleet_result: Path) -> None:
    app = CalcApp(engines)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        screen = app.screen
        await pilot.press("f7")
        await settle(pilot)
        box = app.screen.query_one("#measured-box")
        assert box.region.right <= 80 and box.region.bottom <= 24 and box.region.width >= 40
        app.screen.query_one("#measured-path", Input).value = str(fleet_result)
        await pilot.press("enter")
        await settle(pilot)
        assert app.screen is screen and screen.measured is not None
        assert " f7 " in plain(app.export_screenshot())  # the key is in the footer
        assert "MEASURED by llmconsole bench" in text(screen, "#costs")
        chart = screen.query_one("#chart", CostChart)
        chart.scroll_visible(animate=False)
        await settle(pilot)
        assert chart.chart is not None and chart.chart.capacity_label == "measured capacity"
        assert chart.region.width >= 20 and "monthly cost, USD" in plain(app.export_screenshot())  # drawn


def plain(svg: str) -> str:
    """The text of an SVG screenshot."""
    return html.unescape(re.sub(r"<[^>]+>", "", svg)).replace("\xa0", " ")


def test_capacity_pricing_without_a_gpu_price_or_a_live_throughput(fleet_result: Path) -> None:
    """The measured capacity is shown even when the engine reports no throughput (no load figure) or its GPU
    has no $/hour (no price): each missing figure is said, never a zero."""
    measured = load_measured(str(fleet_result))
    capacity = sustained(fleet_result)["total_tokens_per_s"]
    quiet = LiveEngine("gpu01", "llama70b", "llama-3.3-70b", 2, H100, None, True)
    cost = live_cost(quiet, builtin(), (), 0.7, measured)
    assert cost.cost_per_mtok is None and cost.at_capacity is not None
    assert cost.at_capacity.tokens_per_s == pytest.approx(capacity) and cost.at_capacity.load is None
    unknown = LiveEngine("gpu01", "llama70b", "llama-3.3-70b", 4, "Voodoo 5 6000", 10.0, False)
    at = live_cost(unknown, builtin(), (), 0.7, measured).at_capacity
    assert at is not None and at.cost_per_mtok is None and at.tokens_per_s == pytest.approx(2 * capacity)
    lines = "".join(t for t, _ in live_parts([quiet, unknown], builtin(), [], 0.7, measured)).splitlines()
    assert "throughput not reported" in lines[0] and "at measured capacity" in lines[1]
    assert "current load" not in lines[1]
    assert "no $/hour for this GPU" in lines[3] and f"{2 * capacity:,.1f} tok/s on 4 GPUs" in lines[3]
