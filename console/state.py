"""The fleet state reducer: ``apply(state, results, now) -> FleetState``. Pure: no Textual, no I/O.

Per host a status — pending (never answered yet) | fresh | stale | unreachable | unauthorized |
incompatible:

- fresh / stale: the newest snapshot (by ``seq``) was RECEIVED at most / more than ``stale_after_s``
  ago, by the console's monotonic clock (a host's source may set its own limit: a Prometheus has news
  only once per scrape, so its hosts use that entry's ``stale_after_s``). Agent wall time is never
  compared with console wall time (reliability.md §2.8); an agent that keeps answering the same ``seq``
  goes stale.
- unreachable: the last poll failed (refused, timeout, DNS, HTTP error, bad payload). The last good
  snapshot is kept so screens can show its values greyed, with their age.
- unauthorized: the agent answered 401/403: the console's token is missing, wrong or lacks the role
  (AGENT_UNAUTHORIZED, naming what to check), never reported as unreachable.
- incompatible: the agent speaks another schema major (SCHEMA_MISMATCH).

One host's result can never break the round: if reducing it fails, that host alone becomes unreachable
with the reason (kind bad_payload), and every other host is reduced as usual.

Per engine a bounded ``EngineSeries`` (console/engine_series.py; 15 minutes at the poll rate) of TTFT
p50/p95, running, waiting, KV usage and generation/prompt tokens per second, seeded from ``/v1/history``
on first contact, then one point per new snapshot (de-duplicated by ``seq``); points whose stats are not
live are gaps (NaN).
Series buffers are append-only and shared between successive states (copying 15 minutes of points per
tick would cost more than the whole tick); everything else in a state is immutable.

Console-side alerts: AGENT_UNREACHABLE, AGENT_UNAUTHORIZED, AGENT_STALE, SCHEMA_MISMATCH. Alerts that
clear are kept as "recent" for the window; acknowledgements are keyed by (host, engine, code, since).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from agents.schema import (
    SCHEMA,
    Alert,
    EngineSnapshot,
    HostSnapshot,
    rfc3339,
    severity_rank,
    stats_are_live,
)
from agents.schema import epoch_or_none as to_epoch
from console.engine_series import METRICS, WINDOW_S, EngineSeries
from console.fleet import HostError, HostResult
from console.settings import ConsoleConfig

RECENT_MAX = 200
HOST_STATUSES = ("pending", "fresh", "stale", "unreachable", "unauthorized", "incompatible")
AlertKey = tuple[str, str, str, str]  # host, engine ("" for host level), code, since ("" if unknown)


@dataclass(frozen=True, slots=True)
class HostState:
    """What the console knows about one host (see the module docstring for ``status``)."""

    name: str
    status: str = "pending"
    since: float | None = None  # console monotonic: when ``status`` began
    since_wall: float | None = None  # the same moment on the wall clock (display only)
    snapshot: HostSnapshot | None = None  # the newest good snapshot (kept while unreachable)
    received_at: float | None = None  # console monotonic: when that snapshot's seq first arrived
    error: HostError | None = None  # why the last poll failed (None when it answered)
    rtt_s: float | None = None
    contact: bool = False  # the last poll answered with a snapshot
    offset: float | None = None  # console monotonic − agent wall clock, estimated at contact
    series: Mapping[str, EngineSeries] = field(default_factory=dict)
    alerts: tuple[Alert, ...] = ()  # console-side alerts for this host
    route: str | None = None  # e.g. "ssh ops@gpu01: up" (None: reached directly)
    warnings: tuple[
        str, ...
    ] = ()  # about the console's own setup for this host (a token file others can read)
    stale_after_s: float | None = None  # the host's source's own limit (None: the console's stale_after_s)

    def age(self, now: float) -> float | None:
        """Seconds since the newest snapshot was received (None if never)."""
        return None if self.received_at is None else max(0.0, now - self.received_at)

    def status_age(self, now: float) -> float | None:
        return None if self.since is None else max(0.0, now - self.since)

    def engine(self, engine_id: str) -> EngineSnapshot | None:
        return self.snapshot.engine(engine_id) if self.snapshot is not None else None

    @property
    def live(self) -> bool:
        """Whether this host's values may be shown as live."""
        return self.status == "fresh"


