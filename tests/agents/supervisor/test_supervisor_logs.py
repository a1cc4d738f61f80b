"""Engine log files: tail, copy-truncate rotation with O_APPEND writers, disk errors (§1.5-G, §2.6)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import tests.support.procs.supervisor_testkit as K
from agents.redact import Redactor
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
    kept = (
        b"".join((tmp_path / n).read_bytes() for n in ("e.log.2", "e.log.1", "e.log")).decode().splitlines()
    )
    assert kept == written[-len(kept) :]  # contiguous, in order, nothing duplicated
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
        sup = k.make(
            K.engine_argv("--tick", "0.005"), is_ready=lambda: True, log_max_bytes=1500, log_backups=2
        )
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


# --- secrets on disk (issue 10 §5): 0600 files, redacted in place -------------------------------------------

SECRET = "sentinel-LOG-secret-0001"


def _all_log_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.glob("e.log*")))


def test_log_files_are_private_and_old_ones_are_tightened(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "e.log"
    path.parent.mkdir()
    path.write_bytes(b"written by an older agent\n")
    path.chmod(0o640)
    old_backup = tmp_path / "logs" / "e.log.1"
    old_backup.write_bytes(b"older\n")
    old_backup.chmod(0o644)
    lf = LogFile(path, max_bytes=300, backups=3)
    fd = lf.open_append()
    try:
        assert path.stat().st_mode & 0o777 == 0o600
        for i in range(20):
            os.write(fd, f"line {i:03d} ".encode() + b"x" * 40 + b"\n")
            lf.poll()
    finally:
        os.close(fd)
    assert lf.rotations >= 2 and lf.errors == 0
    for p in path.parent.glob("e.log*"):
        assert p.stat().st_mode & 0o777 == 0o600, p
    fresh = LogFile(tmp_path / "new" / "e.log")
    os.close(fresh.open_append())
    assert (tmp_path / "new").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "new" / "e.log").stat().st_mode & 0o777 == 0o600


def test_a_live_writer_s_secrets_are_masked_on_disk_and_in_the_tail(tmp_path: Path) -> None:
    """A real process writes secrets (configured and token-shaped), some split across writes, while the
    log rotates; afterwards no file and no tail line holds one, and every other byte is as written."""
    path = tmp_path / "e.log"
    lf = LogFile(path, max_bytes=4000, backups=50, tail_lines=100_000, redact=Redactor([SECRET]))
    fd = lf.open_append()
    code = (
        "import os, sys, time\n"
        "key = sys.argv[1]\n"
        "for i in range(300):\n"
        "    os.write(1, f'n {i:04d} key={key[:9]}'.encode()); time.sleep(0.0005)\n"
        "    os.write(1, f'{key[9:]} api_key=Zk39xQ2mLp0w{i} passwd: Permission denied\\n'.encode())\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, SECRET], stdout=fd, stderr=subprocess.STDOUT)
    os.close(fd)
    try:
        while proc.poll() is None:
            lf.poll()
            time.sleep(0.003)
        lf.poll()
    finally:
        proc.kill()
        proc.wait()
    assert lf.rotations >= 3 and lf.errors == 0 and lf.masked > 0
    data = _all_log_bytes(tmp_path)
    assert SECRET.encode() not in data and b"Zk39xQ2mLp0w" not in data
    assert data.count(b"passwd: Permission denied") == data.count(b"\n")  # prose is left alone
    tail = lf.tail(100_000)
    assert not any(SECRET in t or "Zk39xQ2mLp0w" in t for t in tail)
    nums = [int(t.split()[1]) for t in tail if t.startswith("n ")]
    assert nums == sorted(set(nums)) and nums[-1] == 299  # in order, nothing duplicated by the masking writes
    expected = {f"n {i:04d} key=*** api_key=*** passwd: Permission denied" for i in range(300)}
    on_disk = {
        f"n {i:04d} key={'*' * len(SECRET)} api_key={'*' * len(f'Zk39xQ2mLp0w{i}')} passwd: Permission denied"
        for i in range(300)
    }
    # The tail shows *** as the API does; on disk only the secret bytes changed (same length). Copy-truncate
    # may lose what a writer adds between the copy and the truncate (this one writes every 0.5 ms on a shared
    # machine), so lines that lost a write are not compared; every whole line must be the written one, masked.
    whole = [t for t in tail if t.startswith("n ") and t.count("key=") == 2 and t.endswith("denied")]
    assert len(whole) >= 200 and all(t in expected for t in whole), [t for t in whole if t not in expected][
        :3
    ]
    disk_lines = [
        t
        for p in tmp_path.glob("e.log*")
        for t in p.read_text().splitlines()
        if t.startswith("n ") and t.count("key=") == 2 and t.endswith("denied")
    ]
    assert len(disk_lines) >= 200 and all(t in on_disk for t in disk_lines)


def test_partial_line_is_masked_when_shown_and_when_completed(tmp_path: Path) -> None:
    path = tmp_path / "e.log"
    lf = LogFile(path, redact=Redactor([SECRET]))
    fd = lf.open_append()
    try:
        os.write(fd, f"starting with {SECRET}".encode())  # no newline yet
        lf.poll()
        assert SECRET not in lf.tail(1)[0]  # the unfinished line is shown masked
        os.write(fd, b" done\n")
        lf.poll()
    finally:
        os.close(fd)
    assert path.read_bytes() == b"starting with " + b"*" * len(SECRET) + b" done\n"


def test_seeding_masks_the_whole_existing_file(tmp_path: Path) -> None:
    """What an adopted engine wrote while the agent was down (or an older agent left) is masked at start,
    also before the seeded tail and in a backlog too large to read at once."""
    path = tmp_path / "e.log"
    lines = [f"line {i:06d} " + ("token=" + SECRET if i % 997 == 0 else "z" * 30) for i in range(40_000)]
    path.write_bytes(("\n".join(lines) + "\n").encode())
    size = path.stat().st_size
    lf = LogFile(path, seed_bytes=1000, redact=Redactor([SECRET]))
    data = path.read_bytes()
    assert len(data) == size and SECRET.encode() not in data and data.count(b"token=****") == 41
    assert lf.tail(1) == ["line 039999 " + "z" * 30]
    with open(path, "ab") as fh:  # a backlog over the per-poll read cap (1 MiB): skipped, still masked
        fh.write(
            b"".join(f"more {i:06d} Bearer Zk39xQ2mLp0w{i} {'q' * 40}\n".encode() for i in range(40_000))
        )
    lf.poll()
    assert lf.skipped_bytes > 0 and b"Zk39xQ2mLp0w" not in path.read_bytes()


def test_agent_lines_are_redacted(tmp_path: Path) -> None:
    lf = LogFile(tmp_path / "e.log", redact=Redactor([SECRET]))
    fd = lf.open_append()
    try:
        lf.note(fd, f"=== launch with {SECRET} and Bearer Zk39xQ2mLp0w77")
    finally:
        os.close(fd)
    text = (tmp_path / "e.log").read_text()
    assert SECRET not in text and "Zk39xQ2mLp0w77" not in text and text.startswith("=== launch with ***")
