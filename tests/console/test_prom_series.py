"""console.promseries: the agent exporter's own series back into snapshots (pure; no server).

The name tables are the exporter's (a drift guard), and a snapshot rendered by ``agents.exporter`` and
read back by ``read_fleet`` keeps every value the exposition carries; what it does not carry is None or
empty, never 0.
"""

from __future__ import annotations

from dataclasses import fields, replace

from agents import exporter
from agents.schema import EngineStats, rfc3339
from console.promseries import (
    ENGINE_OTHER,
    ENGINE_STATS,
    GPU_VALUES,
    GRAPHED,
    HOST_VALUES,
    read_fleet,
    read_history,
)
from console.promsource import fleet_queries, selector
from console.state import METRICS
from tests.console.conftest import load_snapshot
from tests.support.promsource_stack import exposition


def test_name_tables_are_the_exporters() -> None:
    assert {suffix: key for suffix, key, _ in exporter.ENGINE_GAUGES} == ENGINE_STATS
    assert {suffix: key for suffix, key, _ in exporter.GPU_GAUGES} == GPU_VALUES
    # every stat is exported, or derivable in Prometheus from what is (named, so a new stat is a decision)
    assert set(EngineStats.__dataclass_fields__) == set(ENGINE_STATS.values()) | exporter.STATS_NOT_EXPORTED
    assert not set(ENGINE_STATS.values()) & exporter.STATS_NOT_EXPORTED
    assert sorted(ENGINE_STATS[s] for s in GRAPHED) == sorted(METRICS)  # the backfill covers every graph
    families = {m.name for m in exporter.make_registry(load_snapshot).collect()}
    for name in ("snapshot_seq", "snapshot_timestamp_seconds", "host_info", *HOST_VALUES):
        assert "llmconsole_" + name in families, name
    assert {"llmconsole_engine_" + s.removesuffix("_total") for s in ENGINE_OTHER} <= families


def test_a_watched_engine_reads_back_as_watched() -> None:
    base = replace(load_snapshot(), seq=7, taken_at=rfc3339(1_750_000_000.0))
    watched = replace(base.engines[0], managed=False)
    snap = replace(base, engines=(watched, *base.engines[1:]))
    p = split(exposition([snap]))
    got = read_fleet(
        1_750_000_001.0, p["hosts"], p["engines"], p["values"], p["gpus"], p["alerts"]
    ).snapshots[snap.host]
    assert {e.id: e.managed for e in got.engines} == {e.id: e.id != watched.id for e in snap.engines}
    # an agent from before the label: its engines are the ones it launched
    old = [(labels, v) for labels, v in p["engines"]]
    for labels, _ in old:
        labels.pop("managed", None)
    got = read_fleet(1_750_000_001.0, p["hosts"], old, p["values"], p["gpus"], p["alerts"]).snapshots[
        snap.host
    ]
    assert all(e.managed for e in got.engines)


def split(series: list[tuple[dict[str, str], float]]) -> dict[str, list[tuple[dict[str, str], float]]]:
    parts: dict[str, list[tuple[dict[str, str], float]]] = {
        "hosts": [],
        "engines": [],
        "values": [],
        "gpus": [],
        "alerts": [],
    }
    for labels, v in series:
        name = labels["__name__"]
        if name.startswith("llmconsole_gpu_"):
            parts["gpus"].append((labels, v))
        elif name == "llmconsole_alerts_active":
            parts["alerts"].append((labels, v))
        elif name in ("llmconsole_engine_info", "llmconsole_engine_state"):
            if v == 1:
                parts["engines"].append((labels, v))
        elif name.startswith("llmconsole_engine_"):
            parts["values"].append((labels, v))
        else:
            parts["hosts"].append((labels, v))
    return parts


