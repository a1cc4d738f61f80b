"""The e2e set-up cache's own rules (fast; part of the normal suite): the lock serializes concurrent
runs, markers are all-or-nothing, a cached virtualenv is reused without running pip, and the e2e tests
are skipped unless selected."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.e2e.support import venv as venv_mod
from tests.e2e.support.cache import MARKER, locked, marker_matches, read_marker, write_marker

ROOT = Path(__file__).resolve().parents[2]


def test_lock_serializes_two_processes(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import sys, time
            from pathlib import Path
            from tests.e2e.support.cache import locked
            with locked(Path({str(tmp_path)!r})):
                print("held", flush=True)
                time.sleep(1.5)
        """),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with locked(tmp_path):
            waited = time.monotonic() - started
        assert waited >= 1.0, f"the lock did not wait for its holder ({waited:.2f}s)"
    finally:
        holder.kill()
        holder.wait(5)


def test_marker_is_written_atomically_and_matched_by_subset(tmp_path: Path) -> None:
    assert read_marker(tmp_path) is None and not marker_matches(tmp_path, {"recipe": 1})
    write_marker(tmp_path, {"recipe": 1, "vllm": "0.32.0", "setup_s": 3.0})
    assert marker_matches(tmp_path, {"recipe": 1, "vllm": "0.32.0"})
    assert not marker_matches(tmp_path, {"recipe": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == [MARKER]  # no temp file left behind
    (tmp_path / MARKER).write_text("{not json")
    assert read_marker(tmp_path) is None


def test_cached_venv_is_reused_without_pip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    venv = venv_mod.venv_dir(tmp_path)
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("")
    write_marker(venv, {**venv_mod.expected_marker(), "vllm": "0.32.0"})

    def no_run(*a, **k):
        raise AssertionError("a cached venv must not be rebuilt")

    monkeypatch.setattr(venv_mod, "_run", no_run)
    python, marker = venv_mod.ensure_venv(tmp_path, tmp_path / "log")
    assert python == venv / "bin" / "python" and marker["vllm"] == "0.32.0"


def test_e2e_tests_are_skipped_unless_selected() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/e2e/test_vllm_e2e.py", "-q", "-rs"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "LLMCONSOLE_E2E": ""},
    )
    assert out.returncode == 0, out.stdout[-2000:]
    assert "run with `-m e2e` or LLMCONSOLE_E2E=1" in out.stdout and " passed" not in out.stdout
