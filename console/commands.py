"""Command palette (ctrl+p): jump to a host or engine, run an engine action, switch screen, open the
calculator. Commands are built from the app's FleetState (never from live calls)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from textual.command import DiscoveryHit, Hit, Hits, Provider

from console.screens import ENGINE_ACTIONS

if TYPE_CHECKING:
    from console.app import LlmConsole

DISCOVER_LIMIT = 40


@dataclass(frozen=True, slots=True)
class Command:
    title: str
    help: str
    run: Callable[[], object]


def fleet_commands(app: LlmConsole) -> Iterator[Command]:
    """Every palette command for the current fleet state, screens first."""
    yield Command("Show fleet", "the fleet table", partial(app.action_switch_mode, "fleet"))
    yield Command("Show alerts", "every active and recent alert", partial(app.action_switch_mode, "alerts"))
    yield Command("Open calculator", "VRAM and break-even calculator", app.action_calculator)
    yield Command("Help: keys", "every key binding", app.action_help)
    state = app.fleet
    for h in state.hosts.values():
        yield Command(f"Go to host {h.name}", f"{h.status}", partial(app.show_fleet_row, h.name))
        engines = h.snapshot.engines if h.snapshot else ()
        for e in engines:
            where = f"{h.name}/{e.id}"
            yield Command(f"Open engine {where}", f"{e.kind} · {e.state} · {e.served_model_name or e.model or ''}",
                          partial(app.open_engine, h.name, e.id))  # fmt: skip
            block = app.source.action_block(h.name)
            for verb, label in ENGINE_ACTIONS.items():
                if block is None:
                    yield Command(f"{label} engine {where}", f"asks for confirmation first · model {e.model or '?'}",
                                  partial(app.request_action, h.name, e.id, verb))  # fmt: skip


class FleetCommands(Provider):
    """Palette entries over the fleet (hosts, engines, actions) and the console's screens."""

    async def discover(self) -> Hits:
        for n, cmd in enumerate(fleet_commands(self.app)):  # type: ignore[arg-type]
            if n >= DISCOVER_LIMIT:
                break
            yield DiscoveryHit(cmd.title, cmd.run, help=cmd.help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for cmd in fleet_commands(self.app):  # type: ignore[arg-type]
            score = matcher.match(cmd.title)
            if score > 0:
                yield Hit(score, matcher.highlight(cmd.title), cmd.run, help=cmd.help)


__all__ = ["Command", "FleetCommands", "fleet_commands"]
