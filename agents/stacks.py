"""Python stacks of a hung engine: ``py-spy dump`` of each process of its tree, once per incident.

When a hang-type alert (:data:`HANG_CODES`) appears on an engine, :func:`on_alerts` (called by the engine's
watch with the alerts it just evaluated) starts one capture in the background: ``py-spy dump --pid P``
for every process of the engine's tree, each a subprocess with a deadline, so the agent's loop never
waits on it. The alert's evidence then carries ``stacks``: capturing, then per process whether it was
read and why not; the full dumps go into incident bundles (agents/bundle.py). The next capture for that
engine waits until every hang alert has cleared (a new incident) and ``COOLDOWN_S`` has passed.

py-spy is optional (``pip install 'llmconsole[diagnostics]'``). Without it, without ptrace rights (a
container needs ``SYS_PTRACE``), or for a process that cannot be read (a SIGSTOPped one, a process that
is not Python), the evidence says which and why; nothing is silently missing. ``LLMCONSOLE_PY_SPY``
names the binary to use (``off`` disables capture). Dumps never include local variables (no
``--locals``), so no prompt or completion text can reach them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import sys
import time
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from agents.schema import Alert, rfc3339

log = logging.getLogger(__name__)

HANG_CODES = frozenset({"ENGINE_HUNG", "HEALTH_LIES"})
DUMP_TIMEOUT_S = 10.0
CAPTURE_TIMEOUT_S = 40.0
MAX_PROCESSES = 16
MAX_DUMP_BYTES = 1 * 2**20
KEEP_CAPTURES = 4
COOLDOWN_S = 60.0
ENV_VAR = "LLMCONSOLE_PY_SPY"
INSTALL_HINT = "py-spy is not installed: pip install 'llmconsole[diagnostics]'"
_STATES = {
    "R": "running",
    "S": "sleeping",
    "D": "disk sleep",
    "T": "stopped",
    "t": "tracing stop",
    "Z": "zombie",
    "X": "dead",
    "I": "idle",
}


@dataclass(frozen=True, slots=True)
class ProcessStack:
    """One process's dump: ``text`` when py-spy read it, else ``error`` says why not."""

    pid: int
    name: str | None
    state: str | None  # "sleeping", "stopped", ... as /proc says; None when the process is gone
    ok: bool
    text: str | None
    error: str | None
    elapsed_s: float

    def brief(self) -> dict[str, Any]:
        threads = self.text.count("\nThread ") + self.text.startswith("Thread ") if self.text else None
        return {
            "pid": self.pid,
            "name": self.name,
            "state": self.state,
            "read": self.ok,
            "error": self.error,
            "threads": threads,
        }


@dataclass(frozen=True, slots=True)
class StackCapture:
    """One capture for one incident: when, what triggered it, the tool, and each process's dump."""

    at: str
    trigger: str
    since: str | None
    tool: str | None
    problem: str | None  # why nothing could be dumped at all (no py-spy, capture disabled)
    processes: tuple[ProcessStack, ...] = ()
    elapsed_s: float = 0.0

    def brief(self) -> dict[str, Any]:
        read = sum(p.ok for p in self.processes)
        return {
            "status": "captured" if self.problem is None else "unavailable",
            "at": self.at,
            "trigger": self.trigger,
            "tool": self.tool,
            "problem": self.problem,
            "read": read,
            "of": len(self.processes),
            "processes": [p.brief() for p in self.processes],
            "full_dumps": "in incident bundles (llmconsole bundle)",
        }


# --- finding py-spy and reading /proc ----------------------------------------------------------------------


def find_py_spy(environ: dict[str, str] | None = None) -> tuple[str | None, str | None]:
    """(path, None) of the py-spy to use, or (None, why there is none)."""
    env = os.environ if environ is None else environ
    chosen = env.get(ENV_VAR)
    if chosen is not None:
        if chosen.strip().lower() in ("", "off", "0", "no", "false"):
            return None, f"stack capture is disabled ({ENV_VAR}={chosen!r})"
        if os.access(chosen, os.X_OK) and os.path.isfile(chosen):
            return chosen, None
        return None, f"{ENV_VAR} names {chosen!r}, which is not an executable file"
    search = os.pathsep.join(p for p in (env.get("PATH"), os.path.dirname(sys.executable)) if p)
    found = shutil.which("py-spy", path=search)
    return (found, None) if found else (None, INSTALL_HINT)


