"""The agent's process supervisor: launch, watch, restart, whole-tree kill and re-adoption of engines.

Engine-agnostic: it runs a ready-made ``ProcessPlan`` (argv/env built by the engine's adapter) and
never looks at the engine's kind. See ``engine.py`` for the state machine and the rules; ``watched.py``
watches an engine the agent did not start (``managed = false``) behind the same surface.
"""

from __future__ import annotations

from agents.supervisor.engine import STATES, EngineSupervisor
from agents.supervisor.options import Hooks, Tuning
from agents.supervisor.plan import MARKER_VAR, Policy, ProcessPlan
from agents.supervisor.reaper import REAPER, ExitStatus
from agents.supervisor.watched import WatchedEngine, WatchPlan

__all__ = [
    "MARKER_VAR",
    "REAPER",
    "STATES",
    "EngineSupervisor",
    "ExitStatus",
    "Hooks",
    "Policy",
    "ProcessPlan",
    "Tuning",
    "WatchPlan",
    "WatchedEngine",
]
