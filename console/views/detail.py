"""Engine detail and the fleet's status line: toned text parts for the engine screen's header, GPUs,
state history and graph notes; the line under the fleet table; the calculator's live engines.

Pure: no Textual, no I/O, no clock.
"""

from __future__ import annotations

from agents.schema import EngineSnapshot, GpuInfo, HostSnapshot, severity_rank, stats_are_live
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


def event_lines(e: EngineSnapshot) -> Parts:
    """The engine's state history, newest first: "03:18:51 ready  health 200 and canary ok"."""
    out: Parts = []
    for ev in reversed(e.events):
        at = ev.at[11:19] if len(ev.at) >= 19 else ev.at
        detail = []
        if ev.exit_code is not None:
            detail.append(f"exit code {ev.exit_code}")
        if ev.signal is not None:
            detail.append(f"signal {ev.signal}")
        if ev.reason:
            detail.append(ev.reason)
        out.append((f"{at} {ev.state:<9} {'  '.join(detail)}", state_tone(ev.state)))
    return out


def engine_summary(h: HostState, e: EngineSnapshot, now: float) -> Parts:
    """The detail screen's header line parts."""
    view = engine_view(h, e, now)
    parts: Parts = [(f" {e.state.upper()} ", state_tone(e.state) if h.live else "stale")]
    parts.append((f"  {h.name}/{e.id}  {e.kind}", "live"))
    if e.simulated:
        parts.append(("  SIMULATED", "simulated"))
    parts.append((f"  model {e.served_model_name or e.model or '?'}", "live"))
    if e.pid is not None:
        parts.append((f"  pid {e.pid}", "dim"))
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
        how = f"signal {le.signal}" if le.signal is not None else f"code {le.code}"
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
    "engine_summary",
    "event_lines",
    "gpu_process_lines",
    "gpu_summary",
    "graph_note",
    "host_status_line",
    "live_engine_fields",
]
