"""``--config`` and ``--ssh`` for every verb that reads the fleet, accepted before or after the verb.

``llmconsole --ssh ops@gpu01 status`` and ``llmconsole status --ssh ops@gpu01`` mean the same: each verb's
own options get a verb-specific ``dest`` (argparse would otherwise overwrite the global value with the
verb's default), and :func:`fleet_config` takes the verb's value first, then the global one.
"""

from __future__ import annotations

import argparse
from typing import Any

from console.launch import resolve_config
from console.settings import ConsoleConfig

SSH_HELP = "add hosts reached through SSH: USER@HOST[:AGENTPORT],... (agent port default 9300)"


def add_fleet_arguments(parser: Any, verb: str) -> None:
    parser.add_argument(
        "--config",
        dest=f"{verb}_config",
        metavar="PATH",
        help="config file (default: ./config.toml, $LLMCONSOLE_CONFIG, ~/.config/llmconsole/config.toml)",
    )
    parser.add_argument("--ssh", dest=f"{verb}_ssh", metavar="USER@HOST[:PORT],...", help=SSH_HELP)


def chosen(args: argparse.Namespace, verb: str, what: str) -> str | None:
    """The verb's own ``--config``/``--ssh`` value, else the global one."""
    own = getattr(args, f"{verb}_{what}", None)
    return own if own is not None else getattr(args, "console_config" if what == "config" else "ssh", None)


def fleet_config(args: argparse.Namespace, verb: str) -> ConsoleConfig:
    """The console config for ``verb`` (ConfigError, one line, on bad input)."""
    return resolve_config(chosen(args, verb, "config"), chosen(args, verb, "ssh"))


__all__ = ["SSH_HELP", "add_fleet_arguments", "chosen", "fleet_config"]
