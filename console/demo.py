"""`llmconsole demo` — a SIMULATED fleet on this machine and the console on it: what a newcomer runs first.

Three real agents (by default) on free loopback ports, each supervising simulated vLLM, SGLang and TGI
engines with built-in load and scripted incidents (a hang, a crash loop, KV-cache pressure), then the
console on them. ``--no-ui`` runs the fleet headless and prints the agent URLs and a console config.

Whatever ends the demo (quitting the console, Ctrl-C, SIGTERM, SIGHUP, a crash), every process it started
is stopped and the work directory removed (kept with ``--keep``). See :mod:`console.demo_fleet`.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from console.demo_fleet import FAST, NORMAL, WATCHED_NOTE, DemoError, DemoFleet, plan_fleet
from console.stopsignals import STOP_SIGNALS

PROG = "llmconsole demo"
TITLE = "llmconsole demo (SIMULATED fleet)"
READY_TIMEOUT_S = 90.0


class UsageError(Exception):
    """Bad input; printed as one line, exit code 2."""


def _hosts(text: str) -> int:
    try:
        n = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of hosts, got {text!r}") from None
    if not 1 <= n <= 16:
        raise argparse.ArgumentTypeError(f"must be between 1 and 16, got {n}")
    return n


def add_parser(subparsers: Any) -> None:
    """Register the ``demo`` verb on the ``llmconsole`` subparsers."""
    parser = subparsers.add_parser(
        "demo",
        help="a SIMULATED local fleet with scripted incidents, and the console on it",
        description=(
            "Start a local SIMULATED fleet (real agents supervising simulated vLLM, SGLang and TGI engines, "
            "with a hang, a crash loop and KV-cache pressure scripted in) and open the console on it. "
            "Everything it starts is stopped on exit."
        ),
    )
    parser.add_argument(
        "--no-ui",
        action="store_true",
        help="run the fleet headless; print the agent URLs and a console config",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the work directory (configs, logs, tokens) on exit"
    )
    parser.add_argument("--hosts", type=_hosts, default=3, metavar="N", help="number of agents (default 3)")
    parser.add_argument(
        "--fast", action="store_true", help="incidents within seconds instead of a minute (for tests)"
    )
    parser.add_argument(
        "--workdir",
        metavar="DIR",
        help="work directory (must be empty or absent; default: a new temporary one)",
    )


def _workdir(arg: str | None) -> tuple[Path, bool]:
    """(the work directory, whether we created it)."""
    if arg is None:
        return Path(tempfile.mkdtemp(prefix="llmconsole-demo-")).resolve(), True
    path = Path(arg).expanduser().resolve()
    if path.exists():
        if not path.is_dir():
            raise UsageError(f"--workdir {arg}: not a directory")
        if any(path.iterdir()):
            raise UsageError(f"--workdir {arg}: not empty (the demo removes its work directory on exit)")
        return path, False
    try:
        path.mkdir(parents=True)
    except OSError as exc:
        raise UsageError(f"--workdir {arg}: cannot create: {exc.strerror or exc}") from None
    return path, True


class _Session:
    """Owns the fleet and the work directory; :meth:`close` is idempotent and never interrupted by a
    second signal."""

    def __init__(self, fleet: DemoFleet, workdir: Path, *, created: bool, keep: bool) -> None:
        self.fleet, self.workdir, self.created, self.keep = fleet, workdir, created, keep
        self.closing = False

    def close(self) -> None:
        if self.closing:
            return
        self.closing = True
        if self.fleet.agents:  # started: say so while it stops (the last line on screen was "starting …")
            tty = sys.stderr.isatty()
            line = f"stopping demo fleet: {self.fleet.engine_count} engines, {len(self.fleet.agents)} agents…"
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.write(f"\r{line}\x1b[K\n" if tty else line + "\n")
                sys.stderr.flush()
        self.fleet.stop()
        if self.keep:
            sys.stderr.write(f"{PROG}: work directory kept: {self.workdir}\n")
        elif self.created:
            shutil.rmtree(self.workdir, ignore_errors=True)
        else:
            for child in self.workdir.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)

    def on_signal(self, signum: int, _frame: object) -> None:
        if self.closing:
            return  # already stopping: let the teardown finish
        self.close()
        raise SystemExit(128 + signum)


def _progress() -> Any:
    tty = sys.stderr.isatty()
    last: list[int] = [-1]

    def report(ready: int, total: int) -> None:
        if ready == last[0]:
            return
        last[0] = ready
        line = f"starting demo fleet: {ready}/{total} engines ready…"
        sys.stderr.write(f"\r{line}\x1b[K" if tty else line + "\n")
        if tty and ready == total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return report


def run(args: argparse.Namespace) -> int:
    try:
        workdir, created = _workdir(args.workdir)
    except UsageError as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return 2
    timings = FAST if args.fast else NORMAL
    fleet = DemoFleet(workdir, plan_fleet(args.hosts, timings), timings)
    session = _Session(fleet, workdir, created=created, keep=args.keep)
    atexit.register(session.close)
    previous = {sig: signal.signal(sig, session.on_signal) for sig in STOP_SIGNALS}
    started = time.monotonic()
    try:
        fleet.prepare()
        fleet.start()
        fleet.wait_ready(READY_TIMEOUT_S, _progress())
        elapsed = time.monotonic() - started
        if args.no_ui:
            return _headless(fleet, workdir, elapsed, keep=args.keep)
        return _console(fleet)
    except DemoError as exc:
        sys.stderr.write(f"\n{PROG}: error: {exc}\n" if sys.stderr.isatty() else f"{PROG}: error: {exc}\n")
        return 1
    except SystemExit as exc:  # a stop signal (the fleet is already down) or an exit from inside the console
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        return 0 if args.no_ui and code in (128 + signal.SIGINT, 128 + signal.SIGTERM) else code
    except KeyboardInterrupt:
        return 130
    finally:
        session.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        atexit.unregister(session.close)


def _console(fleet: DemoFleet) -> int:
    try:
        from console.launch import run_console
    except ImportError as exc:
        raise DemoError(f"the console UI is not part of this build ({exc}); try `{PROG} --no-ui`") from None
    from console.settings import load_console_config

    assert fleet.console_config is not None
    config = load_console_config(fleet.console_config)
    return int(run_console(config, title=TITLE) or 0)


def _headless(fleet: DemoFleet, workdir: Path, elapsed_s: float, *, keep: bool) -> int:
    assert fleet.console_config is not None
    out = sys.stdout
    fate = "kept" if keep else "removed"
    out.write(
        f"# {TITLE}: {len(fleet.agents)} agents, {fleet.engine_count} engines, ready in {elapsed_s:.1f} s\n"
    )
    out.write(f"# work dir: {workdir} ({fate} on exit); stop with Ctrl-C or SIGTERM\n")
    for agent in fleet.agents:
        engines = ", ".join(f"{e.id} ({e.kind})" for e in agent.plan.engines)
        out.write(f"# agent {agent.plan.name} {agent.url}  engines: {engines}\n")
        for e in agent.plan.engines:
            if e.incident:
                out.write(f"#   incident on {agent.plan.name}/{e.id}: {e.incident}\n")
            if not e.managed:
                out.write(f"#   watched on {agent.plan.name}/{e.id}: {WATCHED_NOTE} (managed = false)\n")
    out.write(f"# console config (also at {fleet.console_config}):\n")
    out.write(f"#   llmconsole --config {fleet.console_config}\n")
    out.write(fleet.console_config.read_text())
    out.write("# end of console config\n")
    out.flush()
    reported: set[str] = set()
    while True:
        time.sleep(1.0)
        for agent in fleet.dead_agents():
            if agent.plan.name not in reported:
                reported.add(agent.plan.name)
                code = agent.proc.returncode if agent.proc else None
                tail = agent.log_tail()
                sys.stderr.write(
                    f"{PROG}: agent {agent.plan.name} exited with code {code}"
                    + (f": {tail}" if tail else "")
                    + "\n"
                )
        if len(reported) == len(fleet.agents):
            sys.stderr.write(f"{PROG}: error: every agent has exited\n")
            return 1
