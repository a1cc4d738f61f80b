"""Scripted faults for the simulated engine: ``--fault KIND[@T][:k=v,...]`` (pure parsing and timing).

``T`` is seconds after the engine became ready (default 0). Kinds and their parameters:

- ``hang@T[:for=D]``         the scheduler stops stepping; /health and /metrics keep answering (for D s)
- ``crash@T[:code=N,orphan=1]`` exit with code N (default 1) after the dialect's last log lines;
                             ``orphan=1`` leaves the worker process running (as after a hard crash)
- ``slow@T:factor=F``        prefill and decode F times slower (default 4)
- ``start-fail[:code=N]``    exit during start-up, before listening (default code 1)
- ``startup-delay:s=S``      load for S seconds before serving (default 5)
- ``metrics-garbage@T``      /metrics answers 200 with random non-exposition bytes
- ``metrics-huge@T[:mb=M]``  /metrics streams a valid-looking body of M MiB (default 50)
- ``metrics-slow@T[:bps=B]`` /metrics trickles B bytes per second (default 10)

Silent failures (the engine answers 200 while users get nothing, or garbage). Each (and ``hang``) takes ``for=D``:
the fault lasts D seconds and then ends (default: it never ends), so a test can see an alert clear.

- ``admission-stall@T[:trickle=S]``  the scheduler stops admitting waiting requests: running ones
                             finish except the last, which stays running and gets one token every S
                             seconds (default 2, as vllm#53130's 0.48 tok/s); waiting grows with the
                             load and KV is mostly free; vLLM's
                             ``num_requests_waiting_by_reason`` counts the waiting as ``deferred``
- ``gpu-wedge@T``            a kernel never returns: the iteration in flight at T (or the first one
                             after T, if the engine is idle) never completes, so token counters stay
                             flat and its requests stay running; /health 200; the engine's
                             simulated GPUs report 100 % utilization (ledger ``util_pct``)
- ``rank-diverge@T``         a collective hang on an engine with two or more GPUs
                             (CUDA_VISIBLE_DEVICES; refused at start with fewer): no progress as in
                             ``gpu-wedge``, the first GPU at 100 % and the others at 0 % (ledger
                             ``util_pct_by_gpu``)
- ``frontend-hang@T``        completion requests are read but never reach the scheduler (no response,
                             ever), nor does the internal load or SGLang's /health_generate probe;
                             running and waiting drain to 0; /health and /metrics answer 200
- ``wrong-answers@T``        temperature-0 completions (deterministic per prompt before T) return other
                             plausible text: never the pre-fault answer, and never the same text twice
                             in a row for the same prompt; lengths and latency stay normal
- ``drift@T[:factor=F]``     iterations that prefill take F times as long (default 3): TTFT is about
                             F times its earlier value at the same load, decode-only steps are unchanged

A ``hang`` (and a SIGSTOPped worker) leaves the GPU idle: the engine's ledger then says 0 %.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


class FaultSpecError(ValueError):
    """A --fault value that cannot be used; the message is one line for the user."""


# kind -> (takes @T, {param: (type, default)})
KINDS: dict[str, tuple[bool, dict[str, tuple[type, float | int | None]]]] = {
    "hang": (True, {"for": (float, None)}),
    "crash": (True, {"code": (int, 1), "orphan": (bool, 0)}),
    "slow": (True, {"factor": (float, 4.0)}),
    "start-fail": (False, {"code": (int, 1)}),
    "startup-delay": (False, {"s": (float, 5.0)}),
    "metrics-garbage": (True, {}),
    "metrics-huge": (True, {"mb": (float, 50.0)}),
    "metrics-slow": (True, {"bps": (float, 10.0)}),
    "admission-stall": (True, {"trickle": (float, 2.0), "for": (float, None)}),
    "gpu-wedge": (True, {"for": (float, None)}),
    "rank-diverge": (True, {"for": (float, None)}),
    "frontend-hang": (True, {"for": (float, None)}),
    "wrong-answers": (True, {"for": (float, None)}),
    "drift": (True, {"factor": (float, 3.0), "for": (float, None)}),
}
# kinds that need an engine on two or more GPUs
MULTI_GPU_KINDS = frozenset({"rank-diverge"})


@dataclass(frozen=True, slots=True)
class Fault:
    kind: str
    at: float | None = None  # seconds after ready; None for start-time kinds
    params: Mapping[str, float] = field(default_factory=dict)

    def param(self, name: str) -> float:
        return float(self.params[name])

    @property
    def until(self) -> float | None:
        """Seconds after ready when the fault ends (``for=D``), or None if it never ends."""
        duration = self.params.get("for")
        return None if duration is None or self.at is None else self.at + float(duration)


def _number(kind: str, name: str, text: str, typ: type) -> float:
    try:
        value = float(text) if typ is float else int(text, 10)
    except ValueError:
        raise FaultSpecError(f"fault {kind!r}: {name}={text!r} is not a number") from None
    if not math.isfinite(value):
        raise FaultSpecError(f"fault {kind!r}: {name} must be finite")
    return value


def _check(kind: str, name: str, value: float) -> None:
    if name == "code" and not 0 <= value <= 255:
        raise FaultSpecError(f"fault {kind!r}: code must be 0..255")
    if name == "orphan" and value not in (0, 1):
        raise FaultSpecError(f"fault {kind!r}: orphan must be 0 or 1")
    if name in ("factor", "mb", "bps", "trickle", "for") and value <= 0:
        raise FaultSpecError(f"fault {kind!r}: {name} must be > 0")
    if name == "s" and value < 0:
        raise FaultSpecError(f"fault {kind!r}: s must be >= 0")


def parse_fault(spec: str) -> Fault:
    """Parse one ``KIND[@T][:k=v,...]``; raises FaultSpecError with a one-line reason."""
    text = spec.strip()
    if not text:
        raise FaultSpecError("empty fault spec")
    head, _, tail = text.partition(":")
    kind, at_sep, at_text = head.partition("@")
    if kind not in KINDS:
        raise FaultSpecError(f"unknown fault kind {kind!r} (expected one of: {', '.join(KINDS)})")
    timed, schema = KINDS[kind]
    at: float | None = None
    if at_sep:
        if not timed:
            raise FaultSpecError(f"fault {kind!r} happens at start-up and takes no @T")
        at = _number(kind, "T", at_text, float)
        if at < 0:
            raise FaultSpecError(f"fault {kind!r}: T must be >= 0")
    elif timed:
        at = 0.0
    params: dict[str, float] = {name: default for name, (_, default) in schema.items() if default is not None}
    if tail:
        for item in tail.split(","):
            name, eq, value = item.partition("=")
            name = name.strip()
            if not eq or not name:
                raise FaultSpecError(f"fault {kind!r}: expected k=v, got {item!r}")
            if name not in schema:
                allowed = ", ".join(schema) or "none"
                raise FaultSpecError(f"fault {kind!r}: unknown parameter {name!r} (allowed: {allowed})")
            typ = schema[name][0]
            number = _number(kind, name, value.strip(), int if typ is bool else typ)
            _check(kind, name, number)
            params[name] = number
    return Fault(kind, at, params)


def parse_faults(specs: Iterable[str]) -> list[Fault]:
    faults = [parse_fault(s) for s in specs]
    for kind in ("start-fail", "startup-delay"):
        if sum(1 for f in faults if f.kind == kind) > 1:
            raise FaultSpecError(f"fault {kind!r} given more than once")
    return faults


class FaultClock:
    """Releases each timed fault once, when ``elapsed`` (seconds since ready) reaches its T, and ends
    each fault with a ``for=D`` once, when ``elapsed`` reaches T + D."""

    def __init__(self, faults: Iterable[Fault]) -> None:
        self._pending = sorted((f for f in faults if f.at is not None), key=lambda f: f.at or 0.0)
        self._active: list[Fault] = []

    def due(self, elapsed: float) -> list[Fault]:
        out = [f for f in self._pending if (f.at or 0.0) <= elapsed]
        if out:
            self._pending = self._pending[len(out) :]
            self._active += [f for f in out if f.until is not None]
        return out

    def ended(self, elapsed: float) -> list[Fault]:
        """Faults released earlier whose ``for=D`` ran out (each returned once)."""
        out = [f for f in self._active if (f.until or 0.0) <= elapsed]
        if out:
            self._active = [f for f in self._active if f not in out]
        return out

    @property
    def pending(self) -> int:
        return len(self._pending)


def start_fault(faults: Iterable[Fault], kind: str) -> Fault | None:
    """The start-time fault of ``kind`` (start-fail / startup-delay), if any."""
    return next((f for f in faults if f.kind == kind), None)
