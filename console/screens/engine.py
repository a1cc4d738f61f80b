"""Engine detail: 15-minute graphs, how the agent sees a watched engine, GPUs with per-process memory,
alerts with evidence, state history, loading progress and the log tail (followed while visible)."""

from __future__ import annotations

from typing import Any, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.timer import Timer
from textual.widgets import Footer, Static

from agents.schema import EngineSnapshot, GpuInfo, HostSnapshot
from console.fleet import HostError
from console.screens import ENGINE_ACTION_BINDINGS, EngineActions, FleetStateScreen, ToneLine
from console.state import EngineSeries, FleetState, HostState, engine_alerts
from console.views import (
    GiB,
    age_text,
    alert_time,
    engine_summary,
    event_lines,
    gpu_process_lines,
    gpu_summary,
    graph_note,
    watch_lines,
)
from widgets.alert_list import AlertItem, AlertList
from widgets.log_view import LogView
from widgets.timeseries import Series, TimeSeries
from widgets.tone import Tone
from widgets.usage_bar import Segment, UsageBar

LOG_REFRESH_S = 3.0
LOG_LINES = 200
STALE_COLOURS = ("$secondary-background-lighten-3", "$foreground-darken-2")

# graph id -> (title, y label, [(series label, metric, colour, scale)])
GRAPHS: dict[str, tuple[str, str, list[tuple[str, str, str, float]]]] = {
    "ttft": ("TTFT", "s", [("p50", "ttft_p50_s", "$primary", 1.0), ("p95", "ttft_p95_s", "$accent", 1.0)]),
    "queue": (
        "Queue",
        "requests",
        [("running", "requests_running", "$primary", 1.0), ("waiting", "requests_waiting", "$warning", 1.0)],
    ),
    "kv": ("KV cache", "%", [("usage", "kv_cache_usage", "$primary", 100.0)]),
    "tps": (
        "Tokens/s",
        "tok/s",
        [
            ("generation", "generation_tokens_per_s", "$primary", 1.0),
            ("prompt", "prompt_tokens_per_s", "$secondary", 1.0),
        ],
    ),
}


