"""The contract between the App and its screens and palette commands: a read-only view down, messages up.

Screens and commands never import the App (console.app). They read the fleet through ``ConsoleView``
(what the App provides: the current FleetState and the fleet source's read-only answers) and ask for
everything that changes the App's state or its screens by posting one of the messages below; a message
posted on a screen bubbles up to the App, which handles it (``LlmConsole.on_engine_chosen`` …).
"""

from __future__ import annotations

from typing import Protocol

from textual.message import Message

from console.fleet import ActionResult, FleetSource
from console.state import FleetAlert, FleetState


class ConsoleView(Protocol):
    """What screens and commands may read from the App they run in."""

    @property
    def fleet(self) -> FleetState:
        """The newest reduced fleet state."""
        ...

    @property
    def source(self) -> FleetSource:
        """The fleet source: for ``action_block`` and ``logs`` (never for actions: post ActionRequested)."""
        ...


class FleetUpdated(Message):
    """A poll round was reduced into a new FleetState. A newer one replaces an unprocessed older one."""

    def __init__(self, state: FleetState) -> None:
        super().__init__()
        self.state = state

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, FleetUpdated)


class ActionFinished(Message):
    """The agent answered an action (or did not: outcome "unknown")."""

    def __init__(self, result: ActionResult) -> None:
        super().__init__()
        self.result = result


class EngineChosen(Message):
    """Open this engine's detail screen (from the fleet table, an alert or the palette)."""

    def __init__(self, host: str, engine: str) -> None:
        super().__init__()
        self.host, self.engine = host, engine


class HostChosen(Message):
    """Show this host's row in the fleet table (a host-level alert, the palette)."""

    def __init__(self, host: str) -> None:
        super().__init__()
        self.host = host


class ActionRequested(Message):
    """The operator asked for start/stop/restart of an engine: the App confirms it, then sends it once."""

    def __init__(self, host: str, engine: str, verb: str) -> None:
        super().__init__()
        self.host, self.engine, self.verb = host, engine, verb


class AcknowledgeRequested(Message):
    """The operator acknowledged an active alert (this occurrence: a new ``since`` is a new alert)."""

    def __init__(self, alert: FleetAlert) -> None:
        super().__init__()
        self.alert = alert


__all__ = [
    "AcknowledgeRequested",
    "ActionFinished",
    "ActionRequested",
    "ConsoleView",
    "EngineChosen",
    "FleetUpdated",
    "HostChosen",
]
