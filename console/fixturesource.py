"""The fleet source over recordings: recorded JSON replayed for tests, snapshot images and offline review.

An adapter behind :class:`console.fleet.FleetSource`. ``FixtureFleetSource`` replays hosts recorded as
snapshots, history files or a fleet directory (``fleet.json``, schema ``llmconsole.fleet-fixture/1``,
see tests/data/fleet/README.md) on a clock of its own that advances one step per poll round. Actions are
refused: a recording cannot be restarted.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.schema import History, HostSnapshot, from_dict, history_from_dict
from agents.schema import epoch_or_none as to_epoch
from console.fleet import ActionResult, HostError, HostResult
from console.payload import PayloadError, decode_parsed

FIXTURE_SCHEMA = "llmconsole.fleet-fixture/1"


@dataclass
class FixtureHost:
    """One host's recorded behaviour. Poll ``n`` (0-based) answers ``snapshots[start + n]`` (the last one
    again once they run out); the first answer also carries ``snapshots[:start]`` as history. After
    ``answers`` polls, ``then`` takes over: "repeat" (the agent keeps sending its last snapshot: it goes
    stale) or a HostError (it stops answering)."""

    name: str
    snapshots: list[HostSnapshot] = field(default_factory=list)
    start: int = 0
    answers: int | None = None
    then: str | HostError = "repeat"
    payload_error: HostError | None = None  # every poll fails decoding like this (e.g. a v2 agent)
    logs: dict[str, list[str]] = field(default_factory=dict)


class FrameClock:
    """A monotonic clock that only moves when told (one step per fixture poll round)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


class FixtureFleetSource:
    """Replays recorded hosts; poll rounds advance ``clock`` by ``step_s``. After ``rounds`` rounds
    (if set) the recording has ended: polls return nothing new and the clock stops, so the picture
    holds still (snapshot tests). Actions are refused: a recording cannot be restarted."""

    def __init__(
        self,
        hosts: Sequence[FixtureHost | HostSnapshot | str | os.PathLike[str]],
        *,
        step_s: float = 1.0,
        rounds: int | None = None,
        wall_start: float | None = None,
    ) -> None:
        self.hosts = [h for item in hosts for h in _fixture_hosts(item)]
        self.step_s = step_s
        self.rounds = rounds
        self.polls = 0
        self.clock = FrameClock()
        first = next((h.snapshots[h.start] for h in self.hosts if h.snapshots), None)
        if wall_start is None and first is not None:
            wall_start = to_epoch(first.taken_at)
        self._wall0 = wall_start if wall_start is not None else 1_750_000_000.0
        self._mono0 = self.clock.now
        self.actions: list[tuple[str, str, str]] = []

    def wall(self) -> float:
        """Wall-clock time matching ``clock`` (for display timestamps)."""
        return self._wall0 + (self.clock.now - self._mono0)

    @classmethod
    def from_dir(cls, path: str | os.PathLike[str], **kwargs: Any) -> FixtureFleetSource:
        """Load ``fleet.json`` (see tests/data/fleet/README.md) and the files it names."""
        base = Path(path)
        manifest = json.loads((base / "fleet.json").read_text(encoding="utf-8"))
        if manifest.get("fixture") != FIXTURE_SCHEMA:
            raise ValueError(f"{base / 'fleet.json'}: expected fixture {FIXTURE_SCHEMA!r}")
        hosts = [_fixture_host(base, h) for h in manifest["hosts"]]
        for key in ("step_s", "rounds"):
            if key in manifest and key not in kwargs:
                kwargs[key] = manifest[key]
        return cls(hosts, **kwargs)

    @classmethod
    def from_snapshots(cls, snapshots: Iterable[HostSnapshot], **kwargs: Any) -> FixtureFleetSource:
        """One host per snapshot (named after it), each answering that snapshot forever."""
        return cls([FixtureHost(s.host, [s]) for s in snapshots], **kwargs)

    @property
    def ended(self) -> bool:
        return self.rounds is not None and self.polls >= self.rounds

    async def poll(self) -> list[HostResult]:
        if self.ended:
            await asyncio.sleep(0)
            return []
        if self.polls:
            self.clock.now += self.step_s
        n, now = self.polls, self.clock.now
        self.polls += 1
        return [self._answer(h, n, now) for h in self.hosts]

    def _answer(self, h: FixtureHost, n: int, now: float) -> HostResult:
        if h.payload_error is not None:
            return HostResult(h.name, None, h.payload_error, 0.004, now)
        if not h.snapshots:
            return HostResult(h.name, None, HostError("unreachable", "connection refused"), None, now)
        if h.answers is not None and n >= h.answers:
            if isinstance(h.then, HostError):
                return HostResult(h.name, None, h.then, None, now)
            n = h.answers - 1  # "repeat": the same snapshot again
        i = min(h.start + n, len(h.snapshots) - 1)
        history = tuple(h.snapshots[: h.start]) if n == 0 else ()
        return HostResult(h.name, h.snapshots[i], None, 0.003, now, history)

    def _find(self, host: str) -> FixtureHost | None:
        return next((h for h in self.hosts if h.name == host), None)

    async def history(self, host: str) -> History | HostError:
        h = self._find(host)
        if h is None or not h.snapshots:
            return HostError("unreachable", f"no recording for {host!r}")
        return History(host=host, snapshots=tuple(h.snapshots[: h.start + 1]))

    async def logs(self, host: str, engine: str, lines: int = 200) -> list[str] | HostError:
        h = self._find(host)
        if h is None or engine not in h.logs:
            return HostError("unreachable", f"no recorded log for {host}/{engine}")
        now = self._answer(h, max(0, self.polls - 1), self.clock.now)
        if now.error is not None:  # the host is down in the recording right now: so is its log
            return now.error
        return h.logs[engine][-lines:]

    def action_block(self, host: str) -> str | None:
        return "recorded fleet: actions are not available on a replay"

    def problems(self) -> list[str]:
        return []

    async def action(self, host: str, engine: str, verb: str) -> ActionResult:
        self.actions.append((host, engine, verb))
        return ActionResult(host, engine, verb, "refused", self.action_block(host) or "")

    async def aclose(self) -> None:
        return None


