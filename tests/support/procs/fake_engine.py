"""A tiny stand-in engine for supervisor tests (stdlib only).

Roles: ``leader`` (default) optionally spawns a ``child`` (same process group) that spawns a
``grandchild`` (same group) and a ``setsid`` grandchild (own session: escapes the group, like TGI's
shards); with --escape it also double-forks an ``escaped`` process (setsid, parent gone at once: not
a descendant of anything in the tree, found only by the marker). Every process appends "<pid> <role>" to --pidfile so tests can check them independently
of the supervisor. The leader can listen on --port (after --ready-after), print --say to stderr,
print a line every --tick seconds, spew output, ignore SIGTERM, or exit with --exit-code.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time


def spawn(role: str, args: argparse.Namespace) -> None:
    cmd = [sys.executable, os.path.abspath(__file__), "--role", role]
    if args.pidfile:
        cmd += ["--pidfile", args.pidfile]
    if args.ignore_term:
        cmd += ["--ignore-term", args.ignore_term]
    subprocess.Popen(cmd, stdin=subprocess.DEVNULL)  # noqa: S603


def serve(args: argparse.Namespace) -> None:
    sock = None
    if args.port:
        time.sleep(args.ready_after)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", args.port))
        sock.listen(16)
        sock.settimeout(0.05)
        print(f"listening on {args.port}", flush=True)
    next_tick = time.monotonic() + (args.tick or 1e9)
    while True:
        if args.tick and time.monotonic() >= next_tick:
            print(f"tick {time.monotonic():.3f}", flush=True)
            next_tick += args.tick
        if sock is None:
            time.sleep(min(0.05, args.tick) if args.tick else 0.05)
            continue
        try:
            conn, _ = sock.accept()
        except (TimeoutError, OSError):
            continue
        with conn:
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--role", default="leader")
    p.add_argument("--pidfile")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--ready-after", type=float, default=0.0)
    p.add_argument("--child", action="store_true")
    p.add_argument(
        "--escape", action="store_true", help="double-fork a setsid process that only the marker finds"
    )
    p.add_argument("--ignore-term", default="", help="comma list of roles that ignore SIGTERM")
    p.add_argument("--say", action="append", default=[])
    p.add_argument("--exit-after", type=float)
    p.add_argument("--exit-code", type=int, default=0)
    p.add_argument("--tick", type=float, default=0.0)
    p.add_argument("--spew-lines", type=int, default=0)
    args = p.parse_args()
    if args.role in ("grandchild-setsid", "escaped"):
        os.setsid()
    if args.role in args.ignore_term.split(","):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if args.pidfile:
        with open(args.pidfile, "a") as fh:
            fh.write(f"{os.getpid()} {args.role}\n")
    if args.role == "child":
        spawn("grandchild", args)
        spawn("grandchild-setsid", args)
    if args.role == "escaper":  # double fork: its setsid child is orphaned at once (no ancestor left)
        spawn("escaped", args)
        return
    if args.role != "leader":
        while True:
            time.sleep(1)
    for line in args.say:
        print(line, file=sys.stderr, flush=True)
    if args.child:
        spawn("child", args)
    if args.escape:
        spawn("escaper", args)
    for i in range(args.spew_lines):
        print(f"spew line {i:06d} " + "x" * 60)
    sys.stdout.flush()
    if args.exit_after is not None:
        time.sleep(args.exit_after)
        sys.exit(args.exit_code)
    serve(args)


if __name__ == "__main__":
    main()
