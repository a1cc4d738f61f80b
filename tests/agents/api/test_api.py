"""The agent HTTP API in-process (ASGI transport) over a real AgentRuntime: validation, auth, audit."""

from __future__ import annotations

import json
import string
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents import schema
from agents.api import ROUTES, Endpoint, bind, create_app
from agents.apihandlers import healthz
from agents.apithread import LoopBridge
from agents.audit import AuditLog
from agents.auth import TokenFileError, TokenStore, hash_token
from agents.config import agent_config_from_dict
from agents.denials import DenialLimiter
from agents.runtime import AgentRuntime
from agents.schema import from_json, history_from_json


def make(tmp_path: Path, tokens: str | None = None, engines: list | None = None):
    data = {
        "agent": {
            "state_dir": str(tmp_path / "state"),
            "gpu_source": "none",
            "allowed_executables": ["/bin/false"],
            "engines": engines
            or [
                {
                    "id": "e1",
                    "kind": "vllm",
                    "model": "m",
                    "port": 18555,
                    "command": ["/bin/false"],
                    "autostart": False,
                }
            ],
        }
    }
    config = agent_config_from_dict(data, file="test.toml")
    runtime = AgentRuntime(config)
    store = TokenStore()
    if tokens is not None:
        path = tmp_path / "tokens"
        path.write_text(tokens)
        store = TokenStore.load(path)
    audit = AuditLog(tmp_path / "state" / "audit.log")
    app = create_app(LoopBridge(runtime), store, audit)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1")
    return runtime, client, audit


async def test_read_endpoints(tmp_path: Path) -> None:
    runtime, client, _ = make(tmp_path)
    async with client:
        r = await client.get("/v1/snapshot")
        assert r.status_code == 503 and "starting" in r.json()["error"]
        await runtime.collector.tick()
        await runtime.collector.tick()
        snap = from_json((await client.get("/v1/snapshot")).content)
        assert snap.seq == 2 and snap.engines[0].id == "e1" and snap.engines[0].state == "stopped"
        assert snap.gpu_source == "unavailable: disabled in config"
        hist = history_from_json((await client.get("/v1/history?seconds=60")).content)
        longer = history_from_json((await client.get("/v1/history?seconds=3600")).content)
        assert [s.seq for s in longer.snapshots] == [1, 2]  # more than history_s: everything kept, not a 400
        assert [s.seq for s in hist.snapshots] == [1, 2]
        assert (await client.get("/healthz")).json() == {"ok": True, "seq": 2}
        logs = await client.get("/v1/engines/e1/logs?lines=5")
        assert logs.status_code == 200 and logs.json()["engine"] == "e1"
        metrics = await client.get("/metrics")
        assert metrics.status_code == 200 and b'llmconsole_engine_state{engine="e1"' in metrics.content
    await runtime.shutdown()


@pytest.mark.parametrize(
    ("method", "path", "status", "fragment"),
    [
        ("GET", "/v1/history?seconds=abc", 400, "must be an integer of ASCII digits"),
        ("GET", "/v1/history?seconds=-5", 400, "ASCII digits"),
        ("GET", "/v1/history?seconds=0", 400, "between 1 and"),
        ("GET", "/v1/history?seconds=%D9%A3", 400, "ASCII digits"),  # Arabic-Indic three
        ("GET", "/v1/history?seconds=1_0", 400, "ASCII digits"),
        ("GET", "/v1/history?seconds=%2B3", 400, "ASCII digits"),  # +3
        ("GET", "/v1/history?seconds=%203", 400, "ASCII digits"),  # " 3"
        ("GET", "/v1/history?seconds=" + "9" * 5000, 400, "between 1 and"),
        ("GET", "/v1/engines/e1/logs?lines=%EF%BC%93", 400, "ASCII digits"),  # fullwidth three
        ("GET", "/v1/engines/e1/audit?lines=-1", 400, "ASCII digits"),
        ("GET", "/v1/history?seconds=99999999", 400, "between 1 and"),
        ("GET", "/v1/engines/nope/logs", 404, "no engine 'nope'"),
        ("GET", "/v1/engines/e1/logs?lines=0", 400, "between 1 and"),
        ("GET", "/v1/engines/e1/logs?lines=1e9", 400, "must be an integer"),
        ("POST", "/v1/engines/e1/explode", 404, "unknown action"),
        ("GET", "/v1/engines/e1/restart", 405, "not allowed"),
        ("DELETE", "/v1/snapshot", 405, "not allowed"),
        ("GET", "/nothing/here", 404, "no such endpoint"),
    ],
)
async def test_bad_requests_get_4xx_with_a_message(
    tmp_path: Path, method: str, path: str, status: int, fragment: str
) -> None:
    runtime, client, _ = make(tmp_path)
    async with client:
        r = await client.request(method, path)
    assert r.status_code == status
    assert fragment in r.json()["error"]
    await runtime.shutdown()


