"""The console app on a Prometheus source (issue 12 §3), under Pilot, against a real HTTP server on loopback.

The server answers like Prometheus from the agent exporter's own series for real snapshots. The app needs
no change of its own: its hosts show up as rows routed "via Prometheus", the actions are disabled in the
footer for them with the reason on the status line (read-only: no direct or SSH route), and a source that
fails keeps the rows with their last values, going stale.
"""

from __future__ import annotations

import time
from dataclasses import replace

from agents.schema import rfc3339
from console.app import LlmConsole
from console.fixturesource import FrameClock
from console.promsource import PrometheusFleetSource
from console.screens.fleet import FleetScreen
from console.settings import ConsoleConfig, PrometheusConfig
from tests.console.conftest import load_snapshot
from tests.support.promsource_stack import PromLike, exposition

SIZE = (160, 45)


async def test_prometheus_hosts_are_rows_with_actions_disabled_and_the_reason_shown() -> None:
    snap = replace(load_snapshot(), host="gpu07", seq=3, taken_at=rfc3339(time.time() - 0.5))
    clock = FrameClock(500.0)
    with PromLike(exposition([snap])) as server:
        src = PrometheusFleetSource(
            PrometheusConfig(name="site-a", url=server.url, refresh_s=1, stale_after_s=5), clock=clock
        )
        app = LlmConsole(src, ConsoleConfig(), clock=clock, poll=False)
        async with app.run_test(size=SIZE) as pilot:
            await app.poll_once()
            await pilot.pause()
            screen = app.screen
            assert isinstance(screen, FleetScreen)
            assert screen.table.keys[0] == "gpu07" and "gpu07/llama70b" in screen.table.keys
            screen.select("gpu07/llama70b")
            await pilot.pause()
            status = screen.query_one("#status").plain  # type: ignore[attr-defined]
            assert "read-only: gpu07 is seen only through Prometheus site-a" in status
            assert screen.check_action("engine", ("restart",)) is None  # greyed in the footer
            await pilot.press("r")  # disabled: nothing happens
            app.request_action("gpu07", "llama70b", "restart")  # the palette's way: refused with the reason
            await pilot.pause()
            assert (
                isinstance(app.screen, FleetScreen) and app.actions_sent == []
            )  # no confirmation, nothing sent
            assert any("read-only" in str(n.message) for n in app._notifications)
            server.mode = "html"  # the server breaks: the rows stay, with their last values, then go stale
            clock.now += 7.0
            await app.poll_once()
            await pilot.pause()
            h = app.fleet.host("gpu07")
            assert h is not None and h.status == "stale" and h.snapshot is not None and not h.live
            assert "not a Prometheus query API" in screen.query_one("#status").plain  # type: ignore[attr-defined]
