"""The agent's small HTTP/1.1 client against real servers: uvicorn (what vLLM/SGLang use), the stdlib
http.server, and a raw asyncio server that sends exactly the bytes a test wants."""

from __future__ import annotations

import asyncio
import http.server
import threading

import pytest

from agents.http1 import BodyTooLarge, Http1Client, Http1Error, NoResponse


async def raw_server(responses: list[bytes], close_after_each: bool = False):
    """Answer the n-th request on a connection with responses[n] (cycling), byte for byte."""
    count = {"conns": 0}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        count["conns"] += 1
        i = 0
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(responses[i % len(responses)])
                await writer.drain()
                i += 1
                if close_after_each:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], count


async def test_content_length_and_keep_alive_reuse() -> None:
    server, port, count = await raw_server([b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"])
    client = Http1Client()
    try:
        for _ in range(5):
            r = await client.get(f"http://127.0.0.1:{port}/metrics", max_bytes=100)
            assert (r.status, r.body) == (200, b"hello")
        assert client.connections_opened == 1 and count["conns"] == 1
    finally:
        await client.aclose()
        server.close()


async def test_chunked_with_extensions_and_trailers() -> None:
    body = b"4;ext=1\r\nabcd\r\n3\r\nefg\r\n0\r\nX-Trailer: yes\r\n\r\n"
    server, port, _ = await raw_server([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body])
    client = Http1Client()
    try:
        r = await client.get(f"http://127.0.0.1:{port}/", max_bytes=100)
        assert r.body == b"abcdefg"
        r = await client.get(f"http://127.0.0.1:{port}/", max_bytes=100)  # the connection is reusable after
        assert r.body == b"abcdefg" and client.connections_opened == 1
    finally:
        await client.aclose()
        server.close()


async def test_server_closing_idle_connection_is_retried_once() -> None:
    server, port, count = await raw_server(
        [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"], close_after_each=True
    )
    client = Http1Client()
    try:
        for _ in range(3):
            assert (await client.get(f"http://127.0.0.1:{port}/", max_bytes=10)).body == b"ok"
        assert count["conns"] == 3
    finally:
        await client.aclose()
        server.close()


async def test_read_to_close_body_and_http10() -> None:
    server, port, _ = await raw_server([b"HTTP/1.0 200 OK\r\n\r\nuntil the end"], close_after_each=True)
    client = Http1Client()
    try:
        assert (await client.get(f"http://127.0.0.1:{port}/", max_bytes=100)).body == b"until the end"
    finally:
        await client.aclose()
        server.close()


@pytest.mark.parametrize(
    ("response", "error", "fragment"),
    [
        (b"SSH-2.0-OpenSSH\r\n\r\n", Http1Error, "not an HTTP/1.x status line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 999999\r\n\r\n", BodyTooLarge, "larger than 1000 bytes"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", Http1Error, "bad chunk size"),
        (b"HTTP/1.1 200 OK\r\nbroken header\r\n\r\n", Http1Error, "malformed header"),
        (
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 1\r\n\r\nx",
            Http1Error,
            "content-encoding",
        ),
        (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70000 + b"\r\n\r\n", Http1Error, "header"),
        (b"", NoResponse, "closed before a response"),
    ],
)
async def test_malformed_responses_are_clear_errors(
    response: bytes, error: type[Exception], fragment: str
) -> None:
    server, port, _ = await raw_server([response], close_after_each=True)
    client = Http1Client()
    try:
        with pytest.raises(error, match=fragment):
            await client.get(f"http://127.0.0.1:{port}/", max_bytes=1000)
    finally:
        await client.aclose()
        server.close()


async def test_interrupted_request_discards_its_connection() -> None:
    server, port, count = await raw_server(
        [b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf"]
    )  # 6 bytes short
    client = Http1Client()
    try:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await client.get(f"http://127.0.0.1:{port}/", max_bytes=100)
        assert client._idle.get(("127.0.0.1", port), []) == []  # never reused: its state is unknown
    finally:
        await client.aclose()
        server.close()


def test_unsupported_urls() -> None:
    client = Http1Client()
    for url in ("https://127.0.0.1/", "ftp://x/", "http:///nohost", "http://127.0.0.1:99999/"):
        with pytest.raises(Http1Error):
            asyncio.run(client.get(url, max_bytes=10))


async def test_against_stdlib_http_server() -> None:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - stdlib naming
            body = f"path={self.path} host={self.headers['Host']}".encode()
            self.send_response(503 if self.path == "/down" else 200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    port = httpd.server_address[1]
    client = Http1Client()
    try:
        r = await client.get(f"http://127.0.0.1:{port}/metrics?x=1", max_bytes=1000)
        assert r.status == 200 and r.body == f"path=/metrics?x=1 host=127.0.0.1:{port}".encode()
        r = await client.get(f"http://127.0.0.1:{port}/down", max_bytes=1000)
        assert r.status == 503 and r.reason == "Service Unavailable"
        assert client.connections_opened == 1
    finally:
        await client.aclose()
        httpd.shutdown()
        httpd.server_close()


# --- streamed requests (the canary's POST) -----------------------------------------------------------------


async def recording_server(responses: list[bytes]):
    """Answer the n-th request on a connection with responses[n]; record each request (head and body)."""
    seen: list[tuple[bytes, bytes]] = []
    count = {"conns": 0}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        count["conns"] += 1
        i = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                fields = [line.split(b":", 1) for line in head.split(b"\r\n")[1:] if b":" in line]
                length = next((int(v) for k, v in fields if k.lower() == b"content-length"), 0)
                seen.append((head, await reader.readexactly(length)))
                writer.write(responses[i % len(responses)])
                await writer.drain()
                i += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], seen, count


def chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


async def test_stream_post_yields_lines_across_chunk_boundaries_then_reuses_the_connection() -> None:
    events = chunked(b'data: {"a":', b"1}\r", b"\n\r\ndata: two\n", b"\ndata: three\rdata: [DONE]", b"\n\n")
    stream_reply = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n" + events
    )
    server, port, seen, count = await recording_server(
        [stream_reply, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"]
    )
    client = Http1Client()
    try:
        url = f"http://127.0.0.1:{port}/v1/completions"
        async with client.stream(
            "POST", url, body=b'{"x":1}', headers={"Content-Type": "application/json"}
        ) as resp:
            assert resp.status == 200 and resp.headers["content-type"] == "text/event-stream"
            lines = [line async for line in resp.lines()]
        assert lines == ['data: {"a":1}', "", "data: two", "", "data: three", "data: [DONE]", ""]
        head, body = seen[0]
        assert head.startswith(b"POST /v1/completions HTTP/1.1\r\n") and b"Content-Length: 7\r\n" in head
        assert b"Content-Type: application/json\r\n" in head and body == b'{"x":1}'
        r = await client.get(
            f"http://127.0.0.1:{port}/health", max_bytes=10
        )  # the same, kept-alive connection
        assert r.body == b"ok" and client.connections_opened == 1 and count["conns"] == 1
        assert seen[1][0].startswith(b"GET /health HTTP/1.1\r\n")
    finally:
        await client.aclose()
        server.close()


async def test_stream_left_before_its_end_closes_its_connection() -> None:
    server, port, _, count = await recording_server(
        [b"HTTP/1.1 503 Busy\r\nContent-Length: 300\r\n\r\n" + b"e" * 300]
    )
    client = Http1Client()
    try:
        async with client.stream("POST", f"http://127.0.0.1:{port}/v1/completions", body=b"{}") as resp:
            assert resp.status == 503 and resp.reason == "Busy"
            assert await resp.read(10, truncate=True) == b"e" * 10  # the rest is never read
        async with client.stream("POST", f"http://127.0.0.1:{port}/v1/completions", body=b"{}") as resp:
            with pytest.raises(BodyTooLarge):
                await resp.read(100)
        async with client.stream("POST", f"http://127.0.0.1:{port}/v1/completions", body=b"{}") as resp:
            assert await resp.read(1000) == b"e" * 300  # read to its end: reusable
        await client.get(f"http://127.0.0.1:{port}/", max_bytes=1000)
        assert client.connections_opened == count["conns"] == 3
    finally:
        await client.aclose()
        server.close()


async def test_stream_without_line_ends_is_cut_at_the_line_cap() -> None:
    endless = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(*[b"x" * 1000] * 20)
    server, port, _, _ = await recording_server([endless])
    client = Http1Client()
    try:
        with pytest.raises(Http1Error, match="longer than 5000 characters"):
            async with client.stream("POST", f"http://127.0.0.1:{port}/", body=b"") as resp:
                async for _ in resp.lines(max_line=5000):
                    pass
        assert client._idle.get(("127.0.0.1", port), []) == []
    finally:
        await client.aclose()
        server.close()


async def test_stream_against_the_simulated_engine(tmp_path) -> None:
    """The canary's request against the real server the agent talks to (agents.sim, uvicorn)."""
    from tests.support.simproc import sim_engine

    with sim_engine("vllm", "--model", "sim", tmp=tmp_path) as eng:
        await asyncio.to_thread(eng.wait_ready)
        client = Http1Client()
        try:
            body = b'{"model":"sim","prompt":"ping","max_tokens":1,"temperature":0,"stream":true}'
            for _ in range(2):
                url = eng.url + "/v1/completions"
                async with client.stream(
                    "POST", url, body=body, headers={"Content-Type": "application/json"}
                ) as resp:
                    assert resp.status == 200
                    data = [line async for line in resp.lines() if line.startswith("data:")]
                assert data[-1] == "data: [DONE]" and len(data) >= 2
            assert client.connections_opened == 1
        finally:
            await client.aclose()
