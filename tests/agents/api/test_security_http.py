"""The agent's HTTP server under abuse, over real TCP (uvicorn + agents/connguard.py, in-process): silent,
slowloris and slow-body connections are cut at their deadlines, idle sockets never starve requests,
over the connection cap the oldest *waiting* socket makes room and a newcomer finds JSON 503 only when
every socket is busy, keep-alive is bounded, garbage gets a JSON 4xx, and the server keeps answering."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import uvicorn

from agents.config import agent_config_from_dict
from agents.connguard import ConnectionTable, Limits, limit_tls_handshake
from agents.runtime import AgentRuntime
from agents.server import build_app, uvicorn_config
from tests.support.agentproc import free_port

FAST = Limits(header_s=1.0, receipt_s=2.0, keep_alive_s=1.0)
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


@contextlib.asynccontextmanager
async def serving(
    tmp_path: Path, limits: Limits, app: Callable | None = None
) -> AsyncIterator[tuple[int, ConnectionTable]]:
    """uvicorn with the agent's protocol and ``limits`` on a free port, serving the agent's app (over a real
    runtime) or ``app``; yields the port and the connection table."""
    port = free_port()
    config = agent_config_from_dict(
        {"agent": {"listen": f"127.0.0.1:{port}", "state_dir": str(tmp_path / "s"), "gpu_source": "none"}},
        file="t.toml",
    )
    runtime = AgentRuntime(config)
    await runtime.collector.tick()
    ucfg = uvicorn_config(config, app or build_app(config, runtime), limits=limits)
    srv = uvicorn.Server(ucfg)
    task = asyncio.create_task(srv.serve())
    while not srv.started:
        await asyncio.sleep(0.02)
    try:
        yield port, ucfg.http_protocol_class.table
    finally:
        srv.should_exit = True
        await task
        await runtime.shutdown()


async def request(port: int, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(100_000), 5)
    finally:
        writer.close()


async def healthy(port: int) -> bool:
    got = await request(port, HEALTHZ)
    return got.startswith(b"HTTP/1.1 200")


async def closed_after(reader: asyncio.StreamReader, limit: float) -> float:
    started = time.monotonic()
    with contextlib.suppress(ConnectionError):
        while await asyncio.wait_for(reader.read(1000), limit):
            pass
    return time.monotonic() - started


async def is_closed(reader: asyncio.StreamReader) -> bool:
    """True once the server closed this connection (EOF or reset) — checked without waiting long."""
    try:
        return await asyncio.wait_for(reader.read(1), 0.2) == b""
    except TimeoutError:
        return False
    except ConnectionError:
        return True


def json_error(raw: bytes) -> tuple[int, dict[bytes, bytes], dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(b":") for ln in lines[1:])}
    assert headers.get(b"content-type") == b"application/json", raw[:300]
    return int(lines[0].split(b" ", 2)[1]), headers, json.loads(body)


async def test_silent_and_slowloris_connections_are_cut(tmp_path: Path) -> None:
    async with serving(tmp_path, FAST) as (port, _):
        silent_r, silent_w = await asyncio.open_connection("127.0.0.1", port)
        slow_r, slow_w = await asyncio.open_connection("127.0.0.1", port)
        started = time.monotonic()

        async def trickle() -> None:
            with contextlib.suppress(ConnectionError):
                for byte in b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100:
                    slow_w.write(bytes([byte]))
                    await slow_w.drain()
                    await asyncio.sleep(0.1)

        feeder = asyncio.create_task(trickle())
        await closed_after(silent_r, 5)
        await closed_after(slow_r, 5)
        elapsed = time.monotonic() - started
        feeder.cancel()
        silent_w.close()
        slow_w.close()
        assert (
            FAST.header_s * 0.9 <= elapsed < FAST.header_s + 2.5
        )  # cut at the deadline, not after the trickle
        assert await healthy(port)


async def test_a_slow_body_is_cut_at_the_receipt_deadline(tmp_path: Path) -> None:
    async with serving(tmp_path, FAST) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        started = time.monotonic()
        writer.write(b"POST /v1/engines/x/stop HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n")

        async def trickle() -> None:
            with contextlib.suppress(ConnectionError):
                for _ in range(100):
                    writer.write(b"x")
                    await writer.drain()
                    await asyncio.sleep(0.1)

        feeder = asyncio.create_task(trickle())
        await closed_after(reader, 8)
        elapsed = time.monotonic() - started
        feeder.cancel()
        writer.close()
        assert FAST.receipt_s * 0.9 <= elapsed < FAST.receipt_s + 2.5, elapsed  # head in time, body not


async def test_keep_alive_requests_are_not_cut(tmp_path: Path) -> None:
    async with serving(tmp_path, FAST) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(3):
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 200")
            length = int(
                next(
                    line.split(b":")[1]
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
            )
            await reader.readexactly(length)
            await asyncio.sleep(FAST.header_s * 0.6)  # idle between requests, under the keep-alive timeout
        writer.close()


async def test_requests_per_connection_are_capped(tmp_path: Path) -> None:
    async with serving(tmp_path, Limits(max_requests=3)) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(3):
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 200")
            length = int(
                next(
                    line.split(b":")[1]
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
            )
            await reader.readexactly(length)
        assert await asyncio.wait_for(reader.read(100), 5) == b""  # closed after the third answer
        writer.close()


BAD_REQUESTS = {
    "one 40 KB header": (
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 40_000 + b"\r\n\r\n",
        431,
    ),
    "one 200 KB header": (
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n",
        None,
    ),
    "500 headers": (
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + b"".join(b"X-%d: y\r\n" % i for i in range(500))
        + b"\r\n",
        431,
    ),
    "TLS bytes": (b"\x16\x03\x01\x02\x00garbage\r\n\r\n", None),
    "huge Content-Length": (
        b"POST /v1/engines/x/start HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 99999999\r\n\r\n",
        413,
    ),
    "bad chunking": (
        b"POST /v1/engines/x/start HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        None,
    ),
    "rebinding Host": (b"GET /healthz HTTP/1.1\r\nHost: evil.example\r\n\r\n", 403),
    "two Hosts": (b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\n\r\n", None),
    "no HTTP at all": (b"hello\r\n\r\n", None),
}


@pytest.mark.parametrize("name", list(BAD_REQUESTS))
async def test_malformed_and_oversized_requests_get_a_json_4xx(tmp_path: Path, name: str) -> None:
    raw, expected = BAD_REQUESTS[name]
    async with serving(tmp_path, FAST) as (port, _):
        got = await request(port, raw)
        if expected is not None or got:  # on a framing error h11 may just close the connection
            status, _, doc = json_error(got)  # never text/plain, even from the HTTP layer itself
            assert status == expected if expected is not None else 400 <= status < 500, got[:200]
            assert "error" in doc
        assert await healthy(port)


async def test_idle_connections_never_starve_requests(tmp_path: Path) -> None:
    async with serving(tmp_path, Limits(header_s=30.0)) as (port, table):
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(200)]
        half = [w for _, w in held[:100]]
        for w in half:
            w.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # a head that never ends
        await asyncio.sleep(0.3)
        started = time.monotonic()
        assert await healthy(port)  # before: 64 such sockets and every request was a text/plain 503
        assert time.monotonic() - started < 2.0
        assert len(table) >= 200 and table.evicted == 0 and table.shed == 0  # nothing had to go
        for _, writer in held:
            writer.close()


async def test_over_the_cap_the_oldest_waiting_connection_makes_room(tmp_path: Path) -> None:
    limits = Limits(header_s=30.0, max_connections=20, evict_after_s=0.2)
    async with serving(tmp_path, limits) as (port, table):
        first = [await asyncio.open_connection("127.0.0.1", port) for _ in range(20)]
        await asyncio.sleep(0.5)  # all of them waited past evict_after_s
        later = [await asyncio.open_connection("127.0.0.1", port) for _ in range(5)]
        assert await healthy(port)  # over the cap: room made, not refused
        await asyncio.sleep(0.2)
        closed = [await is_closed(r) for r, _ in first]
        assert closed[:6] == [True] * 6 and not any(closed[6:]), closed  # the six oldest, in order
        assert not any([await is_closed(r) for r, _ in later])
        assert table.evicted == 6 and table.shed == 0
        for _, w in first + later:
            w.close()


async def test_when_every_connection_is_busy_a_newcomer_gets_json_503(tmp_path: Path) -> None:
    release = asyncio.Event()
    entered: list[int] = []

    async def slow_app(scope: dict, receive: Callable, send: Callable) -> None:
        entered.append(1)
        await release.wait()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": b"{}"})

    limits = Limits(max_connections=3, evict_after_s=0.0)
    async with serving(tmp_path, limits, app=slow_app) as (port, table):
        busy = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
        for _, w in busy:
            w.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        while len(entered) < 3:
            await asyncio.sleep(0.02)
        got = await request(port, HEALTHZ)  # nothing waiting to close: this one is shed, in JSON
        status, headers, doc = json_error(got)
        assert status == 503 and headers[b"retry-after"] == b"1" and "busy" in doc["error"]
        assert table.shed == 1 and table.evicted == 0
        release.set()
        for r, _ in busy:  # the busy ones were never cut
            assert (await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 5)).startswith(b"HTTP/1.1 200")
        for _, w in busy:
            w.close()


def _self_signed(d: Path) -> ssl.SSLContext:
    d.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            str(d / "k.pem"),
            "-out",
            str(d / "c.pem"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(d / "c.pem", d / "k.pem")
    return ctx


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl CLI")
async def test_a_stalled_tls_handshake_is_cut(tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    limit_tls_handshake(loop, 1.0)
    server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0, ssl=_self_signed(tmp_path / "pki"))
    try:
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)  # TCP only: no ClientHello follows
        elapsed = await closed_after(reader, 10)
        writer.close()
        assert 0.8 <= elapsed < 5.0, elapsed  # asyncio's default would hold it 60 s
    finally:
        server.close()
        del loop.create_server  # the instance override
