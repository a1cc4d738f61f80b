"""HTTP client cost on the agent's hot path: agents.http1 against httpx and aiohttp, in one run.

Run: ``python bench/bench_http.py [--requests 400] [--rounds 5]``

The hot path is the per-second GET of an engine's ``/metrics`` (and its health endpoint) on loopback with
a kept-alive connection. This starts one simulated vLLM engine (``python -m agents.sim --dialect vllm
--load 1``, a separate process) and, in this process, lets each client fetch its ``/metrics`` the way
the agent's scrape must: identity encoding, a byte cap on the body, a total deadline, one connection
kept alive. Each round runs every client back to back (interleaved, so machine load hits them alike) and
measures the CPU time of this process only (``time.process_time``; the engine's CPU is its own), per
request. It prints the median over rounds per client and the ratios against http1. aiohttp is optional
(never a dependency): when it is not installed its row says so and is skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from agents.http1 import Http1Client  # noqa: E402
from agents.scrape import fetch  # noqa: E402

MAX_BYTES = 16 * 2**20
DEADLINE_S = 5.0
HEADERS = {"Accept-Encoding": "identity"}
Get = Callable[[str], Awaitable[bytes]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_engine(port: int) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "agents.sim", "--dialect", "vllm", "--port", str(port), "--load", "1"]
    return subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_ready(url: str, proc: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"simulated engine exited with {proc.returncode}")
        try:
            resp = httpx.get(url, timeout=2, trust_env=False)
            if resp.status_code == 200:
                return len(resp.content)
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit("simulated engine did not serve /metrics within 60 s")


# --- the three clients, each used as the agent's scrape must use it -----------------------------------------
async def http1_client() -> tuple[Get, Callable[[], Awaitable[None]]]:
    client = Http1Client()

    async def get(url: str) -> bytes:
        got = await fetch(client, url, deadline_s=DEADLINE_S, max_bytes=MAX_BYTES)
        if not got.ok or got.body is None:
            raise RuntimeError(got.error)
        return got.body

    return get, client.aclose


async def httpx_client() -> tuple[Get, Callable[[], Awaitable[None]]]:
    client = httpx.AsyncClient(trust_env=False, timeout=httpx.Timeout(DEADLINE_S), headers=HEADERS)

    async def get(url: str) -> bytes:
        async with asyncio.timeout(DEADLINE_S):
            async with client.stream("GET", url) as resp:
                chunks, total = [], 0
                async for chunk in resp.aiter_raw():
                    total += len(chunk)
                    if total > MAX_BYTES:
                        raise RuntimeError("too large")
                    chunks.append(chunk)
                if resp.status_code != 200:
                    raise RuntimeError(f"HTTP {resp.status_code}")
                return b"".join(chunks)

    return get, client.aclose


async def aiohttp_client() -> tuple[Get, Callable[[], Awaitable[None]]] | None:
    try:
        import aiohttp
    except ImportError:
        return None
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=1), auto_decompress=False, headers=HEADERS, trust_env=False
    )

    async def get(url: str) -> bytes:
        async with asyncio.timeout(DEADLINE_S):
            async with session.get(url) as resp:
                chunks, total = [], 0
                async for chunk in resp.content.iter_any():
                    total += len(chunk)
                    if total > MAX_BYTES:
                        raise RuntimeError("too large")
                    chunks.append(chunk)
                if resp.status != 200:
                    raise RuntimeError(f"HTTP {resp.status}")
                return b"".join(chunks)

    return get, session.close


CLIENTS = {"http1": http1_client, "httpx": httpx_client, "aiohttp": aiohttp_client}


async def one_round(name: str, url: str, n: int, expect: int) -> float | None:
    """CPU microseconds of this process per GET over ``n`` keep-alive GETs (after 20 unmeasured ones)."""
    made = await CLIENTS[name]()
    if made is None:
        return None
    get, close = made
    try:
        for _ in range(20):
            await get(url)
        c0 = time.process_time()
        for _ in range(n):
            body = await get(url)
        c1 = time.process_time()
        if len(body) < expect // 2:
            raise SystemExit(f"{name}: short body ({len(body)} bytes)")
        return 1e6 * (c1 - c0) / n
    finally:
        await close()


async def run(url: str, n: int, rounds: int, expect: int) -> dict[str, list[float] | None]:
    results: dict[str, list[float] | None] = {name: [] for name in CLIENTS}
    for _ in range(rounds):
        for name in CLIENTS:
            got = await one_round(name, url, n, expect)
            if got is None:
                results[name] = None
            elif results[name] is not None:
                results[name].append(got)  # type: ignore[union-attr]
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=400, help="measured GETs per client per round")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    port = free_port()
    proc = start_engine(port)
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        size = wait_ready(url, proc)
        results = asyncio.run(run(url, args.requests, args.rounds, size))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"GET {url.rsplit(':', 1)[0]}:<port>/metrics of a simulated vLLM engine ({size} bytes), keep-alive, "
        f"{args.requests} requests x {args.rounds} rounds; CPU of this process per request; load average {load:.1f}"
    )
    base = statistics.median(results["http1"] or [float("nan")])
    for name, values in results.items():
        if values is None:
            print(f"{name:8s} {name} not installed: skipped")
            continue
        med = statistics.median(values)
        print(
            f"{name:8s} median {med:8.1f} us/request   best {min(values):8.1f} us   "
            f"{med / base:5.2f}x http1's CPU"
        )


if __name__ == "__main__":
    main()
