"""The simulated engine's worker child (``python -m agents.sim.worker``): a SIMULATED GPU worker.

It does no work. It exists so supervision can be tested against a real process tree: it names itself
``SIM::Worker`` (prctl PR_SET_NAME), inherits the engine's environment, optionally leaves the process
group (``--setsid``, as TGI's shards do), records itself in the simulated-GPU ledger, and **survives a
SIGKILL of its engine** (as vLLM's workers do). It exits on SIGTERM/SIGINT (removing its ledger file)
and by itself after ``--max-s`` seconds so that leaked workers clean themselves up.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import os
import signal
import sys
import time
from types import FrameType

from agents.sim import ledger

PR_SET_NAME = 15


def set_process_name(name: str) -> bool:
    """Set this process's name (/proc/<pid>/comm, at most 15 bytes) via prctl; False if unavailable."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agents.sim.worker", allow_abbrev=False)
    parser.add_argument("--dialect", default="vllm")
    parser.add_argument("--model", default="sim")
    parser.add_argument("--mem-bytes", type=int, default=0)
    parser.add_argument("--max-s", type=float, default=1800.0)
    parser.add_argument("--setsid", action="store_true")
    args = parser.parse_args(argv)

    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    if args.setsid:
        with contextlib.suppress(OSError):  # already a session leader
            os.setsid()
    set_process_name("SIM::Worker")
    path = None
    folder = os.environ.get(ledger.ENV_DIR)
    try:
        if folder:
            entry = ledger.record(
                os.getpid(),
                ledger.gpus_from_env(os.environ),
                args.mem_bytes,
                "worker",
                args.dialect,
                args.model,
            )
            blocked = {signal.SIGTERM, signal.SIGINT}
            signal.pthread_sigmask(signal.SIG_BLOCK, blocked)  # no half-recorded file on an early SIGTERM
            try:
                path = ledger.write(folder, entry)
            finally:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, blocked)
        deadline = time.monotonic() + max(0.0, args.max_s)
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 1.0))
    except _Stop:
        pass
    finally:
        ledger.remove(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
