"""The calculator screen: the form on the left, results on the right, recomputed as you type.

Results: a stacked memory bar per GPU (weights / KV cache / overhead / free), the fit verdict, the flat and
vLLM-style modes side by side, concurrency, warnings, break-even against each chosen API, a chart of monthly
cost against tokens/day (self-hosting stepping up one deployment per capacity, each API a line, the
break-even crossings and the capacity limit marked), and the running engines' real cost per 1M tokens.
F7 loads an ``llmconsole bench`` result: its sustained throughput is then the capacity (instead of the
catalog estimate), and the engine it measured is also priced at that capacity; an empty path unloads it.
All numbers come from console.calc.present (pure); this module only puts them on widgets. The cost chart
lives in console.screens.calc_chart, the F7 prompt in console.screens.calc_measured (both re-exported here).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Button, Footer, Input, Label, Select, SelectionList, Static

from console.calc.catalog import Catalog
from console.calc.errors import CalcError
from console.calc.kv import KV_DTYPES
from console.calc.live import LiveEngine
from console.calc.measured import Measured
from console.calc.present import MEASURED_KEY, NATIVE, Form, View, compute, live_parts
from console.calc.presets import (
    INT4_LABEL,
    engine_form,
    example_explanation,
    example_form,
    int4_form,
    is_example,
)
from console.calc.quant import QUANTS
from console.calc.report import table
from console.calc.settings import CalculatorConfig
from console.screens import ToneLine
from console.screens.calc_chart import CostChart
from console.screens.calc_measured import MeasuredPrompt
from widgets.usage_bar import Segment, UsageBar

LIVE_REFRESH_S = 2.0
INPUTS = {  # input id -> (label, Form field, placeholder)
    "model-path": ("…or a local config.json / model dir", "model_path", "/models/Llama-3.3-70B/config.json"),
    "gpus": ("GPUs (tensor parallel)", "gpus", "1"),
    "seq-len": ("Sequence length (tokens)", "seq_len", "8192, or the model's context if shorter"),
    "gpu-memory-utilization": ("vLLM gpu_memory_utilization", "gpu_memory_utilization", "0.92"),
    "gpu-hourly": ("GPU $/hour (empty: catalog price)", "gpu_hourly", ""),
    "ops-cost-per-month": ("Operations $/month", "ops_cost_per_month", "0"),
    "input-share": ("Input share of tokens", "input_share", "0.7"),
    "tokens-per-day": ("Tokens/day to price (e.g. 20M)", "tokens_per_day", "optional"),
    "utilization": ("Serving utilization (of peak)", "utilization", "0.5"),
}
SELECTS = {"model": "model", "gpu": "gpu", "quant": "quant", "kv-dtype": "kv_dtype", "overhead": "overhead"}
EXAMPLE_LABEL = "Example: 70B on one A100"
MEASURED_LABEL = "Capacity from a bench result"


def _preset_button(label: str, bid: str) -> Button:
    button = Button(label, id=bid, compact=True)
    button.can_focus = False
    return button


class CalcScreen(Screen[None]):
    """VRAM sizing and self-host break-even. ``live_engines`` (from the console's fleet state) prices
    the running engines; ``config`` carries the ``[calculator]`` overrides and defaults."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="calc.back"),
        Binding("f5", "example", EXAMPLE_LABEL, id="calc.example"),
        Binding("f6", "int4", INT4_LABEL, id="calc.int4"),
        Binding(MEASURED_KEY.lower(), "measured", MEASURED_LABEL, id="calc.measured"),
    ]
    DEFAULT_CSS = """
    CalcScreen #calc-body { height: 1fr; }
    CalcScreen #calc-form { width: 44; padding: 0 1; border-right: vkey $panel-lighten-2; }
    CalcScreen #calc-form Label { margin-top: 1; color: $text-muted; }
    CalcScreen #calc-form #apis { height: 8; }
    CalcScreen #calc-form Button { margin-top: 1; width: 100%; }
    CalcScreen #calc-results { width: 1fr; padding: 0 1; scrollbar-gutter: stable; }
    CalcScreen .panel-title { text-style: bold; color: $text-primary; margin-top: 1; }
    CalcScreen #explain { padding: 0 1; border: round $primary; }
    CalcScreen #bars { height: auto; margin-top: 1; }
    CalcScreen #calc-more { height: auto; }
    /* ticked boxes are filled, unticked ones empty; the focused field stands out */
    CalcScreen #apis > .selection-list--button { color: $panel-lighten-2; background: $panel-lighten-2; }
    CalcScreen #apis > .selection-list--button-highlighted { color: $panel-lighten-3; background: $panel-lighten-3; }
    CalcScreen #apis > .selection-list--button-selected { color: $text; background: $success; text-style: bold; }
    CalcScreen #apis > .selection-list--button-selected-highlighted {
        color: $text; background: $success-lighten-1; text-style: bold;
    }
    CalcScreen #calc-form Input:focus { background: $accent 35%; }
    CalcScreen #calc-form Select:focus > SelectCurrent { background: $accent 35%; }
    CalcScreen #calc-form SelectionList:focus { background: $accent 15%; }
    CalcScreen #calc-form SelectionList:focus > .option-list--option-highlighted {
        background: $accent; color: $text; text-style: bold;
    }
    CalcScreen #modes { margin-top: 1; }
    """

    def __init__(
        self,
        live_engines: Callable[[], list[LiveEngine]] | None = None,
        *,
        config: CalculatorConfig | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.live_engines = live_engines
        self.config = config or CalculatorConfig()
        self.catalog: Catalog = self.config.catalog()
        self.form = Form(
            model=self.config.model,
            gpu=self.config.gpu,
            quant="int4",
            gpu_memory_utilization=f"{self.config.gpu_memory_utilization:g}",
            ops_cost_per_month=f"{self.config.ops_cost_per_month:g}",
            input_share=f"{self.config.input_share:g}",
            utilization=f"{self.config.utilization:g}",
            apis=tuple(self.config.compare_apis),
        )
        self.view: View | None = None
        self.error: str | None = None
        self.engines: dict[str, LiveEngine] = {}
        self.measured: Measured | None = None  # a loaded bench result: the capacity instead of the estimate
        self._pending = False
        self._filling = False
        self._priced = False  # the running engines were priced once
        self._more = False  # the part below the table is mounted

    # -- layout
    def compose(self) -> ComposeResult:
        with Horizontal(id="calc-body"):
            with VerticalScroll(id="calc-form"):
                yield from self._form_widgets()
            with VerticalScroll(id="calc-results"):
                yield ToneLine(id="explain")
                yield ToneLine(id="verdict")
                yield Vertical(id="bars")
                yield ToneLine(id="bar-note")
                yield Static(id="modes")
                yield ToneLine(id="concurrency")
                yield ToneLine(id="warnings")
                yield Vertical(id="calc-more")  # costs, chart, running engines: mounted after the first frame
        yield Footer()

    def _more_widgets(self) -> list[Widget]:
        return [
            Static("Self-host against the APIs", classes="panel-title"),
            ToneLine(id="costs"),
            CostChart(id="chart"),
            Static("Running engines: measured cost per 1M tokens", classes="panel-title"),
            ToneLine(id="live"),
            Select[str](
                [],
                prompt="Size a running engine: use its model, GPUs and measured tokens/day",
                id="live-pick",
                compact=True,
            ),
            ToneLine(id="live-note"),
        ]

    def _form_widgets(self) -> ComposeResult:
        cat, f = self.catalog, self.form
        yield Label("Model")
        yield Select(
            [(m.name, m.slug) for m in cat.models],
            value=cat.model(f.model).slug,
            allow_blank=False,
            id="model",
            compact=True,
        )
        yield from self._input("model-path")
        yield Label("GPU")
        yield Select(
            [(g.name, g.slug) for g in cat.gpus],
            value=cat.gpu(f.gpu).slug,
            allow_blank=False,
            id="gpu",
            compact=True,
        )
        yield from self._input("gpus")
        yield Label("Weights")
        yield Select(
            [("checkpoint's own", NATIVE), *((q, q) for q in QUANTS)],
            value=f.quant,
            allow_blank=False,
            id="quant",
            compact=True,
        )
        yield Label("KV cache dtype")
        yield Select(
            [(k, k) for k in KV_DTYPES], value=f.kv_dtype, allow_blank=False, id="kv-dtype", compact=True
        )
        yield from self._input("seq-len")
        yield Label("Overhead mode (bars)")
        yield Select(
            [
                ("vLLM-style: vLLM's own arithmetic", "vllm"),
                ("rule of thumb: params × bytes + KV + ~7 GB", "flat"),
            ],
            value=f.overhead,
            allow_blank=False,
            id="overhead",
            compact=True,
        )
        for key in (
            "gpu-memory-utilization",
            "gpu-hourly",
            "ops-cost-per-month",
            "input-share",
            "tokens-per-day",
            "utilization",
        ):
            yield from self._input(key)
        yield Label("Compare against")
        yield SelectionList[str](
            *((a.name, a.slug, a.slug in f.apis) for a in cat.apis), id="apis", compact=True
        )
        # not in the Tab order: Enter on the list above toggles its box, it never runs a preset
        yield _preset_button(f"{EXAMPLE_LABEL} (F5)", "example")
        yield _preset_button(f"{INT4_LABEL} (F6)", "int4")
        yield _preset_button(f"{MEASURED_LABEL} ({MEASURED_KEY})", "measured")

    def _input(self, key: str) -> ComposeResult:
        label, attr, placeholder = INPUTS[key]
        yield Label(label)
        yield Input(getattr(self.form, attr), placeholder=placeholder, id=key, compact=True)

    def on_mount(self) -> None:
        self._recompute()  # the verdict, bars and table: the first frame
        self.call_after_refresh(self._mount_more)

    async def _mount_more(self) -> None:
        """The costs, the chart and the running engines, after the first frame (opening stays fast)."""
        if self._more or not self.is_attached:
            return  # already there, or closed before its first frame
        await self.query_one("#calc-more", Vertical).mount_all(self._more_widgets())
        if not self.query("#costs"):
            return  # closed while mounting
        self._more = True
        self._show()
        self._refresh_live()
        if self.live_engines is not None:
            self.set_interval(LIVE_REFRESH_S, self._refresh_live)

    def on_screen_resume(self) -> None:
        if self._priced:
            self._refresh_live()

    # -- input
    @on(Input.Changed)
    @on(Select.Changed)
    @on(SelectionList.SelectedChanged)
    def _changed(self, event: Any) -> None:
        if self._filling or self._pending or getattr(event.control, "id", None) == "live-pick":
            return
        self._pending = True
        self.call_after_refresh(self._recompute)

    @on(Select.Changed, "#live-pick")
    def _picked(self, event: Select.Changed) -> None:
        engine = self.engines.get(str(event.value)) if event.value is not Select.BLANK else None
        if engine is None:
            return
        form, notes = engine_form(self.read_form(), engine, self.catalog)
        self.query_one("#live-note", ToneLine).set_parts(notes)
        self.fill(form)

    @on(Button.Pressed, "#example")
    def action_example(self) -> None:
        self.fill(example_form(self.read_form().apis))  # the ticked APIs stay ticked

    @on(Button.Pressed, "#int4")
    def action_int4(self) -> None:
        self.fill(int4_form(self.read_form().apis))

    @on(Button.Pressed, "#measured")
    def action_measured(self) -> None:
        path = self.measured.path if self.measured is not None else ""
        self.app.push_screen(MeasuredPrompt(path), self._measured_chosen)

    def _measured_chosen(self, answer: Measured | str | None) -> None:
        if answer is None:
            return  # cancelled: what was loaded stays
        self.measured = answer if isinstance(answer, Measured) else None
        self._recompute()

    async def action_back(self) -> None:
        """Back to where the calculator was opened from: the screen below it, or (the console's calculator
        mode) the App's ``leave_calculator``."""
        if len(self.app.screen_stack) > 1:
            self.app.pop_screen()
        else:
            await self.app.run_action("leave_calculator")

    def read_form(self) -> Form:
        """The form as the widgets hold it now."""
        values: dict[str, Any] = {
            attr: self.query_one(f"#{key}", Input).value for key, (_, attr, _) in INPUTS.items()
        }
        values |= {attr: str(self.query_one(f"#{key}", Select).value) for key, attr in SELECTS.items()}
        values["apis"] = tuple(self.query_one("#apis", SelectionList).selected)
        return Form(**values)

    def fill(self, form: Form) -> None:
        """Put ``form`` into the widgets (a preset), then recompute once."""
        self._filling = True
        try:
            for key, (_, attr, _) in INPUTS.items():
                self.query_one(f"#{key}", Input).value = getattr(form, attr)
            for key, attr in SELECTS.items():
                self.query_one(f"#{key}", Select).value = getattr(form, attr)
            apis = self.query_one("#apis", SelectionList)
            apis.deselect_all()
            for slug in form.apis:
                apis.select(slug)
        finally:
            self.call_after_refresh(self._end_fill)

    def _end_fill(self) -> None:
        self._filling = False
        self._recompute()

    # -- output
    def _recompute(self) -> None:
        self._pending = False
        self.form = self.read_form()
        try:
            self.view, self.error = compute(self.form, self.catalog, self.measured), None
        except CalcError as e:
            self.view, self.error = None, str(e)
        self._show()
        self._refresh_live()

    def _show(self) -> None:
        explain = self.query_one("#explain", ToneLine)
        example = is_example(self.form)
        explain.display = example
        if example:
            explain.set_parts(example_explanation(self.catalog))
        view = self.view
        if view is None:
            self.query_one("#verdict", ToneLine).set_parts([(f"✗ {self.error}", "error")])
            for wid in ("#concurrency", "#warnings", "#bar-note"):
                self.query_one(wid, ToneLine).set_parts([])
            self.query_one("#modes", Static).update("")
            self.query_one("#bars", Vertical).remove_children()
            if self._more:
                self.query_one("#costs", ToneLine).set_parts([])
                self.query_one("#chart", CostChart).chart = None
            return
        self.query_one("#verdict", ToneLine).set_parts(view.verdict)
        self._show_bars(view)
        self.query_one("#bar-note", ToneLine).set_parts(view.bar_note)
        self.query_one("#modes", Static).update(Text("\n".join(table([tuple(r) for r in view.modes]))))
        self.query_one("#concurrency", ToneLine).set_parts(view.concurrency)
        self.query_one("#warnings", ToneLine).set_parts(view.warnings)
        if self._more:
            self.query_one("#costs", ToneLine).set_parts(view.costs)
            self.query_one("#chart", CostChart).chart = view.chart

    def _show_bars(self, view: View) -> None:
        holder = self.query_one("#bars", Vertical)
        bars = list(holder.query(UsageBar))
        if len(bars) != len(view.bars):
            holder.remove_children()
            bars = [UsageBar(show_legend=(i == 0)) for i in range(len(view.bars))]
            holder.mount_all(bars)
        for widget, bar in zip(bars, view.bars, strict=True):
            widget.segments = tuple(Segment(label, value, tone) for label, value, tone in bar.segments)  # type: ignore[arg-type]
            widget.total, widget.label, widget.unit = bar.total, bar.label, bar.unit
            widget.label_width = 9

    def _offer(self, engines: list[LiveEngine]) -> None:
        """Keep the engine picker's options in step with the fleet (untouched while the set is unchanged)."""
        by_key = {f"{e.host}/{e.engine}": e for e in engines}
        pick = self.query_one("#live-pick", Select)
        if list(by_key) != list(self.engines):
            label = lambda k, e: f"{k} ({e.model or '?'})" + (" SIMULATED" if e.simulated else "")  # noqa: E731
            pick.set_options([(label(k, e), k) for k, e in by_key.items()])
        pick.display = bool(by_key)
        self.engines = by_key

    def _refresh_live(self) -> None:
        if not self._more or (self._priced and not self.is_current):
            return  # hidden (the console keeps the calculator's screen): refreshed when shown again
        self._priced = True
        line = self.query_one("#live", ToneLine)
        if self.live_engines is None:
            line.set_parts(
                [("Open the calculator from the fleet console to price the running engines.", "missing")]
            )
            self.query_one("#live-pick", Select).display = False
            return
        try:
            engines = list(self.live_engines())
            share = float(self.form.input_share)
            line.set_parts(live_parts(engines, self.catalog, self.form.apis, share, self.measured))
            self._offer(engines)
        except Exception as e:  # a broken fleet source never takes the calculator down
            line.set_parts([(f"✗ running engines unavailable: {e}", "error")])
