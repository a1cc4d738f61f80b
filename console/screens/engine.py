"""Engine detail: alerts first, 15-minute graphs, latency percentiles and load with their windows, the
SLO, state history (one line per transition), how the agent sees a watched engine, GPUs with
per-process memory, loading progress and the log tail (followed while visible, wrapped, the agent's own
probe requests hidden).

Two layouts, chosen by the terminal's size: the full one (a 2×2 grid of graphs beside a side panel) and,
below COMPACT_BELOW, a compact one: one column, alerts first, the graphs as one sparkline row each."""

from __future__ import annotations

from typing import Any, ClassVar

from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.timer import Timer
from textual.widgets import Footer, Static

from agents.schema import EngineSnapshot, GpuInfo, HostSnapshot, severity_rank
from agents.schema.units import duration
from console.fleet import HostError
from console.screens import ENGINE_ACTION_BINDINGS, EngineActions, FleetStateScreen, ToneLine
from console.state import EngineSeries, FleetAlert, FleetState, HostState, engine_alerts
from console.views import (
    GiB,
    age_text,
    alert_time,
    engine_summary,
    engine_view,
    gpu_process_lines,
    gpu_summary,
    graph_note,
    rate_text,
    watch_lines,
)
from console.views.cells import quantile_bucket, quantile_text
from console.views.detail import agent_now, event_lines
from console.views.loglines import is_probe_line
from console.views.percentiles import latency_table, latency_title, load_lines, load_title, slo_lines
from console.views.rootcause import group_items
from widgets.alert_list import AlertItem, AlertList
from widgets.log_view import LogView
from widgets.spark_rows import SparkRow, SparkRows
from widgets.timeseries import Series, TimeSeries
from widgets.tone import Tone
from widgets.usage_bar import Segment, UsageBar

LOG_REFRESH_S = 3.0
LOG_LINES = 200
STALE_COLOURS = ("$secondary-background-lighten-3", "$foreground-darken-2")
COMPACT_BELOW = (100, 30)  # width or height under these: the compact layout
TALL_FROM = 40  # from this height the log pane gets LOG_HEIGHT_TALL lines, else LOG_HEIGHT
LOG_HEIGHT_TALL, LOG_HEIGHT, LOG_HEIGHT_COMPACT = 12, 8, 7

# graph id -> (title, y label, [(series label, metric, colour, scale)])
GRAPHS: dict[str, tuple[str, str, list[tuple[str, str, str, float]]]] = {
    "ttft": ("TTFT", "", [("p50", "ttft_p50_s", "$primary", 1.0), ("p95", "ttft_p95_s", "$accent", 1.0)]),
    "queue": (
        "Queue",
        "requests",
        [("running", "requests_running", "$primary", 1.0), ("waiting", "requests_waiting", "$warning", 1.0)],
    ),
    "kv": ("KV cache", "% used", [("usage", "kv_cache_usage", "$primary", 100.0)]),
    "tps": (
        "Tokens/s",
        "tok/s",
        [
            ("generation", "generation_tokens_per_s", "$primary", 1.0),
            ("prompt", "prompt_tokens_per_s", "$secondary", 1.0),
        ],
    ),
}


# sparkline rows of the compact layout: (label, metric, scale, kind of value)
SPARKS: tuple[tuple[str, str, float, str], ...] = (
    ("TTFT p95", "ttft_p95_s", 1.0, "duration"),
    ("waiting", "requests_waiting", 1.0, "count"),
    ("KV cache", "kv_cache_usage", 100.0, "percent"),
    ("gen tok/s", "generation_tokens_per_s", 1.0, "count"),
)


