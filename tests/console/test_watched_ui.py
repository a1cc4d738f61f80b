"""Watched (unmanaged) engines in the console: labelled in the fleet table, ``unreachable`` ranked and
toned like ``hung``, the agent's per-engine action refusals greyed and explained (never sent), and the
detail screen's "Watched" panel. Driven by the recorded watched snapshot (tests/data/snapshots/v1)."""

from __future__ import annotations

from dataclasses import replace

from agents.schema import HostSnapshot
from console.app import LlmConsole
from console.commands import fleet_commands
from console.fixturesource import FixtureFleetSource
from console.screens.confirm import ConfirmScreen
from console.screens.engine import EngineScreen
from console.screens.fleet import FleetScreen
from console.state import FleetState, apply
from console.views import FLEET_COLUMNS, fleet_table, header_counts, host_status_line
from console.views.cells import STATE_RANK
from tests.console.conftest import T0, cfg, load_snapshot, ok

SIZE = (160, 45)
HOST, WATCHED, MANAGED = "gpu07", "llama70b-systemd", "qwen-7b"
COL = {k: i for i, (k, _) in enumerate(FLEET_COLUMNS)}
NO_RESTART = "engine llama70b-systemd is watched: set restart_command in its [[agent.engines]] entry"


def watched_snapshot(**changes: object) -> HostSnapshot:
    """The recorded watched snapshot; ``changes`` replace fields of its watched engine."""
    snap = load_snapshot("watched")
    engines = tuple(replace(e, **changes) if e.id == WATCHED else e for e in snap.engines)  # type: ignore[arg-type]
    return replace(snap, engines=engines)


def restart_refused() -> HostSnapshot:
    e = load_snapshot("watched").engine(WATCHED)
    assert e is not None and e.actions is not None and e.actions.restart is None  # recorded: restart allowed
    return watched_snapshot(actions=replace(e.actions, restart=NO_RESTART))


class OperatorReplay(FixtureFleetSource):
    """A replay whose hosts accept actions (as with an operator token): only the agent's own refusals in
    the snapshot can stop one. ``action`` records every request that would reach an agent."""

    def action_block(self, host: str) -> str | None:
        return None


def console_on(
    snap: HostSnapshot, source: type[FixtureFleetSource] = OperatorReplay, **kw: object
) -> LlmConsole:
    src = source.from_snapshots([snap])
    return LlmConsole(src, cfg(HOST), clock=src.clock, wall=src.wall, poll=False, **kw)  # type: ignore[arg-type]


def state_of(snap: HostSnapshot) -> FleetState:
    return apply(FleetState.initial(cfg(HOST), 0.0), [ok(HOST, snap, 1.0)], 1.0, T0)


def messages(app: LlmConsole) -> list[str]:
    return [str(n.message) for n in app._notifications]


# --- the fleet table (presenters) ------------------------------------------------------------------------


def test_watched_engine_is_labelled_and_unreachable_is_critical() -> None:
    s = state_of(load_snapshot("watched"))
    t = fleet_table(s, s.now)
    watched, managed = t.rows[f"{HOST}/{WATCHED}"], t.rows[f"{HOST}/{MANAGED}"]
    assert watched[COL["kind"]].display == "vllm watched" and managed[COL["kind"]].display == "sglang"
    assert (watched[COL["state"]].display, watched[COL["state"]].tone) == ("unreachable", "crit")
    assert t.rows[HOST][COL["model"]].display.startswith("2 engines (1 watched)")
    counts = {c.display: c.tone for c in header_counts(s)}
    assert counts["1 unreachable"] == "crit" and counts["1 ready"] == "ok"
    status = "".join(text for text, _ in host_status_line(s, f"{HOST}/{WATCHED}"))
    assert "watched: not started by this agent" in status and "start, stop refused by the agent" in status
    managed_status = "".join(text for text, _ in host_status_line(s, f"{HOST}/{MANAGED}"))
    assert "watched" not in managed_status and "refused" not in managed_status
    # a host-level reason (no token, read-only) is said instead of the engine's
    blocked = "".join(text for text, _ in host_status_line(s, f"{HOST}/{WATCHED}", "no operator token"))
    assert "no operator token" in blocked and "refused by the agent" not in blocked


