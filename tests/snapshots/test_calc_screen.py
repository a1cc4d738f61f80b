"""SVG snapshots of the calculator screen: the default (70B INT4 on one A100, fits), the seed's scenario with its
explanation (does not fit), a bad field, and a fleet of live engines (one SIMULATED, one without throughput).

Update with ``pytest tests/snapshots/test_calc_screen.py --snapshot-update`` after checking the SVGs by eye."""

from __future__ import annotations

from textual.app import App
from textual.widgets import Input

from console.calc.live import LiveEngine
from console.screens.calc import CalcScreen

SIZE = (160, 62)
ENGINES = [
    LiveEngine("gpu01", "llama70b", "llama-3.3-70b", 2, "NVIDIA H100 80GB HBM3", 900.0, False),
    LiveEngine("gpu02", "qwen", "qwen3-32b", 1, "NVIDIA H200", 0.0, False),
    LiveEngine("local", "sim-vllm", "llama-3-8b", 1, "NVIDIA L4", None, True),
]


class CalcSnapApp(App[None]):
    """Hosts the screen with a fixed list of live engines (no fleet, no timers that change the picture)."""

    def on_mount(self) -> None:
        self.push_screen(CalcScreen(live_engines=lambda: list(ENGINES)))


async def _steady(pilot) -> None:  # noqa: ANN001
    for widget in pilot.app.screen.query(Input):
        widget.cursor_blink = False
    await pilot.pause()
    await pilot.pause()


def test_default_fits(snap_compare) -> None:  # noqa: ANN001
    assert snap_compare(CalcSnapApp(), terminal_size=SIZE, run_before=_steady)


def test_seed_scenario_explained(snap_compare) -> None:  # noqa: ANN001
    async def seed(pilot) -> None:  # noqa: ANN001
        await pilot.press("f5")
        await _steady(pilot)

    assert snap_compare(CalcSnapApp(), terminal_size=SIZE, run_before=seed)


def test_bad_field_shows_one_error(snap_compare) -> None:  # noqa: ANN001
    async def bad(pilot) -> None:  # noqa: ANN001
        pilot.app.screen.query_one("#seq-len", Input).value = "-8"
        await _steady(pilot)

    assert snap_compare(CalcSnapApp(), terminal_size=SIZE, run_before=bad)


def test_moe_on_eight_gpus(snap_compare) -> None:  # noqa: ANN001
    async def moe(pilot) -> None:  # noqa: ANN001
        screen = pilot.app.screen
        screen.query_one("#model").value = "qwen3-235b-a22b"
        screen.query_one("#gpu").value = "h200"
        screen.query_one("#quant").value = "native"
        screen.query_one("#gpus", Input).value = "8"
        screen.query_one("#tokens-per-day", Input).value = "300M"
        await _steady(pilot)

    assert snap_compare(CalcSnapApp(), terminal_size=SIZE, run_before=moe)
