"""Cost of a 30-minute incident bundle of a host with four engines (issue 16 §6: under 10 s, under 50 MB).

Run: `python bench/bench_bundle.py [--snapshots 1800] [--engines 4] [--repeats 3]`

The collector's ring is filled SYNTHETICALLY: 1,800 snapshots (30 minutes at the default 1 s interval) of a
host with four engines and four GPUs, built from the wire schema's own types with every field a real agent
fills (stats drawn at random each second, health, canary, 20 state events per engine, alerts with evidence
for a third of the window, GPU processes), so their JSON has the size and the entropy of real ones. Each
engine brings what a real one does: a 1,000-line log tail and five raw /metrics scrapes (the recorded vLLM
0.32 exposition of /work/shared/fixtures, else a generated one of the same size). The agent's real builder
(agents/bundle.write_bundle: host facts, kernel log, process tree, versions, alert and probe history,
redaction, compression) writes the bundle; the archive is then verified.

Reference, measured in the same run: gzip (same level) of the same snapshots' JSON lines alone, the least
any bundle of that window must do. Printed: the best time of each, their ratio, the compressed and
uncompressed sizes, and the time console/bundle_read.load_bundle takes to verify and decode the bundle (the
replay's opening cost; replay's own 2 s target is measured with the replay). Exit 1 when the bundle misses
10 s or 50 MB.
"""

from __future__ import annotations

import argparse
import gzip
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agents.bundle import BundleRequest, EngineInputs, Inputs, write_bundle  # noqa: E402
from agents.bundle_files import verify_bundle  # noqa: E402
from agents.bundle_scrapes import RawScrape  # noqa: E402
from agents.redact import Redactor  # noqa: E402
from agents.schema import (  # noqa: E402
    Alert,
    Canary,
    EngineEvent,
    EngineSnapshot,
    EngineStats,
    GpuInfo,
    GpuProcess,
    Health,
    HostSnapshot,
    HostStats,
    rfc3339,
    to_json,
)

FIXTURE = Path("/work/shared/fixtures/engines/vllm-0.32-cpu.loaded.prom")
TARGET_S, TARGET_BYTES = 10.0, 50 * 10**6
STAT_FIELDS = [f for f in EngineStats.__dataclass_fields__ if f != "quantile_buckets"]  # floats only


def _events(rng: random.Random, t0: float, eid: str) -> tuple[EngineEvent, ...]:
    states = ["starting", "ready", "degraded", "ready", "hung", "stopping", "exited", "backoff"]
    out = []
    for i in range(20):
        state = states[i % len(states)]
        out.append(
            EngineEvent(
                at=rfc3339(t0 - 3600 + i * 97.3),
                state=state,
                reason=f"{state}: {eid} transition {i} after {rng.uniform(0, 90):.1f}s",
                exit_code=1 if state == "exited" else None,
                signal=None,
            )
        )
    return tuple(out)


