"""One launch of an engine: the ``Launcher`` that spawns or adopts it, and the ``Launch`` record of it.

A ``Launch`` is created for every start and every adoption and replaces the previous one. Its
``tree``/``leader`` are cleared once its processes are gone (stopped, or cleaned up after an exit);
the other fields (``marker``, ``adopted``, ``exit`` ...) stay readable until the next launch.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import psutil

from agents.schema import rfc3339
from agents.supervisor.logs import LogFile
from agents.supervisor.ownership import OwnLaunch, new_marker
from agents.supervisor.plan import MARKER_VAR, ProcessPlan
from agents.supervisor.proctree import ProcessTree, ProcInfo, boot_id, cmdline_hash, process_age_s, read_stat
from agents.supervisor.reaper import ExitStatus, ExitWatch, Reaper
from agents.supervisor.statefile import EngineRecord


@dataclass(slots=True)
class Launch:
    """The fields set per start. Times ending ``_at`` are on the supervisor's monotonic clock."""

    tree: ProcessTree | None = None
    leader: int | None = None
    marker: str | None = None
    adopted: bool = False
    exit: ExitStatus | None = None  # the leader's exit status, once known
    exit_watch: ExitWatch | None = None  # pidfd watch on the leader (inactive where pidfds are missing)
    launched_at: float | None = None  # backdated by the process's age for an adopted engine
    launched_wall: float | None = None
    ready_at: float | None = None
    progress_at: float | None = None  # launch, then each new log output while starting (start-up timeout)
    log_mark: int = 0  # where this launch's output begins in the log's in-memory lines
    written_hash: str | None = None  # cmdline hash in the last state record written for this launch

    def close_watch(self) -> None:
        if self.exit_watch is not None:
            self.exit_watch.close()
            self.exit_watch = None

    def running(self) -> bool:
        """Some process of the tree is still alive (a fresh check)."""
        return self.tree is not None and bool(self.tree.survivors())

    def stalled(self, now: float, timeout_s: float) -> bool:
        """No new log output for ``timeout_s`` (while starting)."""
        return self.progress_at is not None and now - self.progress_at >= timeout_s

    def poll_exit(self, reaper: Reaper) -> None:
        """Exit detection without a pidfd: once the leader's /proc entry is gone (or is another
        process), set ``exit`` to its reaped status (unknown when the agent did not reap it)."""
        if self.leader is None or self.tree is None:
            return
        info = read_stat(self.leader)
        if info is None or info.dead or info.starttime != self.tree.leader_starttime:
            reaper.reap_now()
            if self.exit is None:
                self.exit = reaper.status_of(self.leader) or ExitStatus(None, None)

    def forget(self) -> None:
        """Its processes are gone: drop the tree, the leader and the exit watch."""
        self.close_watch()
        self.tree, self.leader = None, None

    def record(
        self, plan: ProcessPlan, log_path: Path, restarts: int, wall: Callable[[], float]
    ) -> EngineRecord | None:
        """The state-file record that lets the next agent re-adopt this launch (None when nothing runs)."""
        if self.leader is None or self.tree is None or self.marker is None:
            return None
        try:
            create_time: float | None = psutil.Process(self.leader).create_time()
        except psutil.Error:
            create_time = None
        return EngineRecord(
            engine_id=plan.engine_id,
            boot_id=boot_id(),
            pid=self.leader,
            starttime=self.tree.leader_starttime,
            create_time=create_time,
            cmdline_sha256=cmdline_hash(self.leader),
            marker=self.marker,
            host=plan.host,
            port=plan.port,
            log_path=str(log_path),
            launched_at=rfc3339(self.launched_wall or wall()),
            restarts=restarts,
        )


def record_of_own(
    own: OwnLaunch, plan: ProcessPlan, log_path: Path, restarts: int, now_wall: float
) -> EngineRecord:
    """A state record for a launch of this engine found on its port that no state file records."""
    age = process_age_s(own.info.starttime)
    return EngineRecord(
        engine_id=plan.engine_id,
        boot_id=boot_id(),
        pid=own.pid,
        starttime=own.info.starttime,
        create_time=None,
        cmdline_sha256=cmdline_hash(own.pid),
        marker=own.marker,
        host=plan.host,
        port=plan.port,
        log_path=str(log_path),
        launched_at=rfc3339(now_wall - age),
        restarts=restarts,
    )


