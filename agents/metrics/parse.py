"""A fast, forgiving parser for the Prometheus text exposition format (0.0.4) and its OpenMetrics subset.

``parse`` never raises on bad text: every line it cannot read becomes one ``"line N: why"`` entry in
``MetricSet.problems`` and parsing goes on. Given ``wanted`` (the sample names an adapter reads), lines
for other names are skipped after a cheap look at their name and shape, without parsing labels.

Pure Python, stdlib only, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Container

from agents.metrics.model import Labels, MetricSet

MAX_BYTES = 16 * 1024 * 1024
MAX_SERIES = 200_000
MAX_PROBLEMS = 100  # further problems are counted in one summary line, never stored one by one

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
_ESCAPE = re.compile(r'\\[\\n"]')
_UNESCAPED = {"\\\\": "\\", "\\n": "\n", '\\"': '"'}
_TYPES = frozenset(
    ("counter", "gauge", "histogram", "summary", "untyped", "unknown", "gaugehistogram", "info", "stateset")
)


class _Bad(Exception):
    """A line that cannot be read; the message says why."""


def parse(
    text: str | bytes,
    wanted: Container[str] | None = None,
    *,
    max_bytes: int = MAX_BYTES,
    max_series: int = MAX_SERIES,
) -> MetricSet:
    """Parse one exposition into a MetricSet; problems are reported in it, never raised.

    ``wanted``: when given, only samples with these names are kept, and the labels of all other lines
    are not parsed. ``max_bytes`` bounds the input read (only the complete lines within the first
    ``max_bytes`` are parsed; a str is measured in characters); ``max_series`` bounds the samples kept.
    """
    result = MetricSet()
    problems = _Problems(result.problems)
    text = _as_text(text, max_bytes, problems)
    if text is None or not text or text.isspace():
        if text is not None:
            problems.add("empty exposition")
        problems.finish()
        return result
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    _parse_lines(text.split("\n"), wanted, max_series, result, problems)
    problems.finish()
    return result


class _Problems:
    """Collects problem lines up to MAX_PROBLEMS, then only counts them."""

    __slots__ = ("out", "dropped")

    def __init__(self, out: list[str]) -> None:
        self.out = out
        self.dropped = 0

    def add(self, message: str) -> None:
        if len(self.out) < MAX_PROBLEMS:
            self.out.append(message)
        else:
            self.dropped += 1

    def finish(self) -> None:
        if self.dropped:
            self.out.append(f"... and {self.dropped} more problems")


def _as_text(data: str | bytes, max_bytes: int, problems: _Problems) -> str | None:
    """The text to parse (cut to whole lines within ``max_bytes``), or None when there is none."""
    if isinstance(data, str):
        if len(data) > max_bytes:
            problems.add(f"exposition larger than {max_bytes} bytes; parsed only the first")
            data = data[: data.rfind("\n", 0, max_bytes) + 1]
        return data
    if not isinstance(data, bytes | bytearray | memoryview):
        problems.add(f"exposition is {type(data).__name__}, not text")
        return None
    raw = bytes(data)
    if len(raw) > max_bytes:
        problems.add(f"exposition larger than {max_bytes} bytes; parsed only the first")
        raw = raw[: raw.rfind(b"\n", 0, max_bytes) + 1]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        problems.add(f"invalid UTF-8 at byte {exc.start}; undecodable bytes replaced")
        return raw.decode("utf-8", errors="replace")


def _parse_lines(
    lines: list[str], wanted: Container[str] | None, max_series: int, result: MetricSet, problems: _Problems
) -> None:
    """Read every line into ``result``: HELP, TYPE and sample lines inline, rare cases in helpers."""
    samples, types = result.samples, result.types
    seen: dict[tuple[str, frozenset[tuple[str, str]]], int] = {}
    valid_names: set[str] = set()
    label_names: set[str] = set()
    keep_all = wanted is None
    cache = None if keep_all else _LABEL_CACHE  # the agent's per-second scrapes repeat their label sets
    stored = lineno = 0
    for lineno, line in enumerate(lines, 1):  # noqa: B007 - lineno is read after the loop
        if not line:
            continue
        first = line[0]
        if first == " " or first == "\t":
            line = line.strip(" \t")
            if not line:
                continue
            first = line[0]
        if first == "#":
            if line.startswith("# HELP "):
                continue
            if line.startswith("# TYPE "):
                family, sep, kind = line[7:].partition(" ")
                if sep and family and kind in _TYPES and family not in types:
                    types[family] = kind  # the common case, inline; _type_line reads the rest or says why
                    continue
            if _rare_comment(line, lineno, lines, types, problems):
                break  # "# EOF"
            continue
        brace = line.find("{")
        try:
            if brace >= 0:
                name = line[:brace]
                if " " in name or "\t" in name:
                    name, brace = _spaced_name(name, brace)
            if brace < 0:
                tokens = line.split()
                if not tokens:  # only exotic whitespace
                    continue
                name = tokens[0]
                if len(tokens) < 2:
                    raise _Bad(f"no value after {name[:80]!r}")
                if not keep_all and name not in wanted:  # type: ignore[operator]
                    continue
                labels: Labels = {}
                label_set = _NO_LABELS
                value = _value(tokens, 1)
            else:
                if not keep_all and name not in wanted:  # type: ignore[operator]
                    if not name:
                        raise _Bad("missing metric name")
                    if line.rfind("}") < brace:
                        raise _Bad("unterminated label set")
                    continue
                fast = None if "\\" in line else _plain_labels(line, brace + 1, label_names, cache)
                labels, label_set, end = _labels(line, brace + 1, label_names) if fast is None else fast
                value = _value(line[end:].split(), 0)
            if keep_all and name not in valid_names:
                _check_name(name, valid_names)
        except _Bad as bad:
            problems.add(f"line {lineno}: {bad}")
            continue
        key = (name, frozenset(labels.items()) if label_set is None else label_set)
        series = samples.get(name)
        if series is None:
            series = samples[name] = []
        index = seen.get(key)
        if index is not None:
            _keep_last(series, index, labels, value, f"line {lineno}: duplicate series {name}", problems)
            continue
        if stored >= max_series:
            _stop(samples, name, f"line {lineno}: more than {max_series} series; stopped parsing", problems)
            break
        seen[key] = len(series)
        series.append((labels, value))
        stored += 1
    result.lines = lineno if lines[-1] or lineno < len(lines) else lineno - 1


def _rare_comment(
    line: str, lineno: int, lines: list[str], types: dict[str, str], problems: _Problems
) -> bool:
    """A ``#`` line the loop does not read inline; True when it is ``# EOF`` (checked for text after it)."""
    if line.startswith("# TYPE "):
        _type_line(line, lineno, types, problems)
        return False
    if _other_comment(line, lineno, types, problems):
        _after_eof(lines, lineno, problems)
        return True
    return False


