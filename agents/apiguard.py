"""The agent API's outermost ASGI layer: what is enforced whatever the route.

:class:`Guard` caps headers and bodies, lets through only Host headers that name a loopback address or a
configured name (DNS-rebinding guard), refuses WebSocket upgrades, answers at most ``max_in_flight``
requests at once (503 JSON + ``Retry-After`` past that) and passes every response body through
``redact`` (a :class:`agents.redact.Redactor`), so the secrets the agent injected into engines never
leave it, whatever an engine printed. Large bodies are redacted once (an LRU keyed by the body's digest)
and off the loop. Every refusal is one line of JSON.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
MAX_HEADER_BYTES = 32 * 1024  # all header names and values together
MAX_HEADERS = 100
MAX_IN_FLIGHT = 256  # requests being answered at once; idle sockets never count (agents/connguard.py)
RETRY_AFTER_S = 1
REDACT_CACHE_MIN_BYTES = 16 * 1024  # bodies this large are redacted once per distinct body
REDACT_OFF_LOOP_BYTES = 256 * 1024  # and, when not cached yet, in a worker thread
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


def host_of(header: str) -> str:
    """The host part of a Host header value, lower-cased: ``[::1]:9300`` -> ``::1``, ``a:1`` -> ``a``."""
    value = header.strip().lower()
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def is_loopback_host(host: str) -> bool:
    if host in LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


class Guard:
    """Pure ASGI middleware: header and body caps, Host-header allow-list, no WebSockets, a bound on requests
    in flight (503 JSON + Retry-After past it), redacted response bodies. (h11's own limit only bounds
    *incomplete* requests: a 70 KB header that arrives in one read passes it, hence the caps here; vLLM
    GHSA-rxc4-3w6r-4v47 was exactly that.) ``close()`` runs ``closers`` (the app's pending audit summaries)."""

    def __init__(
        self,
        app: Any,
        *,
        allowed_hosts: Iterable[str] = (),
        redact: Callable[[str], str] = lambda text: text,
        max_body_bytes: int = MAX_BODY_BYTES,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        self.app = app
        self.allowed = frozenset(h.strip("[]").lower() for h in allowed_hosts)
        self.redact = redact
        self.max_body_bytes = max_body_bytes
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.shed = 0
        self.closers: list[Callable[[], None]] = []
        self._redacted: OrderedDict[bytes, bytes] = OrderedDict()

    def close(self) -> None:
        for closer in self.closers:
            closer()

    def host_allowed(self, header: str | None) -> bool:
        if header is None:
            return True  # HTTP/1.0 without Host: not a browser, so not a rebinding vector
        host = host_of(header)
        return is_loopback_host(host) or host in self.allowed

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:
            self.shed += 1
            await send_error(
                send,
                503,
                "agent busy: too many requests in flight; retry shortly",
                [(b"retry-after", str(RETRY_AFTER_S).encode())],
            )
            return
        self.in_flight += 1
        try:
            await self._guarded(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _guarded(self, scope: dict, receive: Callable, send: Callable) -> None:
        raw_headers = scope.get("headers") or ()
        if len(raw_headers) > MAX_HEADERS or sum(len(k) + len(v) for k, v in raw_headers) > MAX_HEADER_BYTES:
            await send_error(
                send,
                431,
                f"request headers too large (limit {MAX_HEADERS} headers, {MAX_HEADER_BYTES} bytes)",
            )
            return
        headers: dict[bytes, bytes] = {}
        for k, v in raw_headers:
            if k in headers and k in (b"host", b"content-length"):
                await send_error(send, 400, f"duplicate {k.decode()} header")
                return
            headers[k] = v
        host = headers.get(b"host")
        if not self.host_allowed(None if host is None else host.decode("latin-1")):
            shown = host.decode("latin-1")[:80] if host else ""
            await send_error(
                send,
                403,
                f"Host header {shown!r} is not allowed (DNS-rebinding guard); add the name to [agent] allowed_hosts",
            )
            return
        length = headers.get(b"content-length")
        if length is not None:
            if not length.strip().isdigit():
                await send_error(send, 400, "invalid Content-Length header")
                return
            if int(length) > self.max_body_bytes:
                await send_error(send, 413, f"request body too large (limit {self.max_body_bytes} bytes)")
                return
        await self.app(scope, self._capped(receive), self._redacting(send))

    def _capped(self, receive: Callable) -> Callable:
        seen = 0
        limit = self.max_body_bytes

        async def capped() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:  # a chunked body past the cap: drop the rest, the handler sees it ended
                    return {"type": "http.request", "body": b"", "more_body": False}
            return message

        return capped

    async def redacted(self, body: bytes) -> bytes:
        """``body`` with secrets masked. Large bodies: computed once per distinct body (an LRU keyed by
        its BLAKE2 digest: the same history is served to every console) and in a worker thread."""
        if len(body) < REDACT_CACHE_MIN_BYTES:
            return self._redact_bytes(body)
        key = hashlib.blake2b(body, digest_size=20).digest()
        hit = self._redacted.get(key)
        if hit is not None:
            self._redacted.move_to_end(key)
            return hit
        if len(body) >= REDACT_OFF_LOOP_BYTES:
            cleaned = await asyncio.to_thread(self._redact_bytes, body)
        else:
            cleaned = self._redact_bytes(body)
        self._redacted[key] = cleaned
        while len(self._redacted) > 8:
            self._redacted.popitem(last=False)
        return cleaned

    def _redact_bytes(self, body: bytes) -> bytes:
        text = body.decode("utf-8", errors="surrogateescape")
        cleaned = self.redact(text)
        return body if cleaned == text else cleaned.encode("utf-8", errors="surrogateescape")

    def _redacting(self, send: Callable) -> Callable:
        start: dict | None = None
        chunks: list[bytes] = []

        async def redacting(message: dict) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                chunks.clear()
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            try:
                body = await self.redacted(b"".join(chunks))
            except Exception:  # fail closed: an unredacted body never leaves, and the answer is still JSON
                log.exception("redacting a response failed; answering 500 instead")
                await send_error(send, 500, "internal error; the agent's log has the details")
                return
            heads = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            heads.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": heads})
            await send({"type": "http.response.body", "body": body, "more_body": False})

        return redacting


async def send_error(
    send: Callable, status: int, message: str, extra: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
