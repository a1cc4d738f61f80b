"""A benchmark announced to the agent: the marker's life (start, heartbeat, end, expiry of a silent client),
and ``POST /v1/engines/{id}/bench`` on the real API app: operator only, start and end audited with the
workload and parameters, heartbeats not audited, bad bodies and conflicting runs refused with one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.benchmarks import BenchmarkBook, BenchmarkRefused
from tests.agents.api.test_api import OPERATOR, TOKENS, VIEWER, make


def test_the_marker_lives_from_start_to_end_and_expires_when_the_client_goes_silent() -> None:
    book = BenchmarkBook(expire_s=60)
    m = book.announce(
        "e1", "start", "run-1", 0.0, client="10.0.0.5", workload="poisson 4 req/s,\n 64→32", wall=0
    )
    assert (
        m is not None
        and m.run_id == "run-1"
        and m.workload == "poisson 4 req/s, 64→32"
        and m.client == "10.0.0.5"
    )
    assert book.current("e1", 30.0) == m and book.current("e2", 30.0) is None
    with pytest.raises(BenchmarkRefused, match="already running"):
        book.announce("e1", "start", "run-2", 31.0)
    assert book.announce("e1", "heartbeat", "run-1", 50.0) == m
    assert book.current("e1", 109.0) == m  # 59 s after the last heartbeat
    assert book.current("e1", 111.0) is None  # silent for more than 60 s: gone
    with pytest.raises(BenchmarkRefused, match="no benchmark run-1"):
        book.announce("e1", "end", "run-1", 112.0)
    book.announce("e1", "start", "run-2", 120.0)
    assert book.announce("e1", "end", "run-2", 121.0) is None and book.current("e1", 121.0) is None
    for bad_id in ("", "x" * 65, "a b", "../x"):
        with pytest.raises(BenchmarkRefused, match="run_id"):
            book.announce("e1", "start", bad_id, 130.0)


async def test_the_bench_route_is_operator_only_and_audited(tmp_path: Path) -> None:
    runtime, client, audit = make(tmp_path, tokens=TOKENS)
    op, viewer = {"Authorization": f"Bearer {OPERATOR}"}, {"Authorization": f"Bearer {VIEWER}"}
    start = {
        "event": "start",
        "run_id": "r1",
        "workload": "random 64→32, concurrency 4",
        "params": {"max_requests": 64},
    }
    async with client:
        r = await client.post("/v1/engines/e1/bench", json=start, headers=viewer)
        assert r.status_code == 403 and "operator" in r.json()["error"]
        r = await client.post("/v1/engines/e1/bench", json=start)
        assert r.status_code == 401
        r = await client.post("/v1/engines/nope/bench", json=start, headers=op)
        assert r.status_code == 404
        r = await client.post("/v1/engines/e1/bench", json=start, headers=op)
        assert r.status_code == 200 and r.json()["benchmark"]["run_id"] == "r1"
        assert runtime.benchmarks.current("e1", __import__("time").monotonic()).workload == start["workload"]
        r = await client.post("/v1/engines/e1/bench", json={**start, "run_id": "r2"}, headers=op)
        assert r.status_code == 409 and "r1 is already running" in r.json()["error"]
        r = await client.post("/v1/engines/e1/bench", json={"event": "heartbeat", "run_id": "r1"}, headers=op)
        assert r.status_code == 200
        for bad in (
            b"[]",
            b"not json",
            b'{"event": "pause", "run_id": "r1"}',
            b'{"event": "end", "run_id": 5}',
            b'{"event": "start", "run_id": "r", "params": {"x": "' + b"y" * 3000 + b'"}}',
        ):
            r = await client.post(
                "/v1/engines/e1/bench", content=bad, headers={**op, "Content-Type": "application/json"}
            )
            assert r.status_code == 400 and "\n" not in r.json()["error"], bad
        r = await client.post("/v1/engines/e1/bench", json={"event": "end", "run_id": "r1"}, headers=op)
        assert r.status_code == 200 and r.json()["benchmark"] is None
        r = await client.post("/v1/engines/e1/start", headers=viewer)  # the generic action route still works
        assert r.status_code == 403
    records = [x for x in audit.tail(50) if str(x.get("action", "")).startswith("bench")]
    kinds = [(x["action"], x["result"]) for x in records]
    assert ("bench-start", "allowed") in kinds and ("bench-end", "allowed") in kinds
    assert ("bench-start", "denied: role viewer") in kinds
    assert not any(
        a == "bench-heartbeat" and res == "allowed" for a, res in kinds
    )  # heartbeats are not audited
    allowed = next(x for x in records if x["action"] == "bench-start" and x["result"] == "allowed")
    assert allowed["params"] == {"max_requests": 64} and allowed["workload"] == start["workload"]
    await runtime.shutdown()


async def test_a_hostile_workload_line_is_one_bounded_line_in_the_audit_log(tmp_path: Path) -> None:
    runtime, client, audit = make(tmp_path, tokens=TOKENS)
    op = {"Authorization": f"Bearer {OPERATOR}"}
    async with client:
        r = await client.post(
            "/v1/engines/e1/bench",
            headers=op,
            json={"event": "start", "run_id": "h1", "workload": "a\nforged: record\r\n" + "x" * 5000},
        )
        assert r.status_code == 200 and "\n" not in r.json()["benchmark"]["workload"]
    start = next(x for x in audit.tail(10) if x.get("action") == "bench-start")
    assert "\n" not in start["workload"] and "\r" not in start["workload"] and len(start["workload"]) <= 200
    await runtime.shutdown()
