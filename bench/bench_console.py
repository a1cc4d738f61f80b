"""Console tick cost at fleet scale: 1,000 hosts × 4 engines, from the recorded fleet (tests/data/fleet).

Run: `python bench/bench_console.py [--hosts 1000] [--ticks 8]`

One tick is what the console does per poll round: reduce the round's 1,000 HostResults into the
FleetState (console.state.apply), present the fleet table (console.views.fleet_table) and bring the
on-screen table up to date — KeyedTable.sync, which diffs into update_cell calls — and then let Textual
settle the table (one pause: pending row measurements and a refresh), all headless under App.run_test.

The reference, measured in the same run on the same rows: the same reduce and presenters, then a
DataTable rebuilt from scratch (clear() + add_rows()) and settled the same way. Every tick feeds every
host a NEW snapshot (its next recorded one, renumbered), so every engine's numbers really change.
Both modes run with the console process's collector settings (console.gcpolicy). Times are CPU time of this process (time.process_time), so other load on the machine inflates them
less than wall time would (a loaded machine still slows every part). Prints the median of each part, both
totals, their ratio and whether the targets hold: a tick under TARGET_MS and at least TARGET_RATIO times
cheaper than the rebuild.

What keeps the tick cheap (see console.views.rows and widgets.keyed_table): a number equal to the one
the same engine showed last tick keeps its cell, repeated texts share their cells, an unchanged row is
the same tuple (skipped by identity), the table compares only what a cell looks like, and cells that look
alike share one renderable.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.text import Text  # noqa: E402
from textual.app import App, ComposeResult  # noqa: E402
from textual.widgets import DataTable  # noqa: E402

from agents.schema import HostSnapshot  # noqa: E402
from console import gcpolicy  # noqa: E402
from console.fixturesource import FixtureFleetSource  # noqa: E402
from console.fleet import HostResult  # noqa: E402
from console.settings import ConsoleConfig, HostConfig  # noqa: E402
from console.state import FleetState, apply  # noqa: E402
from console.views import FLEET_COLUMNS, RIGHT_COLUMNS, fleet_table  # noqa: E402
from widgets.keyed_table import KeyedTable  # noqa: E402

FLEET = ROOT / "tests" / "data" / "fleet"
TARGET_MS = 250.0
TARGET_RATIO = 5.0


def recorded_snapshots() -> list[HostSnapshot]:
    src = FixtureFleetSource.from_dir(FLEET)
    gpu01 = next(h for h in src.hosts if h.name == "gpu01")
    return gpu01.snapshots  # 4 engines each (vLLM, SGLang, TGI, a hung vLLM), ~900 snapshots


def rounds(snaps: list[HostSnapshot], hosts: int, ticks: int) -> list[list[HostResult]]:
    """Per tick, one new snapshot per host (its next recorded one, renumbered), received at t = tick."""
    out = []
    for t in range(ticks):
        results = []
        for i in range(hosts):
            s = snaps[(i * 7 + t) % len(snaps)]
            results.append(
                HostResult(f"h{i:04d}", replace(s, seq=t + 1, host=f"h{i:04d}"), None, 0.002, 100.0 + t)
            )
        out.append(results)
    return out


class Bench(App[None]):
    def __init__(self, table: DataTable) -> None:
        super().__init__()
        self.table = table

    def compose(self) -> ComposeResult:
        yield self.table


def as_text(cell) -> Text:
    return Text(cell.display, no_wrap=True, justify="left")


async def run_ticks(
    mode: str, config: ConsoleConfig, ticks: list[list[HostResult]]
) -> dict[str, list[float]]:
    table: DataTable = KeyedTable() if mode == "diff" else DataTable(cursor_type="row")
    app = Bench(table)
    times: dict[str, list[float]] = {"reduce": [], "present": [], "table": [], "settle": [], "total": []}
    with gcpolicy.applied() as settle:  # the console process's collector settings, in both modes
        await _ticks(mode, app, table, config, ticks, times, settle)
    return times


async def _ticks(
    mode: str,
    app: Bench,
    table: DataTable,
    config: ConsoleConfig,
    ticks: list[list[HostResult]],
    times: dict[str, list[float]],
    settle,
) -> None:
    async with app.run_test(size=(160, 45)) as pilot:
        if isinstance(table, KeyedTable):
            table.set_columns(FLEET_COLUMNS, right=RIGHT_COLUMNS)
        else:
            for key, label in FLEET_COLUMNS:
                table.add_column(label, key=key)
        state = FleetState.initial(config, 99.0)
        for n, results in enumerate(ticks):
            t0 = time.process_time()
            state = apply(state, results, 100.0 + n)
            t1 = time.process_time()
            view = fleet_table(state, state.now)
            t2 = time.process_time()
            if isinstance(table, KeyedTable):
                table.sync(view.rows, view.order, groups=view.groups)
            else:
                table.clear()
                table.add_rows([as_text(c) for c in view.rows[k]] for k in view.order)
            t3 = time.process_time()
            await pilot.pause()  # the table settles: pending measurements, one refresh
            t4 = time.process_time()
            if n == 0:
                settle()  # the console is up: what is alive now is not walked again
                continue  # the first tick fills an empty table in both modes
            for key, value in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0), strict=True):
                value_ms = value * 1000
                times[key].append(value_ms)
        assert table.row_count == len(view.order)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=1000)
    ap.add_argument("--ticks", type=int, default=8)
    ns = ap.parse_args()
    snaps = recorded_snapshots()
    config = ConsoleConfig(
        hosts=tuple(HostConfig(name=f"h{i:04d}", url="http://127.0.0.1:9300") for i in range(ns.hosts))
    )
    ticks = rounds(snaps, ns.hosts, ns.ticks + 1)
    rows = ns.hosts * (1 + len(snaps[0].engines))
    print(
        f"console tick: {ns.hosts} hosts x {len(snaps[0].engines)} engines = {rows} rows, "
        f"{ns.ticks} ticks, every host with a new snapshot each tick (median CPU ms)"
    )
    results = {}
    for mode in ("diff", "rebuild"):
        results[mode] = asyncio.run(run_ticks(mode, config, ticks))
        med = {k: statistics.median(v) for k, v in results[mode].items()}
        label = "KeyedTable.sync (diff)   " if mode == "diff" else "clear() + add_rows (ref) "
        print(
            f"  {label} reduce {med['reduce']:6.1f}  present {med['present']:6.1f}  table {med['table']:7.1f}"
            f"  settle {med['settle']:7.1f}  = tick {med['total']:7.1f}"
        )
    diff = statistics.median(results["diff"]["total"])
    ref = statistics.median(results["rebuild"]["total"])
    table_diff = statistics.median(
        [a + b for a, b in zip(results["diff"]["table"], results["diff"]["settle"], strict=True)]
    )
    table_ref = statistics.median(
        [a + b for a, b in zip(results["rebuild"]["table"], results["rebuild"]["settle"], strict=True)]
    )
    print(
        f"tick: {diff:.1f} ms vs rebuild {ref:.1f} ms: {ref / diff:.1f}x cheaper; "
        f"table update alone: {table_diff:.1f} vs {table_ref:.1f} ms: {table_ref / table_diff:.1f}x"
    )
    met = diff < TARGET_MS and ref / diff >= TARGET_RATIO
    print(
        f"target: tick < {TARGET_MS:.0f} ms and >= {TARGET_RATIO:.0f}x cheaper than the rebuild: {'met' if met else 'MISSED'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
