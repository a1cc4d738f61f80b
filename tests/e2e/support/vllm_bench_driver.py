"""Run ``vllm bench serve`` in-process, several times, from the e2e vLLM virtualenv's python.

    VLLM_PYTHON vllm_bench_driver.py -- BASE ARGS OF vllm bench serve ...

The CPU build's ``vllm`` console script fails on its distribution name, so this goes through
``vllm.benchmarks.serve``'s own ``add_cli_args`` and ``main`` (vLLM 0.32: ``main(args) -> dict``, which runs
``main_async`` under ``asyncio.run``). vLLM is imported once (tens of seconds on a busy machine); then each
line on stdin is one run: a JSON object ``{"args": [...extra args...]}`` appended to the base arguments
and parsed by a fresh parser (``main`` mutates its namespace). After each run one line
``@@DRIVER {"ok": true, "result": {...}}`` (or ``{"ok": false, "error": "..."}``) is printed on stdout;
``@@DRIVER {"ready": true, ...}`` once vLLM is imported. Everything else on stdout is vLLM's own output.
It imports nothing from the project (the project's packages are not installed in that virtualenv).
"""

from __future__ import annotations

import json
import sys
import traceback

TAG = "@@DRIVER "


def say(obj: dict) -> None:
    sys.stdout.write("\n" + TAG + json.dumps(obj) + "\n")
    sys.stdout.flush()


def main() -> int:
    base = sys.argv[1:]
    if base[:1] == ["--"]:
        base = base[1:]
    from vllm import __version__ as vllm_version
    from vllm.benchmarks.serve import add_cli_args
    from vllm.benchmarks.serve import main as bench_main
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    say({"ready": True, "vllm": vllm_version})
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            extra = json.loads(line)["args"]
            parser = FlexibleArgumentParser(prog="vllm bench serve")
            add_cli_args(parser)
            args = parser.parse_args([*base, *extra])
            result = bench_main(args)
        except BaseException as exc:  # noqa: BLE001 - reported to the test, the driver goes on
            if isinstance(exc, KeyboardInterrupt):
                raise
            tail = traceback.format_exc().strip().splitlines()[-6:]
            say({"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": tail})
            continue
        say(
            {
                "ok": True,
                "result": {k: v for k, v in result.items() if isinstance(v, int | float | str | None)},
            }
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
