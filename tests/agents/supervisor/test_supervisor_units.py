"""Pure parts of the supervisor: backoff, budget, plan/policy validation, state files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from agents.supervisor import Policy, ProcessPlan, statefile
from agents.supervisor.backoff import CrashBackoff, StartBudget, exp_delay


def test_exp_delay_doubles_and_caps() -> None:
    assert [exp_delay(10, 300, n) for n in range(7)] == [10, 20, 40, 80, 160, 300, 300]
    assert exp_delay(10, 300, 10_000) == 300  # no overflow
    with pytest.raises(ValueError):
        exp_delay(10, 300, -1)


def test_crash_backoff_grows_and_resets_after_stable_running() -> None:
    b = CrashBackoff(initial_s=10, max_s=300, reset_s=600)
    assert [b.on_crash(ran_s=5) for _ in range(7)] == [10, 20, 40, 80, 160, 300, 300]
    assert b.on_crash(ran_s=599.9) == 300  # not stable long enough
    assert b.on_crash(ran_s=600) == 10  # ran 10 min without a crash: series starts over
    assert b.on_crash(ran_s=None) == 20  # never became ready: keeps growing


def test_start_budget_defaults_give_10_20_40_then_give_up() -> None:
    p = Policy()
    budget = StartBudget(p.backoff_initial_s, p.backoff_max_s, p.start_retries)
    assert [budget.on_failure() for _ in range(4)] == [10, 20, 40, None]
    budget.reset()
    assert budget.on_failure() == 10
    assert StartBudget(1, 5, 0).on_failure() is None


def test_policy_and_plan_validation() -> None:
    with pytest.raises(ValueError):
        Policy(backoff_initial_s=-1)
    with pytest.raises(ValueError):
        Policy(stop_timeout_s=float("nan"))
    with pytest.raises(ValueError):
        Policy(backoff_initial_s=20, backoff_max_s=10)
    with pytest.raises(ValueError):
        Policy(start_retries=-1)
    with pytest.raises(ValueError):
        ProcessPlan("a/b", ("x",))
    with pytest.raises(ValueError):
        ProcessPlan("e", ())
    with pytest.raises(ValueError):
        ProcessPlan("e", ("x",), port=70000)
    assert ProcessPlan("e", ("x",), port=8000).host == "127.0.0.1"


def _rec(**over) -> dict:
    rec = statefile.EngineRecord(
        engine_id="e",
        boot_id="b",
        pid=1234,
        starttime=99,
        create_time=1.5,
        cmdline_sha256="ab",
        marker="e:1",
        host="127.0.0.1",
        port=8000,
        log_path="/x",
        launched_at="2026-01-01T00:00:00Z",
    ).to_json()
    rec.update(over)
    return rec


def test_state_file_round_trip_and_atomic_replace(tmp_path: Path) -> None:
    path = tmp_path / "engines" / "e.json"
    statefile.write_atomic(path, _rec())
    rec, err = statefile.read_record(path)
    assert err is None and rec.pid == 1234 and rec.marker == "e:1"
    statefile.write_atomic(path, _rec(pid=4321))
    assert statefile.read_record(path)[0].pid == 4321
    assert sorted(p.name for p in path.parent.iterdir()) == ["e.json"]  # no temp files left
    statefile.remove(path)
    statefile.remove(path)  # missing is fine
    assert statefile.read_record(path) == (None, None)


@pytest.mark.parametrize(
    "bad",
    [
        "{",
        "[]",
        json.dumps(_rec(pid="12")),
        json.dumps(_rec(pid=True)),
        json.dumps(_rec(schema="other/9")),
        json.dumps(_rec(marker="")),
        json.dumps({k: v for k, v in _rec().items() if k != "starttime"}),
    ],
)
def test_corrupt_state_file_is_an_error_not_an_exception(tmp_path: Path, bad: str) -> None:
    path = tmp_path / "e.json"
    path.write_text(bad)
    rec, err = statefile.read_record(path)
    assert rec is None and err and "e.json" in err


def test_failed_state_write_keeps_the_previous_file(tmp_path: Path) -> None:
    path = tmp_path / "e.json"
    statefile.write_atomic(path, _rec())
    with pytest.raises(TypeError):
        statefile.write_atomic(path, {"x": object()})  # serialization fails mid-write
    assert statefile.read_record(path)[0].pid == 1234
    assert [p.name for p in tmp_path.iterdir()] == ["e.json"]
    if os.geteuid() != 0:  # root ignores directory permissions
        tmp_path.chmod(0o500)
        try:
            with pytest.raises(OSError):
                statefile.write_atomic(path, _rec(pid=5))
        finally:
            tmp_path.chmod(0o700)
        assert statefile.read_record(path)[0].pid == 1234
