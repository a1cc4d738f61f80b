"""Engine detail and the fleet's status line: toned text parts for the engine screen's header, GPUs,
state history, graph notes and how the agent sees a watched engine; the agent's refusals of an engine's
actions; the line under the fleet table; the calculator's live engines.

Pure: no Textual, no I/O, no clock.
"""

from __future__ import annotations

from agents.schema import (
    ACTIONS,
    EngineEvent,
    EngineSnapshot,
    GpuInfo,
    HostSnapshot,
    epoch_or_none,
    severity_rank,
    stats_are_live,
)
from agents.schema.units import age
from console.state import FleetState, HostState
from console.views.cells import SEVERITY_TONE, GiB, age_text, engine_view, wall_clock
from console.views.table import split_key
from widgets.badge import state_tone
from widgets.tone import Tone

Parts = list[tuple[str, Tone]]


def gpu_process_lines(snap: HostSnapshot, gpu: GpuInfo) -> Parts:
    """ "pid 41877  71.0 GiB  llama70b" per process; processes of no engine are "orphan" (warn)."""
    out: Parts = []
    for p in gpu.processes:
        mem = "?" if p.mem_bytes is None else f"{p.mem_bytes / GiB:.1f} GiB"
        owner = p.engine_id or "orphan"
        out.append((f"pid {p.pid:<8} {mem:>10}  {owner}", "warn" if p.engine_id is None else "live"))
    return out


def gpu_summary(gpu: GpuInfo) -> str:
    """ "util 93%  67°C  612/700 W  throttled: sw_power_cap" with n/a for what the GPU does not report."""
    util = "n/a" if gpu.util_pct is None else f"{gpu.util_pct:.0f}%"
    temp = "n/a" if gpu.temp_c is None else f"{gpu.temp_c:.0f}°C"
    if gpu.power_w is None:
        power = "n/a"
    else:
        power = (
            f"{gpu.power_w:.0f}"
            + (f"/{gpu.power_limit_w:.0f}" if gpu.power_limit_w is not None else "")
            + " W"
        )
    text = f"util {util}  {temp}  {power}"
    if gpu.throttle_reasons:
        text += "  throttled: " + ", ".join(gpu.throttle_reasons)
    if gpu.ecc_uncorrected:
        text += f"  ECC {gpu.ecc_uncorrected}"
    if gpu.xid_last is not None:
        text += f"  Xid {gpu.xid_last}"
    return text


def event_runs(e: EngineSnapshot) -> list[EngineEvent]:
    """The engine's transitions, oldest first, one per change of state: consecutive events in the same
    state (an older agent re-reported a hung engine's reason every second) fold into the first one."""
    out: list[EngineEvent] = []
    for ev in e.events:
        if out and out[-1].state == ev.state and ev.exit_code is None and ev.signal is None:
            continue
        out.append(ev)
    return out


def event_lines(e: EngineSnapshot, agent_now: float | None = None) -> Parts:
    """The engine's state history, newest first, one line per transition with how long each state
    lasted: "03:18:51 ready      5m02s  health 200 and canary ok". The current state (the newest
    transition, when it is the engine's state) says "for 3m12s" counted up to ``agent_now`` (the agent's
    wall clock now: its snapshot's time plus the snapshot's age), or nothing when that is unknown. The
    oldest line's duration is "≥" unless it is the launch ("starting"): older events may have been dropped."""
    runs = event_runs(e)
    starts = [epoch_or_none(ev.at) for ev in runs]
    out: Parts = []
    for i in range(len(runs) - 1, -1, -1):
        ev = runs[i]
        at = ev.at[11:19] if len(ev.at) >= 19 else ev.at
        detail = []
        if ev.exit_code is not None:
            detail.append(f"exit code {ev.exit_code}")
        if ev.signal is not None:
            detail.append(f"signal {ev.signal}")
        if ev.reason:
            detail.append(ev.reason)
        start = starts[i]
        # the oldest kept event may not be where its state began (older events were dropped) unless
        # it is the launch: its duration is then a lower bound
        at_least = "≥" if i == 0 and ev.state != "starting" else ""
        if i + 1 < len(runs):
            end = starts[i + 1]
            lasted = at_least + age(end - start) if start is not None and end is not None else ""
            span = f"{lasted:>7}"
        elif ev.state == e.state and start is not None and agent_now is not None:
            span = f"for {at_least}{age(agent_now - start)}"
        else:
            span = f"{'':>7}"
        text = f"{at} {ev.state:<9} {span}"
        if detail:
            text += "  " + "  ".join(detail)
        current = i == len(runs) - 1 and ev.state == e.state
        out.append((text, state_tone(ev.state) if current else "dim"))
    return out


