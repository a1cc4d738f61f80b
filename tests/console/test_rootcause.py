"""Root cause first: alerts of one fault grouped with the cause leading (pure), the fleet row showing the
cause, the Alerts screen's groups and flapping counts, crash-looping engines and the ``alert:any`` filter."""

from __future__ import annotations

from dataclasses import replace

from agents.schema import ALERT_CODES, Alert
from console.state import FleetState, apply
from console.views import (
    FLEET_COLUMNS,
    alert_detail,
    alert_entries,
    alerts_cell,
    engine_state,
    entry_cells,
    fleet_table,
    group_alerts,
    header_counts,
    parse_filter,
    root_causes,
)
from console.views.filters import matches
from console.views.rootcause import CAUSED_BY
from tests.console.conftest import T0, cfg, ok, snap_at

COL = {k: i for i, (k, _) in enumerate(FLEET_COLUMNS)}


def alert(code: str, severity: str = "warning", since: str = "2025-06-03T03:10:00Z", **kw: object) -> Alert:
    return Alert(code=code, severity=severity, since=since, summary=f"{code} summary", **kw)  # type: ignore[arg-type]


KV_FAULT = (  # as the agent lists them: the loudest (critical) consequence first
    alert("HEALTH_LIES", "critical", "2025-06-03T03:12:00Z"),
    alert("PREEMPTION_STORM", since="2025-06-03T03:10:30Z"),
    alert("TTFT_SLO", since="2025-06-03T03:11:00Z"),
    alert("KV_PRESSURE", since="2025-06-03T03:10:00Z"),
)


# --- the grouping (pure) ------------------------------------------------------------------------------------


def test_the_causal_map_is_acyclic_and_names_only_known_codes() -> None:
    for code, causes in CAUSED_BY.items():
        assert code in ALERT_CODES and all(c in ALERT_CODES for c in causes), code
    visiting: set[str] = set()
    done: set[str] = set()

    def walk(code: str) -> None:
        assert code not in visiting, f"cycle through {code}"
        if code in done:
            return
        visiting.add(code)
        for cause in CAUSED_BY.get(code, ()):
            walk(cause)
        visiting.discard(code)
        done.add(code)

    for code in CAUSED_BY:
        walk(code)


def test_kv_exhaustion_is_one_fault_led_by_kv_pressure() -> None:
    (group,) = group_alerts(KV_FAULT)
    assert group.cause.code == "KV_PRESSURE"
    assert [(d, a.code) for d, a in group.consequences] == [
        (1, "PREEMPTION_STORM"),
        (2, "TTFT_SLO"),
        (3, "HEALTH_LIES"),
    ]
    assert group.worst == 2  # the group is as bad as its worst member (HEALTH_LIES is critical)


def test_a_hang_is_one_fault_and_unrelated_alerts_stay_apart() -> None:
    groups = group_alerts(
        (alert("DANGEROUS_FLAG"), alert("HEALTH_LIES", "critical"), alert("ENGINE_HUNG", "critical"))
    )
    assert [(g.cause.code, [a.code for _, a in g.consequences]) for g in groups] == [
        ("ENGINE_HUNG", ["HEALTH_LIES"]),  # the critical fault first
        ("DANGEROUS_FLAG", []),
    ]


def test_chains_from_the_map() -> None:
    def tree(*codes: str) -> list[tuple[str, list[str]]]:
        return [
            (g.cause.code, [a.code for _, a in g.consequences])
            for g in group_alerts([alert(c) for c in codes])
        ]

    assert tree("METRICS_STALE", "ENGINE_DOWN", "CRASH_LOOP") == [
        ("CRASH_LOOP", ["ENGINE_DOWN", "METRICS_STALE"])
    ]
    assert tree("ENGINE_HUNG", "RANK_DIVERGENCE", "HEALTH_LIES") == [
        ("RANK_DIVERGENCE", ["ENGINE_HUNG", "HEALTH_LIES"])
    ]
    assert tree("HEALTH_LIES", "FRONTEND_HUNG") == [("FRONTEND_HUNG", ["HEALTH_LIES"])]
    assert tree("QUEUE_GROWING", "ADMISSION_STALLED") == [("ADMISSION_STALLED", ["QUEUE_GROWING"])]
    assert tree("METRICS_UNREACHABLE", "ENGINE_DOWN") == [("ENGINE_DOWN", ["METRICS_UNREACHABLE"])]
    # a consequence alone is its own cause (nothing to fold it under)
    assert tree("HEALTH_LIES") == [("HEALTH_LIES", [])]
    assert tree("QUEUE_GROWING", "TTFT_SLO") == [("QUEUE_GROWING", ["TTFT_SLO"])]


