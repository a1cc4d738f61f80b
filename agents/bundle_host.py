"""Host facts for an incident bundle: kernel, CPU, RAM, GPU driver and CUDA, kernel-log lines about GPUs
and OOM, and the engines' process trees with their GPU memory. Blocking reads: run in a worker thread.

Every reader returns what it found and, for anything it could not read, why (``dmesg`` is often denied to
non-root users: ``kernel.dmesg_restrict``); nothing here raises for a missing file, tool or permission.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

import psutil

from agents.bundle_redact import allowed_env
from agents.schema import HostSnapshot, rfc3339, to_dict

KERNEL_LOG_RE = re.compile(
    r"NVRM|Xid|nvidia|out of memory|oom-kill|oom_reaper|killed process|invoked oom-killer", re.IGNORECASE
)
KERNEL_LOG_MAX_LINES = 2000
KERNEL_LOG_FILES = ("/var/log/kern.log", "/var/log/messages")
_FILE_TAIL_BYTES = 8 * 2**20
DMESG_TIMEOUT_S = 5.0

Missing = list[tuple[str, str]]  # (what, why)


def _read_first(path: str, limit: int = 64 * 1024) -> str | None:
    try:
        with open(path, "rb") as fh:
            return fh.read(limit).decode("utf-8", "replace")
    except OSError:
        return None


def cpu_model() -> str | None:
    text = _read_first("/proc/cpuinfo", 256 * 1024) or ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "cpu model", "Hardware") and value.strip():
            return value.strip()
    return platform.processor() or None


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return None if value is None else str(value)


def driver_facts(gpu: Any) -> tuple[dict[str, Any], Missing]:
    """GPU driver, CUDA driver API and NVML versions: from the agent's NVML source when it has one, else
    the driver version from /proc/driver/nvidia/version; each value None with a reason when unknown."""
    out: dict[str, Any] = {
        "driver_version": None,
        "cuda_driver_version": None,
        "nvml_version": None,
        "from": None,
    }
    missing: Missing = []
    nvml = getattr(gpu, "_nvml", None)  # agents.gpu.nvml.NvmlGpuSource keeps its initialised module here
    if nvml is not None:
        out["from"] = "nvml"
        for key, names in (
            ("driver_version", ("nvmlSystemGetDriverVersion",)),
            ("cuda_driver_version", ("nvmlSystemGetCudaDriverVersion_v2", "nvmlSystemGetCudaDriverVersion")),
            ("nvml_version", ("nvmlSystemGetNVMLVersion",)),
        ):
            what, why = f"GPU {key.replace('_', ' ')}", f"this NVML binding has no {' or '.join(names)}"
            for name in names:
                fn = getattr(nvml, name, None)
                if fn is None:
                    continue
                try:
                    value = fn()
                except Exception as exc:  # noqa: BLE001 - an NVML error is a reason, not a failure
                    why = f"NVML {name}: {type(exc).__name__}: {exc}".rstrip(": ")
                    continue
                if key == "cuda_driver_version" and isinstance(value, int):
                    value = f"{value // 1000}.{value % 1000 // 10}"
                out[key] = _text(value)
                break
            if out[key] is None:
                missing.append((what, why))
        return out, missing
    proc_version = _read_first("/proc/driver/nvidia/version")
    if proc_version:
        m = re.search(r"Kernel Module(?: for [\w.-]+)?\s+([0-9][0-9.]+)", proc_version)
        out["driver_version"] = m.group(1) if m else None
        out["from"] = "/proc/driver/nvidia/version"
        missing.append(
            ("CUDA driver version", "the agent does not read GPUs through NVML (gpu_source is not nvml)")
        )
    else:
        why = "no NVIDIA driver found (/proc/driver/nvidia/version is absent) and gpu_source is not nvml"
        missing.append(("GPU driver and CUDA versions", why))
    return out, missing


def host_facts(latest: HostSnapshot | None, gpu: Any) -> tuple[dict[str, Any], Missing]:
    """Kernel (uname), CPU, RAM, boot time, GPU driver and CUDA, the agent's GPU source."""
    u = os.uname()
    try:
        ram: int | None = int(psutil.virtual_memory().total)
    except OSError:
        ram = None
    try:
        boot = rfc3339(psutil.boot_time())
    except OSError:
        boot = None
    driver, missing = driver_facts(gpu)
    facts = {
        "uname": {
            "sysname": u.sysname,
            "nodename": u.nodename,
            "release": u.release,
            "version": u.version,
            "machine": u.machine,
        },
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "ram_total_bytes": ram,
        "boot_time": boot,
        "python": platform.python_version(),
        "gpu_source": latest.gpu_source if latest else None,
        "gpus": [
            {"index": g.index, "name": g.name, "mem_total_bytes": g.mem_total_bytes} for g in latest.gpus
        ]
        if latest
        else [],
        **driver,
    }
    return facts, missing


def gpu_snapshot(latest: HostSnapshot | None) -> dict[str, Any]:
    """The latest GPU readings with each process's memory and owning engine (None: outside every engine)."""
    if latest is None:
        return {"at": None, "source": None, "gpus": []}
    return {
        "at": latest.taken_at,
        "source": latest.gpu_source,
        "gpus": [to_dict(g) for g in latest.gpus],
        "errors": [e for e in latest.errors if "gpu" in e.lower() or "nvml" in e.lower()],
    }


