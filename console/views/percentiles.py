"""The engine detail's numbers panel: latency percentiles (TTFT, TPOT/ITL, end-to-end, queue time at
p50/p95/p99) with the window they were measured over, load and rates (with their window), preemptions,
waiting by reason, client connections, the KV ETA, and the SLO with its error budget and burn rates.

Every duration goes through agents.schema.units (the one display rule); a percentile inside a wide
histogram bucket shows the bucket's bound (console.views.cells.quantile_text). A value the agent did not
send is "—" (tone missing), never a number; values that are not current carry the stale tone.

Pure: no Textual, no I/O, no clock.
"""

from __future__ import annotations

from agents.schema import EngineSnapshot, EngineStats, SloStatus
from agents.schema.units import age, duration
from console.views.cells import quantile_bucket, quantile_text, rate_text
from widgets.tone import Tone

Parts = list[tuple[str, Tone]]

# row label -> stats attribute prefix (… + "_p50_s" etc.)
LATENCY_ROWS: tuple[tuple[str, str], ...] = (
    ("TTFT", "ttft"),
    ("TPOT/ITL", "itl"),
    ("End-to-end", "e2e"),
    ("Queue", "queue_time"),
)
QUANTILES = ("p50", "p95", "p99")
LABEL_W, COL_W = 11, 8
MISSING = "—"


def window_text(seconds: float | None) -> str:
    """ "over 60s" / "over 5m00s"; "window not reported" when the agent did not say."""
    return "window not reported" if seconds is None else f"over {age(seconds)}"


def latency_title(stats: EngineStats | None) -> str:
    """ "Latency · over 1m00s": the panel title, with the window the percentiles cover."""
    return f"Latency · {window_text(stats.percentile_window_s if stats is not None else None)}"


def load_title(stats: EngineStats | None) -> str:
    """ "Load · rates over 5s": the panel title, with the window the per-second rates cover."""
    window = stats.rate_window_s if stats is not None else None
    return "Load · rates " + ("window not reported" if window is None else f"over {age(window)}")


def latency_value(stats: EngineStats | None, prefix: str, q: str) -> float | None:
    """One percentile (seconds) from the stats, None when absent."""
    if stats is None:
        return None
    value = getattr(stats, f"{prefix}_{q}_s", None)
    return value if isinstance(value, int | float) else None


def latency_table(stats: EngineStats | None, live: bool = True) -> Parts:
    """A header line and one line per latency: "TTFT         164ms   1.24s   2.10s" (the window they
    were measured over is ``latency_title``'s). A percentile the agent read inside a wide histogram
    bucket shows that bucket's bound ("≤100ms", ">10s"), not the interpolated number: ``quantile_text``."""
    out: Parts = [(f"{'':<{LABEL_W}}" + "".join(f"{q:>{COL_W}}" for q in QUANTILES), "dim")]
    for label, prefix in LATENCY_ROWS:
        out.append((f"\n{label:<{LABEL_W}}", "dim"))
        for q in QUANTILES:
            value = latency_value(stats, prefix, q)
            if value is None:
                out.append((f"{MISSING:>{COL_W}}", "missing"))
            else:
                text = quantile_text(value, quantile_bucket(stats, f"{prefix}_{q}_s"))
                out.append((f"{text:>{COL_W}}", "live" if live else "stale"))
    return out


def _num(value: float | None, live: bool, fmt: str = "") -> tuple[str, Tone]:
    if value is None:
        return (MISSING, "missing")
    text = rate_text(value) if not fmt else format(value, fmt)
    return (text, ("zero" if value == 0 else "live") if live else "stale")


def load_lines(e: EngineSnapshot, live: bool = True) -> Parts:
    """Running, waiting and client connections ("conns": established TCP connections to the engine's
    port); waiting by reason when the engine says; preemptions (rate over the rate window, count over the
    percentile window); KV usage and when it fills at its trend."""
    s = e.stats
    out: Parts = []
    pct_window = s.percentile_window_s if s is not None else None
    out.append(("running ", "dim"))
    out.append(_num(s.requests_running if s else None, live))
    out.append((" · waiting ", "dim"))
    out.append(_num(s.requests_waiting if s else None, live))
    out.append((" · conns ", "dim"))  # established TCP connections to the engine's port
    conns = e.client_connections
    out.append(_num(None if conns is None else float(conns), live))
    reasons = [
        (name, value)
        for name, value in (
            ("capacity", s.requests_waiting_capacity if s else None),
            ("deferred", s.requests_waiting_deferred if s else None),
        )
        if value is not None
    ]
    if reasons:
        out.append(("\nwaiting for ", "dim"))
        for i, (name, value) in enumerate(reasons):
            out.append(((" · " if i else "") + f"{name} ", "dim"))
            out.append(_num(value, live))
    rate = s.preemptions_per_s if s else None
    count = s.preemptions_in_window if s else None
    out.append(("\npreemptions ", "dim"))
    out.append((MISSING, "missing") if rate is None else (f"{rate_text(rate)}/s", _warn_if(rate > 0, live)))
    out.append((" · ", "dim"))
    out.append((MISSING, "missing") if count is None else (rate_text(count), _warn_if(count > 0, live)))
    out.append((" in window" if pct_window is None else f" in {age(pct_window)}", "dim"))
    kv = s.kv_cache_usage if s else None
    out.append(("\nKV cache ", "dim"))
    if kv is None:  # stats without the gauge: the engine has none (TGI)
        out.append(("n/a", "unsupported") if s is not None else (MISSING, "missing"))
    else:
        out.append(_num(kv * 100, live, ".1f"))
    if kv is not None:
        out.append(("%", "dim"))
    if e.kv_eta_s is not None:
        out.append((" · full in ", "dim"))
        out.append((duration(e.kv_eta_s), _warn_if(True, live)))
    elif kv is not None:
        out.append((" · not rising", "dim"))
    return out


def _warn_if(cond: bool, live: bool) -> Tone:
    if not live:
        return "stale"
    return "warn" if cond else "live"


def slo_lines(slo: SloStatus | None) -> Parts:
    """ "TTFT ≤ 500ms for 99% (histogram)", then the budget left and each window's burn rate; the
    problem when the objective cannot be judged. Empty without an SLO."""
    if slo is None:
        return []
    out: Parts = [(f"TTFT ≤ {duration(slo.ttft_s)} for {slo.objective * 100:g}% ({slo.source})", "live")]
    out.append(("\nbudget left ", "dim"))
    left = slo.budget_left
    if left is None:
        out.append((MISSING, "missing"))
    else:
        out.append((f"{left * 100:.0f}%", "crit" if left <= 0 else "live"))
    for w in slo.windows:
        out.append((f"  burn {age(w.window_s)} ", "dim"))
        if w.burn_rate is None:
            out.append(("no requests", "missing"))
        else:
            out.append(
                (f"×{w.burn_rate:.1f}", "warn" if w.burn_rate > 1 else "live")
            )  # > 1: faster than allowed
    if slo.problem:
        out.append((f"\n{slo.problem}", "warn"))
    return out


__all__ = [
    "LATENCY_ROWS",
    "QUANTILES",
    "latency_table",
    "latency_title",
    "latency_value",
    "load_lines",
    "load_title",
    "slo_lines",
    "window_text",
]