OPERATOR = "op-secret-token"
VIEWER = "view-secret-token"
TOKENS = f"# name role hash\nalice operator {hash_token(OPERATOR)}\nbob viewer {hash_token(VIEWER)}\n"


async def test_mutations_need_a_configured_operator_token_and_are_audited(tmp_path: Path) -> None:
    runtime, client, audit = make(tmp_path)
    async with client:
        r = await client.post("/v1/engines/e1/start")
        assert r.status_code == 403 and "no operator token" in r.json()["error"]
    assert audit.tail(5)[-1]["result"] == "denied: no tokens configured"
    await runtime.shutdown()

    runtime, client, audit = make(tmp_path, tokens=TOKENS)
    async with client:
        assert (await client.post("/v1/engines/e1/stop")).status_code == 401
        r = await client.post("/v1/engines/e1/stop", headers={"Authorization": f"Bearer {VIEWER}"})
        assert r.status_code == 403 and "viewer" in r.json()["error"]
        r = await client.post("/v1/engines/e1/stop", headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401
        r = await client.post("/v1/engines/e1/stop", headers={"Authorization": f"Bearer {OPERATOR}"})
        assert r.status_code == 409 and "already stopped" in r.json()["error"]
    records = audit.tail(10)
    assert [x["result"] for x in records[-5:]] == [
        "denied: unauthenticated",
        "denied: role viewer",
        "denied: unauthenticated",
        "allowed",
        "failed: engine e1 is already stopped",
    ]
    assert (
        records[-2]["actor"] == "alice" and records[-2]["engine"] == "e1" and records[-2]["action"] == "stop"
    )
    text = (tmp_path / "state" / "audit.log").read_text()
    assert OPERATOR not in text and VIEWER not in text  # tokens never reach the audit log
    await runtime.shutdown()


async def test_unwritable_audit_log_refuses_mutations(tmp_path: Path) -> None:
    runtime, client, audit = make(tmp_path, tokens=TOKENS)
    audit.path = Path("/dev/full")  # every write fails with ENOSPC
    async with client:
        r = await client.post("/v1/engines/e1/start", headers={"Authorization": f"Bearer {OPERATOR}"})
    assert r.status_code == 503 and "audit log unavailable" in r.json()["error"]
    assert "/dev" not in r.text and "full" not in r.text and r.headers["retry-after"]  # no path, no details
    assert runtime.supervisors["e1"].state == "stopped"  # nothing was done
    await runtime.shutdown()


async def test_a_refused_action_names_no_filesystem_path(tmp_path: Path) -> None:
    engines = [
        {
            "id": "e1",
            "kind": "vllm",
            "model": "m",
            "port": 18555,
            "command": ["/opt/nowhere/engine-bin"],
            "autostart": False,
        }
    ]
    runtime, client, _ = make(tmp_path, tokens=TOKENS, engines=engines)
    async with client:
        r = await client.post("/v1/engines/e1/start", headers={"Authorization": f"Bearer {OPERATOR}"})
    assert r.status_code == 409 and "refused by launch policy" in r.json()["error"]
    assert "/opt" not in r.text and "…/engine-bin" in r.json()["error"]  # says which binary, not where
    await runtime.shutdown()


def test_tokens_file_errors_name_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "tokens"
    bad.write_text("alice operator sha256:abc\n")
    with pytest.raises(TokenFileError, match=r"tokens:1: expected"):
        TokenStore.load(bad)
    bad.write_text(f"alice admin {hash_token('x')}\n")
    with pytest.raises(TokenFileError, match="unknown role 'admin'"):
        TokenStore.load(bad)
    with pytest.raises(TokenFileError, match="cannot read tokens file"):
        TokenStore.load(tmp_path / "missing")


_path_chars = st.text(alphabet=string.ascii_letters + string.digits + "/%?&=.-_~", max_size=40)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]),
    path=_path_chars,
    body=st.binary(max_size=200),
)
async def test_fuzzed_requests_never_5xx(tmp_path: Path, method: str, path: str, body: bytes) -> None:
    runtime, client, _ = make(tmp_path, tokens=TOKENS)
    await runtime.collector.tick()
    async with client:
        for prefix in ("/", "/v1/", "/v1/engines/e1/", "/v1/history?seconds="):
            r = await client.request(method, prefix + path, content=body)
            assert r.status_code < 500, (method, prefix + path, r.status_code, r.text)
            if r.status_code >= 400:
                assert "error" in json.loads(r.content)
    await runtime.shutdown()


