"""Benchmarks announced to the agent: which engine is under a benchmark's load right now.

``llmconsole bench HOST/ENGINE`` is load on production, so it announces itself (``POST
/v1/engines/{id}/bench``, operator role, audited): ``start`` with its run id and a one-line workload,
``heartbeat`` while it runs, ``end`` when it stops. :class:`BenchmarkBook` keeps one marker per engine;
a marker whose client went silent for ``expire_s`` (a killed benchmark sends no ``end``) is dropped, so
the engine detail never claims a benchmark that no longer runs. Thread-safe: the API thread writes, the
collector reads. Clock-free: callers pass monotonic ``now``.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

from agents.schema import BenchmarkMarker, rfc3339

EVENTS = ("start", "heartbeat", "end")
EXPIRE_S = 60.0  # a benchmark heartbeats every few seconds; silence this long means it is gone
RUN_ID_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
MAX_WORKLOAD_CHARS = 200


class BenchmarkRefused(ValueError):
    """An announcement that cannot be taken (unknown run, another run in progress); one line."""


@dataclass(slots=True)
class _Entry:
    marker: BenchmarkMarker
    seen: float  # monotonic time of the last start/heartbeat


class BenchmarkBook:
    def __init__(self, expire_s: float = EXPIRE_S) -> None:
        self.expire_s = expire_s
        self._lock = threading.Lock()
        self._by_engine: dict[str, _Entry] = {}

    def announce(
        self,
        engine: str,
        event: str,
        run_id: str,
        now: float,
        *,
        client: str | None = None,
        workload: str | None = None,
        wall: float | None = None,
    ) -> BenchmarkMarker | None:
        """Apply one event; the engine's marker afterwards (None after ``end``). BenchmarkRefused when a
        heartbeat or end names no running benchmark, or a start finds another live one on the engine."""
        if event not in EVENTS:
            raise BenchmarkRefused(f"event must be one of {', '.join(EVENTS)}")
        if not RUN_ID_RE.fullmatch(run_id):
            raise BenchmarkRefused("run_id must be 1-64 characters of letters, digits, '_', '.', ':', '-'")
        with self._lock:
            self._expire(now)
            entry = self._by_engine.get(engine)
            if event == "start":
                if entry is not None and entry.marker.run_id != run_id:
                    raise BenchmarkRefused(f"benchmark {entry.marker.run_id} is already running on {engine}")
                text = None if workload is None else " ".join(workload.split())[:MAX_WORKLOAD_CHARS]
                marker = BenchmarkMarker(
                    run_id=run_id, started_at=rfc3339(wall), client=client, workload=text
                )
                self._by_engine[engine] = _Entry(marker, now)
                return marker
            if entry is None or entry.marker.run_id != run_id:
                raise BenchmarkRefused(f"no benchmark {run_id} is running on {engine}")
            if event == "end":
                del self._by_engine[engine]
                return None
            entry.seen = now
            return entry.marker

    def current(self, engine: str, now: float) -> BenchmarkMarker | None:
        with self._lock:
            self._expire(now)
            entry = self._by_engine.get(engine)
            return entry.marker if entry is not None else None

    def _expire(self, now: float) -> None:
        for engine in [e for e, entry in self._by_engine.items() if now - entry.seen > self.expire_s]:
            del self._by_engine[engine]


__all__ = ["EVENTS", "EXPIRE_S", "BenchmarkBook", "BenchmarkRefused"]
