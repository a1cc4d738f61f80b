"""How alerts read: severity order, and the words and rows of their summaries and evidence (exit status,
signal names, pending work, listener addresses)."""

from __future__ import annotations

import ipaddress
import signal as _signal
from typing import TYPE_CHECKING

from agents.schema import Alert

if TYPE_CHECKING:
    from agents.alerts.observation import EngineObservation

_SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2}


def severity_key(alert: Alert) -> tuple[int, str]:
    return (_SEVERITY_RANK.get(alert.severity, 3), alert.code)


def pending_kind_of(obs: EngineObservation, running: float | None, waiting: float | None) -> str:
    """What work is pending: "requests"; "canary only" (the engine's counts hold at most the agent's own
    canary); "canary" when the counts are unknown (no live scrape) and the canary is stuck."""
    canary = obs.canary_in_flight_s is not None or obs.canary_ok is False
    if not canary:
        return "requests"
    if not obs.scrape.ok or (running is None and waiting is None):
        return "canary"
    pending = (running or 0) + (waiting or 0)
    return "canary only" if pending <= (1 if obs.canary_in_flight_s is not None else 0) else "requests"


def signal_name(sig: int | None) -> str | None:
    if sig is None:
        return None
    try:
        return _signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def exit_text(code: int | None, sig: int | None) -> str:
    """How a process ended: "killed by SIGKILL", "exited 3", or "exit status unknown" (a process that was
    not the agent's child)."""
    if sig is not None:
        return f"killed by {signal_name(sig)}"
    if code is not None:
        return f"exited {code}"
    return "exit status unknown"


def addr(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip.split("%")[0]).is_loopback
    except ValueError:
        return False
