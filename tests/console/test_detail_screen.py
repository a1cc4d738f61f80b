"""The engine detail under Pilot on the recorded fleet at 80×24, 100×30 and 160×48: the compact layout
below 100×30 (alerts first, sparklines), the full one above (graphs with targets and round axes), the
alerts panel focusable and scrollable, the log wrapped and without the agent's probe lines (keys toggle
both), the numbers panel (percentiles with windows, preemptions, SLO), one line per state transition."""

from __future__ import annotations

from dataclasses import replace

import pytest

from agents.schema import Alert, SloStatus, SloWindow
from console.app import LlmConsole
from console.fixturesource import FixtureFleetSource
from console.screens.engine import EngineScreen
from console.screens.fleet import FleetScreen
from console.settings import ConsoleConfig, HostConfig
from tests.console.conftest import FLEET, cfg, load_snapshot
from widgets.alert_list import AlertList
from widgets.log_view import LogView
from widgets.spark_rows import SparkRows
from widgets.timeseries import TimeSeries

SIZES = [(80, 24), (100, 30), (160, 48)]
PROBES = [
    '(APIServer pid=23246) INFO:     127.0.0.1:50112 - "GET /health HTTP/1.1" 200 OK',
    '(APIServer pid=23246) INFO:     127.0.0.1:50112 - "GET /metrics HTTP/1.1" 200 OK',
]
USER = '(APIServer pid=23246) INFO:     10.1.2.3:40000 - "GET /metrics HTTP/1.1" 200 OK'


def recorded() -> LlmConsole:
    src = FixtureFleetSource.from_dir(FLEET)
    hosts = tuple(
        HostConfig(name=h.name, url=f"http://127.0.0.1:{9300 + i}") for i, h in enumerate(src.hosts)
    )
    return LlmConsole(src, ConsoleConfig(hosts=hosts), clock=src.clock, wall=src.wall, poll=False)


async def open_detail(app: LlmConsole, pilot, host: str, engine: str) -> EngineScreen:
    for _ in range(12):
        await app.poll_once()
    await pilot.pause()
    await app.open_engine(host, engine)
    await pilot.pause()
    await app.workers.wait_for_complete()
    await pilot.pause()
    screen = app.screen
    assert isinstance(screen, EngineScreen)
    return screen


def on_screen(screen: EngineScreen, selector: str) -> bool:
    """Whether the widget's top line is inside the terminal (visible without scrolling)."""
    region = screen.query_one(selector).region
    return region.height > 0 and 0 <= region.y < screen.size.height


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
async def test_layout_at_each_size_keeps_alerts_in_view_and_targets_drawn(size) -> None:
    app = recorded()
    async with app.run_test(size=size) as pilot:
        screen = await open_detail(app, pilot, "gpu01", "llama-hang")
        compact = size == (80, 24)
        assert screen.compact is compact
        assert on_screen(screen, "#alerts") and on_screen(screen, "#alerts-title")
        alerts = screen.query_one("#alerts", AlertList)
        assert {a.code for a in alerts.alerts} == {"ENGINE_HUNG", "HEALTH_LIES"}
        assert screen.query_one("#side").children[0].id == "alerts-title"  # alerts first
        log = screen.query_one("#log", LogView)
        assert log.region.bottom <= size[1] - 1 and log.region.height >= 5  # above the footer
        if compact:
            assert not screen.query_one("#graphs").display
            sparks = screen.query_one("#sparks", SparkRows)
            assert sparks.display and on_screen(screen, "#sparks")
            assert [r.label for r in sparks.rows] == ["TTFT p95", "waiting", "KV cache", "gen tok/s"]
            ttft = sparks.rows[0]
            assert ttft.target == app.config.thresholds.ttft_p95_s and ttft.note == "target 200ms"
            assert ttft.value == "—"  # a hung engine has no TTFT now: nothing is invented
        else:
            assert not screen.query_one("#sparks").display
            for gid in ("ttft", "queue", "kv", "tps"):
                graph = screen.query_one(f"#graph-{gid}", TimeSeries)
                assert graph.size.width >= 12 and graph.size.height >= 5, gid  # axes, not a placeholder
            kv = screen.query_one("#graph-kv", TimeSeries)
            assert kv.y_max == 100.0 and kv.target == app.config.thresholds.kv_pressure * 100
            text = "\n".join("".join(s.text for s in kv.render_line(y)) for y in range(kv.size.height))
            assert "target 95" in text and "100┤" in text and "104" not in text


