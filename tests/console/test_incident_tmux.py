"""The on-call path on `llmconsole demo`, in a real terminal (tmux, 160×48): the first screen shows the hung
engine → the operator opens it → its detail says why (ENGINE_HUNG, no token progress) → ``r`` and ``y``
restart it → the console says "restart accepted", then "ready again" when the agent reports it ready with a
new process → quitting says "stopping demo fleet", and leaves nothing behind.

Slow (a real demo fleet: an agent and its simulated engines); deadlines are generous because the machine
may be small and busy: every step polls the pane until its condition holds."""

from __future__ import annotations

import re

import pytest

from tests.console.test_demo_tmux import EXIT_MARK, _demo_pids, assert_all_gone, terminal  # noqa: F401

HUNG = "llama-70b"  # the demo's vLLM engine that hangs (scripted fault), on the first host


def _start(start, size: tuple[int, int]):  # noqa: ANN001, ANN202
    pane, workdir = start(1)
    pane.tmux("resize-window", "-t", "demo", "-x", str(size[0]), "-y", str(size[1]))
    return pane, workdir


@pytest.mark.timeout(600)
def test_incident_path_first_screen_to_ready_again(terminal) -> None:  # noqa: ANN001, F811 (the fixture)
    pane, workdir = _start(terminal, (160, 48))
    # 1. the first screen: the fleet, and the hung engine flagged on it
    pane.wait("the fleet on screen", lambda t: "demo-gpu01" in t and HUNG in t, timeout=120)
    pane.wait("the hang flagged on the first screen", lambda t: "ENGINE_HUNG" in t, timeout=120)
    ours = _demo_pids(workdir)
    # 2. to the broken engine: filter on its alert, last row (the engine under its host), Enter
    pane.keys("/")
    pane.keys("-l", "alert:ENGINE_HUNG")
    pane.keys("Enter")
    pane.wait("the filtered table", lambda t: "filter: alert:ENGINE_HUNG" in t and HUNG in t, timeout=30)
    pane.keys("G")
    pane.keys("Enter")
    # 3. its cause, on the detail screen: the alert and its summary
    detail = pane.wait(
        "the engine detail with its cause",
        lambda t: "ENGINE_HUNG" in t and "no token progress" in t and "demo-gpu01" in t,
        timeout=60,
    )
    assert HUNG in detail
    # 4. restart it: the confirmation names host, engine and model; y sends it once
    pane.keys("r")
    confirm = pane.wait(
        "the confirmation", lambda t: f"Restart engine {HUNG} on demo-gpu01?" in t, timeout=30
    )
    assert "llama-3.3-70b" in confirm
    pane.keys("y")
    pane.wait(
        "the restart accepted",
        lambda t: "restart accepted" in t and "(state" not in t,
        timeout=60,
    )
    # 5. ready again: said by the console once the agent reports the new process ready
    pane.wait(
        "ready again",
        lambda t: re.search(rf"restart demo-gpu01/{HUNG}: ready\s+again", t) is not None,
        timeout=180,
    )
    # 6. quit: the console says it is stopping the fleet (not "starting … ready"), and everything goes
    pane.keys("q")
    text = pane.wait("the demo to exit", lambda t: EXIT_MARK in t, timeout=60)
    assert f"{EXIT_MARK}0" in text, text
    tail = text[text.rfind("starting demo fleet") :] if "starting demo fleet" in text else text
    assert "stopping demo fleet" in tail, text
    assert_all_gone(workdir, ours)
