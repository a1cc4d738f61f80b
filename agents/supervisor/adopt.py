"""Deciding whether a state file's process may be re-adopted (reliability.md §1.5-H, §2.2).

Adopt only a process that is *positively identified*: same boot, same PID with the same start time,
the same command line hash and the launch's marker in its environment. Everything else is either
"start fresh" (the recorded process is gone, or the file is from another boot) or "refuse" (the PID
is alive but is some other process: it is never signalled; see ``EngineSupervisor.adopt_or_start``
for what happens next).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from agents.supervisor.proctree import ProcInfo, cmdline_hash, read_marker, read_stat
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
        return Verdict("refuse", f"state file names PID {rec.pid} but it is a different process; "
                                 f"not adopted ({', '.join(mismatches)})")
    return Verdict("adopt", f"adopted PID {rec.pid}", info=info)
