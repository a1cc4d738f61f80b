"""The NVML source, driven through a fake pynvml at the one NVML boundary (no GPU on this machine)."""

from __future__ import annotations

import ctypes
import importlib.util
import logging
import re
import sys
from pathlib import Path

import pynvml
import pytest

from agents.gpu import open_gpu_source
from agents.gpu.base import GpuProcessReading, GpuSource
from agents.gpu.nvml import (
    _LOST_ERRORS,
    _QUIET_ERRORS,
    THROTTLE_BITS,
    NvmlGpuSource,
    NvmlUnavailable,
    decode_throttle,
    open_nvml,
)
from agents.gpu.unavailable import UnavailableGpuSource


def _load_fake():
    path = Path(__file__).resolve().parents[2] / "support" / "fake_pynvml.py"
    spec = importlib.util.spec_from_file_location("llmconsole_tests_fake_pynvml", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


fake = _load_fake()
FakeDevice, FakeNvml = fake.FakeDevice, fake.FakeNvml
NVML_SRC = Path(__file__).parents[3] / "agents" / "gpu" / "nvml.py"


def _two_gpus() -> list:
    return [
        FakeDevice(
            uuid="GPU-aaaa",
            name="NVIDIA H100 80GB HBM3",
            mem_used=10 * 2**30,
            util_gpu=87,
            temp_c=71,
            power_mw=412_345,
            power_limit_mw=700_000,
            ecc_uncorrected=2,
            compute=[(1001, 6 * 2**30), (1002, 4 * 2**30)],
        ),
        FakeDevice(uuid="GPU-bbbb", name="NVIDIA H100 80GB HBM3", mem_used=0, util_gpu=0, temp_c=30),
    ]


@pytest.fixture
def source_of():
    opened: list[NvmlGpuSource] = []

    def make(nvml) -> NvmlGpuSource:
        src = open_nvml(nvml)
        opened.append(src)
        return src

    yield make
    for src in opened:
        src.close()


# -- mapping and units ------------------------------------------------------------------------------


def test_readings_carry_nvml_values_in_schema_units(source_of) -> None:
    src = source_of(FakeNvml(_two_gpus()))
    assert isinstance(src, GpuSource)
    poll = src.poll()
    assert poll.source_label == "nvml" and poll.errors == ()
    g0, g1 = poll.gpus
    assert (g0.index, g0.uuid, g0.name) == (0, "GPU-aaaa", "NVIDIA H100 80GB HBM3")
    assert g0.mem_used_bytes == 10 * 2**30 and g0.mem_total_bytes == 85_520_809_984
    assert g0.util_pct == 87.0 and g0.temp_c == 71.0
    assert g0.power_w == pytest.approx(412.345) and g0.power_limit_w == pytest.approx(700.0)
    assert g0.ecc_uncorrected == 2
    assert g0.throttle_reasons == ()
    assert g0.processes == (GpuProcessReading(1001, 6 * 2**30), GpuProcessReading(1002, 4 * 2**30))
    assert g0.xid_last is None and g0.xid_count == 0  # watching for Xid, none seen
    assert (g1.index, g1.uuid, g1.mem_used_bytes, g1.util_pct, g1.processes) == (1, "GPU-bbbb", 0, 0.0, ())


def test_values_follow_the_device_between_polls(source_of) -> None:
    nvml = FakeNvml(_two_gpus())
    src = source_of(nvml)
    nvml.devices[1].mem_used, nvml.devices[1].power_mw = 5_000_000, 123_000
    nvml.devices[1].compute = [(42, 5_000_000)]
    g1 = src.poll().gpus[1]
    assert g1.mem_used_bytes == 5_000_000 and g1.power_w == pytest.approx(123.0)
    assert g1.processes == (GpuProcessReading(42, 5_000_000),)
    assert src.pids_on_gpus() == {42, 1001, 1002}


def test_unsupported_functions_are_none_never_zero(source_of) -> None:
    dev = FakeDevice(
        unsupported={
            "nvmlDeviceGetPowerUsage",
            "nvmlDeviceGetTotalEccErrors",
            "nvmlDeviceGetTemperatureV",
            "nvmlDeviceGetTemperature",
            "nvmlDeviceGetCurrentClocksEventReasons",
            "nvmlDeviceGetCurrentClocksThrottleReasons",
            "nvmlDeviceGetComputeRunningProcesses",
            "nvmlDeviceGetComputeRunningProcesses_v2",
            "nvmlDeviceGetGraphicsRunningProcesses",
            "nvmlDeviceGetGraphicsRunningProcesses_v2",
        },
        no_permission={"nvmlDeviceGetEnforcedPowerLimit", "nvmlDeviceGetUtilizationRates"},
        mem_used=7,
    )
    poll = source_of(FakeNvml([dev])).poll()
    g = poll.gpus[0]
    assert g.mem_used_bytes == 7  # what is supported still comes through
    for name in (
        "power_w",
        "power_limit_w",
        "util_pct",
        "temp_c",
        "ecc_uncorrected",
        "throttle_reasons",
        "processes",
    ):
        assert getattr(g, name) is None, name
    assert poll.errors == ()  # "not supported" is a property of the GPU, not a collection failure


def test_unexpected_nvml_error_is_none_and_reported(source_of) -> None:
    dev = FakeDevice(failing={"nvmlDeviceGetMemoryInfo"}, util_gpu=55)
    poll = source_of(FakeNvml([dev])).poll()
    assert poll.gpus[0].mem_used_bytes is None and poll.gpus[0].mem_total_bytes is None
    assert poll.gpus[0].util_pct == 55.0
    assert poll.errors == ("gpu 0: nvmlDeviceGetMemoryInfo: Unknown Error",)


def test_each_distinct_failure_is_logged_once(source_of, caplog) -> None:
    caplog.set_level(logging.INFO, logger="agents.gpu.nvml")
    src = source_of(
        FakeNvml([FakeDevice(unsupported={"nvmlDeviceGetPowerUsage"}, failing={"nvmlDeviceGetName"})])
    )
    polls = [src.poll() for _ in range(3)]
    power = [r for r in caplog.records if "nvmlDeviceGetPowerUsage" in r.getMessage()]
    name = [r for r in caplog.records if "nvmlDeviceGetName" in r.getMessage()]
    assert [r.levelno for r in power] == [logging.INFO]  # unsupported: a fact, said once
    assert [r.levelno for r in name] == [logging.WARNING]  # a failure: a warning, said once
    assert all(
        p.errors == ("gpu 0: nvmlDeviceGetName: Unknown Error",) for p in polls
    )  # but every poll says it


# -- fallbacks to older APIs ------------------------------------------------------------------------


def test_throttle_falls_back_to_the_deprecated_api_when_the_driver_lacks_the_new_one(source_of) -> None:
    nvml = FakeNvml(
        [FakeDevice(clock_reasons=pynvml.nvmlClocksThrottleReasonSwPowerCap)],
        not_found={"nvmlDeviceGetCurrentClocksEventReasons"},
    )
    assert source_of(nvml).poll().gpus[0].throttle_reasons == ("sw_power_cap",)
    assert "nvmlDeviceGetCurrentClocksThrottleReasons" in nvml.calls


def test_old_pynvml_without_new_functions_still_reads(source_of) -> None:
    nvml = FakeNvml(
        [FakeDevice(temp_c=64, clock_reasons=pynvml.nvmlClocksThrottleReasonHwSlowdown)],
        absent={"nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetTemperatureV"},
    )
    g = source_of(nvml).poll().gpus[0]
    assert g.temp_c == 64.0 and g.throttle_reasons == ("hw_slowdown",)


def test_process_listing_falls_back_to_v2_on_library_mismatch(source_of) -> None:
    nvml = FakeNvml(
        [FakeDevice(compute=[(77, 1234)])],
        mismatch={"nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"},
    )
    poll = source_of(nvml).poll()
    assert poll.gpus[0].processes == (GpuProcessReading(77, 1234),) and poll.errors == ()
    assert "nvmlDeviceGetComputeRunningProcesses_v2" in nvml.calls


# -- throttle decoding ------------------------------------------------------------------------------


def test_throttle_bits_match_real_pynvml_constants() -> None:
    for bit, name in THROTTLE_BITS:
        camel = "".join(part.capitalize() for part in name.split("_"))
        assert getattr(pynvml, "nvmlClocksThrottleReason" + camel) == bit, name
        if hasattr(pynvml, "nvmlClocksEventReason" + camel):
            assert getattr(pynvml, "nvmlClocksEventReason" + camel) == bit, name
    assert pynvml.nvmlClocksEventReasonGpuIdle == 0x1


def test_decode_throttle_names_active_reasons_and_ignores_idle() -> None:
    mask = (
        pynvml.nvmlClocksEventReasonGpuIdle
        | pynvml.nvmlClocksEventReasonHwThermalSlowdown
        | pynvml.nvmlClocksEventReasonSwThermalSlowdown
        | pynvml.nvmlClocksEventReasonHwPowerBrakeSlowdown
    )
    assert decode_throttle(mask) == ("sw_thermal_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown")
    assert decode_throttle(pynvml.nvmlClocksEventReasonGpuIdle) == ()
    assert decode_throttle(0) == ()
    assert decode_throttle(pynvml.nvmlClocksEventReasonSyncBoost | 1 << 20) == (
        "sync_boost",
        "unknown_0x100000",
    )
    everything = decode_throttle(pynvml.nvmlClocksThrottleReasonAll)
    assert set(everything) == {name for _, name in THROTTLE_BITS}


def test_throttle_reasons_reach_the_reading(source_of) -> None:
    dev = FakeDevice(
        clock_reasons=pynvml.nvmlClocksEventReasonHwSlowdown
        | pynvml.nvmlClocksEventReasonSwPowerCap
        | pynvml.nvmlClocksEventReasonApplicationsClocksSetting
        | pynvml.nvmlClocksEventReasonDisplayClockSetting
    )
    reasons = source_of(FakeNvml([dev])).poll().gpus[0].throttle_reasons
    assert reasons == ("applications_clocks_setting", "sw_power_cap", "hw_slowdown", "display_clock_setting")


# -- processes --------------------------------------------------------------------------------------


def test_processes_merge_compute_and_graphics_and_keep_unknown_memory(source_of) -> None:
    dev = FakeDevice(
        compute=[(10, 4000), (11, None), (12, 100), (12, 50)],  # 12 twice: two MIG instances → sum
        graphics=[(10, 4000), (13, 64), (11, 900)],  # 10 in both lists: same memory → not doubled
    )
    nvml = FakeNvml([dev])
    src = source_of(nvml)
    assert src.poll().gpus[0].processes == (
        GpuProcessReading(10, 4000),
        GpuProcessReading(11, 900),  # the graphics entry knows what the compute entry could not
        GpuProcessReading(12, 150),
        GpuProcessReading(13, 64),
    )
    nvml.devices[0].compute, nvml.devices[0].graphics = [(20, None)], []
    assert src.poll().gpus[0].processes == (GpuProcessReading(20, None),)
    assert src.pids_on_gpus() == {20}


# -- Xid events -------------------------------------------------------------------------------------


def test_xid_events_are_drained_without_waiting_and_kept_per_gpu(source_of) -> None:
    nvml = FakeNvml(_two_gpus())
    src = source_of(nvml)
    nvml.queue_xid(1, 31)
    nvml.queue_xid(1, 79)
    nvml.queue_event(0, fake.nvmlEventTypeSingleBitEccError, 5)  # not an Xid: ignored
    poll = src.poll()
    assert [(g.xid_last, g.xid_count) for g in poll.gpus] == [(None, 0), (79, 2)]
    assert nvml.waits and set(nvml.waits) == {0}
    assert [(g.xid_last, g.xid_count) for g in src.poll().gpus] == [(None, 0), (79, 2)]  # sticky
    nvml.queue_xid(1, 79)  # the same Xid again is still a new event
    assert src.poll().gpus[1].xid_count == 3
    assert len(nvml.event_sets) == 1 and nvml.registered == {0, 1}  # registered once


def test_gpus_without_xid_support_are_skipped_and_say_so(source_of) -> None:
    devices = _two_gpus()
    devices[0].xid_supported = False
    nvml = FakeNvml(devices)
    src = source_of(nvml)
    nvml.queue_xid(1, 48)
    g0, g1 = src.poll().gpus
    assert nvml.registered == {1}
    assert (g0.xid_last, g0.xid_count) == (None, None)  # cannot report, not "none seen"
    assert (g1.xid_last, g1.xid_count) == (48, 1)


def test_no_event_set_when_no_gpu_supports_xid(source_of) -> None:
    devices = [FakeDevice(xid_supported=False)]
    nvml = FakeNvml(devices)
    src = source_of(nvml)
    assert nvml.freed == nvml.event_sets  # the empty set was given back
    src.poll()
    assert nvml.waits == []


# -- a lost GPU -------------------------------------------------------------------------------------


def test_a_lost_gpu_blanks_only_itself(source_of) -> None:
    nvml = FakeNvml(_two_gpus())
    src = source_of(nvml)
    nvml.queue_xid(0, 79)
    src.poll()
    nvml.devices[0].lost = True
    poll = src.poll()
    g0, g1 = poll.gpus
    assert poll.source_label == "nvml"
    assert (g0.index, g0.uuid, g0.xid_last) == (0, "GPU-aaaa", 79)  # identity and its last Xid remain
    assert g0.mem_used_bytes is None and g0.util_pct is None and g0.processes is None
    assert g1.mem_total_bytes == 85_520_809_984 and g1.temp_c == 30.0
    assert poll.errors == ("gpu 0: GPU is lost",)
    assert src.pids_on_gpus() == set()  # GPU 1 holds nothing; GPU 0 cannot say


def test_a_gpu_lost_before_start_is_listed_blank_and_recovers(source_of) -> None:
    devices = _two_gpus()
    devices[1].lost = True
    nvml = FakeNvml(devices)
    src = source_of(nvml)
    poll = src.poll()
    assert [g.index for g in poll.gpus] == [0, 1]
    assert poll.gpus[1].uuid is None and poll.gpus[1].mem_used_bytes is None
    assert poll.gpus[0].mem_used_bytes == 10 * 2**30
    assert poll.errors == ("gpu 1: GPU is lost",)
    nvml.devices[1].lost = False
    poll = src.poll()
    assert poll.gpus[1].uuid == "GPU-bbbb" and poll.gpus[1].mem_used_bytes == 0 and poll.errors == ()


def test_an_unexpected_exception_on_one_gpu_does_not_blank_the_others(source_of) -> None:
    nvml = FakeNvml(_two_gpus())
    src = source_of(nvml)

    def broken(handle):
        if handle.index == 0:
            raise RuntimeError("ctypes went sideways")
        return FakeNvml.nvmlDeviceGetUtilizationRates(nvml, handle)

    nvml.nvmlDeviceGetUtilizationRates = broken
    poll = src.poll()
    assert poll.gpus[0].util_pct is None and poll.gpus[0].mem_used_bytes == 10 * 2**30
    assert poll.gpus[1].util_pct == 0.0
    assert poll.errors == ("gpu 0: nvmlDeviceGetUtilizationRates: ctypes went sideways",)


def test_a_malformed_answer_blanks_only_its_gpu(source_of) -> None:
    nvml = FakeNvml(_two_gpus())
    src = source_of(nvml)

    def odd_memory(handle):
        if handle.index == 0:
            return object()  # no .used / .total
        return FakeNvml.nvmlDeviceGetMemoryInfo(nvml, handle)

    nvml.nvmlDeviceGetMemoryInfo = odd_memory
    poll = src.poll()
    assert poll.gpus[0].mem_used_bytes is None and poll.gpus[0].uuid == "GPU-aaaa"
    assert poll.gpus[1].mem_used_bytes == 0
    assert len(poll.errors) == 1 and poll.errors[0].startswith("gpu 0: unexpected AttributeError")


# -- opening and closing ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (fake.NVMLError_LibraryNotFound(), "NVML library not found (libnvidia-ml.so.1)"),
        (fake.NVMLError_DriverNotLoaded(), "no NVIDIA driver"),
        (fake.NVMLError_NoPermission(), "no permission to use NVML"),
        (fake.NVMLError_Unknown(), "NVML init failed: Unknown Error"),
        (OSError("weird loader failure"), "NVML init failed: weird loader failure"),
    ],
)
def test_init_failure_gives_an_unavailable_source_with_the_reason(error, reason) -> None:
    src = open_gpu_source("nvml", nvml_module=FakeNvml(_two_gpus(), init_error=error))
    assert isinstance(src, UnavailableGpuSource)
    poll = src.poll()
    assert poll.source_label == f"unavailable: {reason}"
    assert poll.gpus == () and src.pids_on_gpus() == set()
    src.close()


