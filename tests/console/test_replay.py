"""``llmconsole replay``: a bundle taken from a real agent whose simulated engine hangs is replayed — the
cursor walks the recording (ready before the hang, hung after), ``--status --at`` prints the fleet as it
was at that moment (exit codes as ``status``), actions are refused, and bad bundles or times are one line
with exit 2.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agents.schema import parse_rfc3339
from console.bundle_read import load_bundle
from console.replay import ReplayError, ReplaySource, parse_at
from console.replay_app import ReplayApp
from console.settings import ConsoleConfig
from tests.support.agentproc import ROOT, free_port, kill_everything, sim
from tests.support.secure_agent import SecureAgent, toml_value, write_config, write_tokens


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    tmp = tmp_path_factory.mktemp("replay")
    tokens = write_tokens(tmp / "tokens", ops="operator")
    port = free_port()
    engines = [
        {
            "id": "e1",
            "kind": "vllm",
            "model": "sim-a",
            "port": free_port(),
            "command": sim("vllm"),
            "args": ["--load", "2", "--fault", "hang@4"],
        }
    ]
    config = write_config(tmp, port, engines, agent={"tokens_file": str(tmp / "tokens"), "host": "gpu-r"})
    agent = SecureAgent(config, port, token=tokens["ops"])
    agent.start()
    try:
        agent.wait("engine hung", lambda s: s["engines"][0]["state"] == "hung", timeout=90)
        token_file = tmp / "ops.token"
        token_file.write_text(tokens["ops"] + "\n")
        token_file.chmod(0o600)
        host = {"name": "gpu-r", "url": f"http://127.0.0.1:{port}", "token_file": str(token_file)}
        console = tmp / "console.toml"
        console.write_text(
            "[[console.hosts]]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in host.items())
        )
        out = tmp / "incident.tar.gz"
        got = _cli("bundle", "--all", "--config", str(console), "--since", "300", "-o", str(out), cwd=tmp)
        assert got.returncode == 0, got.stderr
        yield out
    finally:
        kill_everything(agent, tmp / "state")


def _cli(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "console.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _states(source: ReplaySource) -> list[str]:
    tr = source.tracks[0]
    return [s.engines[0].state for s in tr.snaps]


async def test_the_cursor_walks_the_recording_from_ready_to_hung(bundle: Path) -> None:
    source = ReplaySource(load_bundle(bundle), name=bundle.name)
    states = _states(source)
    assert "ready" in states and states[-1] == "hung"
    first_ready = states.index("ready")
    source.seek(source.tracks[0].times[first_ready])
    answer = (await source.poll())[0]
    assert answer.snapshot is not None and answer.snapshot.engines[0].state == "ready"
    assert len(answer.history) == first_ready  # the first poll after a seek back carries the past
    source.seek(source.end)
    answer = (await source.poll())[0]
    assert answer.snapshot.engines[0].state == "hung" and answer.history == ()
    assert any(a.code == "ENGINE_HUNG" for a in answer.snapshot.engines[0].alerts)
    source.step(-1)
    assert source.rewound and source.cursor < source.end
    before = source.cursor
    source.jump(-3600)
    assert source.cursor == source.start <= before
    result = await source.action("gpu-r", "e1", "restart")
    assert result.outcome == "refused" and "replay" in result.message


async def test_the_replay_app_shows_the_moment_and_refuses_actions(bundle: Path) -> None:
    source = ReplaySource(load_bundle(bundle), name=bundle.name)
    ready_at = source.tracks[0].times[_states(source).index("ready")]
    source.seek(ready_at)
    app = ReplayApp(source, ConsoleConfig())
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause()
        assert "REPLAY incident.tar.gz" in app.sub_title
        e = app.fleet.engine("gpu-r", "e1")
        assert e is not None and e.state == "ready"
        await pilot.press("right_curly_bracket")  # one minute on: past the end of a short recording
        await pilot.pause()
        assert app.fleet.engine("gpu-r", "e1").state == "hung"
        assert source.cursor == source.end
        await pilot.press("left_square_bracket")
        await pilot.pause()
        assert (
            source.cursor < source.end
            and f"{len(source.timeline) - 1}/{len(source.timeline)}" in app.sub_title
        )
        app.request_action("gpu-r", "e1", "restart")
        await pilot.pause()
        assert not source.actions  # refused before any confirmation: nothing was sent


def test_status_at_a_moment_prints_that_moment_with_status_exit_codes(bundle: Path, tmp_path: Path) -> None:
    source = ReplaySource(load_bundle(bundle))
    ready_at = source.tracks[0].times[_states(source).index("ready")]
    offset = math.ceil((ready_at - source.start) * 1000) / 1000  # rounded up: never the moment before it
    got = _cli("replay", str(bundle), "--status", "--at", f"+{offset:.3f}s", "--json", cwd=tmp_path)
    doc = json.loads(got.stdout)
    assert doc["hosts"][0]["engines"][0]["state"] == "ready"
    assert got.returncode == doc["exit_code"]
    got = _cli("replay", str(bundle), "--status", cwd=tmp_path)
    assert (
        got.returncode == 1
        and "REPLAY" in got.stdout
        and "hung" in got.stdout
        and "ENGINE_HUNG" in got.stdout
    )


def test_bad_bundles_and_times_are_one_line_exit_2(bundle: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(bundle.read_bytes()[:-50])
    for args in (
        ["replay", str(bad), "--status"],
        ["replay", str(tmp_path / "none.tar.gz"), "--status"],
        ["replay", str(bundle), "--status", "--at", "yesterday"],
    ):
        got = _cli(*args, cwd=tmp_path)
        assert got.returncode == 2 and got.stderr.count("\n") == 1 and "Traceback" not in got.stderr, (
            got.stderr
        )
    got = _cli("replay", str(bad), "--status", "--json", cwd=tmp_path)
    assert got.returncode == 2 and json.loads(got.stdout)["exit_code"] == 2


def test_parse_at() -> None:
    start, end = 1000.0, 2000.0
    assert parse_at("start", start, end) == start and parse_at("end", start, end) == end
    assert parse_at("+90s", start, end) == 1090.0 and parse_at("+1h5m", start, end) == 1000.0 + 3900
    assert parse_at("-30", start, end) == 1970.0
    assert parse_at("2026-12-06T03:04:05Z", start, end) == parse_rfc3339("2026-12-06T03:04:05Z")
    for bad in ("", "+", "soon", "+5x", "2026-13-40"):
        with pytest.raises(ReplayError):
            parse_at(bad, start, end)