class EngineScreen(EngineActions, FleetStateScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="engine.back"),
        *ENGINE_ACTION_BINDINGS,
        Binding("a", "focus_alerts", "Alerts panel", id="engine.alerts"),
        Binding("f", "follow", "Follow log", id="engine.follow"),
        Binding("w", "wrap", "Wrap log", id="engine.wrap"),
        Binding("p", "probes", "Probe lines", id="engine.probes"),
    ]
    DEFAULT_CSS = """
    EngineScreen #sparks { height: auto; margin-top: 1; }
    EngineScreen .panel-title.-focused { background: $primary 30%; }
    EngineScreen #stats, EngineScreen #load, EngineScreen #slo { height: auto; }
    """

    def __init__(self, host: str, engine: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.host, self.engine = host, engine
        self._log_timer: Timer | None = None
        self._gpu_ids: tuple[int, ...] | None = None
        self._compact: bool | None = None
        self._log_error: str | None = None

    def compose(self) -> ComposeResult:
        yield ToneLine(id="summary")
        with Horizontal(id="engine-body"):
            with Grid(id="graphs"):
                for gid, (title, y_label, _) in GRAPHS.items():
                    yield TimeSeries(
                        title,
                        y_label=y_label,
                        y_min=0.0,
                        y_max=100.0 if gid == "kv" else None,
                        y_format=_duration_tick if gid == "ttft" else None,
                        id=f"graph-{gid}",
                    )
            with VerticalScroll(id="side"):
                yield Static("Alerts", classes="panel-title", id="alerts-title")
                yield AlertList(id="alerts")
                yield SparkRows(id="sparks")
                yield Static("Latency", classes="panel-title", id="stats-title")
                yield ToneLine(id="stats")
                yield Static("Load", classes="panel-title", id="load-title")
                yield ToneLine(id="load")
                yield Static("SLO", classes="panel-title", id="slo-title")
                yield ToneLine(id="slo")
                yield Static("State history", classes="panel-title")
                yield ToneLine(id="events")
                yield Static("Watched", classes="panel-title", id="watch-title")
                yield ToneLine(id="watch")
                yield Static("GPUs", classes="panel-title", id="gpus-title")
                yield Vertical(id="gpus")
        yield ToneLine(id="loading")
        yield LogView(id="log", hide=is_probe_line)
        yield Footer()

    def on_mount(self) -> None:
        self._watch(None)
        self.query_one("#log", LogView).border_title = f"log · {self.host}/{self.engine}"
        self._layout(self.size.width, self.size.height)
        self.watch_fleet()
        self._log_timer = self.set_interval(LOG_REFRESH_S, self.fetch_logs)
        self.fetch_logs()

    def on_resize(self, event: events.Resize) -> None:
        self._layout(event.size.width, event.size.height)

    @property
    def compact(self) -> bool:
        """Whether the compact layout is on (a terminal under COMPACT_BELOW)."""
        return bool(self._compact)

    def _layout(self, width: int, height: int) -> None:
        """Full or compact, and the log's height, by the terminal's size (inline styles: they win over
        the app's stylesheet, which lays out the full screen)."""
        compact = width < COMPACT_BELOW[0] or height < COMPACT_BELOW[1]
        log = self.query_one("#log", LogView)
        if compact:
            log.styles.height = LOG_HEIGHT_COMPACT
        else:
            log.styles.height = LOG_HEIGHT_TALL if height >= TALL_FROM else LOG_HEIGHT
        if compact == self._compact:
            return
        self._compact = compact
        self.set_class(compact, "-compact")
        self.query_one("#graphs", Grid).display = not compact
        self.query_one("#sparks", SparkRows).display = compact
        side = self.query_one("#side", VerticalScroll)
        if compact:  # the whole width: no divider, no minimum width beside graphs that are not there
            side.styles.border_left = ("none", "black")
            side.styles.min_width = 0
        else:
            side.styles.clear_rule("border_left")
            side.styles.clear_rule("min_width")
        for title in self.query(".panel-title"):
            if compact:
                title.styles.margin = (0, 0, 0, 0)
            else:
                title.styles.clear_rule("margin")
        self.query_one("#alerts", AlertList).styles.max_height = 8 if compact else None
        if self.is_mounted and self.app.is_running:
            self.call_after_refresh(self._redraw_now)

    def _redraw_now(self) -> None:
        self.redraw(self.console.fleet)

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
        self._log_subtitle()

    def action_wrap(self) -> None:
        log = self.query_one("#log", LogView)
        log.wrap = not log.wrap
        self._log_subtitle()

    def action_probes(self) -> None:
        log = self.query_one("#log", LogView)
        log.show_hidden = not log.show_hidden
        self._log_subtitle()

    def action_focus_alerts(self) -> None:
        alerts = self.query_one("#alerts", AlertList)
        alerts.focus()
        alerts.scroll_visible(animate=False)

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        self._focus_marks()

    def on_descendant_blur(self, event: events.DescendantBlur) -> None:
        self._focus_marks()

    def _focus_marks(self) -> None:
        """The alerts title says when the list has focus (and how to move in it)."""
        alerts = self.query_one("#alerts", AlertList)
        self.query_one("#alerts-title", Static).set_class(alerts.has_focus, "-focused")
        self._alerts_title(alerts)

    # -- logs (I/O through the app's source, on a worker that dies with this screen)
    @work(exclusive=True, group="logs", exit_on_error=False, description="engine log tail")
    async def fetch_logs(self) -> None:
        got = await self.console.source.logs(self.host, self.engine, LOG_LINES)
        log = self.query_one("#log", LogView)
        if isinstance(got, HostError):
            self._log_error = got.message
            self._log_subtitle()
            return
        self._log_error = None
        log.set_lines(got)
        self._log_subtitle()

    def _log_subtitle(self) -> None:
        """Following or paused, wrapped or not, how many probe lines are hidden, and the keys."""
        log = self.query_one("#log", LogView)
        if self._log_error is not None:
            log.border_subtitle = f"log unavailable: {self._log_error}"
            return
        parts = ["following" if log.follow else "paused (f or End to follow)"]
        parts.append("wrap (w)" if log.wrap else "no wrap (w)")
        if log.show_hidden:
            parts.append("probe lines shown (p hides)")
        elif log.hidden_count:
            parts.append(f"{log.hidden_count} probe lines hidden (p shows)")
        log.border_subtitle = " · ".join(parts)

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
        self._alerts(state)
        self._watch(e)
        if self.compact:
            self._sparks(state, h, e)
        else:
            self._graphs(state, h, e)
        self._numbers(state, h, e)
        if h.snapshot is not None:
            self._gpus(h, h.snapshot, e)
        self.query_one("#events", ToneLine).set_parts(
            _lines(event_lines(e, agent_now(h, now))) or [("no transitions recorded", "dim")]
        )
        self._loading(e)

    def _numbers(self, state: FleetState, h: HostState, e: EngineSnapshot) -> None:
        """Latency percentiles, load and rates (each with its window), the SLO when configured."""
        view = engine_view(h, e, state.now)
        live = h.live and view.live
        stats = e.stats
        stale = "" if live or stats is None else f" · {age_text(view.age)} old"
        self.query_one("#stats-title", Static).update(latency_title(stats) + stale)
        self.query_one("#stats", ToneLine).set_parts(latency_table(stats, live))
        self.query_one("#load-title", Static).update(load_title(stats) + stale)
        self.query_one("#load", ToneLine).set_parts(load_lines(e, live))
        slo = slo_lines(e.slo)
        self.query_one("#slo-title", Static).display = bool(slo)
        slo_panel = self.query_one("#slo", ToneLine)
        slo_panel.display = bool(slo)
        slo_panel.set_parts(slo)

    def _sparks(self, state: FleetState, h: HostState, e: EngineSnapshot) -> None:
        """The compact layout's graphs: one sparkline row per metric, its latest value and target."""
        series = h.series.get(self.engine)
        thresholds = state.config.thresholds
        targets = {"ttft_p95_s": thresholds.ttft_p95_s, "kv_cache_usage": thresholds.kv_pressure * 100.0}
        view = engine_view(h, e, state.now)
        live = h.live and view.live
        rows = []
        for label, metric, scale, kind in SPARKS:
            points = _scaled(series, metric, scale, state)
            raw = getattr(e.stats, metric, None) if e.stats is not None else None
            value = None if raw is None else raw * scale
            target = targets.get(metric)
            if value is None:
                text, tone = "—", "missing"
            else:
                text = (
                    quantile_text(value, quantile_bucket(e.stats, metric))
                    if kind == "duration"
                    else (f"{value:.1f}%" if kind == "percent" else rate_text(value))
                )
                tone = ("warn" if target is not None and value > target else "live") if live else "stale"
            note = ""
            if target is not None:
                note = "target " + (duration(target) if kind == "duration" else f"{target:.0f}%")
            rows.append(
                SparkRow(label, points, text, tone, target, note, y_max=100.0 if kind == "percent" else None)
            )
        sparks = self.query_one("#sparks", SparkRows)
        sparks.window_s = state.window_s
        sparks.rows = tuple(rows)

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
            graph.window_s = state.window_s
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
        for a, depth in _root_cause_first(engine_alerts(state, self.host, self.engine)):
            item = AlertItem(
                a.alert.code,
                a.alert.severity,
                a.alert.summary,
                alert_time(a) or None,
                a.where,
                a.alert.evidence,
                a.alert.raised_count,
                depth,
            )
            items.append(item)
            if state.is_acknowledged(a):
                acked.add(item.key)
        alert_list = self.query_one("#alerts", AlertList)
        if alert_list.alerts != tuple(items):
            alert_list.alerts = tuple(items)
        alert_list.acknowledged = frozenset(acked)
        self._alerts_title(alert_list)
        self.call_after_refresh(self._alerts_title, alert_list)  # once laid out: does it overflow?

    def _alerts_title(self, alert_list: AlertList) -> None:
        count = len(alert_list.alerts)
        title = f"Alerts ({count})" if count else "Alerts"
        if alert_list.has_focus:
            title += " · ↑↓ move · Tab leaves"
        elif alert_list.max_scroll_y > 0:  # more than the panel shows
            title += " · more: a, then ↑↓"
        self.query_one("#alerts-title", Static).update(title)

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


def _root_cause_first(alerts: list[FleetAlert]) -> list[tuple[FleetAlert, int]]:
    """The engine's alerts grouped by fault: each cause (depth 0) followed by its consequences (depth ≥ 1)."""
    out: list[tuple[FleetAlert, int]] = []
    for cause, below in group_items(
        alerts, lambda a: a.alert.code, lambda a: severity_rank(a.alert.severity)
    ):
        out.append((cause, 0))
        out.extend((a, depth) for depth, a in below)
    return out


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


def _duration_tick(seconds: float) -> str:
    """A TTFT axis tick by the one duration rule; the origin is plain "0"."""
    return "0" if seconds == 0 else duration(seconds)
