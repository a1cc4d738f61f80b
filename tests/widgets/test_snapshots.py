"""SVG snapshots of each widget with literal data (pytest-textual-snapshot; update with --snapshot-update).

Fixed data, fixed terminal sizes and the default theme keep them deterministic.
"""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.containers import Horizontal

from widgets import AlertItem, AlertList, Cell, KeyedTable, Segment, Series, StateBadge, TimeSeries, UsageBar

TONE_ROWS: dict[str, list[Cell | str]] = {
    "host-a": [Cell("host-a"), Cell("fresh", "ok"), "", "", ""],
    "host-a/llama": [
        "  llama70b",
        Cell("ready", "ok"),
        Cell("812.4"),
        Cell("0", "zero"),
        Cell("0.41", "live"),
    ],
    "host-a/qwen": [
        "  qwen7b",
        Cell("hung", "crit"),
        Cell("12.3 (stale 8s)", "stale"),
        Cell("", "missing"),
        Cell("0.97", "warn"),
    ],
    "host-a/tgi": [
        "  tgi-mistral",
        Cell("degraded", "warn"),
        Cell("55.0"),
        Cell("", "unsupported"),
        Cell("", "unsupported"),
    ],
    "host-b": [Cell("host-b"), Cell("unreachable", "crit"), Cell("timeout after 2.0s", "error"), "", ""],
    "host-c": [
        Cell("host-c"),
        Cell("fresh", "ok"),
        Cell("SIMULATED", "simulated"),
        Cell("info", "info"),
        Cell("dim", "dim"),
    ],
}


class ToneTableApp(App[None]):
    def compose(self) -> ComposeResult:
        yield KeyedTable()

    def on_mount(self) -> None:
        table = self.query_one(KeyedTable)
        table.set_columns(
            [("name", "ENGINE"), ("state", "STATE"), ("tps", "TOK/S"), ("err", "ERR/S"), ("kv", "KV")],
            right={"tps", "err", "kv"},
        )
        table.sync(TONE_ROWS, groups={"host-a", "host-b", "host-c"})


class PlotApp(App[None]):
    def compose(self) -> ComposeResult:
        yield TimeSeries("TTFT (s)", y_label="seconds", window_s=900)

    def on_mount(self) -> None:
        plot = self.query_one(TimeSeries)
        p95 = tuple((-900.0 + 30 * i, None if 12 <= i <= 14 else 0.12 + 0.01 * (i % 6)) for i in range(31))
        p50 = tuple((-900.0 + 30 * i, 0.05 + 0.004 * (i % 4)) for i in range(31))
        plot.series = (Series("p95", p95), Series("p50", p50))
        plot.target = 0.2
        plot.y_min = 0.0
        plot.note = "SIMULATED"


class BarsApp(App[None]):
    CSS = "UsageBar { margin-bottom: 1; }"

    def compose(self) -> ComposeResult:
        yield UsageBar([Segment("used", 61.2)], 80.0, label="GPU0 mem", unit="GiB")
        yield UsageBar([Segment("kv", 0.97, "warn")], 1.0, label="KV cache", percent=True)
        yield UsageBar(
            [Segment("weights", 35.0, "info"), Segment("kv", 30.0, "ok"), Segment("overhead", 5.0, "warn")],
            80.0,
            label="plan",
            unit="GiB",
            show_legend=True,
        )
        yield UsageBar([Segment("used", 85.0, "crit")], 80.0, label="GPU1 mem", unit="GiB")
        yield UsageBar([Segment("used", 10.0)], None, label="GPU2 mem", unit="GiB")
        yield UsageBar([], 80.0, label="GPU3 mem", unit="GiB")


class AlertsApp(App[None]):
    def compose(self) -> ComposeResult:
        yield AlertList(
            [
                AlertItem(
                    "KV_PRESSURE",
                    "warning",
                    "KV cache usage ≥ 0.95 for 60 s",
                    "12:01:00",
                    "host-a/llama70b",
                    {"kv": 0.971, "window_s": 60},
                ),
                AlertItem(
                    "ENGINE_HUNG",
                    "critical",
                    "work pending and no token progress for 45 s",
                    "12:03:04",
                    "host-a/qwen7b",
                    {"running": 3, "waiting": 12, "last_progress_s": 45.2},
                ),
                AlertItem("METRICS_STALE", "info", "scrape exceeded its deadline", None, "host-b/tgi", {}),
                AlertItem(
                    "TTFT_SLO",
                    "warning",
                    "TTFT p95 0.41 s above target 0.2 s",
                    "11:58:30",
                    "host-c/sim",
                    {"p95_s": 0.41},
                ),
            ]
        )

    def on_mount(self) -> None:
        self.query_one(AlertList).acknowledged = frozenset({"host-c/sim|TTFT_SLO"})


class BadgesApp(App[None]):
    CSS = "Horizontal { height: 1; } StateBadge { margin-right: 1; }"
    STATES = (
        "stopped starting ready degraded hung exited backoff failed stopping",
        "fresh stale unreachable incompatible",
    )

    def compose(self) -> ComposeResult:
        for line in self.STATES:
            with Horizontal():
                for state in line.split():
                    yield StateBadge(state)


def test_keyed_table_all_tones(snap_compare) -> None:
    assert snap_compare(ToneTableApp(), terminal_size=(80, 10))


def test_timeseries_two_series_and_target(snap_compare) -> None:
    assert snap_compare(PlotApp(), terminal_size=(80, 20))


def test_usage_bar_variants(snap_compare) -> None:
    assert snap_compare(BarsApp(), terminal_size=(60, 14))


def test_alert_list(snap_compare) -> None:
    assert snap_compare(AlertsApp(), terminal_size=(80, 16))


def test_state_badges(snap_compare) -> None:
    assert snap_compare(BadgesApp(), terminal_size=(100, 3))
