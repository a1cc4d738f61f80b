"""`llmconsole` — the command-line entry point.

Verbs are small modules with ``add_parser(subparsers)`` and ``run(args) -> int``. Verbs that run agent-side
programs (``agent``, ``probe``, ``sim-engine``) are handed their whole argument list and imported only when
invoked, so the console process never loads agent-side machinery (see the dependency rule in DESIGN.md).

Every bad input ends in one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib import import_module

PROG = "llmconsole"

# Verbs implemented by modules with add_parser/run (parsed here).
PARSED_VERBS: dict[str, str] = {
    "demo": "console.demo",
    "status": "console.status",
    "calc": "console.calc.cli",
    "rules": "console.rules",
    "bench": "console.bench.cli",
    "bundle": "console.bundle",
    "replay": "console.replay_cli",
}

# Verbs that own their whole argv (agent-side programs); value: "module:function" taking argv -> int.
DELEGATED_VERBS: dict[str, tuple[str, str]] = {
    "agent": (
        "agents.cli:main",
        "run the agent: supervise engines, collect, serve the API ([agent] in the config)",
    ),
    "sim-engine": ("agents.sim.cli:main", "run a simulated engine (vLLM, SGLang or TGI dialect) — SIMULATED"),
    "probe": ("agents.probe_cli:main", "normalized stats of one engine endpoint or exposition file"),
}
# Delegated verbs that read no config: a global ``--config`` before them is not handed over.
READS_NO_CONFIG = frozenset({"probe"})
# The order `llmconsole --help` lists the verbs in (a verb missing here comes last).
HELP_ORDER = ("demo", "status", "probe", "calc", "rules", "bench", "bundle", "replay", "agent", "sim-engine")


class CliError(Exception):
    """A bad command line; the message is printed as one line."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``llmconsole probe: error: ... (see --help)``."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _resolve(target: str) -> Callable[[list[str]], int]:
    module, _, func = target.partition(":")
    return getattr(import_module(module), func)


# The bare command (no verb) opens the console on the configured fleet.
CONSOLE_MODULE = "console.launch"


def _available(module: str) -> bool:
    try:
        import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name):
            return False  # the module is missing from this installation: its verb is not offered
        raise
    return True


def build_parser() -> Parser:
    parser = Parser(
        prog=PROG,
        description="The operations console for self-hosted LLM fleets (vLLM, SGLang, TGI).",
    )
    if _available(CONSOLE_MODULE):
        import_module(CONSOLE_MODULE).add_arguments(parser)
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=Parser)
    listed = {v: i for i, v in enumerate(HELP_ORDER)}
    for name in sorted([*PARSED_VERBS, *DELEGATED_VERBS], key=lambda v: listed.get(v, len(listed))):
        if name in DELEGATED_VERBS:
            sub.add_parser(name, help=DELEGATED_VERBS[name][1], add_help=False)
        elif _available(PARSED_VERBS[name]):
            import_module(PARSED_VERBS[name]).add_parser(sub)
    parser.set_defaults(_verbs=sub.choices)
    return parser


def _delegate(args: argparse.Namespace, args_list: list[str]) -> int:
    """``llmconsole --config X agent ...``: the delegated verb gets ``--config X`` and its own arguments."""
    verb = args.verb
    rest = args_list[args_list.index(verb) + 1 :]
    if getattr(args, "ssh", None):
        sys.stderr.write(
            f"{PROG} {verb}: error: --ssh does not apply to `{verb}` (it runs on this machine)\n"
        )
        return 2
    config = None if verb in READS_NO_CONFIG else getattr(args, "console_config", None)
    target, _ = DELEGATED_VERBS[verb]
    return _resolve(target)((["--config", config] if config else []) + rest)


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] in DELEGATED_VERBS:
        target, _ = DELEGATED_VERBS[args_list[0]]
        return _resolve(target)(args_list[1:])
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(args_list)
        if args.verb in DELEGATED_VERBS:  # global options before an agent-side verb: hand them over
            return _delegate(args, args_list)
        if extra:  # reported by the verb's own parser, so the message names the verb
            owner = args._verbs.get(args.verb, parser) if args.verb else parser
            owner.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:  # argparse exits for --help and for errors
        return int(exc.code or 0)
    try:
        if args.verb is None:
            if not _available(CONSOLE_MODULE):
                sys.stderr.write(
                    f"{PROG}: the fleet console is not part of this build; see `{PROG} --help`\n"
                )
                return 2
            return int(import_module(CONSOLE_MODULE).run(args))
        return int(import_module(PARSED_VERBS[args.verb]).run(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
