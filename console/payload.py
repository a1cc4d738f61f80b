"""Reading one answer of an agent: bounded JSON and the snapshot / history payloads of the wire schema.

Pure (no HTTP, sockets or files): every source that reads agent JSON — the HTTP source, incident bundles,
the benchmark's GPU watch — goes through here. ``load_json``, ``decode_snapshot`` and ``decode_history``
enforce a size cap, strict UTF-8, a nesting bound, finite numbers, integers within int64 and the schema's
types; their only exception is ``PayloadError``, which carries the host's ``HostError`` (bad_payload, or
incompatible for another schema major), one line.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

from agents.schema import History, HostSnapshot, SchemaError, SchemaMismatch, from_dict, history_from_dict
from console.fleet import HostError, one_line

MAX_BODY_BYTES = 64 * 1024 * 1024  # one /v1/history of a big host is a few MiB
MAX_SNAPSHOT_BYTES = 8 * 1024 * 1024  # one snapshot of a big host is tens of KiB
MAX_SMALL_BYTES = 1024 * 1024  # error bodies, action answers
MAX_DEPTH = 32  # JSON nesting: a snapshot needs 6 levels, alert evidence a few more
INT_LIMIT = 2**63  # integers beyond int64 are no counter, pid or byte count: refused


class PayloadError(Exception):
    """An answer this console cannot read: the only exception of ``load_json``, ``decode_snapshot`` and
    ``decode_history``. ``error`` is the host's HostError (bad_payload, or incompatible), one line."""

    def __init__(self, error: HostError) -> None:
        super().__init__(error.message)
        self.error = error


def _bad(reason: str) -> PayloadError:
    return PayloadError(HostError("bad_payload", f"bad payload: {reason}"))


def too_big(limit: int) -> HostError:
    """The bad_payload error for an answer over ``limit`` bytes."""
    size = (
        f"{limit >> 20} MiB"
        if limit >= 1 << 20
        else f"{limit >> 10} KiB"
        if limit >= 1 << 10
        else f"{limit} bytes"
    )
    return HostError("bad_payload", f"bad payload: answer larger than {size}")


def error_text(body: bytes) -> str:
    """The one-line reason in an error answer: its JSON ``error``, else the start of its text."""
    try:
        data = load_json(body, limit=MAX_SMALL_BYTES)
    except PayloadError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return one_line(data["error"], 200)
    text = body[:200].decode("utf-8", "replace").strip().splitlines()
    return one_line(text[0], 200) if text else ""


class _OutOfRange(ValueError):
    pass


def _nonfinite(_literal: str) -> None:
    return None  # NaN, Infinity, -Infinity read as null (the schema's reading rule)


def _finite_float(text: str) -> float | None:
    value = float(text)
    return value if math.isfinite(value) else None  # 1e999 overflows to Infinity: null as well


def _bounded_int(text: str) -> int:
    if len(text) > 20 or not -INT_LIMIT <= (value := int(text)) < INT_LIMIT:
        raise _OutOfRange(f"integer out of range: {text[:24]}{'…' if len(text) > 24 else ''}")
    return value


def _shape(c: int) -> int:
    if 0x30 <= c <= 0x39:
        return 0x30  # digits: "0"
    if c in (0x45, 0x65):
        return 0x65  # e, E: "e"
    if c in (0x22, 0x2B):
        return c  # '"' and "+" as themselves
    return 0x78 if chr(c).isalpha() or c >= 0x80 else 0x20  # letters (and UTF-8 bytes): "x"; the rest: " "


_NUMBER_SHAPES = bytes(_shape(c) for c in range(256))
_LONG_DIGITS = b"0" * 19


_BIG_EXPONENT = re.compile(rb'0e\+?000+(?:[^0"ex]|\Z)')  # in shapes: 3+ exponent digits where a number ends


def _plain_numbers(raw: bytes) -> bool:
    """True when no number in ``raw`` can be out of range, so the C parser's own numbers are exact: no run
    of 19+ digits (an integer beyond int64, a float mantissa long enough to overflow) and no exponent of 3+
    digits ending where a number ends (a hex id such as "…9e442a…" goes on with a letter or a quote). A
    false alarm only costs the careful path; the answer is the same either way."""
    shapes = raw.translate(_NUMBER_SHAPES)
    return _LONG_DIGITS not in shapes and _BIG_EXPONENT.search(shapes) is None


