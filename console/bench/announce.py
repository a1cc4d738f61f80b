"""Tell a fleet engine's agent that a benchmark runs against it (``POST /v1/engines/{id}/bench``).

A benchmark of a fleet engine is load on production: it needs the operator role, and the agent audits its
start (with the workload and parameters) and end and shows it on the engine detail. :class:`Announcer`
sends ``start`` before the first request — a refusal stops the benchmark with the agent's reason —
``heartbeat`` every ``HEARTBEAT_S`` while it runs (a killed benchmark's marker expires on the agent), and
``end`` when it stops, however it stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from typing import Any

from console.bench.http import Client, HttpError, split_url

HEARTBEAT_S = 10.0
TIMEOUT_S = 5.0
MAX_ANSWER_BYTES = 64 * 1024


class AnnounceError(Exception):
    """The agent refused or did not take the announcement; one line."""


class Announcer:
    def __init__(
        self, agent_url: str, token: str | None, engine: str, workload: str, params: dict[str, Any]
    ) -> None:
        origin, path = split_url(agent_url)
        self.client = Client(origin, {"Authorization": f"Bearer {token}"} if token else None)
        self.path = f"{path.rstrip('/')}/v1/engines/{engine}/bench"
        self.engine, self.workload, self.params = engine, workload, params
        self.run_id = f"bench-{secrets.token_hex(6)}"
        self._beat: asyncio.Task[None] | None = None

    async def _send(self, event: str) -> tuple[int, dict[str, Any]]:
        body = {"event": event, "run_id": self.run_id}
        if event == "start":
            body |= {"workload": self.workload, "params": self.params}
        async with (
            asyncio.timeout(TIMEOUT_S),
            self.client.request(
                "POST", self.path, json.dumps(body).encode(), accept="application/json"
            ) as resp,
        ):
            raw = await resp.read(MAX_ANSWER_BYTES)
            status = resp.status
        try:
            doc = json.loads(raw)
        except ValueError:
            doc = {}
        return status, doc if isinstance(doc, dict) else {}

    async def start(self) -> None:
        try:
            status, doc = await self._send("start")
        except (TimeoutError, HttpError, OSError) as exc:
            raise AnnounceError(
                f"the agent did not take the benchmark's announcement: {exc or 'timed out'}"
            ) from None
        if status != 200:
            why = str(doc.get("error") or f"HTTP {status}")
            raise AnnounceError(f"the agent refused the benchmark (HTTP {status}): {why}")
        self._beat = asyncio.create_task(self._heartbeats(), name="bench-heartbeat")

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            with contextlib.suppress(TimeoutError, HttpError, OSError):
                await self._send("heartbeat")

    async def end(self) -> None:
        """Best effort: the agent expires a silent benchmark anyway."""
        if self._beat is not None:
            self._beat.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._beat
            with contextlib.suppress(TimeoutError, HttpError, OSError):
                await self._send("end")
        await self.client.aclose()


__all__ = ["HEARTBEAT_S", "AnnounceError", "Announcer"]
