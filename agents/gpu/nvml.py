"""The real GPU source: NVML through nvidia-ml-py (``pynvml``).

Every NVML call goes through one choke point, ``NvmlGpuSource._q``: a function the GPU or driver does
not support (or forbids) yields None, a lost GPU blanks only itself, and each distinct failure is
logged once. Critical Xid events come from one NVML event set drained without waiting on each poll.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from agents.gpu.base import NVML_LABEL, GpuPoll, GpuProcessReading, GpuReading, unavailable_label

_log = logging.getLogger(__name__)

# Clock-event ("throttle") reason bits, identical in nvmlClocksEventReason* and
# nvmlClocksThrottleReason* (nvidia-ml-py 13.615). GPU idle (0x1) is not a problem and is dropped.
GPU_IDLE_BIT = 0x1
THROTTLE_BITS: tuple[tuple[int, str], ...] = (
    (0x2, "applications_clocks_setting"),
    (0x4, "sw_power_cap"),
    (0x8, "hw_slowdown"),
    (0x10, "sync_boost"),
    (0x20, "sw_thermal_slowdown"),
    (0x40, "hw_thermal_slowdown"),
    (0x80, "hw_power_brake_slowdown"),
    (0x100, "display_clock_setting"),
    (0x200, "board_limit"),
    (0x400, "reliability"),
)
_KNOWN_BITS = GPU_IDLE_BIT | sum(bit for bit, _ in THROTTLE_BITS)

# Failures that mean "this GPU/driver cannot tell": the value is None, logged once, not an error.
_QUIET_ERRORS = (
    "NVMLError_NotSupported",
    "NVMLError_FunctionNotFound",
    "NVMLError_NoPermission",
    "NVMLLibraryMismatchError",  # unversioned wrapper whose versioned C function the driver lacks
)
# Failures that mean the GPU itself is gone: that GPU's reading is blank, the others go on.
_LOST_ERRORS = ("NVMLError_GpuIsLost", "NVMLError_GpuNotFound", "NVMLError_ResetRequired")
_MAX_EVENTS_PER_POLL = 256
_MISSING = object()


class NvmlUnavailable(Exception):
    """NVML cannot be used on this machine; ``str()`` is the reason shown to the operator."""


class _GpuLost(Exception):
    """Raised by the choke point when the GPU being read is lost."""


def decode_throttle(mask: int) -> tuple[str, ...]:
    """Names of the active clock-event reasons in ``mask``; unknown bits as ``unknown_0x…``."""
    names = [name for bit, name in THROTTLE_BITS if mask & bit]
    rest = mask & ~_KNOWN_BITS
    names += [f"unknown_0x{1 << i:x}" for i in range(rest.bit_length()) if rest >> i & 1]
    return tuple(names)


def merge_processes(lists: Iterable[Iterable[Any] | None]) -> tuple[GpuProcessReading, ...]:
    """Merge NVML process lists (compute, graphics) into one entry per PID, sorted by PID.

    Within one list, entries of the same PID (one per MIG instance) add up; across lists (a process
    with both a compute and a graphics context) they describe the same memory, so the larger wins.
    ``usedGpuMemory`` None (not available) stays None unless another entry knows the amount.
    """
    merged: dict[int, int | None] = {}
    for entries in lists:
        per_list: dict[int, int | None] = {}
        for entry in entries or ():
            pid, mem = int(entry.pid), entry.usedGpuMemory
            prev = per_list.get(pid)
            per_list[pid] = mem if prev is None else (prev if mem is None else prev + int(mem))
        for pid, mem in per_list.items():
            prev = merged.get(pid)
            merged[pid] = mem if prev is None else (prev if mem is None else max(prev, int(mem)))
    return tuple(GpuProcessReading(pid, None if m is None else int(m)) for pid, m in sorted(merged.items()))


def _err_text(err: BaseException) -> str:
    try:
        text = str(err)
    except Exception:  # pynvml's __str__ may itself call into a missing library
        text = ""
    return text or type(err).__name__


def _classes(nvml: Any, names: Sequence[str]) -> tuple[type[BaseException], ...]:
    return tuple(c for c in (getattr(nvml, n, None) for n in names) if isinstance(c, type))


def init_failure_reason(nvml: Any, err: BaseException) -> str:
    """The operator-facing reason why ``nvmlInit`` failed."""
    if isinstance(err, _classes(nvml, ("NVMLError_LibraryNotFound",))):
        return "NVML library not found (libnvidia-ml.so.1)"
    if isinstance(err, _classes(nvml, ("NVMLError_DriverNotLoaded",))):
        return "no NVIDIA driver"
    if isinstance(err, _classes(nvml, ("NVMLError_NoPermission",))):
        return "no permission to use NVML"
    return f"NVML init failed: {_err_text(err)}"


@dataclass(slots=True)
class _Device:
    """What the source remembers about one GPU between polls."""

    index: int
    handle: Any = None
    uuid: str | None = None
    name: str | None = None
    xid_last: int | None = None
    xid_count: int | None = None  # None: Xid events could not be registered for this GPU


class NvmlGpuSource:
    """GpuSource over an initialised NVML module (the real ``pynvml`` or a test double)."""

    def __init__(self, nvml: Any) -> None:
        """Take over an NVML module on which ``nvmlInit()`` already succeeded."""
        self._nvml = nvml
        self._quiet = _classes(nvml, _QUIET_ERRORS)
        self._lost = _classes(nvml, _LOST_ERRORS)
        self._timeout = _classes(nvml, ("NVMLError_Timeout",))  # nvmlEventSetWait(…, 0): no event
        self._logged: set[tuple[str, str]] = set()
        self._errors: list[str] = []
        self._lock = threading.Lock()
        self._closed = False
        count = self._q("nvmlDeviceGetCount", default=_MISSING)
        if count is _MISSING:
            raise NvmlUnavailable("; ".join(["NVML cannot count GPUs", *self._errors]))
        if not count:
            raise NvmlUnavailable("NVML reports no GPUs")
        self._devices = [_Device(i) for i in range(int(count))]
        for dev in self._devices:
            self._attach(dev)
        self._event_set = self._register_xid_events()
        self._errors.clear()

    # -- the choke point ---------------------------------------------------------------------------
    def _q(self, fn: str, *args: Any, where: str = "", default: Any = None) -> Any:
        """Call NVML function ``fn``; unsupported or failed → ``default``, a lost GPU → _GpuLost."""
        func = getattr(self._nvml, fn, None)
        if func is None:
            self._log_once(fn, "absent from this pynvml", quiet=True)
            return default
        try:
            return func(*args)
        except self._lost as err:
            self._log_once(fn, _err_text(err), quiet=False)
            raise _GpuLost(_err_text(err)) from err
        except self._timeout:
            return default
        except self._quiet as err:
            self._log_once(fn, _err_text(err), quiet=True)
            return default
        except Exception as err:  # any other NVML (or ctypes) failure: unknown value, reported
            self._log_once(fn, _err_text(err), quiet=False)
            self._errors.append(f"{where + ': ' if where else ''}{fn}: {_err_text(err)}")
            return default

    def _first(self, q: Any, fns: Sequence[str], *args: Any) -> Any:
        """The first of ``fns`` (newest API first) that yields a value."""
        for fn in fns:
            value = q(fn, *args)
            if value is not None:
                return value
        return None

    def _log_once(self, fn: str, what: str, *, quiet: bool) -> None:
        if (fn, what) in self._logged:
            return
        self._logged.add((fn, what))
        _log.log(logging.INFO if quiet else logging.WARNING, "NVML %s: %s (reported as unknown)", fn, what)

    # -- set-up ------------------------------------------------------------------------------------
    def _attach(self, dev: _Device) -> None:
        """Get the handle and identity of a GPU (again, if it was lost); errors go to self._errors."""
        where = f"gpu {dev.index}"
        try:
            if dev.handle is None:
                dev.handle = self._q("nvmlDeviceGetHandleByIndex", dev.index, where=where)
            if dev.handle is not None:
                dev.uuid = dev.uuid or self._q("nvmlDeviceGetUUID", dev.handle, where=where)
                dev.name = dev.name or self._q("nvmlDeviceGetName", dev.handle, where=where)
        except _GpuLost as err:
            dev.handle = None
            self._errors.append(f"{where}: {err}")

    def _register_xid_events(self) -> Any:
        """One event set with every GPU that supports critical-Xid events; None if none does."""
        xid = getattr(self._nvml, "nvmlEventTypeXidCriticalError", None)
        event_set = self._q("nvmlEventSetCreate") if xid is not None else None
        if event_set is None:
            return None
        for dev in self._devices:
            if dev.handle is None:
                continue
            try:
                supported = self._q("nvmlDeviceGetSupportedEventTypes", dev.handle)
                if supported is not None and not supported & xid:
                    continue
                done = self._q("nvmlDeviceRegisterEvents", dev.handle, xid, event_set, default=_MISSING)
            except _GpuLost:
                continue
            if done is not _MISSING:
                dev.xid_count = 0
        if all(dev.xid_count is None for dev in self._devices):
            self._q("nvmlEventSetFree", event_set)
            return None
        return event_set

    # -- polling -----------------------------------------------------------------------------------
    def poll(self) -> GpuPoll:
        """Drain Xid events, then read every GPU; a failing GPU never blanks the others."""
        with self._lock:
            if self._closed:
                return GpuPoll(unavailable_label("NVML source closed"))
            self._errors = []
            self._drain_xids()
            gpus = tuple(self._read_safely(dev) for dev in self._devices)
            return GpuPoll(NVML_LABEL, gpus, tuple(self._errors))

    def pids_on_gpus(self) -> set[int]:
        """Every PID NVML lists as holding memory on any GPU (lost GPUs cannot say)."""
        with self._lock:
            if self._closed:
                return set()
            pids: set[int] = set()
            for dev in self._devices:
                try:
                    procs = self._processes(partial(self._q, where=f"gpu {dev.index}"), dev.handle)
                except _GpuLost:
                    continue
                pids.update(p.pid for p in procs or ())
            return pids

    def close(self) -> None:
        """Free the event set and shut NVML down; safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                if self._event_set is not None:
                    self._q("nvmlEventSetFree", self._event_set)
                self._q("nvmlShutdown")
            except _GpuLost:
                pass

    def _drain_xids(self) -> None:
        if self._event_set is None:
            return
        xid = self._nvml.nvmlEventTypeXidCriticalError
        for _ in range(_MAX_EVENTS_PER_POLL):
            try:
                data = self._q("nvmlEventSetWait", self._event_set, 0, where="xid events")
                if data is None:
                    return
                if not data.eventType & xid:
                    continue
                index = self._q("nvmlDeviceGetIndex", data.device, where="xid events")
            except _GpuLost as err:
                self._errors.append(f"xid events: {err}")
                return
            self._record_xid(index, int(data.eventData))

    def _record_xid(self, index: int | None, xid: int) -> None:
        dev = self._devices[index] if index is not None and 0 <= index < len(self._devices) else None
        if dev is None:
            self._errors.append(f"xid events: Xid {xid} on a GPU NVML could not identify")
            return
        dev.xid_last = xid
        dev.xid_count = (dev.xid_count or 0) + 1

    def _read_safely(self, dev: _Device) -> GpuReading:
        where = f"gpu {dev.index}"
        try:
            if dev.handle is None or dev.uuid is None or dev.name is None:
                self._attach(dev)
            if dev.handle is None:
                return self._blank(dev)
            return self._read(dev, partial(self._q, where=where))
        except _GpuLost as err:
            self._errors.append(f"{where}: {err}")
        except Exception as err:  # a bug or an odd driver answer must not blank the other GPUs
            if (where, type(err).__name__) not in self._logged:
                self._logged.add((where, type(err).__name__))
                _log.exception("reading %s failed", where)
            self._errors.append(f"{where}: unexpected {type(err).__name__}: {err}")
        return self._blank(dev)

    def _blank(self, dev: _Device) -> GpuReading:
        return GpuReading(dev.index, dev.uuid, dev.name, xid_last=dev.xid_last, xid_count=dev.xid_count)

    def _read(self, dev: _Device, q: Any) -> GpuReading:
        nvml, h = self._nvml, dev.handle
        mem = q("nvmlDeviceGetMemoryInfo", h)
        util = q("nvmlDeviceGetUtilizationRates", h)
        temp = self._first(
            q, ("nvmlDeviceGetTemperatureV", "nvmlDeviceGetTemperature"), h, nvml.NVML_TEMPERATURE_GPU
        )
        power_mw = q("nvmlDeviceGetPowerUsage", h)
        limit_mw = q("nvmlDeviceGetEnforcedPowerLimit", h)
        ecc = q(
            "nvmlDeviceGetTotalEccErrors", h, nvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, nvml.NVML_VOLATILE_ECC
        )
        reasons = self._first(
            q, ("nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons"), h
        )
        return GpuReading(
            index=dev.index,
            uuid=dev.uuid,
            name=dev.name,
            mem_used_bytes=None if mem is None else int(mem.used),
            mem_total_bytes=None if mem is None else int(mem.total),
            util_pct=None if util is None else float(util.gpu),
            temp_c=None if temp is None else float(temp),
            power_w=None if power_mw is None else power_mw / 1000.0,
            power_limit_w=None if limit_mw is None else limit_mw / 1000.0,
            ecc_uncorrected=None if ecc is None else int(ecc),
            xid_last=dev.xid_last,
            throttle_reasons=None if reasons is None else decode_throttle(int(reasons)),
            processes=self._processes(q, h),
            xid_count=dev.xid_count,
        )

    def _processes(self, q: Any, handle: Any) -> tuple[GpuProcessReading, ...] | None:
        if handle is None:
            return None
        compute = self._first(
            q, ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetComputeRunningProcesses_v2"), handle
        )
        graphics = self._first(
            q, ("nvmlDeviceGetGraphicsRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses_v2"), handle
        )
        if compute is None and graphics is None:
            return None
        return merge_processes((compute, graphics))


def open_nvml(nvml: Any) -> NvmlGpuSource:
    """Initialise NVML on ``nvml`` (a pynvml-like module); NvmlUnavailable with the reason if it can't."""
    try:
        nvml.nvmlInit()
    except Exception as err:
        raise NvmlUnavailable(init_failure_reason(nvml, err)) from err
    try:
        return NvmlGpuSource(nvml)
    except NvmlUnavailable:
        _shutdown_quietly(nvml)
        raise
    except Exception as err:
        _shutdown_quietly(nvml)
        raise NvmlUnavailable(f"NVML set-up failed: {_err_text(err)}") from err


def _shutdown_quietly(nvml: Any) -> None:
    try:
        nvml.nvmlShutdown()
    except Exception as err:
        _log.info("nvmlShutdown after a failed set-up: %s", _err_text(err))
