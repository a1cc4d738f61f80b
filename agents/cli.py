"""`llmconsole agent` — run the agent described by ``[agent]`` in the config.

SIGTERM/SIGINT stop the agent and leave its engines running (the next agent re-adopts them), unless
``--stop-engines-on-exit`` (or ``stop_engines_on_exit = true``) asks to stop them too.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

PROG = "llmconsole agent"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="Supervise engines, collect GPU/host/engine data and serve the agent API.")
    p.add_argument("--config", help="config file (default: ./config.toml, $LLMCONSOLE_CONFIG, ~/.config/llmconsole/config.toml)")
    p.add_argument("--listen", help="override [agent] listen, e.g. 127.0.0.1:9300")
    p.add_argument("--stop-engines-on-exit", action="store_true", help="stop supervised engines when the agent exits")
    p.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    return p


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    from agents.config import ConfigError, find_config, load_agent_config

    try:
        path = find_config(args.config)
        if path is None:
            raise ConfigError(
                "no config file found (tried --config, ./config.toml, $LLMCONSOLE_CONFIG, "
                "~/.config/llmconsole/config.toml); the repository's config.toml is a commented example"
            )
        config = load_agent_config(path)
        if args.listen:
            from dataclasses import replace

            from agents.config import parse_listen

            parse_listen(args.listen)
            config = replace(config, listen=args.listen)
    except (ConfigError, ValueError) as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return 2
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return asyncio.run(_run(config, args.stop_engines_on_exit or None))
    except OSError as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return 1


async def _run(config, stop_engines: bool | None) -> int:
    from agents.server import serve

    stop = asyncio.Event()
    ready = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def announce() -> None:
        await ready.wait()
        sys.stderr.write(
            f"{PROG}: listening on http://{config.listen} with {len(config.engines)} engine(s); "
            f"GPU source: {config.gpu_source}\n"
        )
        sys.stderr.flush()

    note = asyncio.create_task(announce())
    try:
        await serve(config, stop=stop, stop_engines=stop_engines, ready=ready)
    finally:
        note.cancel()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
