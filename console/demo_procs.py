"""The demo fleet's processes, seen from outside: free loopback ports, the prctl calls that keep a
killed demo from leaving agents behind, which live processes are this fleet's (by their environment
markers), and reaping what was reparented to the demo."""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import signal
import socket
from pathlib import Path

DEMO_ENV = "LLMCONSOLE_DEMO_DIR"  # set on every agent the demo starts: the work directory
MARKER_ENV = "LLMCONSOLE_ENGINE_ID"  # the supervisor's marker on every engine process
SIM_GPU_ENV = "LLMCONSOLE_SIM_GPU_DIR"  # the simulated-GPU ledger (under an agent's state_dir)


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_ports(n: int, rng: random.Random | None = None) -> list[int]:
    """``n`` distinct free loopback ports, held together while choosing so they differ. Chosen below the
    kernel's ephemeral range when possible: a port from ``bind(0)`` is free only until the next outgoing
    connection on this busy machine takes it as its source port."""
    rng = rng or random.Random()
    low = _ephemeral_low()
    socks: list[socket.socket] = []
    try:
        for _ in range(50 * n):
            if len(socks) == n or low <= 11000:
                break
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", rng.randrange(10000, low)))
            except OSError:
                s.close()
                continue
            socks.append(s)
        while len(socks) < n:  # fallback: whatever the kernel gives
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def prctl(option: int, arg: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(option, arg, 0, 0, 0)


PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37


def is_subreaper() -> bool:
    """Whether this process is a child subreaper (Linux; False where that cannot be read)."""
    flag = ctypes.c_int(0)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(flag), 0, 0, 0)
    return bool(flag.value)


def agent_preexec() -> None:
    # If the demo dies without cleaning up (SIGKILL), the agent still gets SIGTERM and stops its engines.
    prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    out = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            out[key.decode(errors="replace")] = value.decode(errors="replace")
    return out


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # gone
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def marked_pids(workdir: Path) -> set[int]:
    """Live processes of this demo: agents (``LLMCONSOLE_DEMO_DIR``) and engines (supervisor marker +
    a simulated-GPU ledger under the work directory)."""
    root = str(workdir)
    found = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        pid = int(entry.name)
        env = _environ(pid)
        ours = env.get(DEMO_ENV) == root or (
            MARKER_ENV in env and env.get(SIM_GPU_ENV, "").startswith(root + os.sep)
        )
        if ours and not _is_zombie(pid):
            found.add(pid)
    return found


def reap_orphans() -> None:
    """Reap children reparented to us (we are a subreaper: engines whose agent died). Called only once the
    agents themselves have been waited for, so no Popen's exit status is taken from it."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
