"""A small keep-alive HTTP/1.1 client on asyncio streams: every HTTP request of the agent's engine probes.

Every second the agent scrapes and health-checks each engine on loopback, and every ``canary_interval_s``
it streams a one-token completion from it. This client does only what that needs: GET with the whole
body at once (``get``) or a request whose body is read as it arrives (``stream``: the canary's POST and its
server-sent events), identity encoding, Content-Length / chunked / read-to-close bodies, a byte cap on
bodies and lines, a cap on the header block, and reusable idle connections per host:port. Anything
unusual is an ``Http1Error``.

Why not a library: bench/bench_http.py fetches a simulated vLLM engine's /metrics (47 KB) with keep-alive
through all three clients in one run, counting this process's CPU per request. On a quiet 2-core machine
(load 1.1): this client 143 us, aiohttp 224 us (1.57x), httpx 1041 us (7.3x); under load (16) the
ratios were 1.7x and 6.9x. Run it again before changing this.

It has no deadline of its own: callers wrap a request in ``asyncio.timeout``; a request interrupted at
any point closes its connection (its state is unknown), so a later request never reads a stale response.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import functools
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_HEADER_BYTES = 64 * 1024
MAX_LINE_CHARS = 1024 * 1024
_READ = 64 * 1024
_LINE_END = re.compile(r"\r\n|\r|\n")


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
        self,
        url: str,
        *,
        max_bytes: int,
        headers: dict[str, str] | None = None,
        progress: Progress | None = None,
    ) -> Response:
        """GET ``url`` and read the whole body (at most ``max_bytes``)."""
        progress = progress if progress is not None else Progress()
        host, port, request = _prepared(url, tuple(headers.items()) if headers else ())
        conn, head = await self._exchange(host, port, request, progress)
        ok = False
        try:
            body, keep = await _read_body(conn[0], head, max_bytes)
            ok = True
        finally:
            if not ok:
                _close(conn)
        self._release(host, port, conn, keep)
        return Response(head.status, head.reason, head.headers, body)

    @contextlib.asynccontextmanager
    async def stream(
        self, method: str, url: str, *, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> AsyncIterator[Streamed]:
        """Send a request and yield its response as soon as its head arrived, the body still to read
        (``Streamed.lines()`` for server-sent events, ``Streamed.read()``). The connection goes back to the
        pool only when the body was read to its end; otherwise (or on any error) it is closed."""
        host, port, target = _split(url)
        request = _request(host, port, target, headers, method=method, body=body)
        conn, head = await self._exchange(host, port, request, Progress())
        streamed = Streamed(head, conn[0])
        try:
            yield streamed
        except BaseException:
            _close(conn)
            raise
        if streamed.complete:
            self._release(host, port, conn, streamed.keep)
        else:
            _close(conn)

    async def _exchange(
        self, host: str, port: int, request: bytes, progress: Progress
    ) -> tuple[_Conn, _Head]:
        """Send ``request`` on an idle or new connection and read the response head. A reused connection
        the server closed meanwhile (no status line came back) is retried once on a new one."""
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
                head = await _read_head(conn[0], progress)
                ok = True
            except (NoResponse, ConnectionResetError, BrokenPipeError):
                if reused and attempt == 0 and progress.status is None:
                    continue  # the server closed an idle keep-alive connection: retry once on a new one
                raise
            finally:
                if not ok:
                    _close(conn)
            return conn, head
        raise NoResponse("connection closed before a response")  # pragma: no cover - loop always returns

    def _take(self, host: str, port: int) -> _Conn | None:
        pool = self._idle.get((host, port))
        while pool:
            reader, writer = pool.pop()
            if not reader.at_eof() and not writer.is_closing():
                return reader, writer
            _close((reader, writer))
        return None

    def _release(self, host: str, port: int, conn: _Conn, keep: bool) -> None:
        if keep:
            self._idle.setdefault((host, port), []).append(conn)
        else:
            _close(conn)

    async def aclose(self) -> None:
        for pool in self._idle.values():
            for conn in pool:
                _close(conn)
        self._idle.clear()


@dataclass(frozen=True, slots=True)
class _Head:
    status: int
    reason: str
    headers: dict[str, str]
    keep: bool  # the connection may carry another request once the body is read
    framing: str  # "none", "chunked", "sized" or "eof"


class Streamed:
    """A response whose body is read as it arrives (from ``Http1Client.stream``)."""

    def __init__(self, head: _Head, reader: asyncio.StreamReader) -> None:
        self.status, self.reason, self.headers = head.status, head.reason, head.headers
        self._head, self._reader = head, reader
        self.complete = head.framing == "none"  # the whole body was read
        self.keep = head.keep

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body in pieces as they arrive, transfer coding removed."""
        if self.complete:
            return
        async for piece in _body_pieces(self._reader, self._head):
            yield piece
        self.complete = True

    async def read(self, max_bytes: int, *, truncate: bool = False) -> bytes:
        """The body; beyond ``max_bytes`` a BodyTooLarge, or with ``truncate`` its first ``max_bytes`` (the
        rest is left unread, so the connection is not reused)."""
        parts: list[bytes] = []
        total = 0
        async for piece in self.chunks():
            total += len(piece)
            if total > max_bytes:
                if not truncate:
                    raise BodyTooLarge(max_bytes)
                parts.append(piece[: len(piece) - (total - max_bytes)])
                return b"".join(parts)
            parts.append(piece)
        return b"".join(parts)

    async def lines(self, max_line: int = MAX_LINE_CHARS) -> AsyncIterator[str]:
        """The body as UTF-8 text lines without their ends ("\\n", "\\r\\n" or "\\r"); a line longer than
        ``max_line`` characters is an Http1Error (a stream without line ends never fills memory)."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pending = ""
        async for piece in self.chunks():
            pending += decoder.decode(piece)
            held = "\r" if pending.endswith("\r") else ""  # it may be the first half of a "\r\n"
            *done, rest = _LINE_END.split(pending[: len(pending) - len(held)])
            for line in done:
                yield line
            pending = rest + held
            if len(pending) > max_line:
                raise Http1Error(f"a line longer than {max_line} characters in the response")
        pending += decoder.decode(b"", final=True)
        if pending:
            yield pending.removesuffix("\r")


@functools.lru_cache(maxsize=256)
def _prepared(url: str, headers: tuple[tuple[str, str], ...]) -> tuple[str, int, bytes]:
    """(host, port, request bytes) of a GET: the agent asks the same few URLs every second."""
    host, port, target = _split(url)
    return host, port, _request(host, port, target, dict(headers))


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


def _request(
    host: str,
    port: int,
    target: str,
    headers: dict[str, str] | None,
    *,
    method: str = "GET",
    body: bytes = b"",
) -> bytes:
    if method not in ("GET", "POST"):  # a HEAD answer's Content-Length has no body behind it: not supported
        raise Http1Error(f"unsupported method {method!r}")
    name = f"[{host}]" if ":" in host else host
    lines = [
        f"{method} {target} HTTP/1.1",
        f"Host: {name}:{port}",
        "Accept-Encoding: identity",
        "User-Agent: llmconsole-agent",
    ]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    for k, v in (headers or {}).items():
        if any(c in k + v for c in "\r\n"):
            raise Http1Error("header names and values must not contain line breaks")
        lines.append(f"{k}: {v}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _status(line: bytes) -> tuple[str, int, str]:
    parts = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit() or len(parts[1]) != 3:
        raise Http1Error(f"not an HTTP/1.x status line: {line[:60]!r}")
    return parts[0], int(parts[1]), parts[2] if len(parts) > 2 else ""


async def _read_head(reader: asyncio.StreamReader, progress: Progress) -> _Head:
    """Status line and header fields; how the body is framed and whether the connection may be reused."""
    try:
        status_line = await reader.readuntil(b"\r")  # its "\n" starts the header block (_head_fields)
    except asyncio.IncompleteReadError as exc:
        raise NoResponse("connection closed before a response") from exc
    except asyncio.LimitOverrunError as exc:
        raise Http1Error("status line too long") from exc
    version, status, reason = _status(status_line)
    progress.status = status
    headers = await _head_fields(reader)
    connection = headers.get("connection", "").lower()
    keep = "close" not in connection and (version == "HTTP/1.1" or "keep-alive" in connection)
    if 100 <= status < 200 or status in (204, 304):
        framing = "none"
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        framing = "chunked"
    elif "content-length" in headers:
        framing = "sized"
    else:
        framing, keep = "eof", False
    if headers.get("content-encoding", "identity").lower() not in ("identity", ""):
        raise Http1Error(f"unexpected content-encoding {headers['content-encoding']!r}")
    return _Head(status, reason, headers, keep, framing)


async def _read_body(reader: asyncio.StreamReader, head: _Head, max_bytes: int) -> tuple[bytes, bool]:
    """The whole body at once (at most ``max_bytes``) and whether the connection may be reused."""
    if head.framing == "chunked":
        return await _chunked(reader, max_bytes), head.keep
    if head.framing == "sized":
        return await _sized(reader, head.headers["content-length"], max_bytes), head.keep
    if head.framing == "eof":
        return await _to_eof(reader, max_bytes), False
    return b"", head.keep


async def _body_pieces(reader: asyncio.StreamReader, head: _Head) -> AsyncIterator[bytes]:
    """The body as it arrives, transfer coding removed (no cap: the caller counts)."""
    if head.framing == "chunked":
        while True:
            size = await _chunk_size(reader)
            if size == 0:
                await _headers(reader)  # trailers, ended by an empty line
                return
            yield await _chunk(reader, size)
    elif head.framing == "sized":
        left = _content_length(head.headers["content-length"])
        while left > 0:
            data = await reader.read(min(left, _READ))
            if not data:
                raise Http1Error("connection closed before the whole body arrived")
            left -= len(data)
            yield data
    elif head.framing == "eof":
        while data := await reader.read(_READ):
            yield data


async def _head_fields(reader: asyncio.StreamReader) -> dict[str, str]:
    """The header fields after the status line (read up to its "\\r"), as one block: "\\n", the field lines,
    an empty line. One scan of the buffer instead of one per line (a scrape's buffer holds the body too)."""
    try:
        block = await reader.readuntil(b"\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        raise Http1Error("truncated or oversized response headers") from exc
    if block[:1] != b"\n":
        raise Http1Error("status line not ended by CRLF")
    if len(block) > MAX_HEADER_BYTES:
        raise Http1Error(f"response headers larger than {MAX_HEADER_BYTES} bytes")
    headers: dict[str, str] = {}
    if len(block) == 3:
        return headers
    for line in block[1:-3].split(b"\r\n"):
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep or not name or name != name.strip():
            raise Http1Error(f"malformed header line {line[:60]!r}")
        key = name.lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers


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


def _content_length(raw: str) -> int:
    try:
        length = int(raw.split(",")[0].strip())
    except ValueError as exc:
        raise Http1Error(f"bad Content-Length {raw!r}") from exc
    if length < 0:
        raise Http1Error(f"bad Content-Length {raw!r}")
    return length


async def _sized(reader: asyncio.StreamReader, raw: str, max_bytes: int) -> bytes:
    length = _content_length(raw)
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
        size = await _chunk_size(reader)
        if size == 0:
            await _headers(reader)  # trailers, ended by an empty line
            return b"".join(chunks)
        total += size
        if total > max_bytes:
            raise BodyTooLarge(max_bytes)
        chunks.append(await _chunk(reader, size))


async def _chunk_size(reader: asyncio.StreamReader) -> int:
    try:
        line = await reader.readuntil(b"\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        raise Http1Error("truncated chunked body") from exc
    try:
        size = int(line.split(b";", 1)[0].strip(), 16)
    except ValueError as exc:
        raise Http1Error(f"bad chunk size line {line[:40]!r}") from exc
    if size < 0:
        raise Http1Error(f"bad chunk size line {line[:40]!r}")
    return size


async def _chunk(reader: asyncio.StreamReader, size: int) -> bytes:
    try:
        data = await reader.readexactly(size)
        if await reader.readexactly(2) != b"\r\n":
            raise Http1Error("chunk not followed by CRLF")
    except asyncio.IncompleteReadError as exc:
        raise Http1Error("truncated chunked body") from exc
    return data


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
