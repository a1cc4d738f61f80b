"""Per-engine normalization: real and constructed expositions read through each adapter.

Expected values are looked up in the exposition text itself (by exact series), not copied from the
adapter's output, so a wrong name, label rule or aggregation fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agents.engines import ADAPTERS, detect_kind, get_adapter
from agents.engines.base import COUNTERS, GAUGES, HISTOGRAMS
from agents.metrics.parse import parse

DATA = Path(__file__).resolve().parents[2] / "data" / "metrics"
VLLM_LOADED = DATA / "vllm-0.32-cpu.loaded.prom"
VLLM_IDLE = DATA / "vllm-0.32-cpu.idle.prom"
VLLM_DP2 = DATA / "vllm-dp2-constructed.prom"
VLLM_DOCS = DATA / "vllm-docs-v1-early.prom.txt"
SGLANG_DOCS = DATA / "sglang-docs-2025.prom"
SGLANG_RECENT = DATA / "sglang-recent-constructed.prom"
TGI = DATA / "tgi-v3-constructed.prom"

VLLM = get_adapter("vllm")
SGLANG = get_adapter("sglang")
TGI_ADAPTER = get_adapter("tgi")


def text_of(path: Path) -> str:
    text = path.read_text()
    # The vLLM docs sample holds literal "..." elision lines (see the fixtures README).
    return "\n".join(line for line in text.splitlines() if line.strip() != "...") + "\n"


def value(text: str, series: str) -> float:
    """The value of the one line that starts with exactly ``series`` followed by a space."""
    hits = [line for line in text.splitlines() if line.startswith(series + " ")]
    assert len(hits) == 1, f"{series!r}: {len(hits)} lines"
    return float(hits[0].split()[-1])


def buckets(text: str, base: str, labels: str) -> list[tuple[float, float]]:
    """(le, cumulative) of one histogram series; ``labels`` is its label set without ``le``."""
    pair = re.compile(r'(\w+)="([^"]*)"')
    want = dict(pair.findall(labels))
    out = []
    for line in text.splitlines():
        if not line.startswith(base + "_bucket{"):
            continue
        got = dict(pair.findall(line[: line.rindex("}")]))
        le = got.pop("le")
        if got == want:
            out.append((float(le), float(line.split()[-1])))
    assert out, base
    return out


def read(adapter, text: str):
    return adapter.read(parse(text))


# --- vLLM ----------------------------------------------------------------------------------------------
E0 = '{engine="0",model_name="tiny-llama"}'
L0 = 'engine="0",model_name="tiny-llama"'


def test_vllm_real_exposition_maps_every_logical_name():
    text = text_of(VLLM_LOADED)
    r = read(VLLM, text)
    assert r.kind == "vllm" and r.models == ("tiny-llama",) and r.parts == {}
    assert r.gauges == {
        "requests_running": value(text, "vllm:num_requests_running" + E0),
        "requests_waiting": value(text, "vllm:num_requests_waiting" + E0),
        "kv_cache_usage": value(text, "vllm:kv_cache_usage_perc" + E0),
        "requests_waiting_capacity": value(
            text, f'vllm:num_requests_waiting_by_reason{{{L0},reason="capacity"}}'
        ),
        "requests_waiting_deferred": value(
            text, f'vllm:num_requests_waiting_by_reason{{{L0},reason="deferred"}}'
        ),
    }
    assert r.gauges["requests_running"] == 11  # the fixture's README: scraped with 11 running
    errors = value(
        text, 'vllm:request_success_total{engine="0",finished_reason="error",model_name="tiny-llama"}'
    )
    assert r.counters == {
        "prompt_tokens": value(text, "vllm:prompt_tokens_total" + E0),
        "generation_tokens": value(text, "vllm:generation_tokens_total" + E0),
        "preemptions": value(text, "vllm:num_preemptions_total" + E0),
        "request_errors": errors,
        "prefix_cache_hits": value(text, "vllm:prefix_cache_hits_total" + E0),
        "prefix_cache_queries": value(text, "vllm:prefix_cache_queries_total" + E0),
        "requests": sum(
            value(
                text,
                f'vllm:request_success_total{{engine="0",finished_reason="{reason}",model_name="tiny-llama"}}',
            )
            for reason in ("stop", "length", "abort", "error", "repetition")
        ),
    }
    for logical, base in [
        ("ttft", "vllm:time_to_first_token_seconds"),
        ("itl", "vllm:inter_token_latency_seconds"),
        ("e2e", "vllm:e2e_request_latency_seconds"),
        ("queue_time", "vllm:request_queue_time_seconds"),
    ]:
        hist = r.histograms[logical]
        expected = buckets(text, base, L0)
        assert list(zip(hist.bounds, hist.cumulative, strict=True)) == expected, logical
        assert hist.count == value(text, f"{base}_count" + E0)
        assert hist.sum == pytest.approx(value(text, f"{base}_sum" + E0))
        assert hist.has_inf


def test_vllm_error_counter_reads_only_the_error_reason():
    text = text_of(VLLM_IDLE).replace(
        'vllm:request_success_total{engine="0",finished_reason="error",model_name="tiny-llama"} 0.0',
        'vllm:request_success_total{engine="0",finished_reason="error",model_name="tiny-llama"} 3.0',
    )
    assert read(VLLM, text).counters["request_errors"] == 3.0  # stop/length/abort are not errors


def test_vllm_error_counter_is_zero_without_error_series_and_none_without_family():
    text = text_of(VLLM_IDLE)
    no_error_reason = "\n".join(line for line in text.splitlines() if 'finished_reason="error"' not in line)
    assert read(VLLM, no_error_reason).counters["request_errors"] == 0.0
    no_family = "\n".join(
        line for line in text.splitlines() if not line.startswith("vllm:request_success_total")
    )
    assert read(VLLM, no_family).counters["request_errors"] is None


def test_vllm_old_names_are_read_when_new_ones_are_absent():
    text = text_of(VLLM_LOADED)
    old = (
        text.replace("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
        .replace("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds")
        .replace("vllm:prefix_cache_", "vllm:gpu_prefix_cache_")
    )
    new_r, old_r = read(VLLM, text), read(VLLM, old)
    assert old_r.gauges["kv_cache_usage"] == new_r.gauges["kv_cache_usage"] is not None
    assert old_r.histograms["itl"] == new_r.histograms["itl"] is not None
    assert old_r.counters["prefix_cache_queries"] == new_r.counters["prefix_cache_queries"] is not None


def test_vllm_prefers_the_new_kv_name_when_both_are_exposed():
    text = text_of(VLLM_LOADED) + 'vllm:gpu_cache_usage_perc{engine="0",model_name="tiny-llama"} 0.75\n'
    assert read(VLLM, text).gauges["kv_cache_usage"] == value(text, "vllm:kv_cache_usage_perc" + E0)


def test_vllm_iteration_tokens_total_is_not_taken_for_a_counter():
    assert "vllm:iteration_tokens_total" not in VLLM.wanted()
    assert "vllm:iteration_tokens_total_count" not in VLLM.wanted()


def test_vllm_early_docs_sample_without_engine_label():
    text = text_of(VLLM_DOCS)
    r = read(VLLM, text)
    model = "meta-llama/Llama-3.1-8B-Instruct"
    assert r.models == (model,) and r.parts == {}
    assert r.gauges["requests_running"] == value(text, f'vllm:num_requests_running{{model_name="{model}"}}')
    assert r.gauges["kv_cache_usage"] is None  # not in this (elided) sample: None, never 0
    assert r.counters["generation_tokens"] == value(
        text, f'vllm:generation_tokens_total{{model_name="{model}"}}'
    )
    assert r.counters["request_errors"] == 0.0  # finished_reason family without an "error" series
    assert r.counters["preemptions"] is None


def test_vllm_data_parallel_and_two_models_aggregate():
    dp = text_of(VLLM_DP2)
    total = read(VLLM, dp)
    single = read(VLLM, text_of(VLLM_LOADED))
    assert set(total.parts) == {"tiny-llama/0", "tiny-llama/1", "tiny-llama-b/0"}
    assert total.models == ("tiny-llama", "tiny-llama-b")
    # The untouched engine reads exactly as the real one-engine exposition it was copied from.
    assert total.parts["tiny-llama/0"] == single
    parts = total.parts.values()
    for name in COUNTERS:
        assert total.counters[name] == sum(p.counters[name] for p in parts), name
    # The copies scale counters by 2 and 3: 1 + 2 + 3 = 6 times the real engine.
    assert total.counters["generation_tokens"] == 6 * single.counters["generation_tokens"]
    running = [
        value(dp, f'vllm:num_requests_running{{engine="{e}",model_name="{m}"}}')
        for m, e in [("tiny-llama", "0"), ("tiny-llama", "1"), ("tiny-llama-b", "0")]
    ]
    kv = [
        value(dp, f'vllm:kv_cache_usage_perc{{engine="{e}",model_name="{m}"}}')
        for m, e in [("tiny-llama", "0"), ("tiny-llama", "1"), ("tiny-llama-b", "0")]
    ]
    assert total.gauges["requests_running"] == sum(running)
    assert total.gauges["kv_cache_usage"] == max(kv)  # the fullest engine, not the mean
    ttft, one = total.histograms["ttft"], single.histograms["ttft"]
    assert ttft.bounds == one.bounds
    assert ttft.cumulative == tuple(6 * c for c in one.cumulative)
    assert ttft.count == 6 * one.count
    assert total.parts["tiny-llama/1"].histograms["ttft"].count == 2 * one.count


def by_reason(text: str, reason: str) -> list[float]:
    """Every num_requests_waiting_by_reason value of ``reason`` in the text (any engine, any model)."""
    return [
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("vllm:num_requests_waiting_by_reason{") and f'reason="{reason}"' in line
    ]


def test_vllm_waiting_by_reason_adds_up_across_engines_and_models():
    text = text_of(VLLM_DP2)
    r = read(VLLM, text)
    capacity, deferred = by_reason(text, "capacity"), by_reason(text, "deferred")
    assert len(capacity) == 3 and sum(capacity) > 0  # the fixture puts 2 + 5 on the copies
    assert r.gauges["requests_waiting_capacity"] == sum(capacity)
    assert r.gauges["requests_waiting_deferred"] == sum(deferred)
    # The engine's own rule: the reasons sum to num_requests_waiting.
    assert (
        r.gauges["requests_waiting_capacity"] + r.gauges["requests_waiting_deferred"]
        == r.gauges["requests_waiting"]
    )
    assert r.parts["tiny-llama/1"].gauges["requests_waiting_capacity"] == value(
        text, 'vllm:num_requests_waiting_by_reason{engine="1",model_name="tiny-llama",reason="capacity"}'
    )


def test_vllm_deferred_requests_are_read_apart_from_capacity():
    text = text_of(VLLM_LOADED).replace(
        f'vllm:num_requests_waiting_by_reason{{{L0},reason="deferred"}} 0.0',
        f'vllm:num_requests_waiting_by_reason{{{L0},reason="deferred"}} 473.0',
    )
    r = read(VLLM, text)
    assert r.gauges["requests_waiting_deferred"] == 473.0
    assert r.gauges["requests_waiting_capacity"] == value(
        text, f'vllm:num_requests_waiting_by_reason{{{L0},reason="capacity"}}'
    )


def test_vllm_waiting_by_reason_is_none_where_not_exposed():
    older = read(VLLM, text_of(VLLM_DOCS))  # early V1: no such family
    assert older.gauges["requests_running"] is not None
    assert (
        older.gauges["requests_waiting_capacity"] is None
        and older.gauges["requests_waiting_deferred"] is None
    )
    # A family without one of the reasons: that reason is unknown (None), not 0.
    text = "\n".join(line for line in text_of(VLLM_LOADED).splitlines() if 'reason="deferred"' not in line)
    r = read(VLLM, text)
    assert r.gauges["requests_waiting_deferred"] is None and r.gauges["requests_waiting_capacity"] is not None


def test_vllm_requests_counter_sums_every_finished_reason():
    text = text_of(VLLM_IDLE).replace(
        'vllm:request_success_total{engine="0",finished_reason="abort",model_name="tiny-llama"} 0.0',
        'vllm:request_success_total{engine="0",finished_reason="abort",model_name="tiny-llama"} 4.0',
    )
    reasons = [line for line in text.splitlines() if line.startswith("vllm:request_success_total{")]
    r = read(VLLM, text)
    assert r.counters["requests"] == sum(float(line.split()[-1]) for line in reasons) == 17.0  # 5 + 8 + 4
    dp = read(VLLM, text_of(VLLM_DP2))
    assert dp.counters["requests"] == sum(p.counters["requests"] for p in dp.parts.values())
    docs = read(VLLM, text_of(VLLM_DOCS))  # early V1, no engine label
    assert docs.counters["requests"] == 132.0  # stop 1 + length 131 + abort 0 in the sample
    no_family = "\n".join(
        line for line in text.splitlines() if not line.startswith("vllm:request_success_total")
    )
    assert read(VLLM, no_family).counters["requests"] is None


# --- SGLang --------------------------------------------------------------------------------------------
SG_MODEL = "meta-llama/Llama-3.1-8B-Instruct"
QWEN = "Qwen/Qwen2.5-7B-Instruct"


def test_sglang_docs_sample_old_naming():
    text = text_of(SGLANG_DOCS)
    r = read(SGLANG, text)
    m = f'{{model_name="{SG_MODEL}"}}'
    assert r.models == (SG_MODEL,)
    assert r.gauges == {
        "requests_running": value(text, "sglang:num_running_reqs" + m),
        "requests_waiting": value(text, "sglang:num_queue_reqs" + m),
        "kv_cache_usage": value(text, "sglang:token_usage" + m),
        "requests_waiting_capacity": None,  # SGLang has no waiting-by-reason split
        "requests_waiting_deferred": None,
    }
    assert r.counters["prompt_tokens"] == value(text, "sglang:prompt_tokens_total" + m)
    assert r.counters["generation_tokens"] == value(text, "sglang:generation_tokens_total" + m)
    assert r.counters["request_errors"] is None  # SGLang has no error counter
    assert r.counters["preemptions"] is None
    assert r.counters["prefix_cache_hits"] is None and r.counters["prefix_cache_queries"] is None
    assert r.histograms["itl"].count == value(text, "sglang:time_per_output_token_seconds_count" + m)
    assert r.histograms["ttft"].count == value(text, "sglang:time_to_first_token_seconds_count" + m)
    assert r.histograms["queue_time"] is None


def test_sglang_late_2024_names():
    text = (
        text_of(SGLANG_DOCS)
        .replace("sglang:num_running_reqs", "sglang:num_requests_running")
        .replace("sglang:num_queue_reqs", "sglang:num_requests_waiting")
    )
    old, new = read(SGLANG, text), read(SGLANG, text_of(SGLANG_DOCS))
    assert old.gauges == new.gauges
    assert old.gauges["requests_running"] is not None


def sched(dp: int, tp: int) -> str:
    return (
        f'dp_rank="{dp}",engine_type="unified",model_name="{QWEN}",moe_ep_rank="0",pp_rank="0",tp_rank="{tp}"'
    )


def test_sglang_ranks_are_not_double_counted():
    text = text_of(SGLANG_RECENT)
    r = read(SGLANG, text)
    assert r.models == (QWEN,)
    assert set(r.parts) == {f"{QWEN}/0", f"{QWEN}/1"}

    def per_rank(name: str) -> dict[tuple[int, int], float]:
        return {(d, t): value(text, f"{name}{{{sched(d, t)}}}") for d in (0, 1) for t in (0, 1)}

    running = per_rank("sglang:num_running_reqs")
    assert r.gauges["requests_running"] == max(running[0, 0], running[0, 1]) + max(
        running[1, 0], running[1, 1]
    )
    assert r.gauges["requests_running"] < sum(running.values())  # summing the TP ranks would double it
    waiting = per_rank("sglang:num_queue_reqs")
    assert waiting[0, 0] != waiting[0, 1]  # one rank lags: the fixture checks max, not "first"
    assert r.gauges["requests_waiting"] == max(waiting[0, 0], waiting[0, 1]) + max(
        waiting[1, 0], waiting[1, 1]
    )
    usage = per_rank("sglang:token_usage")
    assert r.gauges["kv_cache_usage"] == max(usage.values())
    retracted = per_rank("sglang:num_retracted_requests_total")
    assert r.counters["preemptions"] == retracted[0, 0] + retracted[1, 0]
    queue = r.histograms["queue_time"]
    assert queue.count == value(text, f"sglang:queue_time_seconds_count{{{sched(0, 0)}}}") + value(
        text, f"sglang:queue_time_seconds_count{{{sched(1, 0)}}}"
    )
    m = f'{{model_name="{QWEN}"}}'
    assert r.counters["prompt_tokens"] == value(text, "sglang:prompt_tokens_total" + m)
    assert r.counters["prefix_cache_hits"] == value(text, "sglang:cached_tokens_total" + m)
    assert r.counters["prefix_cache_queries"] == r.counters["prompt_tokens"]
    assert r.histograms["itl"].count == value(text, "sglang:inter_token_latency_seconds_count" + m)


def test_sglang_old_retraction_gauge_is_not_rated():
    text = "\n".join(
        line
        for line in text_of(SGLANG_RECENT).splitlines()
        if not line.startswith("sglang:num_retracted_requests_total")
    )
    assert "sglang:num_retracted_reqs{" in text
    assert read(SGLANG, text).counters["preemptions"] is None


def test_sglang_cached_tokens_declared_without_samples_means_zero_hits():
    lines = text_of(SGLANG_RECENT).splitlines()
    declared = "\n".join(line for line in lines if not line.startswith("sglang:cached_tokens_total"))
    r = read(SGLANG, declared)
    assert r.counters["prefix_cache_hits"] == 0.0
    assert r.counters["prefix_cache_queries"] == r.counters["prompt_tokens"] is not None
    undeclared = "\n".join(line for line in lines if "sglang:cached_tokens_total" not in line)
    r = read(SGLANG, undeclared)
    assert r.counters["prefix_cache_hits"] is None and r.counters["prefix_cache_queries"] is None


def test_sglang_requests_counter_and_its_late_2024_name():
    text = text_of(SGLANG_RECENT)
    assert read(SGLANG, text).counters["requests"] == value(
        text, f'sglang:num_requests_total{{model_name="{QWEN}"}}'
    )
    assert read(SGLANG, text_of(SGLANG_DOCS)).counters["requests"] is None  # not in the docs sample
    late_2024 = text_of(SGLANG_DOCS) + (
        "# TYPE sglang:request_success_total counter\n"
        f'sglang:request_success_total{{finished_reason="stop",model_name="{SG_MODEL}"}} 40.0\n'
        f'sglang:request_success_total{{finished_reason="length",model_name="{SG_MODEL}"}} 2.0\n'
    )
    r = read(SGLANG, late_2024)
    assert r.counters["requests"] == 42.0
    assert r.gauges["requests_waiting_capacity"] is None and r.gauges["requests_waiting_deferred"] is None


# --- TGI -----------------------------------------------------------------------------------------------
def test_tgi_constructed_exposition():
    text = text_of(TGI)
    r = read(TGI_ADAPTER, text)
    assert r.kind == "tgi" and r.models == () and r.parts == {}
    assert r.gauges == {
        "requests_running": value(text, "tgi_batch_current_size"),
        "requests_waiting": value(text, "tgi_queue_size"),
        "kv_cache_usage": None,
        "requests_waiting_capacity": None,
        "requests_waiting_deferred": None,
    }
    errors = sum(
        value(text, f'tgi_request_failure{{err="{e}"}}') for e in ("validation", "overloaded", "generation")
    )
    assert r.counters == {
        "prompt_tokens": value(text, "tgi_request_input_length_sum"),
        "generation_tokens": value(text, "tgi_request_generated_tokens_sum"),
        "preemptions": None,
        "request_errors": errors,
        "prefix_cache_hits": None,
        "prefix_cache_queries": None,
        "requests": value(text, "tgi_request_success") + errors,  # finished: not the in-flight ones
    }
    assert r.counters["requests"] < value(text, "tgi_request_count")
    assert r.histograms["ttft"] is None  # TGI has no TTFT metric
    assert r.histograms["itl"].count == value(text, "tgi_request_mean_time_per_token_duration_count")
    assert r.histograms["e2e"].count == value(text, "tgi_request_duration_count")
    assert r.histograms["queue_time"].count == value(text, "tgi_request_queue_duration_count")
    assert len(r.histograms["e2e"].bounds) == 36  # 35 TGI duration buckets + Inf


def test_tgi_lazily_created_series_read_as_zero_once_requests_are_counted():
    lines = text_of(TGI).splitlines()
    lazy = [
        line
        for line in lines
        if not line.startswith(
            ("tgi_request_failure", "tgi_request_input_length", "tgi_request_generated_tokens")
        )
    ]
    r = read(TGI_ADAPTER, "\n".join(lazy))
    assert r.counters["request_errors"] == 0.0
    assert r.counters["prompt_tokens"] == 0.0 and r.counters["generation_tokens"] == 0.0
    assert r.counters["requests"] == value(text_of(TGI), "tgi_request_success")  # no failure yet
    nothing_finished = [line for line in lazy if not line.startswith("tgi_request_success")]
    assert read(TGI_ADAPTER, "\n".join(nothing_finished)).counters["requests"] == 0.0
    before_any_request = [line for line in lazy if not line.startswith("tgi_request_count")]
    r = read(TGI_ADAPTER, "\n".join(before_any_request))
    assert r.counters["request_errors"] is None and r.counters["prompt_tokens"] is None
    before_any = [line for line in before_any_request if not line.startswith("tgi_request_success")]
    assert read(TGI_ADAPTER, "\n".join(before_any)).counters["requests"] is None
    assert r.gauges["requests_waiting"] == value(text_of(TGI), "tgi_queue_size")


# --- detection -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "kind"),
    [
        (VLLM_LOADED, "vllm"),
        (VLLM_DP2, "vllm"),
        (VLLM_DOCS, "vllm"),
        (SGLANG_DOCS, "sglang"),
        (SGLANG_RECENT, "sglang"),
        (TGI, "tgi"),
    ],
)
def test_detect_kind(path: Path, kind: str):
    metrics = parse(text_of(path))
    assert detect_kind(metrics) == kind
    scores = {k: a.detect(metrics) for k, a in ADAPTERS.items()}
    assert 0 < scores[kind] <= 1
    assert all(score == 0 for k, score in scores.items() if k != kind)


def test_detect_kind_of_something_else_is_none():
    assert detect_kind(parse("process_open_fds 3\nhttp_requests_total 4\n")) is None
    assert detect_kind(parse("")) is None


def test_every_reading_has_exactly_the_contract_keys():
    for path in (VLLM_LOADED, SGLANG_RECENT, TGI):
        for adapter in ADAPTERS.values():
            r = read(adapter, text_of(path))
            assert set(r.gauges) == set(GAUGES)
            assert set(r.counters) == set(COUNTERS) and set(r.histograms) == set(HISTOGRAMS)