@dataclass(frozen=True, slots=True)
class FleetAlert:
    """An alert somewhere in the fleet: ``engine`` None for host-level and console-side alerts."""

    host: str
    engine: str | None
    alert: Alert
    active: bool = True
    cleared_at: float | None = None  # console monotonic, for recent (cleared) alerts
    console: bool = False  # raised by the console (agent unreachable/stale/incompatible)

    @property
    def key(self) -> AlertKey:
        return (self.host, self.engine or "", self.alert.code, self.alert.since or "")

    @property
    def where(self) -> str:
        return f"{self.host}/{self.engine}" if self.engine else self.host


@dataclass(frozen=True, slots=True)
class FleetState:
    config: ConsoleConfig
    hosts: Mapping[str, HostState]
    now: float = 0.0
    wall: float | None = None
    polls: int = 0
    alerts: tuple[FleetAlert, ...] = ()  # active, newest first
    recent: tuple[FleetAlert, ...] = ()  # cleared within the window, newest first
    acknowledged: frozenset[AlertKey] = frozenset()

    @classmethod
    def initial(cls, config: ConsoleConfig, now: float = 0.0) -> FleetState:
        return cls(config, {h.name: HostState(h.name) for h in config.hosts}, now)

    @property
    def window_s(self) -> float:
        return WINDOW_S

    @property
    def gap_s(self) -> float:
        """Samples further apart than this are drawn with a gap between them."""
        return 3.0 * self.config.refresh_s + self.config.request_timeout_s

    def host(self, name: str) -> HostState | None:
        return self.hosts.get(name)

    def engine(self, host: str, engine: str) -> EngineSnapshot | None:
        h = self.hosts.get(host)
        return h.engine(engine) if h is not None else None

    def all_alerts(self) -> tuple[FleetAlert, ...]:
        """Active then recent alerts (each list newest first)."""
        return self.alerts + self.recent

    def is_acknowledged(self, alert: FleetAlert) -> bool:
        return alert.key in self.acknowledged


# --- the reducer -----------------------------------------------------------------------------------


def apply(
    state: FleetState, results: Iterable[HostResult], now: float, wall: float | None = None
) -> FleetState:
    """The state after one poll round (``results`` may cover any subset of hosts; hosts without a
    result only age). ``now``: console monotonic; ``wall``: wall clock, for alert timestamps only."""
    cfg = state.config
    by_host = {r.host: r for r in results}
    hosts: dict[str, HostState] = {}
    for name in dict.fromkeys([*state.hosts, *by_host]):
        old = state.hosts.get(name) or HostState(name)
        hosts[name] = _reduce_host(old, by_host.get(name), now, wall, cfg)
    alerts = _collect_alerts(hosts)
    active = {a.key for a in alerts}
    cleared = tuple(replace(a, active=False, cleared_at=now) for a in state.alerts if a.key not in active)
    recent = tuple(
        a for a in cleared + state.recent if a.key not in active and now - (a.cleared_at or now) <= WINDOW_S
    )[:RECENT_MAX]
    keep = active | {a.key for a in recent}
    return FleetState(cfg, hosts, now, wall, state.polls + 1, alerts, recent, state.acknowledged & keep)


def acknowledge(state: FleetState, key: AlertKey) -> FleetState:
    """The same state with the alert ``key`` acknowledged (a new occurrence has a new ``since``)."""
    return replace(state, acknowledged=state.acknowledged | {key})


def _reduce_host(
    old: HostState, r: HostResult | None, now: float, wall: float | None, cfg: ConsoleConfig
) -> HostState:
    """One host's new state; a failure while reducing its result makes that host (alone) unreachable."""
    try:
        h = _with_result(old, r, cfg) if r is not None else old
        return _settle(h, old.status, now, wall, cfg)
    except Exception as exc:  # a console bug on one odd answer must not drop the whole round
        err = HostError("bad_payload", f"console could not use this answer: {type(exc).__name__}: {exc}")
        failed = replace(
            old,
            status="unreachable",
            error=err,
            contact=False,
            warnings=r.warnings if r is not None else old.warnings,
        )
        return _settle(failed, old.status, now, wall, cfg)


