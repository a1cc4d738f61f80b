"""A percentile interpolated inside a wide histogram bucket is shown as the bucket's bound, never as a
precise number (issue 15 §5): the fleet row's TTFT p95, the detail's latency table and `llmconsole status`,
from the agent's ``stats.quantile_buckets``; without it (an older agent, a Prometheus source) the number
shows as before. Hostile ``quantile_buckets`` from an agent are one ``bad payload`` line, never a crash."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from agents.schema import EngineStats, HostSnapshot
from console.payload import PayloadError, decode_snapshot
from console.state import FleetState, apply
from console.status import render_json, render_table
from console.views import FLEET_COLUMNS, fleet_table
from console.views import rows as row_memo
from console.views.cells import quantile_bucket, value_cell
from console.views.percentiles import latency_table
from tests.console.conftest import SNAPSHOTS, T0, cfg, load_snapshot, ok

TTFT = next(i for i, (k, _) in enumerate(FLEET_COLUMNS) if k == "ttft")


def sglang_host(seq: int = 1, **stats: object) -> HostSnapshot:
    """The golden SGLang host (tests/data/snapshots/v1/quantiles.json), renumbered, with ``stats`` changed."""
    snap = load_snapshot("quantiles")
    (engine,) = snap.engines
    assert engine.stats is not None
    engine = replace(engine, stats=replace(engine.stats, **stats))
    return replace(snap, seq=seq, engines=(engine,))


def fleet_of(*snaps: HostSnapshot) -> FleetState:
    state = FleetState.initial(cfg("gpu05"), 0.0)
    for i, snap in enumerate(snaps, 1):
        state = apply(state, [ok("gpu05", snap, float(i))], float(i), T0)
    return state


def ttft_cell(state: FleetState) -> tuple[str, str]:
    cell = fleet_table(state, state.now).rows["gpu05/qwen-sg"][TTFT]
    return cell.display, cell.tone


def test_fleet_row_shows_a_p95_in_sglangs_first_bucket_as_its_bound() -> None:
    s = fleet_of(sglang_host())
    assert ttft_cell(s) == ("≤100ms", "live")  # p95 = 95 ms interpolated in [0, 100 ms]
    row = fleet_table(s, s.now).rows["gpu05/qwen-sg"]
    assert row[TTFT].sort_key == 0.095  # sorting still uses the number


def test_fleet_row_without_buckets_shows_the_number_as_before() -> None:
    """An older agent (no key) or a Prometheus source (no buckets): nothing is known, the number shows."""
    assert ttft_cell(fleet_of(sglang_host(quantile_buckets=None))) == ("95ms", "live")
    assert ttft_cell(fleet_of(sglang_host(quantile_buckets={}))) == ("95ms", "live")
    # the golden full host has no buckets: the same text the other fleet tests pin
    full = apply(FleetState.initial(cfg("gpu01"), 0.0), [ok("gpu01", load_snapshot(), 1.0)], 1.0, T0)
    assert fleet_table(full, full.now).rows["gpu01/llama70b"][TTFT].display == "164ms"


@pytest.mark.parametrize(
    ("bucket", "text"),
    [
        ((0.0, 0.1), "≤100ms"),  # first bucket: lower 0, always wide
        ((0.1, 0.2), "≤200ms"),  # 2× wide
        ((0.09852612533569335, 0.14778918800354002), "≤148ms"),  # TGI's 1.5× ladder: wide (±20 %)
        ((0.1, 0.125), "120ms"),  # a narrow bucket: the number means something
        ((30.0, None), ">30s"),  # the open +Inf bucket
    ],
)
def test_fleet_row_text_follows_the_bucket(bucket: tuple[float, float | None], text: str) -> None:
    s = fleet_of(
        sglang_host(ttft_p95_s=0.12 if text == "120ms" else 0.095, quantile_buckets={"ttft_p95_s": bucket})
    )
    assert ttft_cell(s)[0] == text


def test_same_value_in_another_bucket_is_presented_anew() -> None:
    """A remembered cell is reused only when its text is right: 10 s at the top of (5, 10] is "≤10s", the
    same 10 s read in the +Inf bucket is ">10s", and the number again once the agent sends no bucket."""
    row_memo._PREVIOUS.clear()
    s = fleet_of(sglang_host(1, ttft_p95_s=10.0, quantile_buckets={"ttft_p95_s": (5.0, 10.0)}))
    assert ttft_cell(s)[0] == "≤10s"
    s = apply(
        s,
        [ok("gpu05", sglang_host(2, ttft_p95_s=10.0, quantile_buckets={"ttft_p95_s": (10.0, None)}), 2.0)],
        2.0,
    )
    assert ttft_cell(s)[0] == ">10s"
    s = apply(s, [ok("gpu05", sglang_host(3, ttft_p95_s=10.0, quantile_buckets=None), 3.0)], 3.0)
    assert ttft_cell(s) == ("10s", "crit")  # over the 0.2 s target: the tone follows the number
    s = apply(s, [ok("gpu05", sglang_host(4, ttft_p95_s=10.0, quantile_buckets=None), 4.0)], 4.0)
    before = fleet_table(s, s.now).rows["gpu05/qwen-sg"][TTFT]
    s = apply(s, [ok("gpu05", sglang_host(5, ttft_p95_s=10.0, quantile_buckets=None), 5.0)], 5.0)
    assert fleet_table(s, s.now).rows["gpu05/qwen-sg"][TTFT] is before  # unchanged: the very same cell


def test_value_cell_with_a_bucket_keeps_the_rendering_rule() -> None:
    wide = (0.0, 0.1)
    assert value_cell(0.095, False, False, "s", bucket=wide).tone == "stale"  # not live: greyed, still "≤"
    assert value_cell(0.095, False, False, "s", bucket=wide).text == "≤100ms"
    assert value_cell(0.095, True, True, "s", bucket=wide).text == "ERR"
    assert value_cell(None, True, False, "s", bucket=wide).tone == "missing"
    previous = value_cell(0.095, True, False, "s", bucket=wide)
    assert value_cell(0.095, True, False, "s", bucket=wide, previous=previous) is previous
    assert value_cell(0.095, True, False, "s", previous=previous).text == "95ms"  # bucket gone: the number


def test_quantile_bucket_reads_the_wire_key() -> None:
    stats = EngineStats(ttft_p95_s=0.095, quantile_buckets={"ttft_p95_s": (0.0, 0.1)})
    assert quantile_bucket(stats, "ttft_p95_s") == (0.0, 0.1)
    assert quantile_bucket(stats, "ttft_p99_s") is None
    assert (
        quantile_bucket(EngineStats(), "ttft_p95_s") is None and quantile_bucket(None, "ttft_p95_s") is None
    )


def test_detail_latency_table_shows_each_percentile_by_its_bucket() -> None:
    stats = load_snapshot("quantiles").engines[0].stats
    lines = "".join(text for text, _ in latency_table(stats)).splitlines()
    assert lines[1].split() == ["TTFT", "≤100ms", "≤100ms", "≤100ms"]  # SGLang's first bucket: no precision
    assert lines[2].split() == ["TPOT/ITL", "≤15ms", "32ms", "70ms"]  # (30, 35], (60, 80] ms are narrow
    assert lines[3].split() == ["End-to-end", "≤2.00s", "≤4.00s", ">40m00s"]  # p99 in the open bucket
    assert lines[4].split() == ["Queue", "≤0ms", "≤5ms", "≤10ms"]
    plain = "".join(text for text, _ in latency_table(replace(stats, quantile_buckets=None))).splitlines()
    assert plain[1].split() == ["TTFT", "50ms", "95ms", "99ms"]  # no buckets known: the numbers


def test_status_text_shows_the_bound_and_json_keeps_number_and_bucket() -> None:
    s = fleet_of(sglang_host())
    text = render_table(s)
    line = next(line for line in text.splitlines() if line.strip().startswith("qwen-sg"))
    assert "≤100ms" in line and "95ms" not in line
    assert "≤X / >X = a TTFT p95 inside a wide histogram bucket" in text
    doc = json.loads(render_json(s))
    stats = doc["hosts"][0]["engines"][0]["stats"]
    assert stats["ttft_p95_s"] == 0.095 and stats["quantile_buckets"]["ttft_p95_s"] == [0.0, 0.1]
    older = render_table(fleet_of(sglang_host(quantile_buckets=None)))
    assert "95ms" in older and "≤X" not in older


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("≤100ms", "engines[0].stats.quantile_buckets: expected object or null, got '≤100ms'"),
        (
            {"ttft_p95_s": [0.2, 0.1]},
            "engines[0].stats.quantile_buckets.ttft_p95_s: lower bound 0.2 above upper bound 0.1",
        ),
        (
            {"ttft_p95_s": [None, 0.1]},
            "engines[0].stats.quantile_buckets.ttft_p95_s[0]: expected finite number, got None",
        ),
        (
            {"ttft_p95_s": ["0", {}]},
            "engines[0].stats.quantile_buckets.ttft_p95_s[0]: expected finite number, got '0'",
        ),
    ],
)
def test_a_hostile_agent_is_one_bad_payload_line(value: object, reason: str) -> None:
    doc = json.loads((SNAPSHOTS / "quantiles.json").read_text())
    doc["engines"][0]["stats"]["quantile_buckets"] = value
    with pytest.raises(PayloadError) as info:
        decode_snapshot(json.dumps(doc).encode())
    assert info.value.error.message == f"bad payload: {reason}"


def test_nan_and_unknown_entries_from_an_agent_are_read_by_the_rules() -> None:
    text = (SNAPSHOTS / "quantiles.json").read_text()
    doc = json.loads(text)
    doc["engines"][0]["stats"]["quantile_buckets"] = {
        "ttft_p95_s": [0, 0.1],
        "tpot_p95_s": [1, 2],
        "zz": None,
    }
    body = json.dumps(doc).replace(
        '"tpot_p95_s": [1, 2]', '"tpot_p95_s": [NaN, 2], "e2e_p99_s": [600, Infinity]'
    )
    snap = decode_snapshot(body.encode())
    stats = snap.engines[0].stats
    assert stats is not None and stats.quantile_buckets == {"ttft_p95_s": (0, 0.1), "e2e_p99_s": (600, None)}