async def test_alerts_panel_takes_focus_and_scrolls_through_every_alert() -> None:
    app = recorded()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_detail(app, pilot, "gpu01", "llama-hang")
        alerts = screen.query_one("#alerts", AlertList)
        title = screen.query_one("#alerts-title")
        assert "Alerts (2)" in str(title.render())
        assert alerts.max_scroll_y > 0  # both do not fit at 80×24: the panel scrolls
        await pilot.press("a")
        await pilot.pause()
        assert alerts.has_focus and title.has_class("-focused") and "↑↓" in str(title.render())
        first = alerts.highlighted
        await pilot.press("down")
        await pilot.pause()
        assert alerts.highlighted == first + 1 and alerts.scroll_y > 0
        await pilot.press("tab")
        await pilot.pause()
        assert not alerts.has_focus and not title.has_class("-focused")


async def test_log_hides_the_agents_probe_lines_and_wraps_with_keys_to_toggle() -> None:
    app = recorded()
    tail = app.source.hosts[0].logs["llama-hang"]
    recorded_lines = list(tail)
    tail[:] = [x for line in recorded_lines[-10:] for x in (line, *PROBES)] + [USER]
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_detail(app, pilot, "gpu01", "llama-hang")
        log = screen.query_one("#log", LogView)
        assert log.hidden_count == 20 and log.shown == (*recorded_lines[-10:], USER)
        assert "20 probe lines hidden (p shows)" in log.border_subtitle
        assert log.wrap and "wrap (w)" in log.border_subtitle
        assert max(len(x) for x in log.lines) <= log.scrollable_content_region.width
        await pilot.press("p")
        await pilot.pause()
        assert log.show_hidden and log.shown == tuple(tail) and "probe lines shown" in log.border_subtitle
        await pilot.press("p", "w")
        await pilot.pause()
        assert not log.show_hidden and not log.wrap and "no wrap" in log.border_subtitle
        assert list(log.lines) == [*recorded_lines[-10:], USER]  # one display line per log line


async def test_numbers_panel_shows_percentiles_preemptions_and_the_slo() -> None:
    app = recorded()
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await open_detail(app, pilot, "gpu02", "llama-kv")
        state = app.fleet
        assert "window not reported" in str(
            screen.query_one("#stats-title").render()
        )  # the recording predates them
        assert not screen.query_one("#slo").display
        h = state.hosts["gpu02"]
        e = h.snapshot.engine("llama-kv")
        stats = replace(
            e.stats,
            ttft_p50_s=0.164,
            itl_p95_s=0.04,
            e2e_p99_s=192.0,
            queue_time_p95_s=0.12,
            preemptions_per_s=9.95,
            preemptions_in_window=398.0,
            percentile_window_s=60.0,
            rate_window_s=5.0,
        )
        slo = SloStatus(
            ttft_s=0.5,
            objective=0.99,
            source="histogram",
            budget_left=0.42,
            windows=(SloWindow(window_s=300.0, burn_rate=14.4),),
        )
        e2 = replace(e, stats=stats, slo=slo, client_connections=34, kv_eta_s=130.0)
        snap = replace(h.snapshot, engines=tuple(e2 if x.id == e.id else x for x in h.snapshot.engines))
        screen.redraw(replace(state, hosts={**state.hosts, "gpu02": replace(h, snapshot=snap)}))
        await pilot.pause()
        assert str(screen.query_one("#stats-title").render()) == "Latency · over 1m00s"
        table = screen.query_one("#stats").plain
        assert "164ms" in table and "40ms" in table and "3m12s" in table and "120ms" in table
        assert str(screen.query_one("#load-title").render()) == "Load · rates over 5s"
        load = screen.query_one("#load").plain
        assert "preemptions 9.9/s · 398 in 1m00s" in load and "conns 34" in load and "full in 2m10s" in load
        assert screen.query_one("#slo").display and "budget left 42%" in screen.query_one("#slo").plain
        assert on_screen(screen, "#stats")