def test_no_gpus_is_unavailable_and_nvml_is_shut_down() -> None:
    nvml = FakeNvml([])
    src = open_gpu_source("nvml", nvml_module=nvml)
    assert src.poll().source_label == "unavailable: NVML reports no GPUs"
    assert nvml.shutdowns == 1


def test_open_nvml_raises_unavailable_directly() -> None:
    with pytest.raises(NvmlUnavailable, match="no NVIDIA driver"):
        open_nvml(FakeNvml([], init_error=fake.NVMLError_DriverNotLoaded()))


def test_close_frees_events_shuts_down_once_and_poll_after_close_is_honest() -> None:
    nvml = FakeNvml(_two_gpus())
    src = open_gpu_source("nvml", nvml_module=nvml)
    src.close()
    src.close()
    assert nvml.shutdowns == 1 and nvml.freed == nvml.event_sets
    assert src.poll().source_label.startswith("unavailable: ")
    assert src.pids_on_gpus() == set()


def test_factory_none_and_unknown_kinds() -> None:
    assert open_gpu_source("none").poll().source_label == "unavailable: disabled in config"
    assert open_gpu_source("cuda").poll().source_label.startswith("unavailable: unknown gpu_source 'cuda'")  # type: ignore[arg-type]


# -- fidelity of the fake and of the names used, against the real nvidia-ml-py -----------------------


