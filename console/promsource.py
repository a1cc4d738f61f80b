"""A Prometheus-compatible query API as a fleet source: ``[[console.prometheus]]`` (and ``status --prometheus``).

Prometheus, Thanos Querier and VictoriaMetrics serve the same ``/api/v1/query`` API; this source reads the
agents' own ``llmconsole_*`` series there (the scrape job chosen by ``match``), so a console can watch a
site of a thousand hosts with a few requests per refresh:

- one refresh is at most five instant queries for the whole fleet, whatever its size — host-level
  families (``up``, seq, snapshot timestamp); then, only for hosts whose snapshot changed since the last
  refresh and in parallel, what is 1 when present (engine states ``== 1``, ``host_info``, the agents'
  active alerts), engine values (two halves, so that the server answers them on two cores) and GPU values,
  at the first query's evaluation time, each part with every changed host's seq (a host whose parts saw
  another scrape than the host-level query waits a refresh, :func:`mixed_hosts`) — plus Prometheus's own
  firing alerts (``/api/v1/alerts``), merged with the agents' (:mod:`console.promseries` turns the series
  into the snapshots the reducer already reads; :mod:`console.promapi` speaks HTTP);
- when more than half of the hosts are due for news (their snapshot is a scrape interval old), all five
  are asked at once, at an evaluation time the console picks from the server's clock as last seen, and the
  answers of hosts without news are dropped: a refresh where every host has news waits for one round
  trip instead of two;
- the identity tier — ``llmconsole_engine_info`` and GPU totals, a sixth of the series and the fattest,
  which change only when an engine is relaunched — rides along every :data:`~console.promident.IDENT_EVERY`
  refreshes with news, and in between is kept per host (:mod:`console.promident`), read again at once (one
  more query) for a host whose engine states name other engines, kinds or models, whose GPUs are new or
  whose seq went back;
- a refresh returns only the hosts with news (a new snapshot, a changed problem line, rule alerts, a
  target down): the others keep their result and age (``console.state.apply``);
- hosts seen for the first time come with their recent past, for the graphs, from one ``query_range``;
- a refresh happens every ``refresh_s`` (default 2 s); polls in between return nothing. Prometheus spreads
  its targets' scrapes over the scrape interval, so a refresh reads the hosts scraped since the last one
  (2 s of a 15 s interval: about 2/15 of the fleet), and its cost follows them: at 1,000 hosts × 4 engines
  a 2 s refresh costs about half of a 5 s one (bench/bench_prometheus.py). Each host ages from
  ``llmconsole_snapshot_timestamp_seconds`` against the server's evaluation time, going stale after the
  entry's ``stale_after_s``;
- its hosts are read-only: actions and logs need a direct or SSH route to the agent.

Errors are values: a server that is not a Prometheus query API, refuses the credentials, times out or
answers garbage makes one line from :meth:`PrometheusFleetSource.problems`; the hosts it showed keep their
last values, which age and go stale (never shown as live). A partial response (``warnings``), NaN or
±Inf values and series without ``host``/``engine`` are reported in the same line, and what is usable is
used. A ``target down`` (``up == 0``) makes that host unreachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import httpx

from agents.schema import History, HostSnapshot
from console.fleet import ActionResult, HostError, HostResult, one_line
from console.promalerts import rule_alerts
from console.promapi import Answer, PromClient, PromError
from console.promhistory import read_history
from console.promident import IDENT_EVERY, IdentityCache, engine_keys, gpu_keys
from console.promnames import (
    ALERTS,
    HOST_INFO,
    IDENT_NAMES,
    P,
    Series,
    history_names,
)
from console.promquery import (
    CHANGED_PARTS,
    SEQ,
    fleet_queries,
    host_matcher,
    ident_query,
    promql_regex_literal,
    promql_string,
    selector,
)
from console.promseries import read_fleet
from console.settings import DEFAULT_MATCH, PrometheusConfig, http_url_problem, parse_matchers

WINDOW_S = 900.0  # the graphs' window (console.state.WINDOW_S)
HISTORY_POINTS = 60  # per series in a backfill: one point every 15 s of a 15-minute window
HOST_FILTER_MAX = 100  # backfill more new hosts than this without a host=~ filter (and pick them here)


def filtered(some: int, of: int) -> bool:
    """Whether to ask for ``some`` hosts of ``of`` with a ``host=~`` filter rather than for every host (and
    pick them here): when they are at most half. A refresh in a fleet whose scrapes Prometheus spreads over
    the interval finds about refresh / interval of the hosts with news (2 s / 15 s: 133 of 1,000); read
    unfiltered, each refresh costs nearly as much as one where every host has news (bench/bench_prometheus.py).
    The queries go as POST forms, so a long filter is no URL problem."""
    return some < of and (some <= HOST_FILTER_MAX or 2 * some <= of)


Stamps = dict[str, tuple[float, float]]  # host -> (seq, snapshot timestamp)
Fetched = list[tuple[float | None, list[Series], Answer]]  # the changed-host parts' answers


def _split_hosts(
    series: list[Series], instances: dict[str, str]
) -> tuple[list[Series], list[Series], Stamps]:
    """The host-level answer as (up, host families) plus each host's (seq, snapshot timestamp);
    ``instances`` learns which scrape target each host is."""
    up, hosts = [], []
    seqs: dict[str, float] = {}
    taken: dict[str, float] = {}
    for sv in series:
        labels, v = sv
        name = labels.get("__name__")
        if name == "up":
            up.append(sv)
        else:
            hosts.append(sv)
            host = labels.get("host")
            if host and name == "llmconsole_snapshot_seq":
                seqs[host] = v
                if labels.get("instance"):
                    instances[labels["instance"]] = host
            elif host and name == "llmconsole_snapshot_timestamp_seconds":
                taken[host] = v
    stamps = {
        h: (seq, taken[h])
        for h, seq in seqs.items()
        if h in taken and math.isfinite(seq) and math.isfinite(taken[h])
    }
    return up, hosts, stamps


def _split_ones(series: list[Series]) -> tuple[list[Series], list[Series], list[Series]]:
    """The changed hosts' ``== 1`` part as (engine states and engine_info, host_info, active agent alerts),
    told apart by name, or by labels where a server drops ``__name__`` on comparisons: an alert has a
    ``code``, host_info no ``engine`` (and gets its name back: the host families are read by name)."""
    engines, infos, alerts = [], [], []
    alert_name, info_name = P + ALERTS, P + HOST_INFO
    for sv in series:
        labels = sv[0]
        name = labels.get("__name__")
        if name == alert_name or (name is None and "code" in labels):
            alerts.append(sv)
        elif name == info_name:
            infos.append(sv)
        elif name is None and "engine" not in labels:
            infos.append(({**labels, "__name__": info_name}, sv[1]))
        else:
            engines.append(sv)
    return engines, infos, alerts


def mixed_hosts(stamps: Stamps, *parts: list[Series]) -> set[str]:
    """Hosts whose ``llmconsole_snapshot_seq`` in some part is not the seq the host-level query saw: the
    parts read another scrape (see console.promquery.SEQ)."""
    name = P + SEQ
    return {
        host
        for part in parts
        for labels, v in part
        if labels.get("__name__") == name and (host := labels.get("host")) in stamps and v != stamps[host][0]
    }


def _only(series: list[Series], hosts: set[str | None]) -> list[Series]:
    """The series of these hosts, and those without a host label (read_fleet reports them)."""
    return [sv for sv in series if sv[0].get("host") in hosts or not sv[0].get("host")]


def _partial(warning: str) -> str:
    """A server warning (Thanos/Prometheus: some data may be missing) as part of the source's line."""
    return warning if warning.lower().startswith("partial response") else f"partial response: {warning}"


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic GC while a refresh's answers are decoded and read: tens of thousands of fresh containers
    make the collector walk them again and again (it doubled the cost); parsing creates no cycles."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


