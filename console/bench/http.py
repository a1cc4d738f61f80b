"""A small keep-alive HTTP/1.1 client on asyncio streams that streams response bodies (http and https).

A load generator must not be the bottleneck: httpx costs about a millisecond of CPU per request (see
agents/http1.py and bench/bench_loadgen.py), which alone would use half a core at 500 requests/s. This
client does only what the benchmark needs: GET and POST with a byte body, Content-Length / chunked /
read-to-close response bodies delivered piece by piece as they arrive, and a pool of idle connections to
one origin. A connection is reused only after its response was read to the end; a request interrupted at
any point (error, timeout, cancellation) closes its connection. Anything unusual is an ``HttpError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_HEADER_BYTES = 64 * 1024
_READ = 64 * 1024

_Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class HttpError(Exception):
    """A request that got no usable response. ``kind``: connect | protocol | closed."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str
    host: str
    port: int

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host_header}"


def split_url(url: str) -> tuple[Origin, str]:
    """(origin, path) of an http(s) URL; ValueError (one line) for anything else."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{url!r} is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http:// or https:// URL with a host")
    if port == 0:
        raise ValueError(f"{url!r} has port 0")
    port = port or (443 if parts.scheme == "https" else 80)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Origin(parts.scheme, parts.hostname, port), path


class Response:
    """A response whose body has not been read yet; iterate ``chunks()`` or call ``read()`` once."""

    def __init__(self, status: int, headers: dict[str, str], reader: asyncio.StreamReader) -> None:
        self.status = status
        self.headers = headers
        self._reader = reader
        self.complete = False  # the body was read to its end
        self.reusable = False  # ... and the connection may serve another request

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body, piece by piece as it arrives (chunked transfer-encoding removed)."""
        reader, headers = self._reader, self.headers
        keep = "close" not in headers.get("connection", "").lower()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            async for piece in _chunked(reader):
                yield piece
        elif "content-length" in headers:
            try:
                left = int(headers["content-length"])
            except ValueError:
                raise HttpError("protocol", "bad Content-Length") from None
            while left > 0:
                piece = await reader.read(min(left, _READ))
                if not piece:
                    raise HttpError("closed", "connection closed before the end of the body")
                left -= len(piece)
                yield piece
        else:
            keep = False
            while piece := await reader.read(_READ):
                yield piece
        self.complete = True
        self.reusable = keep

    async def read(self, max_bytes: int) -> bytes:
        out = bytearray()
        async for piece in self.chunks():
            out += piece
            if len(out) > max_bytes:
                raise HttpError("protocol", f"response larger than {max_bytes} bytes")
        return bytes(out)


async def _chunked(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while True:
        line = await reader.readline()
        if not line.endswith(b"\n"):
            raise HttpError("closed", "connection closed inside a chunked body")
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise HttpError("protocol", "bad chunk size line") from None
        if size == 0:
            while True:  # trailers, then the blank line
                trailer = await reader.readline()
                if trailer in (b"\r\n", b"\n"):
                    return
                if not trailer:
                    raise HttpError("closed", "connection closed inside the chunked trailer")
        try:
            data = await reader.readexactly(size + 2)
        except asyncio.IncompleteReadError:
            raise HttpError("closed", "connection closed inside a chunk") from None
        yield data[:-2]


class Client:
    """Requests to one origin over a pool of keep-alive connections."""

    def __init__(self, origin: Origin, headers: dict[str, str] | None = None, verify: bool = True) -> None:
        self.origin = origin
        self._extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self._idle: list[_Conn] = []
        self._ssl: ssl.SSLContext | None = None
        if origin.scheme == "https":
            self._ssl = ssl.create_default_context()
            if not verify:
                self._ssl.check_hostname = False
                self._ssl.verify_mode = ssl.CERT_NONE
        self.connections_opened = 0

    async def _connect(self) -> _Conn:
        try:
            conn = await asyncio.open_connection(
                self.origin.host, self.origin.port, ssl=self._ssl, limit=MAX_HEADER_BYTES
            )
        except ssl.SSLError as exc:
            raise HttpError("connect", f"TLS: {exc.reason or exc}") from None
        except OSError as exc:
            raise HttpError("connect", _os_reason(exc)) from None
        self.connections_opened += 1
        return conn

    def _head(self, method: str, path: str, body: bytes | None, accept: str) -> bytes:
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.origin.host_header}\r\nAccept: {accept}\r\n{self._extra}"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        return (head + "\r\n").encode("latin-1") + (body or b"")

    @contextlib.asynccontextmanager
    async def request(
        self, method: str, path: str, body: bytes | None = None, accept: str = "*/*"
    ) -> AsyncIterator[Response]:
        """Send one request and yield its response (body unread); the connection is pooled again only
        if the body was read to the end."""
        data = self._head(method, path, body, accept)
        for attempt in (0, 1):
            reused = bool(self._idle)
            conn = self._idle.pop() if reused else await self._connect()
            try:
                conn[1].write(data)
                await conn[1].drain()
                status, headers = await _read_head(conn[0])
            except (HttpError, OSError) as exc:
                _close(conn)
                if reused and attempt == 0:
                    continue  # the server closed an idle keep-alive connection: one retry on a fresh one
                if isinstance(exc, HttpError):
                    raise
                raise HttpError("closed", _os_reason(exc)) from None
            except BaseException:
                _close(conn)
                raise
            break
        response = Response(status, headers, conn[0])
        try:
            yield response
        except BaseException:
            _close(conn)
            raise
        if response.reusable:
            self._idle.append(conn)
        else:
            _close(conn)

    async def aclose(self) -> None:
        while self._idle:
            _close(self._idle.pop())


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    try:
        line = await reader.readline()
    except (ValueError, asyncio.LimitOverrunError):
        raise HttpError("protocol", "status line too long") from None
    if not line:
        raise HttpError("closed", "connection closed before a response")
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise HttpError("protocol", f"not an HTTP/1.x response: {line[:60]!r}")
    status = int(parts[1])
    headers: dict[str, str] = {}
    size = len(line)
    while True:
        try:
            line = await reader.readline()
        except (ValueError, asyncio.LimitOverrunError):
            raise HttpError("protocol", "header line too long") from None
        size += len(line)
        if size > MAX_HEADER_BYTES:
            raise HttpError("protocol", "response headers too large")
        if line in (b"\r\n", b"\n"):
            break
        if not line:
            raise HttpError("closed", "connection closed inside the response headers")
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep:
            raise HttpError("protocol", "malformed header line")
        key = name.strip().lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    if 100 <= status < 200:  # an interim response (100 Continue): the real one follows
        return await _read_head(reader)
    return status, headers


def _close(conn: _Conn) -> None:
    with contextlib.suppress(Exception):
        conn[1].close()


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    return exc.strerror or str(exc) or type(exc).__name__
