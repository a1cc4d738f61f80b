"""One bad host never breaks the fleet view: a REAL hostile HTTP server on loopback (deeply nested JSON,
invalid UTF-8, NaN where a number is required, an answer over the size cap, wrong types deep in the tree,
integers beyond int64, escape sequences, a 403) next to a REAL agent, through `llmconsole status`,
`status --json` (subprocesses) and the console itself (Pilot): each bad host is one line with its reason,
the healthy host renders, nothing prints a traceback."""

from __future__ import annotations

import contextlib
import copy
import http.server
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agents.auth import hash_token
from console.app import LlmConsole
from console.httpsource import HttpFleetSource
from console.payload import MAX_SNAPSHOT_BYTES
from console.settings import ConsoleConfig, HostConfig
from console.views import host_status_line
from tests.console.conftest import SNAPSHOTS
from tests.support.agentproc import ROOT, Agent, free_port, kill_everything, write_config

TOKEN = "llmc_hostile_operator_token"
FULL = json.loads((SNAPSHOTS / "full.json").read_text())


def _with(path: tuple, value) -> bytes:
    doc = copy.deepcopy(FULL)
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    parent[path[-1]] = value
    return json.dumps(doc).encode()


HEAD = b'{"schema":"llmconsole.snapshot/1","host":"evil","seq":1,"taken_at":"2025-06-01T00:00:00Z"'
ESCAPES = copy.deepcopy(FULL)
ESCAPES["engines"][0]["served_model_name"] = "\x1b[2J\x1b[31mowned\nsecond line\u202e"
ESCAPES["engines"][1]["alerts"][0]["summary"] = "line one\nline two\x07"
# name -> (status, body, the one-line reason expected for that host)
HOSTILE: dict[str, tuple[int, bytes, str]] = {
    "deep": (200, b"[" * 100_000 + b"]" * 100_000, "bad payload: JSON nested too deeply"),
    "utf8": (200, HEAD + b',"errors":["caf\xe9"]}', "bad payload: invalid UTF-8 at byte "),
    "nan": (
        200,
        HEAD.replace(b'"seq":1', b'"seq":NaN') + b"}",
        "bad payload: seq: expected integer, got None",
    ),
    "huge": (
        200,
        HEAD + b',"errors":["' + b"x" * (MAX_SNAPSHOT_BYTES + 1024) + b'"]}',
        "bad payload: answer larger than 8 MiB",
    ),
    "types": (
        200,
        _with(("engines", 2, "stats", "ttft_p95_s"), {"a": [1]}),
        "bad payload: engines[2].stats.ttft_p95_s: expected number or null, got {'a': [1]}",
    ),
    "bigint": (200, _with(("gpus", 0, "mem_used_bytes"), 10**30), "bad payload: integer out of range: "),
    "forbidden": (
        403,
        b"{\"error\": \"token 'ro' has role 'viewer'\\n\\u001b[2J\"}",
        "not authorized (HTTP 403): no token configured for this host (set token_env or token_file); "
        "agent: token 'ro' has role 'viewer'",
    ),
}


class _Hostile(http.server.BaseHTTPRequestHandler):
    """/<name>/v1/snapshot answers HOSTILE[name]; /escapes/… a valid snapshot full of terminal escapes;
    /badhistory/… a valid snapshot whose /v1/history is nested 100,000 deep."""

    def do_GET(self) -> None:  # noqa: N802
        name, _, rest = self.path.lstrip("/").partition("/")
        if name in HOSTILE:
            status, body, _reason = HOSTILE[name]
        elif name == "escapes":
            status, body = 200, json.dumps(ESCAPES).encode()
        elif name == "badhistory":
            status, body = (
                200,
                (b"[" * 100_000 if rest.startswith("v1/history") else json.dumps(FULL).encode()),
            )
        else:
            status, body = 404, b'{"error": "no"}'
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the console stopped reading at its cap
            pass

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def hostile_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def token_agent(tmp: Path) -> Iterator[Agent]:
    """A real agent (no engines: it starts in a second) that needs the token TOKEN for reads."""
    tokens = tmp / "tokens"
    tokens.write_text(f"op operator {hash_token(TOKEN)}\n")
    port = free_port()
    a = Agent(write_config(tmp, port, [], {"tokens_file": str(tokens)}), port)
    a.start()
    try:
        deadline = time.monotonic() + 60
        while True:
            assert a.proc is not None and a.proc.poll() is None, a.stderr_text()[-2000:]
            with contextlib.suppress(httpx.HTTPError):
                r = httpx.get(a.url + "/v1/snapshot", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=2)
                if r.status_code == 200:
                    break
            assert time.monotonic() < deadline, "agent never answered"
            time.sleep(0.2)
        yield a
    finally:
        kill_everything(a, tmp / "state")


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    with token_agent(tmp_path_factory.mktemp("hostile-agent")) as a:
        yield a


def token_file(tmp: Path, name: str, value: str, mode: int = 0o600) -> Path:
    path = tmp / name
    path.write_text(value + "\n")
    path.chmod(mode)
    return path


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LLMCONSOLE_CONFIG": "", "XDG_CONFIG_HOME": str(cwd)}
    return subprocess.run(
        [sys.executable, "-m", "console.cli", *args],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=ROOT,
        env=env,
    )