def _hung_alert(rng: random.Random, t0: float, i: int) -> Alert:
    """The ENGINE_HUNG alert the first engine carries during its hung third of the window."""
    return Alert(
        code="ENGINE_HUNG",
        severity="critical",
        since=rfc3339(t0 + (i // 300) * 300),
        summary="no token progress for 30s with work pending",
        evidence={
            "running": rng.randint(1, 64),
            "waiting": rng.randint(0, 200),
            "stalled_s": i % 300,
            "stacks": {"status": "captured", "read": 3, "of": 4},
        },
    )


def _engine(
    rng: random.Random, t0: float, i: int, k: int, eid: str, events: tuple[EngineEvent, ...]
) -> EngineSnapshot:
    """Engine ``k`` at second ``i``: random stats, health and canary; hung for a third of the window."""
    wall = t0 + i
    hung = (i // 300) % 3 == 1 and k == 0
    alerts: tuple[Alert, ...] = (_hung_alert(rng, t0, i),) if hung else ()
    stats = EngineStats(**{f: round(rng.uniform(0, 500), 6) for f in STAT_FIELDS})
    return EngineSnapshot(
        id=eid,
        kind="vllm",
        model="meta-llama/Llama-3.3-70B-Instruct",
        state="hung" if hung else "ready",
        pid=4000 + k,
        port=8000 + k,
        gpus=(k,),
        restarts=k,
        uptime_s=round(3600 + i + rng.random(), 3),
        stats_age_s=round(rng.uniform(0, 1), 3),
        stats=stats,
        health=Health(
            http_ok=True,
            http_status=200,
            latency_s=round(rng.uniform(0.001, 0.02), 4),
            checked_at=rfc3339(wall),
        ),
        canary=Canary(
            ok=not hung,
            ttft_s=round(rng.uniform(0.02, 0.3), 4),
            error="no completion within 5s" if hung else None,
            at=rfc3339(wall - i % 10),
        ),
        alerts=alerts,
        events=events,
        rss_bytes=rng.randint(10**9, 4 * 10**9),
        served_model_name=None,
    )


def _gpus(rng: random.Random, ids: list[str]) -> tuple[GpuInfo, ...]:
    """Four H100s, each with one engine process."""
    return tuple(
        GpuInfo(
            index=g,
            uuid=f"GPU-{g:08x}-1111-2222-3333-444455556666",
            name="NVIDIA H100 80GB HBM3",
            mem_used_bytes=rng.randint(60, 79) * 2**30,
            mem_total_bytes=80 * 2**30,
            util_pct=round(rng.uniform(0, 100), 1),
            temp_c=round(rng.uniform(40, 80), 1),
            power_w=round(rng.uniform(100, 700), 1),
            power_limit_w=700.0,
            ecc_uncorrected=0,
            processes=(
                GpuProcess(pid=4000 + g, mem_bytes=rng.randint(60, 78) * 2**30, engine_id=ids[g % len(ids)]),
            ),
        )
        for g in range(4)
    )


def snapshots(n: int, engines: int, seed: int = 16) -> list[tuple[HostSnapshot, str]]:
    rng = random.Random(seed)
    t0 = time.time() - n
    ids = [f"llama-70b-{i}" for i in range(engines)]
    events = {eid: _events(rng, t0, eid) for eid in ids}
    out = []
    for i in range(n):
        wall = t0 + i
        es = [_engine(rng, t0, i, k, eid, events[eid]) for k, eid in enumerate(ids)]
        gpus = _gpus(rng, ids)
        snap = HostSnapshot(
            host="gpu01",
            agent_version="0.1.0",
            seq=i + 1,
            taken_at=rfc3339(wall),
            interval_s=1.0,
            gpu_source="nvml",
            host_stats=HostStats(
                cpu_pct=round(rng.uniform(0, 100), 1),
                mem_used_bytes=rng.randint(10**10, 10**11),
                mem_total_bytes=2 * 10**12,
            ),
            gpus=gpus,
            engines=tuple(es),
            boot_id="0b1d",
        )
        out.append((snap, to_json(snap)))
    return out


def scrape_body() -> bytes:
    if FIXTURE.is_file():
        return FIXTURE.read_bytes()
    lines = [f'vllm:metric_{i}{{engine="0",model_name="m"}} {i * 1.5}' for i in range(1500)]
    return ("\n".join(lines) + "\n").encode()


def engine_inputs(engines: int) -> list[EngineInputs]:
    body = scrape_body()
    rng = random.Random(7)
    out = []
    for k in range(engines):
        tail = [
            f"INFO 06-01 12:{i // 60 % 60:02d}:{i % 60:02d} [loggers.py:116] Engine 000: Avg prompt throughput: "
            f"{rng.uniform(0, 9000):.1f} tokens/s, Avg generation throughput: {rng.uniform(0, 900):.1f} tokens/s, "
            f"Running: {rng.randint(0, 64)} reqs, Waiting: {rng.randint(0, 9)} reqs, GPU KV cache usage: {rng.uniform(0, 99):.1f}%"
            for i in range(1000)
        ]
        scrapes = tuple(
            RawScrape(
                wall=time.time(),
                ok=True,
                status=200,
                error=None,
                elapsed_s=0.01,
                body=body,
                mono=time.monotonic(),
            )
            for _ in range(5)
        )
        out.append(
            EngineInputs(
                id=f"llama-70b-{k}",
                kind="vllm",
                model="meta-llama/Llama-3.3-70B-Instruct",
                state="ready",
                reason="healthy",
                pid=None,
                pids=(),
                restarts=0,
                argv=(sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--port", str(8000 + k)),
                env={
                    "PATH": "/usr/bin",
                    "VLLM_API_KEY": "sentinel-bench-key-0001",
                    "CUDA_VISIBLE_DEVICES": str(k),
                },
                events=[{"at": rfc3339(), "state": "ready", "reason": "healthy"}] * 200,
                log_tail=tail,
                log_version="0.32.0",
                log_version_line="vLLM API server version 0.32.0",
                scrapes=scrapes,
                scrape_ring=True,
                captures=(),
            )
        )
    return out


def best(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return min(times), result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--snapshots", type=int, default=1800)
    ap.add_argument("--engines", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    t = time.perf_counter()
    ring = snapshots(args.snapshots, args.engines)
    print(
        f"filled the ring synthetically: {len(ring)} snapshots x {args.engines} engines in {time.perf_counter() - t:.1f} s "
        f"({sum(len(j) for _, j in ring) / len(ring) / 1024:.1f} KiB of JSON each)"
    )
    inputs = Inputs(
        host="gpu01",
        boot_id="0b1d",
        history_s=float(args.snapshots),
        snapshots=ring,
        engines=engine_inputs(args.engines),
        gpu=None,
        redact=Redactor(["sentinel-bench-key-0001"]),
    )
    request = BundleRequest(since_s=float(args.snapshots), reason="bench")
    ref_s, ref = best(
        lambda: gzip.compress("\n".join(j for _, j in ring).encode(), compresslevel=6), args.repeats
    )
    took, result = best(lambda: write_bundle(inputs, request), args.repeats)
    verdict = verify_bundle(result.data)  # type: ignore[union-attr]
    assert verdict.ok, verdict.problem
    raw = sum(f["size"] for f in verdict.manifest["files"])
    size = len(result.data)  # type: ignore[union-attr]
    print(f"reference: gzip of the snapshots' JSON lines alone: {ref_s:.2f} s, {len(ref) / 1e6:.1f} MB")  # type: ignore[arg-type]
    print(
        f"bundle:    {took:.2f} s ({took / ref_s:.2f}x the reference), {size / 1e6:.1f} MB compressed "
        f"({raw / 1e6:.1f} MB in {len(verdict.manifest['files'])} files), verified"
    )
    from console.bundle_read import load_bundle

    load_s, loaded = best(lambda: load_bundle(result.data), args.repeats)  # type: ignore[union-attr]
    n = sum(len(h.snapshots) for h in loaded.hosts)  # type: ignore[attr-defined]
    print(
        f"read back (console/bundle_read.load_bundle: verify + decode {n} snapshots, what a replay opens): {load_s:.2f} s"
    )
    ok = took < TARGET_S and size < TARGET_BYTES
    print(f"target: under {TARGET_S:g} s and {TARGET_BYTES / 1e6:g} MB: {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
