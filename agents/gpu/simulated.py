"""Simulated GPUs for the demo and tests, labelled "simulated": nothing here is measured hardware.

Each simulated engine process writes ``<ledger_dir>/<pid>.json`` atomically::

    {"pid": 123, "gpus": [0, 1], "mem_bytes": 1234, "role": "engine", "dialect": "vllm", "model": "m"}

and deletes it on a clean exit; a SIGKILLed process leaves its file behind. Like a real driver, which
frees a process's memory when it dies, this reader treats files of dead PIDs as released (after an
optional ``release_delay_s`` emulating asynchronous driver teardown) and removes them. A live process
keeps its memory however it got orphaned, which is what ORPHAN_GPU_MEMORY is about.

An entry may carry an optional ``"util_pct"`` (0..100) to drive its GPUs' utilization, and an optional
``"util_pct_by_gpu"`` (``{"0": 100, "1": 0}``: GPU index as a string -> 0..100) that overrides it for
the GPUs it names (a simulated engine writes it for a collective hang: one rank busy, the others idle).
A GPU's utilization is the highest any entry sets for it; with none set, a GPU is 100 % busy while any
process holds memory on it and 0 % when none does. Temperature, power, ECC, Xid and throttle reasons
are not simulated and stay None.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from agents.gpu.base import SIMULATED_LABEL, GpuPoll, GpuProcessReading, GpuReading

GiB = 1 << 30
DEFAULT_NAME = "SIMULATED H100 80GB HBM3"
BUSY_UTIL_PCT = 100.0
# A process created this long after its ledger file was last written cannot be its writer (PID reuse).
# Generous because psutil derives create_time from a boot time with one-second resolution.
_PID_REUSE_SLACK_S = 2.0


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One process's claim on simulated GPU memory."""

    pid: int
    gpus: tuple[int, ...]
    mem_bytes: int
    role: str
    dialect: str
    model: str
    util_pct: float | None = None
    util_pct_by_gpu: tuple[tuple[int, float], ...] = ()  # (gpu index, util) overriding util_pct

    def util_of(self, gpu: int) -> float | None:
        """The utilization this entry sets for ``gpu``, or None when it sets none."""
        return dict(self.util_pct_by_gpu).get(gpu, self.util_pct)


