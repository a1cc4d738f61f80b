"""Action commands of watched engines: which may run (the policy) and running one (bounded, reported).

A watched engine (``managed = false``) is never signalled by the agent; its ``start_command`` /
``stop_command`` / ``restart_command`` (argv lists, e.g. ``["systemctl", "restart", "vllm@llama70b"]``)
are what the console's actions run instead.

Policy (:func:`action_refusal`), checked when the runtime is built and again before every run:

* no NUL or control characters and no secrets in the argv (the launch guard's rules: argv is world-readable);
* the executable: while ``[agent] allowed_action_commands`` is unset, only the built-in service managers,
  matched by name after a PATH lookup (:data:`BUILTIN_ACTION_COMMANDS`: ``systemctl``, ``docker``,
  ``podman``); a shell, an interpreter or a script must be listed by absolute path in
  ``allowed_action_commands``, which then replaces the built-in list and is compared by real path. Engine
  launchers (``allowed_executables``) are a separate list: an action command launches nothing for the agent.
* neither the executable nor its folder may be writable by others.

Running (:func:`run_command`): argv directly (never a shell), stdin from /dev/null, stdout and stderr into
an unlinked temporary file (never a pipe: a relaunched engine that inherits it would hold the pipe open),
in a session of its own, with the agent's scrubbed environment. The agent's reaper collects its exit
status. It is bounded by ``timeout_s`` (the engine's ``stop_timeout_s``): past that, the command's own
process group gets SIGTERM and, 2 s later, SIGKILL — except any process of the watched engine's tree
(``protect()``), which the agent never signals. The result carries the exit status, the elapsed time and
the output's tail.

Who asked: the API handler sets :data:`OUTCOME_REPORTER` around its call into the runtime (a context
variable: it follows the call onto the agent's loop and into the task running the command), so the
outcome is audited under the operator's name and request id; without one it goes to the event sink.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from agents.launchguard import ENV_HINT, control_chars, secret_in_argv, writable_by_others
from agents.supervisor.proctree import SCANNER, signal_identified
from agents.supervisor.reaper import ExitStatus, ExitWatch, Reaper

BUILTIN_ACTION_COMMANDS = ("systemctl", "docker", "podman")
# Variables a service manager's client needs to reach its daemon, passed on from the agent's environment
# when set (none is a secret): systemctl --user, docker/podman contexts and sockets.
CLIENT_ENV = (
    "XDG_RUNTIME_DIR",
    "DBUS_SESSION_BUS_ADDRESS",
    "DOCKER_HOST",
    "DOCKER_CONTEXT",
    "DOCKER_CONFIG",
    "CONTAINER_HOST",
)
KILL_GRACE_S = 2.0
TAIL_LINES = 20
TAIL_BYTES = 16 * 1024
SECRET_HINT = (
    "keep it in the command's own configuration (a systemd unit's Environment=, docker's --env-file)"
)

# Set by the API's action handler: called with the outcome line of the action it asked for.
OUTCOME_REPORTER: ContextVar[Callable[[str], None] | None] = ContextVar(
    "llmconsole_action_outcome", default=None
)


def resolve(argv: Sequence[str], path: str | None) -> tuple[str, ...]:
    """argv with argv[0] looked up on ``path`` (left as it is when it is not found or has a slash)."""
    if not argv or os.sep in argv[0]:
        return tuple(argv)
    found = shutil.which(argv[0], path=path)
    return (found, *argv[1:]) if found else tuple(argv)


def action_refusal(argv: Sequence[str], allowed: Sequence[Path] | None, key: str) -> str | None:
    """Why the action command ``argv`` (argv[0] resolved by :func:`resolve`) may not run; None when it may.
    ``key`` names its config key in the message ("restart_command")."""
    problem = control_chars(argv, key)
    if problem:
        return problem
    secret = secret_in_argv(argv)
    if secret:
        return f"{key} {secret.replace(ENV_HINT, SECRET_HINT)}"
    argv0 = argv[0]
    if allowed is None:
        if os.path.basename(argv0) not in BUILTIN_ACTION_COMMANDS:
            return (
                f"{key}: {os.path.basename(argv0)!r} is not a built-in action command ({', '.join(BUILTIN_ACTION_COMMANDS)}); "
                "to run it, list its absolute path in [agent] allowed_action_commands"
            )
    else:
        if not os.path.isabs(argv0):
            return (
                f"{key}: {argv0!r} was not found on PATH, so it cannot match [agent] allowed_action_commands"
            )
        real = os.path.realpath(argv0)
        if real not in {os.path.realpath(os.path.expanduser(str(p))) for p in allowed}:
            return f"{key}: {argv0} is not in [agent] allowed_action_commands"
    if os.path.isabs(argv0) and os.path.exists(argv0):
        problem = writable_by_others(argv0)
        if problem:
            return f"{key}: {problem}"
    return None


def command_env(base: Mapping[str, str], environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of an action command: the engines' scrubbed base plus :data:`CLIENT_ENV`."""
    source = os.environ if environ is None else environ
    return {**base, **{k: source[k] for k in CLIENT_ENV if k in source}}


