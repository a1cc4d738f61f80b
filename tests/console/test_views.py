"""Presenters: the rendering rule in cells, filters, sort orders and header counts."""

from __future__ import annotations

from dataclasses import replace

from agents.schema import EngineStats
from console.state import FleetState, acknowledge, apply
from console.views import (
    FLEET_COLUMNS,
    alert_detail,
    alerts_cell,
    fleet_table,
    header_counts,
    host_status_line,
    live_engine_fields,
    parse_filter,
)
from console.views import rows as row_memo
from tests.console.conftest import T0, cfg, down, load_snapshot, ok, snap_at
from widgets.alert_list import format_evidence

COL = {k: i for i, (k, _) in enumerate(FLEET_COLUMNS)}


def cells(table, key: str) -> dict[str, tuple[str, str]]:
    return {k: (table.rows[key][i].display, table.rows[key][i].tone) for k, i in COL.items()}


def fleet(*results, names=("gpu01",), now: float = 1.0) -> FleetState:
    return apply(FleetState.initial(cfg(*names), 0.0), list(results), now, T0)


def test_engine_row_live_values_thresholds_and_unsupported() -> None:
    s = fleet(ok("gpu01", snap_at(1), 1.0))
    t = fleet_table(s, s.now)
    llama = cells(t, "gpu01/llama70b")
    assert llama["state"] == ("ready", "ok")
    assert llama["kv"] == ("61% →6m52s", "live") and llama["queue"] == ("14/0", "live")  # fills in 412.5 s
    assert llama["ttft"] == ("164ms", "live")  # under the 0.2 s target
    assert llama["gen"] == ("1.9k", "live") and llama["restarts"] == ("0", "zero")
    assert llama["gpus"] == ("0 72/80G", "live") and llama["model"][0] == "llama-3.3-70b"
    tgi = cells(t, "gpu01/mistral-tgi")
    assert tgi["kv"] == ("n/a", "unsupported")  # TGI has no KV gauge: null, shown as n/a, never 0
    assert tgi["ttft"][1] == "crit"  # above thresholds.ttft_p95_s
    assert tgi["alerts"] == ("TTFT_SLO", "warn")
    hung = cells(t, "gpu01/qwen-sg")
    assert hung["state"] == ("hung", "crit")
    assert hung["ttft"] == ("—", "missing")  # nothing in the window: missing, not 0 and not n/a
    assert hung["gen"] == ("0", "zero")  # a genuine zero looks like zero
    assert hung["alerts"] == ("ENGINE_HUNG +1", "crit")
    host = cells(t, "gpu01")
    assert host["state"] == ("fresh", "ok") and host["kind"] == ("nvml", "live")
    assert host["alerts"] == ("GPU_THERMAL +1", "warn") and host["gpus"][0] == "2 GPUs 147/159G"
    assert t.groups == {"gpu01"} and t.order[0] == "gpu01"


def test_stale_and_unreachable_values_are_greyed_with_age_never_healthy() -> None:
    s = fleet(ok("gpu01", snap_at(1), 1.0))
    s = apply(s, [ok("gpu01", snap_at(1), 9.0)], 9.0)  # same seq: stale after 5 s
    t = fleet_table(s, s.now)
    llama = cells(t, "gpu01/llama70b")
    assert llama["state"] == ("ready (8s ago)", "stale")
    for col in ("kv", "queue", "ttft", "gen", "gpus", "model"):
        assert llama[col][1] == "stale", col
    assert cells(t, "gpu01")["state"] == ("stale (8s ago)", "stale")  # the age its engines say
    s = apply(s, [down("gpu01", 70.0)], 70.0, T0 + 70)
    t = fleet_table(s, s.now)
    assert cells(t, "gpu01")["state"] == ("unreachable (1m09s ago)", "crit")  # one age per host
    assert cells(t, "gpu01")["kind"] == ("nvml", "stale")  # where GPU data came from: last known, not live
    llama = cells(t, "gpu01/llama70b")
    assert llama["state"] == ("ready (1m09s ago)", "stale") and llama["ttft"] == ("164ms", "stale")
    assert all(tone not in ("ok", "live", "zero") for k, (_, tone) in llama.items() if k not in ("name",)), (
        llama
    )
    assert all(f["tokens_per_s"] is None for f in live_engine_fields(s))  # never offered as live
    line = "".join(text for text, _ in host_status_line(s, "gpu01"))
    assert (
        "UNREACHABLE since" in line and "connection refused" in line and "values shown are 1m09s old" in line
    )


