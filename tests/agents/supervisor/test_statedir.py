"""One agent per state directory (issue 10 §2) and a writable one at start-up (§3): the lock itself.

Root ignores mode bits, so unwritable directories are made the ways that fail for root too: a regular
file where a directory is expected, a directory where the lock file is expected, and RLIMIT_FSIZE = 0
(every write into a file fails with EFBIG, as on a full disk).
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agents.statedir import LOCK_NAME, StateDirError, claim_state_dir, holder_pid

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[3]


def test_second_claim_names_the_directory_and_the_holder(tmp_path: Path) -> None:
    state = tmp_path / "state"
    lock = claim_state_dir(state)
    try:
        assert lock.held and (state / LOCK_NAME).read_text().strip() == str(os.getpid())
        with pytest.raises(StateDirError) as err:
            claim_state_dir(state)  # a second open file description conflicts even in the same process
        msg = str(err.value)
        assert (
            "\n" not in msg and str(state) in msg and f"PID {os.getpid()}" in msg and "another agent" in msg
        )
    finally:
        lock.release()
    assert not lock.held
    again = claim_state_dir(state)  # released: free at once
    again.release()
    lock.release()  # idempotent


def test_kill_9_of_the_holder_never_blocks_the_next_claim(tmp_path: Path) -> None:
    state = tmp_path / "state"
    code = textwrap.dedent(f"""
        import time
        from agents.statedir import claim_state_dir
        lock = claim_state_dir({str(state)!r})
        print("held", flush=True)
        time.sleep(600)
    """)
    holder = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StateDirError, match=f"in use by another agent \\(PID {holder.pid}\\)"):
            claim_state_dir(state)
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        lock = claim_state_dir(state)  # the kernel dropped the lock with the process
        assert holder_pid(state) == os.getpid()
        lock.release()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_children_never_inherit_the_lock(tmp_path: Path) -> None:
    """Engines outlive the agent: if one inherited the lock, the next agent could never start."""
    state = tmp_path / "state"
    lock = claim_state_dir(state)
    child = subprocess.Popen(["sleep", "60"], close_fds=False)  # even without close_fds: O_CLOEXEC
    try:
        lock.release()
        claim_state_dir(state).release()
    finally:
        child.kill()
        child.wait()


@pytest.mark.parametrize("how", ["engines-is-a-file", "lock-is-a-directory", "under-a-file"])
def test_unwritable_state_dir_is_one_line_and_leaves_no_lock(tmp_path: Path, how: str) -> None:
    state = tmp_path / "state"
    if how == "under-a-file":
        (tmp_path / "file").write_text("")
        state = tmp_path / "file" / "state"
    else:
        state.mkdir()
        if how == "engines-is-a-file":
            (state / "engines").write_text("")
        else:
            (state / LOCK_NAME).mkdir()
    with pytest.raises(StateDirError) as err:
        claim_state_dir(state)
    msg = str(err.value)
    assert "\n" not in msg and str(state) in msg and "Traceback" not in msg
    assert ("not writable" in msg) if how != "under-a-file" else ("cannot create it: Not a directory" in msg)
    if how == "engines-is-a-file":  # fixed: claimable at once (the failed claim did not keep the lock)
        (state / "engines").unlink()
        claim_state_dir(state).release()


def test_full_disk_is_refused(tmp_path: Path) -> None:
    """RLIMIT_FSIZE = 0 makes every file write fail (EFBIG) like a full disk, for root too."""
    code = textwrap.dedent(f"""
        import sys
        from agents.statedir import StateDirError, claim_state_dir
        try:
            claim_state_dir({str(tmp_path / "state")!r})
        except StateDirError as exc:
            print(exc)
            sys.exit(2)
    """)
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0)),
    )
    assert out.returncode == 2, out.stderr
    assert "is not writable" in out.stdout and "EFBIG" in out.stdout
