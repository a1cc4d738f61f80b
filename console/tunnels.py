"""SSH local forwards to agents: one ``ssh -N -L`` per host that says ``ssh = "user@host"``.

The system ``ssh`` runs the tunnel, so ``~/.ssh/config``, ProxyJump, ssh-agent and known_hosts behave as
the operator expects. Each tunnel is::

    ssh -N -L 127.0.0.1:<free local port>:<agent host>:<agent port>
        -o ExitOnForwardFailure=yes -o ServerAliveInterval=15 -o ServerAliveCountMax=3 -o BatchMode=yes
        <ssh_options...> -- user@host

(``<agent host>`` is the host of the configured ``url`` as seen from the SSH host, 127.0.0.1 by default;
``<agent port>`` is ``remote_port`` or the url's port.) Nothing goes through a shell. A tunnel is *up*
once its local port accepts connections; when ssh exits it is *down*, then in *backoff* (exponential,
jittered) and restarted by itself. :meth:`TunnelManager.aclose` ends every ssh it started; so does the
console's death in any form, including SIGTERM and SIGKILL (each ssh gets ``PR_SET_PDEATHSIG`` on Linux,
plus an ``atexit`` hook elsewhere), so no tunnel outlives the console.

The fleet source asks :meth:`TunnelManager.url_for` for each host's base URL: the configured url for
direct hosts, ``http://127.0.0.1:<local port>`` for tunnelled ones (starting or reusing the tunnel and
waiting for it, up to ``connect_timeout_s``); a tunnel that is down raises :class:`TunnelError` at once,
with ssh's own last words, so one broken host never stalls the others.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import os
import random
import re
import shutil
import signal
import socket
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from console.settings import HostConfig

BASE_OPTIONS = (
    "-o",
    "ExitOnForwardFailure=yes",
    "-o",
    "ServerAliveInterval=15",
    "-o",
    "ServerAliveCountMax=3",
    "-o",
    "BatchMode=yes",
)
DEFAULT_AGENT_PORT = 9300
BACKOFF_MAX_S = 30.0  # the longest wait between two attempts to bring a failed tunnel back
_TARGET_RE = re.compile(r"[^\s@]+@[^\s@]+|[^\s@]+")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_REFUSED_OPTIONS = {"-f": "backgrounds ssh, so the tunnel could not be supervised", "-N": "is always set"}
STATUSES = ("up", "starting", "down", "backoff")


class TunnelError(ConnectionError):
    """The host's tunnel is not up; the message is one line with ssh's reason. ``starting``: it is still
    coming up (the host is "connecting via ssh", not unreachable)."""

    def __init__(self, message: str, *, starting: bool = False) -> None:
        super().__init__(message)
        self.starting = starting


@dataclass(frozen=True, slots=True)
class TunnelState:
    status: str  # "up" | "starting" | "down" | "backoff"
    detail: str  # what ssh said last, or what is happening
    since: float  # the manager's clock (monotonic) when this status began
    restarts: int  # relaunches after the tunnel dropped or failed
    pid: int | None  # the ssh process, when one is running
    local_port: int | None = None
    retry_in_s: float | None = None  # backoff: seconds until the next attempt (counts down)


def check_target(target: str) -> str | None:
    """Why ``target`` cannot be an ssh destination (it would be read as an option, or is malformed)."""
    if not target or target.startswith("-"):
        return f"ssh target {target!r} must not be empty or start with '-'"
    if _CONTROL_RE.search(target) or not _TARGET_RE.fullmatch(target):
        return f'ssh target {target!r} must be "user@host" or "host"'
    return None


def check_options(options: Sequence[str]) -> str | None:
    for opt in options:
        if _CONTROL_RE.search(opt):
            return "ssh_options must not contain control characters"
        if opt in _REFUSED_OPTIONS:
            return f"ssh option {opt} is not allowed: it {_REFUSED_OPTIONS[opt]}"
    return None


def split_agent_port(target: str, default: int = DEFAULT_AGENT_PORT) -> tuple[str, int]:
    """``user@gpu01:9400`` → (``user@gpu01``, 9400); without ``:PORT`` the default agent port. ValueError
    (one line) for a port that is not 1-65535. An IPv6 address needs brackets to carry a port."""
    head, sep, tail = target.rpartition(":")
    if not sep or (head.count(":") and not head.endswith("]")):
        return target, default  # no port, or a bare IPv6 address
    if not tail.isdigit() or not 1 <= int(tail) <= 65535:
        raise ValueError(f"ssh target {target!r}: the agent port after ':' must be 1-65535")
    user, at, host = head.rpartition("@")
    if host.startswith("[") and host.endswith("]"):
        head = f"{user}{at}{host[1:-1]}"
    return head, int(tail)


def ssh_hosts(spec: str, *, agent_port: int = DEFAULT_AGENT_PORT) -> list[HostConfig]:
    """Hosts for ``llmconsole --ssh user@gpu01,user@gpu02:9400``: each reached through a tunnel to the
    agent's loopback port on that host (``:PORT``, default 9300). ValueError (one line) on a bad or
    duplicate target."""
    hosts: list[HostConfig] = []
    for raw in spec.split(","):
        target, port = split_agent_port(raw.strip(), agent_port)
        problem = check_target(target)
        if problem:
            raise ValueError(problem)
        name = target.rsplit("@", 1)[-1]
        if any(h.name == name for h in hosts):
            raise ValueError(f"--ssh names host {name!r} twice")
        hosts.append(HostConfig(name=name, url=f"http://127.0.0.1:{port}", ssh=target))
    if not hosts:
        raise ValueError("--ssh needs at least one user@host")
    return hosts


def free_port(prefer: int | None = None) -> int:
    """A free loopback port: ``prefer`` (the tunnel's previous port, so its URL stays the same) if free."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", prefer or 0))
        except OSError:
            s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ssh_argv(ssh_binary: str, host: HostConfig, local_port: int) -> list[str]:
    """The ssh command line for ``host`` (never run through a shell)."""
    assert host.ssh is not None
    remote = urlsplit(host.url).hostname or "127.0.0.1"
    remote = f"[{remote}]" if ":" in remote else remote
    forward = f"127.0.0.1:{local_port}:{remote}:{host.tunnel_port}"
    return [ssh_binary, "-N", "-L", forward, *BASE_OPTIONS, *host.ssh_options, "--", host.ssh]


# --- never leak an ssh: die with the console -----------------------------------------------------------

_LIVE: set[int] = set()  # pids of running ssh processes started by any manager in this process


def _kill_live() -> None:
    for pid in list(_LIVE):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    _LIVE.clear()


atexit.register(_kill_live)


def _pdeathsig() -> Callable[[], None] | None:
    """A preexec_fn that makes the child receive SIGTERM when the console dies (Linux), else None."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before fork: the child only calls it
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the console died between fork and prctl
            os._exit(1)

    return preexec


# --- the manager ------------------------------------------------------------------------------------


class _Tunnel:
    def __init__(self, host: HostConfig, manager: TunnelManager) -> None:
        self.host, self.m = host, manager
        self.status, self.detail = "down", "not started"
        self.since = manager.clock()
        self.restarts = 0
        self.pid: int | None = None
        self.local_port: int | None = None
        self.proc: asyncio.subprocess.Process | None = None
        self.task: asyncio.Task[None] | None = None
        self.stderr: deque[str] = deque(maxlen=20)
        self.changed = asyncio.Event()
        self.retry_at: float | None = None  # backoff: when the next attempt starts (manager clock)

    @property
    def url(self) -> str:
        return f"{urlsplit(self.host.url).scheme}://127.0.0.1:{self.local_port}"

    def state(self) -> TunnelState:
        left = (
            None
            if self.status != "backoff" or self.retry_at is None
            else max(0.0, self.retry_at - self.m.clock())
        )
        return TunnelState(
            self.status, self.detail, self.since, self.restarts, self.pid, self.local_port, left
        )

    def set(self, status: str, detail: str) -> None:
        if status != self.status:
            self.since = self.m.clock()
        self.status, self.detail = status, detail
        self.changed.set()
        self.changed = asyncio.Event()

    def start(self) -> None:
        if self.task is None or self.task.done():
            self.set("starting", f"launching ssh {self.host.ssh}")
            self.task = asyncio.create_task(self.run(), name=f"ssh-tunnel:{self.host.name}")

    async def run(self) -> None:
        delay = self.m.backoff_initial_s
        first = True
        while True:
            if not first:
                self.restarts += 1
            first = False
            up_for = await self.once()
            if up_for is not None and up_for >= self.m.stable_s:
                delay = self.m.backoff_initial_s
            wait = delay * (0.5 + 0.5 * self.m.rng())
            self.retry_at = self.m.clock() + wait
            self.set("backoff", self.detail)  # "retrying in" is computed when shown, so it counts down
            await asyncio.sleep(wait)
            self.retry_at = None
            delay = min(delay * 2, self.m.backoff_max_s)

    async def once(self) -> float | None:
        """Run ssh until it exits; return how long the tunnel was up (None if it never came up)."""
        problem = check_target(self.host.ssh or "") or check_options(self.host.ssh_options)
        binary = shutil.which(self.m.ssh_binary)
        if problem or binary is None:
            self.set("down", problem or f"ssh client {self.m.ssh_binary!r} not found")
            return None
        self.local_port = free_port(self.local_port)
        argv = ssh_argv(binary, self.host, self.local_port)
        self.stderr.clear()
        self.set(
            "starting",
            f"ssh {self.host.ssh}: forwarding 127.0.0.1:{self.local_port} to agent port {self.host.tunnel_port}",
        )
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # no terminal signals (Ctrl-C) reach ssh; we stop it ourselves
                preexec_fn=self.m.preexec,
            )
        except OSError as exc:
            self.set("down", f"cannot run {binary}: {exc.strerror or exc}")
            return None
        self.proc, self.pid = proc, proc.pid
        _LIVE.add(proc.pid)
        reader = asyncio.create_task(self._drain(proc))
        up_at: float | None = None
        try:
            if await self._wait_ready(proc):
                up_at = self.m.clock()
                self.set(
                    "up",
                    f"ssh {self.host.ssh}: 127.0.0.1:{self.local_port} → agent port {self.host.tunnel_port}",
                )
                await proc.wait()
            elif proc.returncode is None:
                self.stderr.append(f"the forward did not come up within {self.m.connect_timeout_s:g}s")
                await _stop(proc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reader, 1.0)
            self.set("down", self._exit_detail(proc.returncode))
        finally:
            if proc.returncode is None:
                await _stop(proc)
            reader.cancel()
            _LIVE.discard(proc.pid)
            self.proc, self.pid = None, None
        return None if up_at is None else self.m.clock() - up_at

    async def _wait_ready(self, proc: asyncio.subprocess.Process) -> bool:
        deadline = self.m.clock() + self.m.connect_timeout_s
        while self.m.clock() < deadline:
            if proc.returncode is not None:
                return False
            if await _accepts(self.local_port):  # type: ignore[arg-type]
                return proc.returncode is None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 0.1)
        return False

    async def _drain(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        while True:
            line = await proc.stderr.readline()
            if not line:
                return
            text = line.decode("utf-8", errors="replace").strip()
            if text:
                self.stderr.append(text[:300])

    def _exit_detail(self, code: int | None) -> str:
        how = f"signal {-code}" if code is not None and code < 0 else f"code {code}"
        said = next(
            (s for s in reversed(self.stderr) if not s.startswith("Warning: Permanently added")), None
        )
        return f"ssh exited ({how}): {said}" if said else f"ssh exited ({how})"


class TunnelManager:
    """SSH tunnels for the hosts that have ``ssh``; ``url_for`` is the fleet source's base-URL hook."""

    def __init__(
        self,
        hosts: Iterable[HostConfig],
        *,
        ssh_binary: str = "ssh",
        clock: Callable[[], float] = time.monotonic,
        connect_timeout_s: float = 15.0,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = BACKOFF_MAX_S,
        stable_s: float = 30.0,
        rng: Callable[[], float] = random.random,
        wait: bool = True,
    ) -> None:
        """``wait``: ``url_for`` waits (up to ``connect_timeout_s``, the tunnel's own deadline) for a
        starting tunnel — one-shot verbs; False: it answers at once that the host is still connecting —
        the interactive console, whose poll rounds must not stall behind one slow ProxyJump."""
        self.hosts = {h.name: h for h in hosts}
        self.ssh_binary, self.clock, self.rng = ssh_binary, clock, rng
        self.connect_timeout_s, self.stable_s = connect_timeout_s, stable_s
        self.backoff_initial_s, self.backoff_max_s = backoff_initial_s, backoff_max_s
        self.preexec = _pdeathsig()
        self.wait = wait
        self._tunnels: dict[str, _Tunnel] = {}
        self._closed = False

    def _tunnel(self, host: HostConfig) -> _Tunnel:
        t = self._tunnels.get(host.name)
        if t is None:
            self.hosts.setdefault(host.name, host)
            t = self._tunnels[host.name] = _Tunnel(host, self)
        return t

    async def start(self) -> None:
        """Start every tunnel now (``url_for`` also starts them on first use)."""
        for host in self.hosts.values():
            if host.ssh is not None and not self._closed:
                self._tunnel(host).start()

    async def url_for(self, host: HostConfig) -> str:
        """The base URL to reach ``host``'s agent; raises TunnelError when its tunnel is not up."""
        if host.ssh is None:
            return host.url
        if self._closed:
            raise TunnelError(f"{host.name}: tunnels are closed")
        t = self._tunnel(host)
        t.start()
        if t.status == "starting" and not self.wait:
            raise TunnelError(f"connecting via ssh {host.ssh} ({self.clock() - t.since:.0f}s)", starting=True)
        deadline = self.clock() + self.connect_timeout_s + 1.0
        while t.status == "starting":
            left = deadline - self.clock()
            if left <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(t.changed.wait(), left)
        if t.status == "up":
            return t.url
        if t.status == "starting":
            raise TunnelError(f"ssh tunnel did not come up within {self.connect_timeout_s:g}s: {t.detail}")
        state = t.state()
        again = "" if self.wait or state.retry_in_s is None else f"; retrying in {state.retry_in_s:.0f}s"
        raise TunnelError(f"ssh tunnel {'failed' if self.wait else t.status}: {t.detail}{again}")

    def state(self, host_name: str) -> TunnelState | None:
        """The tunnel's state; None for a host reached directly (no ``ssh``). KeyError if unknown."""
        host = self.hosts[host_name]
        if host.ssh is None:
            return None
        t = self._tunnels.get(host_name)
        return t.state() if t is not None else TunnelState("down", "not started", self.clock(), 0, None)

    def states(self) -> dict[str, TunnelState]:
        return {name: s for name in self.hosts if (s := self.state(name)) is not None}

    async def aclose(self) -> None:
        """Stop every tunnel and its ssh process."""
        self._closed = True
        tunnels = list(self._tunnels.values())
        for t in tunnels:
            if t.task is not None:
                t.task.cancel()
        for t in tunnels:
            if t.task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t.task
            if t.proc is not None and t.proc.returncode is None:
                await _stop(t.proc)
            t.set("down", "closed")

    async def __aenter__(self) -> TunnelManager:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def _accepts(port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 0.5)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def _stop(proc: asyncio.subprocess.Process, grace_s: float = 2.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), grace_s)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
    _LIVE.discard(proc.pid)