class EngineScreen(EngineActions, FleetStateScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="engine.back"),
        *ENGINE_ACTION_BINDINGS,
        Binding("f", "follow", "Follow log", id="engine.follow"),
    ]

    def __init__(self, host: str, engine: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.host, self.engine = host, engine
        self._log_timer: Timer | None = None
        self._gpu_ids: tuple[int, ...] | None = None

    def compose(self) -> ComposeResult:
        yield ToneLine(id="summary")
        with Horizontal(id="engine-body"):
            with Grid(id="graphs"):
                for gid, (title, y_label, _) in GRAPHS.items():
                    yield TimeSeries(title, y_label=y_label, y_min=0.0, id=f"graph-{gid}")
            with VerticalScroll(id="side"):
                yield Static("Watched", classes="panel-title", id="watch-title")
                yield ToneLine(id="watch")
                yield Static("GPUs", classes="panel-title", id="gpus-title")
                yield Vertical(id="gpus")
                yield Static("Alerts", classes="panel-title")
                yield AlertList(id="alerts")
                yield Static("State history", classes="panel-title")
                yield ToneLine(id="events")
        yield ToneLine(id="loading")
        yield LogView(id="log")
        yield Footer()

    def on_mount(self) -> None:
        self._watch(None)
        self.query_one("#log", LogView).border_title = f"log · {self.host}/{self.engine}"
        self.watch_fleet()
        self._log_timer = self.set_interval(LOG_REFRESH_S, self.fetch_logs)
        self.fetch_logs()

    def on_screen_suspend(self) -> None:
        if self._log_timer is not None:
            self._log_timer.pause()

    def on_screen_resume(self) -> None:  # (FleetStateScreen's handler redraws a missed state too)
        if self._log_timer is not None:
            self._log_timer.resume()

    def selected_engine(self) -> tuple[str, str] | None:
        return (self.host, self.engine)

    def action_back(self) -> None:
        self.dismiss()

    def action_follow(self) -> None:
        log = self.query_one("#log", LogView)
        log.follow = not log.follow
        if log.follow:
            log.scroll_end(animate=False)

    # -- logs (I/O through the app's source, on a worker that dies with this screen)
    @work(exclusive=True, group="logs", exit_on_error=False, description="engine log tail")
    async def fetch_logs(self) -> None:
        got = await self.console.source.logs(self.host, self.engine, LOG_LINES)
        log = self.query_one("#log", LogView)
        if isinstance(got, HostError):
            log.border_subtitle = f"log unavailable: {got.message}"
            return
        log.border_subtitle = "following" if log.follow else "paused (f or End to follow)"
        log.set_lines(got)

    # -- data in
    def redraw(self, state: FleetState) -> None:
        h = state.host(self.host)
        e = h.engine(self.engine) if h is not None else None
        summary = self.query_one("#summary", ToneLine)
        if h is None or e is None:
            summary.set_parts([(f" {self.host}/{self.engine}: not in the latest snapshot ", "warn")])
            return
        now = state.now
        summary.set_parts(engine_summary(h, e, now))
        self._watch(e)
        self._graphs(state, h, e)
        if h.snapshot is not None:
            self._gpus(h, h.snapshot, e)
        self._alerts(state)
        self.query_one("#events", ToneLine).set_parts(
            _lines(event_lines(e)) or [("no transitions recorded", "dim")]
        )
        self._loading(e)

    def _watch(self, e: EngineSnapshot | None) -> None:
        """The "Watched" panel: shown for an engine the agent did not start, or one whose actions it refuses."""
        lines = watch_lines(e) if e is not None else []
        title = self.query_one("#watch-title", Static)
        panel = self.query_one("#watch", ToneLine)
        title.display = panel.display = bool(lines)
        if e is not None and lines:
            title.update("Watched · not started by this agent" if not e.managed else "Actions")
            panel.set_parts(_lines(lines))

    def _graphs(self, state: FleetState, h: HostState, e: EngineSnapshot) -> None:
        series = h.series.get(self.engine)
        note = graph_note(h, e, state.now)
        thresholds = state.config.thresholds
        targets = {"ttft": thresholds.ttft_p95_s, "kv": thresholds.kv_pressure * 100.0}
        for gid, (_, _, lines) in GRAPHS.items():
            graph = self.query_one(f"#graph-{gid}", TimeSeries)
            graph.series = tuple(
                Series(
                    label, _scaled(series, metric, scale, state), colour if h.live else STALE_COLOURS[i % 2]
                )
                for i, (label, metric, colour, scale) in enumerate(lines)
            )  # a host that is not live: its past values in greys, never in healthy colours
            graph.target = targets.get(gid)
            graph_note_text = note
            if gid == "kv" and e.stats is not None and e.stats.kv_cache_usage is None and h.live:
                graph_note_text = " · ".join(
                    x for x in ("n/a: this engine exports no KV-cache gauge", note) if x
                )
            graph.note = graph_note_text

    def _gpus(self, h: HostState, snap: HostSnapshot, e: EngineSnapshot) -> None:
        gpus = [g for g in snap.gpus if g.index in e.gpus]
        title = "GPUs" + (" · SIMULATED" if snap.gpu_source == "simulated" else "")
        if snap.gpu_source and snap.gpu_source.startswith("unavailable"):
            title += f" · {snap.gpu_source}"
        self.query_one("#gpus-title", Static).update(title)
        box = self.query_one("#gpus", Vertical)
        ids = tuple(g.index for g in gpus)
        if ids != self._gpu_ids:
            self._gpu_ids = ids
            box.remove_children()
            box.mount_all(
                [
                    w
                    for g in gpus
                    for w in (
                        UsageBar(label=f"GPU{g.index}", unit="GiB", id=f"gpu-{g.index}-mem"),
                        ToneLine(id=f"gpu-{g.index}-info"),
                    )
                ]
                or [Static("no GPU data for this engine", classes="muted")]
            )
            self.call_after_refresh(self._gpus, h, snap, e)
            return
        for g in gpus:
            bar = self.query_one(f"#gpu-{g.index}-mem", UsageBar)
            bar.segments = _segments(g, self.engine, h.live)
            bar.total = None if g.mem_total_bytes is None else g.mem_total_bytes / GiB
            info: list[tuple[str, Tone]] = [
                (f"{g.name or 'GPU'}  ", "dim"),
                (gpu_summary(g), "live" if h.live else "stale"),
            ]
            info += [("\n", "live")] + _lines(gpu_process_lines(snap, g))
            self.query_one(f"#gpu-{g.index}-info", ToneLine).set_parts(info)

    def _alerts(self, state: FleetState) -> None:
        items, acked = [], set()
        for a in engine_alerts(state, self.host, self.engine):
            item = AlertItem(
                a.alert.code,
                a.alert.severity,
                a.alert.summary,
                alert_time(a) or None,
                a.where,
                a.alert.evidence,
            )
            items.append(item)
            if state.is_acknowledged(a):
                acked.add(item.key)
        alert_list = self.query_one("#alerts", AlertList)
        alert_list.alerts = tuple(items)
        alert_list.acknowledged = frozenset(acked)

    def _loading(self, e: EngineSnapshot) -> None:
        panel = self.query_one("#loading", ToneLine)
        loading = e.loading if e.state == "starting" else None
        panel.display = loading is not None
        if loading is None:
            return
        parts: list[tuple[str, Tone]] = [(f"LOADING for {age_text(loading.elapsed_s)}", "info")]
        if e.simulated:
            parts.append(("  SIMULATED", "simulated"))
        for line in loading.log_tail[-5:]:
            parts.append(("\n  " + line, "dim"))
        panel.set_parts(parts)


def _scaled(
    series: EngineSeries | None, metric: str, scale: float, state: FleetState
) -> tuple[tuple[float, float | None], ...]:
    if series is None:
        return ()
    points = series.points(metric, state.now, state.window_s, state.gap_s)
    if scale == 1.0:
        return points
    return tuple((x, None if y is None else y * scale) for x, y in points)


def _segments(g: GpuInfo, engine: str, live: bool) -> tuple[Segment, ...]:
    """This engine's processes first, then other engines', then orphans; the rest of used memory last."""
    parts: list[Segment] = []
    accounted = 0
    order = sorted(g.processes, key=lambda p: (p.engine_id != engine, p.engine_id is None))
    for p in order:
        if p.mem_bytes is None:
            continue
        accounted += p.mem_bytes
        tone: Tone = "info" if p.engine_id == engine else ("warn" if p.engine_id is None else "dim")
        parts.append(Segment(p.engine_id or f"orphan {p.pid}", p.mem_bytes / GiB, tone if live else "stale"))
    if g.mem_used_bytes is not None and g.mem_used_bytes > accounted:
        parts.append(Segment("other", (g.mem_used_bytes - accounted) / GiB, "dim" if live else "stale"))
    return tuple(parts)


def _lines(lines: list[tuple[str, Tone]]) -> list[tuple[str, Tone]]:
    out: list[tuple[str, Tone]] = []
    for i, (text, tone) in enumerate(lines):
        out.append((("\n" if i else "") + text, tone))
    return out