def agent_now(h: HostState, now: float) -> float | None:
    """The agent's wall clock now: its latest snapshot's time plus how long ago that arrived."""
    snap = h.snapshot
    taken = epoch_or_none(snap.taken_at) if snap is not None else None
    received = h.age(now)
    return None if taken is None or received is None else taken + received


def action_refusal(e: EngineSnapshot | None, verb: str) -> str | None:
    """Why the engine's agent refuses ``verb`` (its snapshot's ``actions``), or None: it runs it (state
    permitting), or the agent does not say (an older agent, an engine not in the snapshot)."""
    if e is None or e.actions is None or verb not in ACTIONS:
        return None
    reason = getattr(e.actions, verb, None)
    return reason if isinstance(reason, str) else None


def refused_actions(e: EngineSnapshot | None) -> list[str]:
    """The verbs the engine's agent refuses, in the wire's order."""
    return [verb for verb in ACTIONS if action_refusal(e, verb) is not None]


def watch_lines(e: EngineSnapshot) -> Parts:
    """How the agent sees an engine it watches but did not start: its listener, the socket's owner, its
    process and memory (or "not visible"), the kind seen against the configured one, a kind error, each
    line of what it cannot observe and why, then the actions it refuses. Empty for a managed engine
    (unless the agent refuses some of its actions)."""
    out: Parts = []
    w = e.watch
    if not e.managed:
        port = f"port {e.port}" if e.port is not None else "its port"
        if w is not None and w.listener:
            out.append((f"listener {w.listener}", "live"))
        else:
            out.append((f"listener: nothing seen listening on {port}", "warn"))
        owner = w.owner if w is not None else None
        out.append((f"owner {owner}" if owner else "owner not visible", "live" if owner else "dim"))
        pid = "pid not visible" if e.pid is None else f"pid {e.pid}"
        rss = "RSS not visible" if e.rss_bytes is None else f"RSS {e.rss_bytes / GiB:.1f} GiB"
        out.append((f"{pid} · {rss}", "dim" if e.pid is None or e.rss_bytes is None else "live"))
        seen = w.kind_seen if w is not None else None
        kind_error = w.kind_error if w is not None else None
        if seen is None:
            out.append((f"kind configured {e.kind} · seen: not identified yet", "dim"))
        else:
            bad = kind_error is not None or seen != e.kind
            out.append((f"kind configured {e.kind} · seen {seen}", "error" if bad else "ok"))
        if kind_error:
            out.append((f"kind error: {kind_error}", "error"))
        out.extend((f"not observed: {line}", "dim") for line in (w.unobserved if w is not None else ()))
    out.extend((f"{verb} refused: {action_refusal(e, verb)}", "dim") for verb in refused_actions(e))
    return out


def engine_summary(h: HostState, e: EngineSnapshot, now: float) -> Parts:
    """The detail screen's header line parts."""
    view = engine_view(h, e, now)
    parts: Parts = [(f" {e.state.upper()} ", state_tone(e.state) if h.live else "stale")]
    parts.append((f"  {h.name}/{e.id}  {e.kind}", "live"))
    if e.simulated:
        parts.append(("  SIMULATED", "simulated"))
    if not e.managed:
        parts.append(("  watched (not started by this agent)", "info"))
    parts.append((f"  model {e.served_model_name or e.model or '?'}", "live"))
    if e.pid is not None:
        parts.append((f"  pid {e.pid}", "dim"))
    elif not e.managed:
        parts.append(("  pid not visible", "dim"))
    if e.port is not None:
        parts.append((f"  port {e.port}", "dim"))
    if e.uptime_s is not None:
        parts.append((f"  up {age_text(e.uptime_s)}", "dim"))
    if e.restarts:
        parts.append((f"  restarts {e.restarts}", "warn"))
    if not h.live:
        parts.append((f"  host {h.status}: values {age_text(h.age(now))} old", "stale"))
    elif not view.live and e.stats is not None:
        parts.append((f"  stats stale {age_text(view.age)}", "stale"))
    elif view.error:
        parts.append(("  stats: scrape failed", "error"))
    if e.last_exit is not None:
        le = e.last_exit
        if le.signal is not None:
            how = f"signal {le.signal}"
        elif le.code is not None:
            how = f"code {le.code}"
        else:  # e.g. a watched engine's: not the agent's child, its exit status cannot be known
            how = "status unknown"
        parts.append((f"  last exit {how}", "warn"))
    return parts


def graph_note(h: HostState, e: EngineSnapshot, now: float) -> str | None:
    """What the graphs' titles say about their data: STALE with the age, SIMULATED."""
    notes = []
    view = engine_view(h, e, now)
    if not h.live:
        notes.append(f"{h.status.upper()} {age_text(h.age(now))}")
    elif not view.running and e.stats is None:
        notes.append(f"{e.state.upper()}: no stats")
    elif view.error:
        notes.append("ERR: metrics scrape failed")
    elif not view.live:
        notes.append(f"STATS STALE {age_text(view.age)}")
    if e.simulated:
        notes.append("SIMULATED")
    return " · ".join(notes) or None


