"""Root-cause line of an engine exit, on vLLM's real failed start-up shape."""

from __future__ import annotations

from agents.supervisor.exitcause import OMITTED, root_cause, tail_with_cause

VLLM_BLOCK_SIZE_16 = [
    "(EngineCore_DP0 pid=9) ERROR 11-29 12:00:01 [core.py:708] EngineCore failed to start.",
    "(EngineCore_DP0 pid=9) ERROR 11-29 12:00:01 [core.py:708] Traceback (most recent call last):",
    '(EngineCore_DP0 pid=9) ERROR 11-29 12:00:01 [core.py:708]   File "vllm/v1/engine/core.py", line 699, in run',
    "(EngineCore_DP0 pid=9) ERROR 11-29 12:00:01 [core.py:708] ValueError: No common block size for 16 (CPU_ATTN: [MultipleOf(32)])",
    *[f"(APIServer pid=8) noise line {i}" for i in range(60)],
    "RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {}",
    "/usr/lib/python3.11/multiprocessing/resource_tracker.py:254: UserWarning: resource_tracker: There appear to be 1 leaked shared_memory objects",
    "  warnings.warn('resource_tracker: There appear to be %d '",
]


def test_the_specific_error_beats_wrappers_and_warnings() -> None:
    cause = root_cause(VLLM_BLOCK_SIZE_16)
    assert cause is not None and cause.endswith(
        "ValueError: No common block size for 16 (CPU_ATTN: [MultipleOf(32)])"
    )


def test_fallbacks() -> None:
    assert root_cause(
        ["EngineDeadError: EngineCore encountered an issue. See stack trace (above) for the root cause."]
    ).startswith("EngineDeadError")
    assert (
        root_cause(["starting", "error: unrecognized arguments: --foo", ""])
        == "error: unrecognized arguments: --foo"
    )
    assert (
        root_cause(['INFO: 127.0.0.1:5 - "POST /v1/completions HTTP/1.1" 200 OK']) is None
    )  # routine: never a cause
    assert root_cause([]) is None and root_cause(["", "  "]) is None


def test_tail_keeps_the_cause_in_front() -> None:
    tail = tail_with_cause(VLLM_BLOCK_SIZE_16, 50)
    assert len(tail) == 51
    assert "No common block size for 16" in tail[0] and tail[1] == OMITTED.format(n=14)
    assert tail[-1] == VLLM_BLOCK_SIZE_16[-1]
    short = ["a", "ValueError: x", "b"]
    assert tail_with_cause(short, 50) == short  # already inside the tail: unchanged
