"""Bounded HTTP GET: a total deadline and a byte cap, all or nothing.

Per-operation socket timeouts never trip on a server that trickles bytes (slowloris; httpx#1450), so the
total deadline here wraps the whole request. Bodies are requested with identity encoding, so a compressed
bomb cannot arrive, and the byte cap counts what is read. Used by the agent's collector and by
`llmconsole probe`; stdlib only (safe for the console to import).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from agents.http1 import BodyTooLarge, Http1Client, Http1Error, NoResponse, Progress

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
    client: Http1Client,
    url: str,
    *,
    deadline_s: float,
    max_bytes: int = DEFAULT_MAX_BYTES,
    headers: dict[str, str] | None = None,
) -> Fetched:
    loop = asyncio.get_running_loop()
    started = loop.time()
    progress = Progress()

    def done(body: bytes | None, error: str | None, reachable: bool = True) -> Fetched:
        return Fetched(body, progress.status, error, reachable, loop.time() - started)

    try:
        async with asyncio.timeout(deadline_s):
            response = await client.get(url, max_bytes=max_bytes, headers=headers, progress=progress)
    except TimeoutError:
        # A response that started but did not finish is a slow server, not an unreachable one.
        return done(
            None, f"no complete response within {deadline_s:g}s", reachable=progress.status is not None
        )
    except BodyTooLarge as exc:
        return done(None, str(exc))
    except NoResponse as exc:
        return done(None, str(exc), reachable=False)
    except Http1Error as exc:
        return done(None, f"bad HTTP response: {exc}", reachable=progress.status is not None)
    except OSError as exc:
        where = "connection failed" if not progress.connected else "connection lost"
        return done(None, f"{where}: {transport_reason(exc)}", reachable=progress.status is not None)
    if response.status != 200:
        return done(None, f"HTTP {response.status} {response.reason}".rstrip())
    return done(response.body, None)


def transport_reason(exc: BaseException) -> str:
    """The root cause of a transport error in a few words ("connection refused")."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError):
            return "connection refused"
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror.lower()
        seen = seen.__cause__ or seen.__context__
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())[:200]
