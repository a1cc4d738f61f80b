"""The demo's operator tokens come from the agent's own `agent token add`: the console never writes the
tokens file's format, and the agent accepts what the demo hands the console."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from agents.auth import TokenStore
from console.demo_fleet import DemoError, operator_tokens


def test_each_agent_gets_its_own_operator_token(tmp_path: Path) -> None:
    files = [tmp_path / "gpu-a" / "tokens", tmp_path / "gpu-b" / "tokens"]
    tokens = operator_tokens(files)
    assert len(tokens) == 2 and tokens[0] != tokens[1]
    for path, token in zip(files, tokens, strict=True):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert token not in path.read_text()  # only its hash is stored
        who = TokenStore.load(path).identify(f"Bearer {token}")
        assert (who.name, who.role) == ("demo-operator", "operator")
    other = TokenStore.load(files[0]).identify(f"Bearer {tokens[1]}")
    assert other.role is None  # one agent's token is not another's


def test_a_failure_is_one_demo_error_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(DemoError) as info:
        operator_tokens([blocker / "tokens"])  # its folder is a file: the agent cannot write there
    assert "\n" not in str(info.value) and str(blocker / "tokens") in str(info.value)
    assert "cannot write tokens file" in str(info.value)  # the agent's own one-line error, no traceback