# --- access control, Host header, limits, audit endpoint ------------------------------------------------

READ_PATHS = (
    "/v1/snapshot",
    "/v1/history?seconds=5",
    "/v1/engines/e1/logs",
    "/v1/engines/e1/audit",
    "/metrics",
)


async def test_reads_need_a_token_once_a_tokens_file_is_configured(tmp_path: Path) -> None:
    runtime, client, _ = make(tmp_path, tokens=TOKENS)
    await runtime.collector.tick()
    async with client:
        assert (await client.get("/healthz")).status_code == 200  # liveness stays public
        for path in READ_PATHS:
            r = await client.get(path)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", path
            r = await client.get(path, headers={"Authorization": "Bearer not-a-token"})
            assert r.status_code == 401, path
            for token in (VIEWER, OPERATOR):
                r = await client.get(path, headers={"Authorization": f"Bearer {token}"})
                assert r.status_code == 200, (path, r.text)
        # a token in the query string is never accepted (it would land in logs and shell history)
        assert (await client.get(f"/v1/snapshot?token={VIEWER}")).status_code == 401
    await runtime.shutdown()

    runtime, client, _ = make(tmp_path / "open")  # no tokens file: reads open, mutations refused
    await runtime.collector.tick()
    async with client:
        for path in READ_PATHS:
            assert (await client.get(path)).status_code == 200, path
    await runtime.shutdown()


async def test_an_empty_tokens_file_still_requires_tokens(tmp_path: Path) -> None:
    runtime, client, _ = make(tmp_path, tokens="# nobody yet\n")
    async with client:
        assert (await client.get("/v1/snapshot")).status_code == 401
        r = await client.post("/v1/engines/e1/start")
        assert r.status_code == 401
    await runtime.shutdown()


def test_every_route_declares_its_role(tmp_path: Path) -> None:
    runtime, client, _ = make(tmp_path)
    starlette_app = client._transport.app.app  # type: ignore[attr-defined]
    roles = {route.path: route.endpoint.role for route in starlette_app.routes}
    assert roles == {
        "/healthz": "public",
        "/v1/snapshot": "viewer",
        "/v1/history": "viewer",
        "/v1/engines/{engine_id}/logs": "viewer",
        "/v1/engines/{engine_id}/audit": "viewer",
        "/v1/engines/{engine_id}/bench": "operator",
        "/v1/engines/{engine_id}/{action}": "operator",
        "/metrics": "viewer",
        "/v1/bundle": "operator",
    }


def test_a_route_with_an_unknown_role_fails_the_build(tmp_path: Path) -> None:
    runtime, client, _ = make(tmp_path)
    state = client._transport.app.app.state.api  # type: ignore[attr-defined]
    assert {e.role for e in ROUTES} == {"public", "viewer", "operator"}
    with pytest.raises(TypeError, match="deny by default"):
        bind(state, Endpoint("/v1/secret", healthz, "admin"))


async def test_the_api_accepts_exactly_the_schemas_actions(tmp_path: Path) -> None:
    runtime, client, audit = make(tmp_path)
    async with client:
        for verb in schema.ACTIONS:  # reach the action handler: refused only for want of a token
            r = await client.post(f"/v1/engines/e1/{verb}")
            assert r.status_code == 403 and "no operator token" in r.json()["error"]
        r = await client.post("/v1/engines/e1/reboot")
    assert r.status_code == 404 and all(verb in r.json()["error"] for verb in schema.ACTIONS)
    assert [x["action"] for x in audit.tail(10)] == list(schema.ACTIONS)  # the unknown verb is not an attempt
    await runtime.shutdown()


