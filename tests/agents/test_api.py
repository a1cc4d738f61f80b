"""The agent HTTP API in-process (ASGI transport) over a real AgentRuntime: validation, auth, audit."""

from __future__ import annotations

import json
import string
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.api import create_app
from agents.audit import AuditLog
from agents.auth import TokenFileError, TokenStore, hash_token
from agents.config import agent_config_from_dict
from agents.runtime import AgentRuntime
from agents.schema import from_json, history_from_json


def make(tmp_path: Path, tokens: str | None = None, engines: list | None = None):
    data = {
        "agent": {
            "state_dir": str(tmp_path / "state"),
            "gpu_source": "none",
            "engines": engines
            or [{"id": "e1", "kind": "vllm", "model": "m", "port": 18555, "command": ["/bin/false"], "autostart": False}],
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
    app = create_app(runtime, store, audit)
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
        ("GET", "/v1/history?seconds=abc", 400, "must be an integer"),
        ("GET", "/v1/history?seconds=-5", 400, "between 1 and"),
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
async def test_bad_requests_get_4xx_with_a_message(tmp_path: Path, method: str, path: str, status: int, fragment: str) -> None:
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
    assert records[-2]["actor"] == "alice" and records[-2]["engine"] == "e1" and records[-2]["action"] == "stop"
    text = (tmp_path / "state" / "audit.log").read_text()
    assert OPERATOR not in text and VIEWER not in text  # tokens never reach the audit log
    await runtime.shutdown()


async def test_unwritable_audit_log_refuses_mutations(tmp_path: Path) -> None:
    runtime, client, audit = make(tmp_path, tokens=TOKENS)
    audit.path = Path("/dev/full")  # every write fails with ENOSPC
    async with client:
        r = await client.post("/v1/engines/e1/start", headers={"Authorization": f"Bearer {OPERATOR}"})
    assert r.status_code == 503 and "audit log unavailable" in r.json()["error"]
    assert runtime.supervisors["e1"].state == "stopped"  # nothing was done
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
@given(method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]), path=_path_chars, body=st.binary(max_size=200))
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