def parse_entry(obj: Any) -> LedgerEntry:
    """Validate one decoded ledger file; ValueError with the reason if it is malformed."""
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    pid, gpus, mem = obj.get("pid"), obj.get("gpus"), obj.get("mem_bytes")
    if not _is_int(pid) or pid <= 0:
        raise ValueError(f"bad pid {pid!r}")
    if not isinstance(gpus, list) or not all(_is_int(g) for g in gpus):
        raise ValueError(f"bad gpus {gpus!r}")
    if not _is_int(mem) or mem < 0:
        raise ValueError(f"bad mem_bytes {mem!r}")
    util = obj.get("util_pct")
    if util is not None and not _is_pct(util):
        raise ValueError(f"bad util_pct {util!r}")
    by_gpu = obj.get("util_pct_by_gpu")
    if by_gpu is not None and (
        not isinstance(by_gpu, dict)
        or not all(
            isinstance(k, str) and k.isdigit() and k.isascii() and _is_pct(v) for k, v in by_gpu.items()
        )
    ):
        raise ValueError(f"bad util_pct_by_gpu {by_gpu!r}")
    return LedgerEntry(
        pid=pid,
        gpus=tuple(dict.fromkeys(gpus)),
        mem_bytes=mem,
        role=str(obj.get("role", "")),
        dialect=str(obj.get("dialect", "")),
        model=str(obj.get("model", "")),
        util_pct=None if util is None else float(util),
        util_pct_by_gpu=tuple(sorted((int(k), float(v)) for k, v in (by_gpu or {}).items())),
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_pct(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and 0 <= value <= 100


def split_evenly(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` integers that add up exactly (remainder to the first ones)."""
    base, rest = divmod(total, parts)
    return [base + (1 if i < rest else 0) for i in range(parts)]


def pid_alive(pid: int, written_at: float) -> bool:
    """Whether the process that wrote a ledger file at wall time ``written_at`` still runs."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False  # exited; its memory is gone even if nobody reaped it yet
        return proc.create_time() <= written_at + _PID_REUSE_SLACK_S
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


class SimulatedGpuSource:
    """GpuSource over the simulated-GPU ledger directory."""

    def __init__(
        self,
        ledger_dir: Path,
        *,
        count: int = 4,
        name: str = DEFAULT_NAME,
        mem_total_bytes: int = 80 * GiB,
        release_delay_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ledger_dir = Path(ledger_dir)
        self.count, self.name, self.mem_total_bytes = count, name, mem_total_bytes
        self.release_delay_s = release_delay_s
        self._clock = clock
        self._dead_since: dict[int, float] = {}  # pid → monotonic time its death was first seen
        self._lock = threading.Lock()
        with contextlib.suppress(OSError):  # a failure is reported by every poll instead
            self.ledger_dir.mkdir(parents=True, exist_ok=True)

    def poll(self) -> GpuPoll:
        """The simulated GPUs as the ledger describes them now."""
        entries, errors = self._holding_entries()
        used = [0] * self.count
        procs: list[dict[int, int]] = [{} for _ in range(self.count)]
        utils: list[list[float]] = [[] for _ in range(self.count)]
        for entry in entries:
            gpus = [g for g in entry.gpus if 0 <= g < self.count]
            if len(gpus) < len(entry.gpus):
                errors.append(
                    f"simulated ledger: pid {entry.pid} lists GPUs {list(entry.gpus)}, "
                    f"only 0..{self.count - 1} exist"
                )
            for gpu, share in zip(gpus, split_evenly(entry.mem_bytes, len(gpus) or 1), strict=False):
                used[gpu] += share
                procs[gpu][entry.pid] = procs[gpu].get(entry.pid, 0) + share
                util = entry.util_of(gpu)
                if util is not None:
                    utils[gpu].append(util)
        gpus_out = tuple(self._reading(i, used[i], procs[i], utils[i]) for i in range(self.count))
        errors += [
            f"simulated gpu {g.index}: {g.mem_used_bytes} bytes committed, only {self.mem_total_bytes} exist"
            for g in gpus_out
            if (g.mem_used_bytes or 0) > self.mem_total_bytes
        ]
        return GpuPoll(SIMULATED_LABEL, gpus_out, tuple(errors))

    def pids_on_gpus(self) -> set[int]:
        """PIDs whose ledger claims memory on an existing simulated GPU (dead ones until released)."""
        entries, _ = self._holding_entries()
        return {e.pid for e in entries if any(0 <= g < self.count for g in e.gpus)}

    def close(self) -> None:
        """Nothing to release: the ledger belongs to its writers."""

    def _reading(self, index: int, used: int, procs: dict[int, int], utils: list[float]) -> GpuReading:
        util = max(utils) if utils else (BUSY_UTIL_PCT if procs else 0.0)
        return GpuReading(
            index=index,
            uuid=f"SIM-GPU-{index}",
            name=self.name,
            mem_used_bytes=used,
            mem_total_bytes=self.mem_total_bytes,
            util_pct=util,
            processes=tuple(GpuProcessReading(pid, mem) for pid, mem in sorted(procs.items())),
        )

    def _holding_entries(self) -> tuple[list[LedgerEntry], list[str]]:
        """Entries whose memory is still held: live writers, and dead ones inside the release delay."""
        with self._lock:
            entries: list[LedgerEntry] = []
            errors: list[str] = []
            if not self.ledger_dir.is_dir():
                return [], [f"simulated ledger: {self.ledger_dir} is not a directory"]
            try:
                paths = sorted(p for p in self.ledger_dir.glob("*.json") if p.stem.isdigit())
            except OSError as err:
                return [], [f"simulated ledger: cannot list {self.ledger_dir}: {err.strerror or err}"]
            for path in paths:
                entry = self._read(path, errors)
                if entry is not None and self._holds(entry, path, errors):
                    entries.append(entry)
            seen = {int(p.stem) for p in paths}
            self._dead_since = {pid: t for pid, t in self._dead_since.items() if pid in seen}
            return entries, errors

    def _read(self, path: Path, errors: list[str]) -> LedgerEntry | None:
        try:
            entry = parse_entry(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None  # removed by its writer between listing and reading
        except (OSError, ValueError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            errors.append(f"simulated ledger: {path.name}: {err}")
            return None
        if str(entry.pid) != path.stem:
            errors.append(f"simulated ledger: {path.name}: pid {entry.pid} does not match the file name")
            return None
        return entry

    def _holds(self, entry: LedgerEntry, path: Path, errors: list[str]) -> bool:
        """Whether ``entry``'s memory is still held; removes the file once it is released."""
        try:
            written_at = path.stat().st_mtime
        except FileNotFoundError:
            return False
        if pid_alive(entry.pid, written_at):
            self._dead_since.pop(entry.pid, None)
            return True
        now = self._clock()
        since = self._dead_since.setdefault(entry.pid, now)
        if now - since < self.release_delay_s:
            return True
        try:
            path.unlink(missing_ok=True)
        except OSError as err:
            errors.append(f"simulated ledger: cannot remove released {path.name}: {err.strerror or err}")
        self._dead_since.pop(entry.pid, None)
        return False
