"""Deciding what to take over before an engine starts: a state file's process, or a launch on its port.

``judge``: adopt only a process that is *positively identified*: same boot, same PID with the same
start time, the same command line hash and the launch's marker in its environment. Everything else is
either "start fresh" (the recorded process is gone, or the file is from another boot) or "refuse" (the
PID is alive but is some other process: it is never signalled).

``after_agent_restart`` turns the state file and the engine's port into a ``Takeover``; ``on_port``
does the same for a port found held before a start (an unrecorded launch of ours is adopted).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from agents.supervisor import statefile
from agents.supervisor.ownership import OwnLaunch, find_own_launch
from agents.supervisor.plan import ProcessPlan
from agents.supervisor.portcheck import PortCheck, check_port
from agents.supervisor.proctree import ProcInfo, boot_id, cmdline_hash, read_marker, read_stat
from agents.supervisor.statefile import EngineRecord


@dataclass(frozen=True, slots=True)
class Verdict:
    """``adopt`` (with the live process's ``info``), ``fresh`` or ``refuse``, with a one-line reason.

    ``leftovers_ours``: the recorded leader is gone in this same boot, so live processes carrying the
    recorded marker are positively ours (orphaned workers) and may be killed before a fresh start.
    """

    action: Literal["adopt", "fresh", "refuse"]
    reason: str
    info: ProcInfo | None = None
    leftovers_ours: bool = False


def judge(rec: EngineRecord, current_boot_id: str | None) -> Verdict:
    """Check every identity field of ``rec`` against the live system."""
    if current_boot_id is None:
        return Verdict("refuse", "cannot read this machine's boot_id; the state file cannot be verified")
    if rec.boot_id != current_boot_id:
        return Verdict("fresh", f"state file is from another boot (boot_id {rec.boot_id}); discarded")
    info = read_stat(rec.pid)
    if info is None or info.dead:
        return Verdict("fresh", f"PID {rec.pid} from the state file has exited", leftovers_ours=True)
    mismatches = []
    if info.starttime != rec.starttime:
        mismatches.append("start time differs")
    if cmdline_hash(rec.pid) != rec.cmdline_sha256:
        mismatches.append("command line differs")
    if read_marker(rec.pid) != rec.marker:
        mismatches.append("launch marker missing")
    if mismatches:
        return Verdict(
            "refuse",
            f"state file names PID {rec.pid} but it is a different process; "
            f"not adopted ({', '.join(mismatches)})",
        )
    return Verdict("adopt", f"adopted PID {rec.pid}", info=info)


@dataclass(frozen=True, slots=True)
class Takeover:
    """What to do about an engine before (re)starting it; ``notes`` are events to record first, in order.

    - ``adopt``: take over the live process of ``rec`` (the state file) or of ``own`` (an unrecorded
      launch of this engine by this agent, holding its port), with its ``info``, found in ``source``;
    - ``refuse``: end ``failed`` with ``reason``;
    - ``start``: start fresh; first SIGKILL what is left of ``leftovers`` (a recorded launch whose leader
      exited this boot) and, when ``discard``, remove the state file.
    """

    action: Literal["adopt", "refuse", "start"]
    reason: str = ""
    rec: EngineRecord | None = None
    own: OwnLaunch | None = None
    info: ProcInfo | None = None
    source: str = "the state file"
    leftovers: EngineRecord | None = None
    discard: bool = False
    notes: tuple[str, ...] = ()


def on_port(check: PortCheck, plan: ProcessPlan, tag: str) -> Takeover | None:
    """The engine's port is held (``check``). If the holder belongs to a launch of this engine by this
    agent that no state file records (a state write failed): adopt its leader, or refuse a leftover whose
    leader is gone. None when the holder is not ours (the caller reports "port in use" as usual)."""
    if check.holder_pid is None:
        return None
    own = find_own_launch(check.holder_pid, plan.engine_id, tag)
    if own is None:
        return None
    if not own.leader:
        return Takeover(
            "refuse",
            f"{check.error}: an unrecorded leftover of this engine's earlier launch "
            f"(marker {own.marker}) whose leader is gone; not adopted, stop it to start the engine",
        )
    return Takeover("adopt", own=own, info=own.info, source=f"an unrecorded launch found on port {plan.port}")


def after_agent_restart(state_path: Path, plan: ProcessPlan, tag: str) -> Takeover:
    """From the state file: no file, a corrupt one, or one from another boot: start fresh. Recorded PID
    exited: kill its leftovers, start fresh. Positively identified: adopt. Any other live PID is never
    signalled: start fresh if the engine's port is free, else refuse (unless an unrecorded launch of
    ours holds the port: ``on_port``)."""
    rec, err = statefile.read_record(state_path)
    notes = (f"state file ignored: {err}",) if err else ()
    if rec is None:
        return Takeover("start", notes=notes)
    verdict = judge(rec, boot_id())
    if verdict.action == "adopt" and verdict.info is not None:
        return Takeover("adopt", rec=rec, info=verdict.info, notes=notes)
    if verdict.action == "refuse":
        check = check_port(plan.host, plan.port)
        if not check.free:
            held = on_port(check, plan, tag) or Takeover("refuse", f"{verdict.reason}; {check.error}")
            return replace(held, notes=notes)
        return Takeover(
            "start", discard=True, notes=(*notes, f"{verdict.reason}; port is free, starting fresh")
        )
    return Takeover(
        "start",
        leftovers=rec if verdict.leftovers_ours else None,
        discard=True,
        notes=(*notes, verdict.reason),
    )