def _fixture_hosts(item: FixtureHost | HostSnapshot | str | os.PathLike[str]) -> list[FixtureHost]:
    """A FixtureHost as is; a snapshot: a host answering it; a path: a fleet directory (fleet.json), a
    snapshot file, or a history file (replayed one snapshot per poll from its start)."""
    if isinstance(item, FixtureHost):
        return [item]
    if isinstance(item, HostSnapshot):
        return [FixtureHost(item.host, [item])]
    path = Path(item)
    if path.is_dir():
        manifest = json.loads((path / "fleet.json").read_text(encoding="utf-8"))
        return [_fixture_host(path, h) for h in manifest["hosts"]]
    data = read_json_file(path)
    if isinstance(data, dict) and "snapshots" in data:
        history = history_from_dict(data)
        return [FixtureHost(history.host, list(history.snapshots), start=0)]
    snap = from_dict(data)
    return [FixtureHost(snap.host, [snap])]


def read_json_file(path: Path) -> Any:
    """JSON from a file, transparently gunzipping ``*.gz``."""
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    return json.loads(raw)


def _fixture_host(base: Path, spec: Mapping[str, Any]) -> FixtureHost:
    host = FixtureHost(str(spec["name"]))
    if "payload" in spec:
        try:
            decode_parsed(from_dict, read_json_file(base / spec["payload"]))
        except PayloadError as f:
            host.payload_error = f.error
        else:
            raise ValueError(f"{spec['payload']}: expected a payload this console cannot read")
    if "history" in spec:
        host.snapshots = list(history_from_dict(read_json_file(base / spec["history"])).snapshots)
        every = int(spec.get("every", 1))
        host.snapshots = host.snapshots[::-1][::every][::-1]  # thin out, keeping the newest
    if "snapshot" in spec:
        host.snapshots.append(from_dict(read_json_file(base / spec["snapshot"])))
    start = int(spec.get("start", -1))  # negative: counted from the end
    host.start = max(0, len(host.snapshots) + start if start < 0 else min(start, len(host.snapshots) - 1))
    host.answers = spec.get("answers")
    then = spec.get("then", "repeat")
    if isinstance(then, dict):
        then = HostError(str(then.get("kind", "unreachable")), str(then.get("message", "")))
    host.then = then
    if "logs" in spec:
        host.logs = {k: list(v) for k, v in read_json_file(base / spec["logs"]).items()}
    return host
