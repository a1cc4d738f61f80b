"""Bad input from a Prometheus source (issue 12 §6), each from a real HTTP server on loopback.

:class:`tests.support.promsource_stack.PromLike` answers like Prometheus from the agent exporter's own
series for real snapshots, or — per mode — like a server that is not Prometheus, refuses the credentials,
is too slow, times out, sends a partial response, NaN/±Inf values, series without ``host``/``engine``
or a malformed sample. Each must give one line naming the source and what failed, never an exception;
the other sources still render; values already shown go stale with their age, never shown as live.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from agents.schema import HostSnapshot, rfc3339
from console.combined import CombinedFleetSource
from console.fixturesource import FixtureFleetSource, FixtureHost, FrameClock
from console.promsource import PrometheusFleetSource
from console.settings import ConsoleConfig, PrometheusConfig
from console.state import FleetState, apply
from console.status import exit_code, render_table
from tests.console.conftest import load_snapshot
from tests.support.promsource_stack import PromLike, exposition

ROOT = Path(__file__).resolve().parents[2]


def live_snapshot(host: str, seq: int = 7) -> HostSnapshot:
    """The golden snapshot as host ``host``, taken just now (so its age is small)."""
    return replace(load_snapshot(), host=host, seq=seq, taken_at=rfc3339(time.time() - 0.5))


def prom(url: str, name: str = "site-a", **kw: object) -> PrometheusConfig:
    values = {"refresh_s": 1.0, "stale_after_s": 5.0, "query_timeout_s": 0.5, **kw}
    return PrometheusConfig(name=name, url=url, **values)  # type: ignore[arg-type]


def run(coro):  # noqa: ANN001, ANN201 - test helper
    return asyncio.run(coro)


async def poll_once(src: PrometheusFleetSource):  # noqa: ANN201
    try:
        return await src.poll()
    finally:
        await src.aclose()


FAILS = {
    "html": "not a Prometheus query API: /api/v1/query answered HTTP 200 (text/html)",
    "unauthorized": "not authorized (HTTP 401): no credentials configured",
    "slow": "no answer within 0.5s (query timeout)",
    "server_timeout": "query timed out on the server (timeout): query timed out in expression evaluation",
    "malformed": "not a Prometheus query API: /api/v1/query gave a malformed sample",
}


@pytest.mark.parametrize("mode", sorted(FAILS))
def test_a_failing_server_is_one_line_and_the_other_sources_still_render(mode: str) -> None:
    with (
        PromLike(exposition([live_snapshot("gpu01")])) as bad,
        PromLike(exposition([live_snapshot("gpu02")])) as good,
    ):
        bad.mode = mode
        bad_src, good_src = (
            PrometheusFleetSource(prom(bad.url, "bad")),
            PrometheusFleetSource(prom(good.url, "good")),
        )
        combined = CombinedFleetSource([bad_src, good_src])
        started = time.monotonic()
        results = run(combined.poll())
        run(combined.aclose())
    assert time.monotonic() - started < 8, "a slow server is cut at its query timeout"
    (line,) = combined.problems()  # one line, for the failed source only
    assert line.startswith(f"prometheus bad ({bad.url}): ") and FAILS[mode] in line, line
    assert "\n" not in line and "Traceback" not in line
    assert [r.host for r in results] == ["gpu02"] and results[0].snapshot is not None  # the other one renders
    assert good_src.problems() == []


def test_a_wrong_token_names_the_file_to_check(tmp_path: Path) -> None:
    token = tmp_path / "prom.token"
    token.write_text("not-the-token\n")
    token.chmod(0o600)
    with PromLike(exposition([live_snapshot("gpu01")]), token="s3cret") as server:
        src = PrometheusFleetSource(prom(server.url, token_file=token))
        assert run(poll_once(src)) == []
        (line,) = src.problems()
        assert f"not authorized (HTTP 401): check token_file {token}" in line
        token.write_text("s3cret\n")  # fixed: read again at the next refresh, no restart
        src = PrometheusFleetSource(prom(server.url, token_file=token))
        (r,) = run(poll_once(src))
        assert r.snapshot is not None and src.problems() == []
        assert server.requests[-1][1]["Authorization"] == "Bearer s3cret"


def test_basic_auth_is_sent_and_a_readable_password_file_is_a_warning(tmp_path: Path) -> None:
    password = tmp_path / "prom.pass"
    password.write_text("pw\n")
    password.chmod(0o644)
    with PromLike(exposition([live_snapshot("gpu01")]), basic=("ops", "pw")) as server:
        src = PrometheusFleetSource(
            prom(server.url, basic_auth_user="ops", basic_auth_password_file=password)
        )
        (r,) = run(poll_once(src))
    assert r.snapshot is not None
    (line,) = src.problems()
    assert "is readable by group or others" in line and "chmod 600" in line
    assert r.warnings == (line,)  # shown with each of its hosts too


def test_values_already_shown_go_stale_with_their_age_when_the_source_fails() -> None:
    clock = FrameClock(1000.0)
    with PromLike(exposition([live_snapshot("gpu01")])) as server:
        src = PrometheusFleetSource(prom(server.url), clock=clock)
        config = ConsoleConfig()
        state = apply(FleetState.initial(config, clock()), run(src.poll()), clock())
        h = state.host("gpu01")
        assert h is not None and h.status == "fresh" and h.live and h.route == "via Prometheus site-a"
        server.mode = "html"
        clock.now += 2.0
        results = run(src.poll())
        state = apply(state, results, clock())
        (line,) = src.problems()
        assert all(r.warnings == (line,) for r in results) and results  # each host says why it is not updated
        clock.now += 6.0
        state = apply(state, run(src.poll()), clock())
        run(src.aclose())
    h = state.host("gpu01")
    assert (
        h is not None and h.status == "stale" and not h.live
    )  # its own stale_after_s (5 s), not the console's
    age = h.age(clock())
    assert age is not None and age >= 8.0
    assert any(a.alert.code == "AGENT_STALE" and "stale after 5s" in a.alert.summary for a in state.alerts)
    table = render_table(state, src.problems())
    assert "~" in table and "not live" in table and line in table
    assert exit_code(state, src.problems()) == 1


def test_a_partial_response_is_used_and_said() -> None:
    with PromLike(exposition([live_snapshot("gpu01")])) as server:
        server.mode = "warnings"
        src = PrometheusFleetSource(prom(server.url))
        (r,) = run(poll_once(src))
    assert r.snapshot is not None and len(r.snapshot.engines) == 3
    (line,) = src.problems()
    assert "): partial response: store 10.0.0.3:10901 unavailable" in line
    assert r.warnings == (line,)


def test_nan_and_inf_are_missing_never_zero() -> None:
    series = exposition([live_snapshot("gpu01")])
    spoiled = [m for m, _ in series if m["__name__"].endswith(("ttft_p95_seconds", "kv_cache_usage_ratio"))]
    assert len(spoiled) >= 4
    with PromLike(series) as server:
        server.mode = "nan"
        src = PrometheusFleetSource(prom(server.url))
        (r,) = run(poll_once(src))
    assert r.snapshot is not None
    for e in r.snapshot.engines:
        assert e.stats is not None and e.stats.ttft_p95_s is None and e.stats.kv_cache_usage is None
        assert e.stats.requests_running is not None  # the rest is read as usual
    (line,) = src.problems()
    assert f"{len(spoiled)} NaN/Inf values read as missing (e.g. llmconsole_engine_" in line


def test_series_without_host_or_engine_are_left_out_and_counted() -> None:
    snap = live_snapshot("gpu01")
    with PromLike(exposition([snap])) as server:
        server.mode = "no_labels"
        src = PrometheusFleetSource(prom(server.url))
        (r,) = run(poll_once(src))
    assert r.snapshot is not None
    assert all(e.stats is not None and e.stats.requests_running is None for e in r.snapshot.engines)
    assert all(g.mem_used_bytes is None and g.mem_total_bytes is not None for g in r.snapshot.gpus)
    (line,) = src.problems()
    assert "3 engine series without an engine label ignored" in line
    assert f"{len(snap.gpus)} series without a host label ignored" in line


@pytest.mark.parametrize("names", [True, False], ids=["names-kept", "names-dropped"])
def test_states_host_identity_and_agent_alerts_come_with_the_changed_hosts_parts(names: bool) -> None:
    snap = live_snapshot("gpu01")
    assert snap.agent_version and any(e.alerts for e in snap.engines), "the golden snapshot has them"
    with PromLike(exposition([snap])) as server:
        server.names_on_comparisons = names  # servers that drop __name__ on `== 1`: told apart by labels
        src = PrometheusFleetSource(prom(server.url))
        (r,) = run(poll_once(src))
        hosts_query = server.queries[0]
    assert "host_info" not in hosts_query and "alerts_active" not in hosts_query  # not asked every refresh
    assert r.snapshot is not None and src.problems() == []
    assert (r.snapshot.agent_version, r.snapshot.boot_id) == (snap.agent_version, snap.boot_id)
    assert [e.state for e in r.snapshot.engines] == [
        e.state for e in sorted(snap.engines, key=lambda e: e.id)
    ]
    got = {e.id: sorted(a.code for a in e.alerts) for e in r.snapshot.engines}
    assert got == {e.id: sorted(a.code for a in e.alerts) for e in snap.engines}
    assert sorted(a.code for a in r.snapshot.alerts) == sorted(a.code for a in snap.alerts)


def test_when_most_hosts_are_due_a_refresh_asks_every_part_at_once() -> None:
    base = 1_750_000_000.0

    def step(n: int, fresh: int = 4) -> list:  # the first ``fresh`` hosts scraped at step n, 15 s apart
        return exposition(
            [
                replace(
                    load_snapshot(),
                    host=f"h{i}",
                    seq=n if i < fresh else 1,
                    taken_at=rfc3339(base + 15 * n - 0.3),
                )
                for i in range(4)
            ]
        )

    clock, at = FrameClock(100.0), [base + 15]
    with PromLike(step(1)) as server:
        src = PrometheusFleetSource(prom(server.url), clock=clock, fetch_history=False)
        src.query_time = lambda: at[0]

        def refresh(n: int | None, when: float) -> tuple[dict[str, int], float, list[str]]:
            if n is not None:
                server.series = step(n)
            at[0], clock.now, sent = when, clock.now + 2.0, len(server.queries)
            got = {r.host: r.snapshot.seq for r in run(src.poll()) if r.snapshot is not None}
            return got, src.last_refresh["ahead"], server.queries[sent:]

        assert refresh(None, base + 15)[:2] == ({f"h{i}": 1 for i in range(4)}, 0.0)
        assert refresh(2, base + 30)[:2] == ({f"h{i}": 2 for i in range(4)}, 0.0)  # host-level first
        got, ahead, queries = refresh(3, base + 45)  # every host a scrape interval old: all at once
        assert got == {f"h{i}": 3 for i in range(4)} and ahead == 1.0 and src.problems() == []
        assert len(queries) == 5 and not any("host=~" in q for q in queries)
        got, ahead, _ = refresh(None, base + 60)  # due, but no scrape came: a wrong guess, nothing shown
        assert got == {} and ahead == 1.0
        assert refresh(None, base + 75)[1] == 0.0  # not again until news comes
        got, ahead, _ = refresh(5, base + 76)
        assert got == {f"h{i}": 5 for i in range(4)} and ahead == 0.0
        assert refresh(6, base + 91)[1] == 0.0  # the missed scrape made the step seem 30 s
        assert refresh(7, base + 106)[1] == 1.0  # 15 s again
        got, ahead, _ = refresh(None, base + 107)  # between scrapes: host-level series only
        assert got == {} and ahead == 0.0
        run(src.aclose())


def test_requests_per_refresh_do_not_grow_with_the_fleet() -> None:
    counts = []
    for hosts in (2, 40):
        with PromLike(exposition([live_snapshot(f"h{i:03d}", i + 1) for i in range(hosts)])) as server:
            src = PrometheusFleetSource(prom(server.url), fetch_history=False)
            results = run(poll_once(src))
            assert len(results) == hosts and all(r.snapshot for r in results)
            counts.append(len(server.requests))
    assert counts[0] == counts[1] == 6, counts  # five fleet-wide instant queries + /api/v1/alerts


def test_between_scrapes_a_refresh_asks_only_for_host_level_series() -> None:
    clock = FrameClock(100.0)
    snaps = [live_snapshot(f"h{i:03d}", 5) for i in range(3)]
    with PromLike(exposition(snaps)) as server:
        src = PrometheusFleetSource(prom(server.url), clock=clock, fetch_history=False)
        first = {r.host: r.snapshot for r in run(src.poll())}
        assert len(server.requests) == 6 and all(s is not None and s.seq == 5 for s in first.values())
        clock.now += 1.0
        again = run(src.poll())  # nothing scraped since: one small query + alerts, and no news to apply
        assert len(server.requests) == 8 and again == []
        server.series = exposition([snaps[0], replace(snaps[1], seq=6), snaps[2]])
        clock.now += 1.0
        third = {r.host: r.snapshot for r in run(src.poll())}
        run(src.aclose())
    assert len(server.requests) == 14 and src.problems() == []
    assert [q for q in server.queries[-3:] if 'host=~"h001"' in q] == server.queries[
        -3:
    ]  # only the changed host
    assert set(third) == {"h001"} and third["h001"] is not None and third["h001"].seq == 6  # only the news


def test_prometheus_hosts_are_read_only_and_direct_hosts_keep_their_route() -> None:
    snaps = [live_snapshot("gpu01"), live_snapshot("gpu02")]
    with PromLike(exposition(snaps)) as server:
        src = PrometheusFleetSource(prom(server.url))
        direct = FixtureFleetSource([FixtureHost("gpu01", [snaps[0]])])
        combined = CombinedFleetSource([direct, src], pinned={"gpu01": direct})
        results = {r.host: r for r in run(combined.poll())}
        logs = run(combined.logs("gpu02", "llama70b"))
        action = run(combined.action("gpu02", "llama70b", "restart"))
        run(combined.aclose())
    assert results["gpu01"].route is None  # the direct one wins, though Prometheus sees it too
    assert results["gpu02"].route == "via Prometheus site-a"
    block = combined.action_block("gpu02")
    assert block is not None and block.startswith("read-only: gpu02 is seen only through Prometheus site-a")
    assert combined.action_block("gpu01") == direct.action_block("gpu01")
    assert action.outcome == "refused" and action.message == block
    assert not isinstance(logs, list) and "direct or SSH route" in logs.message


def test_rule_alerts_join_the_agents_own_without_duplicates() -> None:
    snap = live_snapshot("gpu01")
    with PromLike(exposition([snap], instance_of=lambda h: "10.0.0.9:9300")) as server:
        server.alerts = [
            {
                "labels": {
                    "alertname": "LLMConsoleAgentAlert",
                    "host": "gpu01",
                    "engine": "qwen-sg",
                    "code": "ENGINE_HUNG",
                    "severity": "critical",
                },
                "annotations": {"summary": "hung"},
                "state": "firing",
                "activeAt": "2026-01-02T03:00:00Z",
            },
            {
                "labels": {
                    "alertname": "LLMEngineStalled",
                    "host": "gpu01",
                    "engine": "llama70b",
                    "code": "ENGINE_STALLED",
                    "severity": "critical",
                },
                "annotations": {"summary": "no tokens for 2m"},
                "state": "firing",
                "activeAt": "2026-01-02T03:04:05.123456789Z",
            },
            {
                "labels": {
                    "alertname": "LLMConsoleAgentDown",
                    "instance": "10.0.0.9:9300",
                    "severity": "critical",
                    "code": "AGENT_UNREACHABLE",
                },
                "annotations": {"summary": "down"},
                "state": "firing",
            },
            {"labels": {"alertname": "Pending", "host": "gpu01", "code": "X"}, "state": "pending"},
            {"labels": {"alertname": "Elsewhere", "instance": "10.9.9.9:1"}, "state": "firing"},
        ]
        src = PrometheusFleetSource(prom(server.url))
        (r,) = run(poll_once(src))
    assert r.snapshot is not None
    codes = {e.id: [a.code for a in e.alerts] for e in r.snapshot.engines}
    assert codes["qwen-sg"].count("ENGINE_HUNG") == 1  # the agent's own; the pass-through is not repeated
    (stalled,) = [a for a in r.snapshot.engine("llama70b").alerts if a.code == "ENGINE_STALLED"]  # type: ignore[union-attr]
    assert stalled.since == "2026-01-02T03:04:05.123Z" and stalled.evidence["alertname"] == "LLMEngineStalled"
    assert "AGENT_UNREACHABLE" in [a.code for a in r.snapshot.alerts]  # placed by its instance
    assert "X" not in str(r.snapshot.alerts)  # pending alerts are not shown
    (line,) = src.problems()
    assert "1 firing alerts name no host of this fleet" in line and "Elsewhere" in line


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LLMCONSOLE_CONFIG": "", "XDG_CONFIG_HOME": str(cwd)}
    return subprocess.run(
        [sys.executable, "-m", "console.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env=env,
    )


def test_status_prometheus_against_a_server_that_is_not_prometheus(tmp_path: Path) -> None:
    with PromLike([]) as server:
        server.mode = "html"
        r = cli("status", "--prometheus", server.url, "--json", cwd=tmp_path)
    assert r.returncode == 1, (r.stdout, r.stderr)
    (err,) = r.stderr.strip().splitlines()
    assert "not a Prometheus query API" in err and "Traceback" not in err
    doc = json.loads(r.stdout)
    assert doc["hosts"] == [] and doc["exit_code"] == 1 and len(doc["problems"]) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--prometheus", "localhost:9090"),
            '--prometheus: expected an http:// or https:// URL, got "localhost:9090"',
        ),
        (("--prometheus", "http://127.0.0.1:1", "--match", "job=x"), "--match: expected label matchers"),
        (("--match", 'job="x"'), "--match only applies with --prometheus URL"),
    ],
)
def test_status_prometheus_bad_arguments_are_one_line_and_exit_2(
    args: tuple[str, ...], message: str, tmp_path: Path
) -> None:
    r = cli("status", *args, cwd=tmp_path)
    assert r.returncode == 2 and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and message in r.stderr


def test_a_refresh_asks_for_up_to_half_of_a_big_fleet_by_name() -> None:
    """Prometheus spreads its scrapes over the interval, so a 2 s refresh of a 15 s fleet finds about an
    eighth of the hosts with news: they are asked for by name even past 100 hosts, never the whole fleet."""
    from console.promsource import filtered

    assert filtered(133, 1000) and filtered(100, 150) and filtered(500, 1000)
    assert not filtered(501, 1000) and not filtered(4, 4)
    clock = FrameClock(100.0)
    snaps = [live_snapshot(f"h{i:03d}", 5) for i in range(250)]
    with PromLike(exposition(snaps)) as server:
        src = PrometheusFleetSource(prom(server.url), clock=clock, fetch_history=False)
        assert len(run(src.poll())) == 250
        news = {f"h{i:03d}" for i in range(0, 250, 2)}  # 125 of 250
        server.series = exposition([replace(s, seq=6) if s.host in news else s for s in snaps])
        clock.now += 1.0
        sent = len(server.queries)
        got = {r.host: r.snapshot for r in run(src.poll())}
        run(src.aclose())
    asked = server.queries[sent + 1 :]  # after the host-level query: the changed hosts' parts
    assert asked and all("host=~" in q for q in asked), asked
    assert set(got) == news and all(s is not None and s.seq == 6 for s in got.values())
    assert src.problems() == []


def land_after_the_host_query(
    server: PromLike, src: PrometheusFleetSource, later: list[tuple[dict[str, str], float]]
) -> None:
    """The next scrape (``later``) lands as soon as a query other than the refresh's host-level one
    arrives: every part sees it (the server notes a query before it selects series, and the parts are asked
    at once, so landing on any one part's arrival would race with the others)."""
    hosts = src.queries["hosts"]

    class Landing(list):
        def append(self, query: str) -> None:
            if query != hosts:
                server.series = later
            super().append(query)

    server.queries = Landing(server.queries)


def test_a_scrape_that_lands_between_the_queries_of_a_refresh_never_mixes_into_one_row() -> None:
    """Prometheus appends a scrape when it ends, stamped with when it began: one that lands after the
    host-level query but before the value parts is seen by the parts only. Those hosts wait a refresh,
    rather than pair one scrape's seq with the next one's values."""
    clock = FrameClock(100.0)
    snaps = [live_snapshot(f"h{i:03d}", 1) for i in range(2)]
    with PromLike(exposition(snaps)) as server:
        src = PrometheusFleetSource(prom(server.url), clock=clock, fetch_history=False)
        assert {r.snapshot.seq for r in run(src.poll()) if r.snapshot} == {1}
        server.series = exposition([replace(s, seq=2) for s in snaps])
        land_after_the_host_query(server, src, exposition([replace(s, seq=3) for s in snaps]))
        clock.now += 1.0
        assert run(src.poll()) == [] and src.problems() == []  # seq 2 from the host query, 3 from the parts
        server.queries = list(server.queries)
        clock.now += 1.0
        got = {r.host: r.snapshot for r in run(src.poll())}
        run(src.aclose())
    assert {h: s.seq for h, s in got.items() if s is not None} == {"h000": 3, "h001": 3}


def test_engine_states_from_the_next_scrape_never_join_the_last_ones_values() -> None:
    """The engine states, host_info and alerts part is checked against the host-level seq like the value
    parts: a scrape seen by that part only (it is answered last) holds the host back a refresh."""
    clock = FrameClock(100.0)
    snaps = [live_snapshot(f"h{i:03d}", 1) for i in range(2)]
    with PromLike(exposition(snaps)) as server:
        src = PrometheusFleetSource(prom(server.url), clock=clock, fetch_history=False)
        assert {r.snapshot.seq for r in run(src.poll()) if r.snapshot} == {1}
        later = exposition([replace(s, seq=3) for s in snaps])
        select = server._select
        server._select = lambda q, series=None: select(q, later if "engine_state" in q else series)  # type: ignore[method-assign]
        server.series = exposition([replace(s, seq=2) for s in snaps])
        clock.now += 1.0
        assert run(src.poll()) == [] and src.problems() == []  # seq 2 everywhere but in the states' part
        server._select = select  # type: ignore[method-assign]
        server.series = later
        clock.now += 1.0
        got = {r.host: r.snapshot for r in run(src.poll())}
        run(src.aclose())
    assert {h: s.seq for h, s in got.items() if s is not None} == {"h000": 3, "h001": 3}


def test_a_scrape_that_lands_during_the_first_refresh_leaves_no_host_out() -> None:
    """``status`` polls once: a host whose parts read the next scrape is asked again at once rather than
    left out of the only view there is."""
    snaps = [live_snapshot(f"h{i:03d}", 1) for i in range(2)]
    with PromLike(exposition(snaps)) as server:
        src = PrometheusFleetSource(prom(server.url), clock=FrameClock(100.0), fetch_history=False)
        land_after_the_host_query(server, src, exposition([replace(s, seq=2) for s in snaps]))
        got = {r.host: r.snapshot for r in run(src.poll())}
        host_queries = server.queries.count(src.queries["hosts"])
        run(src.aclose())
    assert {h: s.seq for h, s in got.items() if s is not None} == {"h000": 2, "h001": 2}
    assert src.problems() == [] and host_queries == 2  # asked again at once, in the same poll


def test_two_targets_reporting_one_host_with_two_seqs_are_held_back_once_then_reported() -> None:
    clock = FrameClock(100.0)
    snap = live_snapshot("h000", 1)
    with PromLike(exposition([snap])) as server:
        src = PrometheusFleetSource(prom(server.url), clock=clock, fetch_history=False)
        run(src.poll())
        twin = [(dict(labels, instance="other:9300"), v) for labels, v in exposition([replace(snap, seq=7)])]
        server.series = exposition([replace(snap, seq=2)]) + twin
        results = []
        for _ in range(2):
            clock.now += 1.0
            results.append(run(src.poll()))
        problems = src.problems()
        run(src.aclose())
    assert results[0] == []  # its parts disagree with its host-level seq: held back once
    assert [r.host for r in results[1]] == ["h000"]  # the same again: read, and the duplicates named
    assert any("duplicate" in p for p in problems), problems