def test_engine_stats_not_live_and_scrape_error() -> None:
    base = snap_at(1)
    llama = base.engines[0]
    engines = (replace(llama, stats_age_s=12.0), replace(base.engines[1], stats=None, id="noscrape"))
    s = fleet(ok("gpu01", replace(base, engines=engines), 1.0))
    t = fleet_table(s, s.now)
    row = cells(t, "gpu01/llama70b")
    assert row["state"] == ("ready (stats 12s)", "ok") and row["kv"] == ("61%", "stale")
    err = cells(t, "gpu01/noscrape")
    assert err["kv"] == ("ERR", "error") and err["queue"] == ("ERR", "error")


def test_rows_kept_between_rounds_are_the_rows_a_fresh_presentation_gives() -> None:
    """fleet_table keeps a fresh host's rows while its state is the same object; a row that shows an age
    (stats not live) is presented again each round, so the age grows; a new snapshot replaces them."""
    from console.views import table as table_memo

    base = snap_at(1)
    llama = base.engines[0]
    aged = replace(base, host="gpu02", engines=(replace(llama, stats_age_s=12.0),))
    s = fleet(ok("gpu01", base, 1.0), ok("gpu02", aged, 1.0), names=("gpu01", "gpu02"))
    first = fleet_table(s, 1.0)
    later = fleet_table(s, 3.0)  # the same state two seconds later, both hosts still fresh
    assert cells(later, "gpu02/llama70b")["state"] == ("ready (stats 14s)", "ok")  # not kept: it ages
    assert later.rows["gpu01/llama70b"] is first.rows["gpu01/llama70b"]  # kept: nothing in it ages
    table_memo._HOST_ROWS.clear()
    row_memo._PREVIOUS.clear()
    fresh = fleet_table(s, 3.0)
    assert {k: cells(fresh, k) for k in fresh.order} == {k: cells(later, k) for k in later.order}
    filtered = fleet_table(s, 3.0, query="qwen")
    assert filtered.order == ["gpu01", "gpu01/qwen-sg"]
    s2 = apply(s, [ok("gpu01", replace(base, seq=2, engines=(replace(llama, restarts=3),)), 4.0)], 4.0)
    assert cells(fleet_table(s2, 4.0), "gpu01/llama70b")["restarts"] == ("3", "warn")


def test_simulated_engines_and_gpus_are_labelled() -> None:
    base = snap_at(1)
    sim = replace(base, gpu_source="simulated", engines=(replace(base.engines[0], simulated=True),))
    t = fleet_table(fleet(ok("gpu01", sim, 1.0)), 1.0)
    assert cells(t, "gpu01")["kind"] == ("SIMULATED", "simulated")
    row = cells(t, "gpu01/llama70b")
    assert row["kind"] == ("vllm SIMULATED", "simulated")
    (f,) = live_engine_fields(fleet(ok("gpu01", sim, 1.0)))
    assert (
        f["simulated"] is True
        and f["tokens_per_s"] == 1874.2 + 5231.7
        and f["gpu_name"] == "NVIDIA H100 80GB HBM3"
    )


