"""Connection admission for the agent's HTTP server: sockets that have sent no complete request never
starve the ones that have.

uvicorn's own ``limit_concurrency`` counts every open socket, silent ones included, and answers
text/plain 503 past it, so 64 idle sockets took the API away from every console. Instead:

* **Deadlines** (per connection, never reset by a trickle of bytes): the request head must be complete
  ``header_s`` after the connection opened (or after the previous response on a keep-alive connection),
  the whole request ``receipt_s`` after that. While a request is being answered no deadline runs. TLS
  handshakes get ``header_s`` too (:func:`limit_tls_handshake`).
* **Admission** (:class:`ConnectionTable`): at most ``max_connections`` sockets in all and ``per_peer`` per
  non-loopback address (an IPv6 peer is its /64). Loopback has no per-peer cap: through an SSH tunnel
  every caller is 127.0.0.1. A socket over a cap closes the oldest socket of that scope that is *waiting*
  for a request (silent, half-sent or keep-alive idle, for at least ``evict_after_s``); a socket whose
  request is being answered is never closed. With nothing to close, the newcomer is answered 503 JSON
  with ``Retry-After``; past ``max_connections + SHED_SLACK`` it is reset.
* **Keep-alive**: ``keep_alive_s`` idle at most, ``max_requests`` requests per connection.
* Every answer the server writes itself (malformed request, shed load) is JSON ``{"error": ...}``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

SHED_SLACK = 64  # sockets over max_connections that still get a 503 answer before new ones are reset
FD_RESERVE = 256  # descriptors kept for engines' logs, scrapes, state files, NVML
RETRY_AFTER_S = 1
MAX_CONNECTIONS = 4096
PER_PEER = 256  # per non-loopback address (IPv6: per /64)


@dataclass(frozen=True, slots=True)
class Limits:
    header_s: float = 5.0
    receipt_s: float = 10.0
    keep_alive_s: float = 5.0
    max_connections: int = MAX_CONNECTIONS
    per_peer: int = PER_PEER
    evict_after_s: float = 1.0
    max_requests: int = 10_000

    @classmethod
    def for_fd_limit(cls, soft_nofile: int, **overrides: Any) -> Limits:
        """Limits whose connection cap stays under the process's descriptor limit."""
        cap = max(32, min(MAX_CONNECTIONS, soft_nofile - FD_RESERVE - SHED_SLACK))
        return cls(**{"max_connections": cap, "per_peer": max(16, min(PER_PEER, cap // 4)), **overrides})


def raise_fd_limit(target: int = 65536) -> int:
    """Raise RLIMIT_NOFILE's soft limit towards the hard limit (at most ``target``); the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = target if hard == resource.RLIM_INFINITY else min(hard, target)
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, want, exc)
    return soft


def peer_key(host: str | None) -> str | None:
    """The per-peer bucket of a client address: None (no per-peer cap) for loopback and unknown peers,
    the /64 for IPv6 (one host usually owns a whole /64), else the address."""
    if not host:
        return None
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if addr.is_loopback or (
        isinstance(addr, ipaddress.IPv6Address) and (addr.ipv4_mapped or addr).is_loopback
    ):
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is None:
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return str(addr.ipv4_mapped if isinstance(addr, ipaddress.IPv6Address) else addr)


class Evictable(Protocol):
    def evict(self) -> None: ...


class ConnectionTable:
    """Open connections, which of them wait for a request (oldest first), and who gets in."""

    def __init__(self, limits: Limits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._peer_of: dict[Evictable, str | None] = {}
        self._per_peer: dict[str, int] = {}
        self._waiting: dict[Evictable, float] = {}  # insertion order == waiting since, oldest first
        self._waiting_by_peer: dict[str, dict[Evictable, float]] = {}
        self.evicted = 0
        self.shed = 0
        self.reset = 0

    def __len__(self) -> int:
        return len(self._peer_of)

    def admit(self, conn: Evictable, host: str | None) -> str:
        """Register a new connection: ``"ok"``, ``"shed"`` (answer 503 and close) or ``"reset"``."""
        if len(self._peer_of) >= self.limits.max_connections + SHED_SLACK:
            self.reset += 1
            return "reset"
        key = peer_key(host)
        self._peer_of[conn] = key
        self.waiting(conn)
        verdict = "ok"
        if key is not None:
            self._per_peer[key] = self._per_peer.get(key, 0) + 1
            if self._per_peer[key] > self.limits.per_peer and not self._evict(
                self._waiting_by_peer.get(key, {}), conn
            ):
                verdict = "shed"
        if len(self._peer_of) > self.limits.max_connections and not self._evict(self._waiting, conn):
            verdict = "shed"
        if verdict == "shed":
            self.shed += 1
        return verdict

    def waiting(self, conn: Evictable) -> None:
        """``conn`` now waits for a request (opened, or its response is complete)."""
        if conn not in self._peer_of or conn in self._waiting:
            return
        now = self._clock()
        self._waiting[conn] = now
        key = self._peer_of[conn]
        if key is not None:
            self._waiting_by_peer.setdefault(key, {})[conn] = now

    def busy(self, conn: Evictable) -> None:
        """``conn`` has a complete request being answered: never evicted until it waits again."""
        self._waiting.pop(conn, None)
        key = self._peer_of.get(conn)
        if key is not None and key in self._waiting_by_peer:
            self._waiting_by_peer[key].pop(conn, None)

    def remove(self, conn: Evictable) -> None:
        if conn not in self._peer_of:
            return
        self.busy(conn)
        key = self._peer_of.pop(conn)
        if key is not None:
            left = self._per_peer.get(key, 1) - 1
            if left > 0:
                self._per_peer[key] = left
            else:
                self._per_peer.pop(key, None)
                self._waiting_by_peer.pop(key, None)

    def _evict(self, waiting: dict[Evictable, float], newcomer: Evictable) -> bool:
        now = self._clock()
        for victim, since in waiting.items():
            if victim is newcomer:
                continue
            if now - since < self.limits.evict_after_s:
                return False  # the rest waited even less
            self.remove(victim)
            self.evicted += 1
            victim.evict()
            return True
        return False


def _json_answer(
    status: int, reason: bytes, message: str, extra: list[tuple[bytes, bytes]] = ()
) -> tuple[h11.Response, bytes]:
    body = json.dumps({"error": message}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *extra,
        (b"connection", b"close"),
    ]
    return h11.Response(status_code=status, headers=headers, reason=reason), body


async def shed_app(scope: dict, receive: Callable, send: Callable) -> None:
    """The ASGI answer for a connection admitted over capacity: 503 JSON, Retry-After, then close."""
    body = json.dumps({"error": "agent busy: too many open connections; retry shortly"}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(RETRY_AFTER_S).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


class LimitedH11(H11Protocol):
    """uvicorn's h11 protocol under the limits and deadlines of the class's ``table``; use a subclass
    made by :func:`limited_protocol` (each server has its own table)."""

    # shared by every connection of one server (tests read ``ucfg.http_protocol_class.table``)
    table: ClassVar[ConnectionTable]
    _deadline_timer: asyncio.TimerHandle | None = None
    _since = 0.0
    _busy = False
    _requests = 0
    _gone = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._since = self.loop.time()
        verdict = self.table.admit(self, self.client[0] if self.client else None)
        if verdict == "reset":
            self._gone = True
            transport.abort()
            return
        if verdict == "shed":
            self.app = shed_app  # uvicorn runs self.app for this connection's request
        self._arm(self.table.limits.header_s)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._track()

    def handle_events(self) -> None:
        before = self.cycle
        super().handle_events()
        if self.cycle is not None and self.cycle is not before:
            self._requests += 1
            if self._requests >= self.table.limits.max_requests:
                self.cycle.keep_alive = False  # close after this response

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._track()

    def connection_lost(self, exc: Exception | None) -> None:
        self._gone = True
        self.table.remove(self)
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        event, body = _json_answer(400, b"Bad Request", f"malformed HTTP request: {msg}")
        try:
            self.transport.write(self.conn.send(event) + self.conn.send(h11.Data(data=body)))
            self.transport.write(self.conn.send(h11.EndOfMessage()))
        except h11.LocalProtocolError:
            pass
        self.transport.close()

    def evict(self) -> None:
        """Closed to make room (it was waiting for a request)."""
        if not self.transport.is_closing():
            self.transport.close()

    # --- bookkeeping ---------------------------------------------------------------------------------
    def _track(self) -> None:
        if self._gone:
            return
        busy = (
            self.cycle is not None
            and not self.cycle.response_complete
            and self.conn.their_state is not h11.IDLE
            and self.conn.their_state is not h11.SEND_BODY
        )
        if busy and not self._busy:
            self.table.busy(self)
        elif not busy and self._busy:
            self._since = self.loop.time()
            self.table.waiting(self)
            self._arm(self.table.limits.header_s)
        self._busy = busy

    def _arm(self, delay: float) -> None:
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
        self._deadline_timer = self.loop.call_later(max(0.05, delay), self._check)

    def _check(self) -> None:
        self._deadline_timer = None
        if self._gone or self.transport.is_closing() or self._busy:
            return  # a busy connection is re-armed when it waits again
        limits = self.table.limits
        head_done = self.conn.their_state is h11.SEND_BODY
        left = self._since + (limits.receipt_s if head_done else limits.header_s) - self.loop.time()
        if left <= 0:
            self.transport.close()
        else:
            self._arm(left)


def limited_protocol(table: ConnectionTable) -> type[H11Protocol]:
    """An h11 protocol class that applies ``table``'s limits and deadlines to every connection."""
    return type("LimitedH11", (LimitedH11,), {"table": table})


def limit_tls_handshake(loop: asyncio.AbstractEventLoop, timeout_s: float) -> None:
    """Make ``loop.create_server`` (as uvicorn calls it) give TLS handshakes ``timeout_s`` instead of
    asyncio's 60 s: a socket stuck in its handshake is invisible to the connection table."""
    original = loop.create_server

    async def create_server(*args: Any, **kwargs: Any) -> asyncio.AbstractServer:
        if kwargs.get("ssl") is not None:
            kwargs.setdefault("ssl_handshake_timeout", timeout_s)
        return await original(*args, **kwargs)

    loop.create_server = create_server  # type: ignore[method-assign]
