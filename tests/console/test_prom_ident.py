"""The identity tier of a Prometheus refresh (console.promident): engine_info and GPU totals are read for
the whole fleet every IDENT_EVERY refreshes, in between only for a host whose fast series say they changed
(an engine relaunched with another model, a new engine, an agent restart) — and what is shown in between is
what a full read would show. A real HTTP server on loopback (PromLike) answers as Prometheus does.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

from agents.schema import HostSnapshot, rfc3339
from console.fixturesource import FrameClock
from console.promident import IDENT_EVERY, IDENT_OVERDUE
from console.promsource import PrometheusFleetSource
from console.settings import PrometheusConfig
from tests.console.conftest import load_snapshot
from tests.support.promsource_stack import PromLike, exposition


def snap_at(host: str, seq: int) -> HostSnapshot:
    return replace(load_snapshot(), host=host, seq=seq, taken_at=rfc3339(time.time() - 0.5))


def identity_queries(server: PromLike) -> list[str]:
    return [q for q in server.queries if "engine_info" in q]


class Refresher:
    """A lean source (the console's choice) polled once per call, its clock one refresh further each time."""

    def __init__(self, server: PromLike) -> None:
        self.clock = FrameClock(100.0)
        cfg = PrometheusConfig(
            name="site", url=server.url, refresh_s=1.0, stale_after_s=5.0, query_timeout_s=2.0
        )
        self.src = PrometheusFleetSource(cfg, clock=self.clock, fetch_history=False, full=False)

    def __call__(self) -> dict[str, HostSnapshot | None]:
        self.clock.now += 1.0
        return {r.host: r.snapshot for r in asyncio.run(self.src.poll())}

    def close(self) -> None:
        asyncio.run(self.src.aclose())


def full_read(series: list[tuple[dict[str, str], float]]) -> dict[str, HostSnapshot | None]:
    """What a fresh source reading everything shows for these series (the reference)."""
    with PromLike(series) as server:
        r = Refresher(server)
        try:
            return r()
        finally:
            r.close()


def test_identity_is_read_every_few_refreshes_and_kept_in_between() -> None:
    hosts = ["h000", "h001"]
    with PromLike(exposition([snap_at(h, 1) for h in hosts])) as server:
        r = Refresher(server)
        try:
            reads = []
            for seq in range(1, IDENT_EVERY + 3):
                server.series = exposition([snap_at(h, seq) for h in hosts])
                before = len(identity_queries(server))
                got = r()
                reads.append(len(identity_queries(server)) - before)
                assert r.src.problems() == []
                want = full_read(server.series)
                for h in hosts:  # identity kept from an earlier read: the same as read now
                    assert got[h] is not None and got[h] == want[h], (seq, h)
        finally:
            r.close()
    assert reads == [1, *([0] * (IDENT_EVERY - 1)), 1, 0], reads


def test_an_engine_relaunched_with_another_model_is_read_again_at_once() -> None:
    base = snap_at("h000", 1)
    other = snap_at("h001", 1)
    with PromLike(exposition([base, other])) as server:
        r = Refresher(server)
        try:
            r()
            e0 = base.engines[0]
            moved = replace(e0, model="org/other-model", served_model_name=None, port=(e0.port or 0) + 1)
            relaunched = replace(base, seq=2, engines=(moved, *base.engines[1:]))
            server.series = exposition([relaunched, replace(other, seq=2)])
            before = len(identity_queries(server))
            got = r()["h000"]
            asked = identity_queries(server)[before:]
        finally:
            r.close()
    assert len(asked) == 1 and 'host=~"h000"' in asked[0]  # the one host whose engines changed
    assert got is not None
    e = got.engine(e0.id)
    assert e is not None and (e.model, e.port) == ("org/other-model", moved.port)


def test_a_new_engine_and_an_agent_restart_read_identity_again() -> None:
    base = snap_at("h000", 5)
    with PromLike(exposition([base])) as server:
        r = Refresher(server)
        try:
            r()
            fewer = replace(base, seq=6, engines=base.engines[1:])
            server.series = exposition([fewer])
            before = len(identity_queries(server))
            got = r()["h000"]
            assert len(identity_queries(server)) == before + 1  # an engine went away: its info with it
            assert got is not None and [e.id for e in got.engines] == sorted(e.id for e in fewer.engines)
            server.series = exposition([replace(base, seq=7)])  # and came back
            got = r()["h000"]
            assert len(identity_queries(server)) == before + 2
            assert got == full_read(server.series)["h000"]
            restarted = replace(
                base,
                seq=1,
                gpus=tuple(replace(g, mem_total_bytes=(g.mem_total_bytes or 0) * 2) for g in base.gpus),
            )
            server.series = exposition([restarted])
            got = r()["h000"]  # seq went back: the agent restarted, identity read again
            assert len(identity_queries(server)) == before + 3
            assert got is not None and got == full_read(server.series)["h000"]
            assert [g.mem_total_bytes for g in got.gpus] == [g.mem_total_bytes for g in restarted.gpus]
        finally:
            r.close()


def test_a_refresh_returns_only_news_and_a_recovery_clears_every_hosts_warning() -> None:
    from console.settings import ConsoleConfig
    from console.state import FleetState, apply

    with PromLike(exposition([snap_at("h000", 3), snap_at("h001", 3)])) as server:
        r = Refresher(server)
        try:
            state = apply(
                FleetState.initial(ConsoleConfig(), r.clock()), asyncio.run(r.src.poll()), r.clock()
            )
            r.clock.now += 1.0
            assert asyncio.run(r.src.poll()) == []  # nothing scraped since: nothing to apply
            server.mode = "html"
            r.clock.now += 1.0
            failed = asyncio.run(r.src.poll())
            state = apply(state, failed, r.clock())
            assert {x.host for x in failed} == {"h000", "h001"} and all(x.warnings for x in failed)
            server.mode = "ok"
            r.clock.now += 1.0
            back = asyncio.run(r.src.poll())  # same snapshots, but the warning is gone: every host says so
            state = apply(state, back, r.clock())
        finally:
            r.close()
    assert {x.host for x in back} == {"h000", "h001"} and all(x.warnings == () for x in back)
    for host in ("h000", "h001"):
        h = state.host(host)
        assert h is not None and h.live and h.warnings == ()


def test_a_host_whose_news_keeps_missing_the_identity_refreshes_is_read_when_overdue() -> None:
    """Host b has news every IDENT_EVERY refreshes, always between two identity refreshes (as with a 2 s
    refresh and a 16 s scrape interval): its relaunch on another port (same kind and model, so its fast
    series look the same) shows once IDENT_OVERDUE of its snapshots went by without an identity read."""
    a, b = snap_at("a", 1), snap_at("b", 1)
    e0 = b.engines[0]
    relaunched = (replace(e0, port=(e0.port or 0) + 1), *b.engines[1:])
    b_seq, b_news, shown_at = 1, 0, None
    with PromLike(exposition([a, b])) as server:
        r = Refresher(server)
        try:
            r()  # refresh 1 reads both identities; refreshes 1 + k * IDENT_EVERY read those with news
            for n in range(2, 3 + IDENT_EVERY * (IDENT_OVERDUE + 1)):
                if (n - 3) % IDENT_EVERY == 0:  # b's news: never on an identity refresh
                    b_seq, b_news = b_seq + 1, b_news + 1
                server.series = exposition([replace(a, seq=n), replace(b, seq=b_seq, engines=relaunched)])
                got = r().get("b")
                engine = got.engine(e0.id) if got is not None else None
                if engine is not None and engine.port == relaunched[0].port:
                    shown_at = b_news
                    break
        finally:
            r.close()
    assert shown_at == IDENT_OVERDUE, shown_at
