"""The agent's /metrics exposition, read back with prometheus_client's own parser."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from agents.exporter import make_registry, render
from agents.schema import from_json, stats_are_live

FULL = Path(__file__).resolve().parents[1] / "data" / "snapshots" / "v1" / "full.json"


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(text.decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def find(got, name: str, **labels) -> list[float]:
    return [v for (n, ls), v in got.items() if n == name and all(dict(ls).get(k) == val for k, val in labels.items())]


def test_exports_engines_gpus_and_alerts_from_the_snapshot() -> None:
    snap = from_json(FULL.read_text())
    got = samples(render(make_registry(lambda: snap)))
    live = 0
    assert find(got, "llmconsole_snapshot_seq") == [snap.seq]
    for e in snap.engines:
        assert find(got, "llmconsole_engine_up", engine=e.id) == [1.0 if e.state == "ready" else 0.0]
        assert find(got, "llmconsole_engine_state", engine=e.id, state=e.state) == [1.0]
        assert sum(find(got, "llmconsole_engine_state", engine=e.id)) == 1.0
        if e.restarts is not None:
            assert find(got, "llmconsole_engine_restarts_total", engine=e.id) == [e.restarts]
        if stats_are_live(e, snap.interval_s) and e.stats.requests_running is not None:
            live += 1
            assert find(got, "llmconsole_engine_requests_running", engine=e.id) == [e.stats.requests_running]
        if e.stats is not None and e.stats.kv_cache_usage is None:
            assert find(got, "llmconsole_engine_kv_cache_usage_ratio", engine=e.id) == []  # null is omitted, not 0
        for a in e.alerts:
            assert find(got, "llmconsole_alerts_active", code=a.code, engine=e.id) == [1.0]
    for g in snap.gpus:
        if g.mem_used_bytes is not None:
            assert find(got, "llmconsole_gpu_memory_used_bytes", gpu=str(g.index)) == [g.mem_used_bytes]
    assert live >= 2  # the golden host has live engines: the checks above really ran
    info = find(got, "llmconsole_agent_info")
    assert info == [1.0]


def test_stale_stats_are_not_exported_as_live() -> None:
    snap = from_json(FULL.read_text())
    e = next(e for e in snap.engines if e.stats is not None and e.stats.requests_running is not None)
    stale = dataclasses.replace(e, stats_age_s=12.0)
    snap2 = dataclasses.replace(snap, engines=tuple(stale if x.id == e.id else x for x in snap.engines))
    got = samples(render(make_registry(lambda: snap2)))
    assert find(got, "llmconsole_engine_requests_running", engine=e.id) == []
    assert find(got, "llmconsole_engine_up", engine=e.id)  # lifecycle series stay


def test_no_snapshot_yet_still_renders() -> None:
    got = samples(render(make_registry(lambda: None)))
    assert find(got, "llmconsole_agent_info") == [1.0]
    assert find(got, "llmconsole_snapshot_seq") == []
