"""`llmconsole agent audit verify [--config PATH]` — check the agent's audit log against its key and head.

Exit 0 with a one-line summary when the log is intact; exit 1 with one line naming the first bad line and
why (edited, out of sequence, truncated, missing key or head, not JSON); exit 2 with one line for bad
usage, a bad config or a file that cannot be read. Notes (a key file group or others can read) go to stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

PROG = "llmconsole agent audit"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="Check the agent's audit log (HMAC chain, sequence, truncation).")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", parser_class=_Parser, required=True)
    v = sub.add_parser("verify", help="verify <state_dir>/audit.log; exit 0 intact, 1 tampered, 2 bad usage")
    v.add_argument(
        "--config",
        help="config file (default: ./config.toml, $LLMCONSOLE_CONFIG, ~/.config/llmconsole/config.toml)",
    )
    return p


def _fail(message: str) -> int:
    sys.stderr.write(f"{PROG}: error: {message}\n")
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:
        return int(exc.code or 0)
    from agents.audit_verify import verify_log
    from agents.cli import _config_path
    from agents.config import load_agent_config
    from agents.tomltables import ConfigError

    try:
        config = load_agent_config(_config_path(args.config))
    except (ConfigError, ValueError, OSError) as exc:
        return _fail(str(exc))
    log = config.state_dir / "audit.log"
    try:
        verdict = verify_log(log)
    except OSError as exc:
        return _fail(f"cannot read {exc.filename or log}: {exc.strerror or exc}")
    for note in verdict.notes:
        sys.stderr.write(f"{PROG}: note: {note}\n")
    sys.stdout.write(verdict.summary() + "\n")
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
