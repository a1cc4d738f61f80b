"""A small keep-alive HTTP/1.1 GET client on asyncio streams, for the agent's hot path.

Every second the agent scrapes and health-checks each engine on loopback. httpx (with httpcore and anyio
underneath) costs about a millisecond of CPU per request, which made these two GETs most of the agent's
CPU (measured with py-spy, see bench/bench_agent.py). This client does only what that path needs: GET,
identity encoding, Content-Length / chunked / read-to-close bodies, a byte cap on the body, a cap on the
header block, and one reusable idle connection per host:port. Anything unusual is an ``Http1Error``.

It has no deadline of its own: callers wrap a request in ``asyncio.timeout``; a request interrupted at
any point closes its connection (its state is unknown), so a later request never reads a stale response.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_HEADER_BYTES = 64 * 1024
_READ = 64 * 1024


class Http1Error(Exception):
    """A malformed or unsupported response (or URL); the message says what."""


class BodyTooLarge(Http1Error):
    def __init__(self, limit: int) -> None:
        super().__init__(f"response larger than {limit} bytes (the cap)")
        self.limit = limit


class NoResponse(Http1Error):
    """The connection was made but closed before a status line arrived."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    reason: str
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes


_Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@dataclass(slots=True)
class Progress:
    """How far one request got; lets a caller whose deadline fired tell "silent" from "slow"."""

    connected: bool = False
    status: int | None = None


class Http1Client:
    def __init__(self) -> None:
        self._idle: dict[tuple[str, int], list[_Conn]] = {}
        self.connections_opened = 0

    async def get(
        self, url: str, *, max_bytes: int, headers: dict[str, str] | None = None, progress: Progress | None = None
    ) -> Response:
        progress = progress if progress is not None else Progress()
        host, port, target = _split(url)
        request = _request(host, port, target, headers)
        for attempt in (0, 1):
            conn = self._take(host, port)
            reused = conn is not None
            if conn is None:
                conn = await asyncio.open_connection(host, port, limit=MAX_HEADER_BYTES)
                self.connections_opened += 1
            progress.connected = True
            ok = False
            try:
                conn[1].write(request)
                await conn[1].drain()
                response, keep = await self._read(conn[0], max_bytes, progress)
                ok = True
            except (NoResponse, ConnectionResetError, BrokenPipeError):
                if reused and attempt == 0 and progress.status is None:
                    continue  # the server closed an idle keep-alive connection: retry once on a new one
                raise
            finally:
                if not ok:
                    _close(conn)
            if keep:
                self._idle.setdefault((host, port), []).append(conn)
            else:
                _close(conn)
            return response
        raise NoResponse("connection closed before a response")  # pragma: no cover - loop always returns

    def _take(self, host: str, port: int) -> _Conn | None:
        pool = self._idle.get((host, port))
        while pool:
            reader, writer = pool.pop()
            if not reader.at_eof() and not writer.is_closing():
                return reader, writer
            _close((reader, writer))
        return None

    async def _read(self, reader: asyncio.StreamReader, max_bytes: int, progress: Progress) -> tuple[Response, bool]:
        try:
            status_line = await reader.readuntil(b"\r\n")
        except asyncio.IncompleteReadError as exc:
            raise NoResponse("connection closed before a response") from exc
        except asyncio.LimitOverrunError as exc:
            raise Http1Error("status line too long") from exc
        version, status, reason = _status(status_line)
        progress.status = status
        headers = await _headers(reader)
        connection = headers.get("connection", "").lower()
        keep = "close" not in connection and (version == "HTTP/1.1" or "keep-alive" in connection)
        if 100 <= status < 200 or status in (204, 304):
            body = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            body = await _chunked(reader, max_bytes)
        elif "content-length" in headers:
            body = await _sized(reader, headers["content-length"], max_bytes)
        else:
            body = await _to_eof(reader, max_bytes)
            keep = False
        if headers.get("content-encoding", "identity").lower() not in ("identity", ""):
            raise Http1Error(f"unexpected content-encoding {headers['content-encoding']!r}")
        return Response(status, reason, headers, body), keep

    async def aclose(self) -> None:
        for pool in self._idle.values():
            for conn in pool:
                _close(conn)
        self._idle.clear()


def _split(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise Http1Error(f"unsupported URL {url!r}: only http://host:port/path")
    try:
        port = parts.port or 80
    except ValueError as exc:
        raise Http1Error(f"bad port in URL {url!r}") from exc
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.hostname, port, target


def _request(host: str, port: int, target: str, headers: dict[str, str] | None) -> bytes:
    name = f"[{host}]" if ":" in host else host
    lines = [f"GET {target} HTTP/1.1", f"Host: {name}:{port}", "Accept-Encoding: identity", "User-Agent: llmconsole-agent"]
    for k, v in (headers or {}).items():
        if any(c in k + v for c in "\r\n"):
            raise Http1Error("header names and values must not contain line breaks")
        lines.append(f"{k}: {v}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _status(line: bytes) -> tuple[str, int, str]:
    parts = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit() or len(parts[1]) != 3:
        raise Http1Error(f"not an HTTP/1.x status line: {line[:60]!r}")
    return parts[0], int(parts[1]), parts[2] if len(parts) > 2 else ""


async def _headers(reader: asyncio.StreamReader) -> dict[str, str]:
    headers: dict[str, str] = {}
    size = 0
    while True:
        try:
            line = await reader.readuntil(b"\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            raise Http1Error("truncated or oversized response headers") from exc
        size += len(line)
        if size > MAX_HEADER_BYTES:
            raise Http1Error(f"response headers larger than {MAX_HEADER_BYTES} bytes")
        if line == b"\r\n":
            return headers
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep or not name or name != name.strip():
            raise Http1Error(f"malformed header line {line[:60]!r}")
        key = name.lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value


async def _sized(reader: asyncio.StreamReader, raw: str, max_bytes: int) -> bytes:
    try:
        length = int(raw.split(",")[0].strip())
    except ValueError as exc:
        raise Http1Error(f"bad Content-Length {raw!r}") from exc
    if length < 0:
        raise Http1Error(f"bad Content-Length {raw!r}")
    if length > max_bytes:
        raise BodyTooLarge(max_bytes)
    try:
        return await reader.readexactly(length)
    except asyncio.IncompleteReadError as exc:
        raise Http1Error("connection closed before the whole body arrived") from exc


async def _chunked(reader: asyncio.StreamReader, max_bytes: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        try:
            line = await reader.readuntil(b"\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            raise Http1Error("truncated chunked body") from exc
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError as exc:
            raise Http1Error(f"bad chunk size line {line[:40]!r}") from exc
        if size == 0:
            await _headers(reader)  # trailers, ended by an empty line
            return b"".join(chunks)
        total += size
        if total > max_bytes:
            raise BodyTooLarge(max_bytes)
        try:
            chunks.append(await reader.readexactly(size))
            if await reader.readexactly(2) != b"\r\n":
                raise Http1Error("chunk not followed by CRLF")
        except asyncio.IncompleteReadError as exc:
            raise Http1Error("truncated chunked body") from exc


async def _to_eof(reader: asyncio.StreamReader, max_bytes: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while data := await reader.read(_READ):
        total += len(data)
        if total > max_bytes:
            raise BodyTooLarge(max_bytes)
        chunks.append(data)
    return b"".join(chunks)


def _close(conn: _Conn) -> None:
    with contextlib.suppress(Exception):
        conn[1].close()
