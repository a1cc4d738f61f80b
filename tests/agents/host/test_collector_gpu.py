"""One conversion from a GPU source's reading to the wire's GpuInfo (agents/collector.py gpu_info)."""

from __future__ import annotations

from dataclasses import fields

from agents.collector import gpu_info
from agents.gpu.base import GpuProcessReading, GpuReading
from agents.schema import GpuInfo, GpuProcess


def test_every_wire_field_comes_from_the_reading() -> None:
    """A wire field the reading lacks would fail here, not silently read as its default."""
    reading = {f.name for f in fields(GpuReading)}
    assert {f.name for f in fields(GpuInfo)} <= reading


def test_values_are_carried_and_processes_get_their_engine() -> None:
    g = GpuReading(
        index=3,
        uuid="GPU-x",
        name="H100",
        mem_used_bytes=10,
        mem_total_bytes=80,
        util_pct=55.5,
        temp_c=61.0,
        power_w=300.5,
        power_limit_w=700.0,
        ecc_uncorrected=2,
        xid_last=79,
        throttle_reasons=("sw_thermal",),
        processes=(GpuProcessReading(100, 7), GpuProcessReading(200, None)),
        xid_count=4,
    )
    info = gpu_info(g, {100: "e1"})
    assert info == GpuInfo(
        index=3,
        uuid="GPU-x",
        name="H100",
        mem_used_bytes=10,
        mem_total_bytes=80,
        util_pct=55.5,
        temp_c=61.0,
        power_w=300.5,
        power_limit_w=700.0,
        ecc_uncorrected=2,
        xid_last=79,
        throttle_reasons=("sw_thermal",),
        processes=(GpuProcess(pid=100, mem_bytes=7, engine_id="e1"), GpuProcess(pid=200, mem_bytes=None)),
    )


def test_unknown_lists_and_values_stay_empty_and_none() -> None:
    info = gpu_info(GpuReading(index=0), {})
    assert info == GpuInfo(index=0)
    assert info.throttle_reasons == () and info.processes == () and info.util_pct is None
