"""Engine log files: tail, copy-truncate rotation with O_APPEND writers, disk errors (§1.5-G, §2.6)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import tests.agents.procs.supervisor_testkit as K
from agents.supervisor.logs import LogFile

pytestmark = pytest.mark.timeout(60)


def test_tail_partial_lines_and_marks(tmp_path: Path) -> None:
    lf = LogFile(tmp_path / "e.log", max_bytes=10_000, backups=1, tail_lines=3)
    fd = lf.open_append()
    try:
        os.write(fd, b"one\ntwo\r\nthr")
        assert lf.poll() == 12
        assert lf.tail(10) == ["one", "two", "thr"]  # the unfinished line is shown too
        mark = lf.mark()
        os.write(fd, b"ee\nfour\nfive\n\xff\xfe bad utf8\n")
        lf.poll()
        assert lf.tail(10) == ["four", "five", "\ufffd\ufffd bad utf8"]  # bounded to tail_lines
        assert lf.lines_since(mark, 2) == ["five", "\ufffd\ufffd bad utf8"]
        assert lf.lines_since(lf.mark(), 5) == []
        assert lf.tail(0) == []
    finally:
        os.close(fd)


def test_seed_from_existing_file_is_history_not_new_output(tmp_path: Path) -> None:
    path = tmp_path / "e.log"
    path.write_bytes(b"".join(f"old line {i}\n".encode() for i in range(10_000)))
    lf = LogFile(path, seed_bytes=200)
    tail = lf.tail(100)
    assert tail[-1] == "old line 9999" and all(t.startswith("old line ") for t in tail)  # no cut first line
    assert lf.lines_since(lf.mark(), 10) == [] and lf.poll() == 0


def test_rotation_caps_size_keeps_order_and_backup_count(tmp_path: Path) -> None:
    path = tmp_path / "e.log"
    lf = LogFile(path, max_bytes=2000, backups=2, tail_lines=10_000)
    fd = lf.open_append()
    written: list[str] = []
    try:
        for chunk in range(40):
            lines = [f"chunk {chunk:02d} line {i:02d} " + "y" * 20 for i in range(10)]  # ~420 bytes
            written += lines
            os.write(fd, ("\n".join(lines) + "\n").encode())
            lf.poll()
            assert path.stat().st_size <= 2000
            assert not (tmp_path / "e.log.3").exists()
            for i in (1, 2):
                p = tmp_path / f"e.log.{i}"
                assert not p.exists() or p.stat().st_size <= 2000 + 500
    finally:
        os.close(fd)
    assert lf.rotations >= 5 and lf.errors == 0
    kept = b"".join((tmp_path / n).read_bytes() for n in ("e.log.2", "e.log.1", "e.log")).decode().splitlines()
    assert kept == written[-len(kept):]  # contiguous, in order, nothing duplicated
    assert lf.tail(len(written)) == written  # every line reached the tail exactly once


def test_rotation_with_a_live_o_append_writer_leaves_no_hole(tmp_path: Path) -> None:
    path = tmp_path / "e.log"
    lf = LogFile(path, max_bytes=1500, backups=1)
    fd = lf.open_append()
    code = "import sys,time\nfor i in range(400):\n print(f'n {i:05d}', flush=True); time.sleep(0.002)\n"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=fd, stderr=subprocess.STDOUT)
    os.close(fd)
    try:
        while proc.poll() is None:
            lf.poll()
            time.sleep(0.01)
        lf.poll()
    finally:
        proc.kill()
        proc.wait()
    assert lf.rotations >= 2
    data = path.read_bytes()
    assert b"\0" not in data  # after truncation the writer continued at offset 0 (O_APPEND)
    assert lf.tail(1) == ["n 00399"]
    nums = [int(t.split()[1]) for t in lf.tail(1000) if t.startswith("n ")]
    assert nums == sorted(nums) and len(set(nums)) == len(nums)


def test_disk_errors_are_counted_never_raised(tmp_path: Path) -> None:
    path = tmp_path / "e.log"
    lf = LogFile(path, max_bytes=100, backups=1)
    (tmp_path / "e.log.1").mkdir()  # the rotation target cannot be replaced: every rotation fails
    (tmp_path / "e.log.1" / "x").write_text("keep me non-empty")
    fd = lf.open_append()
    try:
        os.write(fd, b"a" * 150 + b"\n")
        lf.poll()
        assert lf.errors >= 1 and lf.last_error
        os.write(fd, b"still tailing\n")
        lf.poll()
        assert lf.tail(1) == ["still tailing"]
    finally:
        os.close(fd)
    with pytest.raises(OSError):
        LogFile(tmp_path / "e.log" / "sub.log").open_append()  # parent is a file


def test_oversized_backlog_is_skipped_not_buffered(tmp_path: Path) -> None:
    path = tmp_path / "e.log"
    lf = LogFile(path, max_bytes=64 << 20)
    path.write_bytes(b"")
    lf.poll()
    with open(path, "ab") as fh:
        for i in range(60_000):
            fh.write(f"line {i:06d} ".encode() + b"z" * 40 + b"\n")  # ~3.5 MB
    lf.poll()
    assert lf.skipped_bytes > 2 << 20
    assert lf.tail(1)[0].startswith("line 059999")


async def test_supervised_engine_log_is_capped_and_tailed(tmp_path: Path) -> None:
    async with K.kit(tmp_path) as k:
        sup = k.make(K.engine_argv("--tick", "0.005"), is_ready=lambda: True, log_max_bytes=1500, log_backups=2)
        await sup.start()
        await K.wait_state(sup, "ready")
        await asyncio.sleep(1.5)
        logs = k.log_dir
        assert (logs / "eng.log.1").exists() and not (logs / "eng.log.3").exists()
        for name in ("eng.log", "eng.log.1", "eng.log.2"):
            p = logs / name
            # the cap is enforced every tick (0.05 s): a 0.005 s ticker adds at most a few hundred bytes
            assert not p.exists() or p.stat().st_size <= 1500 + 1000, (name, p.stat().st_size)
        tail = sup.log_tail(3)
        assert len(tail) == 3 and all(t.startswith("tick ") for t in tail)
        assert sup.log_errors == 0


async def test_unusable_log_dir_does_not_stop_the_engine(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    async with K.kit(tmp_path) as k:
        k.log_dir = blocker  # <log_dir>/<id>.log cannot be created
        sup = k.make(K.engine_argv(), is_ready=lambda: True)
        await sup.start()
        await K.wait_state(sup, "ready")
        assert sup.log_errors >= 1 and sup.log_tail(5) == []
