"""The agent's HTTP server under abuse, over real TCP (uvicorn + the deadline h11 protocol, in-process):
silent and slowloris connections are cut at the receipt deadline, oversized headers and garbage get a 4xx,
too many connections are refused and the server recovers, and it keeps answering throughout."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import uvicorn

from agents.config import agent_config_from_dict
from agents.runtime import AgentRuntime
from agents.server import build_app, uvicorn_config
from tests.agents.agentproc import free_port

DEADLINE_S = 1.0


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[int]:
    port = free_port()
    config = agent_config_from_dict(
        {"agent": {"listen": f"127.0.0.1:{port}", "state_dir": str(tmp_path / "s"), "gpu_source": "none"}}, file="t.toml"
    )
    runtime = AgentRuntime(config)
    await runtime.collector.tick()
    srv = uvicorn.Server(uvicorn_config(config, build_app(config, runtime), deadline_s=DEADLINE_S))
    srv.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(srv.serve())
    while not srv.started:
        await asyncio.sleep(0.02)
    try:
        yield port
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
    got = await request(port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    return got.startswith(b"HTTP/1.1 200")


async def closed_after(reader: asyncio.StreamReader, limit: float) -> float:
    started = time.monotonic()
    with contextlib.suppress(ConnectionError):
        while await asyncio.wait_for(reader.read(1000), limit):
            pass
    return time.monotonic() - started


async def test_silent_and_slowloris_connections_are_cut(server: int) -> None:
    silent_r, silent_w = await asyncio.open_connection("127.0.0.1", server)
    slow_r, slow_w = await asyncio.open_connection("127.0.0.1", server)
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
    assert DEADLINE_S * 0.9 <= elapsed < DEADLINE_S + 2.5  # cut at the deadline, not after the trickle ended
    assert await healthy(server)


async def test_keep_alive_requests_are_not_cut(server: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server)
    for _ in range(3):
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
        await reader.readexactly(length)
        await asyncio.sleep(DEADLINE_S * 0.6)  # idle between requests, under the keep-alive timeout
    writer.close()


BAD_REQUESTS = {
    "one 40 KB header": (b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 40_000 + b"\r\n\r\n", 431),
    "one 200 KB header": (b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n", None),
    "500 headers": (b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(500)) + b"\r\n", 431),
    "TLS bytes": (b"\x16\x03\x01\x02\x00garbage\r\n\r\n", None),
    "huge Content-Length": (b"POST /v1/engines/x/start HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 99999999\r\n\r\n", 413),
    "bad chunking": (b"POST /v1/engines/x/start HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", None),
    "rebinding Host": (b"GET /healthz HTTP/1.1\r\nHost: evil.example\r\n\r\n", 403),
    "two Hosts": (b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\n\r\n", None),
}


@pytest.mark.parametrize("name", list(BAD_REQUESTS))
async def test_malformed_and_oversized_requests_get_4xx(server: int, name: str) -> None:
    raw, expected = BAD_REQUESTS[name]
    got = await request(server, raw)
    if expected is not None or got:  # on a framing error h11 may just close the connection
        status = int(got.split(b" ", 2)[1])
        assert status == expected if expected is not None else 400 <= status < 500, got[:200]
    assert await healthy(server)


async def test_connection_flood_is_refused_then_recovers(server: int) -> None:
    held = [await asyncio.open_connection("127.0.0.1", server) for _ in range(70)]
    await asyncio.sleep(0.1)
    got = await request(server, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 503")  # over the concurrency limit: refused, not queued forever
    await asyncio.sleep(DEADLINE_S + 1.0)  # the silent connections hit the receipt deadline
    assert await healthy(server)
    for _, writer in held:
        writer.close()
