"""Bounded HTTP GET: a total deadline and a byte cap, all or nothing.

httpx timeouts are per operation, so a server that trickles bytes (slowloris) never trips them; the total
deadline here wraps the whole request (httpx#1450). The byte cap counts decoded bytes, so a compressed
bomb cannot expand past it. Used by the agent's collector and by `llmconsole probe`; no agent-side
dependencies (safe for the console to import).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx

DEFAULT_MAX_BYTES = 16 * 2**20


@dataclass(frozen=True, slots=True)
class Fetched:
    """Outcome of one bounded GET. ``body`` is None unless the whole response arrived in time and size."""

    body: bytes | None
    status: int | None
    error: str | None
    reachable: bool  # False: no HTTP response at all (refused, reset, DNS, connect timeout)
    elapsed_s: float

    @property
    def ok(self) -> bool:
        return self.body is not None and self.error is None


async def fetch(
    client: httpx.AsyncClient,
    url: str,
    *,
    deadline_s: float,
    max_bytes: int = DEFAULT_MAX_BYTES,
    headers: dict[str, str] | None = None,
) -> Fetched:
    loop = asyncio.get_running_loop()
    started = loop.time()
    status: int | None = None

    def done(body: bytes | None, error: str | None, reachable: bool = True) -> Fetched:
        return Fetched(body, status, error, reachable, loop.time() - started)

    try:
        async with asyncio.timeout(deadline_s):
            async with client.stream("GET", url, headers=headers) as response:
                status = response.status_code
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > max_bytes:
                        return done(None, f"response larger than {max_bytes} bytes (the cap)")
                    chunks.append(chunk)
                if status != 200:
                    return done(None, f"HTTP {status} {response.reason_phrase}".rstrip())
                return done(b"".join(chunks), None)
    except TimeoutError:
        # A response that started but did not finish is a slow server, not an unreachable one.
        return done(None, f"no complete response within {deadline_s:g}s", reachable=status is not None)
    except httpx.ConnectError as exc:
        return done(None, f"connection failed: {_reason(exc)}", reachable=False)
    except httpx.HTTPError as exc:
        return done(None, f"{type(exc).__name__}: {_reason(exc)}", reachable=status is not None)


def _reason(exc: BaseException) -> str:
    """The root cause of a transport error in a few words (httpx often hides it behind its own text)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError):
            return "connection refused"
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror.lower()
        seen = seen.__cause__ or seen.__context__
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())[:200]
