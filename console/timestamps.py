"""Wire timestamps (RFC 3339, display only) as epoch seconds, for the console's readers of snapshots."""

from __future__ import annotations

from agents.schema import parse_rfc3339


def to_epoch(text: str | None) -> float | None:
    """Epoch seconds of an RFC 3339 timestamp with an offset or ``Z``; None when it is absent, not a
    string, unreadable, without an offset, or out of range."""
    if not text:
        return None
    try:
        return parse_rfc3339(text)
    except (ValueError, TypeError, OverflowError):
        return None
