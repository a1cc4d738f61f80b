"""The exposition parser on real engine fixtures and on every kind of broken text it must survive."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from agents.metrics.parse import MAX_PROBLEMS, parse

DATA = Path(__file__).resolve().parents[2] / "data" / "metrics"
LOADED = DATA / "vllm-0.32-cpu.loaded.prom"
IDLE = DATA / "vllm-0.32-cpu.idle.prom"
SGLANG_DOCS = DATA / "sglang-docs-2025.prom"
VLLM_DOCS = DATA / "vllm-docs-v1-early.prom.txt"
ENGINE0 = {"engine": "0", "model_name": "tiny-llama"}


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def sample_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


def one(metrics, metric: str, /, **labels: str) -> float:
    found = [value for got, value in metrics.get(metric) if got == labels]
    assert len(found) == 1, (metric, labels, metrics.get(metric))
    return found[0]


# --- real fixtures -----------------------------------------------------------------------------------


def test_vllm_loaded_fixture() -> None:
    text = read(LOADED)
    metrics = parse(text)
    assert metrics.problems == []
    assert metrics.ok
    assert sum(len(series) for series in metrics.samples.values()) == len(sample_lines(text))
    assert one(metrics, "vllm:num_requests_running", **ENGINE0) == 11.0
    assert one(metrics, "vllm:num_requests_waiting", **ENGINE0) == 0.0
    assert one(metrics, "vllm:kv_cache_usage_perc", **ENGINE0) == 0.0013429373702844583
    assert one(metrics, "vllm:prefix_cache_queries_total", **ENGINE0) == 110.0
    assert one(metrics, "vllm:prompt_tokens_total", **ENGINE0) == 110.0
    assert one(metrics, "vllm:generation_tokens_total", **ENGINE0) == 962.0
    assert one(metrics, "vllm:request_success_total", finished_reason="length", **ENGINE0) == 1.0
    assert len(metrics.get("vllm:request_success_total")) == 5
    ttft = metrics.get("vllm:time_to_first_token_seconds_bucket")
    assert len(ttft) == 23  # 22 finite bounds + +Inf
    assert ttft[0] == ({"engine": "0", "le": "0.001", "model_name": "tiny-llama"}, 0.0)
    assert ttft[-1] == ({"engine": "0", "le": "+Inf", "model_name": "tiny-llama"}, 13.0)
    assert one(metrics, "vllm:time_to_first_token_seconds_sum", **ENGINE0) == 1.5939931869506836
    assert one(metrics, "process_virtual_memory_bytes") == 2.171777024e09
    assert (
        one(
            metrics,
            "python_info",
            implementation="CPython",
            major="3",
            minor="11",
            patchlevel="7",
            version="3.11.7",
        )
        == 1.0
    )
    assert metrics.types["vllm:time_to_first_token_seconds"] == "histogram"
    assert metrics.types["vllm:num_requests_running"] == "gauge"
    assert metrics.types["vllm:prompt_tokens_total"] == "counter"
    assert metrics.types["vllm:iteration_tokens_total"] == "histogram"
    assert metrics.lines == len(text.splitlines())


def test_vllm_idle_fixture() -> None:
    metrics = parse(read(IDLE))
    assert metrics.ok
    assert one(metrics, "vllm:num_requests_running", **ENGINE0) == 0.0
    assert one(metrics, "vllm:generation_tokens_total", **ENGINE0) == 2058.0
    assert one(metrics, "vllm:time_to_first_token_seconds_count", **ENGINE0) == 13.0


def test_sglang_docs_fixture() -> None:
    metrics = parse(read(SGLANG_DOCS))
    assert metrics.ok
    llama = {"model_name": "meta-llama/Llama-3.1-8B-Instruct"}
    assert one(metrics, "sglang:num_running_reqs", **llama) == 162.0
    assert one(metrics, "sglang:num_queue_reqs", **llama) == 2826.0
    assert one(metrics, "sglang:token_usage", **llama) == 0.28
    assert one(metrics, "sglang:prompt_tokens_total", **llama) == 8.128902e06
    assert one(metrics, "sglang:time_to_first_token_seconds_bucket", le="+Inf", **llama) == 11008.0
    assert (
        one(metrics, "sglang:func_latency_seconds_bucket", le="0.07500000000000001", name="generate_request")
        == 14006.0
    )
    assert metrics.types["sglang:time_per_output_token_seconds"] == "histogram"


def test_vllm_docs_fixture_reports_elisions_and_keeps_samples() -> None:
    metrics = parse(read(VLLM_DOCS))
    assert len(metrics.problems) == 3
    for problem, line in zip(metrics.problems, (4, 8, 14), strict=True):
        assert problem.startswith(f"line {line}: ") and "'...'" in problem
    assert not metrics.ok
    llama = {"model_name": "meta-llama/Llama-3.1-8B-Instruct"}
    assert one(metrics, "vllm:num_requests_running", **llama) == 8.0
    assert one(metrics, "vllm:generation_tokens_total", **llama) == 27453.0
    assert one(metrics, "vllm:request_success_total", finished_reason="length", **llama) == 131.0
    assert len(metrics.get("vllm:time_to_first_token_seconds_bucket")) == 8
    assert one(metrics, "vllm:time_to_first_token_seconds_count", **llama) == 140.0


def test_vllm_docs_fixture_elisions_reported_in_wanted_mode_too() -> None:
    metrics = parse(read(VLLM_DOCS), wanted={"vllm:num_requests_running"})
    assert [p.split(":")[0] for p in metrics.problems] == ["line 4", "line 8", "line 14"]
    assert list(metrics.samples) == ["vllm:num_requests_running"]


@pytest.mark.parametrize("path", [LOADED, IDLE, SGLANG_DOCS], ids=lambda p: p.name)
def test_wanted_keeps_exactly_the_wanted_samples(path: Path) -> None:
    full = parse(read(path))
    names = sorted(full.samples)
    wanted = set(names[::3]) | {"not_in_this_exposition"}
    part = parse(read(path), wanted=wanted)
    assert part.ok
    assert set(part.samples) == set(names[::3])
    for name in part.samples:
        assert part.samples[name] == full.samples[name]
    assert part.types == full.types


def test_bytes_and_crlf_give_the_same_result() -> None:
    text = read(LOADED)
    expected = parse(text)
    from_bytes = parse(text.encode("utf-8"))
    crlf = parse(text.replace("\n", "\r\n"))
    assert from_bytes.samples == expected.samples and from_bytes.ok
    assert crlf.samples == expected.samples and crlf.ok
    assert crlf.types == expected.types


# --- values, labels, comments ------------------------------------------------------------------------


def test_special_values() -> None:
    metrics = parse("a NaN\nb +Inf\nc -Inf\nd 1e3\ne -0.5\nf 42\n")
    assert metrics.ok
    assert math.isnan(one(metrics, "a"))
    assert one(metrics, "b") == math.inf
    assert one(metrics, "c") == -math.inf
    assert one(metrics, "d") == 1000.0
    assert one(metrics, "e") == -0.5
    assert one(metrics, "f") == 42.0


def test_escaped_label_values() -> None:
    text = 'm{a="back\\\\slash",b="quo\\"te",c="new\\nline",d="\\\\n",e="keep\\t"} 1\n'
    metrics = parse(text)
    assert metrics.ok
    [(labels, value)] = metrics.get("m")
    assert labels == {"a": "back\\slash", "b": 'quo"te', "c": "new\nline", "d": "\\n", "e": "keep\\t"}
    assert value == 1.0


def test_label_values_holding_syntax_characters() -> None:
    text = 'm{a="x}y",b="p,q=r",c=" # {z}",d=""} 2\n'
    [(labels, value)] = parse(text).get("m")
    assert labels == {"a": "x}y", "b": "p,q=r", "c": " # {z}", "d": ""}
    assert value == 2.0


def test_whitespace_variants_and_trailing_comma() -> None:
    text = '  m { a = "1" , b="2", } 3 \n\tn\t4\nempty{} 5\n'
    metrics = parse(text)
    assert metrics.ok
    assert metrics.get("m") == [({"a": "1", "b": "2"}, 3.0)]
    assert metrics.get("n") == [({}, 4.0)]
    assert metrics.get("empty") == [({}, 5.0)]


def test_timestamps_and_exemplars_are_ignored() -> None:
    text = (
        'a{x="1"} 5 1700000000000\n'
        'b{x="1"} 6 # {trace_id="abc def"} 0.5 1700000000.1\n'
        'c 7 # {trace_id="q"} 1\n'
        'd 8 1700000000000 # {trace_id="r"} 2\n'
    )
    metrics = parse(text)
    assert metrics.ok
    assert [one(metrics, n, x="1") for n in ("a", "b")] == [5.0, 6.0]
    assert [one(metrics, n) for n in ("c", "d")] == [7.0, 8.0]


def test_missing_help_and_type_still_reads_samples() -> None:
    metrics = parse('x_total 3\nx_bucket{le="+Inf"} 1\n')
    assert metrics.ok and metrics.types == {}
    assert one(metrics, "x_total") == 3.0


def test_type_lines() -> None:
    text = "# HELP a helpful\n# TYPE a gauge\na 1\n# TYPE b weird\nb 2\n# TYPE a counter\n# TYPE\n"
    metrics = parse(text)
    assert metrics.types == {"a": "counter"}
    assert metrics.problems == [
        "line 4: unknown metric type 'weird' for b",
        "line 6: second TYPE line for a",
        "line 7: TYPE without a metric name and type",
    ]
    assert one(metrics, "b") == 2.0


def test_other_comments_are_ignored() -> None:
    metrics = parse("# just a comment\n#nospace\n# HELP x text with # and {}\n#\nx 1\n")
    assert metrics.ok and one(metrics, "x") == 1.0


def test_eof_stops_parsing() -> None:
    metrics = parse("a 1\n# EOF\n")
    assert metrics.ok and list(metrics.samples) == ["a"]
    after = parse("a 1\n# EOF\n\nb 2\n")
    assert list(after.samples) == ["a"]
    assert after.problems == ["line 4: text after # EOF (ignored)"]


# --- garbage ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("...", "no value after '...'"),
        ("lonely", "no value after 'lonely'"),
        ("m abc", "invalid value 'abc'"),
        ("m 1_000", "invalid value '1_000'"),
        ('m{a="1"}', "missing value"),
        ('m{a="1" 2', "expected ',' or '}' after label a"),
        ('m{a="1', "unterminated value of label a"),
        ("m{a=1} 2", "label a has no quoted value"),
        ('m{9a="1"} 2', "invalid label name '9a'"),
        ('m{a="1",a="2"} 3', "duplicate label a"),
        ('m{a="1"b="2"} 3', "expected ',' or '}' after label a"),
        ("m{a} 1", "label without '='"),
        ("m{", "unterminated label set"),
        ("9abc 1", "invalid metric name '9abc'"),
        ("bad-name 1", "invalid metric name 'bad-name'"),
        ('{a="1"} 2', "missing metric name"),
        ("m 1 notatime", "invalid timestamp 'notatime'"),
        ("m 1 2 3", "unexpected text after timestamp: '3'"),
        ('m{a="1"} 1 2 3', "unexpected text after timestamp: '3'"),
    ],
)
def test_garbage_line_is_reported_and_parsing_goes_on(line: str, why: str) -> None:
    metrics = parse(f"good 1\n{line}\nalso_good 2\n")
    assert metrics.problems == [f"line 2: {why}"]
    assert one(metrics, "good") == 1.0
    assert one(metrics, "also_good") == 2.0


@pytest.mark.parametrize("body", ["", "\n", "  \n\n\t\n", b"", b"\r\n"])
def test_empty_exposition(body: str | bytes) -> None:
    metrics = parse(body)
    assert metrics.samples == {}
    assert metrics.problems == ["empty exposition"]


def test_only_comments_is_not_empty_but_has_no_samples() -> None:
    metrics = parse("# HELP a x\n# TYPE a gauge\n")
    assert metrics.samples == {} and metrics.ok and metrics.types == {"a": "gauge"}


def test_duplicate_series_keeps_last_value() -> None:
    text = 'm{a="1",b="2"} 1\nm{a="1",b="3"} 5\nm{b="2",a="1"} 7\nn 1\nn 2\n'
    metrics = parse(text)
    assert metrics.get("m") == [({"b": "2", "a": "1"}, 7.0), ({"a": "1", "b": "3"}, 5.0)]
    assert metrics.get("n") == [({}, 2.0)]
    assert metrics.problems == [
        "line 3: duplicate series m{b='2',a='1'}; kept the last value",
        "line 5: duplicate series n; kept the last value",
    ]


def test_invalid_utf8_is_a_problem_not_a_crash() -> None:
    metrics = parse(b'm{a="\xff\xfe"} 1\nn 2\n')
    assert metrics.problems == ["invalid UTF-8 at byte 5; undecodable bytes replaced"]
    [(labels, value)] = metrics.get("m")
    assert labels == {"a": "\ufffd\ufffd"} and value == 1.0
    assert one(metrics, "n") == 2.0


@pytest.mark.parametrize("as_bytes", [False, True])
def test_max_bytes_parses_only_whole_lines_within_the_limit(as_bytes: bool) -> None:
    text = "".join(f"m{i} {i}\n" for i in range(100))  # "m0 0\n" .. each line 5-7 bytes
    limit = len("".join(f"m{i} {i}\n" for i in range(10))) + 3  # 10 whole lines and part of the 11th
    metrics = parse(text.encode() if as_bytes else text, max_bytes=limit)
    assert metrics.problems == [f"exposition larger than {limit} bytes; parsed only the first"]
    assert sorted(metrics.samples, key=lambda n: int(n[1:])) == [f"m{i}" for i in range(10)]


def test_max_series_stops_with_a_problem() -> None:
    text = "".join(f'm{{i="{i}"}} {i}\n' for i in range(50))
    metrics = parse(text, max_series=20)
    assert len(metrics.get("m")) == 20
    assert metrics.get("m")[-1] == ({"i": "19"}, 19.0)
    assert metrics.problems == ["line 21: more than 20 series; stopped parsing"]


def test_problems_are_capped() -> None:
    metrics = parse("garbage\n" * 500 + "ok 1\n")
    assert len(metrics.problems) == MAX_PROBLEMS + 1
    assert metrics.problems[-1] == f"... and {500 - MAX_PROBLEMS} more problems"
    assert one(metrics, "ok") == 1.0


@pytest.mark.parametrize("thing", [None, 42, ["a 1"]])
def test_non_text_input_is_a_problem(thing: object) -> None:
    metrics = parse(thing)  # type: ignore[arg-type]
    assert metrics.samples == {}
    assert len(metrics.problems) == 1 and "not text" in metrics.problems[0]


# --- wanted fast path --------------------------------------------------------------------------------


def test_wanted_skips_labels_of_other_names_but_reports_cheap_breakage() -> None:
    text = 'keep{a="1"} 1\nother{a=1 b=2} 2\nother{a="1" 3\n...\nother_plain\n{x="1"} 4\n'
    full = parse(text)
    # Without ``wanted`` the unquoted labels are a problem; with it they are never looked at.
    assert "line 2: label a has no quoted value" in full.problems
    part = parse(text, wanted={"keep"})
    assert part.samples == {"keep": [({"a": "1"}, 1.0)]}
    assert part.problems == [
        "line 3: unterminated label set",
        "line 4: no value after '...'",
        "line 5: no value after 'other_plain'",
        "line 6: missing metric name",
    ]


def test_wanted_still_validates_wanted_lines() -> None:
    metrics = parse('keep{a=1} 1\nkeep{a="2"} x\nkeep{a="3"} 3\n', wanted=frozenset({"keep"}))
    assert metrics.get("keep") == [({"a": "3"}, 3.0)]
    assert metrics.problems == ["line 1: label a has no quoted value", "line 2: invalid value 'x'"]


def test_label_name_seen_before_still_needs_a_value() -> None:
    # The fast path caches label names it has validated; a bare known name must still be rejected.
    metrics = parse('m{b="0"} 1\nm{a="1",b"} 2\n')
    assert metrics.get("m") == [({"b": "0"}, 1.0)]
    assert metrics.problems == ["line 2: label without '='"]
