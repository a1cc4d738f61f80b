"""One run's aggregates, under ``vllm bench serve``'s key names where the meaning is the same.

Same as vLLM: ``duration`` (s, from the first request to the end of the last), ``completed``, ``failed``,
``total_input_tokens``, ``total_output_tokens``, ``request_throughput``, ``request_goodput``,
``output_throughput``, ``total_token_throughput`` (per second of ``duration``), ``max_output_tokens_per_s``
(peak one-second bucket), ``max_concurrent_requests`` (peak requests in flight), and for each of ``ttft``,
``tpot``, ``itl``, ``e2el``: ``mean_``, ``median_``, ``std_`` and ``p50_ p90_ p95_ p99_`` ``*_ms``
(percentiles interpolated linearly, as numpy's default). TTFT, TPOT and E2EL are over completed requests;
ITL over every gap of every completed request; TPOT is vLLM's, (latency − TTFT) / (output tokens − 1),
over completed requests with at least two output tokens.

Ours: ``incomplete`` (cancelled by a bound or Ctrl-C; neither completed nor failed), ``errors_by_class``,
``error_examples``, ``peak_concurrency`` (= ``max_concurrent_requests``), ``output_tokens_source``
(``usage`` when every completed request reported usage, ``events`` when none did, else ``mixed``),
``stopped_by``, ``generator_cpu_s`` / ``generator_cpu_per_s`` (this process's CPU during the run).
A value that cannot be computed (no completed request) is None (JSON null), never 0.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from console.bench.load import Outcome
from console.bench.request import RequestRecord

PERCENTILES = (50, 90, 95, 99)
METRICS = ("ttft", "tpot", "itl", "e2el")
TPOT_DEFINITION = (
    "vllm: (latency - ttft) / (output_tokens - 1), over completed requests with 2+ output tokens"
)


def percentile(ordered: Sequence[float], p: float) -> float:
    """The ``p``-th percentile of sorted values, linearly interpolated (numpy's default method)."""
    if not ordered:
        raise ValueError("no values")
    pos = (len(ordered) - 1) * p / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def distribution(values: Sequence[float]) -> dict[str, float | None]:
    """mean, median, std (population, as numpy) and p50/p90/p95/p99 of ``values``; all None when empty."""
    keys = ["mean", "median", "std", *(f"p{p}" for p in PERCENTILES)]
    if not values:
        return dict.fromkeys(keys)
    ordered = sorted(values)
    n = len(ordered)
    mean = math.fsum(ordered) / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in ordered) / n)
    out: dict[str, float | None] = {"mean": mean, "median": percentile(ordered, 50), "std": std}
    out.update({f"p{p}": percentile(ordered, p) for p in PERCENTILES})
    return out


def per_request(name: str) -> Callable[[RequestRecord], float | None]:
    """The per-request value of ``ttft``, ``tpot`` or ``e2el`` (seconds)."""
    return {"ttft": lambda r: r.ttft, "tpot": lambda r: r.tpot, "e2el": lambda r: r.latency}[name]


def metric_values(records: Sequence[RequestRecord], name: str) -> list[float]:
    """Seconds: ``itl`` flattens every completed request's gaps, the others take one value per request."""
    ok = [r for r in records if r.ok]
    if name == "itl":
        return [gap for r in ok for gap in r.itl]
    get = per_request(name)
    return [v for r in ok if (v := get(r)) is not None]


def peak_concurrency(records: Sequence[RequestRecord]) -> int:
    events = sorted(
        [(r.start, 1) for r in records] + [(r.end, -1) for r in records if r.end is not None],
        key=lambda e: (e[0], e[1]),
    )
    peak = now = 0
    for _, step in events:
        now += step
        peak = max(peak, now)
    return peak


def max_output_tokens_per_s(records: Sequence[RequestRecord], started: float) -> float | None:
    """Output events in the busiest one-second bucket since the run started."""
    buckets: Counter[int] = Counter()
    for r in records:
        if not r.ok or r.ttft is None:
            continue
        t = r.start + r.ttft
        buckets[int(t - started)] += 1
        for gap in r.itl:
            t += gap
            buckets[int(t - started)] += 1
    return float(max(buckets.values())) if buckets else None


def _tokens_source(ok: Sequence[RequestRecord]) -> str | None:
    with_usage = sum(1 for r in ok if r.usage)
    if not ok:
        return None
    return "usage" if with_usage == len(ok) else "events" if with_usage == 0 else "mixed"


def summarize(
    outcome: Outcome, good: Callable[[RequestRecord], bool] | None = None, detailed: bool = False
) -> dict[str, Any]:
    """The run's aggregates; ``good`` decides goodput per request (None: no goodput)."""
    records = outcome.records
    ok = [r for r in records if r.ok]
    failed = [r for r in records if not r.ok and not r.incomplete]
    duration = max(outcome.ended - outcome.started, 1e-9)
    total_in = sum(
        r.prompt_tokens if r.prompt_tokens is not None else (r.expected_prompt_tokens or 0) for r in ok
    )
    total_out = sum(r.output_tokens or 0 for r in ok)

    def rate(x: float) -> float | None:
        return x / duration if ok else None

    out: dict[str, Any] = {
        "duration": duration,
        "completed": len(ok),
        "failed": len(failed),
        "incomplete": sum(1 for r in records if r.incomplete),
        "total_input_tokens": total_in,
        "total_output_tokens": total_out,
        "request_throughput": rate(len(ok)),
        "request_goodput": (sum(1 for r in ok if good(r)) / duration) if good is not None and ok else None,
        "output_throughput": rate(total_out),
        "total_token_throughput": rate(total_in + total_out),
        "max_output_tokens_per_s": max_output_tokens_per_s(records, outcome.started),
        "max_concurrent_requests": peak_concurrency(records),
    }
    for name in METRICS:
        for stat, value in distribution(metric_values(records, name)).items():
            out[f"{stat}_{name}_ms"] = None if value is None else value * 1000.0
    out.update(
        {
            "peak_concurrency": out["max_concurrent_requests"],
            "errors_by_class": dict(Counter(r.error for r in failed if r.error)),
            "error_examples": {r.error: r.detail for r in reversed(failed) if r.error},
            "output_tokens_source": _tokens_source(ok),
            "input_tokens_source": _tokens_source(ok)
            and (
                "usage"
                if all(r.prompt_tokens is not None for r in ok)
                else "estimate"
                if not any(r.prompt_tokens for r in ok)
                else "mixed"
            ),
            "tpot_definition": TPOT_DEFINITION,
            "stopped_by": outcome.stopped_by,
            "interrupted": outcome.interrupted,
            "generator_cpu_s": outcome.cpu_s,
            "generator_cpu_per_s": outcome.cpu_s / duration,
        }
    )
    if detailed:
        out.update(
            {
                "input_lens": [r.prompt_tokens for r in ok],
                "output_lens": [r.output_tokens for r in ok],
                "ttfts": [r.ttft for r in ok],
                "itls": [r.itl for r in ok],
                "latencies": [r.latency for r in ok],
                "start_times": [r.start - outcome.started for r in records],
                "errors": [r.detail or r.error or "" for r in records if not r.ok],
            }
        )
    return out