def test_unreachable_sorts_just_below_hung_and_watched_filters() -> None:
    assert STATE_RANK["hung"] > STATE_RANK["unreachable"] > STATE_RANK["exited"]
    snap = load_snapshot("watched")
    base = snap.engines[1]
    engines = (
        replace(base, id="a-ready", state="ready"),
        replace(base, id="b-exited", state="exited"),
        replace(snap.engines[0], id="c-unreachable"),
        replace(base, id="d-hung", state="hung"),
    )
    s = state_of(replace(snap, engines=engines))
    order = fleet_table(s, s.now, "", "state").order
    assert order == [HOST, f"{HOST}/d-hung", f"{HOST}/c-unreachable", f"{HOST}/b-exited", f"{HOST}/a-ready"]
    w = state_of(snap)
    assert fleet_table(w, w.now, "watched").order == [HOST, f"{HOST}/{WATCHED}"]
    assert fleet_table(w, w.now, "kind:watched").order == [HOST, f"{HOST}/{WATCHED}"]
    assert fleet_table(w, w.now, "-watched").order == [HOST, f"{HOST}/{MANAGED}"]


# --- actions ------------------------------------------------------------------------------------------------


async def test_refused_restart_is_greyed_says_why_and_sends_nothing() -> None:
    app = console_on(restart_refused())
    async with app.run_test(size=SIZE) as pilot:
        await app.poll_once()
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, FleetScreen)
        assert screen.table.get_cell(f"{HOST}/{WATCHED}", "kind").cell.display == "vllm watched"
        assert screen.select(f"{HOST}/{WATCHED}")
        await pilot.pause()
        assert screen.check_action("engine", ("restart",)) is None  # greyed in the footer
        assert screen.check_action("engine", ("stop",)) is None
        assert screen.active_bindings["r"].enabled is False
        await pilot.press("r")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)
        assert any(NO_RESTART in m and m.startswith(f"restart {HOST}/{WATCHED}") for m in messages(app))
        await pilot.press("s")
        await pilot.pause()
        assert any("set stop_command" in m for m in messages(app))
        app.request_action(HOST, WATCHED, "stop")  # the palette's way in: refused there too
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)
        assert app.source.actions == [] and app.actions_sent == []  # type: ignore[attr-defined]
        titles = [c.title for c in fleet_commands(app)]  # the palette offers only what the agent allows
        assert (
            f"Restart engine {HOST}/{WATCHED}" not in titles and f"Stop engine {HOST}/{WATCHED}" not in titles
        )
        assert f"Restart engine {HOST}/{MANAGED}" in titles and f"Open engine {HOST}/{WATCHED}" in titles
        # the managed engine beside it: available, the key asks for confirmation (cancelled here)
        assert screen.select(f"{HOST}/{MANAGED}")
        await pilot.pause()
        assert screen.check_action("engine", ("restart",)) is True
        await pilot.press("r")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen) and (app.screen.engine, app.screen.managed) == (
            MANAGED,
            True,
        )
        await pilot.press("n")
        await pilot.pause()
        assert isinstance(app.screen, FleetScreen)
        assert app.source.actions == [] and app.actions_sent == []  # type: ignore[attr-defined]


async def test_allowed_action_of_a_watched_engine_is_confirmed_as_its_command() -> None:
    app = console_on(load_snapshot("watched"))  # recorded: restart_command set, start/stop not
    async with app.run_test(size=SIZE) as pilot:
        await app.poll_once()
        await app.open_engine(HOST, WATCHED)
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, EngineScreen)
        assert screen.check_action("engine", ("restart",)) is True
        assert screen.check_action("engine", ("start",)) is None
        await pilot.press("S")
        await pilot.pause()
        assert any("set start_command" in m for m in messages(app)) and not isinstance(
            app.screen, ConfirmScreen
        )
        await pilot.press("r")
        await pilot.pause()
        confirm = app.screen
        assert isinstance(confirm, ConfirmScreen) and not confirm.managed
        assert "restart_command" in str(confirm.query_one("#confirm-what").render())
        await pilot.press("n")
        await pilot.pause()
        assert app.source.actions == []  # type: ignore[attr-defined]