async def test_state_history_is_one_line_per_transition_with_the_current_duration() -> None:
    app = recorded()
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await open_detail(app, pilot, "gpu01", "llama-hang")
        raw = app.fleet.engine("gpu01", "llama-hang").events
        assert len(raw) == 20 and {x.state for x in raw} == {"hung"}  # the old agent's per-second lines
        events = screen.query_one("#events").plain.splitlines()
        assert len(events) == 1 and "hung" in events[0] and "for ≥" in events[0]
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, FleetScreen)
        await app.open_engine("gpu02", "phi-crash")
        await pilot.pause()
        lines = app.screen.query_one("#events").plain.splitlines()
        states = [line.split()[1] for line in lines]
        assert all(a != b or "exit" in line for a, b, line in zip(states, states[1:], lines, strict=False))
        assert states[0] == "backoff" and "for " in lines[0]


async def test_resizing_switches_between_the_layouts() -> None:
    app = recorded()
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await open_detail(app, pilot, "gpu02", "llama-kv")
        assert not screen.compact
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        await pilot.pause()
        assert screen.compact and screen.query_one("#sparks", SparkRows).rows
        assert not screen.query_one("#graphs").display
        await pilot.resize_terminal(120, 40)
        await pilot.pause()
        await pilot.pause()
        assert not screen.compact and screen.query_one("#graphs").display
        assert screen.query_one("#graph-ttft", TimeSeries).series


async def test_alerts_panel_leads_with_the_cause_and_lists_its_consequences_under_it() -> None:
    """KV pressure is the cause; preemptions and the lying health check are its consequences, listed
    under it although the consequence is the critical one (the row and the Alerts screen group alike)."""
    snap = load_snapshot("full")
    e = snap.engines[0]
    raised = (
        Alert(code="HEALTH_LIES", severity="critical", summary="/health answers 200 but the canary fails"),
        Alert(code="PREEMPTION_STORM", severity="warning", summary="40 preemptions in 10 s"),
        Alert(code="KV_PRESSURE", severity="warning", summary="KV cache 97 %"),
    )
    snap = replace(snap, engines=(replace(e, alerts=raised), *snap.engines[1:]))
    src = FixtureFleetSource.from_snapshots([snap])
    app = LlmConsole(src, cfg(snap.host), clock=src.clock, wall=src.wall, poll=False)
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await open_detail(app, pilot, snap.host, e.id)
        shown = [(a.code, a.depth) for a in screen.query_one("#alerts", AlertList).shown]
        assert shown == [("KV_PRESSURE", 0), ("PREEMPTION_STORM", 1), ("HEALTH_LIES", 2)], shown


async def test_compact_ttft_sparkline_shows_a_wide_bucket_percentile_as_its_bound() -> None:
    """SGLang's first TTFT bucket is [0, 100 ms]: its p95 of "95 ms" says nothing the bucket does not."""
    snap = load_snapshot("quantiles")
    src = FixtureFleetSource.from_snapshots([snap])
    app = LlmConsole(src, cfg(snap.host), clock=src.clock, wall=src.wall, poll=False)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_detail(app, pilot, snap.host, snap.engines[0].id)
        ttft = screen.query_one("#sparks", SparkRows).rows[0]
        assert ttft.label == "TTFT p95" and ttft.value == "≤100ms", ttft.value