class CountingBridge(LoopBridge):
    """The real runtime, counting how often a history answer is built."""

    def __init__(self, runtime: AgentRuntime) -> None:
        super().__init__(runtime)
        self.built: list[float] = []

    async def history_json(self, seconds: float) -> str:
        self.built.append(seconds)
        return await super().history_json(seconds)


async def test_history_is_built_once_per_snapshot_and_span(tmp_path: Path) -> None:
    runtime, _, _ = make(tmp_path)
    bridge = CountingBridge(runtime)
    app = create_app(bridge, TokenStore(), AuditLog(tmp_path / "a.log"))
    await runtime.collector.tick()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1"
    ) as client:
        bodies = [(await client.get("/v1/history?seconds=60")).content for _ in range(3)]
        assert bridge.built == [60.0] and bodies[0] == bodies[2]
        await client.get("/v1/history?seconds=120")
        assert bridge.built == [60.0, 120.0]
        await runtime.collector.tick()  # a new snapshot: a new answer
        newer = history_from_json((await client.get("/v1/history?seconds=60")).content)
        assert bridge.built == [60.0, 120.0, 60.0] and [s.seq for s in newer.snapshots] == [1, 2]
        for span in (10, 20, 30, 40):  # four newer answers push the oldest out
            await client.get(f"/v1/history?seconds={span}")
        await client.get("/v1/history?seconds=60")
        assert bridge.built[-1] == 60.0 and len(bridge.built) == 8
    await runtime.shutdown()


async def test_closing_the_app_writes_the_pending_denial_summary(tmp_path: Path) -> None:
    runtime, _, _ = make(tmp_path)
    tokens = tmp_path / "tokens"
    tokens.write_text(TOKENS)
    audit = AuditLog(tmp_path / "audit.log")
    app = create_app(LoopBridge(runtime), TokenStore.load(tokens), audit, denials=DenialLimiter(full=2))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1"
    ) as client:
        for _ in range(5):
            assert (await client.post("/v1/engines/e1/stop")).status_code == 401
    assert [x["result"] for x in audit.tail(10)] == ["denied: unauthenticated"] * 2  # 3 counted, not written
    app.close()
    summary = audit.tail(10)[-1]
    assert (
        summary["action"] == "rate-limited"
        and summary["suppressed"] == 3
        and "rate limit: 2 per 60 s" in summary["result"]
    )
    await runtime.shutdown()


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("127.0.0.1:9300", 200),
        ("localhost", 200),
        ("LOCALHOST:1", 200),
        ("[::1]:9300", 200),
        ("127.3.4.5", 200),
        ("gpu01.example:9300", 200),  # configured in allowed_hosts
        ("evil.example", 403),
        ("evil.example:9300", 403),
        ("127.0.0.1.evil.example", 403),
        ("10.0.0.5:9300", 403),
        ("", 403),
    ],
)
async def test_host_header_must_be_loopback_or_configured(tmp_path: Path, host: str, status: int) -> None:
    config = agent_config_from_dict(
        {"agent": {"state_dir": str(tmp_path / "s"), "gpu_source": "none"}}, file="t.toml"
    )
    runtime = AgentRuntime(config)
    app = create_app(
        LoopBridge(runtime), TokenStore(), AuditLog(tmp_path / "a.log"), allowed_hosts=["gpu01.example"]
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1"
    ) as client:
        r = await client.get("/healthz", headers={"Host": host})
    assert r.status_code == status
    if status == 403:
        assert "DNS-rebinding" in r.json()["error"]
    await runtime.shutdown()


async def test_oversized_bodies_and_websockets_are_refused(tmp_path: Path) -> None:
    runtime, client, audit = make(tmp_path, tokens=TOKENS)
    async with client:
        r = await client.post(
            "/v1/engines/e1/start",
            content=b"x" * (64 * 1024 + 1),
            headers={"Authorization": f"Bearer {OPERATOR}"},
        )
        assert r.status_code == 413 and "too large" in r.json()["error"]
        r = await client.post("/v1/engines/e1/start", headers={"Content-Length": "12abc"})
        assert r.status_code == 400
    assert audit.tail(5) == []  # refused before it reached the action: nothing happened, nothing to audit
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "websocket.connect"}

    async def send(message: dict) -> None:
        sent.append(message)

    app = client._transport.app  # type: ignore[attr-defined]
    await app(
        {"type": "websocket", "path": "/v1/snapshot", "headers": [(b"host", b"127.0.0.1")]}, receive, send
    )
    assert sent == [{"type": "websocket.close", "code": 1008}]
    await runtime.shutdown()


