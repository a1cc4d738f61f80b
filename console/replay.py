"""Replay an incident bundle: a fleet source whose time is a cursor over the recording.

:class:`ReplaySource` answers each poll with every host's snapshot as recorded at the cursor (the newest
snapshot taken at or before it); a host whose recording has not begun yet, or that the bundle could not
collect, answers with the error the bundle gives. The cursor moves only when told: ``step`` (one recorded
snapshot), ``jump`` (seconds), ``seek`` (a time) — or one step per poll while ``playing``. Its clocks
(:meth:`clock`, :meth:`wall`) read the cursor, so the console's ages and graphs follow the recording, not
the time the replay runs at. Actions are refused: a recording cannot be restarted.

:func:`parse_at` reads the times the CLI accepts: ``start``, ``end``, RFC 3339, or an offset from the
recording's start (``+90s``, ``+2m``, ``+1h5m``, ``-30s`` from the end).
"""

from __future__ import annotations

import bisect
import re

from agents.schema import History, parse_rfc3339, rfc3339
from agents.schema import epoch_or_none as to_epoch
from console.bundle_read import LoadedBundle, RecordedHost
from console.fleet import ActionResult, HostError, HostResult

REFUSED = "replay of a recorded bundle: actions are not available"
_OFFSET_RE = re.compile(r"(?P<sign>[+-])(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+(?:\.\d+)?)s?)?")


class ReplayError(ValueError):
    """A bad replay request (an unreadable time, an empty recording): one line for the user."""


class _Track:
    """One host's recording: snapshots in time order with their epoch times."""

    def __init__(self, host: RecordedHost) -> None:
        self.host = host
        timed = sorted(
            ((t, s) for s in host.snapshots if (t := to_epoch(s.taken_at)) is not None), key=lambda p: p[0]
        )
        self.times = [t for t, _ in timed]
        self.snaps = [s for _, s in timed]

    def index_at(self, at: float) -> int | None:
        """Index of the newest snapshot taken at or before ``at`` (None: the recording has not begun)."""
        i = bisect.bisect_right(self.times, at) - 1
        return i if i >= 0 else None


class ReplaySource:
    """A FleetSource over a loaded bundle; see the module docstring."""

    def __init__(self, bundle: LoadedBundle, *, at: float | None = None, name: str = "bundle") -> None:
        self.bundle, self.name = bundle, name
        self.tracks = [_Track(h) for h in bundle.hosts]
        self.timeline = sorted({t for tr in self.tracks for t in tr.times})
        if not self.timeline:
            raise ReplayError(f"{name}: the bundle holds no recorded snapshot to replay")
        self.cursor = self.timeline[-1] if at is None else self._clamp(at)
        self.playing = False
        self.rewound = True  # the next poll carries each host's recorded past up to the cursor
        self.actions: list[tuple[str, str, str]] = []

    # -- the time cursor
    @property
    def start(self) -> float:
        return self.timeline[0]

    @property
    def end(self) -> float:
        return self.timeline[-1]

    def _clamp(self, t: float) -> float:
        return min(max(t, self.start), self.end)

    def position(self) -> tuple[int, int]:
        """(1-based index of the cursor's recorded moment, number of recorded moments)."""
        return bisect.bisect_right(self.timeline, self.cursor), len(self.timeline)

    def seek(self, t: float) -> None:
        t = self._clamp(t)
        if t < self.cursor:
            self.rewound = True
        self.cursor = t

    def step(self, n: int) -> None:
        """Move ``n`` recorded moments (negative: back)."""
        i = bisect.bisect_right(self.timeline, self.cursor) - 1 + n
        self.seek(self.timeline[min(max(i, 0), len(self.timeline) - 1)])

    def jump(self, seconds: float) -> None:
        self.seek(self.cursor + seconds)

    def toggle(self) -> bool:
        """Play or pause; playing from the end starts again at the beginning."""
        if not self.playing and self.cursor >= self.end:
            self.seek(self.start)
        self.playing = not self.playing
        return self.playing

    def clock(self) -> float:
        return self.cursor

    def wall(self) -> float:
        return self.cursor

    def label(self) -> str:
        i, n = self.position()
        mode = "playing" if self.playing else "paused"
        return f"REPLAY {self.name} · {rfc3339(self.cursor)} · {i}/{n} · {mode}"

    # -- FleetSource
    async def poll(self) -> list[HostResult]:
        if self.playing:
            if self.cursor >= self.end:
                self.playing = False
            else:
                self.step(1)
        rewound, self.rewound = self.rewound, False
        return [self._answer(tr, rewound) for tr in self.tracks]

    def _answer(self, tr: _Track, rewound: bool) -> HostResult:
        if tr.host.status != "collected":
            return HostResult(
                tr.host.name,
                None,
                HostError("unreachable", tr.host.error or "not collected"),
                None,
                self.cursor,
            )
        i = tr.index_at(self.cursor)
        if i is None:
            first = rfc3339(tr.times[0]) if tr.times else "never"
            return HostResult(
                tr.host.name,
                None,
                HostError("unreachable", f"not recorded yet (from {first})"),
                None,
                self.cursor,
            )
        history = tuple(tr.snaps[:i]) if rewound else ()
        return HostResult(tr.host.name, tr.snaps[i], None, None, self.cursor, history)

    async def history(self, host: str) -> History | HostError:
        tr = self._track(host)
        i = None if tr is None else tr.index_at(self.cursor)
        if tr is None or i is None:
            return HostError("unreachable", f"no recording of {host!r} at this time")
        return History(host=host, snapshots=tuple(tr.snaps[: i + 1]))

    async def logs(self, host: str, engine: str, lines: int = 200) -> list[str] | HostError:
        tr = self._track(host)
        if tr is None or engine not in tr.host.logs:
            return HostError("unreachable", f"the bundle holds no log of {host}/{engine}")
        return tr.host.logs[engine][-lines:]  # the tail as captured when the bundle was built

    def action_block(self, host: str) -> str | None:
        return REFUSED

    def problems(self) -> list[str]:
        return [
            f"{tr.host.name}: not in the bundle: {tr.host.error}"
            for tr in self.tracks
            if tr.host.status != "collected"
        ]

    async def action(self, host: str, engine: str, verb: str) -> ActionResult:
        self.actions.append((host, engine, verb))
        return ActionResult(host, engine, verb, "refused", REFUSED)

    async def aclose(self) -> None:
        return None

    def _track(self, host: str) -> _Track | None:
        return next((tr for tr in self.tracks if tr.host.name == host), None)


def parse_at(text: str, start: float, end: float) -> float:
    """A replay time: ``start``, ``end``, RFC 3339, ``+OFFSET`` from the start or ``-OFFSET`` from the end."""
    word = text.strip()
    if word in ("start", "end"):
        return start if word == "start" else end
    m = _OFFSET_RE.fullmatch(word)
    if m and any(m.group(k) for k in ("h", "m", "s")):
        secs = int(m["h"] or 0) * 3600 + int(m["m"] or 0) * 60 + float(m["s"] or 0)
        return start + secs if m["sign"] == "+" else end - secs
    try:
        return parse_rfc3339(word.replace(" ", "T"))
    except ValueError:
        raise ReplayError(
            f"--at {text!r}: expected start, end, an RFC 3339 time (2026-12-06T03:04:05Z), "
            "+OFFSET from the start or -OFFSET from the end (+90s, +2m, -1h5m)"
        ) from None


__all__ = ["REFUSED", "ReplayError", "ReplaySource", "parse_at"]