# any other kind: unreachable; "connecting" (an SSH tunnel still starting) keeps the host pending
_ERROR_STATUS = {"incompatible": "incompatible", "unauthorized": "unauthorized", "connecting": "pending"}


def _with_result(prev: HostState, r: HostResult, cfg: ConsoleConfig) -> HostState:
    if r.snapshot is None:
        err = r.error or HostError("unreachable", "no answer")
        status = _ERROR_STATUS.get(err.kind, "unreachable")
        return replace(
            prev,
            status=status,
            error=err,
            rtt_s=r.rtt_s,
            contact=False,
            route=r.route,
            warnings=r.warnings,
            stale_after_s=r.stale_after_s,
        )
    snap = r.snapshot
    last = prev.snapshot
    restarted = last is not None and snap.seq < last.seq  # the agent restarted: its seq began again
    watermark = -1 if (last is None or restarted) else last.seq
    if r.history:
        fresh = {s.seq: s for s in (*r.history, snap) if s.seq > watermark}
        ordered = [fresh[k] for k in sorted(fresh)]
    else:
        ordered = [snap] if snap.seq > watermark else []
    if not ordered:  # the same snapshot again: nothing new, it keeps ageing
        status = prev.status if prev.status in ("fresh", "stale") else "stale"
        return replace(
            prev,
            status=status,
            error=None,
            rtt_s=r.rtt_s,
            contact=True,
            route=r.route,
            warnings=r.warnings,
            stale_after_s=r.stale_after_s,
        )
    newest = ordered[-1]
    taken = to_epoch(newest.taken_at)
    offset = prev.offset
    if (
        offset is None
        or restarted
        or not prev.contact
        or taken is None
        or abs(taken + offset - r.received_at) > _drift_limit(cfg)
    ):
        offset = None if taken is None else r.received_at - taken  # (re-)estimated at each contact
    series = _series_for(prev.series, newest, cfg)
    for s in ordered:
        if s is newest:
            x = r.received_at if (taken is None or offset is None) else min(r.received_at, taken + offset)
        else:
            t = to_epoch(s.taken_at)
            if t is None or offset is None:
                continue  # a history point that cannot be placed in time is left out
            x = t + offset
        for e in s.engines:
            buf = series.get(e.id)
            if buf is not None:
                buf.append(x, e.stats if stats_are_live(e, s.interval_s) else None)
    return HostState(
        prev.name,
        "fresh",
        prev.since,
        prev.since_wall,
        newest,
        r.received_at,
        None,
        r.rtt_s,
        True,
        offset,
        series,
        prev.alerts,
        r.route,
        r.warnings,
        r.stale_after_s,
    )


def _drift_limit(cfg: ConsoleConfig) -> float:
    """How far a snapshot's mapped time may be from its receipt before the offset is re-estimated
    (an agent wall-clock jump)."""
    return 2.0 * cfg.refresh_s + cfg.request_timeout_s + 1.0


def _series_for(
    old: Mapping[str, EngineSeries], snap: HostSnapshot, cfg: ConsoleConfig
) -> Mapping[str, EngineSeries]:
    ids = [e.id for e in snap.engines]
    if len(ids) == len(old) and all(i in old for i in ids):
        return old  # same engines: the same (shared, append-only) buffers
    capacity = math.ceil(WINDOW_S / cfg.refresh_s * 1.25) + 4
    step = 0.5 * cfg.refresh_s
    return {i: old.get(i) or EngineSeries(capacity, step) for i in ids}


def _settle(h: HostState, old_status: str, now: float, wall: float | None, cfg: ConsoleConfig) -> HostState:
    """Age the host (fresh → stale by receive age), stamp ``since`` on a status change, console alerts."""
    status = h.status
    limit = _stale_after(h, cfg)
    if status in ("fresh", "stale") and h.received_at is not None:
        status = "stale" if now - h.received_at > limit else "fresh"
    since, since_wall = h.since, h.since_wall
    if since is None or status != old_status:
        since = now
        if status == "stale" and h.received_at is not None:
            since = min(now, h.received_at + limit)
        since_wall = None if wall is None else wall - (now - since)
    out = (
        h
        if (status, since, since_wall) == (h.status, h.since, h.since_wall)
        else replace(h, status=status, since=since, since_wall=since_wall)
    )
    if status == "fresh" and not out.alerts:
        return out  # the common case: nothing to raise
    alerts = _console_alerts(out, now, cfg)
    return out if alerts == out.alerts else replace(out, alerts=alerts)


