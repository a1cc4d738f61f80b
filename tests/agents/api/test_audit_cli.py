"""`llmconsole agent audit verify`: exit 0 + one summary line on an intact log, exit 1 + the first bad line
and why, exit 2 + one line for bad usage, config or an unreadable log; never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.audit import AuditLog
from agents.audit_cli import main

REPO = Path(__file__).resolve().parents[3]


def setup(tmp_path: Path, n: int = 3) -> tuple[Path, Path]:
    config = tmp_path / "config.toml"
    config.write_text('[agent]\nstate_dir = "state"\ngpu_source = "none"\n')
    log = tmp_path / "state" / "audit.log"
    audit = AuditLog(log, host="h1")
    for _ in range(n):
        audit.append(actor="alice", action="stop", engine="e1", result="allowed")
    return config, log


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_an_intact_log_exits_0_with_one_summary_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, log = setup(tmp_path)
    code, out, err = run(capsys, "verify", "--config", str(config))
    assert code == 0 and err == ""
    assert out.startswith(f"audit log {log}: 3 records intact, last seq 3 at 20") and out.count("\n") == 1


def test_a_config_found_by_the_agents_search_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config, log = setup(tmp_path, 1)
    monkeypatch.chdir(tmp_path)  # ./config.toml, as `llmconsole agent` finds it
    code, out, _ = run(capsys, "verify")
    assert code == 0 and out.startswith(f"audit log {log}: 1 records intact")


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        (
            lambda lines: [lines[0], lines[1].replace(b"alice", b"bob__"), lines[2]],
            "line 2: edited (its HMAC",
        ),
        (lambda lines: [lines[0], lines[2]], "line 2: out of sequence: seq 3 after seq 1"),
        (lambda lines: [lines[1], lines[0], lines[2]], "line 1: out of sequence: seq 2 after seq 0"),
        (
            lambda lines: lines[:2],
            "line 3: truncated: the head says the last record is seq 3, the file ends at seq 2",
        ),
        (lambda lines: [*lines, b"\x00\xffjunk\n"], "line 4: not a JSON object"),
    ],
    ids=["edited", "removed", "swapped", "truncated", "junk"],
)
def test_a_tampered_log_exits_1_naming_the_first_bad_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tamper, expected: str
) -> None:
    config, log = setup(tmp_path)
    log.write_bytes(b"".join(tamper(log.read_bytes().splitlines(keepends=True))))
    code, out, err = run(capsys, "verify", "--config", str(config))
    assert code == 1 and err == "" and out.count("\n") == 1
    assert out.startswith(f"audit log {log}: {expected}"), out


def test_a_missing_key_or_head_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config, log = setup(tmp_path)
    (log.parent / "audit.head").unlink()
    code, out, _ = run(capsys, "verify", "--config", str(config))
    assert code == 1 and "head file" in out and "is missing: truncation cannot be ruled out" in out
    (log.parent / "audit.key").unlink()
    code, out, _ = run(capsys, "verify", "--config", str(config))
    assert code == 1 and out.startswith(f"audit log {log}: line 1: keyed record but the key ")


def test_notes_go_to_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config, log = setup(tmp_path)
    (log.parent / "audit.key").chmod(0o640)
    code, out, err = run(capsys, "verify", "--config", str(config))
    assert code == 0 and "records intact" in out
    assert err.startswith("llmconsole agent audit: note: key file ") and "mode 0640" in err


def test_no_log_yet_is_intact(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config, log = setup(tmp_path, 0)
    code, out, _ = run(capsys, "verify", "--config", str(config))
    assert (code, out) == (0, f"audit log {log}: no records yet\n")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], "the following arguments are required: COMMAND"),
        (["verify", "--bogus"], "unrecognized arguments: --bogus"),
        (["check"], "invalid choice: 'check'"),
        (["verify", "--config", "/nonexistent/c.toml"], "config file not found: /nonexistent/c.toml"),
    ],
)
def test_bad_usage_exits_2_with_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == "" and err.count("\n") == 1 and expected in err, err
    assert err.startswith("llmconsole agent audit: error: ")


def test_a_bad_config_or_an_unreadable_log_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[agent\nstate_dir = 3\n")
    code, _, err = run(capsys, "verify", "--config", str(bad))
    assert code == 2 and err.count("\n") == 1 and str(bad) in err
    bad.write_text("[agent]\nstate_dir = 3\n")
    code, _, err = run(capsys, "verify", "--config", str(bad))
    assert code == 2 and err.count("\n") == 1 and "state_dir" in err
    (tmp_path / "x").mkdir()
    config, log = setup(tmp_path / "x", 0)
    log.mkdir(parents=True)  # a directory where the log should be
    code, out, err = run(capsys, "verify", "--config", str(config))
    assert (
        code == 2
        and out == ""
        and err == f"llmconsole agent audit: error: cannot read {log}: Is a directory\n"
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)
    monkeypatch.delenv("LLMCONSOLE_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(empty))
    code, _, err = run(capsys, "verify")
    assert code == 2 and "no config file found" in err and err.count("\n") == 1


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(max_size=300), head=st.one_of(st.none(), st.binary(max_size=120)))
def test_no_traceback_on_arbitrary_bytes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, head: bytes | None
) -> None:
    config = tmp_path / "config.toml"
    if not config.exists():
        setup(tmp_path, 1)
    log = tmp_path / "state" / "audit.log"
    log.write_bytes(content)
    head_file = log.parent / "audit.head"
    head_file.unlink(missing_ok=True)
    if head is not None:
        head_file.write_bytes(head)
    code, out, err = run(capsys, "verify", "--config", str(config))
    assert code in (0, 1) and out.count("\n") == 1 and out.startswith(f"audit log {log}: ")
    assert "Traceback" not in out + err
    if content and head is None:
        assert code == 1  # a key exists: any bytes are either not a valid keyed record or lack a head


def test_the_real_cli_and_python_m_run_it(tmp_path: Path) -> None:
    config, log = setup(tmp_path, 2)
    cli = [str(Path(sys.executable).parent / "llmconsole"), "agent", "audit"]
    ok = subprocess.run(
        [*cli, "verify", "--config", str(config)], cwd=tmp_path, capture_output=True, text=True, timeout=30
    )
    assert (ok.returncode, ok.stderr) == (0, "") and ok.stdout.startswith(
        f"audit log {log}: 2 records intact"
    )
    log.write_bytes(log.read_bytes()[:-1])
    cmd = [sys.executable, "-m", "agents.audit_cli", "verify", "--config", str(config)]
    bad = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=30)
    assert (
        bad.returncode == 1 and "line 2: incomplete last line" in bad.stdout and "Traceback" not in bad.stderr
    )
    usage = subprocess.run(
        [*cli, "verify", "--nope"], cwd=tmp_path, capture_output=True, text=True, timeout=30
    )
    assert usage.returncode == 2 and usage.stdout == "" and usage.stderr.count("\n") == 1
