"""Load-generator benchmark: is `llmconsole bench` ever the bottleneck? Ours against a plain httpx loop.

Run ``python bench/bench_loadgen.py [--engines K] [--concurrency C] [--duration S]``. It starts K SIMULATED
vLLM engines (real processes, real HTTP, streamed completions of ``--output-len`` tokens with ignore_eos)
and drives all of them from one generator process, twice, in this run:

  (a) ours: console.bench's load runner, HTTP client and per-request timing (TTFT, every ITL, usage),
      one runner per engine at concurrency C, in one event loop;
  (b) the reference: a plain httpx.AsyncClient loop doing the same requests (C workers per engine), reading
      the event stream line by line and parsing each event as JSON, recording only TTFT;

then both again at ``--reference-concurrency`` (default 8) per engine, since httpx's CPU per request grows
with the number of connections in its pool.

Each generator runs in its own child process, so its CPU time (``time.process_time``) is its own. It
prints, for each, the streamed requests per second it sustained, the generator's CPU seconds per second
(1.0 = one core) and per request, the engines' CPU over the same time (from /proc), the load average
before and after (the machine is shared), and the ratios. The target: at least 500 requests/s with the
generator under one core. Every number printed comes from a measurement made in this run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TARGET_RPS = 500.0
SIM_ARGS = ("--tick-ms", "5", "--decode-ms", "1", "--max-num-seqs", "2048", "--disable-log-stats")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_s(pid: int) -> float:
    """user + system CPU seconds of a process (all its threads)."""
    with open(f"/proc/{pid}/stat", "rb") as fh:
        fields = fh.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _loadavg() -> str:
    with open("/proc/loadavg") as fh:
        return " ".join(fh.read().split()[:3])


# --- the two generators (child processes) ----------------------------------------------------------------------
def _body(input_len: int, output_len: int) -> tuple[bytes, int]:
    from console.bench.workload import Prompts, RequestFormat, WorkloadSpec

    prompt = next(Prompts(WorkloadSpec("random", input_len=input_len, output_len=output_len, seed=1)))
    return RequestFormat("completions", "sim-model", ignore_eos=True).body(prompt), prompt.est_tokens


async def _ours(urls: list[str], concurrency: int, duration: float, input_len: int, output_len: int) -> dict:
    from console.bench.http import Client, split_url
    from console.bench.load import Bounds, Outcome, Runner, Shape
    from console.bench.stats import summarize
    from console.bench.workload import Prompts, RequestFormat, WorkloadSpec

    stop = asyncio.Event()
    fmt = RequestFormat("completions", "sim-model", ignore_eos=True)
    bounds = Bounds(max_requests=10**9, duration_s=duration, drain_s=10.0, request_timeout_s=60.0)
    runners = []
    for i, url in enumerate(urls):
        client = Client(split_url(url)[0])
        prompts = Prompts(WorkloadSpec("random", input_len=input_len, output_len=output_len, seed=i))
        runners.append((client, Runner(client, fmt, prompts, Shape(concurrency=concurrency), bounds, stop)))
    cpu0 = time.process_time()
    outcomes = await asyncio.gather(*(r.run() for _, r in runners))
    cpu = time.process_time() - cpu0
    for client, _ in runners:
        await client.aclose()
    records = [rec for o in outcomes for rec in o.records]
    start, end = min(o.started for o in outcomes), max(o.ended for o in outcomes)
    s = summarize(Outcome(records, start, end, "duration", cpu))
    return {
        "completed": s["completed"],
        "failed": s["failed"],
        "duration": s["duration"],
        "cpu_s": cpu,
        "p50_ttft_ms": s["p50_ttft_ms"],
        "itl_gaps": sum(len(r.itl) for r in records),
        "errors": s["errors_by_class"],
    }


async def _httpx(urls: list[str], concurrency: int, duration: float, input_len: int, output_len: int) -> dict:
    import httpx

    body, _ = _body(input_len, output_len)
    done = failed = 0
    ttfts: list[float] = []
    limits = httpx.Limits(
        max_connections=concurrency * len(urls), max_keepalive_connections=concurrency * len(urls)
    )
    start = time.perf_counter()
    deadline = start + duration
    last_end = start

    async def worker(client: httpx.AsyncClient, url: str) -> None:
        nonlocal done, failed, last_end
        while time.perf_counter() < deadline:
            sent = time.perf_counter()
            first = None
            try:
                async with client.stream(
                    "POST",
                    url + "/v1/completions",
                    content=body,
                    headers={"content-type": "application/json"},
                ) as resp:
                    async for line in resp.aiter_lines():
                        if line.startswith("data: {"):
                            event = json.loads(line[6:])
                            if first is None and any(c.get("text") for c in event.get("choices") or ()):
                                first = time.perf_counter() - sent
                ok = resp.status_code == 200
            except httpx.HTTPError:
                ok = False
            done += ok
            failed += not ok
            if first is not None:
                ttfts.append(first)
            last_end = time.perf_counter()

    cpu0 = time.process_time()
    async with httpx.AsyncClient(limits=limits, timeout=60.0) as client:
        await asyncio.gather(*(worker(client, url) for url in urls for _ in range(concurrency)))
    cpu = time.process_time() - cpu0
    ttfts.sort()
    return {
        "completed": done,
        "failed": failed,
        "duration": last_end - start,
        "cpu_s": cpu,
        "p50_ttft_ms": ttfts[len(ttfts) // 2] * 1000 if ttfts else None,
        "itl_gaps": None,
        "errors": {},
    }


def child(
    kind: str, urls: list[str], concurrency: int, duration: float, input_len: int, output_len: int
) -> None:
    run = _ours if kind == "ours" else _httpx
    print(json.dumps(asyncio.run(run(urls, concurrency, duration, input_len, output_len))))


# --- the parent ------------------------------------------------------------------------------------------------
def _phase(kind: str, urls: list[str], pids: list[int], args: argparse.Namespace, concurrency: int) -> dict:
    load_before = _loadavg()
    engines0 = sum(_cpu_s(p) for p in pids)
    t0 = time.monotonic()
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            kind,
            "--urls",
            ",".join(urls),
            "--concurrency",
            str(concurrency),
            "--duration",
            str(args.duration),
            "--input-len",
            str(args.input_len),
            "--output-len",
            str(args.output_len),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=args.duration + 120,
    )
    wall = time.monotonic() - t0
    if out.returncode != 0:
        raise SystemExit(f"{kind} generator failed:\n{out.stderr[-3000:]}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    r["engines_cpu_per_s"] = (sum(_cpu_s(p) for p in pids) - engines0) / wall
    r["rps"] = r["completed"] / r["duration"] if r["duration"] else 0.0
    r["cpu_per_s"] = r["cpu_s"] / r["duration"] if r["duration"] else 0.0
    r["cpu_ms_per_request"] = 1000 * r["cpu_s"] / r["completed"] if r["completed"] else None
    r["load_before"], r["load_after"] = load_before, _loadavg()
    return r


def _line(name: str, r: dict) -> str:
    per = f"{r['cpu_ms_per_request']:.3f}" if r["cpu_ms_per_request"] is not None else "—"
    ttft = f"{r['p50_ttft_ms']:.1f}" if r["p50_ttft_ms"] is not None else "—"
    return (
        f"{name:<30} {r['rps']:>9.1f} req/s  {r['completed']:>7,} ok {r['failed']:>4} failed  "
        f"generator {r['cpu_per_s']:.3f} CPU s/s ({per} ms/request)  engines {r['engines_cpu_per_s']:.2f} CPU s/s  "
        f"TTFT p50 {ttft} ms  load {r['load_before']} -> {r['load_after']}"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", type=int, default=3, help="simulated engines to drive (default 3)")
    parser.add_argument(
        "--concurrency", type=int, default=96, help="requests in flight per engine (default 96)"
    )
    parser.add_argument(
        "--reference-concurrency",
        type=int,
        default=8,
        help="a second pair of runs at this concurrency per engine (httpx's cost grows with its pool)",
    )
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per generator (default 8)")
    parser.add_argument("--input-len", type=int, default=32)
    parser.add_argument("--output-len", type=int, default=8)
    parser.add_argument("--child", choices=("ours", "httpx"), help=argparse.SUPPRESS)
    parser.add_argument("--urls", help=argparse.SUPPRESS)
    return parser


def _start_engines(count: int, procs: list[subprocess.Popen[bytes]], urls: list[str]) -> None:
    """Start ``count`` simulated engines (appended to ``procs`` as they start) and wait for their /health."""
    import httpx

    for _ in range(count):
        port = _free_port()
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "agents.sim", "--dialect", "vllm", "--port", str(port), *SIM_ARGS],
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        urls.append(f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 60
    for url, proc in zip(urls, procs, strict=True):
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"simulated engine at {url} did not start")
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)


def _stop_engines(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _compare(args: argparse.Namespace, urls: list[str], pids: list[int]) -> None:
    """Both generators at each concurrency, their lines and ratios, then the verdict against the target."""
    rows = {}
    for conc in dict.fromkeys((args.concurrency, args.reference_concurrency)):
        for kind in ("ours", "httpx"):
            rows[kind, conc] = _phase(kind, urls, pids, args, conc)
        ours, ref = rows["ours", conc], rows["httpx", conc]
        print(_line(f"ours (console.bench) c={conc}", ours))
        print(_line(f"reference (httpx loop) c={conc}", ref))
        if ref["rps"] and ref["cpu_ms_per_request"] and ours["cpu_ms_per_request"]:
            print(
                f"  ratios at {conc} in flight per engine: requests/s ours/httpx {ours['rps'] / ref['rps']:.2f}x; "
                f"CPU per request httpx/ours {ref['cpu_ms_per_request'] / ours['cpu_ms_per_request']:.2f}x "
                f"(ours also times every ITL gap: {ours['itl_gaps']:,} of them)"
            )
    ours = rows["ours", args.concurrency]
    capacity = 1000 / ours["cpu_ms_per_request"] if ours["cpu_ms_per_request"] else 0.0
    verdict = "MET" if ours["rps"] >= TARGET_RPS and ours["cpu_per_s"] < 1.0 else "NOT MET"
    print(
        f"target >= {TARGET_RPS:.0f} streamed requests/s with the generator under one core: {verdict} "
        f"({ours['rps']:.0f} req/s at {ours['cpu_per_s']:.2f} core; its CPU per request implies "
        f"~{capacity:,.0f} req/s per core)"
    )


def main() -> int:
    args = _parser().parse_args()
    if args.child:
        child(
            args.child, args.urls.split(","), args.concurrency, args.duration, args.input_len, args.output_len
        )
        return 0

    procs: list[subprocess.Popen[bytes]] = []
    urls: list[str] = []
    try:
        _start_engines(args.engines, procs, urls)
        pids = [p.pid for p in procs]
        print(
            f"{args.engines} SIMULATED vLLM engines, {args.concurrency} in flight each, {args.duration:g} s per "
            f"generator, streamed completions of {args.input_len} -> {args.output_len} tokens; "
            f"{os.cpu_count()} CPUs, load average {_loadavg()}"
        )
        _compare(args, urls, pids)
        return 0
    finally:
        _stop_engines(procs)


if __name__ == "__main__":
    raise SystemExit(main())