def _stale_after(h: HostState, cfg: ConsoleConfig) -> float:
    return h.stale_after_s if h.stale_after_s is not None else cfg.stale_after_s


def _console_alerts(h: HostState, now: float, cfg: ConsoleConfig) -> tuple[Alert, ...]:
    since = rfc3339(h.since_wall) if h.since_wall is not None else None
    age = h.age(now)
    if h.status == "unreachable" and h.error is not None:
        evidence: dict[str, Any] = {
            "error": h.error.kind,
            "message": h.error.message,
            "last_snapshot_age_s": None if age is None else round(age, 1),
        }
        if h.error.status is not None:
            evidence["http_status"] = h.error.status
        if h.error.kind == "bad_payload":
            summary = "agent's answer could not be read: " + h.error.message.removeprefix("bad payload: ")
        else:
            summary = "agent did not answer: " + h.error.message
        return (
            Alert(
                code="AGENT_UNREACHABLE", severity="critical", since=since, summary=summary, evidence=evidence
            ),
        )
    if h.status == "unauthorized" and h.error is not None:
        return (
            Alert(
                code="AGENT_UNAUTHORIZED",
                severity="critical",
                since=since,
                summary=f"{h.name}: {h.error.message}",
                evidence={"http_status": h.error.status, "message": h.error.message},
            ),
        )
    if h.status == "incompatible" and h.error is not None:
        return (
            Alert(
                code="SCHEMA_MISMATCH",
                severity="critical",
                since=since,
                summary=h.error.message,
                evidence={"found": h.error.found_schema, "expected": SCHEMA},
            ),
        )
    if h.status == "stale":
        return (
            Alert(
                code="AGENT_STALE",
                severity="warning",
                since=since,
                summary=f"newest snapshot is {age or 0:.0f}s old (stale after {_stale_after(h, cfg):g}s)",
                evidence={
                    "age_s": None if age is None else round(age, 1),
                    "stale_after_s": _stale_after(h, cfg),
                    "seq": h.snapshot.seq if h.snapshot else None,
                },
            ),
        )
    return ()


def _since_key(a: FleetAlert) -> float:
    t = to_epoch(a.alert.since)
    return t if t is not None else -math.inf


def _collect_alerts(hosts: Mapping[str, HostState]) -> tuple[FleetAlert, ...]:
    """Every active alert (console-side, host-level, engine-level), newest first; ties: most severe first."""
    out: list[FleetAlert] = []
    for h in hosts.values():
        out.extend(FleetAlert(h.name, None, a, console=True) for a in h.alerts)
        snap = h.snapshot
        if snap is None:
            continue
        out.extend(FleetAlert(h.name, None, a) for a in snap.alerts)
        for e in snap.engines:
            out.extend(FleetAlert(h.name, e.id, a) for a in e.alerts)
    out.sort(key=lambda a: (_since_key(a), severity_rank(a.alert.severity)), reverse=True)
    return tuple(out)


def engine_alerts(state: FleetState, host: str, engine: str | None) -> list[FleetAlert]:
    """The active alerts of one engine (or of the host level when ``engine`` is None)."""
    return [a for a in state.alerts if a.host == host and a.engine == engine]


def host_alert_codes(h: HostState) -> list[Alert]:
    """Console-side and host-level alerts of one host."""
    return list(h.alerts) + (list(h.snapshot.alerts) if h.snapshot is not None else [])


def sorted_by_severity(alerts: Sequence[Alert]) -> list[Alert]:
    return sorted(alerts, key=lambda a: -severity_rank(a.severity))


__all__ = [
    "HOST_STATUSES",
    "METRICS",
    "WINDOW_S",
    "AlertKey",
    "EngineSeries",
    "FleetAlert",
    "FleetState",
    "HostState",
    "acknowledge",
    "apply",
    "engine_alerts",
    "host_alert_codes",
    "sorted_by_severity",
]
