"""One console refresh through a real Prometheus, at fleet scale: 1,000 hosts × 4 engines (and 100 hosts).

Run: `python bench/bench_prometheus.py [--hosts 1000] [--small 100] [--refreshes 8]`

The fleet is synthetic but speaks the agents' own exposition: every host is a recorded snapshot
(tests/data/fleet, 4 engines, 4 GPUs) renamed, rendered by the agent's exporter (agents.exporter) at 21
moments 15 s apart (5 minutes; seq, timestamps and stats move at each), with the ``instance`` and ``job``
labels and the ``up`` series a real scrape adds, written as one OpenMetrics file of every exported family,
backfilled with `promtool tsdb create-blocks-from openmetrics` into a temporary data directory, and served
by Debian's `prometheus` started on it (by PID, stopped at the end) — not a thousand processes.

One refresh is what the console does per Prometheus refresh: PrometheusFleetSource.poll() (the instant
queries for the whole fleet and their reading into snapshots), the reduce (console.state.apply), the
presenters (console.views.fleet_table) and the table update (KeyedTable.sync, then one pause for Textual to
settle, as bench/bench_console.py measures it). Each host's scrapes are offset within the 15 s interval, as
Prometheus spreads its targets. The every-host-new refreshes query 15 s steps (every host has a new
snapshot at each: a console slower than the scrape interval); the steady-state refreshes then query every
2 s (the source's default refresh_s: about 2/15 of the hosts with news at each) over two intervals and
every 5 s (about a third) over the last one. Printed: median wall time of the refresh and
of each part (with ranges), refreshes with and without the identity tier (console.promident: engine_info
and GPU totals, read every few refreshes), the console's CPU time and Prometheus's CPU time per refresh
(the machine may be shared: CPU time grows less with other load than wall time), series received and
HTTP requests per refresh at both fleet sizes (the requests must be equal), the first refresh with the
graphs' backfill (query_range), the steady state, a refresh between two scrapes (no host has news: one
small query), and
the ratios of the refresh to the 250 ms target and to the reference measured in the same run: the
direct-poll refresh of the same fleet (decode every host's /v1/snapshot JSON, reduce, present, table
update — the network left out, which favours the reference). Both run with the console's collector
settings (console.gcpolicy), and the typed decoding of the answers is compared with ``json.loads`` plus
the general reader on the biggest answer of the last refresh.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import fields, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psutil  # noqa: E402
from textual.pilot import Pilot  # noqa: E402

from agents.exporter import make_registry  # noqa: E402
from agents.schema import EngineStats, HostSnapshot, rfc3339, to_json  # noqa: E402
from bench.bench_console import Bench, recorded_snapshots  # noqa: E402
from console import gcpolicy  # noqa: E402
from console.fleet import HostResult  # noqa: E402
from console.payload import decode_snapshot  # noqa: E402
from console.promapi import _fast_vector, _samples  # noqa: E402
from console.promquery import fleet_queries  # noqa: E402
from console.promsource import PrometheusFleetSource, _gc_paused  # noqa: E402
from console.settings import ConsoleConfig, PrometheusConfig  # noqa: E402
from console.state import FleetState, apply  # noqa: E402
from console.views import FLEET_COLUMNS, RIGHT_COLUMNS, FleetTable, fleet_table  # noqa: E402
from widgets.keyed_table import KeyedTable  # noqa: E402

STEP_S = 15
POINTS = 21  # 5 minutes: within Prometheus's 5-minute lookback at every step queried
# The steady state: (name, refresh interval, scrape intervals it spans), the last span ending at the last
# step: the Prometheus source's default refresh (2 s: about 2/15 of the hosts with news at each) over two
# intervals, then a refresh every 5 s (a third) over the last one.
STEADY = (("steady", PrometheusConfig(name="", url="").refresh_s, 2), ("steady5", 5.0, 1))
STEADY_STEPS = sum(span for _, _, span in STEADY)
TARGET_MS = 250.0


# --- the synthetic fleet ---------------------------------------------------------------------------------


def host_at(base: HostSnapshot, host: str, n: int, t: float) -> HostSnapshot:
    """Host ``host`` at step ``n`` (time ``t``): the base snapshot renamed, seq n+1, stats scaled a little."""
    k = 1.0 + 0.2 * math.sin(n + len(host))

    def scaled(stats: EngineStats) -> EngineStats:
        values = {f.name: getattr(stats, f.name) for f in fields(EngineStats)}
        return EngineStats(**{key: v * k if isinstance(v, float) else v for key, v in values.items()})

    engines = tuple(replace(e, stats=scaled(e.stats)) if e.stats is not None else e for e in base.engines)
    return replace(base, host=host, seq=n + 1, taken_at=rfc3339(t - 0.3), engines=engines)


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def write_openmetrics(path: Path, hosts: int, end: float) -> tuple[list[float], list[HostSnapshot]]:
    """The fleet's series as OpenMetrics with timestamps (each series contiguous, oldest sample first),
    with the labels a scrape adds (``instance``, ``job``) and each target's ``up``, host i scraped
    ``STEP_S * i / hosts`` before each step, as Prometheus spreads its targets' scrapes;
    returns the step times and each host's base snapshot (the direct-poll reference's input)."""
    snaps = recorded_snapshots()
    times = [end - STEP_S * (POINTS - 1 - n) for n in range(POINTS)]
    families: dict[str, tuple[str, list[str]]] = {}
    bases: list[HostSnapshot] = []
    for i in range(hosts):
        base = snaps[(i * 7) % len(snaps)]
        name = f"h{i:04d}"
        bases.append(replace(base, host=name))
        series: dict[tuple[str, str, str], list[str]] = {}
        spread = STEP_S * i / hosts  # Prometheus spreads its targets' scrapes over the interval
        target = {"instance": f"10.{i // 250}.{i % 250}.7:9300", "job": "llmconsole"}  # what a scrape adds
        up = ",".join(f'{k}="{v}"' for k, v in sorted(target.items()))
        for n, step in enumerate(times):
            t = step - spread
            snap = host_at(base, name, n, t)
            series.setdefault(("up", "gauge", f"up{{{up}}}"), []).append(f"1.0 {t:.3f}")
            for metric in make_registry(lambda snap=snap: snap).collect():
                for s in metric.samples:
                    pairs = sorted({**s.labels, **target}.items())
                    labels = ",".join(f'{k}="{_escape(v)}"' for k, v in pairs)
                    series.setdefault((metric.name, metric.type, f"{s.name}{{{labels}}}"), []).append(
                        f"{float(s.value)!r} {t:.3f}"
                    )
        for (fam, kind, key), values in series.items():
            families.setdefault(fam, (kind, []))[1].extend(f"{key} {v}" for v in values)
    with open(path, "w") as f:
        for fam, (kind, lines) in families.items():
            f.write(f"# TYPE {fam} {kind}\n")
            f.write("\n".join(lines))
            f.write("\n")
        f.write("# EOF\n")
    return times, bases


# --- a real Prometheus on the backfilled blocks ---------------------------------------------------------


class Server:
    def __init__(self, data: Path, workdir: Path) -> None:
        self.data, self.dir = data, workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> None:
        binary = shutil.which("prometheus") or "/usr/bin/prometheus"
        config = self.dir / "prometheus.yml"
        config.write_text("global:\n  scrape_interval: 15s\nscrape_configs: []\n")
        for _attempt in range(3):
            import socket

            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            self.url = f"http://127.0.0.1:{port}"
            log = open(self.dir / "prometheus.log", "ab")  # noqa: SIM115 - closed with the process
            self.proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={self.data}",
                    "--log.level=warn",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--storage.tsdb.retention.time=30d",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    if httpx.get(self.url + "/-/ready", timeout=2, trust_env=False).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.3)
            self.stop()
        raise SystemExit(f"prometheus did not start: {(self.dir / 'prometheus.log').read_text()[-2000:]}")

    def cpu_s(self) -> float:
        assert self.proc is not None
        t = psutil.Process(self.proc.pid).cpu_times()
        return t.user + t.system

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def fleet_server(hosts: int, root: Path) -> tuple[Server, list[float], list[HostSnapshot]]:
    om = root / f"fleet{hosts}.om"
    t0 = time.monotonic()
    times, last = write_openmetrics(om, hosts, float(int(time.time())))
    t1 = time.monotonic()
    data = root / f"data{hosts}"
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(om), str(data)],
        check=True,
        capture_output=True,
        timeout=900,
    )
    size = om.stat().st_size
    om.unlink()
    t2 = time.monotonic()
    server = Server(data, root)
    server.start()
    print(
        f"  {hosts} hosts: OpenMetrics {size / 1e6:.0f} MB written in {t1 - t0:.1f} s, "
        f"promtool backfill {t2 - t1:.1f} s, prometheus ready in {time.monotonic() - t2:.1f} s"
    )
    return server, times, last


# --- measuring ---------------------------------------------------------------------------------------------


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


PROM_KEYS = (
    "poll",
    "queries",
    "reduce",
    "present",
    "table",
    "total",
    "cpu",
    "poll_cpu",
    "prom_cpu",
    "requests",
    "first",
    "first_requests",
    "series",
    "idle",
    "idle_cpu",
    "idle_requests",
    "received",
    "read",
    "identity",
    "ahead",
    *(
        f"{name}{part}"
        for name, _, _ in STEADY
        for part in ("", "_cpu", "_prom_cpu", "_changed", "_requests")
    ),
)


async def _first_contact(
    prom: PrometheusConfig, times: list[float], refreshes: int, out: dict[str, list[float]]
) -> FleetState:
    """First contact: every host new, graphs backfilled with query_range."""
    first = PrometheusFleetSource(prom, fetch_history=True, full=False)
    first.query_time = lambda: times[-refreshes - 2 - STEADY_STEPS]
    before = first.requests
    t0 = time.perf_counter()
    results = await first.poll()
    state = apply(
        FleetState.initial(ConsoleConfig(), time.monotonic()), results, time.monotonic(), time.time()
    )
    out["first"].append(time.perf_counter() - t0)
    out["first_requests"].append(first.requests - before)
    out["series"].append(sum(len(r.history) for r in results))
    await first.aclose()
    return state


async def _live_refreshes(
    source: PrometheusFleetSource,
    server: Server,
    state: FleetState,
    table: KeyedTable,
    pilot: Pilot,
    times: list[float],
    refreshes: int,
    out: dict[str, list[float]],
) -> FleetState:
    """One refresh per 15 s step (every host has news at each), each part timed, ending STEADY_STEPS steps
    before the last (the steady refreshes take those); the first fills the table from scratch, so is not
    kept."""
    for n in range(refreshes + 1):
        source.query_time = lambda n=n: times[-refreshes - 2 - STEADY_STEPS + 1 + n]
        before, pc0 = source.requests, server.cpu_s()
        c0, t0 = time.process_time(), time.perf_counter()
        results = await source.poll()
        t1, c_poll = time.perf_counter(), time.process_time()
        state = apply(state, results, time.monotonic(), time.time())
        t2 = time.perf_counter()
        view = fleet_table(state, state.now)
        t3 = time.perf_counter()
        table.sync(view.rows, view.order, groups=view.groups)
        await pilot.pause()
        t4 = time.perf_counter()
        c1, pc1 = time.process_time(), server.cpu_s()
        assert source.problems() == [], source.problems()
        assert all(r.snapshot is not None for r in results) and results, "every host has a snapshot"
        if n == 0:
            continue  # the first refresh of this source fills the table's rows from scratch
        for key, value in (
            ("poll", t1 - t0),
            ("queries", source.last_refresh["queries"]),
            ("reduce", t2 - t1),
            ("present", t3 - t2),
            ("table", t4 - t3),
            ("total", t4 - t0),
            ("cpu", c1 - c0),
            ("poll_cpu", c_poll - c0),
            ("prom_cpu", pc1 - pc0),
            ("requests", source.requests - before),
            ("received", source.last_refresh["series"]),
            ("read", source.last_refresh["read"]),
            ("identity", source.last_refresh["identity"]),
            ("ahead", source.last_refresh["ahead"]),
        ):
            out[key].append(value)
    return state


async def _refresh(
    source: PrometheusFleetSource, state: FleetState, table: KeyedTable, pilot: Pilot
) -> tuple[FleetState, FleetTable]:
    """One refresh as the console makes it: poll, reduce, present, update the table and let it settle."""
    results = await source.poll()
    state = apply(state, results, time.monotonic(), time.time())
    view = fleet_table(state, state.now)
    table.sync(view.rows, view.order, groups=view.groups)
    await pilot.pause()
    return state, view


async def _steady_refreshes(
    source: PrometheusFleetSource,
    server: Server,
    state: FleetState,
    table: KeyedTable,
    pilot: Pilot,
    times: list[float],
    out: dict[str, list[float]],
) -> FleetState:
    """The STEADY phases in turn: a refresh every ``every`` s over ``span`` scrape intervals; each finds
    the hosts scraped since the previous one (about every / STEP_S of them) with news."""
    start = times[-1 - STEADY_STEPS]
    for name, every, span in STEADY:
        k = 1
        while k * every <= span * STEP_S:
            source.query_time = lambda k=k, start=start, every=every: start + k * every
            before, pc0 = source.requests, server.cpu_s()
            c0, t0 = time.process_time(), time.perf_counter()
            state, _ = await _refresh(source, state, table, pilot)
            out[name].append(time.perf_counter() - t0)
            out[f"{name}_cpu"].append(time.process_time() - c0)
            out[f"{name}_prom_cpu"].append(server.cpu_s() - pc0)
            out[f"{name}_changed"].append(source.last_refresh["changed"])
            out[f"{name}_requests"].append(source.requests - before)
            assert source.problems() == [], source.problems()
            k += 1
        start += span * STEP_S
    return state


async def _idle_refreshes(
    source: PrometheusFleetSource,
    server: Server,
    state: FleetState,
    table: KeyedTable,
    pilot: Pilot,
    out: dict[str, list[float]],
) -> FleetTable:
    """Three refreshes between two scrapes (no host has a new snapshot); the last view presented."""
    for _ in range(3):
        before, pc0 = source.requests, server.cpu_s()
        c0, t0 = time.process_time(), time.perf_counter()
        state, view = await _refresh(source, state, table, pilot)
        out["idle"].append(time.perf_counter() - t0)
        out["idle_cpu"].append(time.process_time() - c0 + server.cpu_s() - pc0)
        out["idle_requests"].append(source.requests - before)
    return view


async def measure_prometheus(server: Server, times: list[float], refreshes: int) -> dict[str, list[float]]:
    prom = PrometheusConfig(name="bench", url=server.url, match="", refresh_s=0.001, stale_after_s=60)
    out: dict[str, list[float]] = {k: [] for k in PROM_KEYS}
    table = KeyedTable()
    app = Bench(table)
    with gcpolicy.applied() as settle:
        async with app.run_test(size=(160, 45)) as pilot:
            table.set_columns(FLEET_COLUMNS, right=RIGHT_COLUMNS)
            state = await _first_contact(prom, times, refreshes, out)
            settle()
            source = PrometheusFleetSource(prom, fetch_history=False, full=False)  # what the console asks for
            state = await _live_refreshes(source, server, state, table, pilot, times, refreshes, out)
            state = await _steady_refreshes(source, server, state, table, pilot, times, out)
            view = await _idle_refreshes(source, server, state, table, pilot, out)
            await source.aclose()
            assert table.row_count == len(view.order)
    return out


async def measure_direct(
    bases: list[HostSnapshot], times: list[float], refreshes: int
) -> dict[str, list[float]]:
    """The reference: the same fleet at the same steps polled directly (every host's /v1/snapshot JSON
    decoded, reduced, presented, table updated)."""
    steps = range(POINTS - refreshes - 1, POINTS)
    bodies = [[to_json(host_at(b, b.host, n, times[n])).encode() for b in bases] for n in steps]
    config = ConsoleConfig()
    out: dict[str, list[float]] = {"total": [], "cpu": []}
    table = KeyedTable()
    app = Bench(table)
    with gcpolicy.applied() as settle:
        async with app.run_test(size=(160, 45)) as pilot:
            table.set_columns(FLEET_COLUMNS, right=RIGHT_COLUMNS)
            state = FleetState.initial(config, time.monotonic())
            for n, round_ in enumerate(bodies):
                c0, t0 = time.process_time(), time.perf_counter()
                now = time.monotonic()
                results = [HostResult(s.host, s, None, 0.002, now) for s in map(decode_snapshot, round_)]
                state = apply(state, results, now, time.time())
                view = fleet_table(state, state.now)
                table.sync(view.rows, view.order, groups=view.groups)
                await pilot.pause()
                t1, c1 = time.perf_counter(), time.process_time()
                if n:
                    out["total"].append(t1 - t0)
                    out["cpu"].append(c1 - c0)
                else:
                    settle()
    return out


def compare_decoding(server: Server, at: float) -> tuple[float, float, int]:
    """(typed decoder, json.loads + the general reader) median seconds on the biggest answer of a refresh
    (one half of the engine values), measured alternately, and its series count."""
    query = fleet_queries("", False)["values"]
    body = httpx.post(
        server.url + "/api/v1/query",
        data={"query": query, "time": f"{at:.3f}"},
        headers={"Accept-Encoding": "identity"},
        timeout=120,
        trust_env=False,
    ).content
    fast, general = [], []
    with _gc_paused():
        for _ in range(9):
            t0 = time.perf_counter()
            got = _fast_vector(body)
            t1 = time.perf_counter()
            ref = _samples(json.loads(body)["data"]["result"])
            t2 = time.perf_counter()
            fast.append(t1 - t0)
            general.append(t2 - t1)
    assert got is not None and len(got[0]) == len(ref[0]), "both read every series"
    return median(fast), median(general), len(ref[0])


def _span(xs: list[float]) -> str:
    return f"{min(xs) * 1000:.0f}..{max(xs) * 1000:.0f}" if xs else "-"


def report(hosts: int, m: dict[str, list[float]], ref: dict[str, list[float]]) -> None:
    counts = (
        "requests",
        "first_requests",
        "series",
        "idle_requests",
        "received",
        "identity",
        "ahead",
        *(f"{name}{part}" for name, _, _ in STEADY for part in ("_changed", "_requests")),
    )
    ms = {k: median(v) * 1000 for k, v in m.items() if k not in counts}
    r = median(ref["total"]) * 1000
    print(f"  {hosts} hosts x 4 engines, median of {len(m['total'])} refreshes (ms, range in brackets):")
    print(
        f"    refresh {ms['total']:7.1f} wall [{_span(m['total'])}] = poll {ms['poll']:6.1f} (queries and decoding "
        f"{ms['queries']:6.1f}, reading into snapshots {ms['read']:5.1f}) + reduce {ms['reduce']:5.1f} + present "
        f"{ms['present']:6.1f} + table {ms['table']:6.1f}"
    )
    ident = [t for t, i in zip(m["total"], m["identity"], strict=True) if i]
    lean = [t for t, i in zip(m["total"], m["identity"], strict=True) if not i]
    print(
        f"    refreshes without the identity tier: {median(lean) * 1000:.0f} [{_span(lean)}], with it (every "
        f"few refreshes): {median(ident) * 1000:.0f} [{_span(ident)}]"
    )
    print(
        f"    CPU per refresh: console {ms['cpu']:7.1f} [{_span(m['cpu'])}] (of which poll {ms['poll_cpu']:6.1f}), "
        f"prometheus {ms['prom_cpu']:7.1f} [{_span(m['prom_cpu'])}]"
    )
    print(
        f"    refreshes that asked every part at once (most hosts due for news): {int(sum(m['ahead']))} "
        f"of {len(m['ahead'])}"
    )
    print(
        f"    series received per refresh: {int(median(m['received']))} "
        f"({median(m['received']) / (hosts * 4):.1f} per engine)"
    )
    print(
        f"    HTTP requests per refresh: {sorted(set(m['requests']))}; first refresh with backfill: "
        f"{ms['first']:.0f} ms, {int(m['first_requests'][0])} requests, {int(m['series'][0])} past snapshots"
    )
    for name, every, _ in STEADY:
        print(
            f"    steady state, a refresh every {every:g} s (scrapes spread over {STEP_S} s; about "
            f"{median(m[f'{name}_changed']):.0f} hosts with news each, {len(m[name])} refreshes): "
            f"{ms[name]:.0f} ms wall [{_span(m[name])}], CPU console {ms[f'{name}_cpu']:.0f} ms + prometheus "
            f"{ms[f'{name}_prom_cpu']:.0f} ms, requests {sorted(set(m[f'{name}_requests']))}"
        )
    print(
        f"    between two scrapes (no new snapshot): {ms['idle']:.0f} ms wall [{_span(m['idle'])}], "
        f"{ms['idle_cpu']:.0f} ms CPU (console + prometheus), requests {sorted(set(m['idle_requests']))}"
    )
    print(
        f"    reference (direct poll, same fleet, no network): {r:7.1f} ms wall [{_span(ref['total'])}], "
        f"{median(ref['cpu']) * 1000:7.1f} ms CPU"
    )
    print(
        f"    prometheus refresh / reference = {ms['total'] / r:.2f}x; / target {TARGET_MS:.0f} ms = "
        f"{ms['total'] / TARGET_MS:.2f}x"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=1000)
    ap.add_argument("--small", type=int, default=100)
    ap.add_argument("--refreshes", type=int, default=8)
    ns = ap.parse_args()
    if ns.refreshes + 2 + STEADY_STEPS > POINTS:
        raise SystemExit(f"--refreshes: at most {POINTS - 2 - STEADY_STEPS}")
    if not (shutil.which("prometheus") or os.access("/usr/bin/prometheus", os.X_OK)):
        raise SystemExit("needs Debian's prometheus package (prometheus + promtool)")
    root = Path(tempfile.mkdtemp(prefix="llmconsole-bench-prom-"))
    print(
        f"console refresh through Prometheus ({json.dumps(ns.__dict__)}); target {TARGET_MS:.0f} ms for the whole fleet"
    )
    requests: dict[int, set[float]] = {}
    try:
        for hosts in (ns.small, ns.hosts):
            server, times, last = fleet_server(hosts, root)
            try:
                m = asyncio.run(measure_prometheus(server, times, ns.refreshes))
                decoding = compare_decoding(server, times[-1])
            finally:
                server.stop()
            ref = asyncio.run(measure_direct(last, times, ns.refreshes))
            report(hosts, m, ref)
            fast, general, n = decoding
            print(
                f"    decoding the biggest answer ({n} series): typed {fast * 1000:.1f} ms, json.loads + "
                f"general reader {general * 1000:.1f} ms: {general / fast:.1f}x cheaper"
            )
            requests[hosts] = set(m["requests"])
            total = median(m["total"]) * 1000
            if hosts == ns.hosts:
                verdicts = [("every host with news", total)] + [
                    (f"a refresh every {every:g} s", median(m[name]) * 1000) for name, every, _ in STEADY
                ]
                for what, ms_ in verdicts:
                    verdict = "met" if ms_ <= TARGET_MS else "MISSED"
                    print(
                        f"target {TARGET_MS:.0f} ms at {hosts} hosts, {what}: {verdict} ({ms_:.0f} ms wall)"
                    )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    same = len({frozenset(v) for v in requests.values()}) == 1
    print(
        f"requests per refresh independent of host count: {'yes' if same else 'NO'} {dict((k, sorted(v)) for k, v in requests.items())}"
    )
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
