"""`llmconsole bench`'s pure parts: SSE timing, TPOT's definition, percentiles, aggregates, SLOs and the rate
search, the workloads and their bodies, the result document and its schema check."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest

from agents.sim.prefixcache import BLOCK_CHARS, text_blocks
from console.bench import result as results
from console.bench.load import Outcome, Shape, check_shape
from console.bench.request import RequestRecord, _Events, _StreamError, error_message
from console.bench.slo import RateSearch, SloError, goodput_check, verdict
from console.bench.slo import parse as parse_slo
from console.bench.stats import distribution, peak_concurrency, percentile, summarize
from console.bench.workload import Prompts, RequestFormat, TextMaker, WorkloadError, WorkloadSpec


def _sse(obj: dict | str) -> bytes:
    return f"data: {obj if isinstance(obj, str) else json.dumps(obj)}\n\n".encode()


def test_events_time_first_non_empty_token_and_every_gap() -> None:
    rec = RequestRecord(0, start=100.0)
    ev = _Events(rec)
    role = {"choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]}
    tok = {"choices": [{"index": 0, "delta": {"content": " a"}, "finish_reason": None}]}
    last = {"choices": [{"index": 0, "delta": {"content": " b"}, "finish_reason": "length"}]}
    usage = {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3}}
    ev.feed(_sse(role), 100.05)  # a role-only chunk is not a token
    first = _sse(tok)
    ev.feed(first[:10], 100.2)  # split anywhere: nothing complete yet
    ev.feed(first[10:], 100.25)
    ev.feed(_sse(tok) + _sse(last) + _sse(usage) + _sse("[DONE]"), 100.4)
    assert rec.ttft == pytest.approx(0.25)
    assert rec.itl == pytest.approx([0.15, 0.0])  # two events arrived in one read: a zero gap
    assert (rec.prompt_tokens, rec.output_tokens, rec.usage, rec.events) == (7, 3, True, 3)
    assert ev.done and ev.finished


def test_events_crlf_completion_text_and_errors() -> None:
    rec = RequestRecord(0, start=0.0)
    ev = _Events(rec)
    ev.feed(b'data: {"choices":[{"text":"x","finish_reason":null}]}\r\n\r\n: comment\r\n\r\n', 1.0)
    assert rec.ttft == 1.0 and rec.events == 1
    with pytest.raises(_StreamError) as bad:
        ev.feed(b"data: {not json}\n\n", 2.0)
    assert bad.value.kind == "protocol"
    with pytest.raises(_StreamError) as err:
        ev.feed(_sse({"error": {"message": "KV cache is full", "code": 500}}), 3.0)
    assert err.value.kind == "stream_error" and "KV cache is full" in str(err.value)
    assert (
        error_message(b'{"error": "Input validation error", "error_type": "validation"}')
        == "Input validation error"
    )
    assert error_message(b'{"detail": "Not Found"}') == "Not Found"


def test_tpot_is_vllms_definition() -> None:
    rec = RequestRecord(0, start=10.0, end=12.0, ok=True, ttft=0.5, output_tokens=16)
    assert rec.latency == 2.0
    assert rec.tpot == pytest.approx((2.0 - 0.5) / 15)  # excludes the first token
    assert RequestRecord(0, start=0.0, end=1.0, ok=True, ttft=0.5, output_tokens=1).tpot is None


def test_percentile_is_linear_interpolation() -> None:
    values = [1.0, 2.0, 3.0, 4.0]
    assert percentile(values, 50) == 2.5 and percentile(values, 90) == pytest.approx(3.7)
    assert percentile([5.0], 99) == 5.0
    d = distribution([1.0, 2.0, 3.0, 4.0])
    assert (
        d["mean"] == 2.5 and d["std"] == pytest.approx(1.118034, rel=1e-6) and d["p99"] == pytest.approx(3.97)
    )
    assert distribution([]) == dict.fromkeys(["mean", "median", "std", "p50", "p90", "p95", "p99"])


def _rec(
    i: int, start: float, end: float, ok: bool = True, ttft: float = 0.1, out: int = 4, err: str | None = None
):
    return RequestRecord(
        i,
        start,
        10,
        end=end,
        ok=ok,
        error=err,
        ttft=ttft if ok else None,
        itl=[0.05] * (out - 1) if ok else [],
        prompt_tokens=10 if ok else None,
        output_tokens=out if ok else None,
        usage=ok,
    )


def test_summarize_uses_vllm_keys_and_nulls_what_is_missing() -> None:
    recs = [
        _rec(0, 0.0, 1.0),
        _rec(1, 0.5, 1.5),
        _rec(2, 1.0, 2.0, ok=False, err="http_503"),
        _rec(3, 1.2, 2.0, ok=False, err="cancelled"),
    ]
    s = summarize(Outcome(recs, 0.0, 2.0, "interrupt", 0.1), good=lambda r: r.index == 0)
    assert (s["completed"], s["failed"], s["incomplete"]) == (2, 1, 1)
    assert s["duration"] == 2.0 and s["request_throughput"] == 1.0 and s["request_goodput"] == 0.5
    assert (
        s["total_output_tokens"] == 8
        and s["output_throughput"] == 4.0
        and s["total_token_throughput"] == 14.0
    )
    assert s["max_concurrent_requests"] == s["peak_concurrency"] == 3
    assert s["mean_ttft_ms"] == pytest.approx(100.0) and s["p99_itl_ms"] == pytest.approx(50.0)
    assert s["mean_tpot_ms"] == pytest.approx((1.0 - 0.1) / 3 * 1000)
    assert s["errors_by_class"] == {"http_503": 1} and s["interrupted"] is True
    empty = summarize(Outcome([_rec(0, 0.0, 1.0, ok=False, err="connect")], 0.0, 1.0, "duration", 0.0))
    assert empty["request_throughput"] is None and empty["mean_ttft_ms"] is None and empty["completed"] == 0
    assert empty["request_goodput"] is None


def test_peak_concurrency_counts_overlaps() -> None:
    assert peak_concurrency([_rec(0, 0, 1), _rec(1, 1, 2), _rec(2, 0.5, 1.5)]) == 2  # an end and a start tie


def test_slo_parsing_and_verdicts() -> None:
    objectives = parse_slo("ttft_p99=0.5, tpot_p99=0.05,itl_mean=0.1")
    assert [(o.metric, o.stat, o.limit_s, o.key) for o in objectives][0] == (
        "ttft",
        "p99",
        0.5,
        "p99_ttft_ms",
    )
    for bad, words in (
        ("ttfb_p99=1", "unknown metric 'ttfb_p99'"),
        ("ttft_p99", "NAME=SECONDS"),
        ("ttft_p99=-1", "positive"),
        ("ttft_p99=abc", "not a number"),
        ("", "at least one"),
    ):
        with pytest.raises(SloError, match=words):
            parse_slo(bad)
    run = {"completed": 99, "failed": 1, "p99_ttft_ms": 400.0, "p99_tpot_ms": 60.0, "mean_itl_ms": 20.0}
    met, misses = verdict(run, objectives)
    assert not met and misses == ["tpot_p99 0.06 s > 0.05 s"]
    assert verdict({**run, "p99_tpot_ms": 40.0}, objectives) == (True, [])
    assert not verdict({**run, "p99_tpot_ms": 40.0, "failed": 5}, objectives)[0]  # 5 % failed
    good = goodput_check(objectives)
    assert good is not None
    assert good(RequestRecord(0, 0.0, end=0.8, ok=True, ttft=0.4, output_tokens=11))  # TPOT 0.04
    assert not good(RequestRecord(0, 0.0, end=1.0, ok=True, ttft=0.4, output_tokens=11))  # TPOT 0.06
    assert not good(RequestRecord(0, 0.0, end=0.8, ok=True, ttft=0.6, output_tokens=21))  # TTFT
    assert goodput_check(parse_slo("itl_p99=0.1")) is None  # ITL is not per request


def test_rate_search_brackets_the_threshold() -> None:
    search = RateSearch(start=1.0, max_runs=20)
    tried = []
    while (rate := search.propose()) is not None:
        tried.append(rate)
        search.report(rate, rate <= 10.0)
    assert tried[:5] == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert search.passed is not None and search.failed is not None
    assert 9.5 <= search.passed <= 10.0 < search.failed <= 10.6
    low = RateSearch(start=4.0, max_runs=3)
    for _ in range(3):
        r = low.propose()
        assert r is not None
        low.report(r, False)
    assert low.propose() is None and low.passed is None  # bounded by max_runs


def test_shape_checks() -> None:
    check_shape(Shape(concurrency=4))
    for shape, words in (
        (Shape(concurrency=0), "--concurrency"),
        (Shape(rate=0.0), "--rate"),
        (Shape(rate=1.0, burstiness=0.0), "--burstiness"),
    ):
        with pytest.raises(ValueError, match=words):
            check_shape(shape)


def test_random_prompts_are_unique_and_sized() -> None:
    p = Prompts(WorkloadSpec("random", input_len=100, output_len=8, chars_per_token=4.0, seed=3))
    prompts = [next(p) for _ in range(20)]
    assert all(len(x.text or "") == 400 for x in prompts) and all(x.output_len == 8 for x in prompts)
    assert len({x.text[:BLOCK_CHARS] for x in prompts}) == 20  # no shared first block: no prefix hits
    again = Prompts(WorkloadSpec("random", input_len=100, output_len=8, chars_per_token=4.0, seed=3))
    assert next(again).text == prompts[0].text  # deterministic for a seed
    ranged = Prompts(WorkloadSpec("random", input_len=100, range_ratio=0.5, seed=1))
    lengths = {next(ranged).est_tokens for _ in range(50)}
    assert min(lengths) >= 50 and max(lengths) <= 150 and len(lengths) > 10


def test_prefix_repetition_shares_whole_cache_blocks() -> None:
    spec = WorkloadSpec(
        "prefix-repetition", prefix_count=2, prefix_len=64, suffix_len=32, output_len=4, seed=5
    )
    source = Prompts(spec)
    prompts = [next(source) for _ in range(30)]
    by_prefix: dict[str, list[str]] = {}
    for x in prompts:
        by_prefix.setdefault(x.text[:256], []).append(x.text)
    assert len(by_prefix) == 2
    shared = (64 * 4) // BLOCK_CHARS  # the simulator's cache sees this many identical leading blocks
    for texts in by_prefix.values():
        blocks = [text_blocks(t) for t in texts]
        assert all(b[:shared] == blocks[0][:shared] for b in blocks)
        assert len({t[256:] for t in texts}) == len(texts)  # unique suffixes


def test_jsonl_prompts_and_line_numbered_errors(tmp_path: Path) -> None:
    good = tmp_path / "p.jsonl"
    good.write_text(
        '{"prompt": "hello"}\n\n{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}\n'
    )
    p = Prompts(WorkloadSpec("jsonl", path=str(good), output_len=9))
    a, b, c = next(p), next(p), next(p)
    assert (a.text, a.output_len, b.messages[0]["content"], b.output_len, c.text) == (
        "hello",
        9,
        "hi",
        5,
        "hello",
    )
    for content, words in (
        ('{"prompt": "ok"}\n{"prompt": \n', "line 2: not JSON"),
        ('["x"]\n', "line 1: expected an object"),
        ('{"prompt": "x", "messages": []}\n', "exactly one"),
        ('{"prompt": "x", "max_tokens": 0}\n', "max_tokens"),
        ("\n\n", "no prompts"),
    ):
        bad = tmp_path / "bad.jsonl"
        bad.write_text(content)
        with pytest.raises(WorkloadError, match=words):
            Prompts(WorkloadSpec("jsonl", path=str(bad)))
    with pytest.raises(WorkloadError, match="no such file"):
        Prompts(WorkloadSpec("jsonl", path=str(tmp_path / "missing.jsonl")))


def test_request_bodies() -> None:
    p = next(Prompts(WorkloadSpec("random", input_len=10, output_len=3, seed=1)))
    body = json.loads(RequestFormat("completions", "m", ignore_eos=True).body(p))
    assert body["prompt"] == p.text and body["max_tokens"] == 3 and body["stream"] is True
    assert body["stream_options"] == {"include_usage": True} and body["ignore_eos"] is True
    chat = json.loads(RequestFormat("chat", "m", prefix="/proxy").body(p))
    assert chat["messages"] == [{"role": "user", "content": p.text}] and "ignore_eos" not in chat
    assert RequestFormat("chat", "m", prefix="/proxy").path == "/proxy/v1/chat/completions"


def test_text_maker_exact_length() -> None:
    maker = TextMaker(random.Random(0))
    for n in (1, 7, 64, 1000, 4001):
        assert len(maker.text(n)) == n


def _doc(**over) -> dict:
    run = {
        "load": Shape(concurrency=2).describe(),
        "completed": 10,
        "failed": 0,
        "request_throughput": 5.0,
        "output_throughput": 50.0,
        "total_token_throughput": 150.0,
        "total_input_tokens": 200,
        "total_output_tokens": 100,
        "p99_ttft_ms": 100.0,
        "engine_metrics": {"prefix_cache_hit_rate": 0.5},
    }
    run.update(over)
    return results.build(
        mode="single",
        target={"target": "http://x"},
        model="m",
        endpoint="completions",
        workload={"kind": "random"},
        bounds={},
        slo=None,
        runs=[run],
        gpus=2,
        interrupted=False,
    )


def test_result_document_and_sustained_per_gpu() -> None:
    doc = _doc()
    assert doc["schema"] == "llmconsole.bench/1" and doc["request_throughput"] == 5.0
    assert doc["max_concurrency"] == 2 and doc["request_rate"] is None
    s = doc["sustained"]
    assert s["total_tokens_per_s_per_gpu"] == 75.0 and s["output_tokens_per_s_per_gpu"] == 25.0
    assert s["input_share"] == pytest.approx(2 / 3)
    json.loads(results.dumps(doc))
    assert "requests/s" in results.table(doc)


def test_result_loading_refuses_other_schemas(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text(results.dumps(_doc()))
    assert results.load(str(path))["model"] == "m"
    for content, words in (
        ('{"schema": "llmconsole.status/1", "runs": []}', "not a llmconsole.bench result"),
        ('{"duration": 3.0, "completed": 4}', "no schema key"),
        ("not json", "is not JSON"),
        ("[1, 2]", "not a benchmark result"),
    ):
        path.write_text(content)
        with pytest.raises(results.ResultError, match=words):
            results.load(str(path))


def test_compare_ratios() -> None:
    a, b = (
        _doc(),
        _doc(request_throughput=7.5, p99_ttft_ms=50.0, engine_metrics={"prefix_cache_hit_rate": 0.9}),
    )
    rows = {r["key"]: r for r in results.compare_rows(a, b)}
    assert rows["request_throughput"]["ratio"] == 1.5 and rows["p99_ttft_ms"]["ratio"] == 0.5
    assert rows["prefix_cache_hit_rate"]["ratio"] == pytest.approx(1.8)
    assert rows["request_goodput"]["ratio"] is None  # missing on both sides: no ratio, never 0
    text = results.compare_text(a, b, "a.json", "b.json")
    assert "1.50x" in text and "0.50x" in text


def test_help_renders(capsys: pytest.CaptureFixture[str]) -> None:
    from console.cli import main

    assert main(["bench", "--help"]) == 0
    assert "--max-requests" in capsys.readouterr().out
    assert main(["calc", "breakeven", "--help"]) == 0
    assert "--measured" in capsys.readouterr().out


async def test_progress_lines_on_a_plain_stream() -> None:
    import asyncio
    import io

    from console.bench.load import Live
    from console.bench.progress import Progress

    live = Live(Shape(concurrency=2), started=0.0)
    live.records.extend([_rec(i, 0.0, 0.5, ttft=0.1 * (i + 1)) for i in range(10)])
    live.records.append(_rec(10, 0.0, 0.5, ok=False, err="http_500"))
    live.started = time.perf_counter() - 2.0
    out = io.StringIO()
    task = asyncio.create_task(Progress("c=2", out, plain_every_s=0.05)(live))
    await asyncio.sleep(0.12)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    lines = out.getvalue().splitlines()
    assert len(lines) >= 2 and "\r" not in out.getvalue()  # one plain line per interval, plus a last one
    assert lines[-1].startswith("[c=2] 11 done, 1 failed,") and "TTFT p95 955 ms" in lines[-1]
