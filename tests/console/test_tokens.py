"""The console's tokens: a token_file others can read gets a warning (as ssh warns about keys), a changed
token_file is re-read without a restart, and a 401/403 from a REAL agent is an authorization failure naming
the host and what to check — never "unreachable" — in the source, the reducer, the views and `status`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from console.httpsource import HttpFleetSource
from console.netutil import token_file_warning
from console.settings import ConsoleConfig, HostConfig
from console.state import FleetState, apply
from console.status import render_table
from console.tokens import TokenState
from console.views import fleet_table, host_state_cell, host_status_line
from tests.console.test_hostile_hosts import TOKEN, cli, token_agent, token_file, write_console_config
from tests.support.agentproc import Agent


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    with token_agent(tmp_path_factory.mktemp("token-agent")) as a:
        yield a


def test_permission_warning_follows_ssh() -> None:
    p = Path("/k/token")
    assert token_file_warning(p, 0o100600) is None and token_file_warning(p, 0o100400) is None
    assert (
        token_file_warning(p, 0o100640)
        == "token_file /k/token is readable by group or others (mode 0640): run chmod 600 /k/token"
    )
    assert token_file_warning(p, 0o100604) is not None and "readable" in token_file_warning(p, 0o100604)
    assert "writable by group or others (mode 0620)" in token_file_warning(p, 0o100620)


def test_a_changed_token_file_is_re_read_and_its_mode_rechecked(tmp_path: Path) -> None:
    tok = token_file(tmp_path, "t", "first", 0o644)
    host = HostConfig(name="h1", url="http://127.0.0.1:1", token_file=tok)
    src = HttpFleetSource(ConsoleConfig(hosts=(host,)))
    got = src.token("h1")
    assert got.value == "first" and got.warning is not None and "mode 0644" in got.warning
    assert src.token("h1") is got  # unchanged file: not read again
    tok.write_text("second-and-longer\n")
    assert src.token("h1").value == "second-and-longer"
    tok.chmod(0o600)
    assert src.token("h1").warning is None and src.action_block("h1") is None
    replacement = tmp_path / "t.new"  # an atomic replace (new inode), as editors and `install` do
    replacement.write_text("third\n")
    replacement.chmod(0o600)
    replacement.replace(tok)
    assert src.token("h1").value == "third"
    tok.unlink()
    gone = src.token("h1")
    assert gone.value is None and "cannot read" in gone.block and src.action_block("h1") == gone.block
    assert (
        TokenState.read(HostConfig(name="e", url="http://x:1", token_env="LLMC_T"), {"LLMC_T": "v"}).value
        == "v"
    )
    two = TokenState.read(HostConfig(name="e", url="http://x:1", token_env="LLMC_T"), {"LLMC_T": "a\nb"})
    assert (
        two.value is None
        and two.block
        == "actions disabled on e: $LLMC_T does not hold one token (printable ASCII without spaces)"
    )
    tok.write_text("tøken\n")
    assert src.token("h1").value is None and "does not hold one token" in src.action_block("h1")


async def test_401_is_an_authorization_failure_and_a_fixed_token_file_recovers_without_restart(
    agent: Agent, tmp_path: Path
) -> None:
    tok = token_file(tmp_path, "h1.token", "not-the-token", 0o644)
    config = ConsoleConfig(
        hosts=(HostConfig(name="h1", url=agent.url, token_file=tok),), request_timeout_s=10.0
    )
    src = HttpFleetSource(config)
    try:
        (refused,) = await src.poll()
        state = apply(FleetState.initial(config, 0.0), [refused], 1.0, 1.75e9)
        tok.write_text(TOKEN + "\n")
        tok.chmod(0o600)
        (accepted,) = await src.poll()  # the same source: no restart
        later = apply(state, [accepted], 2.0, 1.75e9 + 1)
    finally:
        await src.aclose()
    err = refused.error
    assert (err.kind, err.status) == ("unauthorized", 401)
    assert err.message.startswith(f"not authorized (HTTP 401): check token_file {tok}; agent: ")
    assert refused.warnings == (
        f"token_file {tok} is readable by group or others (mode 0644): run chmod 600 {tok}",
    )
    h = state.hosts["h1"]
    assert h.status == "unauthorized" and h.warnings == refused.warnings
    assert [a.alert.code for a in state.alerts] == ["AGENT_UNAUTHORIZED"]  # never AGENT_UNREACHABLE
    assert state.alerts[0].alert.summary.startswith("h1: not authorized (HTTP 401): check token_file")
    assert host_state_cell(h, 1.0).text == "not authorized (401)" and host_state_cell(h, 1.0).tone == "crit"
    assert fleet_table(state, 1.0).rows["h1"][1].text == "not authorized (401)"
    line = "".join(text for text, _ in host_status_line(state, "h1"))
    assert (
        "NOT AUTHORIZED: not authorized (HTTP 401): check token_file" in line
        and "warning: token_file" in line
    )
    assert "h1: not authorized (HTTP 401): check token_file" in render_table(state)
    assert accepted.ok and accepted.warnings == ()
    assert later.hosts["h1"].status == "fresh" and later.alerts == () and later.hosts["h1"].warnings == ()


def test_status_says_not_authorized_and_warns_about_the_token_file(agent: Agent, tmp_path: Path) -> None:
    wrong = token_file(tmp_path, "wrong.token", "wrong", 0o640)
    good = token_file(tmp_path, "good.token", TOKEN)
    config = write_console_config(
        tmp_path, [("good", agent.url, good), ("h1", agent.url, wrong), ("h2", agent.url, None)]
    )
    table = cli("status", "--config", str(config), cwd=tmp_path)
    as_json = cli("status", "--config", str(config), "--json", cwd=tmp_path)
    warning = f"llmconsole status: warning: token_file {wrong} is readable by group or others (mode 0640): run chmod 600 {wrong}"
    for r in (table, as_json):
        assert r.returncode == 1 and "Traceback" not in r.stderr + r.stdout, r.stderr
        assert r.stderr.splitlines() == [warning]
    lines = table.stdout.splitlines()
    assert any(line.startswith("h1 ") and "not authorized (401)" in line for line in lines), table.stdout
    assert any(
        line.startswith(f"h1: not authorized (HTTP 401): check token_file {wrong}; agent: ") for line in lines
    )
    assert any(
        line.startswith("h2: not authorized (HTTP 401): no token configured for this host") for line in lines
    )
    assert not any("unreachable" in line or "~" in line for line in lines if line.startswith(("h1", "h2"))), (
        table.stdout
    )
    doc = json.loads(as_json.stdout)
    hosts = {h["name"]: h for h in doc["hosts"]}
    assert hosts["good"]["status"] == "fresh"
    assert (hosts["h1"]["status"], hosts["h1"]["error"]["kind"]) == ("unauthorized", "unauthorized")
    assert [a["code"] for a in hosts["h1"]["alerts"]] == ["AGENT_UNAUTHORIZED"]
    assert doc["warnings"] == [warning.removeprefix("llmconsole status: warning: ")]
