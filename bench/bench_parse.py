"""Parse-speed benchmark: our exposition parser against prometheus_client's, in one process.

Run ``python bench/bench_parse.py [--repeat N]``. It times, on the real vLLM 0.32 exposition
(tests/data/metrics/vllm-0.32-cpu.loaded.prom):

  (a) prometheus_client.parser.text_string_to_metric_families, every sample consumed (the reference)
  (b) agents.metrics.parse.parse(text)                    - everything, wanted=None
  (c) parse(text, wanted=adapter.wanted())               - the agent's fast path (every second, the same
      label sets: they come from the parser's label cache after the first scrape)
  (e) (c) with the label cache emptied before every call  - a first scrape
  (d) (c) + adapter.read() + derive_stats                 - what the agent does per engine per second
      (skipped, and (c) uses a hard-coded vLLM name set, when the adapter cannot be imported)

and prints best-of and median per call in microseconds and the ratios reference / ours. Every number
printed comes from a measurement made in this run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import timeit
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from agents.metrics import parse as parse_module  # noqa: E402
from agents.metrics.parse import parse  # noqa: E402
from agents.metrics.window import derive_stats  # noqa: E402

FIXTURE = ROOT / "tests" / "data" / "metrics" / "vllm-0.32-cpu.loaded.prom"

# Used only when the vLLM adapter cannot be imported: the sample names it reads, written out here.
FALLBACK_WANTED = frozenset(
    {
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "vllm:gpu_cache_usage_perc",
        "vllm:num_preemptions_total",
        "vllm:prompt_tokens_total",
        "vllm:generation_tokens_total",
        "vllm:request_success_total",
        "vllm:prefix_cache_hits_total",
        "vllm:prefix_cache_queries_total",
        "vllm:gpu_prefix_cache_hits_total",
        "vllm:gpu_prefix_cache_queries_total",
    }
    | {
        f"vllm:{hist}_{suffix}"
        for hist in (
            "time_to_first_token_seconds",
            "inter_token_latency_seconds",
            "time_per_output_token_seconds",
            "e2e_request_latency_seconds",
            "request_queue_time_seconds",
        )
        for suffix in ("bucket", "sum", "count")
    }
)


def measure(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(best, median) microseconds per call over ``repeat`` timing runs."""
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()
    runs = [total / number * 1e6 for total in timer.repeat(repeat=repeat, number=number)]
    return min(runs), statistics.median(runs)


def main(argv: list[str] | None = None) -> int:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--repeat", type=int, default=7, help="timing runs per case (default 7)")
    args = options.parse_args(argv)
    if args.repeat < 1:
        print("bench_parse: --repeat must be at least 1", file=sys.stderr)
        return 2
    text = FIXTURE.read_text(encoding="utf-8")

    try:
        from agents.engines import get_adapter

        adapter = get_adapter("vllm")
        wanted = adapter.wanted()
        source = "the vLLM adapter's wanted()"
    except Exception as exc:  # the adapters are written in parallel; the bench must still run
        adapter, wanted = None, FALLBACK_WANTED
        source = f"a hard-coded vLLM name set (adapter not importable: {type(exc).__name__}: {exc})"

    def reference() -> int:
        return sum(len(family.samples) for family in text_string_to_metric_families(text))

    def ours_all() -> int:
        return len(parse(text).samples)

    def ours_wanted() -> int:
        return len(parse(text, wanted).samples)

    def ours_wanted_cold() -> int:
        parse_module._LABEL_CACHE.clear()
        return len(parse(text, wanted).samples)

    def ours_agent() -> object:
        metrics = parse(text, wanted)
        if adapter is None:
            return metrics
        reading = adapter.read(metrics)
        return derive_stats(reading, reading, 1.0)

    # The three must agree on what they read before their speed means anything.
    ref_samples = reference()
    full = parse(text)
    our_samples = sum(len(series) for series in full.samples.values())
    if full.problems or our_samples != ref_samples:
        print(f"bench_parse: parsers disagree ({our_samples} vs {ref_samples} samples; {full.problems[:3]})")
        return 1

    print(f"fixture: {FIXTURE.relative_to(ROOT)} ({len(text)} bytes, {ref_samples} samples)")
    print(f"wanted = {source}: {len(wanted)} names")
    cases = [
        ("(a) prometheus_client text_string_to_metric_families", reference),
        ("(b) parse(text)", ours_all),
        ("(c) parse(text, wanted)", ours_wanted),
    ]
    if adapter is not None:
        cases.append(("(d) parse(text, wanted) + adapter.read + derive_stats", ours_agent))
    cases.append(("(e) parse(text, wanted), label cache emptied each call", ours_wanted_cold))
    results = {}
    for label, fn in cases:
        best, median = measure(fn, args.repeat)
        results[label[:3]] = (best, median)
        print(f"{label:<62} best {best:10.1f} us   median {median:10.1f} us")
    ref_best, ref_median = results["(a)"]
    for key in [key for key in ("(b)", "(c)", "(d)", "(e)") if key in results]:
        best, median = results[key]
        print(f"ratio (a)/{key}: best {ref_best / best:6.1f}x   median {ref_median / median:6.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