def test_every_nvml_name_the_source_uses_exists_in_real_pynvml() -> None:
    used = set(re.findall(r'"(nvml[A-Za-z0-9_]+)"', NVML_SRC.read_text()))
    assert "nvmlEventSetWait" in used and "nvmlDeviceGetMemoryInfo" in used
    assert sorted(n for n in used if not hasattr(pynvml, n)) == []
    for name in (
        *_QUIET_ERRORS,
        *_LOST_ERRORS,
        "NVMLError",
        "NVMLError_Timeout",
        "NVMLError_LibraryNotFound",
        "NVMLError_DriverNotLoaded",
    ):
        assert isinstance(getattr(pynvml, name), type), name


def test_the_fake_mirrors_real_pynvml_names_and_constants() -> None:
    nvml = FakeNvml([])
    names = [n for n in dir(nvml) if n.startswith(("nvml", "NVML"))]
    assert len(names) > 30
    for name in names:
        assert hasattr(pynvml, name), name
        value = getattr(nvml, name)
        if isinstance(value, int):
            assert getattr(pynvml, name) == value, name
        elif isinstance(value, type) and issubclass(value, fake.NVMLError) and value is not fake.NVMLError:
            assert str(value()) == str(getattr(pynvml, name)()), name


# -- the real pynvml on this machine ----------------------------------------------------------------


def _libnvml_loadable() -> bool:
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return False
    return True


def test_real_pynvml_here_is_unavailable_with_a_reason_not_a_crash() -> None:
    src = open_gpu_source("nvml")
    try:
        label = src.poll().source_label
        if _libnvml_loadable():
            assert label == "nvml" or (
                label.startswith("unavailable: ") and len(label) > len("unavailable: ")
            )
        else:
            assert label == "unavailable: NVML library not found (libnvidia-ml.so.1)"
            assert src.pids_on_gpus() == set()
    finally:
        src.close()
