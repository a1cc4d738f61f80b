"""The NVML source against a real NVIDIA GPU. Skipped where NVML cannot initialise (no GPU/driver)."""

from __future__ import annotations

import ctypes
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest

from agents.gpu import open_gpu_source
from agents.gpu.base import GpuPoll, GpuSource

pytestmark = pytest.mark.gpu

ALLOC_MIB = 512
# Allocates GPU memory through the CUDA driver API (no framework needed), then sleeps.
CUDA_CHILD = f"""
import ctypes, sys, time
cuda = ctypes.CDLL("libcuda.so.1")
def ck(ret, what):
    if ret != 0:
        print(f"error {{what}} {{ret}}", flush=True)
        sys.exit(3)
dev, ctx, ptr = ctypes.c_int(), ctypes.c_void_p(), ctypes.c_uint64()
ck(cuda.cuInit(0), "cuInit")
ck(cuda.cuDeviceGet(ctypes.byref(dev), 0), "cuDeviceGet")
ck(cuda.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev), "cuDevicePrimaryCtxRetain")
ck(cuda.cuCtxSetCurrent(ctx), "cuCtxSetCurrent")
ck(cuda.cuMemAlloc_v2(ctypes.byref(ptr), ctypes.c_size_t({ALLOC_MIB} << 20)), "cuMemAlloc")
print("ready", flush=True)
time.sleep(120)
"""


@pytest.fixture
def nvml_source() -> Iterator[GpuSource]:
    src = open_gpu_source("nvml")
    label = src.poll().source_label
    if label != "nvml":
        src.close()
        pytest.skip(f"no usable NVML here: {label}")
    yield src
    src.close()


def _used(poll: GpuPoll) -> int:
    return sum(g.mem_used_bytes or 0 for g in poll.gpus)


def test_real_gpus_give_plausible_readings(nvml_source: GpuSource) -> None:
    poll = nvml_source.poll()
    assert poll.source_label == "nvml" and poll.gpus
    assert poll.errors == (), poll.errors
    for g in poll.gpus:
        assert g.uuid and g.uuid.startswith(("GPU-", "MIG-")) and g.name
        assert g.mem_total_bytes and g.mem_total_bytes > 1 << 30
        assert g.mem_used_bytes is not None and 0 <= g.mem_used_bytes <= g.mem_total_bytes
        assert g.util_pct is None or 0 <= g.util_pct <= 100
        assert g.temp_c is None or 0 < g.temp_c < 120
        assert g.power_w is None or 0 < g.power_w < 2000
        assert g.power_limit_w is None or 50 < g.power_limit_w < 2000
        assert g.throttle_reasons is None or all(isinstance(r, str) and r for r in g.throttle_reasons)
        assert g.processes is None or all(p.pid > 0 for p in g.processes)
        assert g.xid_count is None or g.xid_count >= 0
    again = nvml_source.poll()  # draining the Xid event set twice is harmless
    assert [g.uuid for g in again.gpus] == [g.uuid for g in poll.gpus] and again.errors == ()


def _wait(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


def test_a_cuda_process_shows_up_and_its_memory_is_released_when_killed(nvml_source: GpuSource) -> None:
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        pytest.skip("libcuda.so.1 not loadable: cannot allocate GPU memory")
    before = _used(nvml_source.poll())
    child = subprocess.Popen([sys.executable, "-c", CUDA_CHILD], stdout=subprocess.PIPE, text=True)
    try:
        line = child.stdout.readline().strip()
        assert line == "ready", line
        assert _wait(lambda: _used(nvml_source.poll()) >= before + ((ALLOC_MIB - 64) << 20), 10)
        pids = nvml_source.pids_on_gpus()
        if child.pid not in pids:
            foreign = [p for p in pids if not psutil.pid_exists(p)]
            assert foreign, f"NVML lists {pids}, not the allocating child {child.pid}"
            pytest.skip(f"NVML reports PIDs of another PID namespace ({foreign}); memory was seen")
        mine = [p for g in nvml_source.poll().gpus for p in g.processes or () if p.pid == child.pid]
        assert mine and (mine[0].mem_bytes is None or mine[0].mem_bytes >= ALLOC_MIB << 20)
        child.kill()
        child.wait(timeout=10)
        assert _wait(lambda: child.pid not in nvml_source.pids_on_gpus(), 15)
        assert _wait(lambda: _used(nvml_source.poll()) < before + (64 << 20), 15)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=10)
        child.stdout.close()
