"""The golden canary against a real simulated engine process: its temperature-0 answers are deterministic,
so the judge stays silent; under the ``wrong-answers@T`` fault it sees the mismatch (WRONG_ANSWERS)."""

from __future__ import annotations

import asyncio
import time
from functools import partial

import pytest

from agents.alerts import EngineObservation, ScrapeOutcome
from agents.config import Golden
from agents.golden import GoldenJudge, GoldenRule, http1_post, run_golden
from agents.http1 import Http1Client
from agents.sim.faults import KINDS
from tests.support.simproc import sim_engine

pytestmark = pytest.mark.timeout(60)
NAME = "golden-sim"
GOLDEN = Golden(prompt="The capital of France is", max_tokens=8)


def observed(verdict) -> EngineObservation:
    return EngineObservation(
        t=0.0,
        wall="2026-12-06T00:00:00Z",
        state="ready",
        stats={},
        scrape=ScrapeOutcome(ok=True),
        golden=verdict,
    )


async def golden_once(http: Http1Client, url: str) -> tuple[str | None, str | None, str | None]:
    return await run_golden(
        partial(http1_post, http), NAME, GOLDEN, url=url + "/v1/completions", timeout_s=10.0
    )


@pytest.mark.parametrize("dialect", ["vllm", "sglang"])
async def test_healthy_sim_answers_the_same_at_temperature_zero(tmp_path, dialect: str) -> None:
    with sim_engine(dialect, "--served-model-name", NAME, tmp=tmp_path) as eng:
        eng.wait_ready()
        http = Http1Client()
        judge = GoldenJudge(None)
        try:
            verdicts = []
            for _ in range(3):
                first, second, error = await golden_once(http, eng.url)
                assert error is None and first, f"no answer: {error}"
                verdicts.append(judge.judge(first, second, error))
        finally:
            await http.aclose()
    assert [v["ok"] for v in verdicts] == [True, True, True], verdicts
    assert "captured" in verdicts[0]["reason"] and judge.reference == first
    assert GoldenRule()(observed(verdicts[-1])) is None


@pytest.mark.skipif("wrong-answers" not in KINDS, reason="the simulator has no wrong-answers fault yet")
async def test_wrong_answers_fault_is_caught_and_the_reference_is_the_healthy_answer(tmp_path) -> None:
    fault_at = 4.0
    with sim_engine(
        "vllm", "--served-model-name", NAME, "--fault", f"wrong-answers@{fault_at:g}", tmp=tmp_path
    ) as eng:
        eng.wait_ready()
        ready = time.monotonic()
        http = Http1Client()
        judge, rule = GoldenJudge(None), GoldenRule()
        try:
            healthy = judge.judge(*(await golden_once(http, eng.url)))
            assert time.monotonic() - ready < fault_at, "too slow to see the healthy answer before the fault"
            await asyncio.sleep(max(0.0, fault_at + 0.5 - (time.monotonic() - ready)))
            wrong = judge.judge(*(await golden_once(http, eng.url)))
        finally:
            await http.aclose()
    assert healthy["ok"] is True and judge.reference
    assert wrong["ok"] is False, wrong
    assert wrong["reference"] == healthy["reference"] and wrong["first"] != wrong["reference"]
    assert wrong["first"] != wrong["second"]  # the fault never answers the same text twice in a row
    assert wrong["reason"] == "the two answers differ from each other and from the reference"
    code, severity, summary, evidence = rule(observed(wrong))
    assert (code, severity) == ("WRONG_ANSWERS", "critical") and evidence["reference"] == healthy["reference"]