def kernel_log(
    timeout_s: float = DMESG_TIMEOUT_S, *, dmesg: str | None = None, files: Sequence[str] = KERNEL_LOG_FILES
) -> tuple[list[str] | None, str | None, Missing]:
    """(matching lines, where they came from, what could not be read): ``dmesg`` first, then the syslog
    ``files``. Lines about NVRM / Xid / nvidia / OOM only, the last ``KERNEL_LOG_MAX_LINES``."""
    missing: Missing = []
    if dmesg is None:
        dmesg = shutil.which("dmesg") or next(
            (p for p in ("/usr/bin/dmesg", "/bin/dmesg") if os.access(p, os.X_OK)), None
        )
    if dmesg is None:
        missing.append(("kernel log (dmesg)", "dmesg is not installed"))
    else:
        try:
            done = subprocess.run(
                [dmesg],
                capture_output=True,
                timeout=timeout_s,
                env={"LC_ALL": "C", "PATH": "/usr/bin:/bin"},
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except subprocess.TimeoutExpired:
            missing.append(("kernel log (dmesg)", f"dmesg did not finish within {timeout_s:g}s"))
        except OSError as exc:
            missing.append(("kernel log (dmesg)", f"cannot run dmesg: {exc.strerror or exc}"))
        else:
            if done.returncode == 0:
                return _matching(done.stdout.decode("utf-8", "replace").splitlines()), "dmesg", missing
            why = (
                done.stderr.decode("utf-8", "replace").strip().splitlines()
                or [f"exit status {done.returncode}"]
            )[0][:200]
            restrict = (_read_first("/proc/sys/kernel/dmesg_restrict") or "").strip()
            hint = f" (kernel.dmesg_restrict={restrict})" if restrict else ""
            missing.append(("kernel log (dmesg)", f"denied: {why}{hint}"))
    for path in files:
        try:
            with open(path, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                fh.seek(max(0, size - _FILE_TAIL_BYTES))
                text = fh.read().decode("utf-8", "replace")
        except FileNotFoundError:
            continue
        except OSError as exc:
            missing.append((f"kernel log ({path})", f"cannot read: {exc.strerror or exc}"))
            continue
        return _matching(text.splitlines()), path, missing
    return None, None, missing


def _matching(lines: Sequence[str]) -> list[str]:
    return [line for line in lines if KERNEL_LOG_RE.search(line)][-KERNEL_LOG_MAX_LINES:]


def process_tree(engine_pids: Mapping[str, Sequence[int]], latest: HostSnapshot | None) -> dict[str, Any]:
    """Each engine's processes (parent, name, state, command line, threads, RSS, start time, GPU memory)
    and the GPU processes that belong to no engine."""
    on_gpu: dict[int, list[dict[str, Any]]] = {}
    outside: list[dict[str, Any]] = []
    for g in latest.gpus if latest else ():
        for p in g.processes:
            on_gpu.setdefault(p.pid, []).append({"gpu": g.index, "mem_bytes": p.mem_bytes})
            if p.engine_id is None:
                outside.append({"pid": p.pid, "gpu": g.index, "mem_bytes": p.mem_bytes, **_proc(p.pid, {})})
    engines = {eid: [_proc(pid, on_gpu) for pid in sorted(pids)] for eid, pids in engine_pids.items()}
    return {"at": rfc3339(), "engines": engines, "gpu_processes_outside_engines": outside}


def _proc(pid: int, on_gpu: Mapping[int, list[dict[str, Any]]]) -> dict[str, Any]:
    row: dict[str, Any] = {"pid": pid, "gpu_memory": on_gpu.get(pid, [])}
    try:
        p = psutil.Process(pid)
        with p.oneshot():
            row.update(
                ppid=p.ppid(),
                name=p.name(),
                status=p.status(),
                threads=p.num_threads(),
                rss_bytes=p.memory_info().rss,
                started=rfc3339(p.create_time()),
            )
            try:
                row["cmdline"] = p.cmdline()
            except (psutil.AccessDenied, psutil.ZombieProcess):
                row["cmdline"] = None
    except psutil.NoSuchProcess:
        row["gone"] = True
    except (psutil.AccessDenied, psutil.ZombieProcess, OSError) as exc:
        row["error"] = f"{type(exc).__name__}"
    return row


def running_process(pid: int | None) -> dict[str, Any] | None:
    """The engine leader as it runs: its command line and allow-listed environment (from /proc; a watched
    engine's only source of them). ``_environ`` (the whole environment, for version lookup) is for the
    caller to drop. None when there is no leader."""
    if pid is None:
        return None
    try:
        p = psutil.Process(pid)
        cmdline = p.cmdline()
        try:
            environ: dict[str, str] | None = p.environ()
        except (psutil.AccessDenied, psutil.ZombieProcess, OSError):
            environ = None
    except psutil.NoSuchProcess:
        return {"pid": pid, "gone": True, "cmdline": None, "env": None, "_environ": {}}
    except (psutil.AccessDenied, psutil.ZombieProcess, OSError) as exc:
        return {"pid": pid, "error": type(exc).__name__, "cmdline": None, "env": None, "_environ": {}}
    kept, withheld = allowed_env(environ) if environ is not None else (None, None)
    return {
        "pid": pid,
        "cmdline": cmdline,
        "env": kept,
        "env_withheld": withheld,
        "env_error": None if environ is not None else "the environment is not readable",
        "_environ": environ or {},
    }