async def test_audit_endpoint_and_record_fields(tmp_path: Path) -> None:
    from agents.audit import verify_log

    runtime, client, audit = make(tmp_path, tokens=TOKENS)
    op = {"Authorization": f"Bearer {OPERATOR}"}
    async with client:
        await client.post("/v1/engines/e1/stop", headers=op)  # 409: already stopped (allowed, then failed)
        await client.post("/v1/engines/e1/start", headers={"Authorization": f"Bearer {VIEWER}"})  # denied
        r = await client.post("/v1/engines/e1/start", headers=op)
        assert r.status_code == 202 and r.headers["x-request-id"] == r.json()["request_id"]
        got = await client.get("/v1/engines/e1/audit?lines=3", headers={"Authorization": f"Bearer {VIEWER}"})
        assert got.status_code == 200
        records = got.json()["records"]
        assert [(x["action"], x["result"], x["actor"]) for x in records] == [
            ("stop", "failed: engine e1 is already stopped", "alice"),
            ("start", "denied: role viewer", "bob"),
            ("start", "allowed", "alice"),
        ]
        last = records[-1]
        assert last["role"] == "operator" and last["auth"] == "bearer" and last["engine"] == "e1"
        assert (
            last["request_id"] == r.json()["request_id"]
            and last["at"].endswith("Z")
            and isinstance(last["mono_ns"], int)
        )
        assert (await client.get("/v1/engines/e1/audit?lines=0", headers=op)).status_code == 400
        assert (await client.get("/v1/engines/zz/audit", headers=op)).status_code == 404
    await runtime.act("e1", "stop")
    assert verify_log(audit.path).ok
    lines = audit.path.read_text().splitlines()
    audit.path.write_text("\n".join(lines[:1] + lines[2:]) + "\n")  # remove one record: the chain shows it
    assert verify_log(audit.path).bad_line == 2
    await runtime.shutdown()


