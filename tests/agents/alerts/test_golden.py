"""The golden canary: the judge's verdicts, the WRONG_ANSWERS rule, and run_golden over the agent's HTTP
client against a raw loopback server that sends exactly the bytes a test wants (hostile bodies included)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from dataclasses import dataclass
from functools import partial

from hypothesis import given, settings
from hypothesis import strategies as st

from agents.alerts import EngineObservation, ScrapeOutcome
from agents.config import Golden
from agents.golden import (
    SHOWN_CHARS,
    GoldenError,
    GoldenJudge,
    GoldenRule,
    http1_post,
    parse_answer,
    request_body,
    run_golden,
)
from agents.http1 import Http1Client

GOLDEN = Golden(prompt="The capital of France is", max_tokens=8)


def completion(text: str) -> bytes:
    return json.dumps(
        {"id": "x", "object": "text_completion", "choices": [{"index": 0, "text": text}]}
    ).encode()


# --- the judge ------------------------------------------------------------------------------------------
def test_first_agreeing_answers_become_the_reference_then_a_change_is_wrong() -> None:
    judge = GoldenJudge(None)
    first = judge.judge(" Paris.", " Paris.", None)
    assert first["ok"] is True and "captured" in first["reason"] and first["reference"] == " Paris."
    assert first["reference_source"] == "captured"
    assert judge.judge(" Paris.", " Paris.", None)["ok"] is True
    both = judge.judge(" Lyon.", " Lyon.", None)
    assert both["ok"] is False and both["reason"] == "both answers differ from the reference"
    assert (both["first"], both["second"], both["reference"]) == (" Lyon.", " Lyon.", " Paris.")


def test_a_cache_hit_that_differs_is_named_as_such() -> None:
    judge = GoldenJudge(None)
    judge.judge(" Paris.", " Paris.", None)
    v = judge.judge(" Paris.", " zq zq zq", None)
    assert v["ok"] is False and "second answer (prefix-cache hit)" in v["reason"]
    v = judge.judge(" zq", " Paris.", None)
    assert v["ok"] is False and v["reason"].startswith("the first answer differs")


def test_answers_that_disagree_before_any_reference_are_wrong_and_not_captured() -> None:
    judge = GoldenJudge(None)
    v = judge.judge(" Paris.", " Rome.", None)
    assert v["ok"] is False and "differ" in v["reason"] and v["reference"] is None
    assert judge.reference is None
    assert judge.judge(" Rome.", " Rome.", None)["ok"] is True and judge.reference == " Rome."


def test_reset_forgets_a_captured_reference_but_keeps_expect() -> None:
    judge = GoldenJudge(None)
    judge.judge(" a", " a", None)
    judge.reset()
    assert (
        judge.reference is None and judge.judge(" b", " b", None)["ok"] is True
    )  # new engine, new reference
    fixed = GoldenJudge("Paris")
    fixed.reset()
    assert fixed.reference == "Paris"


def test_expect_matches_as_a_prefix_ignoring_surrounding_whitespace() -> None:
    judge = GoldenJudge(" Paris ")
    v = judge.judge(" Paris, the capital", " Paris, the capital", None)
    assert v["ok"] is True and v["reference_source"] == "expect" and v["reference"] == " Paris "
    assert judge.judge(" Lyon", " Lyon", None)["ok"] is False
    assert judge.judge(" Pari", " Pari", None)["ok"] is False


def test_transport_errors_are_not_wrong_answers() -> None:
    judge = GoldenJudge(None)
    judge.judge(" a", " a", None)
    v = judge.judge(" a", None, "no answer within 30s")
    assert v["ok"] is None and "no answer within 30s" in v["reason"] and v["first"] == " a"
    assert judge.reference == " a"
    assert GoldenJudge(None).judge(None, None, None)["ok"] is None


def test_texts_in_a_verdict_are_cut_to_shown_chars() -> None:
    long = "x" * 1000
    v = GoldenJudge(None).judge(long, long + "y", None)
    assert v["ok"] is False
    assert len(v["first"]) == SHOWN_CHARS and v["first"].endswith("…")
    json.dumps(v)


# --- the rule ------------------------------------------------------------------------------------------
def obs(t: float, golden) -> EngineObservation:
    return EngineObservation(
        t=t,
        wall="2026-12-06T00:00:00Z",
        state="ready",
        stats={},
        scrape=ScrapeOutcome(ok=True),
        golden=golden,
    )


def test_rule_raises_on_a_mismatch_keeps_it_through_a_failed_run_and_clears_on_a_match() -> None:
    judge, rule = GoldenJudge(None), GoldenRule()
    assert rule(obs(0, None), (), None) is None
    assert rule(obs(1, judge.judge(" a", " a", None)), (), None) is None
    wrong = judge.judge(" a", " b", None)
    code, severity, summary, ev = rule(obs(2, wrong), (), None)
    assert (code, severity) == ("WRONG_ANSWERS", "critical") and "prefix-cache" in summary
    assert ev["first"] == " a" and ev["second"] == " b" and ev["reference"] == " a"
    json.dumps(ev)
    still = rule(obs(3, judge.judge(None, None, "connection failed: connection refused")), (), None)
    assert still is not None and "connection refused" in still[3]["latest_run"] and still[3]["second"] == " b"
    assert rule(obs(4, judge.judge(" a", " a", None)), (), None) is None
    rule(obs(5, wrong), (), None)
    assert rule(obs(6, None), (), None) is None  # restarted engine: no verdict yet


# --- parsing hostile answers --------------------------------------------------------------------------
def test_parse_answer_takes_only_a_completion_text() -> None:
    assert parse_answer(200, completion(" Paris")) == " Paris"
    for status, body, words in (
        (500, b"boom\ninternal", "HTTP 500: boom internal"),
        (200, b"\xff\xfe garbage", "not JSON"),
        (200, b"[" * 200_000, "not JSON"),  # nesting deeper than the parser's recursion
        (200, b"[1, 2]", "no choices"),
        (200, b'{"choices": []}', "no choices"),
        (200, b'{"choices": [{"text": 5}]}', "not a string"),
        (200, b" " * (300 * 1024), "larger than"),
    ):
        try:
            parse_answer(status, body)
        except GoldenError as exc:
            assert words in str(exc) and "\n" not in str(exc)
        else:
            raise AssertionError(f"{body[:20]!r} was accepted")


@given(st.binary(max_size=300))
@settings(max_examples=200, deadline=None)
def test_parse_answer_never_raises_anything_but_golden_error(body: bytes) -> None:
    with contextlib.suppress(GoldenError):
        assert isinstance(parse_answer(200, body), str)


# --- run_golden over a real loopback socket -------------------------------------------------------------
@dataclass
class Raw:
    port: int
    requests: list[bytes]
    server: asyncio.AbstractServer


async def raw_server(responses: list[bytes | None]) -> Raw:
    """Answer the n-th request (over all connections) with responses[n] (the last one repeats), byte for
    byte; None: read the request and never answer."""
    got: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                got.append(await reader.readexactly(length))
                answer = responses[min(len(got), len(responses)) - 1]
                if answer is None:
                    await asyncio.sleep(3600)
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return Raw(server.sockets[0].getsockname()[1], got, server)


def http_ok(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        len(body),
        body,
    )


async def golden_against(responses: list[bytes | None], timeout_s: float = 5.0):
    raw = await raw_server(responses)
    http = Http1Client()
    try:
        got = await run_golden(
            partial(http1_post, http),
            "m",
            GOLDEN,
            url=f"http://127.0.0.1:{raw.port}/v1/completions",
            timeout_s=timeout_s,
        )
        return got, raw.requests
    finally:
        await http.aclose()
        raw.server.close()


async def test_two_temperature_zero_requests_in_a_row_on_one_connection() -> None:
    (first, second, error), sent = await golden_against(
        [http_ok(completion(" Paris.")), http_ok(completion(" Paris!"))]
    )
    assert (first, second, error) == (" Paris.", " Paris!", None)
    assert len(sent) == 2 and sent[0] == sent[1] == request_body("m", GOLDEN)
    body = json.loads(sent[0])
    assert body == {
        "model": "m",
        "prompt": "The capital of France is",
        "max_tokens": 8,
        "temperature": 0,
        "stream": False,
    }


async def test_huge_answer_is_an_error_not_a_crash() -> None:
    huge = b"HTTP/1.1 200 OK\r\nContent-Length: 50000000\r\n\r\n" + b"{" * 1000
    (first, second, error), _ = await golden_against([huge])
    assert first is None and second is None and "larger than" in error


async def test_chunked_endless_body_is_capped() -> None:
    chunk = b"10000\r\n" + b"a" * 0x10000 + b"\r\n"
    endless = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 8  # 512 KiB, then nothing
    (_, _, error), _ = await golden_against([endless], timeout_s=2.0)
    assert error is not None and "larger than" in error


async def test_garbage_and_http_errors_are_one_line_errors() -> None:
    (_, _, error), _ = await golden_against([http_ok(b"<html>nope</html>")])
    assert error == "answer is not JSON"
    busy = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 9\r\n\r\nfull\nnow!"
    (_, _, error), _ = await golden_against([busy])
    assert error == "HTTP 503: full now!"
    (_, _, error), _ = await golden_against([b"SPDY/9 nonsense\r\n\r\n"])
    assert error.startswith("bad HTTP response")


async def test_a_second_run_that_never_answers_keeps_the_first_answer() -> None:
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    (first, second, error), _ = await golden_against([http_ok(completion(" Paris.")), None], timeout_s=0.3)
    assert first == " Paris." and second is None and error == "no answer within 0.3s"
    assert loop.time() - t0 < 2.0


async def test_refused_connection_is_a_transport_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connecting is refused
        http = Http1Client()
        try:
            got = await run_golden(
                partial(http1_post, http), "m", GOLDEN, url=f"http://127.0.0.1:{port}/v1/completions"
            )
        finally:
            await http.aclose()
    assert got == (None, None, "connection failed: connection refused")


async def test_a_poster_that_ignores_its_timeout_is_still_bounded() -> None:
    async def stuck(url: str, body: bytes, timeout_s: float) -> tuple[int, bytes]:
        await asyncio.sleep(3600)
        return 200, b""

    assert await run_golden(stuck, "m", GOLDEN, url="http://x/v1/completions", timeout_s=0.05) == (
        None,
        None,
        "no answer within 0.05s",
    )


def test_rule_plugs_into_engine_rules_extra_rules() -> None:
    import pytest

    from agents.alerts import EngineRules
    from agents.config import Thresholds

    if "extra_rules" not in EngineRules.__dataclass_fields__:
        pytest.skip("agents/alerts/ has no extra_rules hook yet")
    judge = GoldenJudge(None)
    rules = EngineRules(Thresholds(), extra_rules=(GoldenRule(),))
    assert not [
        a for a in rules.evaluate(obs(0.0, judge.judge(" a", " a", None))) if a.code == "WRONG_ANSWERS"
    ]
    raised = [a for a in rules.evaluate(obs(1.0, judge.judge(" b", " b", None))) if a.code == "WRONG_ANSWERS"]
    assert raised and raised[0].severity == "critical" and raised[0].evidence["reference"] == " a"