def _spaced_name(name: str, brace: int) -> tuple[str, int]:
    """The name before ``{`` with spaces around it; brace -1 when the brace is in an exemplar, not a label
    set (the name holds spaces inside)."""
    name = name.strip(" \t")
    return name, (-1 if " " in name or "\t" in name else brace)


def _check_name(name: str, valid_names: set[str]) -> None:
    """Add a metric name to ``valid_names``, or say why it is not one."""
    if not _METRIC_NAME.match(name):
        raise _Bad(f"invalid metric name {name[:80]!r}" if name else "missing metric name")
    valid_names.add(name)


def _keep_last(
    series: list[tuple[Labels, float]],
    index: int,
    labels: Labels,
    value: float,
    where: str,
    problems: _Problems,
) -> None:
    """A second sample of one series: the last value wins, and the problem names the series."""
    series[index] = (labels, value)
    problems.add(f"{where}{_show(labels)}; kept the last value")


def _stop(samples: dict[str, list[tuple[Labels, float]]], name: str, why: str, problems: _Problems) -> None:
    """MAX_SERIES reached: say so and drop the name's empty series list."""
    problems.add(why)
    if not samples[name]:
        del samples[name]


def _value(tokens: list[str], at: int) -> float:
    """The value in ``tokens[at:]`` = ``value [timestamp] [# exemplar...]`` split on whitespace."""
    if len(tokens) <= at:
        raise _Bad("missing value")
    text = tokens[at]
    try:
        value = float(text)
    except ValueError:
        raise _Bad(f"invalid value {text[:40]!r}") from None
    if "_" in text or not text.isascii():
        raise _Bad(f"invalid value {text[:40]!r}")
    if len(tokens) > at + 1:
        ts = tokens[at + 1]
        if ts[0] != "#":
            try:
                float(ts)
            except ValueError:
                raise _Bad(f"invalid timestamp {ts[:40]!r}") from None
            if len(tokens) > at + 2 and tokens[at + 2][0] != "#":
                raise _Bad(f"unexpected text after timestamp: {tokens[at + 2][:40]!r}")
    return value


_NO_LABELS: frozenset[tuple[str, str]] = frozenset()
# Label text (between "{" and '"}') -> what _plain_labels makes of it: (labels, their items as a frozenset),
# or None when the careful parser must read it. A pure function of the text, so sharing it between parses
# and threads is exact; bounded by emptying it when full. Used only with ``wanted`` (the agent's scrapes).
_LABEL_CACHE: dict[str, tuple[Labels, frozenset[tuple[str, str]]] | None] = {}
_LABEL_CACHE_MAX = 8192
_MISSING = object()


def _plain_labels(
    line: str,
    pos: int,
    known: set[str],
    cache: dict[str, tuple[Labels, frozenset[tuple[str, str]]] | None] | None = None,
) -> tuple[Labels, frozenset[tuple[str, str]], int] | None:
    """Fast path for a label set as engines write it: ``k="v",k="v"}``, no spaces, no backslashes.

    Without backslashes no label value can hold a quote, so the first ``"}`` ends the set and ``",``
    separates pairs. Returns (labels, their items as a frozenset, the index after ``}``), or None for
    anything else (the careful parser then reads it or says why). With ``cache``, a label text read before
    is not split again (the labels come back as a fresh dict)."""
    close = line.find('"}', pos)
    if close < 0:
        return None
    text = line[pos:close]
    if cache is None:
        found = _split_plain(text, known)
    else:
        found = cache.get(text, _MISSING)  # type: ignore[arg-type]
        if found is _MISSING:
            found = _split_plain(text, known)
            if len(cache) >= _LABEL_CACHE_MAX:
                cache.clear()
            cache[text] = found
    if found is None:
        return None
    return found[0].copy(), found[1], close + 2  # type: ignore[index]


