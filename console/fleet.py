"""The fleet-source protocol and its result types: what the App and the reducer need from any source.

Pure (no HTTP, sockets or files): a source is an adapter behind :class:`FleetSource` — the agents polled
over HTTP (``console.source.HttpFleetSource``), a recording (``console.source.FixtureFleetSource``), a
Prometheus-compatible server (``console.promsource.PrometheusFleetSource``) — and
:class:`CombinedFleetSource` puts several side by side.

Errors are values, never exceptions: a poll returns one :class:`HostResult` per host it has news of, with
either a decoded snapshot or a :class:`HostError`. A source that fails as a whole (a Prometheus that does
not answer) says so in one line from :meth:`FleetSource.problems`; the hosts it showed then only age.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from agents.schema import History, HostSnapshot

ACTIONS = ("start", "stop", "restart")

_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]+")


def one_line(text: str, limit: int = 300) -> str:
    """``text`` safe for one terminal line: control characters (newlines, escapes, bidi overrides)
    become one space, and at most ``limit`` characters are kept."""
    text = _UNPRINTABLE.sub(" ", text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True, slots=True)
class HostError:
    """Why a host gave no snapshot: ``kind`` is unreachable | http | unauthorized | incompatible |
    bad_payload. ``message`` is always one printable line (agent-supplied text is cleaned here)."""

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
    warnings: tuple[str, ...] = ()  # about the console's own setup for this host (a token file others can read)
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


class CombinedFleetSource:
    """Several sources side by side, polled concurrently. ``pinned`` hosts (those configured directly)
    always come from their own source, the route for actions and logs; any other host answered by more
    than one source is taken from the first in ``sources`` order that has a snapshot of it (else the
    first that named it). One source failing, even raising, never hides the others' hosts."""

    def __init__(self, sources: Sequence[FleetSource], pinned: Mapping[str, FleetSource] | None = None) -> None:
        self.sources = list(sources)
        self._pinned = dict(pinned or {})
        self._owner: dict[str, FleetSource] = dict(self._pinned)
        self._failed: dict[int, str] = {}

    async def poll(self) -> list[HostResult]:
        rounds = await asyncio.gather(*(s.poll() for s in self.sources), return_exceptions=True)
        chosen: dict[str, tuple[int, HostResult]] = {}
        self._failed = {}
        for i, got in enumerate(rounds):
            if isinstance(got, BaseException):
                if not isinstance(got, Exception):
                    raise got
                self._failed[i] = one_line(f"source #{i + 1} failed: {type(got).__name__}: {got}")
                continue
            for r in got:
                pin = self._pinned.get(r.host)
                if pin is not None and pin is not self.sources[i]:
                    continue  # a directly configured host: only its own source speaks for it
                seen = chosen.get(r.host)
                if seen is None or (seen[1].snapshot is None and r.snapshot is not None):
                    chosen[r.host] = (i, r)
        for host, (i, _) in chosen.items():
            self._owner[host] = self.sources[i]
        return [r for _, r in chosen.values()]

    def _source(self, host: str) -> FleetSource | None:
        return self._owner.get(host)

    async def history(self, host: str) -> History | HostError:
        src = self._source(host)
        return await src.history(host) if src is not None else HostError("unreachable", f"unknown host {host!r}")

    async def logs(self, host: str, engine: str, lines: int = 200) -> list[str] | HostError:
        src = self._source(host)
        if src is None:
            return HostError("unreachable", f"unknown host {host!r}")
        return await src.logs(host, engine, lines)

    def action_block(self, host: str) -> str | None:
        src = self._source(host)
        return f"unknown host {host!r}" if src is None else src.action_block(host)

    async def action(self, host: str, engine: str, verb: str) -> ActionResult:
        src = self._source(host)
        if src is None:
            return ActionResult(host, engine, verb, "refused", f"unknown host {host!r}")
        return await src.action(host, engine, verb)

    def problems(self) -> list[str]:
        out: list[str] = []
        for i, s in enumerate(self.sources):
            out.extend(s.problems() if i not in self._failed else [self._failed[i]])
        return out

    async def aclose(self) -> None:
        for s in self.sources:
            with contextlib.suppress(Exception):  # closing one source must not keep the others open
                await s.aclose()


__all__ = [
    "ACTIONS", "ActionResult", "CombinedFleetSource", "FleetSource", "HostError", "HostResult", "one_line",
]  # fmt: skip
