"""The agent's one collection loop: every ``interval_s`` it observes every engine, the GPUs and the host,
builds an immutable HostSnapshot and keeps it in a ring buffer of ``history_s``.

Blocking reads (NVML, psutil) run through ``asyncio.to_thread`` here and nowhere else. Ticks never overlap:
the next one is scheduled after the previous one finished (a slow tick delays, never stacks). An engine's
probes (scrape, health, canary) run on their own deadlines in their own tasks; a tick waits for them at most
a small budget (agents/watch.py), so a hung engine never slows the snapshots of the others. One broken
engine or GPU never blanks the others: each failure becomes an entry in ``errors`` or an alert. A failed
state-file write of any engine (its supervisor's ``state_error``) is an ``errors`` entry and the host alert
STATE_WRITE_FAILED while it lasts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import replace
from urllib.parse import urlsplit

from agents import __version__
from agents.alerts import GpuFacts, host_alerts
from agents.exposure import ExposureAudit, describe_listeners
from agents.gpu.base import GpuPoll, GpuSource
from agents.host import listening_sockets, process_brief, read_host, tree_rss_bytes
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
from agents.supervisor.proctree import read_marker
from agents.watch import EngineWatch

log = logging.getLogger(__name__)

LISTENER_AUDIT_S = 30.0


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
        self._ring: deque[tuple[float, HostSnapshot, str]] = deque(maxlen=max(2, int(history_s / interval_s) + 1))
        self._host_alerts: dict[str, Alert] = {}
        self._stop = asyncio.Event()
        self.tick_cost_s: float | None = None
        # Listening-socket audit (EXPOSED_LISTENER): costly (/proc/net scans), so refreshed every
        # LISTENER_AUDIT_S or when an engine's process tree or state changes (e.g. it starts listening
        # once ready), not every tick.
        self._listeners: dict[str, tuple[tuple[int, str, int, str], ...]] = {}
        self._listeners_for: dict[str, tuple[tuple[int, ...], str]] = {}
        self._listeners_at = -float("inf")
        # Exposure audit (agents/exposure.py): ports to classify listeners by, dangerous switches, version.
        self._ports = {w.config.id: (w.config.port, _metrics_port(w)) for w in self.watches}
        self._exposure = {
            w.config.id: ExposureAudit(w.config.kind, w.supervisor.plan.argv, w.supervisor.plan.env) for w in self.watches
        }

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
        audit_key = {w.config.id: (tree_pids[w.config.id], w.supervisor.state) for w in self.watches}
        now = time.monotonic()
        audit = {
            eid: pids
            for eid, pids in tree_pids.items()
            if now - self._listeners_at >= LISTENER_AUDIT_S or self._listeners_for.get(eid) != audit_key[eid]
        }
        for w in self.watches:
            if w.config.id in audit:
                self._exposure[w.config.id].refresh(w.supervisor.log_tail(1000))
        host_task = asyncio.to_thread(_host_facts, tree_pids, audit, self._ports)
        gpu_task = asyncio.to_thread(self.gpu.poll)
        (host_stats, rss, fresh_listeners), poll = await asyncio.gather(host_task, gpu_task)
        if len(audit) == len(tree_pids):
            self._listeners_at = now
        self._listeners.update(fresh_listeners)
        self._listeners_for.update({eid: audit_key[eid] for eid in audit})
        listeners = self._listeners
        engines: list[EngineSnapshot] = []
        results = await asyncio.gather(
            *(w.observe(rss.get(w.config.id), listeners.get(w.config.id, ())) for w in self.watches),
            return_exceptions=True,
        )
        for watch, result in zip(self.watches, results, strict=True):
            if isinstance(result, BaseException):
                errors.append(f"engine {watch.config.id}: collection failed: {type(result).__name__}: {result}")
                log.error("engine %s: observe failed", watch.config.id, exc_info=result)
                continue
            exposure = self._exposure[watch.config.id].alerts(rfc3339())
            if exposure:
                result = replace(result, alerts=tuple(sorted((*result.alerts, *exposure), key=_severity_order)))
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
                GpuFacts(g.index, g.ecc_uncorrected, g.xid_last, tuple(g.throttle_reasons), tuple((p.pid, p.mem_bytes) for p in g.processes))
                for g in gpus
            ],
            supervised_pids=owner.keys(),
            wall=wall,
            previous=self._host_alerts,
            describe=process_brief,
            state_errors=state_errors,
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
    tree_pids: dict[str, tuple[int, ...]],
    audit: dict[str, tuple[int, ...]],
    ports: Mapping[str, tuple[int | None, int | None]],
):
    """Blocking psutil reads for one tick (runs in a worker thread); listeners only for ``audit``, each
    as (pid, ip, port, what) with non-loopback ones classified (agents/exposure.py)."""
    reading = read_host()
    stats = HostStats(cpu_pct=reading.cpu_pct, mem_used_bytes=reading.mem_used_bytes, mem_total_bytes=reading.mem_total_bytes)
    rss = {eid: tree_rss_bytes(pids) for eid, pids in tree_pids.items()}
    listeners = {
        eid: describe_listeners(
            ((s.pid, s.ip, s.port) for s in listening_sockets(pids)),
            api_port=ports[eid][0],
            metrics_port=ports[eid][1],
            process_name=_process_name,
        )
        for eid, pids in audit.items()
    }
    return stats, rss, listeners


def _state_errors(watches: Sequence[EngineWatch]) -> dict[str, str]:
    """Engine id -> the one-line reason its supervisor's last state-file write failed (``state_error``)."""
    out = {}
    for w in watches:
        why = getattr(w.supervisor, "state_error", None)
        if isinstance(why, str) and why.strip():
            out[w.config.id] = " ".join(why.split())[:300]
    return out


def _process_name(pid: int) -> str | None:
    brief = process_brief(pid)
    return None if brief is None else brief.split(":", 1)[0]


def _metrics_port(watch: EngineWatch) -> int | None:
    try:
        return urlsplit(watch.adapter.metrics_url(watch.spec)).port
    except ValueError:
        return None


_SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2}


def _severity_order(alert: Alert) -> tuple[int, str]:
    return (_SEVERITY_RANK.get(alert.severity, 3), alert.code)


def _gpus(poll: GpuPoll, owner: dict[int, str]) -> tuple[GpuInfo, ...]:
    out = []
    for g in poll.gpus:
        out.append(
            GpuInfo(
                index=g.index,
                uuid=g.uuid,
                name=g.name,
                mem_used_bytes=g.mem_used_bytes,
                mem_total_bytes=g.mem_total_bytes,
                util_pct=g.util_pct,
                temp_c=g.temp_c,
                power_w=g.power_w,
                power_limit_w=g.power_limit_w,
                ecc_uncorrected=g.ecc_uncorrected,
                xid_last=g.xid_last,
                throttle_reasons=tuple(g.throttle_reasons or ()),
                processes=tuple(GpuProcess(pid=p.pid, mem_bytes=p.mem_bytes, engine_id=owner.get(p.pid)) for p in g.processes or ()),
            )
        )
    return tuple(out)
