"""Which engine log lines are the agent's own probes: the access-log lines of its ``GET /health`` and
``GET /metrics`` (every second) and of its canary's ``POST`` (marked, see CANARY_MARK), from loopback.

Recognised by the request line of the uvicorn access log that vLLM and SGLang write (vLLM prefixes it
with "(APIServer pid=…)")::

    INFO:     127.0.0.1:54321 - "GET /metrics HTTP/1.1" 200 OK

The agent connects to its engines over loopback (agents.engines.base.url_host), so only a loopback
client counts: the same request from any other address (a user's Prometheus, a load balancer) is kept.
A loopback client other than the agent asking the same paths is hidden too; ``p`` shows every line.

Pure: no Textual, no I/O.
"""

from __future__ import annotations

import re

from agents.schema import CANARY_MARK  # a canary request whose target carries this is the agent's

PROBE_PATHS = frozenset({("GET", "/health"), ("GET", "/metrics"), ("GET", "/metrics/")})
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_ACCESS = re.compile(
    r"(?:^|[\s)\]])INFO:?\s+(?P<addr>\[[0-9A-Fa-f:.]+\]|[0-9A-Za-z:.]+):(?P<port>\d+) - "
    r'"(?P<method>[A-Z]+) (?P<target>\S+) HTTP/[0-9.]+" (?P<status>\d{3})'
)


def is_loopback(addr: str) -> bool:
    """127.0.0.0/8, ::1 (bare or bracketed), ::ffff:127.x and localhost."""
    a = addr.strip("[]").lower()
    return a.startswith("127.") or a in ("::1", "localhost") or a.startswith("::ffff:127.")


def is_probe_line(line: str) -> bool:
    """Whether ``line`` is the access-log line of one of the agent's own probes (see the module doc)."""
    if '" ' not in line or "HTTP/" not in line:
        return False  # the cheap test first: most lines are not access-log lines
    m = _ACCESS.search(_ANSI.sub("", line))
    if m is None or not is_loopback(m["addr"]):
        return False
    method, target = m["method"], m["target"]
    path = target.split("?", 1)[0]
    if (method, path) in PROBE_PATHS:
        return True
    return method == "POST" and CANARY_MARK in target


__all__ = ["CANARY_MARK", "PROBE_PATHS", "is_loopback", "is_probe_line"]