def write_console_config(tmp: Path, hosts: list[tuple[str, str, Path | None]]) -> Path:
    lines = ["[console]", "request_timeout_s = 10.0", "stale_after_s = 30.0", ""]
    for name, url, tok in hosts:
        lines += ["[[console.hosts]]", f'name = "{name}"', f'url = "{url}"']
        lines += [f'token_file = "{tok}"'] if tok is not None else []
        lines.append("")
    path = tmp / "console.toml"
    path.write_text("\n".join(lines))
    return path


def test_status_and_status_json_show_every_bad_host_as_one_line_next_to_a_healthy_agent(
    agent: Agent, tmp_path: Path
) -> None:
    good_tok = token_file(tmp_path, "good.token", TOKEN)
    with hostile_server() as evil:
        hosts = (
            [("good", agent.url, good_tok)]
            + [(n, f"{evil}/{n}", None) for n in HOSTILE]
            + [("escapes", f"{evil}/escapes", None)]
        )
        config = write_console_config(tmp_path, hosts)
        table = cli("status", "--config", str(config), cwd=tmp_path)
        as_json = cli("status", "--config", str(config), "--json", cwd=tmp_path)
    for r in (table, as_json):
        assert r.returncode == 1, (r.stdout[-3000:], r.stderr[-3000:])  # bad hosts: exit 1, not a crash (2)
        assert "Traceback" not in r.stdout and "Traceback" not in r.stderr, r.stderr[-3000:]
        assert r.stderr == ""
        assert "\x1b" not in r.stdout and "\x07" not in r.stdout  # no agent-sent escape reaches the terminal
    lines = table.stdout.splitlines()
    good_row = next(line for line in lines if line.startswith("good "))
    assert "fresh" in good_row and "0 engines" in good_row, table.stdout
    for name, (_status, _body, reason) in HOSTILE.items():
        notes = [line for line in lines if line.startswith(f"{name}: ")]
        assert len(notes) == 1, (name, notes)
        status = (
            "unreachable: " if name != "forbidden" else ""
        )  # a 403 is "not authorized", never unreachable
        assert notes[0].startswith(f"{name}: {status}{reason}"), (name, notes[0])
    assert any(line.startswith("escapes ") and "fresh" in line for line in lines)
    assert any("owned second line" in line for line in lines)  # the model, on one line, escapes gone
    doc = json.loads(as_json.stdout)
    by_name = {h["name"]: h for h in doc["hosts"]}
    assert list(by_name) == [h[0] for h in hosts]
    assert (
        by_name["good"]["status"] == "fresh"
        and by_name["good"]["error"] is None
        and by_name["good"]["seq"] > 0
    )
    assert by_name["escapes"]["status"] == "fresh" and len(by_name["escapes"]["engines"]) == 3
    for name, (_status, _body, reason) in HOSTILE.items():
        h = by_name[name]
        want = ("unauthorized", "unauthorized") if name == "forbidden" else ("unreachable", "bad_payload")
        assert (h["status"], h["error"]["kind"]) == want, (name, h)
        assert h["error"]["message"].startswith(reason) and "\n" not in h["error"]["message"]
        codes = [a["code"] for a in h["alerts"]]
        assert codes == (["AGENT_UNAUTHORIZED"] if name == "forbidden" else ["AGENT_UNREACHABLE"]), (
            name,
            codes,
        )


async def test_the_console_polls_and_shows_every_host_while_some_answer_garbage(
    agent: Agent, tmp_path: Path
) -> None:
    good_tok = token_file(tmp_path, "good.token", TOKEN)
    with hostile_server() as evil:
        hosts = (
            HostConfig(name="good", url=agent.url, token_file=good_tok),
            HostConfig(name="badhistory", url=f"{evil}/badhistory"),
            *(HostConfig(name=n, url=f"{evil}/{n}") for n in HOSTILE),
        )
        config = ConsoleConfig(hosts=hosts, refresh_s=0.5, request_timeout_s=10.0, stale_after_s=30.0)
        app = LlmConsole(HttpFleetSource(config), config)
        async with app.run_test(size=(160, 45)) as pilot:
            deadline = time.monotonic() + 60
            while not all(h.status != "pending" for h in app.fleet.hosts.values()) or app.fleet.polls < 2:
                assert time.monotonic() < deadline, {n: h.status for n, h in app.fleet.hosts.items()}
                await pilot.pause(0.2)
            state = app.fleet
            keys = app.screen.table.keys
    assert state.hosts["good"].status == "fresh" and state.hosts["good"].snapshot.seq > 0
    assert (
        state.hosts["badhistory"].status == "fresh" and state.hosts["badhistory"].snapshot.seq == FULL["seq"]
    )
    assert {"good", "badhistory", *HOSTILE} <= set(keys)  # every host has its row
    for name, (_status, _body, reason) in HOSTILE.items():
        h = state.hosts[name]
        assert h.status == ("unauthorized" if name == "forbidden" else "unreachable"), (name, h.status)
        assert h.error.message.startswith(reason), (name, h.error.message)
        line = "".join(text for text, _tone in host_status_line(state, name))
        assert reason in line and "\n" not in line
