"""Several fleet sources side by side: direct hosts beside ``[[console.prometheus]]`` servers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence

from agents.schema import History
from console.fleet import ActionResult, FleetSource, HostError, HostResult, one_line


class CombinedFleetSource:
    """Several sources side by side, polled concurrently. ``pinned`` hosts (those configured directly)
    always come from their own source, the route for actions and logs; any other host answered by more
    than one source is taken from the first in ``sources`` order that has a snapshot of it (else the
    first that named it). One source failing, even raising, never hides the others' hosts."""

    def __init__(
        self, sources: Sequence[FleetSource], pinned: Mapping[str, FleetSource] | None = None
    ) -> None:
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
        return (
            await src.history(host) if src is not None else HostError("unreachable", f"unknown host {host!r}")
        )

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


__all__ = ["CombinedFleetSource"]
