"""The HTTP API on its own thread and event loop, so serving it never slows collection.

The agent's loop runs supervision and the collector; uvicorn runs in a second thread with its own loop
(:class:`ApiServer`). However many requests arrive, the collector's timers and I/O never queue behind
them; the two threads share only the GIL. The API reaches the runtime through :class:`LoopBridge`:
the latest snapshot (an immutable object behind one reference) is read directly; everything that
touches supervisors or the history ring (logs, history, actions) runs on the agent's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from agents.exporter import EngineExport
from agents.schema import HostSnapshot

T = TypeVar("T")


class LoopBridge:
    """An ``AgentRuntime`` as the API sees it (``agents.apihandlers.ApiRuntime``), safe to call from another
    thread than ``loop``'s. With ``loop`` None (or when called on that loop) calls go straight through."""

    def __init__(self, runtime: Any, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.runtime = runtime
        self.loop = loop

    @property
    def history_s(self) -> float:
        return self.runtime.history_s

    @property
    def benchmarks(self) -> Any:
        """The runtime's BenchmarkBook (thread-safe: written here, read by the collector)."""
        return self.runtime.benchmarks

    def latest(self) -> HostSnapshot | None:
        return self.runtime.latest()

    def latest_json(self) -> str | None:
        return self.runtime.latest_json()

    def engine_exports(self) -> dict[str, EngineExport]:
        """Per engine, what /metrics adds to the snapshot: the Reading of its latest successful scrape and its
        version (from its log, by the collector's exposure audit). Read directly, like the snapshot: each is
        an immutable object behind one reference."""
        return {
            eid: EngineExport(w.latest_reading, getattr(getattr(w, "exposure", None), "version", None))
            for eid, w in self.runtime.watches.items()
        }

    def engine_ids(self) -> list[str]:
        return list(self.runtime.supervisors)

    def engine_state(self, engine_id: str) -> str | None:
        sup = self.runtime.supervisors.get(engine_id)
        return None if sup is None else sup.state

    async def history_json(self, seconds: float) -> str:
        return await self._on_loop(self.runtime.history_json, seconds)

    async def logs(self, engine_id: str, lines: int) -> list[str]:
        return await self._on_loop(self.runtime.logs, engine_id, lines)

    async def act(self, engine_id: str, action: str) -> str:
        return await self._await_on_loop(lambda: self.runtime.act(engine_id, action))

    async def bundle(self, request: Any, audit: Any) -> Any:
        """An incident bundle (agents/bundle.py): gathered on the agent's loop, written in a worker thread."""
        from agents import bundle

        inputs = await self._on_loop(bundle.gather, self.runtime, request)
        return await asyncio.to_thread(bundle.write_bundle, inputs, request, audit)

    async def _on_loop(self, fn: Callable[..., T], *args: Any) -> T:
        async def call() -> T:
            return fn(*args)

        return await self._await_on_loop(call)

    async def _await_on_loop(self, make: Callable[[], Awaitable[T]]) -> T:
        if self.loop is None or asyncio.get_running_loop() is self.loop:
            return await make()

        async def run() -> T:
            return await make()

        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(run(), self.loop))


class ApiServer:
    """A uvicorn server on ``sock``, run by a thread of its own with a fresh event loop."""

    def __init__(
        self,
        server: Any,
        sock: socket.socket,
        *,
        prepare_loop: Callable[[asyncio.AbstractEventLoop], None] | None = None,
    ) -> None:
        self.server = server
        self.sock = sock
        self.prepare_loop = prepare_loop
        self.error: BaseException | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._main, name="llmconsole-api", daemon=True)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # noqa: BLE001 - reported to the agent's loop by start()/stop()
            self.error = exc
        finally:
            self._done.set()

    async def _serve(self) -> None:
        if self.prepare_loop is not None:
            self.prepare_loop(asyncio.get_running_loop())
        await self.server.serve(sockets=[self.sock])

    async def start(self, timeout_s: float = 30.0) -> None:
        """Start the thread; return once the server accepts connections. OSError if it cannot."""
        self._thread.start()
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not self.server.started:
            if self._done.is_set():
                why = (
                    self.error
                    if self.error is not None and not isinstance(self.error, SystemExit)
                    else "server exited"
                )
                raise OSError(f"the API server did not start: {why}")
            if asyncio.get_running_loop().time() > deadline:
                raise OSError(f"the API server did not start within {timeout_s:.0f} s")
            await asyncio.sleep(0.02)

    async def stop(self, timeout_s: float = 15.0) -> None:
        """Ask uvicorn to finish (in-flight requests complete) and wait for the thread."""
        self.server.should_exit = True
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self._thread.join, timeout_s)