def test_audit_tail_reads_backwards_across_blocks(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log")
    for i in range(500):  # ~250 KB: several 64 KiB blocks, records cut across block edges
        log.append(action="start", engine=f"e{i % 3}", result="allowed", pad="x" * 300, n=i)
    assert log.path.stat().st_size > 3 * 64 * 1024
    tail = log.tail(5, engine="e1")
    assert [r["n"] for r in tail] == [487, 490, 493, 496, 499]
    assert [r["n"] for r in log.tail(2)] == [498, 499]
    assert [r["n"] for r in log.tail(1000)] == list(range(500))
    fresh = AuditLog(tmp_path / "audit.log")  # a new agent continues the chain from the file's last line
    fresh.append(action="stop", engine="e0", result="allowed")
    from agents.audit import verify_log

    assert verify_log(tmp_path / "audit.log").ok


def test_token_file_rotates_without_restart_and_fails_closed(tmp_path: Path) -> None:
    from agents.auth import TokenFile, add_token, remove_token

    path = tmp_path / "tokens"
    first = add_token(path, "alice", "operator")
    now = [100.0]
    tokens = TokenFile(path, clock=lambda: now[0])
    assert tokens.current().identify(f"Bearer {first}").name == "alice"
    second = add_token(path, "bob", "viewer")
    assert tokens.current().identify(f"Bearer {second}").role is None  # checked at most once a second
    now[0] += 1.0
    assert tokens.current().identify(f"Bearer {second}").role == "viewer"
    assert remove_token(path, "alice") and not remove_token(path, "alice")
    now[0] += 1.0
    assert tokens.current().identify(f"Bearer {first}").role is None
    path.write_text("garbage line\n")
    now[0] += 1.0
    broken = tokens.current()
    assert broken.configured and broken.identify(f"Bearer {second}").role is None  # fail closed


def test_token_file_sees_a_same_size_rewrite_within_one_timestamp_tick(tmp_path: Path) -> None:
    """Two writes of equal size inside one mtime tick: the second is still picked up, because a file
    changed in the last two seconds is re-read at every check until it settles."""
    import os

    from agents.auth import TokenFile, hash_token

    path = tmp_path / "tokens"
    path.write_text(f"alice viewer {hash_token('a' * 20)}\n")
    frozen = path.stat().st_mtime_ns
    now = [0.0]
    tokens = TokenFile(path, clock=lambda: now[0])
    path.write_text(f"alice viewer {hash_token('b' * 20)}\n")  # same size, same name
    os.utime(path, ns=(frozen, frozen))  # and the same mtime: only the content differs
    now[0] += 1.0
    assert tokens.current().identify(f"Bearer {'b' * 20}").name == "alice"
    assert tokens.current().identify(f"Bearer {'a' * 20}").role is None


def test_token_cli(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.support.agentproc import ROOT

    path = tmp_path / "sub" / "tokens"

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "console.cli", "agent", "token", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )

    added = run("add", "alice", "--role", "operator", "--tokens-file", str(path))
    assert added.returncode == 0, added.stderr
    token = added.stdout.strip()
    assert token.startswith("llmc_") and len(token) > 40 and token not in path.read_text()
    assert (path.stat().st_mode & 0o777) == 0o600
    assert TokenStore.load(path).identify(f"Bearer {token}").name == "alice"
    assert run("add", "bob", "--role", "viewer", "--tokens-file", str(path)).returncode == 0
    listed = run("list", "--tokens-file", str(path))
    assert listed.stdout.splitlines() == ["alice\toperator", "bob\tviewer"]
    dup = run("add", "alice", "--role", "viewer", "--tokens-file", str(path))
    assert dup.returncode == 2 and len(dup.stderr.strip().splitlines()) == 1 and "exists" in dup.stderr
    bad = run("add", "eve", "--role", "admin", "--tokens-file", str(path))
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
    assert run("remove", "alice", "--tokens-file", str(path)).returncode == 0
    missing = run("remove", "alice", "--tokens-file", str(path))
    assert missing.returncode == 2 and "no token named 'alice'" in missing.stderr
    no_file = run("list")
    assert no_file.returncode == 2 and "Traceback" not in no_file.stderr


# --- fuzz: methods, paths, query strings, headers, bodies, tokens ------------------------------------------

_header_names = st.sampled_from(
    [
        "authorization",
        "host",
        "content-length",
        "content-type",
        "x-forwarded-for",
        "origin",
        "transfer-encoding",
        "cookie",
        "x-junk",
    ]
)
_header_values = st.text(alphabet=string.printable.strip("\r\n\x0b\x0c") + " ", max_size=80)
_tokens = st.sampled_from([OPERATOR, VIEWER, "", "x", OPERATOR + "x", OPERATOR.upper()]) | st.text(
    max_size=60
).filter(lambda t: t.isprintable() and t.isascii())


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE", "FOO"]),
    path=st.sampled_from(
        [
            "/healthz",
            "/v1/snapshot",
            "/v1/history",
            "/v1/engines/e1/logs",
            "/v1/engines/e1/audit",
            "/v1/engines/e1/start",
            "/v1/engines/e1/stop",
            "/v1/engines/e1/restart",
            "/v1/engines/x/stop",
            "/metrics",
            "/v1/engines/e1/../../metrics",
            "/v1//engines",
        ]
    ),
    query=st.dictionaries(
        st.sampled_from(["seconds", "lines", "token", "x"]), st.text(max_size=12), max_size=3
    ),
    headers=st.dictionaries(_header_names, _header_values, max_size=4),
    scheme=st.sampled_from(["Bearer", "bearer", "Basic", "Token", ""]),
    token=_tokens,
    body=st.binary(max_size=300),
)
async def test_fuzzed_requests_with_headers_and_tokens_never_5xx(
    tmp_path: Path, method: str, path: str, query: dict, headers: dict, scheme: str, token: str, body: bytes
) -> None:
    runtime, client, _ = make(tmp_path, tokens=TOKENS)
    await runtime.collector.tick()
    headers = {k: v for k, v in headers.items() if k != "content-length" or v.strip().isdigit()}
    headers.setdefault("authorization", f"{scheme} {token}".strip())
    async with client:
        try:
            r = await client.request(method, path, params=query, headers=headers, content=body)
        except (httpx.LocalProtocolError, UnicodeEncodeError, ValueError):
            await runtime.shutdown()
            return  # the client itself refused to send it
    assert r.status_code < 500, (method, path, query, headers, r.status_code, r.text)
    if r.status_code >= 400 and method != "HEAD":
        assert "error" in json.loads(r.content)
    await runtime.shutdown()
