"""Bounded fetch against a real loopback HTTP server that misbehaves on purpose."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from agents.http1 import Http1Client
from agents.scrape import fetch

BODY = b"# TYPE x gauge\nx 1\n"


async def _serve(mode: str):
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            if mode == "stall":
                await asyncio.sleep(30)
            elif mode == "trickle":
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
                for _ in range(100000):
                    writer.write(b"x")
                    await writer.drain()
                    await asyncio.sleep(0.05)
            elif mode == "huge":
                writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                chunk = b"y" * 65536
                for _ in range(2000):  # ~130 MB if nobody stops reading
                    writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    await writer.drain()
            elif mode == "500":
                writer.write(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops")
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY))
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _run(mode: str, **kw):
    server, port = await _serve(mode)
    try:
        client = Http1Client()
        try:
            return await fetch(client, f"http://127.0.0.1:{port}/metrics", **kw)
        finally:
            await client.aclose()
    finally:
        server.close()


async def test_ok_body() -> None:
    got = await _run("ok", deadline_s=2)
    assert got.ok and got.body == BODY and got.status == 200


@pytest.mark.parametrize("mode", ["stall", "trickle"])
async def test_total_deadline_holds_against_slow_servers(mode: str) -> None:
    started = time.monotonic()
    got = await _run(mode, deadline_s=0.5)
    took = time.monotonic() - started
    assert not got.ok and got.body is None
    assert "within 0.5s" in got.error
    assert 0.45 <= took < 1.5
    assert got.reachable is (mode == "trickle")  # a stalled server never answered at all


async def test_byte_cap_stops_a_huge_body() -> None:
    got = await _run("huge", deadline_s=10, max_bytes=1_000_000)
    assert not got.ok and "larger than 1000000 bytes" in got.error


async def test_http_error_status_is_a_failure() -> None:
    got = await _run("500", deadline_s=2)
    assert (
        not got.ok and got.status == 500 and got.error == "HTTP 500 Internal Server Error" and got.reachable
    )


async def test_connection_refused_is_unreachable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nothing listens there
    got = await fetch(Http1Client(), f"http://127.0.0.1:{port}/metrics", deadline_s=2)
    assert not got.ok and not got.reachable and got.error.startswith("connection failed")
