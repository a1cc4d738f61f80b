"""The agent's one collection loop: every ``interval_s`` it observes every engine, the GPUs and the host,
builds an immutable HostSnapshot and keeps it in a ring buffer of ``history_s``.

Blocking reads (NVML, psutil, /proc, and the listener reads of the engines' exposure audits when their
watches find them due, agents/exposure_watch.py) run through ``asyncio.to_thread`` here and nowhere else.
Ticks never overlap: the next one is scheduled after the previous one finished (a slow tick delays, never
stacks). An engine's probes (scrape, health, canary) run on their own deadlines in their own tasks; a tick
waits for them at most a small budget (agents/watch.py), so a hung engine never slows the snapshots of the
others. One broken engine or GPU never blanks the others: each failure becomes an entry in ``errors`` or
an alert. A failed state-file write of any engine (its supervisor's ``state_error``) is an ``errors`` entry
and the host alert STATE_WRITE_FAILED while it lasts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import fields

from agents import __version__
from agents.alerts import GpuFacts, host_alerts
from agents.gpu.base import GpuPoll, GpuReading, GpuSource
from agents.host import process_brief, read_host, tree_rss_bytes
from agents.schema import (
    Alert,
    EngineSnapshot,
    GpuInfo,
    GpuProcess,
    HostSnapshot,
    HostStats,
    history_to_json,
    rfc3339,
    to_json,
)
from agents.sockdiag import TCP_ESTABLISHED, socket_inodes, tcp_sockets
from agents.supervisor.proctree import read_marker
from agents.watch import EngineWatch

log = logging.getLogger(__name__)


class Collector:
    def __init__(
        self,
        watches: Sequence[EngineWatch],
        gpu: GpuSource,
        *,
        interval_s: float = 1.0,
        history_s: float = 900.0,
        host: str | None = None,
        boot_id: str | None = None,
    ) -> None:
        self.watches = list(watches)
        self.gpu = gpu
        self.interval_s = interval_s
        self.history_s = history_s
        self.host = host or socket.gethostname()
        self.boot_id = boot_id
        self.seq = 0
        self._ring: deque[tuple[float, HostSnapshot, str]] = deque(
            maxlen=max(2, int(history_s / interval_s) + 1)
        )
        self._host_alerts: dict[str, Alert] = {}
        self._stop = asyncio.Event()
        self.tick_cost_s: float | None = None

    # --- reading side (API) -----------------------------------------------------------------------------
    def latest(self) -> HostSnapshot | None:
        return self._ring[-1][1] if self._ring else None

    def latest_json(self) -> str | None:
        return self._ring[-1][2] if self._ring else None

    def history_json(self, seconds: float) -> str:
        if not self._ring:
            return history_to_json(self.host, [])
        newest = self._ring[-1][0]
        return history_to_json(self.host, [j for t, _, j in self._ring if newest - t <= seconds])

    # --- the loop -----------------------------------------------------------------------------------------
    async def run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                await self.tick()
            except Exception:  # one bad tick never ends collection
                log.exception("collector tick failed")
            self.tick_cost_s = time.monotonic() - started
            delay = max(0.05, self.interval_s - self.tick_cost_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=delay)

    def stop(self) -> None:
        self._stop.set()

    async def tick(self) -> HostSnapshot:
        errors: list[str] = []
        tree_pids = {w.config.id: tuple(w.supervisor.pids) for w in self.watches}
        now = time.monotonic()
        audits = [job for w in self.watches if (job := w.audit_job(now)) is not None]
        ports = {w.config.port for w in self.watches}
        host_task = asyncio.to_thread(_host_facts, tree_pids, audits, ports)
        gpu_task = asyncio.to_thread(self.gpu.poll)
        (host_stats, rss, conns), poll = await asyncio.gather(host_task, gpu_task)
        engines: list[EngineSnapshot] = []
        util = {
            g.index: g.util_pct for g in poll.gpus
        }  # each watch picks its engine's GPUs (GPU_WEDGED, RANK_DIVERGENCE)
        results = await asyncio.gather(
            *(w.observe(rss.get(w.config.id), util, conns.get(w.config.port)) for w in self.watches),
            return_exceptions=True,
        )
        for watch, result in zip(self.watches, results, strict=True):
            if isinstance(result, BaseException):
                errors.append(
                    f"engine {watch.config.id}: collection failed: {type(result).__name__}: {result}"
                )
                log.error("engine %s: observe failed", watch.config.id, exc_info=result)
                continue
            engines.append(result)
        errors.extend(poll.errors)
        owner = {pid: eid for eid, pids in tree_pids.items() for pid in pids}
        markers = {w.supervisor.marker: w.config.id for w in self.watches if w.supervisor.marker}
        for g in poll.gpus:  # a process of a new launch the tree refresh has not seen yet is still ours
            for p in g.processes or ():
                if p.pid not in owner and (eid := markers.get(read_marker(p.pid))) is not None:
                    owner[p.pid] = eid
        gpus = _gpus(poll, owner)
        state_errors = _state_errors(self.watches)
        errors.extend(f"engine {eid}: state write failed: {why}" for eid, why in state_errors.items())
        wall = rfc3339()
        alerts = host_alerts(
            [
                GpuFacts(
                    g.index,
                    g.ecc_uncorrected,
                    g.xid_last,
                    tuple(g.throttle_reasons),
                    tuple((p.pid, p.mem_bytes) for p in g.processes),
                )
                for g in gpus
            ],
            supervised_pids=owner.keys(),
            wall=wall,
            previous=self._host_alerts,
            describe=process_brief,
            state_errors=state_errors,
            unobserved=_unobserved(self.watches),
            visible=_visible,
        )
        self._host_alerts = {a.code: a for a in alerts}
        self.seq += 1
        snap = HostSnapshot(
            host=self.host,
            agent_version=__version__,
            seq=self.seq,
            taken_at=wall,
            interval_s=self.interval_s,
            gpu_source=poll.source_label,
            host_stats=host_stats,
            gpus=gpus,
            engines=tuple(engines),
            alerts=alerts,
            errors=tuple(errors),
            boot_id=self.boot_id,
        )
        self._ring.append((time.monotonic(), snap, to_json(snap)))
        return snap


def _host_facts(
    tree_pids: dict[str, tuple[int, ...]], audits: Sequence[Callable[[], None]], ports: Iterable[int] = ()
) -> tuple[HostStats, dict[str, int | None], dict[int, int | None]]:
    """Blocking reads for one tick (runs in a worker thread): host CPU and memory, each engine tree's RSS,
    the client connections to each engine port, and the listener audits the watches found due (each stores
    its own result)."""
    reading = read_host()
    stats = HostStats(
        cpu_pct=reading.cpu_pct,
        mem_used_bytes=reading.mem_used_bytes,
        mem_total_bytes=reading.mem_total_bytes,
    )
    rss = {eid: tree_rss_bytes(pids) for eid, pids in tree_pids.items()}
    for audit in audits:
        audit()
    return stats, rss, client_connections(ports)


def client_connections(ports: Iterable[int]) -> dict[int, int | None]:
    """Established TCP connections to each local ``port``, not counting the agent's own (its scrape, health
    and canary connections); None per port where the socket table cannot be read (agents/sockdiag.py).
    FRONTEND_HUNG compares them with the engine's running + waiting."""
    wanted = set(ports)
    if not wanted:
        return {}
    rows = tcp_sockets(TCP_ESTABLISHED)
    if rows is None:
        return dict.fromkeys(wanted)
    own = set(socket_inodes("self"))
    own_ports = {r.port for r in rows if r.inode in own}  # the local ends of the agent's own connections
    counts: dict[int, int | None] = dict.fromkeys(wanted, 0)
    for r in rows:
        if r.port in wanted and r.remote_port not in own_ports:
            counts[r.port] = (counts[r.port] or 0) + 1
    return counts


