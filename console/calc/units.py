"""Units and their display: GB = 1e9 bytes, GiB = 2**30 bytes, tokens with K/M/B suffixes."""

from __future__ import annotations

import math

GB = 10**9
GiB = 2**30
MiB = 2**20
HOURS_PER_MONTH = 730.0  # the 730-hour month cloud bills use (8,760 h / 12)
DAYS_PER_MONTH = HOURS_PER_MONTH / 24.0
SECONDS_PER_DAY = 86_400


def gib(n_bytes: float) -> str:
    """``37.07 GiB`` (binary, as vLLM logs it)."""
    return f"{n_bytes / GiB:,.2f} GiB"


def gb(n_bytes: float) -> str:
    """``39.76 GB`` (decimal, as vendors print it)."""
    return f"{n_bytes / GB:,.2f} GB"


def tokens(n: float | None) -> str:
    """``5.45M`` / ``104.1K`` / ``812``; ``—`` for None."""
    if n is None:
        return "—"
    if not math.isfinite(n):
        return "∞"
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= scale:
            return f"{n / scale:,.2f}{suffix}"
    return f"{n:,.0f}"


def usd(x: float | None, digits: int = 2) -> str:
    """``$1,825.00``; ``—`` for None."""
    if x is None:
        return "—"
    return f"-${-x:,.{digits}f}" if x < 0 else f"${x:,.{digits}f}"


def billions(n_params: int | float) -> str:
    """``70.55 B`` parameters."""
    return f"{n_params / 1e9:,.2f} B"
