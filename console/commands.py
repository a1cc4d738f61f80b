"""Command palette (ctrl+p): jump to a host or engine, run an engine action, switch screen, open the
calculator. Commands are built from the app's FleetState (never from live calls); what they do goes
through the App's public actions or the messages of console.messages (this module never imports the App)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

from textual.app import App
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.message import Message

from console.messages import ActionRequested, EngineChosen, HostChosen
from console.screens import ENGINE_ACTIONS, action_reason, console_view

DISCOVER_LIMIT = 40


@dataclass(frozen=True, slots=True)
class Command:
    title: str
    help: str
    run: Callable[[], object]


def _post(app: App, message: Callable[..., Message], *args: str) -> None:
    """Post a new ``message(*args)`` to the App (built when the command runs, so each run posts its own)."""
    app.post_message(message(*args))


def fleet_commands(app: App) -> Iterator[Command]:
    """Every palette command for the current fleet state, screens first."""
    yield Command("Show fleet", "the fleet table (key 1)", partial(app.run_action, "go('fleet')"))
    yield Command(
        "Show alerts", "every active and recent alert (key 2)", partial(app.run_action, "go('alerts')")
    )
    yield Command(
        "Open calculator", "VRAM and break-even calculator (key c)", partial(app.run_action, "go('calc')")
    )
    yield Command("Help: keys", "every key binding", partial(app.run_action, "help"))
    view = console_view(app)
    for h in view.fleet.hosts.values():
        yield Command(f"Go to host {h.name}", f"{h.status}", partial(_post, app, HostChosen, h.name))
        engines = h.snapshot.engines if h.snapshot else ()
        for e in engines:
            where = f"{h.name}/{e.id}"
            yield Command(
                f"Open engine {where}",
                f"{e.kind} · {e.state} · {e.served_model_name or e.model or ''}",
                partial(_post, app, EngineChosen, h.name, e.id),
            )
            for verb, label in ENGINE_ACTIONS.items():
                if action_reason(view, h.name, e.id, verb) is not None:
                    continue  # refused (no token, replay, a watched engine without that command): not offered
                yield Command(
                    f"{label} engine {where}",
                    f"asks for confirmation first · model {e.model or '?'}",
                    partial(_post, app, ActionRequested, h.name, e.id, verb),
                )


class FleetCommands(Provider):
    """Palette entries over the fleet (hosts, engines, actions) and the console's screens."""

    async def discover(self) -> Hits:
        for n, cmd in enumerate(fleet_commands(self.app)):
            if n >= DISCOVER_LIMIT:
                break
            yield DiscoveryHit(cmd.title, cmd.run, help=cmd.help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for cmd in fleet_commands(self.app):
            score = matcher.match(cmd.title)
            if score > 0:
                yield Hit(score, matcher.highlight(cmd.title), cmd.run, help=cmd.help)


__all__ = ["Command", "FleetCommands", "fleet_commands"]