@contextlib.contextmanager
def engine_output(log: LogFile, banner: str) -> Iterator[int | None]:
    """The engine log opened for appending, with ``banner`` appended first; closed on exit.

    Yields None when the file cannot be opened (counted in ``log.errors``): no log file is no reason
    not to run the engine."""
    fd: int | None
    try:
        fd = log.open_append()
    except OSError as exc:
        log.count_error(exc)
        fd = None
    try:
        if fd is not None:
            log.note(fd, banner)
        yield fd
    finally:
        if fd is not None:
            os.close(fd)


def spawn(plan: ProcessPlan, marker: str, out_fd: int | None) -> subprocess.Popen[bytes]:
    """Start ``plan.argv`` (never through a shell) in a new session and process group, with the launch
    marker in its environment and stdout+stderr going to ``out_fd``. Raises OSError when the program
    cannot be executed (e.g. ENOENT, EACCES, ENOTDIR)."""
    env = {**plan.env, MARKER_VAR: marker}
    return subprocess.Popen(  # noqa: S603 - argv list from the adapter, never a shell
        list(plan.argv),
        env=env,
        cwd=plan.cwd,
        stdin=subprocess.DEVNULL,
        stdout=out_fd if out_fd is not None else subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        close_fds=True,
    )


class Launcher:
    """Makes launches of one plan: spawns the engine, or takes over a process already running it.

    Both stamp ``launched_at``/``progress_at`` with one ``clock()`` reading; an adopted process's
    ``launched_at`` and ``launched_wall`` are backdated by its age. Output of earlier launches stays in
    the log but before the new launch's ``log_mark``."""

    def __init__(
        self,
        plan: ProcessPlan,
        log: LogFile,
        reaper: Reaper,
        tag: str,
        clock: Callable[[], float],
        wall: Callable[[], float],
    ) -> None:
        self._plan = plan
        self._log = log
        self._reaper = reaper
        self._tag = tag
        self._clock = clock
        self._wall = wall

    def spawn(self, on_exit: Callable[[str, ExitStatus], None]) -> Launch:
        """Start the engine with a new marker; the reaper calls ``on_exit(marker, status)`` when its
        leader exits. Raises OSError when the program cannot be executed."""
        plan = self._plan
        marker = new_marker(plan.engine_id, self._tag)
        banner = f"=== llmconsole: launch {marker} at {rfc3339(self._wall())}: {' '.join(plan.argv)}"
        with engine_output(self._log, banner) as fd:
            self._log.poll()
            mark = self._log.mark()  # the cause of a later exit is searched from here on
            popen = spawn(plan, marker, fd)
        pid = popen.pid
        info = read_stat(pid)
        tree = ProcessTree(marker, pid, info.starttime if info else 0, pgid=pid, sid=pid)
        run = Launch(tree=tree, leader=pid, marker=marker, log_mark=mark)
        self._reaper.add_leader(popen, partial(on_exit, marker))
        run.exit_watch = ExitWatch(pid, self._reaper.reap_now)
        run.launched_at = run.progress_at = self._clock()
        run.launched_wall = self._wall()
        return run

    def adopt(self, rec: EngineRecord, info: ProcInfo, on_exit: Callable[[str], None]) -> Launch:
        """Take over the positively identified process ``rec`` names (``info``: its /proc stat); its
        pidfd calls ``on_exit(marker)`` when it exits (it is not the agent's child)."""
        tree = ProcessTree(rec.marker, rec.pid, rec.starttime, pgid=info.pgrp, sid=info.session)
        tree.refresh(fresh=True)
        run = Launch(tree=tree, leader=rec.pid, marker=rec.marker, adopted=True)
        run.exit_watch = ExitWatch(rec.pid, partial(on_exit, rec.marker))
        age = process_age_s(rec.starttime)
        now = self._clock()
        run.launched_at, run.progress_at = now - age, now
        run.launched_wall = self._wall() - age
        run.log_mark = self._log.mark()
        return run