def host_status_line(state: FleetState, key: str | None, block: str | None = None) -> Parts:
    """The status line under the fleet table for the highlighted row: reachability with the error
    text (the reason behind an ERR or UNREACHABLE), partial-collection errors, why actions are off."""
    if key is None:
        return [("no hosts match", "dim")]
    host, engine = split_key(key)
    h = state.hosts.get(host)
    if h is None:
        return [(key, "dim")]
    parts: Parts = [(f"{key}  ", "info"), *_reachability(state, h)]
    snap = h.snapshot
    if engine is not None and snap is not None:
        e = snap.engine(engine)
        if e is not None:
            worst = sorted(e.alerts, key=lambda a: -severity_rank(a.severity))
            if worst:
                parts.append(
                    (f"  · {worst[0].code}: {worst[0].summary}", SEVERITY_TONE.get(worst[0].severity, "info"))
                )
            elif engine_view(h, e, state.now).error:
                parts.append(("  · ERR: no stats from the engine's metrics endpoint", "error"))
            if not e.managed:
                parts.append(("  · watched: not started by this agent", "dim"))
            refused = refused_actions(e)
            if refused and not block:
                parts.append((f"  · {', '.join(refused)} refused by the agent (the key says why)", "dim"))
    elif snap is not None and snap.errors and h.live:
        more = f" (+{len(snap.errors) - 1})" if len(snap.errors) > 1 else ""
        parts.append((f"  · ERR {snap.errors[0]}{more}", "error"))
    if block:
        parts.append((f"  · {block}", "dim"))
    parts.extend((f"  · warning: {w}", "warn") for w in h.warnings)
    return parts


def _reachability(state: FleetState, h: HostState) -> Parts:
    """How the host answered: UNREACHABLE since when and why, NOT AUTHORIZED, INCOMPATIBLE, STALE, fresh."""
    now = state.now
    old = [(f"  · values shown are {age_text(h.age(now))} old", "stale")] if h.snapshot is not None else []
    if h.status == "unreachable":
        since = f"since {wall_clock(h.since_wall)} " if h.since_wall is not None else ""
        msg = h.error.message if h.error else "no answer"
        return [(f"UNREACHABLE {since}({age_text(h.status_age(now))}): {msg}", "crit"), *old]
    if h.status == "unauthorized":
        return [(f"NOT AUTHORIZED: {h.error.message if h.error else '?'}", "crit"), *old]
    if h.status == "incompatible":
        return [(f"INCOMPATIBLE: {h.error.message if h.error else '?'}", "error")]
    if h.status == "stale":
        limit = state.config.stale_after_s
        return [(f"STALE: newest snapshot {age_text(h.age(now))} old (stale after {limit:g}s)", "stale")]
    if h.status == "pending":
        return [("connecting…", "dim")]
    rtt = f"rtt {h.rtt_s * 1000:.0f}ms · " if h.rtt_s is not None else ""
    seq = f"seq {h.snapshot.seq} · " if h.snapshot else ""
    return [(f"fresh · {seq}{rtt}received {age_text(h.age(now))} ago", "ok")]


def live_engine_fields(state: FleetState) -> list[dict[str, object]]:
    """Keyword arguments for console.calc.live.LiveEngine, one per engine in the fleet: tokens/s
    (prompt + generation) only when live (a stale number is never offered as live)."""
    out: list[dict[str, object]] = []
    for h in state.hosts.values():
        snap = h.snapshot
        if snap is None:
            continue
        for e in snap.engines:
            gpus = [g for g in snap.gpus if g.index in e.gpus]
            tps = None
            if h.live and e.stats is not None and stats_are_live(e, snap.interval_s):
                gen, prompt = e.stats.generation_tokens_per_s, e.stats.prompt_tokens_per_s
                tps = None if gen is None and prompt is None else (gen or 0.0) + (prompt or 0.0)
            out.append(
                {
                    "host": h.name,
                    "engine": e.id,
                    "model": e.served_model_name or e.model,
                    "gpu_count": len(e.gpus),
                    "gpu_name": gpus[0].name if gpus else None,
                    "tokens_per_s": tps,
                    "simulated": e.simulated or snap.gpu_source == "simulated",
                }
            )
    return out


__all__ = [
    "action_refusal",
    "agent_now",
    "event_runs",
    "engine_summary",
    "event_lines",
    "gpu_process_lines",
    "gpu_summary",
    "graph_note",
    "host_status_line",
    "live_engine_fields",
    "refused_actions",
    "watch_lines",
]