def test_one_alert_per_code_and_root_causes() -> None:
    twice = (
        alert("KV_PRESSURE"),
        alert("KV_PRESSURE", since="2025-06-03T03:20:00Z"),
        alert("PREEMPTION_STORM"),
    )
    (group,) = group_alerts(twice)
    assert group.cause is twice[0] and len(group.alerts) == 2
    assert [a.code for a in root_causes(KV_FAULT + (alert("GPU_THERMAL"),))] == ["KV_PRESSURE", "GPU_THERMAL"]
    assert group_alerts(()) == []


# --- the fleet row and the header ---------------------------------------------------------------------------


def test_the_row_shows_the_cause_not_the_loudest_consequence() -> None:
    cell = alerts_cell(KV_FAULT)
    assert (cell.text, cell.tone) == ("KV_PRESSURE +3", "crit")  # tone of the worst: the fault is critical
    assert alerts_cell(KV_FAULT, acknowledged=4).tone == "dim"


def fleet_with(**engines: tuple[str, tuple[Alert, ...]]) -> FleetState:
    """The golden snapshot with engine id → (state, alerts) replaced."""
    base = snap_at(1)
    new = tuple(
        replace(e, state=engines[e.id][0], alerts=engines[e.id][1]) if e.id in engines else e
        for e in base.engines
    )
    return apply(
        FleetState.initial(cfg("gpu01"), 0.0), [ok("gpu01", replace(base, engines=new), 1.0)], 1.0, T0
    )


def test_a_crash_looping_engine_reads_crash_loop_whatever_its_momentary_state() -> None:
    loop = (alert("CRASH_LOOP", "critical"),)
    s = fleet_with(llama70b=("ready", loop))
    t = fleet_table(s, s.now)
    state = t.rows["gpu01/llama70b"][COL["state"]]
    assert (state.display, state.tone) == ("crash-loop", "crit")
    counts = "".join(c.display for c in header_counts(s))
    assert "1 crash-loop" in counts and "1 ready" in counts  # mistral-tgi alone is ready
    assert "gpu01/llama70b" in fleet_table(s, s.now, "-state:ready").order  # never filtered as ready
    assert "gpu01/llama70b" not in fleet_table(s, s.now, "state:ready").order
    assert fleet_table(s, s.now, "state:crash-loop").order == ["gpu01", "gpu01/llama70b"]
    # a state that already says worse, more precisely, stays (it is never "ready" either)
    hung = fleet_with(llama70b=("hung", loop))
    assert engine_state(hung.hosts["gpu01"].snapshot.engine("llama70b")) == "hung"  # type: ignore[union-attr]
    assert engine_state(s.hosts["gpu01"].snapshot.engine("mistral-tgi")) == "ready"  # type: ignore[union-attr]


def test_alert_any_keeps_every_engine_with_an_active_alert() -> None:
    s = fleet_with(llama70b=("ready", ()))  # qwen-sg: ENGINE_HUNG, HEALTH_LIES; mistral-tgi: TTFT_SLO
    keys = fleet_table(s, s.now, "alert:any").order
    # the golden host carries host-level alerts (GPU_THERMAL, ORPHAN_GPU_MEMORY): they count for its engines
    assert keys == ["gpu01", "gpu01/llama70b", "gpu01/qwen-sg", "gpu01/mistral-tgi"]
    quiet = replace(s.hosts["gpu01"].snapshot, alerts=())  # type: ignore[arg-type]
    s = apply(s, [ok("gpu01", replace(quiet, seq=quiet.seq + 1), 2.0)], 2.0, T0 + 1)
    assert fleet_table(s, s.now, "alert:any").order == ["gpu01", "gpu01/qwen-sg", "gpu01/mistral-tgi"]
    assert fleet_table(s, s.now, "-alert:any").order == ["gpu01", "gpu01/llama70b"]
    assert fleet_table(s, s.now, "alert:any -state:hung").order == ["gpu01", "gpu01/mistral-tgi"]
    assert fleet_table(s, s.now, "alert:health").order == [
        "gpu01",
        "gpu01/qwen-sg",
    ]  # codes by prefix, as before
    h = s.hosts["gpu01"]
    assert matches(parse_filter("alert:ANY"), h, h.snapshot.engine("qwen-sg"))  # type: ignore[union-attr]