# --- the source ------------------------------------------------------------------------------------


class PrometheusFleetSource:
    """One ``[[console.prometheus]]`` entry as a FleetSource (see the module docstring)."""

    def __init__(
        self,
        prom: PrometheusConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        fetch_history: bool = True,
        history_step_s: float | None = None,
        full: bool = True,
    ) -> None:
        """``history_step_s``: the graphs' backfill resolution (default: 15 s, or ``refresh_s`` if longer);
        ``full``: read every exported family (False: only what the console shows of every host, about half
        the series — the console's choice at fleet scale; the families left out are None)."""
        self.prom = prom
        self.history_step_s = history_step_s or max(prom.refresh_s, WINDOW_S / HISTORY_POINTS)
        self.client = PromClient(prom, transport=transport)
        self.full = full
        self.queries = fleet_queries(prom.match, full)
        self.fetch_history = fetch_history
        self._clock = clock
        self._next_due: float | None = None
        self._last: dict[str, HostResult] = {}  # the newest good result of each host this source showed
        self._instances: dict[str, str] = {}  # scrape target -> host, as last seen
        self._stamps: Stamps = {}  # host -> (seq, snapshot timestamp) last read
        self._base: dict[str, HostSnapshot] = {}  # host -> its snapshot as last read (before rule alerts)
        self._sent: dict[str, HostResult] = {}  # host -> the result last returned for it
        self._ident = IdentityCache()  # host -> its engine_info and GPU totals as last read
        self._reads = 0  # refreshes with news so far (the identity tier is read every IDENT_EVERY of them)
        self._offset: float | None = None  # the server's clock minus this machine's, as last seen (s)
        self._scrape_s: float | None = None  # the hosts' snapshot step as last seen: the scrape interval
        self._guessed = True  # False after asking ahead for hosts that had no news, until news comes
        self._held: set[str] = set()  # hosts held back last refresh: their parts read another scrape
        self._problem: str | None = None
        self._rule_alerts = True  # False once the server said it has no /api/v1/alerts (VictoriaMetrics)
        self.last_refresh: dict[str, float] = {}  # timings of the last refresh (seconds), for bench/
        self.query_time: Callable[[], float] | None = None  # evaluate at this Unix time (replays, bench/)

    @property
    def name(self) -> str:
        return self.prom.name

    @property
    def requests(self) -> int:
        """HTTP requests sent so far."""
        return self.client.requests

    def route(self) -> str:
        return f"via Prometheus {self.prom.name}"

    def problems(self) -> list[str]:
        return [self._problem] if self._problem else []

    def _line(self, what: Sequence[str]) -> str:
        return one_line(f"prometheus {self.prom.name} ({self.prom.url}): " + "; ".join(what), 400)

    async def poll(self) -> list[HostResult]:
        now = self._clock()
        if self._next_due is not None and now < self._next_due:
            await asyncio.sleep(0)
            return []
        self._next_due = now + self.prom.refresh_s
        try:
            out = await self._refresh()
            if self._held - self._sent.keys():
                # a host not shown yet had its parts read the next scrape: ask again now rather than leave
                # it out of a first view (``status`` polls once); a second mix is read (see _changed_series)
                out = list({r.host: r for r in [*out, *await self._refresh()]}.values())
            return out
        except PromError as exc:
            self._problem = self._line([str(exc)])
        except Exception as exc:  # a console bug on an odd answer: this source's problem, never the round's
            self._problem = self._line([f"console could not read the answer: {type(exc).__name__}: {exc}"])
        failed = [replace(r, warnings=(self._problem,)) for r in self._last.values() if self._problem]
        self._sent.update((r.host, r) for r in failed)
        return failed

    async def _refresh(self) -> list[HostResult]:
        with _gc_paused():
            return await self._refresh_now()

    async def _refresh_now(self) -> list[HostResult]:
        """Host-level series first (``up``, seq, timestamps) with the rule alerts; then engine states, host
        identity, the agents' alerts, engine values and GPU values only for hosts whose snapshot changed
        since the last refresh (all at the first one's evaluation time, so the parts agree), with the
        identity tier (:mod:`console.promident`) when due: a refresh between two scrapes costs one small
        query. When most hosts are due for news (:meth:`_ahead`), every part is asked at once instead."""
        started = time.perf_counter()
        _, _, warning = self.client.credentials()
        at_time = self.query_time() if self.query_time is not None else None
        ident = self.full or self._reads % IDENT_EVERY == 0
        ahead = self._ahead(at_time)
        first, (rules, rule_problem), early = await self._first_round(at_time, ahead, ident)
        at, host_series, answer = first
        first_done = time.perf_counter()
        up, hosts, stamps = _split_hosts(host_series, self._instances)
        changed = [h for h, st in stamps.items() if self._stamps.get(h) != st or h not in self._base]
        self._learn(at if at_time is None and ahead is None else None, stamps, changed)
        if ahead is not None or changed:
            self._guessed = ahead is None or 2 * len(changed) > len(stamps)
        # an agent that restarted (its seq went back) may have new engines, ports, GPUs: read them again
        self._ident.forget(h for h in changed if h in self._stamps and stamps[h][0] < self._stamps[h][0])
        # changed hosts, and those without a usable seq/timestamp (read_fleet says what is wrong with them)
        wanted = set(changed) | ({sv[0].get("host") for sv in hosts} - stamps.keys())
        when = at_time if at_time is not None else at
        engines, values, gpus, infos, alerts, more, received = await self._changed_series(
            changed, stamps, wanted, ident, when, early
        )
        answers = [answer, *more]
        queried = time.perf_counter()
        read = read_fleet(at, [*_only(hosts, wanted), *infos], engines, values, gpus, alerts)
        self._base.update(read.snapshots)
        self._stamps.update({h: stamps[h] for h in read.snapshots})
        base = {h: self._base[h] for h in stamps if h in self._base}
        what = [_partial(w) for a in answers for w in a.warnings] + read.notes
        snaps = base
        if rule_problem:
            what.append(rule_problem)
        if rules is not None:
            snaps, notes = rule_alerts(base, rules, self._instances, self.prom.name)
            what += notes
        if warning:
            what.append(warning)
        history = await self._backfill(snaps, at, what)
        self._problem = self._line(what) if what else None
        done = self._clock()
        warnings = (self._problem,) if self._problem else ()
        out = self._news(snaps, stamps, history, at, done, max(a.seconds for a in answers), warnings)
        out.update(self._down(up, snaps, done, warnings))
        self._sent.update(out)
        self._last = {h: replace(r, history=()) for h, r in out.items() if r.snapshot is not None} | {
            h: r for h, r in self._last.items() if h not in out and r.snapshot is not None
        }
        self.last_refresh = {
            "queries": queried - started,
            "host_query": first_done - started,
            "read": time.perf_counter() - queried,
            "changed": float(len(changed)),
            "series": float(len(host_series) + received),
            "identity": float(bool(changed) and ident),
            "ahead": float(ahead is not None),
        }
        return list(out.values())

    def _ahead(self, at_time: float | None) -> float | None:
        """An evaluation time to ask every part at at once, or None (host-level series first). Asked at
        once when more than half of the hosts are due for news: their snapshot is at least one scrape
        interval (as seen between their last two snapshots) old at the evaluation time, which is
        ``at_time`` or the server's clock as last seen. A guess that costs only time when wrong: the
        answers of hosts without news are dropped; after a wrong guess (scrapes stopped), not again until
        a refresh has news."""
        if not self._guessed or self._scrape_s is None or not self._stamps:
            return None
        if at_time is None and self._offset is None:
            return None
        t = at_time if at_time is not None else time.time() + self._offset
        due = self._scrape_s
        late = sum(1 for _seq, taken in self._stamps.values() if t - taken >= due)
        return t if 2 * late > len(self._stamps) else None

    def _learn(self, at: float | None, stamps: Stamps, changed: list[str]) -> None:
        """The server's clock (``at``: the evaluation time it chose) and the scrape interval: the median
        step of the changed hosts' snapshot timestamps."""
        if at is not None:
            self._offset = at - time.time()
        old = self._stamps
        steps = sorted(stamps[h][1] - old[h][1] for h in changed if h in old and stamps[h][1] > old[h][1])
        if steps:
            self._scrape_s = steps[len(steps) // 2]

    async def _first_round(
        self, at_time: float | None, ahead: float | None, ident: bool
    ) -> tuple[
        tuple[float | None, list[Series], Answer], tuple[list[Any] | None, str | None], Fetched | None
    ]:
        """The host-level query and the rule alerts, with every changed-host part too (unfiltered, at
        ``ahead``) when asked ahead."""
        if ahead is None:
            first, rules = await asyncio.gather(
                self.client.vector(self.queries["hosts"], at_time), self._alerts()
            )
            return first, rules, None
        queries = fleet_queries(self.prom.match, self.full, "", ident)
        first, rules, *early = await asyncio.gather(
            self.client.vector(self.queries["hosts"], ahead),
            self._alerts(),
            *(self.client.vector(queries[k], ahead) for k in CHANGED_PARTS),
        )
        return first, rules, early

    async def _changed_series(
        self,
        changed: list[str],
        stamps: Stamps,
        wanted: set[str | None],
        ident: bool,
        when: float | None,
        early: Fetched | None,
    ) -> tuple[list[Series], list[Series], list[Series], list[Series], list[Series], list[Answer], int]:
        """Engine states, engine values, GPU values, host_info and active agent alerts of the changed hosts,
        evaluated at ``when`` (or as asked ahead: ``early``), with the identity tier (read again if
        ``ident``, else as kept): the series of the ``wanted`` hosts, the answers and how many series came.
        No query when no host changed. A host whose parts saw another seq than ``stamps`` (mixed_hosts)
        leaves ``wanted``: it waits a refresh."""
        if not changed:
            return [], [], [], [], [], [], 0
        self._reads += 1
        only = ""
        if early is None:
            only = host_matcher(changed) if filtered(len(changed), len(stamps)) else ""
            queries = fleet_queries(self.prom.match, self.full, only, ident)
            early = await asyncio.gather(*(self.client.vector(queries[k], when) for k in CHANGED_PARTS))
        (_, ones, a1), *parts, (_, gpus, a4) = early
        seq = P + SEQ  # asked only to check the parts against the host-level series: not read further
        seqs = [sv for sv in ones if sv[0].get("__name__") == seq]
        engines, infos, alerts = _split_ones([sv for sv in ones if sv[0].get("__name__") != seq])
        values = [sv for _, got, _ in parts for sv in got]
        received = len(ones) + len(values) + len(gpus)
        # held back once: a host mixed again next time (two targets reporting one host with two seqs) is
        # read, and read_fleet names its duplicate series
        mixed, self._held = (found := mixed_hosts(stamps, seqs, values, gpus)) - self._held, found
        wanted -= mixed  # (the caller's set: these hosts wait for the next refresh)
        values = [sv for sv in values if sv[0].get("__name__") != seq]
        gpus = [sv for sv in gpus if sv[0].get("__name__") != seq]
        if len(wanted) < len(stamps):  # unfiltered answers also hold unchanged hosts: leave them out
            engines, values, gpus = _only(engines, wanted), _only(values, wanted), _only(gpus, wanted)
            infos, alerts = _only(infos, wanted), _only(alerts, wanted)
        if mixed:
            changed = [h for h in changed if h not in mixed]
        engines, gpus, more, extra = await self._identity(changed, engines, gpus, ident, only, when)
        answers = [a1, *(a for _, _, a in parts), a4, *more]
        return engines, values, gpus, infos, alerts, answers, received + extra

    def _news(
        self,
        snaps: Mapping[str, HostSnapshot],
        stamps: Stamps,
        history: Mapping[str, list[HostSnapshot]],
        at: float | None,
        done: float,
        rtt: float,
        warnings: tuple[str, ...],
    ) -> dict[str, HostResult]:
        """The results of the hosts with news (a new snapshot, a changed problem line, a backfilled past);
        the others keep their result and age (console.state.apply). ``rtt``: the slowest answer's time."""
        out: dict[str, HostResult] = {}
        route, stale_after = self.route(), self.prom.stale_after_s
        for host, snap in snaps.items():
            before = self._sent.get(host)
            if (
                before is not None
                and before.snapshot is snap
                and before.warnings == warnings
                and host not in history
            ):
                continue  # no news: the host keeps its result and ages (console.state.apply)
            age = max(0.0, at - stamps[host][1]) if at is not None else 0.0
            past = tuple(history.get(host, ()))
            out[host] = HostResult(host, snap, None, rtt, done - age, past, route, warnings, stale_after)
        return out

    async def _identity(
        self,
        changed: list[str],
        engines: list[Series],
        gpus: list[Series],
        fresh: bool,
        only: str,
        when: float | None,
    ) -> tuple[list[Series], list[Series], list[Answer], int]:
        """The engine and GPU series of the changed hosts with their identity series (engine_info, GPU
        totals): as just read (``fresh``), else as kept, read again in one query for the hosts whose fast
        series disagree with what is kept. Series without a host label pass through (read_fleet counts
        them)."""
        more: list[Answer] = []
        extra = 0
        if fresh:
            states = [sv for sv in engines if sv[0].get("state") is not None or not sv[0].get("host")]
            infos = [sv for sv in engines if sv[0].get("state") is None and sv[0].get("host")]
            totals = [sv for sv in gpus if sv[0].get("__name__") in IDENT_NAMES and sv[0].get("host")]
            gpus = [sv for sv in gpus if sv[0].get("__name__") not in IDENT_NAMES or not sv[0].get("host")]
            self._ident.remember(changed, infos, totals)
        else:
            states = engines
            self._ident.saw(changed)
            stale = self._ident.outdated(changed, engine_keys(states), gpu_keys(gpus))
            if stale:
                where = host_matcher(stale) if filtered(len(stale), len(changed)) else only
                _, found, got = await self.client.vector(ident_query(self.prom.match, where), when)
                more.append(got)
                extra = len(found)
                found = _only(found, set(stale))
                infos = [sv for sv in found if sv[0].get("__name__") == P + "engine_info" and sv[1] == 1]
                totals = [sv for sv in found if sv[0].get("__name__") != P + "engine_info"]
                self._ident.remember(stale, infos, totals)
        infos, totals = self._ident.series(changed)
        return states + infos, gpus + totals, more, extra

    def _down(
        self, up: list[Series], snaps: Mapping[str, HostSnapshot], now: float, warnings: tuple[str, ...]
    ) -> dict[str, HostResult]:
        """Hosts whose scrape target is down (``up == 0``) and that sent nothing this refresh."""
        out = {}
        for labels, v in up:  # a target label "host" names it at once; else the instance it was last seen at
            host = labels.get("host") or self._instances.get(labels.get("instance", ""))
            if v == 0 and host and host not in snaps:
                err = HostError(
                    "unreachable",
                    f"Prometheus {self.prom.name} cannot scrape it: up == 0 for "
                    f"{labels.get('instance')} (job {labels.get('job', '?')})",
                )
                out[host] = HostResult(
                    host,
                    None,
                    err,
                    None,
                    now,
                    route=self.route(),
                    warnings=warnings,
                    stale_after_s=self.prom.stale_after_s,
                )
        return out

    async def _alerts(self) -> tuple[list[Any] | None, str | None]:
        """Prometheus's firing alerts, or (None, why not). A server without the endpoint (VictoriaMetrics
        serves it only through vmalert) is asked once."""
        if not self._rule_alerts:
            return None, None
        try:
            got = await self.client.get("/api/v1/alerts")
        except PromError as exc:
            text = str(exc)
            if "HTTP 404" in text or "HTTP 400" in text or "not a Prometheus query API" in text:
                self._rule_alerts = False
                return None, None
            return None, f"rule alerts not read: {text}"
        alerts = got.data.get("alerts") if isinstance(got.data, dict) else None
        if not isinstance(alerts, list):
            return None, "rule alerts not read: /api/v1/alerts gave no alert list"
        return alerts, None

    async def _backfill(
        self, snaps: Mapping[str, HostSnapshot], at: float | None, what: list[str]
    ) -> dict[str, list[HostSnapshot]]:
        """The recent past of hosts seen for the first time, in one range query (never one per host)."""
        new = [h for h in snaps if h not in self._last]
        if not self.fetch_history or not new or at is None:
            return {}
        extra = ""
        if len(new) <= HOST_FILTER_MAX and len(new) < len(snaps):
            extra = 'host=~"' + "|".join(promql_regex_literal(h) for h in new) + '"'
        expr = selector(self.prom.match, history_names(), extra=extra)
        try:
            matrix, got = await self.client.matrix(expr, at - WINDOW_S, at, self.history_step_s)
        except PromError as exc:
            what.append(f"graphs not backfilled: {exc}")
            return {}
        what.extend(_partial(w) for w in got.warnings)
        past = read_history(matrix, set(new))
        return {h: [s for s in snaps_ if s.seq < snaps[h].seq] for h, snaps_ in past.items()}

    async def history(self, host: str) -> History | HostError:
        """The host's recent past from one range query (graphs' window, 15 s apart)."""
        end = time.time()
        expr = selector(self.prom.match, history_names(), extra=f'host="{promql_string(host)}"')
        try:
            matrix, _ = await self.client.matrix(expr, end - WINDOW_S, end, self.history_step_s)
        except PromError as exc:
            return HostError("unreachable", f"Prometheus {self.prom.name}: {exc}")
        return History(host=host, snapshots=tuple(read_history(matrix, {host}).get(host, ())))

    def _read_only(self, host: str) -> str:
        return (
            f"read-only: {host} is seen only through Prometheus {self.prom.name}; actions and logs need a "
            "direct or SSH route to its agent ([[console.hosts]])"
        )

    async def logs(self, host: str, engine: str, lines: int = 200) -> list[str] | HostError:
        return HostError("unreachable", self._read_only(host))

    def action_block(self, host: str) -> str | None:
        return self._read_only(host)

    async def action(self, host: str, engine: str, verb: str) -> ActionResult:
        return ActionResult(host, engine, verb, "refused", self._read_only(host))

    async def aclose(self) -> None:
        await self.client.aclose()


def config_for_url(url: str, match: str | None = None) -> PrometheusConfig:
    """The entry of ``llmconsole status --prometheus URL [--match M]``, named after the URL's host;
    ValueError (one line) for a URL or matcher that cannot be used."""
    problem = http_url_problem(url)
    if problem is not None:
        raise ValueError(problem)
    match = DEFAULT_MATCH if match is None else match
    bad = parse_matchers(match)
    if isinstance(bad, str):
        raise ValueError(f"--match: {bad}")
    return PrometheusConfig(name=urlsplit(url).hostname or "prometheus", url=url, match=match)


__all__ = [
    "Answer",
    "PromClient",
    "PromError",
    "PrometheusFleetSource",
    "config_for_url",
    "fleet_queries",
    "selector",
]
