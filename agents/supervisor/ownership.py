"""Which launches belong to this agent: launch markers tagged with the agent's state directory.

Every launch's marker (``LLMCONSOLE_ENGINE_ID`` in the engine's environment) is
``<engine_id>:<tag>:<launch uuid>``, where the tag is derived from the agent's resolved state directory.
Only one agent can hold a state directory (``agents/statedir.py``), so a live process whose marker has
this engine's id *and* this agent's tag was launched for this engine by this agent or an earlier one on
the same state directory, even when no state file records it (a state write failed). Such a process
found on the engine's port is adopted (or reported as unrecorded), never blamed as "port in use".
"""

from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from agents.supervisor.proctree import ProcInfo, read_marker, read_stat


def agent_tag(state_dir: Path | str) -> str:
    """A short, stable tag for the agent owning ``state_dir`` (12 hex digits of its resolved path)."""
    real = os.path.realpath(os.path.expanduser(str(state_dir)))
    return hashlib.sha256(real.encode("utf-8", "surrogateescape")).hexdigest()[:12]


def new_marker(engine_id: str, tag: str) -> str:
    """A fresh launch marker for ``engine_id`` under this agent's tag."""
    return f"{engine_id}:{tag}:{uuid.uuid4().hex}"


def owns(marker: str | None, engine_id: str, tag: str) -> bool:
    """True when ``marker`` is a launch of ``engine_id`` by the agent with ``tag``.

    The uuid part has no ``:``, so splitting it off leaves exactly ``engine_id:tag`` (an engine id that
    itself contains ``:`` can never alias another engine's prefix)."""
    if not marker or ":" not in marker:
        return False
    prefix, _, launch = marker.rpartition(":")
    return (
        prefix == f"{engine_id}:{tag}" and len(launch) == 32 and all(c in "0123456789abcdef" for c in launch)
    )


@dataclass(frozen=True, slots=True)
class OwnLaunch:
    """A live process of one of this engine's launches, found from the PID that holds its port.

    ``leader``: it is the launch's leader (it leads its own session, as every launch does), so it can be
    adopted. Otherwise it is a leftover of a launch whose leader is gone."""

    pid: int
    info: ProcInfo
    marker: str

    @property
    def leader(self) -> bool:
        return self.info.session == self.pid


def find_own_launch(holder_pid: int, engine_id: str, tag: str) -> OwnLaunch | None:
    """The launch of ``engine_id`` by this agent that ``holder_pid`` belongs to, or None if it is not ours.

    The holder's session leader is checked first (a worker or API-server child may hold the socket; the
    leader created the session), then the holder itself (engines that retitle themselves can lose the
    marker in /proc/<pid>/environ, but the leader keeps it)."""
    info = read_stat(holder_pid)
    if info is None or info.dead:
        return None
    for pid in dict.fromkeys((info.session, holder_pid)):
        if pid <= 1 or pid == os.getpid():
            continue
        found = info if pid == holder_pid else read_stat(pid)
        if found is None or found.dead:
            continue
        marker = read_marker(pid)
        if owns(marker, engine_id, tag):
            assert marker is not None
            return OwnLaunch(pid, found, marker)
    return None
