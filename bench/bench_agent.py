"""Agent cost: CPU (percent of one core) and RSS of `llmconsole agent` supervising 8 simulated engines.

Run: `python bench/bench_agent.py [--seconds 60] [--engines 8]`

In one run it measures two agents one after the other on the same machine: the reference, an agent with
no engines (its fixed cost: the loop, NVML/psutil reads, the API), and the agent under test with N
simulated engines at a 1 s interval (scrape + parse + health + canary + rules + snapshot per engine).
It prints both, the difference per engine and the ratio. Only the agent process is measured; the
simulated engines are separate processes. CPU is the agent's own CPU time (utime + stime of
/proc/<pid>/stat, through psutil) over the wall-clock span, so other load on the machine slows the agent
without being counted; the CPU time per collector tick is printed too, and the load average, since a
loaded machine still inflates CPU time a little (cache and scheduler effects). Numbers are measured,
never assumed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config(tmp: Path, n: int, port: int) -> Path:
    lines = [
        "[agent]",
        f'listen = "127.0.0.1:{port}"',
        "interval_s = 1.0",
        f'state_dir = "{tmp / "state"}"',
        'gpu_source = "simulated"',
        "",
    ]
    dialects = ["vllm", "sglang", "tgi"]
    for i in range(n):
        d = dialects[i % 3]
        cmd = [sys.executable, "-m", "agents.sim", "--dialect", d]
        lines += [
            "[[agent.engines]]",
            f'id = "e{i}"',
            f'kind = "{d}"',
            f'model = "sim-{i}"',
            f"port = {free_port()}",
            f"gpus = [{i % 4}]",
            f"command = {json.dumps(cmd)}",
            'args = ["--load", "1"]',
        ]
        if d == "tgi":
            lines.append(f"metrics_port = {free_port()}")
        lines.append("")
    path = tmp / "config.toml"
    path.write_text("\n".join(lines))
    return path


def measure(n: int, seconds: float, warmup: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        port = free_port()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "console.cli",
                "agent",
                "--config",
                str(config(tmp, n, port)),
                "--stop-engines-on-exit",
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    resp = httpx.get(f"http://127.0.0.1:{port}/v1/snapshot", timeout=2)
                    if resp.status_code == 200 and all(e["state"] == "ready" for e in resp.json()["engines"]):
                        break
                except (httpx.HTTPError, ValueError):
                    pass
                time.sleep(0.5)
            else:
                raise SystemExit(f"agent with {n} engines did not get ready in 60 s")
            time.sleep(warmup)
            p = psutil.Process(proc.pid)
            t0, c0 = time.monotonic(), p.cpu_times()
            seq0 = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).json()["seq"]
            rss_max = 0
            end = t0 + seconds
            while time.monotonic() < end:
                rss_max = max(rss_max, p.memory_info().rss)
                time.sleep(1.0)
            t1, c1 = time.monotonic(), p.cpu_times()
            seq1 = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).json()["seq"]
            cpu = (c1.user + c1.system) - (c0.user + c0.system)
            return {
                "engines": n,
                "cpu_pct_of_core": 100.0 * cpu / (t1 - t0),
                "cpu_ms_per_tick": 1000.0 * cpu / max(1, seq1 - seq0),
                "rss_mb": rss_max / 2**20,
                "ticks": seq1 - seq0,
                "seconds": t1 - t0,
            }
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _load() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--engines", type=int, default=8)
    ap.add_argument("--warmup", type=float, default=5.0)
    args = ap.parse_args()
    print(
        f"machine: {os.cpu_count()} cores; interval 1 s; measuring {args.seconds:.0f} s after {args.warmup:.0f} s warm-up"
    )
    load0 = _load()
    ref = measure(0, args.seconds, args.warmup)
    run = measure(args.engines, args.seconds, args.warmup)
    for r, label in (
        (ref, "reference: agent, no engines"),
        (run, f"agent supervising {args.engines} simulated engines"),
    ):
        print(
            f"{label:48s} CPU {r['cpu_pct_of_core']:6.2f} % of one core ({r['cpu_ms_per_tick']:5.2f} ms per tick)   "
            f"RSS {r['rss_mb']:6.1f} MB   {r['ticks']} ticks in {r['seconds']:.1f} s"
        )
    print(f"load average (1 min) at start {load0:.1f}, at end {_load():.1f}")
    per_engine = (run["cpu_pct_of_core"] - ref["cpu_pct_of_core"]) / max(1, args.engines)
    ratio = run["cpu_pct_of_core"] / ref["cpu_pct_of_core"] if ref["cpu_pct_of_core"] > 0 else float("nan")
    print(f"per engine: +{per_engine:.2f} % of a core; CPU ratio (N engines / none): {ratio:.2f}x")
    print(
        f"target: under 2 % of a core and under 100 MB -> {'met' if run['cpu_pct_of_core'] < 2 and run['rss_mb'] < 100 else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