def _split_plain(text: str, known: set[str]) -> tuple[Labels, frozenset[tuple[str, str]]] | None:
    labels: Labels = {}
    for part in text.split('",'):
        name, sep, value = part.partition('="')
        if not sep or '"' in value or name in labels:
            return None
        if name not in known:
            if not _LABEL_NAME.match(name):
                return None
            known.add(name)
        labels[name] = value
    return labels, frozenset(labels.items())


def _labels(line: str, pos: int, known: set[str]) -> tuple[Labels, None, int]:
    """Parse the label set that starts after ``{`` at ``pos``; return it, None (no frozenset of its items:
    the caller makes one) and the index after ``}``."""
    labels: Labels = {}
    escaped = "\\" in line
    n = len(line)
    while True:
        while pos < n and (line[pos] == " " or line[pos] == "\t"):
            pos += 1
        if pos >= n:
            raise _Bad("unterminated label set")
        if line[pos] == "}":
            return labels, None, pos + 1
        eq = line.find("=", pos)
        if eq < 0:
            raise _Bad("label without '='")
        name = line[pos:eq]
        if name not in known:
            name = name.strip(" \t")
            if not _LABEL_NAME.match(name):
                raise _Bad(f"invalid label name {name[:80]!r}")
            known.add(name)
        pos = eq + 1
        if pos < n and line[pos] != '"':
            while pos < n and (line[pos] == " " or line[pos] == "\t"):
                pos += 1
        if pos >= n or line[pos] != '"':
            raise _Bad(f"label {name} has no quoted value")
        start = pos + 1
        end = line.find('"', start)
        if escaped:
            while end > 0 and _odd_backslashes(line, end):
                end = line.find('"', end + 1)
        if end < 0:
            raise _Bad(f"unterminated value of label {name}")
        value = line[start:end]
        if escaped and "\\" in value:
            value = _ESCAPE.sub(_unescape, value)
        if name in labels:
            raise _Bad(f"duplicate label {name}")
        labels[name] = value
        pos = end + 1
        if pos < n and line[pos] == ",":
            pos += 1
        elif pos < n and line[pos] == "}":
            return labels, None, pos + 1
        else:
            while pos < n and (line[pos] == " " or line[pos] == "\t"):
                pos += 1
            if pos < n and line[pos] == ",":
                pos += 1
            elif pos >= n or line[pos] != "}":
                raise _Bad(f"expected ',' or '}}' after label {name}")


def _odd_backslashes(line: str, quote: int) -> bool:
    count = 0
    i = quote - 1
    while i >= 0 and line[i] == "\\":
        count += 1
        i -= 1
    return count % 2 == 1


def _unescape(match: re.Match[str]) -> str:
    return _UNESCAPED[match.group(0)]


def _type_line(line: str, lineno: int, types: dict[str, str], problems: _Problems) -> None:
    """Record ``# TYPE family type``."""
    family, sep, kind = line[7:].partition(" ")
    if sep and kind in _TYPES and family:
        if family in types:
            problems.add(f"line {lineno}: second TYPE line for {family[:80]}")
        types[family] = kind
        return
    parts = line.split(None, 3)
    if len(parts) < 4:
        problems.add(f"line {lineno}: TYPE without a metric name and type")
        return
    family, kind = parts[2], parts[3].strip()
    if kind not in _TYPES:
        problems.add(f"line {lineno}: unknown metric type {kind[:40]!r} for {family[:80]}")
        return
    if family in types:
        problems.add(f"line {lineno}: second TYPE line for {family[:80]}")
    types[family] = kind


def _other_comment(line: str, lineno: int, types: dict[str, str], problems: _Problems) -> bool:
    """Any ``#`` line but the common ``# HELP ``/``# TYPE ``; True when it is ``# EOF``."""
    parts = line.split(None, 2)
    if len(parts) < 2 or parts[0] != "#":
        return False
    keyword = parts[1]
    if keyword == "TYPE":
        _type_line(line, lineno, types, problems)
    elif keyword == "HELP":
        if len(parts) < 3:
            problems.add(f"line {lineno}: HELP without a metric name")
    elif keyword == "EOF" and len(parts) == 2:
        return True
    return False


def _after_eof(lines: list[str], eof_line: int, problems: _Problems) -> None:
    for lineno in range(eof_line, len(lines)):
        if lines[lineno].strip():
            problems.add(f"line {lineno + 1}: text after # EOF (ignored)")
            return


def _show(labels: Labels) -> str:
    if not labels:
        return ""
    inner = ",".join(f"{k}={v!r}" for k, v in labels.items())
    return "{" + inner[:120] + "}"
