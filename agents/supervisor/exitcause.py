"""Which line of an engine's output says why it exited (engine-agnostic).

A failing engine's last line is rarely its root cause: vLLM ends a failed start-up with ``RuntimeError:
Engine core initialization failed. See root cause above``, a ``resource_tracker`` warning or an access-log
line, about 60 lines after the ``ValueError: No common block size for 16`` that explains it. The rule: the
last ``SomethingError:`` / ``SomethingException:`` line that is not a "see above" wrapper; else the last
such line; else the last non-empty line.
"""

from __future__ import annotations

import re
import signal as _signal
from collections.abc import Sequence

_EXCEPTION = re.compile(r"(?:^|[\s(\[:])(?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception|Exit): \S")
_WRAPPER = re.compile(r"root cause above|stack trace \(above\)|see (?:the )?(?:logs|above)", re.IGNORECASE)
_ACCESS_LOG = re.compile(r'"(?:GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) \S+ HTTP/[\d.]+"(?:\s+\d{3})?')
_ROUTINE_LEVEL = re.compile(r"^\W{0,3}(?:\S+\s+){0,3}\W?(?:INFO|DEBUG|TRACE)\b")
_FAILURE = re.compile(
    r"\b(?:error|errors|fatal|failed|failure|panic|panicked|abort|aborted|aborting|segmentation fault|core dumped|"
    r"out of memory|oom|cannot|can't|could not|unable to|killed|terminated|exiting)\b",
    re.IGNORECASE,
)
OMITTED = "… {n} earlier line(s) omitted …"
EXTERNAL_SIGNALS = frozenset({_signal.SIGKILL, _signal.SIGTERM, _signal.SIGINT, _signal.SIGHUP})


def routine(line: str) -> bool:
    """An HTTP access-log line or an INFO/DEBUG/TRACE log line: never the reason for an exit."""
    return bool(_ACCESS_LOG.search(line) or _ROUTINE_LEVEL.search(line[:120]))


def root_cause(lines: Sequence[str], signal: int | None = None) -> str | None:
    """The line that best explains an exit, stripped; None when no line does (no output, only routine
    lines, or ``signal`` is one sent from outside: the signal is the cause)."""
    if signal is not None and signal in EXTERNAL_SIGNALS:
        return None
    errors = [line.strip() for line in lines if _EXCEPTION.search(line) and not _ACCESS_LOG.search(line)]
    specific = [line for line in errors if not _WRAPPER.search(line)]
    if specific:
        return specific[-1]
    if errors:
        return errors[-1]
    return next(
        (line.strip() for line in reversed(lines) if _FAILURE.search(line) and not routine(line)), None
    )


def tail_with_cause(lines: Sequence[str], n: int, signal: int | None = None) -> list[str]:
    """The last ``n`` lines; when the root-cause line is older than that, it is kept in front of them
    (with a marker saying how many lines were skipped), so the tail always shows why."""
    tail = list(lines[-n:]) if n > 0 else []
    cause = root_cause(lines, signal)
    if cause is None or any(line.strip() == cause for line in tail):
        return tail
    at = max(i for i, line in enumerate(lines) if line.strip() == cause)
    skipped = len(lines) - len(tail) - at  # lines between the cause and tail[1:] (tail[0] makes room)
    return [lines[at], OMITTED.format(n=skipped), *tail[1:]]
