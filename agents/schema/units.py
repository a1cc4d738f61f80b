"""The one display rule for durations, shared by the agent's alert text, the console's screens and the CLI.

``duration(s)``: a latency or a span, sub-second in milliseconds ("164ms"), seconds with two significant
decimals under 10 s ("1.24s"), whole seconds under a minute ("38s"), then minutes and seconds ("3m12s"),
hours and minutes ("2h05m") and days and hours ("3d04h"). ``age(s)`` is the same rule at whole-second
resolution, for "how long ago" and "for how long". Stdlib only.
"""

from __future__ import annotations

import math


def duration(seconds: float | None) -> str:
    """164ms, 1.24s, 38s, 3m12s, 2h05m, 3d04h; "?" for None or a non-finite value."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = max(0.0, seconds)
    if s < 1.0:
        ms = round(s * 1000)
        return f"{ms}ms" if ms < 1000 else "1.00s"
    if s < 10.0:
        return f"{s:.2f}s" if round(s, 2) < 10 else "10s"
    return age(s)


def age(seconds: float | None) -> str:
    """47s, 3m12s, 2h05m, 3d04h (whole seconds); "?" for None or a non-finite value."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = int(max(0.0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"
