"""A stand-in for nvidia-ml-py's ``pynvml``, for tests only (this machine has no GPU).

``FakeNvml`` has the same function, constant and exception names that agents/gpu/nvml.py uses, with
the same calling conventions and return shapes (checked against nvidia-ml-py 13.615): memory info and
utilization as objects with ``.used/.total/.free`` and ``.gpu/.memory``, power in milliwatts, process
entries with ``.pid/.usedGpuMemory`` (None when NVML cannot say), ``nvmlEventSetWait`` raising
NVMLError_Timeout when no event is pending. Behind it is a small in-memory model of GPUs.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

# -- exceptions (names and codes as in pynvml) ------------------------------------------------------


class NVMLLibraryMismatchError(Exception):
    pass


class NVMLError(Exception):
    code = 999
    text = "Unknown Error"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.value = self.code

    def __str__(self) -> str:
        return self.text


def _error(name: str, code: int, text: str) -> type[NVMLError]:
    return type(name, (NVMLError,), {"code": code, "text": text})


NVMLError_Uninitialized = _error("NVMLError_Uninitialized", 1, "Uninitialized")
NVMLError_NotSupported = _error("NVMLError_NotSupported", 3, "Not Supported")
NVMLError_NoPermission = _error("NVMLError_NoPermission", 4, "Insufficient Permissions")
NVMLError_DriverNotLoaded = _error("NVMLError_DriverNotLoaded", 9, "Driver Not Loaded")
NVMLError_Timeout = _error("NVMLError_Timeout", 10, "Timeout")
NVMLError_LibraryNotFound = _error("NVMLError_LibraryNotFound", 12, "NVML Shared Library Not Found")
NVMLError_FunctionNotFound = _error("NVMLError_FunctionNotFound", 13, "Function Not Found")
NVMLError_GpuIsLost = _error("NVMLError_GpuIsLost", 15, "GPU is lost")
NVMLError_Unknown = _error("NVMLError_Unknown", 999, "Unknown Error")

# -- constants --------------------------------------------------------------------------------------
NVML_TEMPERATURE_GPU = 0
NVML_VOLATILE_ECC = 0
NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1
nvmlEventTypeXidCriticalError = 0x8
nvmlEventTypeSingleBitEccError = 0x1

_EXPORTED = {k: v for k, v in dict(globals()).items() if k.startswith(("NVML", "nvml"))}


@dataclass
class FakeDevice:
    """One simulated GPU as NVML would describe it (units as NVML returns them)."""

    uuid: str = "GPU-00000000-0000-0000-0000-000000000000"
    name: str = "NVIDIA H100 80GB HBM3"
    mem_total: int = 85_520_809_984
    mem_used: int = 0
    util_gpu: int = 0
    temp_c: int = 35
    power_mw: int = 70_000
    power_limit_mw: int = 700_000
    ecc_uncorrected: int = 0
    clock_reasons: int = 0
    compute: list[tuple[int, int | None]] = field(default_factory=list)
    graphics: list[tuple[int, int | None]] = field(default_factory=list)
    unsupported: set[str] = field(default_factory=set)  # functions raising NVMLError_NotSupported
    no_permission: set[str] = field(default_factory=set)  # functions raising NVMLError_NoPermission
    failing: set[str] = field(default_factory=set)  # functions raising NVMLError_Unknown
    lost: bool = False
    xid_supported: bool = True


@dataclass(frozen=True)
class _Handle:
    index: int


class FakeNvml:
    """The fake module: construct with devices, hand to open_nvml / open_gpu_source(nvml_module=…)."""

    def __init__(
        self,
        devices: list[FakeDevice],
        *,
        init_error: BaseException | None = None,
        absent: set[str] | frozenset[str] = frozenset(),
        not_found: set[str] | frozenset[str] = frozenset(),
        mismatch: set[str] | frozenset[str] = frozenset(),
    ) -> None:
        self.devices = devices
        self.init_error = init_error
        self.absent = set(absent)  # names this "pynvml" does not define at all
        self.not_found = set(not_found)  # functions whose C symbol the "driver" lacks
        self.mismatch = set(mismatch)  # unversioned wrappers raising NVMLLibraryMismatchError
        self.initialised = False
        self.shutdowns = 0
        self.calls: list[str] = []
        self.waits: list[int] = []
        self.event_sets: list[object] = []
        self.freed: list[object] = []
        self.registered: set[int] = set()
        self._events: deque[tuple[int, int, int]] = deque()
        for name, value in _EXPORTED.items():
            setattr(self, name, value)

    def __getattribute__(self, name: str) -> Any:
        if name.startswith(("nvml", "NVML")) and name in object.__getattribute__(self, "absent"):
            raise AttributeError(name)
        return object.__getattribute__(self, name)

    # -- test controls ------------------------------------------------------------------------------
    def queue_xid(self, index: int, xid: int) -> None:
        """A critical Xid on GPU ``index`` (delivered only if that GPU was registered)."""
        self._events.append((index, nvmlEventTypeXidCriticalError, xid))

    def queue_event(self, index: int, event_type: int, data: int) -> None:
        self._events.append((index, event_type, data))

    # -- plumbing -----------------------------------------------------------------------------------
    def _enter(self, fn: str) -> None:
        self.calls.append(fn)
        if not self.initialised:
            raise NVMLError_Uninitialized()
        if fn in self.not_found:
            raise NVMLError_FunctionNotFound()
        if fn in self.mismatch:
            raise NVMLLibraryMismatchError(f"Unversioned function called: {fn}")

    def _dev(self, fn: str, handle: _Handle) -> FakeDevice:
        self._enter(fn)
        dev = self.devices[handle.index]
        if dev.lost:
            raise NVMLError_GpuIsLost()
        if fn in dev.unsupported:
            raise NVMLError_NotSupported()
        if fn in dev.no_permission:
            raise NVMLError_NoPermission()
        if fn in dev.failing:
            raise NVMLError_Unknown()
        return dev

    # -- the pynvml API used by agents/gpu/nvml.py ---------------------------------------------------
    def nvmlInit(self) -> None:
        self.calls.append("nvmlInit")
        if self.init_error is not None:
            raise self.init_error
        self.initialised = True

    def nvmlShutdown(self) -> None:
        self._enter("nvmlShutdown")
        self.shutdowns += 1
        self.initialised = False

    def nvmlDeviceGetCount(self) -> int:
        self._enter("nvmlDeviceGetCount")
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> _Handle:
        handle = _Handle(index)
        self._dev("nvmlDeviceGetHandleByIndex", handle)
        return handle

    def nvmlDeviceGetIndex(self, handle: _Handle) -> int:
        self._enter("nvmlDeviceGetIndex")
        return handle.index

    def nvmlDeviceGetUUID(self, handle: _Handle) -> str:
        return self._dev("nvmlDeviceGetUUID", handle).uuid

    def nvmlDeviceGetName(self, handle: _Handle) -> str:
        return self._dev("nvmlDeviceGetName", handle).name

    def nvmlDeviceGetMemoryInfo(self, handle: _Handle, version: Any = None) -> SimpleNamespace:
        d = self._dev("nvmlDeviceGetMemoryInfo", handle)
        return SimpleNamespace(total=d.mem_total, free=d.mem_total - d.mem_used, used=d.mem_used)

    def nvmlDeviceGetUtilizationRates(self, handle: _Handle) -> SimpleNamespace:
        return SimpleNamespace(gpu=self._dev("nvmlDeviceGetUtilizationRates", handle).util_gpu, memory=0)

    def nvmlDeviceGetTemperatureV(self, handle: _Handle, sensor: int, version: int = 0x100000C) -> int:
        assert sensor == NVML_TEMPERATURE_GPU
        return self._dev("nvmlDeviceGetTemperatureV", handle).temp_c

    def nvmlDeviceGetTemperature(self, handle: _Handle, sensor: int) -> int:
        assert sensor == NVML_TEMPERATURE_GPU
        return self._dev("nvmlDeviceGetTemperature", handle).temp_c

    def nvmlDeviceGetPowerUsage(self, handle: _Handle) -> int:
        return self._dev("nvmlDeviceGetPowerUsage", handle).power_mw

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: _Handle) -> int:
        return self._dev("nvmlDeviceGetEnforcedPowerLimit", handle).power_limit_mw

    def nvmlDeviceGetTotalEccErrors(self, handle: _Handle, error_type: int, counter_type: int) -> int:
        assert (error_type, counter_type) == (NVML_MEMORY_ERROR_TYPE_UNCORRECTED, NVML_VOLATILE_ECC)
        return self._dev("nvmlDeviceGetTotalEccErrors", handle).ecc_uncorrected

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: _Handle) -> int:
        return self._dev("nvmlDeviceGetCurrentClocksEventReasons", handle).clock_reasons

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle: _Handle) -> int:
        return self._dev("nvmlDeviceGetCurrentClocksThrottleReasons", handle).clock_reasons

    def _procs(self, fn: str, handle: _Handle, kind: str) -> list[SimpleNamespace]:
        dev = self._dev(fn, handle)
        return [
            SimpleNamespace(
                pid=pid, usedGpuMemory=mem, gpuInstanceId=0xFFFFFFFF, computeInstanceId=0xFFFFFFFF
            )
            for pid, mem in getattr(dev, kind)
        ]

    def nvmlDeviceGetComputeRunningProcesses(self, handle: _Handle) -> list[SimpleNamespace]:
        return self._procs("nvmlDeviceGetComputeRunningProcesses", handle, "compute")

    def nvmlDeviceGetComputeRunningProcesses_v2(self, handle: _Handle) -> list[SimpleNamespace]:
        return self._procs("nvmlDeviceGetComputeRunningProcesses_v2", handle, "compute")

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: _Handle) -> list[SimpleNamespace]:
        return self._procs("nvmlDeviceGetGraphicsRunningProcesses", handle, "graphics")

    def nvmlDeviceGetGraphicsRunningProcesses_v2(self, handle: _Handle) -> list[SimpleNamespace]:
        return self._procs("nvmlDeviceGetGraphicsRunningProcesses_v2", handle, "graphics")

    def nvmlDeviceGetSupportedEventTypes(self, handle: _Handle) -> int:
        dev = self._dev("nvmlDeviceGetSupportedEventTypes", handle)
        return nvmlEventTypeSingleBitEccError | (nvmlEventTypeXidCriticalError if dev.xid_supported else 0)

    def nvmlEventSetCreate(self) -> object:
        self._enter("nvmlEventSetCreate")
        event_set = object()
        self.event_sets.append(event_set)
        return event_set

    def nvmlDeviceRegisterEvents(self, handle: _Handle, event_types: int, event_set: object) -> None:
        dev = self._dev("nvmlDeviceRegisterEvents", handle)
        assert event_set in self.event_sets
        if event_types & nvmlEventTypeXidCriticalError and not dev.xid_supported:
            raise NVMLError_NotSupported()
        self.registered.add(handle.index)

    def nvmlEventSetWait(self, event_set: object, timeoutms: int) -> SimpleNamespace:
        self._enter("nvmlEventSetWait")
        self.waits.append(timeoutms)
        while self._events:
            index, event_type, data = self._events.popleft()
            if index in self.registered:
                return SimpleNamespace(
                    device=_Handle(index),
                    eventType=event_type,
                    eventData=data,
                    gpuInstanceId=0xFFFFFFFF,
                    computeInstanceId=0xFFFFFFFF,
                )
        raise NVMLError_Timeout()

    def nvmlEventSetFree(self, event_set: object) -> None:
        self._enter("nvmlEventSetFree")
        self.freed.append(event_set)