async def test_a_remapped_key_says_why_and_a_host_reason_comes_first() -> None:
    app = console_on(restart_refused(), keymap={"engine.restart": "x"})
    async with app.run_test(size=SIZE) as pilot:
        await app.poll_once()
        await pilot.pause()
        assert app.screen.select(f"{HOST}/{WATCHED}")
        await pilot.pause()
        await pilot.press("x")
        await pilot.pause()
        assert any(NO_RESTART in m for m in messages(app)) and not isinstance(app.screen, ConfirmScreen)
    replay = console_on(restart_refused(), FixtureFleetSource)  # a replay: the host's reason
    async with replay.run_test(size=SIZE) as pilot:
        await replay.poll_once()
        await pilot.pause()
        assert replay.screen.select(f"{HOST}/{MANAGED}")
        await pilot.pause()
        assert replay.screen.check_action("engine", ("restart",)) is None
        await pilot.press("r")
        await pilot.pause()
        assert any("actions are not available on a replay" in m for m in messages(replay))
        assert replay.source.actions == [] and not isinstance(replay.screen, ConfirmScreen)  # type: ignore[attr-defined]


# --- engine detail -----------------------------------------------------------------------------------------


async def test_detail_shows_what_the_agent_sees_of_a_watched_engine() -> None:
    app = console_on(load_snapshot("watched"))
    async with app.run_test(size=SIZE) as pilot:
        await app.poll_once()
        await app.open_engine(HOST, WATCHED)
        await pilot.pause()
        screen = app.screen
        panel = screen.query_one("#watch")
        assert panel.display and screen.query_one("#watch-title").display
        text = panel.plain
        assert "listener 127.0.0.1:8000" in text and "owner not visible" in text
        assert "pid not visible · RSS not visible" in text
        assert "kind configured vllm · seen vllm" in text
        e = app.fleet.engine(HOST, WATCHED)
        assert e is not None and e.watch is not None and len(e.watch.unobserved) == 2
        for line in e.watch.unobserved:
            assert f"not observed: {line}" in text
        assert "start refused: " in text and "stop refused: " in text and "restart refused" not in text
        summary = screen.query_one("#summary").plain
        assert "watched (not started by this agent)" in summary and "pid not visible" in summary
        assert "last exit status unknown" in summary and "None" not in summary
        await pilot.press("escape")
        await app.open_engine(HOST, MANAGED)
        await pilot.pause()
        assert not app.screen.query_one("#watch").display  # a managed engine: no panel
        assert "not visible" not in app.screen.query_one("#summary").plain


async def test_detail_shows_a_kind_error_and_a_visible_owner() -> None:
    e = load_snapshot("watched").engine(WATCHED)
    assert e is not None and e.watch is not None
    error = "port 8000 serves sglang metrics (sglang:num_running_reqs), not vllm"
    snap = watched_snapshot(
        pid=41207,
        rss_bytes=3 * 1024**3,
        watch=replace(e.watch, owner="python3", kind_seen="sglang", kind_error=error, unobserved=()),
    )
    app = console_on(snap)
    async with app.run_test(size=SIZE) as pilot:
        await app.poll_once()
        await app.open_engine(HOST, WATCHED)
        await pilot.pause()
        parts = dict((text.strip(), tone) for text, tone in app.screen.query_one("#watch").parts)
        assert parts["owner python3"] == "live" and parts["pid 41207 · RSS 3.0 GiB"] == "live"
        assert parts["kind configured vllm · seen sglang"] == "error"
        assert parts[f"kind error: {error}"] == "error"
        assert not any(p.startswith("not observed") for p in parts)
