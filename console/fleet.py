"""The fleet-source protocol and its result types: what the App and the reducer need from any source.

Pure (no HTTP, sockets or files): a source is an adapter behind :class:`FleetSource` — the agents polled
over HTTP (``console.httpsource.HttpFleetSource``), a recording (``console.fixturesource.FixtureFleetSource``), a
Prometheus-compatible server (``console.promsource.PrometheusFleetSource``) — and ``console.combined.CombinedFleetSource`` puts several
side by side.

Errors are values, never exceptions: a poll returns one :class:`HostResult` per host it has news of, with
either a decoded snapshot or a :class:`HostError`. A source that fails as a whole (a Prometheus that does
not answer) says so in one line from :meth:`FleetSource.problems`; the hosts it showed then only age.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from agents.schema import ACTIONS, History, HostSnapshot

_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]+")


def one_line(text: str, limit: int = 300) -> str:
    """``text`` safe for one terminal line: control characters (newlines, escapes, bidi overrides)
    become one space, and at most ``limit`` characters are kept."""
    text = _UNPRINTABLE.sub(" ", text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True, slots=True)
class HostError:
    """Why a host gave no snapshot: ``kind`` is unreachable | http | unauthorized | incompatible |
    bad_payload | connecting (an SSH tunnel still starting). ``message`` is always one printable line (agent-supplied text is cleaned here)."""

    kind: str
    message: str  # one line for the operator
    found_schema: str | None = None  # incompatible: the schema string the agent sent
    status: int | None = None  # http / unauthorized: the status code

    def __post_init__(self) -> None:
        object.__setattr__(self, "message", one_line(str(self.message)))
        if self.found_schema is not None:
            object.__setattr__(self, "found_schema", one_line(str(self.found_schema), 60))


@dataclass(frozen=True, slots=True)
class HostResult:
    """One host's answer to one poll round."""

    host: str
    snapshot: HostSnapshot | None
    error: HostError | None
    rtt_s: float | None  # request round-trip (None when nothing came back)
    received_at: float  # console monotonic clock when the answer (or the failure) arrived
    history: tuple[HostSnapshot, ...] = ()  # on first contact / after an outage: the agent's recent past
    route: str | None = None  # how the host is reached when not directly, e.g. "ssh ops@gpu01: up"
    warnings: tuple[
        str, ...
    ] = ()  # about the console's own setup for this host (a token file others can read)
    stale_after_s: float | None = None  # this host's own staleness limit (None: the console's stale_after_s)

    @property
    def ok(self) -> bool:
        return self.snapshot is not None


@dataclass(frozen=True, slots=True)
class ActionResult:
    """The outcome of start/stop/restart. ``outcome``: accepted | refused | unknown (timed out:
    the agent may or may not have acted — re-check; the console never replays it)."""

    host: str
    engine: str
    verb: str
    outcome: str
    message: str
    state: str | None = None
    status: int | None = None

    @property
    def ok(self) -> bool:
        return self.outcome == "accepted"


class FleetSource(Protocol):
    async def poll(self) -> list[HostResult]: ...

    async def history(self, host: str) -> History | HostError: ...

    async def logs(self, host: str, engine: str, lines: int = 200) -> list[str] | HostError: ...

    async def action(self, host: str, engine: str, verb: str) -> ActionResult: ...

    def action_block(self, host: str) -> str | None:
        """Why actions on this host are disabled (one line), or None when they are allowed."""
        ...

    def problems(self) -> list[str]:
        """One line per part of this source that failed its last poll (empty when all answered)."""
        ...

    async def aclose(self) -> None: ...


__all__ = [
    "ACTIONS",
    "ActionResult",
    "FleetSource",
    "HostError",
    "HostResult",
    "one_line",
]