def test_filters_by_text_field_and_negation() -> None:
    s = fleet(
        ok("gpu01", snap_at(1), 1.0),
        ok("gpu02", snap_at(1, host="b"), 1.0),
        down("gpu03", 1.0),
        names=("gpu01", "gpu02", "gpu03"),
    )

    def keys(q: str) -> list[str]:
        return fleet_table(s, s.now, q).order

    assert keys("state:hung") == ["gpu01", "gpu01/qwen-sg", "gpu02", "gpu02/qwen-sg"]
    assert keys("alert:kv") == []
    assert keys("alert:TTFT host:gpu02") == ["gpu02", "gpu02/mistral-tgi"]
    assert keys("kind:tgi -host:gpu01") == ["gpu02", "gpu02/mistral-tgi"]
    assert keys("!state:ready host:gpu01") == ["gpu01", "gpu01/qwen-sg"]
    assert keys("state:unreachable") == ["gpu03"]
    assert keys("llama") == ["gpu01", "gpu01/llama70b", "gpu02", "gpu02/llama70b"]
    assert keys("host:gpu0[12] alert:gpu_thermal") == keys("host:gpu0? -host:gpu03 alert:GPU_T")
    assert [t.field for t in parse_filter("state:hung -alert:KV foo")] == ["state", "alert", "text"]


def test_sort_groups_engines_under_hosts_worst_first() -> None:
    slow = snap_at(1, host="b")
    slow = replace(
        slow,
        engines=tuple(
            replace(e, stats=replace(e.stats, ttft_p95_s=2.5)) if e.id == "llama70b" else e
            for e in slow.engines
        ),
    )
    s = fleet(ok("gpu01", snap_at(1), 1.0), ok("gpu02", slow, 1.0), names=("gpu01", "gpu02"))
    order = fleet_table(s, s.now, sort="ttft").order
    assert order[0] == "gpu02" and order[1] == "gpu02/llama70b"  # the host with the worst engine first
    assert order.index("gpu01") > order.index("gpu02/qwen-sg")  # engines stay under their host
    assert fleet_table(s, s.now, sort="ttft", reverse=True).order[0] == "gpu01"
    names = fleet_table(s, s.now, sort="name", reverse=True).order
    assert names[:2] == ["gpu02", "gpu02/qwen-sg"]
    by_state = fleet_table(s, s.now, sort="state").order
    assert by_state[1].endswith("/qwen-sg")  # hung before ready


def test_header_counts_and_acknowledged_alerts() -> None:
    s = fleet(ok("gpu01", snap_at(1), 1.0), down("gpu02", 1.0), names=("gpu01", "gpu02"))
    text = "".join(c.display for c in header_counts(s))
    assert text == "HOSTS 1 unreachable · 1 fresh   ENGINES 1 hung · 2 ready   ALERTS 3 critical · 3 warning"
    for a in s.alerts:
        if a.alert.severity == "warning":
            s = acknowledge(s, a.key)
    assert "".join(c.display for c in header_counts(s)).endswith("ALERTS 3 critical")
    t = fleet_table(s, s.now)
    assert cells(t, "gpu01")["alerts"] == ("GPU_THERMAL +1", "dim")  # all acknowledged: dimmed


def test_alerts_cell_orders_by_severity() -> None:
    snap = load_snapshot()
    hung = snap.engine("qwen-sg")
    assert hung is not None
    cell = alerts_cell(tuple(reversed(hung.alerts)))
    assert cell.text.startswith("ENGINE_HUNG") or cell.text.startswith("HEALTH_LIES")
    assert cell.tone == "crit" and cell.sort_key == 302
    assert alerts_cell(()).text == ""


def test_zero_is_not_missing() -> None:
    snap = snap_at(1)
    zero = replace(
        snap.engines[0],
        kv_eta_s=None,
        stats=EngineStats(
            requests_running=0.0, requests_waiting=0.0, kv_cache_usage=0.0, generation_tokens_per_s=0.0
        ),
    )
    t = fleet_table(fleet(ok("gpu01", replace(snap, engines=(zero,)), 1.0)), 1.0)
    row = cells(t, "gpu01/llama70b")
    assert row["kv"] == ("0%", "zero") and row["gen"] == ("0", "zero") and row["queue"] == ("0/0", "zero")
    assert row["ttft"] == ("—", "missing")


