"""`bench`'s engine view: counter deltas and gauge peaks of a real loopback /metrics server, scraped with the
benchmark's own bounded HTTP client (deadline, byte cap, identity encoding), and each failure kept as one
line. Expected numbers come from the exposition texts, never from the watch's output."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from console.bench import enginewatch
from console.bench.enginewatch import EngineWatch

DATA = Path(__file__).resolve().parents[2] / "tests" / "data" / "metrics"
LOADED = DATA / "vllm-0.32-cpu.loaded.prom"  # scraped first (counters lower)
IDLE = DATA / "vllm-0.32-cpu.idle.prom"  # scraped later, same server


def series(path: Path, name: str) -> float:
    hits = [line for line in path.read_text().splitlines() if line.startswith((name + "{", name + " "))]
    assert len(hits) == 1, name
    return float(hits[0].split()[-1])


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a handler still sleeping must not hold up the teardown

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # the watch hanging up on a slow or huge response is the point of some tests


class Metrics:
    """Serves ``bodies`` in turn (the last one repeats) with ``status``; records each request's headers."""

    def __init__(self, bodies: list[bytes], status: int = 200, delay_s: float = 0.0) -> None:
        self.headers: list[dict[str, str]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                owner.headers.append({k.lower(): v for k, v in self.headers.items()})
                body = bodies[min(len(owner.headers), len(bodies)) - 1]
                time.sleep(delay_s)
                self.send_response(status)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/metrics"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> Metrics:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


async def watch_once(url: str, **kw: float) -> dict:
    """A run with no sampling in between: one scrape before, one after."""
    watch = EngineWatch(url, None, interval_s=60.0, **kw)
    await watch.begin()
    return await watch.end()


async def test_counter_deltas_and_gauge_peaks_over_a_run() -> None:
    with Metrics([LOADED.read_bytes(), IDLE.read_bytes()]) as server:
        report = await watch_once(server.url)
    assert (report["engine"], report["simulated"], report["scrapes"], report["scrape_errors"]) == (
        "vllm",
        False,
        2,
        0,
    )
    gen = "vllm:generation_tokens_total"
    assert report["generation_tokens"] == series(IDLE, gen) - series(LOADED, gen)
    assert report["prompt_tokens"] == series(IDLE, "vllm:prompt_tokens_total") - series(
        LOADED, "vllm:prompt_tokens_total"
    )
    running = [series(p, "vllm:num_requests_running") for p in (LOADED, IDLE)]
    kv = [series(p, "vllm:kv_cache_usage_perc") for p in (LOADED, IDLE)]
    assert (report["max_running"], report["max_kv_cache_usage"]) == (max(running), max(kv))
    assert [h.get("accept-encoding") for h in server.headers] == ["identity", "identity"]  # never compressed


async def test_byte_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(enginewatch, "MAX_BYTES", 4096)
    assert len(LOADED.read_bytes()) > 4096
    with Metrics([LOADED.read_bytes()]) as server:
        report = await watch_once(server.url)
    assert report["scrapes"] == 0 and report["scrape_errors"] == 2
    assert "larger than 4096 bytes" in report["last_error"]
    assert report["null_reasons"]["generation_tokens"].startswith("no scrape succeeded: ")


async def test_total_deadline_and_http_errors() -> None:
    with Metrics([LOADED.read_bytes()], delay_s=2.0) as server:
        started = time.monotonic()
        report = await watch_once(server.url, timeout_s=0.3)
        assert time.monotonic() - started < 1.9  # each scrape gave up at its deadline
    assert report["last_error"] == "no complete response within 0.3s" and report["scrapes"] == 0
    with Metrics([b"gone"], status=503) as server:
        report = await watch_once(server.url)
    assert report["last_error"] == "HTTP 503" and report["generation_tokens"] is None


async def test_refused_and_bad_urls_are_kept_as_errors() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    report = await watch_once(f"http://127.0.0.1:{port}/metrics")
    assert report["last_error"] == "connection failed: connection refused" and report["scrape_errors"] == 2
    report = await watch_once("ftp://127.0.0.1/metrics")
    assert "not an http:// or https:// URL" in report["last_error"] and report["scrapes"] == 0
