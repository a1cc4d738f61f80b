"""Messages of the console app (small; posted on the App)."""

from __future__ import annotations

from textual.message import Message

from console.fleet import ActionResult
from console.state import FleetState


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