@dataclass(frozen=True, slots=True)
class CommandResult:
    """How one action command ended. ``error``: it could not be started at all."""

    key: str  # "restart_command"
    pid: int | None
    status: ExitStatus | None
    timed_out: bool
    elapsed_s: float
    tail: tuple[str, ...]
    error: str | None = None
    timeout_s: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and not self.timed_out and self.status is not None and self.status.code == 0

    def describe(self) -> str:
        """One line: what happened, then the last output line when it failed."""
        if self.error is not None:
            return f"{self.key} could not start: {self.error}"
        took = f"{self.elapsed_s:.1f}s"
        if self.timed_out:
            how = self.status.describe() if self.status is not None else "still running"
            text = f"{self.key} did not finish within {self.timeout_s:g}s (stop_timeout_s): stopped, {how}"
        else:
            assert self.status is not None
            text = f"{self.key} {self.status.describe()} after {took}"
        if not self.ok and self.tail:
            text += f"; output: {self.tail[-1][:300]}"
        return text


async def run_command(
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    key: str,
    timeout_s: float,
    reaper: Reaper,
    protect: Callable[[], Iterable[int]] = tuple,
    redact: Callable[[str], str] | None = None,
) -> CommandResult:
    """Run one action command to its end or ``timeout_s`` (see the module docstring). The caller holds
    ``reaper`` (``acquire()``d) so that the exit status is collected."""
    started = time.monotonic()
    with tempfile.TemporaryFile() as out:
        try:
            popen = subprocess.Popen(  # noqa: S603 - argv checked by action_refusal, never a shell
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                env=dict(env),
                cwd="/",
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""
            return CommandResult(key, None, None, False, 0.0, (), f"{exc.strerror or exc}{where}")
        done: asyncio.Future[ExitStatus] = asyncio.get_running_loop().create_future()

        def on_exit(status: ExitStatus) -> None:
            if not done.done():
                done.set_result(status)

        reaper.add_leader(popen, on_exit)
        watch = ExitWatch(popen.pid, reaper.reap_now)  # prompt even where SIGCHLD is not ours
        timed_out = False
        status: ExitStatus | None = None
        try:
            status = await _wait(done, reaper, timeout_s)
            if status is None:
                timed_out = True
                status = await _stop_group(popen.pid, done, reaper, protect)
        finally:
            watch.close()
        elapsed = time.monotonic() - started
        tail = _tail(out, redact)
    return CommandResult(key, popen.pid, status, timed_out, elapsed, tail, None, timeout_s)


async def _wait(done: asyncio.Future[ExitStatus], reaper: Reaper, timeout_s: float) -> ExitStatus | None:
    """The exit status, or None after ``timeout_s``; the reaper is asked every 0.2 s meanwhile."""
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(asyncio.shield(done), timeout=min(0.2, left))
        reaper.reap_now()
    return done.result() if done.done() else None


async def _stop_group(
    pgid: int, done: asyncio.Future[ExitStatus], reaper: Reaper, protect: Callable[[], Iterable[int]]
) -> ExitStatus | None:
    """SIGTERM, then SIGKILL, to the command's own process group, never to a protected PID."""
    for sig, wait_s in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, KILL_GRACE_S)):
        spared = set(protect())
        for p in SCANNER.procs(0.0).values():
            if p.pgrp == pgid and not p.dead and p.pid not in spared:
                signal_identified(p.pid, p.starttime, sig)
        status = await _wait(done, reaper, wait_s)
        if status is not None:
            return status
    return None


def _tail(out: IO[bytes], redact: Callable[[str], str] | None) -> tuple[str, ...]:
    """The last lines of the command's output (secrets masked)."""
    try:
        size = out.seek(0, os.SEEK_END)
        out.seek(max(0, size - TAIL_BYTES))
        data = out.read()
    except (OSError, ValueError):
        return ()
    lines = [ln.rstrip() for ln in data.decode("utf-8", "replace").splitlines() if ln.strip()]
    lines = lines[-TAIL_LINES:]
    return tuple(redact(ln) if redact is not None else ln for ln in lines)
