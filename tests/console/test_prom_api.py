"""console.promapi details: no gzip from a loopback Prometheus (the server's compression of a fleet-sized
answer costs more than the copy), gzip elsewhere; an instant vector's evaluation time and values."""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from console.promapi import PromClient, _loopback
from console.settings import PrometheusConfig


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("http://127.0.0.1:9090", True),
        ("http://localhost:9090/", True),
        ("http://[::1]:9090", True),
        ("http://prom.localhost", True),
        ("http://10.0.0.5:9090", False),
        ("https://prometheus.example.com", False),
        ("http://[not-an-ip", False),
    ],
)
def test_loopback_urls_are_told_apart(url: str, local: bool) -> None:
    assert _loopback(url) is local


def test_a_loopback_server_is_asked_for_uncompressed_answers_a_remote_one_for_gzip() -> None:
    seen: list[str | None] = []
    body = json.dumps(
        {
            "status": "success",
            "data": {
                "resultType": "vector",
                "result": [
                    {"metric": {"__name__": "up", "host": "a"}, "value": [1700000000.5, "1"]},
                    {"metric": {"__name__": "up", "host": "b"}, "value": [1700000000.5, "0"]},
                ],
            },
        }
    ).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            seen.append(self.headers.get("Accept-Encoding"))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:

        async def ask() -> tuple[float | None, list]:
            client = PromClient(
                PrometheusConfig(name="p", url=f"http://127.0.0.1:{server.server_address[1]}")
            )
            try:
                at, series, _ = await client.vector("up")
            finally:
                await client.aclose()
            return at, series

        at, series = asyncio.run(ask())
    finally:
        server.shutdown()
        server.server_close()
    assert seen == ["identity"]
    assert at == 1700000000.5 and [(ls["host"], v) for ls, v in series] == [("a", 1.0), ("b", 0.0)]
    remote = PromClient(PrometheusConfig(name="r", url="https://prometheus.example.com"))
    try:
        assert (
            "gzip" in remote._client.headers["Accept-Encoding"]
        )  # httpx's default, kept for a remote server
    finally:
        asyncio.run(remote.aclose())
