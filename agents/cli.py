"""`llmconsole agent` — run the agent described by ``[agent]`` in the config; manage its API tokens.

SIGTERM/SIGINT stop the agent and leave its engines running (the next agent re-adopts them), unless
``--stop-engines-on-exit`` (or ``stop_engines_on_exit = true``) asks to stop them too.

``llmconsole agent token add NAME --role viewer|operator [--tokens-file PATH]`` generates a token,
appends its hash to the tokens file (created 0600) and prints the token once; ``token list`` and
``token remove NAME`` manage the rest. Without ``--tokens-file`` the file is ``[agent] tokens_file`` of
the config. The running agent picks up changes without a restart.

``llmconsole agent audit verify [--config PATH]`` checks the audit log (``agents/audit_cli.py``).

One agent per ``state_dir``: a second agent on the same state directory, or a state directory that cannot
be written, is one error line and exit 2 before anything listens, is adopted or started.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

PROG = "llmconsole agent"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=PROG,
        description="Supervise engines, collect GPU/host/engine data and serve the agent API. "
        "`llmconsole agent token --help`: manage API tokens.",
    )
    p.add_argument(
        "--config",
        help="config file (default: ./config.toml, $LLMCONSOLE_CONFIG, ~/.config/llmconsole/config.toml)",
    )
    p.add_argument("--listen", help="override [agent] listen, e.g. 127.0.0.1:9300")
    p.add_argument(
        "--stop-engines-on-exit", action="store_true", help="stop supervised engines when the agent exits"
    )
    p.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    return p


def build_token_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=f"{PROG} token", description="Manage the agent's API bearer tokens (stored hashed).")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", parser_class=_Parser, required=True)
    common = _Parser(add_help=False)
    common.add_argument("--tokens-file", help="tokens file (default: [agent] tokens_file of the config)")
    common.add_argument("--config", help="config file to read [agent] tokens_file from")
    add = sub.add_parser("add", parents=[common], help="generate a token, store its hash, print it once")
    add.add_argument("name", help="who holds the token (shown in the audit log)")
    add.add_argument("--role", required=True, choices=["viewer", "operator"])
    sub.add_parser("list", parents=[common], help="list token names and roles")
    rm = sub.add_parser("remove", parents=[common], help="remove a token by name")
    rm.add_argument("name")
    return p


def _fail(message: str) -> int:
    sys.stderr.write(f"{PROG}: error: {message}\n")
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["token"]:
        return token_main(args_list[1:])
    if args_list[:1] == ["audit"]:
        from agents.audit_cli import main as audit_main

        return audit_main(args_list[1:])
    try:
        args = build_parser().parse_args(args_list)
    except SystemExit as exc:
        return int(exc.code or 0)
    from agents.auth import TokenFileError, TokenStore
    from agents.config import load_agent_config
    from agents.tomltables import ConfigError

    try:
        config = load_agent_config(_config_path(args.config))
        if args.listen:
            from dataclasses import replace

            from agents.config import parse_listen

            parse_listen(args.listen)
            config = replace(config, listen=args.listen)
        TokenStore.load(config.tokens_file)  # a bad tokens file stops the agent before it starts
    except (ConfigError, TokenFileError, ValueError) as exc:
        return _fail(str(exc))
    from agents.server import startup_problems

    problem = startup_problems(config)
    if problem:
        return _fail(problem)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from agents.statedir import StateDirError

    try:
        return asyncio.run(_run(config, args.stop_engines_on_exit or None))
    except (OSError, StateDirError) as exc:
        # e.g. the listen port is taken, or another agent holds the state directory: nothing was started
        return _fail(" ".join(str(exc).split()))


def _config_path(explicit: str | None) -> Path:
    from agents.tomltables import ConfigError, find_config

    path = find_config(explicit)
    if path is None:
        raise ConfigError(
            "no config file found (tried --config, ./config.toml, $LLMCONSOLE_CONFIG, "
            "~/.config/llmconsole/config.toml); the repository's config.toml is a commented example"
        )
    return path


def token_main(argv: Sequence[str]) -> int:
    try:
        args = build_token_parser().parse_args(list(argv))
    except SystemExit as exc:
        return int(exc.code or 0)
    from agents.auth import TokenFileError, add_token, list_tokens, remove_token
    from agents.config import load_agent_config
    from agents.tomltables import ConfigError

    try:
        if args.tokens_file:
            path = Path(args.tokens_file).expanduser()
        else:
            config = load_agent_config(_config_path(args.config))
            if config.tokens_file is None:
                return _fail(
                    f"{config.source}: [agent] tokens_file is not set; set it or pass --tokens-file PATH"
                )
            path = config.tokens_file
        if args.cmd == "add":
            token = add_token(path, args.name, args.role)
            sys.stderr.write(
                f"added {args.role} token {args.name!r} to {path}; it is shown once, store it now:\n"
            )
            sys.stdout.write(token + "\n")
        elif args.cmd == "list":
            for name, role in list_tokens(path):
                sys.stdout.write(f"{name}\t{role}\n")
        elif not remove_token(path, args.name):
            return _fail(f"{path}: no token named {args.name!r}")
        else:
            sys.stderr.write(f"removed token {args.name!r} from {path}\n")
    except (ConfigError, TokenFileError) as exc:
        return _fail(str(exc))
    return 0


async def _run(config, stop_engines: bool | None) -> int:
    from agents.server import serve

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def announce() -> None:  # called once the socket listens, before any request can be answered
        scheme = "https" if config.tls_cert is not None else "http"
        sys.stderr.write(
            f"{PROG}: listening on {scheme}://{config.listen} with {len(config.engines)} engine(s); "
            f"GPU source: {config.gpu_source}\n"
        )
        sys.stderr.flush()

    await serve(config, stop=stop, stop_engines=stop_engines, on_listening=announce)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
