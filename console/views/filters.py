"""The fleet filter grammar: ``state:hung alert:KV_PRESSURE host:gpu0* kind:vllm model:llama -state:ready !text``.

Words are ANDed; a plain word matches host, engine, kind, model and state ("watched" and ``kind:watched``
match the engines the agent watches but did not start); ``-`` or ``!`` negates; ``*?[`` make a word a
glob. ``alert:any`` keeps every row with an active alert (``alert:CODE`` those with that code, by prefix).
An engine's state is the one the table shows: "crash-loop" while CRASH_LOOP is active (so a crash-looping
engine never passes ``state:ready`` between crashes). Pure: no Textual, no I/O.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass

from agents.schema import EngineSnapshot
from console.state import HostState
from console.views.cells import engine_state

ANY_ALERT = "any"  # alert:any — any active alert

FILTER_FIELDS = ("state", "alert", "host", "kind", "model")


@dataclass(frozen=True, slots=True)
class Term:
    field: str  # "text" | "state" | "alert" | "host" | "kind" | "model"
    value: str
    negate: bool = False


def parse_filter(text: str) -> tuple[Term, ...]:
    """``state:hung alert:KV_PRESSURE host:gpu01 kind:vllm -state:ready !text`` → terms (ANDed)."""
    terms = []
    for word in text.split():
        negate = word[0] in "-!" and len(word) > 1
        if negate:
            word = word[1:]
        name, sep, value = word.partition(":")
        if sep and name.lower() in FILTER_FIELDS and value:
            terms.append(Term(name.lower(), value.lower(), negate))
        else:
            terms.append(Term("text", word.lower(), negate))
    return tuple(terms)


def _like(pattern: str, text: str) -> bool:
    text = text.lower()
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatchcase(text, pattern)
    return pattern in text


def _term_matches(t: Term, h: HostState, e: EngineSnapshot | None) -> bool:
    if t.field == "host":
        return _like(t.value, h.name)
    if t.field == "state":  # an engine's state is only known while its host is live
        return (e is not None and h.live and engine_state(e).lower() == t.value) or h.status == t.value
    if t.field == "kind":  # kind:watched: the engines the agent watches but did not start
        return e is not None and (e.kind.lower() == t.value or (t.value == "watched" and not e.managed))
    if t.field == "model":
        return e is not None and any(_like(t.value, m) for m in (e.model or "", e.served_model_name or ""))
    if t.field == "alert":
        codes = [a.code.lower() for a in h.alerts] + [
            a.code.lower() for a in (h.snapshot.alerts if h.snapshot else ())
        ]
        if e is not None:
            codes += [a.code.lower() for a in e.alerts]
        return bool(codes) if t.value == ANY_ALERT else any(c.startswith(t.value) for c in codes)
    hay = [h.name] + (
        [
            e.id,
            e.kind,
            e.model or "",
            e.served_model_name or "",
            engine_state(e),
            "" if e.managed else "watched",
        ]
        if e is not None
        else [h.status]
    )
    return any(_like(t.value, x) for x in hay)


def matches(terms: Sequence[Term], h: HostState, e: EngineSnapshot | None) -> bool:
    """Whether an engine row (or a host without engines, ``e`` None) passes every term."""
    return all(_term_matches(t, h, e) != t.negate for t in terms)


__all__ = ["ANY_ALERT", "FILTER_FIELDS", "Term", "matches", "parse_filter"]
