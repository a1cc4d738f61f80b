"""Bare ``llmconsole``: open the console on the configured fleet.

``add_arguments(parser)`` adds ``--config`` and ``--ssh``; ``run(args)`` resolves the config (search
order of agents.config.find_config) and runs the app; ``run_console(config, source=..., title=...)`` is
what other entry points (the demo) call. Every problem is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from agents.tomltables import ConfigError, find_config
from console.fixturesource import FixtureFleetSource
from console.fleet import FleetSource
from console.settings import ConsoleConfig, load_console_config
from console.source import build_fleet_source
from console.stopsignals import exit_on_signals
from console.tunnels import ssh_hosts

PROG = "llmconsole"
SSH_AGENT_URL = "http://127.0.0.1:9300"  # the agent's default listen address, as seen on the ssh host


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        dest="console_config",
        metavar="PATH",
        help="config file (default: ./config.toml, $LLMCONSOLE_CONFIG, ~/.config/llmconsole/config.toml)",
    )
    parser.add_argument(
        "--ssh",
        metavar="USER@HOST,...",
        help=f"add hosts reached through SSH (agent at {SSH_AGENT_URL} on each host)",
    )


def resolve_config(explicit: str | None, ssh: str | None = None) -> ConsoleConfig:
    """The console config from the first config file found, plus ``--ssh`` hosts; ConfigError."""
    path = find_config(explicit)
    config = load_console_config(path) if path is not None else ConsoleConfig()
    if ssh:
        try:
            extra = tuple(ssh_hosts(ssh))
        except ValueError as exc:
            raise ConfigError(f"--ssh: {exc}") from None
        names = {h.name for h in config.hosts}
        for h in extra:
            if h.name in names:
                raise ConfigError(f"--ssh: host {h.name!r} is already configured")
            names.add(h.name)
        config = replace(config, hosts=config.hosts + extra)
    return config


def run(args: argparse.Namespace) -> int:
    try:
        config = resolve_config(getattr(args, "console_config", None), getattr(args, "ssh", None))
    except ConfigError as exc:
        sys.stderr.write(f"{PROG}: {exc}\n")
        return 2
    if not config.hosts and not config.prometheus:
        where = f" in {config.source}" if config.source else " (no config file found)"
        sys.stderr.write(
            f"{PROG}: no hosts configured{where}: add [[console.hosts]] or [[console.prometheus]], or try `{PROG} demo` "
            "for a local simulated fleet\n"
        )
        return 2
    return run_console(config)


def run_console(config: ConsoleConfig, *, source: FleetSource | None = None, title: str | None = None) -> int:
    """Run the console app until the user quits (exit code 0) or a stop signal asks it to exit (128 +
    the signal number; console.stopsignals)."""
    from console.app import LlmConsole  # Textual is imported only when the console really runs

    source = source if source is not None else build_fleet_source(config)
    if isinstance(source, FixtureFleetSource):
        app = LlmConsole(source, config, clock=source.clock, wall=source.wall, title=title, gc_policy=True)
    else:
        app = LlmConsole(source, config, title=title, gc_policy=True)
    with exit_on_signals(app) as asked:
        app.run()
    return asked[0] if asked else int(app.return_code or 0)


__all__ = ["add_arguments", "resolve_config", "run", "run_console"]