def _unobserved(watches: Sequence[EngineWatch]) -> tuple[str, ...]:
    """Watched engines whose serving process the agent cannot see (their GPU processes are not orphans)."""
    out = []
    for w in watches:
        info = getattr(w.supervisor, "watch_info", None)
        if info is not None and info.unobserved and w.supervisor.state != "stopped":
            out.append(w.config.id)
    return tuple(out)


def _visible(pid: int) -> bool:
    """The agent can see ``pid`` in its /proc (a process of another PID namespace cannot be attributed)."""
    return os.path.exists(f"/proc/{pid}")


def _state_errors(watches: Sequence[EngineWatch]) -> dict[str, str]:
    """Engine id -> the one-line reason its supervisor's last state-file write failed (``state_error``)."""
    out = {}
    for w in watches:
        why = getattr(w.supervisor, "state_error", None)
        if isinstance(why, str) and why.strip():
            out[w.config.id] = " ".join(why.split())[:300]
    return out


# GpuInfo fields copied as they are from a GpuReading of the same name; the two below need converting.
# Derived from the wire type, so a field added to both is carried without touching this module.
_CONVERTED = ("throttle_reasons", "processes")
_COPIED = tuple(f.name for f in fields(GpuInfo) if f.name not in _CONVERTED)


def gpu_info(g: GpuReading, owner: Mapping[int, str]) -> GpuInfo:
    """The wire form of one GPU reading. The wire has no "unknown" for the lists (None reads as ``()``),
    and each process gets the id of the engine whose tree holds it (``owner``; None when no engine's)."""
    return GpuInfo(
        **{name: getattr(g, name) for name in _COPIED},
        throttle_reasons=tuple(g.throttle_reasons or ()),
        processes=tuple(
            GpuProcess(pid=p.pid, mem_bytes=p.mem_bytes, engine_id=owner.get(p.pid))
            for p in g.processes or ()
        ),
    )


def _gpus(poll: GpuPoll, owner: dict[int, str]) -> tuple[GpuInfo, ...]:
    return tuple(gpu_info(g, owner) for g in poll.gpus)
