"""Fetch each host's incident bundle (``GET /v1/bundle``) the way the console reaches its agents.

Direct hosts by their ``url``, ``ssh`` hosts through the same tunnels as the console (console/tunnels.py);
the host's operator token from ``token_env`` / ``token_file`` (console/tokens.py). Every host is fetched
concurrently (at most ``PARALLEL`` at once) under one deadline for the whole command and a byte cap per
answer; a host that cannot give its bundle is a :class:`HostBundle` with ``error`` (one line), never an
exception, so the others still make it into the bundle.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from console.fleet import one_line
from console.netutil import connect_reason as _connect_reason
from console.payload import error_text as _error_text
from console.settings import HostConfig
from console.tokens import TokenState

PARALLEL = 4
DEFAULT_TIMEOUT_S = 120.0
DEFAULT_MAX_BYTES = 256 * 2**20


@dataclass(frozen=True, slots=True)
class HostBundle:
    """One host's answer: the archive bytes, or why there is none (``kind``: unreachable | unauthorized |
    http | too_big | timeout | no_token)."""

    name: str
    data: bytes | None = None
    error: str | None = None
    kind: str | None = None
    elapsed_s: float | None = None
    route: str | None = None  # "ssh user@host" or "direct"


async def _fetch_one(
    client: httpx.AsyncClient,
    host: HostConfig,
    base: str,
    token: str,
    params: Mapping[str, Any],
    max_bytes: int,
) -> HostBundle:
    url = base.rstrip("/") + "/v1/bundle"
    try:
        async with client.stream(
            "GET", url, params=dict(params), headers={"Authorization": f"Bearer {token}"}
        ) as resp:
            chunks, size = [], 0
            cap = max_bytes if resp.status_code == 200 else 1024 * 1024
            async for chunk in resp.aiter_bytes():
                size += len(chunk)
                if size > cap:
                    if resp.status_code == 200:
                        cap_text = f"{max_bytes >> 20} MiB" if max_bytes >= 2**20 else f"{max_bytes} bytes"
                        return HostBundle(
                            host.name,
                            error=f"the bundle is larger than the console's cap of {cap_text} "
                            "(--max-mib): ask for a shorter --since or one --engine",
                            kind="too_big",
                        )
                    break
                chunks.append(chunk)
            body = b"".join(chunks)
    except httpx.TimeoutException:
        return HostBundle(host.name, error="the agent did not answer in time", kind="timeout")
    except httpx.HTTPError as exc:
        return HostBundle(host.name, error=f"unreachable: {_connect_reason(exc)}", kind="unreachable")
    if resp.status_code == 200:
        return HostBundle(host.name, data=body)
    text = _error_text(body)
    if resp.status_code in (401, 403):
        return HostBundle(
            host.name, error=f"not authorized (HTTP {resp.status_code}): {text}", kind="unauthorized"
        )
    if resp.status_code == 404 and "/v1/bundle" in text:
        text = "this agent has no /v1/bundle (an older version)"
    return HostBundle(
        host.name,
        error=f"HTTP {resp.status_code}: {text}" if text else f"HTTP {resp.status_code}",
        kind="http",
    )


async def fetch_bundles(
    hosts: Sequence[HostConfig],
    params: Mapping[str, Any],
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_bytes: int = DEFAULT_MAX_BYTES,
    environ: Mapping[str, str] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> list[HostBundle]:
    """One :class:`HostBundle` per host, in the order given, all within ``timeout_s``."""
    env = os.environ if environ is None else environ
    tunnels = None
    if any(h.ssh for h in hosts):
        from console.tunnels import TunnelManager

        tunnels = TunnelManager(hosts)
    gate = asyncio.Semaphore(PARALLEL)
    client = httpx.AsyncClient(
        transport=transport,
        trust_env=False,
        headers={"User-Agent": "llmconsole"},
        timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)),
    )

    async def one(host: HostConfig) -> HostBundle:
        token = TokenState.read(host, env)
        if token.value is None:
            why = (token.block or "").split(": ", 1)[-1] or "no token configured"
            return HostBundle(
                host.name, error=f"a bundle needs the host's operator token: {why}", kind="no_token"
            )
        route = f"ssh {host.ssh}" if host.ssh else "direct"
        async with gate:
            started = time.monotonic()
            try:
                base = await tunnels.url_for(host) if tunnels is not None else host.url
            except Exception as exc:  # noqa: BLE001 - a tunnel that cannot be opened: this host is unreachable
                why = f"unreachable: {one_line(str(exc) or type(exc).__name__, 200)}"
                return HostBundle(host.name, error=why, kind="unreachable", route=route)
            got = await _fetch_one(client, host, base, token.value, params, max_bytes)
            return HostBundle(
                got.name, got.data, got.error, got.kind, round(time.monotonic() - started, 3), route
            )

    tasks = [asyncio.ensure_future(one(h)) for h in hosts]
    try:
        done, _ = await asyncio.wait(tasks, timeout=timeout_s)
        out = []
        for host, task in zip(hosts, tasks, strict=True):
            if task in done and task.exception() is None:
                out.append(task.result())
            elif task in done:
                exc = task.exception()
                out.append(
                    HostBundle(
                        host.name,
                        error=f"console error: {type(exc).__name__}: {one_line(str(exc), 200)}",
                        kind="http",
                    )
                )
            else:
                out.append(
                    HostBundle(
                        host.name,
                        error=f"no bundle within {timeout_s:g} s (the console's time cap, --timeout)",
                        kind="timeout",
                    )
                )
        return out
    finally:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*tasks, return_exceptions=True)
        await client.aclose()
        if tunnels is not None:
            await tunnels.aclose()