def test_a_snapshot_survives_the_exposition() -> None:
    snap = replace(load_snapshot(), seq=42, taken_at=rfc3339(1_750_000_000.25))
    p = split(exposition([snap]))
    read = read_fleet(1_750_000_003.25, p["hosts"], p["engines"], p["values"], p["gpus"], p["alerts"])
    assert (
        read.notes == [] and read.ages == {snap.host: 3.0} and read.instances == {"10.0.0.1:9300": snap.host}
    )
    got = read.snapshots[snap.host]
    assert (got.seq, got.taken_at, got.agent_version, got.gpu_source, got.boot_id) == (
        42,
        snap.taken_at,
        snap.agent_version,
        snap.gpu_source,
        snap.boot_id,
    )
    assert got.host_stats == snap.host_stats
    assert [(a.code, a.severity, a.summary) for a in got.alerts] == [
        (a.code, a.severity, a.summary) for a in snap.alerts
    ]
    assert [e.id for e in got.engines] == sorted(e.id for e in snap.engines)
    for e in got.engines:
        want = snap.engine(e.id)
        assert want is not None
        same = (
            "kind",
            "state",
            "gpus",
            "restarts",
            "uptime_s",
            "rss_bytes",
            "simulated",
            "served_model_name",
            "port",
            "managed",
        )
        assert {k: getattr(e, k) for k in same} == {k: getattr(want, k) for k in same}, e.id
        assert e.model == want.model and e.stats is not None and want.stats is not None
        # every exported stat, None where the engine has none; the rest is not exported: None, never 0
        assert {k: getattr(e.stats, k) for k in ENGINE_STATS.values()} == {
            k: getattr(want.stats, k) for k in ENGINE_STATS.values()
        }
        assert {k: getattr(e.stats, k) for k in exporter.STATS_NOT_EXPORTED} == dict.fromkeys(
            exporter.STATS_NOT_EXPORTED
        )
        assert [(a.code, a.severity, a.summary) for a in e.alerts] == [
            (a.code, a.severity, a.summary) for a in want.alerts
        ]
        assert (e.pid, e.health, e.canary, e.last_exit, e.events) == (
            None,
            None,
            None,
            None,
            (),
        )  # not exported
    for g, want in zip(got.gpus, snap.gpus, strict=True):
        exported = ("index", "uuid", "name", *GPU_VALUES.values())
        assert {k: getattr(g, k) for k in exported} == {k: getattr(want, k) for k in exported}
        assert g.processes == () and g.xid_last is None


def test_missing_snapshot_series_leave_the_host_out_with_a_note() -> None:
    p = split(exposition([load_snapshot()]))
    hosts = [s for s in p["hosts"] if s[0]["__name__"] != "llmconsole_snapshot_seq"]
    read = read_fleet(None, hosts, p["engines"], p["values"], p["gpus"], p["alerts"])
    assert read.snapshots == {} and read.notes == [
        "1 hosts without llmconsole_snapshot_seq left out (e.g. gpu01)"
    ]


def test_stale_engine_stats_are_none_not_zero() -> None:
    base = load_snapshot()
    stale = replace(
        base, engines=tuple(replace(e, stats_age_s=99.0) for e in base.engines)
    )  # not live: not exported
    p = split(exposition([stale]))
    got = read_fleet(None, p["hosts"], p["engines"], p["values"], p["gpus"], p["alerts"]).snapshots[base.host]
    assert all(e.stats is None and e.stats_age_s is None for e in got.engines)


def test_history_from_a_range_matrix() -> None:
    snaps = [replace(load_snapshot(), seq=n, taken_at=rfc3339(1_750_000_000 + n)) for n in (1, 2, 2, 3)]
    matrix: dict[tuple[tuple[str, str], ...], list[tuple[float, float]]] = {}
    for t, s in enumerate(snaps):
        for labels, v in exposition([s]):
            matrix.setdefault(tuple(sorted(labels.items())), []).append((float(t), v))
    rows = [(dict(k), pts) for k, pts in matrix.items()]
    past = read_history(rows, {"gpu01"})["gpu01"]
    assert [s.seq for s in past] == [1, 2, 3]  # one point per distinct seq, oldest first
    for s in past:
        for e in s.engines:
            want = snaps[0].engine(e.id)
            assert want is not None and want.stats is not None and e.stats is not None
            for f in fields(EngineStats):
                if f.name in METRICS:
                    assert getattr(e.stats, f.name) == getattr(want.stats, f.name)
                else:
                    assert getattr(e.stats, f.name) is None  # only the graphed stats are backfilled
    assert read_history(rows, {"other"}) == {}


def test_queries_are_fleet_wide_and_carry_the_match() -> None:
    queries = fleet_queries('job="llmconsole", env=~"prod.*"')
    assert set(queries) == {"hosts", "engines", "values", "values2", "gpus"}
    for q in queries.values():
        assert 'job="llmconsole", env=~"prod.*"' in q and "host=" not in q
    assert queries["hosts"].startswith('{__name__=~"up|llmconsole_(snapshot_seq|snapshot_timestamp_seconds')
    lean = fleet_queries("", full=False)["hosts"]  # what the console asks every refresh: three per host
    assert lean == '{__name__=~"up|llmconsole_(snapshot_seq|snapshot_timestamp_seconds)"}'
    # what changes only with a host's snapshot comes with the changed hosts' parts
    assert "host_info|alerts_active" in queries["engines"] and " == 1 or " in queries["engines"]
    for part in ("engines", "values", "values2", "gpus"):  # each is checked against the host-level seq
        assert queries[part].endswith('snapshot_seq)", job="llmconsole", env=~"prod.*"}'), part
    assert selector("", ["snapshot_seq"]) == '{__name__=~"llmconsole_(snapshot_seq)"}'
