"""``llmconsole bundle``: capture a redacted incident bundle of some hosts; ``llmconsole bundle verify FILE``.

::

    llmconsole bundle [HOST ...|--all] [--engine ID] [--since 30m] [--reason TEXT] [-o FILE] [--mask-hosts]
                      [--config PATH] [--ssh U@H,...] [--timeout S] [--max-mib N]
    llmconsole bundle verify FILE [--json]

Each host's agent builds its part (``GET /v1/bundle``, operator token, audited), reached as the console
reaches it (direct or over SSH); the console checks every part, redacts again, optionally masks host names
and IP addresses (``--mask-hosts``: the mapping goes to ``FILE.hostmap.json``, never into the bundle) and
writes one ``.tar.gz`` (mode 0600, never over an existing file). A host that cannot give its part is
listed in the manifest's ``missing``. Exit codes: 0 every host collected (or the bundle verifies), 1 a
partial bundle (or a bad bundle: the first bad file is named), 2 bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from agents.bundle_files import verify_bundle
from agents.tomltables import ConfigError
from console.fleet import one_line
from console.fleetargs import add_fleet_arguments, chosen, fleet_config
from console.launch import PROG
from console.settings import HostConfig

_DURATION_RE = re.compile(r"([0-9]{1,7})([smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_SINCE_S = 7 * 86400


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "bundle",
        help="capture a redacted incident bundle of hosts (.tar.gz), or `bundle verify FILE`",
        description="Ask each host's agent for its incident bundle (snapshots, alerts, engine logs, raw /metrics, "
        "stacks, host facts, audit log) and write one redacted .tar.gz with a manifest. "
        "`llmconsole bundle verify FILE` checks a bundle's manifest and every file's sha256.",
    )
    p.add_argument("hosts", nargs="*", metavar="HOST", help="configured host names (or `verify FILE`)")
    p.add_argument("--all", action="store_true", help="every configured host")
    p.add_argument("--engine", metavar="ID", help="only this engine's files (snapshots keep the whole host)")
    p.add_argument(
        "--since", default="30m", metavar="DURATION", help="window: 90s, 30m, 2h, 1d (default 30m)"
    )
    p.add_argument(
        "--reason", metavar="TEXT", help="why the bundle is taken (recorded in the manifest and audit logs)"
    )
    p.add_argument(
        "-o", "--output", metavar="FILE", help="output file (default llmconsole-bundle-<UTC time>.tar.gz)"
    )
    p.add_argument(
        "--mask-hosts",
        action="store_true",
        help="replace host names and IP addresses with placeholders (mapping in FILE.hostmap.json)",
    )
    add_fleet_arguments(p, "bundle")
    p.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        metavar="S",
        help="time cap for the whole capture (default 120)",
    )
    p.add_argument(
        "--max-mib", type=int, default=256, metavar="N", help="size cap per host's answer (default 256)"
    )
    p.add_argument("--json", action="store_true", help="with verify: print the result as JSON")


def parse_duration(text: str) -> float:
    """Seconds of ``90s`` / ``30m`` / ``2h`` / ``1d`` / ``1800``; ValueError with one line otherwise."""
    m = _DURATION_RE.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"--since {text!r}: expected a duration such as 90s, 30m, 2h or 1d")
    seconds = int(m[1]) * _UNITS[m[2]]
    if not 1 <= seconds <= MAX_SINCE_S:
        raise ValueError(f"--since {text!r}: must be between 1 s and 7 days")
    return float(seconds)


def _fail(message: str, code: int = 2) -> int:
    sys.stderr.write(f"{PROG} bundle: {one_line(message, 500)}\n")
    return code


def run(args: argparse.Namespace) -> int:
    if args.hosts[:1] == ["verify"]:
        return run_verify(args)
    if args.json:
        return _fail("--json applies to `bundle verify FILE` only")
    try:
        since = parse_duration(args.since)
        ssh = chosen(args, "bundle", "ssh")
        config = fleet_config(args, "bundle")
    except (ValueError, ConfigError) as exc:
        return _fail(str(exc))
    if not 1 <= args.timeout <= 3600 or not 1 <= args.max_mib <= 4096:
        return _fail("--timeout must be 1-3600 seconds and --max-mib 1-4096")
    hosts = _pick_hosts(config.hosts, args.hosts, args.all, bool(ssh))
    if isinstance(hosts, str):
        return _fail(hosts)
    out = Path(args.output or time.strftime("llmconsole-bundle-%Y%m%dT%H%M%SZ.tar.gz", time.gmtime()))
    problem = _output_problem(out, args.mask_hosts)
    if problem:
        return _fail(problem)
    from console.bundle_fetch import fetch_bundles
    from console.bundle_merge import merge
    from console.tokens import TokenState

    params: dict[str, Any] = {"since": str(int(since))}
    if args.engine:
        params["engine"] = args.engine
    if args.reason:
        params["reason"] = args.reason
    results = asyncio.run(
        fetch_bundles(hosts, params, timeout_s=args.timeout, max_bytes=args.max_mib * 2**20)
    )
    tokens = [t for h in hosts if (t := TokenState.read(h, os.environ).value)]
    merged = merge(
        results,
        hosts,
        since_s=since,
        engine=args.engine,
        reason=args.reason,
        tokens=tokens,
        mask_hosts=args.mask_hosts,
    )
    try:
        _write_new(out, merged.data)
        if args.mask_hosts:
            mapping = {
                "schema": "llmconsole.bundle-hostmap/1",
                "bundle": out.name,
                "created_at": merged.manifest.get("created_at"),
                "note": "keep this file apart from the bundle: it reverses the host masking",
                "mapping": merged.mapping,
            }
            _write_new(_map_path(out), (json.dumps(mapping, indent=1) + "\n").encode())
    except OSError as exc:
        return _fail(f"cannot write {out}: {exc.strerror or exc}")
    sys.stdout.write(_report(out, merged, args.mask_hosts) + "\n")
    return 0 if not merged.failed else 1


def _pick_hosts(
    configured: tuple[HostConfig, ...], names: list[str], everything: bool, ssh: bool
) -> list[HostConfig] | str:
    if not configured:
        return f"no hosts configured: add [[console.hosts]] or use --ssh, or try `{PROG} demo`"
    if everything and names:
        return "name hosts or use --all, not both"
    if everything:
        return list(configured)
    if not names:
        if ssh:
            return [h for h in configured if h.ssh]
        if len(configured) == 1:
            return list(configured)
        return f"name the hosts to bundle, or use --all (configured: {', '.join(h.name for h in configured)[:300]})"
    by_name = {h.name: h for h in configured}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        return f"unknown host {unknown[0]!r} (configured: {', '.join(by_name)[:300]})"
    return [by_name[n] for n in dict.fromkeys(names)]


def _map_path(out: Path) -> Path:
    return out.with_name(out.name + ".hostmap.json")


def _output_problem(out: Path, mask: bool) -> str | None:
    for path in (out, _map_path(out)) if mask else (out,):
        if path.exists() or path.is_symlink():
            return f"{path} already exists: choose another -o FILE"
    if not out.parent.is_dir():
        return f"{out.parent} is not a directory"
    return None


def _write_new(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _report(out: Path, merged: Any, masked: bool) -> str:
    files = merged.manifest.get("files", [])
    lines = [
        f"bundle written: {out} ({len(merged.data) / 2**20:.1f} MiB compressed, {len(files)} files); "
        f"hosts collected: {', '.join(merged.collected) or 'none'}"
    ]
    for name, why in merged.failed:
        lines.append(f"  missing: {name}: {one_line(why, 300)}")
    other = [m for m in merged.manifest.get("missing", []) if "everything" not in str(m.get("what"))]
    if other:
        lines.append(
            f"  {len(other)} item(s) could not be collected (manifest 'missing'), e.g. "
            f"{one_line(str(other[0].get('host')) + ': ' + str(other[0].get('what')) + ': ' + str(other[0].get('why')), 240)}"
        )
    if masked:
        lines.append(
            f"  host names and addresses masked; the mapping is in {_map_path(out)} (keep it apart from the bundle)"
        )
    return "\n".join(lines)


def run_verify(args: argparse.Namespace) -> int:
    rest = args.hosts[1:]
    if len(rest) != 1 or args.all or args.engine or args.output or args.mask_hosts or args.reason:
        return _fail("usage: llmconsole bundle verify FILE [--json]")
    path = Path(rest[0])
    if not path.is_file():
        return _fail(f"{path}: no such file")
    verdict = verify_bundle(path)
    if args.json:
        doc = {
            "file": str(path),
            "ok": verdict.ok,
            "problem": verdict.problem,
            "schema": (verdict.manifest or {}).get("schema"),
            "files": len((verdict.manifest or {}).get("files", [])),
            "missing": (verdict.manifest or {}).get("missing", []) if verdict.ok else None,
        }
        sys.stdout.write(json.dumps(doc, indent=1) + "\n")
    elif verdict.ok:
        sys.stdout.write(f"bundle {path}: ok: {verdict.summary()}\n")
    else:
        sys.stderr.write(
            f"{PROG} bundle verify: {path}: {one_line(verdict.problem or 'not verified', 500)}\n"
        )
    return 0 if verdict.ok else 1


__all__ = ["add_parser", "parse_duration", "run", "run_verify"]
