"""The simulated-GPU ledger: which simulated processes hold how much memory on which GPUs.

When the environment variable ``LLMCONSOLE_SIM_GPU_DIR`` names a directory, every simulated engine
and every simulated worker writes one file ``<dir>/<pid>.json`` when it starts and deletes it when it
exits cleanly (normal exit, SIGTERM/SIGINT, a scripted crash). A SIGKILLed process cannot delete its
file, so **a reader must treat the file of a pid that is no longer alive as released** (and may delete
it). Files are written atomically (a ``.tmp`` file in the same directory, then ``os.replace``), so a
reader never sees half a file; readers should ignore names that do not match ``<digits>.json``.

File format (JSON object)::

    {"pid": 1234,                 # the process holding the memory
     "gpus": [0, 1],              # GPU indices, from CUDA_VISIBLE_DEVICES (unset -> [0],
                                  #   empty -> []; entries that are not integers are skipped)
     "mem_bytes": 17179869184,    # bytes held on EACH GPU in "gpus"
     "role": "engine",            # "engine" | "worker"
     "dialect": "vllm",           # "vllm" | "sglang" | "tgi"
     "model": "llama-3.3-70b",    # the served model name
     "util_pct": 100,             # optional: utilization of every GPU in "gpus" (0..100)
     "util_pct_by_gpu": {"0": 100, "1": 0}}  # optional: per GPU index (a string key), overriding
                                  #   util_pct for the GPUs it names

Without ``util_pct`` a reader (agents/gpu/simulated.py) counts a GPU 100 % busy while any process holds
memory on it. The engine writes a utilization only when a fault decides it: 0 while its scheduler is
hung or its worker stopped, 100 while wedged (``gpu-wedge``), 100 on the first GPU and 0 on the others
in a collective hang (``rank-diverge``); it rewrites its file (atomically) when that value changes.

Memory split: ``--sim-gpu-mem-gib`` (default 18) is split 1/9 engine, 8/9 worker when the engine
has a worker, else all on the engine.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

ENV_DIR = "LLMCONSOLE_SIM_GPU_DIR"
GIB = 1024**3


def gpus_from_env(env: Mapping[str, str]) -> list[int]:
    """GPU indices from CUDA_VISIBLE_DEVICES (unset -> [0]; non-integer entries skipped)."""
    raw = env.get("CUDA_VISIBLE_DEVICES")
    if raw is None:
        return [0]
    out: list[int] = []
    for part in raw.split(","):
        part = part.strip()
        if part.isdigit():
            out.append(int(part))
    return out


def split_memory(total_gib: float, has_worker: bool) -> tuple[int, int]:
    """(engine_bytes, worker_bytes) for a total of ``total_gib``."""
    total = int(total_gib * GIB)
    if not has_worker:
        return total, 0
    engine = total // 9
    return engine, total - engine


def record(
    pid: int,
    gpus: list[int],
    mem_bytes: int,
    role: str,
    dialect: str,
    model: str,
    util_pct: float | None = None,
    util_pct_by_gpu: Mapping[int, float] | None = None,
) -> dict:
    """One ledger entry; the utilization keys are present only when given."""
    entry: dict = {
        "pid": pid,
        "gpus": gpus,
        "mem_bytes": mem_bytes,
        "role": role,
        "dialect": dialect,
        "model": model,
    }
    if util_pct is not None:
        entry["util_pct"] = util_pct
    if util_pct_by_gpu is not None:
        entry["util_pct_by_gpu"] = {str(gpu): pct for gpu, pct in util_pct_by_gpu.items()}
    return entry


def write(directory: str | os.PathLike[str], entry: Mapping[str, object]) -> Path:
    """Atomically write ``<directory>/<pid>.json``; returns its path."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    pid = int(entry["pid"])  # type: ignore[call-overload]
    path = folder / f"{pid}.json"
    tmp = folder / f".{pid}.json.tmp"
    tmp.write_text(json.dumps(dict(entry)), encoding="utf-8")
    os.replace(tmp, path)
    return path


def remove(path: Path | None) -> None:
    if path is not None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def read_all(directory: str | os.PathLike[str]) -> list[dict]:
    """Every well-formed entry in ``directory`` (dead pids included; the caller decides)."""
    out: list[dict] = []
    folder = Path(directory)
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("*.json")):
        if not path.stem.isdigit():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("pid"), int):
            out.append(data)
    return out