def test_engine_states_of_a_host_that_is_not_live_are_unknown_to_filters() -> None:
    s = fleet(ok("gpu01", snap_at(1), 1.0), ok("gpu02", snap_at(1), 1.0), names=("gpu01", "gpu02"))
    s = apply(s, [ok("gpu01", snap_at(2), 2.0), down("gpu02", 2.0)], 2.0)
    keys = fleet_table(s, s.now, "-state:ready").order
    assert "gpu02/llama70b" in keys and "gpu01/llama70b" not in keys  # "ready" 1 s ago is not "ready" now
    assert fleet_table(s, s.now, "state:ready").order == ["gpu01", "gpu01/llama70b", "gpu01/mistral-tgi"]
    assert "ENGINES 1 hung · 2 ready · 3 unknown" in "".join(c.display for c in header_counts(s))


def _with_engine_stats(snap, engine_id: str, **stats):
    engines = tuple(
        replace(e, stats=replace(e.stats, **stats)) if e.id == engine_id else e for e in snap.engines
    )
    return replace(snap, engines=engines)


def test_an_unchanged_engine_keeps_its_row_and_a_changed_one_is_presented_anew() -> None:
    s1 = fleet(ok("gpu01", snap_at(1), 1.0))
    first = fleet_table(s1, s1.now)
    s2 = apply(s1, [ok("gpu01", _with_engine_stats(snap_at(2), "llama70b", ttft_p95_s=0.25), 2.0)], 2.0)
    second = fleet_table(s2, s2.now)
    assert second.rows["gpu01/mistral-tgi"] is first.rows["gpu01/mistral-tgi"]  # same inputs: the same tuple
    before, after = cells(first, "gpu01/llama70b"), cells(second, "gpu01/llama70b")
    assert before["ttft"] == ("164ms", "live") and after["ttft"] == ("250ms", "crit")  # over the 0.2 s target
    assert second.rows["gpu01/llama70b"][COL["kv"]] is first.rows["gpu01/llama70b"][COL["kv"]]  # 61% again
    row_memo._PREVIOUS.clear()  # what the same state gives with nothing remembered: equal rows
    assert fleet_table(s2, s2.now).rows == second.rows


def test_remembered_rows_never_carry_a_look_over() -> None:
    """A value equal to last round's but now stale (or an error) is shown stale (or ERR), not as before."""
    s = fleet(ok("gpu01", snap_at(1), 1.0))
    fleet_table(s, s.now)
    stale = apply(s, [ok("gpu01", snap_at(1), 9.0)], 9.0)
    assert cells(fleet_table(stale, stale.now), "gpu01/llama70b")["ttft"] == ("164ms", "stale")
    noscrape = replace(snap_at(2), engines=tuple(replace(e, stats=None) for e in snap_at(2).engines))
    err = apply(stale, [ok("gpu01", noscrape, 10.0)], 10.0)
    assert cells(fleet_table(err, err.now), "gpu01/llama70b")["ttft"] == ("ERR", "error")
    back = apply(err, [ok("gpu01", snap_at(3), 11.0)], 11.0)
    assert cells(fleet_table(back, back.now), "gpu01/llama70b")["ttft"] == ("164ms", "live")


def test_alert_evidence_has_one_format_everywhere() -> None:
    s = fleet(ok("gpu01", snap_at(1), 1.0))
    a = next(a for a in s.alerts if a.alert.evidence)
    evidence = {**a.alert.evidence, **{f"k{i}": 0.123456 for i in range(10)}}
    detail = alert_detail(replace(a, alert=replace(a.alert, evidence=evidence)))
    text = detail[-1][0]
    assert text == "\nevidence: " + format_evidence(evidence, limit=None)  # the widget's own formatter
    assert "k9=0.123" in text and "…" not in text  # every pair, 3 significant digits
    assert format_evidence(evidence).endswith("  …")  # the engine screen's list keeps its limit