def _parse(body: bytes | str, limit: int) -> Any:
    """JSON of at most ``limit`` bytes, strict UTF-8, integers within int64, NaN/Infinity (and
    overflowing floats) as null, no lone surrogates; nesting is bounded by the interpreter (callers bound
    what they keep). Raises PayloadError only."""
    if len(body) > limit:
        raise PayloadError(too_big(limit))
    raw = bytes(body) if isinstance(body, bytes | bytearray) else None
    try:
        text = raw.decode("utf-8") if raw is not None else str(body)
    except UnicodeDecodeError as exc:
        raise _bad(f"invalid UTF-8 at byte {exc.start}") from None
    try:
        if raw is not None and _plain_numbers(raw):  # the common case: C speed for every number
            data = json.loads(text, parse_constant=_nonfinite)
        else:
            data = json.loads(
                text, parse_constant=_nonfinite, parse_float=_finite_float, parse_int=_bounded_int
            )
    except RecursionError:
        raise _bad("JSON nested too deeply") from None
    except _OutOfRange as exc:
        raise _bad(str(exc)) from None
    except ValueError as exc:  # JSONDecodeError
        raise _bad(f"invalid JSON: {exc}") from None
    if "\\ud" in text or "\\uD" in text:  # rare: every \uD800-\uDFFF escape must be half of a pair
        try:
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise _bad("a string holds a lone UTF-16 surrogate (\\uD800-\\uDFFF)") from None
        except (RecursionError, ValueError):
            raise _bad("JSON nested too deeply") from None
    return data


def _too_deep(value: Any, limit: int) -> bool:
    """Whether a decoded JSON value nests deeper than ``limit`` (iterative: no recursion to exhaust)."""
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        items = v.values() if type(v) is dict else v if type(v) is list else None
        if items:
            if depth >= limit:
                return True
            stack.extend((x, depth + 1) for x in items if type(x) is dict or type(x) is list)
    return False


def load_json(body: bytes | str, *, limit: int = MAX_BODY_BYTES, max_depth: int = MAX_DEPTH) -> Any:
    """One answer's JSON (see ``_parse``), nested at most ``max_depth`` levels. Raises PayloadError only."""
    data = _parse(body, limit)
    if _too_deep(data, max_depth):
        raise _bad(f"JSON nested deeper than {max_depth} levels")
    return data


def decode_parsed(decoder: Callable[[Any], Any], data: Any) -> Any:
    """Decode parsed JSON with the schema's rules, turning every failure into a PayloadError."""
    try:
        return decoder(data)
    except SchemaMismatch as exc:
        found = (
            exc.found if isinstance(exc.found, str) else (None if exc.found is None else repr(exc.found)[:40])
        )
        msg = f"agent speaks {found}, this console reads {exc.expected}.x" if found else str(exc)
        raise PayloadError(HostError("incompatible", msg, found_schema=found)) from None
    except SchemaError as exc:
        raise _bad(str(exc)) from None
    except (RecursionError, ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
        raise _bad(f"{type(exc).__name__}: {exc}") from None


def _check_evidence(snap: HostSnapshot) -> HostSnapshot:
    """Alert evidence is the one place the schema keeps JSON as it came: bound its nesting (everything
    else has the schema's fixed shape)."""
    for alerts in (snap.alerts, *(e.alerts for e in snap.engines)):
        for a in alerts:
            if a.evidence and _too_deep(a.evidence, MAX_DEPTH - 4):  # 4 levels: host, engines, alerts, alert
                raise _bad(f"alert {a.code[:40]!r}: evidence nested deeper than {MAX_DEPTH - 4} levels")
    return snap


def decode_snapshot(body: bytes | str, *, limit: int = MAX_SNAPSHOT_BYTES) -> HostSnapshot:
    """``GET /v1/snapshot`` as a HostSnapshot; PayloadError for anything this console cannot read."""
    return _check_evidence(decode_parsed(from_dict, _parse(body, limit)))


def decode_history(body: bytes | str, *, limit: int = MAX_BODY_BYTES) -> History:
    """``GET /v1/history`` as a History; PayloadError for anything this console cannot read."""
    history = decode_parsed(history_from_dict, _parse(body, limit))
    for snap in history.snapshots:
        _check_evidence(snap)
    return history
