"""The simulated GPU source over its ledger directory, with real processes dying under it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from agents.gpu import open_gpu_source
from agents.gpu.base import GpuProcessReading, GpuSource
from agents.gpu.simulated import GiB, SimulatedGpuSource, parse_entry, split_evenly

ME = os.getpid()


def write_entry(ledger: Path, pid: int, gpus: list[int], mem_bytes: int, **extra) -> Path:
    """What the simulated engine does: an atomic write of <pid>.json."""
    path = ledger / f"{pid}.json"
    tmp = ledger / f".{pid}.json.tmp"
    body = {
        "pid": pid,
        "gpus": gpus,
        "mem_bytes": mem_bytes,
        "role": "engine",
        "dialect": "vllm",
        "model": "m",
    } | extra
    tmp.write_text(json.dumps(body))
    os.replace(tmp, path)
    return path


@pytest.fixture
def sleeper():
    procs: list[subprocess.Popen] = []

    def spawn() -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        procs.append(proc)
        return proc

    yield spawn
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=5)


def _wait_for(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_empty_ledger_gives_idle_simulated_gpus(tmp_path: Path) -> None:
    src = open_gpu_source("simulated", sim_dir=tmp_path / "ledger")
    assert isinstance(src, GpuSource)
    assert (tmp_path / "ledger").is_dir()
    poll = src.poll()
    assert poll.source_label == "simulated" and poll.errors == ()
    assert [g.index for g in poll.gpus] == [0, 1, 2, 3]
    g = poll.gpus[0]
    assert (g.name, g.uuid, g.mem_total_bytes, g.mem_used_bytes) == (
        "SIMULATED H100 80GB HBM3",
        "SIM-GPU-0",
        80 * GiB,
        0,
    )
    assert g.util_pct == 0.0 and g.processes == ()
    # nothing pretends to be measured hardware
    assert (
        g.temp_c,
        g.power_w,
        g.power_limit_w,
        g.ecc_uncorrected,
        g.xid_last,
        g.xid_count,
        g.throttle_reasons,
    ) == (None,) * 7
    assert src.pids_on_gpus() == set()


def test_memory_is_split_across_the_gpus_each_process_lists(tmp_path: Path) -> None:
    src = SimulatedGpuSource(tmp_path, count=3, name="SIM X", mem_total_bytes=100)
    write_entry(tmp_path, ME, [0, 1, 2], 10)
    poll = src.poll()
    assert [g.mem_used_bytes for g in poll.gpus] == [4, 3, 3]
    assert [g.processes for g in poll.gpus] == [
        (GpuProcessReading(ME, 4),),
        (GpuProcessReading(ME, 3),),
        (GpuProcessReading(ME, 3),),
    ]
    assert [g.util_pct for g in poll.gpus] == [100.0, 100.0, 100.0]
    assert poll.gpus[0].name == "SIM X"
    assert src.pids_on_gpus() == {ME}


def test_several_live_processes_add_up(tmp_path: Path, sleeper) -> None:
    a, b = sleeper(), sleeper()
    src = SimulatedGpuSource(tmp_path, count=2)
    write_entry(tmp_path, a.pid, [0, 1], 40 * GiB)
    write_entry(tmp_path, b.pid, [1], 30 * GiB, role="worker", util_pct=12.5)
    g0, g1 = src.poll().gpus
    assert g0.mem_used_bytes == 20 * GiB and g1.mem_used_bytes == 50 * GiB
    assert g0.processes == (GpuProcessReading(a.pid, 20 * GiB),)
    assert g1.processes == tuple(
        sorted([GpuProcessReading(a.pid, 20 * GiB), GpuProcessReading(b.pid, 30 * GiB)], key=lambda p: p.pid)
    )
    assert g0.util_pct == 100.0 and g1.util_pct == 12.5  # a process may drive its GPUs' utilization
    assert src.pids_on_gpus() == {a.pid, b.pid}


def test_a_killed_process_leaves_its_file_and_its_memory_is_released(tmp_path: Path, sleeper) -> None:
    victim, survivor = sleeper(), sleeper()
    src = SimulatedGpuSource(tmp_path, count=1)
    victim_file = write_entry(tmp_path, victim.pid, [0], 8 * GiB)
    write_entry(tmp_path, survivor.pid, [0], 2 * GiB)
    assert src.poll().gpus[0].mem_used_bytes == 10 * GiB
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=5)
    assert victim_file.exists()  # SIGKILL gave it no chance to clean up
    poll = src.poll()
    assert poll.gpus[0].mem_used_bytes == 2 * GiB
    assert poll.gpus[0].processes == (GpuProcessReading(survivor.pid, 2 * GiB),)
    assert not victim_file.exists()  # the reader released it
    assert src.pids_on_gpus() == {survivor.pid}


def test_an_unreaped_zombie_holds_no_memory(tmp_path: Path, sleeper) -> None:
    child = sleeper()
    src = SimulatedGpuSource(tmp_path, count=1)
    write_entry(tmp_path, child.pid, [0], GiB)
    os.kill(child.pid, signal.SIGKILL)
    _wait_for(lambda: psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE)
    assert src.poll().gpus[0].mem_used_bytes == 0
    assert src.pids_on_gpus() == set()


def test_release_delay_keeps_a_dead_process_memory_for_a_while(tmp_path: Path, sleeper) -> None:
    now = [100.0]
    child = sleeper()
    src = SimulatedGpuSource(tmp_path, count=1, release_delay_s=5.0, clock=lambda: now[0])
    path = write_entry(tmp_path, child.pid, [0], 3 * GiB)
    child.kill()
    child.wait(timeout=5)
    assert src.poll().gpus[0].mem_used_bytes == 3 * GiB  # driver teardown still in progress
    now[0] = 104.9
    assert src.pids_on_gpus() == {child.pid}
    assert path.exists()
    now[0] = 105.0
    assert src.poll().gpus[0].mem_used_bytes == 0
    assert not path.exists() and src.pids_on_gpus() == set()


def test_a_reused_pid_does_not_inherit_an_old_claim(tmp_path: Path) -> None:
    src = SimulatedGpuSource(tmp_path, count=1)
    path = write_entry(tmp_path, ME, [0], GiB)
    old = psutil.Process(ME).create_time() - 3600  # written an hour before this process existed
    os.utime(path, (old, old))
    assert src.poll().gpus[0].mem_used_bytes == 0
    assert not path.exists()


def test_bad_ledger_files_are_reported_and_skipped_not_fatal(tmp_path: Path) -> None:
    src = SimulatedGpuSource(tmp_path, count=2, mem_total_bytes=GiB)
    write_entry(tmp_path, ME, [0, 7], 2 * GiB)  # GPU 7 does not exist; GPU 0 over-committed
    (tmp_path / "12345.json").write_text("{not json")
    (tmp_path / "23456.json").write_text(json.dumps({"pid": 999, "gpus": [0], "mem_bytes": 1}))
    (tmp_path / "34567.json").write_text(json.dumps({"pid": 34567, "gpus": "0", "mem_bytes": 1}))
    (tmp_path / "notes.json").write_text("ignored: not a ledger name")
    poll = src.poll()
    assert poll.gpus[0].mem_used_bytes == 2 * GiB and poll.gpus[1].mem_used_bytes == 0
    errors = "\n".join(poll.errors)
    assert "12345.json" in errors and "23456.json: pid 999 does not match" in errors
    assert "34567.json: bad gpus '0'" in errors
    assert f"pid {ME} lists GPUs [0, 7], only 0..1 exist" in errors
    assert "simulated gpu 0: 2147483648 bytes committed, only 1073741824 exist" in errors
    assert "notes.json" not in errors
    assert len(poll.errors) == 5
    assert (tmp_path / "12345.json").exists()  # not ours to delete: it may be half-written by a bug


def test_an_unreadable_ledger_dir_is_an_error_not_a_crash(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    poll = SimulatedGpuSource(blocker / "ledger", count=1).poll()
    assert poll.source_label == "simulated" and len(poll.gpus) == 1
    assert poll.gpus[0].mem_used_bytes == 0  # nothing is held when nobody could write a claim
    assert poll.errors == (f"simulated ledger: {blocker / 'ledger'} is not a directory",)


def test_parse_entry_validates() -> None:
    ok = parse_entry(
        {"pid": 5, "gpus": [1, 1, 0], "mem_bytes": 9, "role": "worker", "dialect": "tgi", "model": "x"}
    )
    assert ok.gpus == (1, 0) and ok.role == "worker" and ok.util_pct is None
    for bad in (
        [],
        {"pid": True, "gpus": [], "mem_bytes": 0},
        {"pid": 1, "gpus": [0], "mem_bytes": -1},
        {"pid": 1, "gpus": [0.5], "mem_bytes": 1},
        {"pid": 1, "gpus": [0], "mem_bytes": 1, "util_pct": 101},
    ):
        with pytest.raises(ValueError):
            parse_entry(bad)


def test_split_evenly_adds_up() -> None:
    for total in (0, 1, 7, 80 * GiB + 3):
        for parts in (1, 2, 3, 8):
            shares = split_evenly(total, parts)
            assert sum(shares) == total and max(shares) - min(shares) <= 1


def test_factory_without_a_ledger_dir_is_unavailable() -> None:
    label = open_gpu_source("simulated").poll().source_label
    assert label == "unavailable: simulated GPUs need a ledger directory (sim_dir)"


def test_util_by_gpu_overrides_util_pct_for_the_gpus_it_names(tmp_path: Path, sleeper) -> None:
    """A collective hang as the simulated engine writes it: one rank busy, the other idle."""
    a, b = sleeper(), sleeper()
    src = SimulatedGpuSource(tmp_path, count=3)
    write_entry(tmp_path, a.pid, [0, 1, 2], 30 * GiB, util_pct=100, util_pct_by_gpu={"0": 100, "1": 0})
    assert [g.util_pct for g in src.poll().gpus] == [100.0, 0.0, 100.0]  # GPU 2 falls back to util_pct
    write_entry(tmp_path, a.pid, [0, 1], 30 * GiB, util_pct_by_gpu={"1": 0})
    assert [g.util_pct for g in src.poll().gpus] == [100.0, 0.0, 0.0]  # unnamed, no util_pct: busy default
    write_entry(tmp_path, b.pid, [1], GiB, role="worker", util_pct=40)
    assert [g.util_pct for g in src.poll().gpus] == [100.0, 40.0, 0.0]  # the highest any entry sets


def test_parse_entry_validates_util_by_gpu() -> None:
    ok = parse_entry({"pid": 5, "gpus": [0, 3], "mem_bytes": 9, "util_pct_by_gpu": {"3": 0, "0": 99.5}})
    assert ok.util_pct_by_gpu == ((0, 99.5), (3, 0.0)) and ok.util_of(3) == 0.0 and ok.util_of(7) is None
    assert parse_entry({"pid": 5, "gpus": [0], "mem_bytes": 9}).util_pct_by_gpu == ()
    for bad in ([1, 0], {"0": 101}, {"0": -1}, {"x": 5}, {"-1": 5}, {"0": True}, {"0": "50"}, {"٣": 5}):
        with pytest.raises(ValueError, match="util_pct_by_gpu"):
            parse_entry({"pid": 1, "gpus": [0], "mem_bytes": 1, "util_pct_by_gpu": bad})
