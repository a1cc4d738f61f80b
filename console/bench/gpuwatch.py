"""For a fleet target: the engine's GPUs over a run, from its agent's snapshots (NVML on the GPU host).

Polled every ``interval_s`` through the same route the target was resolved by (direct or SSH tunnel,
with the host's token). Reported: the GPU indices, the peak memory used on them (summed over the
engine's GPUs), mean and peak utilization, mean power (summed) and the energy over the run (mean power ×
duration), from which the CLI derives tokens per joule. Values the agent does not report (simulated GPUs
have no power reading) are None with the reason in ``null_reasons``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from console.bench.http import Client, HttpError, split_url
from console.payload import PayloadError, decode_snapshot

MAX_SNAPSHOT_BYTES = 8 * 1024 * 1024


class GpuWatch:
    def __init__(self, agent_url: str, token: str | None, engine_id: str, interval_s: float = 2.0) -> None:
        origin, path = split_url(agent_url)
        self.path = path.rstrip("/") + "/v1/snapshot"
        self.client = Client(origin, {"Authorization": f"Bearer {token}"} if token else None)
        self.engine_id, self.interval_s = engine_id, interval_s
        self.samples: list[tuple[int | None, float | None, float | None]] = []  # (mem bytes, util %, power W)
        self.indices: tuple[int, ...] = ()
        self.gpu_source: str | None = None
        self.errors: list[str] = []
        self._task: asyncio.Task[None] | None = None

    async def _poll(self) -> None:
        try:
            async with (
                asyncio.timeout(5.0),
                self.client.request("GET", self.path, accept="application/json") as resp,
            ):
                raw = await resp.read(MAX_SNAPSHOT_BYTES)
            if resp.status != 200:
                self.errors.append(f"HTTP {resp.status}")
                return
            snap = decode_snapshot(raw)
        except (TimeoutError, HttpError, PayloadError) as exc:
            self.errors.append(" ".join(str(exc).split()) or type(exc).__name__)
            return
        engine = snap.engine(self.engine_id)
        if engine is None:
            self.errors.append(f"engine {self.engine_id} is gone from the snapshot")
            return
        self.indices, self.gpu_source = engine.gpus, snap.gpu_source
        gpus = [g for g in snap.gpus if g.index in engine.gpus]
        if not gpus:
            return

        def total(values: list[Any]) -> Any:
            return None if any(v is None for v in values) else sum(values)

        utils = [g.util_pct for g in gpus]
        mean_util = None if any(u is None for u in utils) else sum(utils) / len(utils)  # type: ignore[arg-type]
        self.samples.append(
            (total([g.mem_used_bytes for g in gpus]), mean_util, total([g.power_w for g in gpus]))
        )

    async def _loop(self) -> None:
        while True:
            await self._poll()
            await asyncio.sleep(self.interval_s)

    def begin(self) -> None:
        self._started = time.monotonic()
        self._task = asyncio.create_task(self._loop())

    async def end(self, duration_s: float) -> dict[str, Any]:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._poll()
        await self.client.aclose()
        return self.report(duration_s)

    def report(self, duration_s: float) -> dict[str, Any]:
        mems = [m for m, _, _ in self.samples if m is not None]
        utils = [u for _, u, _ in self.samples if u is not None]
        powers = [p for _, _, p in self.samples if p is not None]
        mean_power = sum(powers) / len(powers) if powers else None
        out: dict[str, Any] = {
            "indices": list(self.indices),
            "gpu_source": self.gpu_source,
            "samples": len(self.samples),
            "max_memory_used_bytes": max(mems) if mems else None,
            "mean_util_pct": sum(utils) / len(utils) if utils else None,
            "max_util_pct": max(utils) if utils else None,
            "mean_power_w": mean_power,
            "energy_j": mean_power * duration_s if mean_power is not None else None,
            "poll_errors": len(self.errors),
            "last_error": self.errors[-1] if self.errors else None,
        }
        why = (
            "no snapshot reached"
            if not self.samples
            else f"not reported by the agent (gpu_source {self.gpu_source})"
        )
        out["null_reasons"] = {
            k: why
            for k in ("max_memory_used_bytes", "mean_util_pct", "max_util_pct", "mean_power_w", "energy_j")
            if out[k] is None
        }
        return out