def proc_state(pid: int) -> tuple[str | None, str | None]:
    """(name, state) of ``pid`` from /proc (None, None when it is gone or unreadable)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read().decode("utf-8", "replace")
    except OSError:
        return None, None
    open_at, close_at = raw.find("("), raw.rfind(")")
    if open_at < 0 or close_at < 0:
        return None, None
    name = raw[open_at + 1 : close_at]
    letter = raw[close_at + 2 : close_at + 3]
    return name, _STATES.get(letter, letter or None)


def ptrace_hint() -> str:
    """What governs ptrace here, for messages: the Yama scope and whether CAP_SYS_PTRACE is held."""
    parts = []
    try:
        with open("/proc/sys/kernel/yama/ptrace_scope") as fh:
            parts.append(f"kernel.yama.ptrace_scope={fh.read().strip()}")
    except OSError:
        pass
    try:
        with open("/proc/self/status") as fh:
            cap = next((int(line.split()[1], 16) for line in fh if line.startswith("CapEff:")), None)
        if cap is not None:
            parts.append("CAP_SYS_PTRACE held" if cap & (1 << 19) else "CAP_SYS_PTRACE not held")
    except (OSError, ValueError):
        pass
    return "; ".join(parts)


def _reason_lines(stderr: str) -> list[str]:
    """py-spy's error lines without its indented detail, except the first line under "Caused by:" (the
    actual cause, e.g. "Permission denied (os error 13)")."""
    out: list[str] = []
    after_caused = False
    for line in stderr.splitlines():
        if not line.strip():
            continue
        if line.startswith(" "):
            if after_caused:
                out.append(line.strip())
                after_caused = False
            continue
        out.append(line.strip())
        after_caused = line.strip().lower().startswith("caused by")
    return out


def _why(stderr: str, rc: int | None, state: str | None) -> str:
    text = " ".join(_reason_lines(stderr))[:300]
    low = text.lower()
    if state is None or "no such process" in low:
        return "the process is gone (it exited before it could be read)"
    if "permission denied" in low or "operation not permitted" in low or "eperm" in low:
        hint = ptrace_hint()
        return (
            "no ptrace rights: py-spy was refused (containers need the SYS_PTRACE capability"
            + (f"; {hint}" if hint else "")
            + f"): {text}"
        )
    if state in ("stopped", "tracing stop"):
        return f"the process is stopped (state {state}, e.g. SIGSTOP): py-spy could not read it: {text or f'exit {rc}'}"
    if "python version" in low or "python interpreter" in low:
        return f"not readable as a Python process: {text}"
    return text or f"py-spy exited with status {rc}"


# --- capturing ---------------------------------------------------------------------------------------------


async def dump_one(
    py_spy: str, pid: int, timeout_s: float = DUMP_TIMEOUT_S, *, nonblocking: bool = False
) -> ProcessStack:
    """``py-spy dump --pid pid`` with a deadline (the subprocess is killed when it passes); ``nonblocking``
    reads the process's memory without pausing it (for engines the agent did not start and never stops)."""
    name, state = proc_state(pid)
    started = time.monotonic()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "RUST_BACKTRACE": "0", "LANG": "C.UTF-8"}
    try:
        proc = await asyncio.create_subprocess_exec(
            py_spy,
            "dump",
            "--pid",
            str(pid),
            *(["--nonblocking"] if nonblocking else []),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
    except OSError as exc:
        return ProcessStack(pid, name, state, False, None, f"cannot run py-spy: {exc.strerror or exc}", 0.0)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except asyncio.CancelledError:  # the agent is stopping: py-spy must not outlive it
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        raise
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        elapsed = time.monotonic() - started
        why = f"py-spy did not finish within {timeout_s:g}s"
        if state in ("stopped", "tracing stop"):
            why = f"the process is stopped (state {state}, e.g. SIGSTOP): {why}"
        return ProcessStack(pid, name, state, False, None, why, round(elapsed, 3))
    elapsed = round(time.monotonic() - started, 3)
    text = out[:MAX_DUMP_BYTES].decode("utf-8", "replace")
    if proc.returncode == 0 and text.strip():
        return ProcessStack(pid, name, state, True, text, None, elapsed)
    return ProcessStack(
        pid, name, state, False, None, _why(err.decode("utf-8", "replace"), proc.returncode, state), elapsed
    )


async def capture(
    pids: Sequence[int],
    *,
    trigger: str,
    since: str | None = None,
    py_spy: str | None = None,
    problem: str | None = None,
    timeout_s: float = DUMP_TIMEOUT_S,
    nonblocking: bool = False,
) -> StackCapture:
    """Dump every process of ``pids`` (at most ``MAX_PROCESSES``, one after another: a hung engine must
    not get a burst of ptrace stops). Without ``py_spy``, each process is still listed with ``problem``."""
    at, started = rfc3339(), time.monotonic()
    chosen = sorted(set(pids))[:MAX_PROCESSES]
    if py_spy is None:
        why = problem or INSTALL_HINT
        procs = tuple(ProcessStack(p, *proc_state(p), False, None, why, 0.0) for p in chosen)
        return StackCapture(at, trigger, since, None, why, procs)
    out: list[ProcessStack] = []
    for pid in chosen:
        left = CAPTURE_TIMEOUT_S - (time.monotonic() - started)
        if left <= 0:
            name, state = proc_state(pid)
            out.append(
                ProcessStack(
                    pid,
                    name,
                    state,
                    False,
                    None,
                    f"not dumped: the capture's {CAPTURE_TIMEOUT_S:g}s ran out",
                    0.0,
                )
            )
            continue
        out.append(await dump_one(py_spy, pid, min(timeout_s, left), nonblocking=nonblocking))
    return StackCapture(at, trigger, since, py_spy, None, tuple(out), round(time.monotonic() - started, 3))


# --- once per incident, per engine ------------------------------------------------------------------------


@dataclass
class _EngineStacks:
    incident: str | None = None
    started: float = -float("inf")
    task: asyncio.Task[None] | None = None
    captures: deque[StackCapture] = field(default_factory=lambda: deque(maxlen=KEEP_CAPTURES))
    pending: dict[str, Any] | None = None


_STATE: weakref.WeakKeyDictionary[Any, _EngineStacks] = weakref.WeakKeyDictionary()


def captures(owner: Any) -> tuple[StackCapture, ...]:
    """The captures kept for ``owner`` (an engine's watch), oldest first."""
    st = _STATE.get(owner)
    return tuple(st.captures) if st is not None else ()


def on_alerts(
    owner: Any, alerts: tuple[Alert, ...], *, environ: dict[str, str] | None = None
) -> tuple[Alert, ...]:
    """Start a capture when a hang-type alert opens an incident on ``owner`` (a watch with
    ``supervisor.pids``); return ``alerts`` with the capture's state in each hang alert's evidence.
    Must run on the agent's loop. Never raises: a failure here must not break collection."""
    try:
        return _on_alerts(owner, alerts, environ)
    except Exception:  # noqa: BLE001
        log.exception("stack capture hook failed")
        return alerts


def _on_alerts(owner: Any, alerts: tuple[Alert, ...], environ: dict[str, str] | None) -> tuple[Alert, ...]:
    hang = [a for a in alerts if a.code in HANG_CODES]
    st = _STATE.get(owner)
    if not hang:
        if st is not None:
            st.incident = None  # the incident is over; its captures stay for bundles
        return alerts
    if st is None:
        st = _STATE[owner] = _EngineStacks()
    if (
        st.incident is None
        and time.monotonic() - st.started >= COOLDOWN_S
        and (st.task is None or st.task.done())
    ):
        first = hang[0]
        st.incident, st.started = f"{first.code}@{first.since}", time.monotonic()
        pids = tuple(getattr(owner.supervisor, "pids", ()) or ())
        path, why = find_py_spy(environ)
        st.pending = {"status": "capturing", "trigger": first.code, "processes": len(pids)}
        nonblocking = not getattr(owner.supervisor, "managed", True)  # a watched engine is never paused
        st.task = asyncio.get_running_loop().create_task(
            _run(st, pids, first, path, why, nonblocking), name="py-spy capture"
        )
    elif st.incident is None:
        st.incident = f"{hang[0].code}@{hang[0].since}"  # within the cooldown: the last capture stands for it
    brief = st.pending if st.pending is not None else (st.captures[-1].brief() if st.captures else None)
    if brief is None:
        return alerts
    return tuple(
        replace(a, evidence={**a.evidence, "stacks": brief}) if a.code in HANG_CODES else a for a in alerts
    )


async def _run(
    st: _EngineStacks,
    pids: tuple[int, ...],
    alert: Alert,
    path: str | None,
    why: str | None,
    nonblocking: bool = False,
) -> None:
    try:
        got = await capture(
            pids, trigger=alert.code, since=alert.since, py_spy=path, problem=why, nonblocking=nonblocking
        )
        st.captures.append(got)
    except Exception as exc:  # noqa: BLE001 - recorded in the evidence instead
        log.exception("stack capture failed")
        st.captures.append(
            StackCapture(
                rfc3339(), alert.code, alert.since, path, f"capture failed: {type(exc).__name__}: {exc}"
            )
        )
    finally:
        st.pending = None