# --- the Alerts screen's rows -------------------------------------------------------------------------------


def fleet_alerts(engine_alerts: tuple[Alert, ...], recent_rounds: list[tuple[Alert, ...]] = ()) -> FleetState:  # type: ignore[assignment]
    """A fleet whose llama70b raised and cleared ``recent_rounds`` before it has ``engine_alerts``."""
    base = snap_at(1)
    s = FleetState.initial(cfg("gpu01"), 0.0)
    now, seq = 1.0, 1
    for alerts in [*recent_rounds, engine_alerts]:
        engines = tuple(
            replace(e, alerts=alerts) if e.id == "llama70b" else replace(e, alerts=()) for e in base.engines
        )
        s = apply(s, [ok("gpu01", replace(base, seq=seq, engines=engines, alerts=()), now)], now, T0 + now)
        now, seq = now + 1, seq + 1
    return s


def test_alert_groups_lead_with_the_cause_and_indent_consequences() -> None:
    s = fleet_alerts(KV_FAULT)
    entries = alert_entries(s)
    assert [(e.depth, e.alert.alert.code) for e in entries] == [
        (0, "KV_PRESSURE"),
        (1, "PREEMPTION_STORM"),
        (2, "TTFT_SLO"),
        (3, "HEALTH_LIES"),
    ]
    assert entries[3].cause is entries[0].alert
    codes = [e.key for e in entries]
    assert len(set(codes)) == 4
    cells = [entry_cells(s, e) for e in entries]
    assert [c[2].display for c in cells] == [
        "KV_PRESSURE",
        "└ PREEMPTION_STORM",
        "  └ TTFT_SLO",
        "    └ HEALTH_LIES",
    ]
    detail = "".join(text for text, _ in alert_detail(entries[3].alert, entries[3]))
    assert "consequence of KV_PRESSURE" in detail


def test_a_flapping_alert_is_one_row_with_its_count() -> None:
    def queue(since: str, **kw: object) -> tuple[Alert, ...]:
        return (alert("QUEUE_GROWING", since=since, **kw),)

    rounds = []
    for i in range(4):  # raised and cleared four times (each raise a new ``since``), then raised again
        rounds += [queue(f"2025-06-03T03:1{i}:00Z"), ()]
    s = fleet_alerts(queue("2025-06-03T03:15:00Z"), rounds)
    assert len(s.recent) == 4 and len(s.alerts) == 1
    entries = alert_entries(s)
    assert len(entries) == 1 and entries[0].count == 5 and entries[0].alert.active
    assert entry_cells(s, entries[0])[4].display == "active · flapping ×5"
    # the agent's own count wins when it saw more raises than the console did
    s = fleet_alerts(queue("2025-06-03T03:15:00Z", raised_count=9))
    (entry,) = alert_entries(s)
    assert entry.count == 9 and "raised 9× recently (flapping)" in "".join(
        t for t, _ in alert_detail(entry.alert, entry)
    )
    # cleared for good: one row, with how often it was raised
    s = fleet_alerts((), rounds)
    (entry,) = alert_entries(s)
    assert not entry.alert.active and entry.count == 4
    assert entry_cells(s, entry)[4].display.endswith("· flapping ×4")
    # a single raise says nothing about flapping
    s = fleet_alerts(queue("2025-06-03T03:15:00Z"))
    (entry,) = alert_entries(s)
    assert entry.count == 1 and entry_cells(s, entry)[4].display == "active"
