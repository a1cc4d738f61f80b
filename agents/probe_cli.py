"""`llmconsole probe` — normalized stats of one engine's /metrics, scraped live or read from files.

``llmconsole probe URL`` scrapes twice ``--interval`` seconds apart (rates and percentiles come from
the difference); ``--file A`` reads one saved exposition (gauges only), ``--file A --file B --dt S`` reads
two saved scrapes taken S seconds apart. Bad input ends in one ``llmconsole probe: error: ...`` line on
stderr and exit code 2.

An agent-side program (it scrapes with the agent's bounded client and reads through the engine adapters):
``llmconsole probe`` hands it its whole argument list and imports it only when invoked, as it does
``agent`` and ``sim-engine``, so the console process never loads it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from agents.http1 import Http1Client
from agents.probe import ProbeError, ProbeResult, known_engines, probe_texts
from agents.schema.units import duration
from agents.scrape import fetch

MAX_BYTES = 16 * 1024 * 1024
PROG = "llmconsole probe"


class UsageError(Exception):
    """Bad input; the message is printed as one line."""


@dataclass(frozen=True, slots=True)
class Scrapes:
    texts: list[bytes]
    dt_s: float | None
    source: dict[str, Any]


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``llmconsole probe: error: ... (see `llmconsole probe --help`)``."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``llmconsole probe`` command line."""
    parser = _Parser(
        prog=PROG,
        description=(
            "Scrape an engine's /metrics (vLLM, SGLang or TGI) twice, or read saved expositions, and print "
            "its normalized stats. One exposition gives the gauges only; rates and percentiles need two."
        ),
    )
    parser.add_argument("url", nargs="?", help="http://host:port (/metrics is added) or the full metrics URL")
    parser.add_argument(
        "--file", action="append", metavar="PATH", help="a saved exposition (give two for rates)"
    )
    parser.add_argument("--dt", type=float, metavar="SECONDS", help="seconds between the two --file scrapes")
    parser.add_argument(
        "--engine", default="auto", choices=("auto", *known_engines()), help="dialect (default: auto)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--interval",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="seconds between the two scrapes of URL (2.0)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="deadline for each scrape of URL (10.0)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``llmconsole probe ARGS``: 0 on success, 2 with one error line on bad input, 130 on Ctrl-C."""
    try:
        args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:  # argparse exits for --help and for errors
        return int(exc.code or 0)
    try:
        return run(args)
    except KeyboardInterrupt:
        return 130


def run(args: argparse.Namespace) -> int:
    """Run the verb; 0 on success, 2 with one error line on bad input."""
    try:
        scrapes = _collect(args)
        result = probe_texts(scrapes.texts, scrapes.dt_s, args.engine)
    except (UsageError, ProbeError) as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return 2
    out = render_json(result, scrapes.source) if args.json else render_table(result, scrapes.source)
    sys.stdout.write(out + "\n")
    return 0


# --- input ------------------------------------------------------------------------------------------------
def _collect(args: argparse.Namespace) -> Scrapes:
    files: list[str] = args.file or []
    if args.url and files:
        raise UsageError("give a URL or --file, not both")
    if not args.url and not files:
        raise UsageError("give a URL or --file PATH")
    if files:
        return _from_files(files, args.dt)
    if args.dt is not None:
        raise UsageError("--dt is for two --file scrapes; a URL is scraped --interval seconds apart")
    interval = _positive("--interval", args.interval)
    timeout = _positive("--timeout", args.timeout)
    url = metrics_url(args.url)
    texts, dt_s = asyncio.run(scrape_twice(url, interval, timeout))
    return Scrapes(texts, dt_s, {"url": url, "scrapes": 2, "dt_s": dt_s})


def _from_files(files: list[str], dt: float | None) -> Scrapes:
    if len(files) > 2:
        raise UsageError(f"give one or two --file scrapes, not {len(files)}")
    if len(files) == 2:
        if dt is None:
            raise UsageError("two --file scrapes need --dt SECONDS (the time between them)")
        dt = _positive("--dt", dt)
    elif dt is not None:
        raise UsageError("--dt needs two --file scrapes")
    texts = [read_file(path) for path in files]
    return Scrapes(
        texts, dt if len(files) == 2 else None, {"files": files, "scrapes": len(files), "dt_s": dt}
    )


def _positive(flag: str, value: float) -> float:
    if not math.isfinite(value) or value <= 0:
        raise UsageError(f"{flag} must be a positive number of seconds, not {value:g}")
    return value


def read_file(path: str) -> bytes:
    """A saved exposition's bytes (at most MAX_BYTES), or UsageError with one line."""
    try:
        with Path(path).open("rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise UsageError(f"cannot read {path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"cannot read {path}: it is a directory") from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_BYTES:
        raise UsageError(f"{path} is larger than {MAX_BYTES / (1 << 20):g} MiB")
    return raw


def metrics_url(url: str) -> str:
    """``url`` checked; a bare ``http://host:port`` gets ``/metrics``."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UsageError(f"bad URL {url!r}: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise UsageError(f"bad URL {url!r}: it must start with http:// or https://")
    if not parts.hostname:
        raise UsageError(f"bad URL {url!r}: no host")
    if port == 0:
        raise UsageError(f"bad URL {url!r}: port 0")
    path = parts.path if parts.path not in ("", "/") else "/metrics"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


async def scrape_twice(url: str, interval: float, timeout: float) -> tuple[list[bytes], float]:
    """Two scrapes of ``url`` started ``interval`` s apart; dt between the midpoints of the two requests."""
    client = Http1Client()
    try:
        first_start = time.monotonic()
        first, first_mid = await _scrape(client, url, timeout)
        await asyncio.sleep(max(0.0, interval - (time.monotonic() - first_start)))
        second, second_mid = await _scrape(client, url, timeout)
    finally:
        await client.aclose()
    return [first, second], second_mid - first_mid


async def _scrape(client: Http1Client, url: str, timeout: float) -> tuple[bytes, float]:
    """One bounded GET (total deadline ``timeout`` s, MAX_BYTES); the body and the request's mid time."""
    start = time.monotonic()
    got = await fetch(client, url, deadline_s=timeout, max_bytes=MAX_BYTES)
    if not got.ok or got.body is None:
        raise UsageError(f"{url}: {got.error}")
    return got.body, (start + time.monotonic()) / 2


# --- output -----------------------------------------------------------------------------------------------
def render_json(result: ProbeResult, source: dict[str, Any]) -> str:
    return json.dumps(
        {
            "engine": result.engine,
            "simulated": result.simulated,
            "models": list(result.models),
            "stats": result.stats,
            "problems": result.problems,
            "null_reasons": result.null_reasons,
            "source": source,
        },
        indent=2,
    )


UNITS: dict[str, str] = {
    "requests_running": "requests",
    "requests_waiting": "requests",
    "kv_cache_usage": "%",
    "preemptions_per_s": "preemptions/s",
    "prompt_tokens_per_s": "tokens/s",
    "generation_tokens_per_s": "tokens/s",
    "request_errors_per_s": "errors/s",
    "prefix_cache_hit_rate": "%",
}


def format_value(key: str, value: float | None, reason: str | None = None) -> str:
    """One stat for humans: number and unit, or "—" and why there is none."""
    if value is None:
        return f"— ({reason})" if reason else "—"
    unit = UNITS.get(key)
    if unit == "%":
        return f"{value * 100:.1f} %"
    if unit == "requests":
        return f"{value:g} {unit}"
    if unit is not None:
        return f"{value:.2f} {unit}"
    if key.endswith("_s"):  # a latency or a span in seconds: the one duration rule
        return duration(value)
    return f"{value:g}"


def render_table(result: ProbeResult, source: dict[str, Any]) -> str:
    if "url" in source:
        where = f"{source['url']} (2 scrapes, {source['dt_s']:.2f} s apart)"
    elif source.get("dt_s") is not None:
        where = f"{' then '.join(source['files'])} ({source['dt_s']:g} s apart)"
    else:
        where = f"{source['files'][0]} (one scrape: gauges only; rates and percentiles need two)"
    engine = (
        f"{result.engine} (SIMULATED — llmconsole sim-engine, not a real engine)"
        if result.simulated
        else result.engine
    )
    head = [("engine", engine), ("models", ", ".join(result.models) or "—"), ("source", where)]
    rows = [
        (key, format_value(key, value, result.null_reasons.get(key))) for key, value in result.stats.items()
    ]
    width = max(len(k) for k, _ in head + rows) + 2
    lines = [f"{k:<{width}}{v}" for k, v in head] + [""] + [f"{k:<{width}}{v}" for k, v in rows]
    if result.problems:
        lines += ["", f"problems ({len(result.problems)}):"] + [f"  {p}" for p in result.problems]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
