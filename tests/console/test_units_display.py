"""One unit per metric, labels everywhere, no false precision: the fleet's durations follow the one rule
(agents.schema.units), percentiles in a wide bucket show the bucket, a hung engine's values are not shown as
current, the host row's fields are labelled and a host and its engines say one age."""

from __future__ import annotations

from dataclasses import replace

from agents.schema import Alert
from agents.schema.units import age, duration
from console.state import FleetState, apply
from console.views import FLEET_COLUMNS, age_text, fleet_table, quantile_text, seconds_text
from tests.console.conftest import T0, cfg, down, ok, snap_at

COL = {k: i for i, (k, _) in enumerate(FLEET_COLUMNS)}


def cell(t, key: str, col: str) -> tuple[str, str]:
    c = t.rows[key][COL[col]]
    return c.display, c.tone


def with_engine(snap, engine_id: str, **changes):
    return replace(
        snap, engines=tuple(replace(e, **changes) if e.id == engine_id else e for e in snap.engines)
    )


def with_stats(snap, engine_id: str, **stats):
    e = snap.engine(engine_id)
    return with_engine(snap, engine_id, stats=replace(e.stats, **stats))


def one(snap, now: float = 1.0) -> FleetState:
    return apply(FleetState.initial(cfg("gpu01"), 0.0), [ok("gpu01", snap, now)], now, T0)


def test_the_console_formatters_are_the_one_rule() -> None:
    for s in (
        0,
        0.0004,
        0.164,
        0.9996,
        1.0,
        1.239,
        9.999,
        38.4,
        78.0,
        192.0,
        7500.0,
        3 * 86400 + 4 * 3600,
        None,
    ):
        assert seconds_text(s) == duration(s), s
        assert age_text(s) == age(s), s
    assert seconds_text(78.0) == "1m18s" and age_text(3 * 86400 + 4 * 3600) == "3d04h"


def test_ttft_in_the_fleet_row_uses_the_rule_at_every_magnitude() -> None:
    for value, text in ((0.164, "164ms"), (1.24, "1.24s"), (38.6, "38s"), (78.0, "1m18s")):
        s = one(with_stats(snap_at(1), "llama70b", ttft_p95_s=value))
        assert cell(fleet_table(s, s.now), "gpu01/llama70b", "ttft")[0] == text


def test_a_percentile_in_a_wide_bucket_shows_the_bucket_not_the_interpolation() -> None:
    assert quantile_text(0.095, (0.0, 0.1)) == "≤100ms"  # p95 interpolated inside [0, 100ms]
    assert quantile_text(0.8, (0.5, 1.0)) == "≤1.00s"  # 1.0 ≥ 1.5 × 0.5: wide
    assert quantile_text(0.105, (0.1, 0.12)) == "105ms"  # a narrow bucket: the number means something
    assert quantile_text(42.0, (30.0, float("inf"))) == ">30s"  # in the open last bucket
    assert quantile_text(42.0, (30.0, None)) == ">30s"  # JSON has no infinity: null
    assert quantile_text(0.095) == "95ms" and quantile_text(None) == "?"


def test_a_hung_engine_shows_its_windowed_values_as_not_current() -> None:
    snap = with_engine(
        snap_at(1),
        "llama70b",
        state="hung",
        alerts=(Alert(code="ENGINE_HUNG", severity="critical", since="2025-06-03T03:10:00Z"),),
    )
    t = fleet_table(one(snap), 1.0)
    assert cell(t, "gpu01/llama70b", "state") == ("hung (values stale)", "crit")
    assert cell(t, "gpu01/llama70b", "ttft") == ("164ms", "stale")  # from requests before the hang
    assert cell(t, "gpu01/llama70b", "gen")[1] == "stale"
    assert cell(t, "gpu01/llama70b", "queue")[1] != "stale"  # the queue is a gauge: current
    # a zero rate is the hang's own truth: shown as zero, and nothing else is stale
    zero = with_stats(snap, "llama70b", generation_tokens_per_s=0.0, ttft_p95_s=None)
    t = fleet_table(one(zero), 1.0)
    assert cell(t, "gpu01/llama70b", "gen") == ("0", "zero") and cell(t, "gpu01/llama70b", "state") == (
        "hung",
        "crit",
    )
    # the same numbers on a healthy engine are live
    t = fleet_table(one(snap_at(1)), 1.0)
    assert (
        cell(t, "gpu01/llama70b", "ttft") == ("164ms", "live")
        and cell(t, "gpu01/llama70b", "state")[0] == "ready"
    )


def test_kv_cell_says_when_it_fills_and_only_while_live() -> None:
    snap = with_engine(snap_at(1), "llama70b", kv_eta_s=252.0)
    s = one(snap)
    assert cell(fleet_table(s, s.now), "gpu01/llama70b", "kv") == ("61% →4m12s", "live")
    assert cell(fleet_table(s, s.now), "gpu01/qwen-sg", "kv")[0].count("→") == 0  # no ETA: not rising
    s = apply(s, [ok("gpu01", snap, 9.0)], 9.0)  # the same seq again: stale
    assert cell(fleet_table(s, s.now), "gpu01/llama70b", "kv") == ("61%", "stale")


def test_one_age_per_host_and_labelled_host_fields() -> None:
    s = apply(FleetState.initial(cfg("gpu01"), 0.0), [ok("gpu01", snap_at(1), 1.0)], 1.0, T0)
    s = apply(s, [down("gpu01", 12.0)], 12.0, T0 + 12)  # the last snapshot arrived 11 s ago, the failure now
    t = fleet_table(s, s.now)
    assert cell(t, "gpu01", "state") == ("unreachable (11s ago)", "crit")
    assert cell(t, "gpu01/llama70b", "state") == ("ready (11s ago)", "stale")
    never = apply(FleetState.initial(cfg("gpu01"), 0.0), [down("gpu01", 1.0)], 5.0, T0)
    assert cell(fleet_table(never, never.now), "gpu01", "state")[0].startswith("unreachable (for ")
    # the summed rate of the host's engines says how many of them it covers
    hung = with_stats(snap_at(1), "qwen-sg", generation_tokens_per_s=5.0)
    slow = with_engine(hung, "mistral-tgi", stats_age_s=30.0)
    gen = cell(fleet_table(one(slow), 1.0), "gpu01", "gen")[0]
    assert gen.endswith("(2/3 live)"), gen


def test_a_host_without_gpu_data_says_so_in_words_not_in_the_raw_source_string() -> None:
    from console.views.cells import gpu_source_cell

    off = gpu_source_cell("unavailable: disabled in config")  # gpu_source = "none": a choice, not a fault
    assert (off.display, off.tone) == ("no GPU data", "missing")
    broken = gpu_source_cell("unavailable: NVML: driver not loaded")
    assert (broken.display, broken.tone) == (
        "GPUs: n/a",
        "warn",
    ) and broken.sort_key == "unavailable: NVML: driver not loaded"
    assert gpu_source_cell("simulated").display == "SIMULATED" and gpu_source_cell("nvml").display == "nvml"
