"""Alert and probe history derived from recorded snapshots (agents/bundle_history.py), and the bundle's
content filters (agents/bundle_redact.py): env allow-list, prompt lines, Authorization values, host masking."""

from __future__ import annotations

import json
from dataclasses import replace

from agents.bundle_history import alert_history, probe_history, window_facts
from agents.bundle_redact import (
    CONTENT_PLACEHOLDER,
    HostMasker,
    allowed_env,
    drop_content_lines,
    drop_content_strings,
    mask_auth_headers,
)
from agents.schema import Alert, Canary, EngineSnapshot, Health, HostSnapshot


def _snap(seq: int, engine_alerts=(), host_alerts=(), health=None, canary=None) -> HostSnapshot:
    e = EngineSnapshot(
        id="e1", kind="vllm", state="ready", alerts=tuple(engine_alerts), health=health, canary=canary
    )
    return HostSnapshot(
        host="h",
        seq=seq,
        taken_at=f"2026-01-01T00:00:{seq:02d}.000Z",
        interval_s=1.0,
        engines=(e,),
        alerts=tuple(host_alerts),
    )


HUNG = Alert(
    code="ENGINE_HUNG",
    severity="critical",
    since="2026-01-01T00:00:02.000Z",
    summary="hung",
    evidence={"stalled_s": 5},
)
HUNG2 = Alert(
    code="ENGINE_HUNG",
    severity="critical",
    since="2026-01-01T00:00:06.000Z",
    summary="again",
    evidence={"stalled_s": 9},
)
ORPHAN = Alert(
    code="ORPHAN_GPU_MEMORY",
    severity="warning",
    since="2026-01-01T00:00:03.000Z",
    summary="orphan",
    evidence={"pid": 7},
)


def test_alert_incidents_are_raised_cleared_and_active_with_evidence() -> None:
    snaps = [
        _snap(1),
        _snap(2, [HUNG]),
        _snap(3, [replace(HUNG, evidence={"stalled_s": 6})], [ORPHAN]),
        _snap(4, [], [ORPHAN]),
        _snap(5),
        _snap(6, [HUNG2]),
    ]
    rows = alert_history(snaps)
    got = [(r["seq"], r["transition"], r["scope"], r["code"]) for r in rows]
    assert got == [
        (2, "raised", "engine", "ENGINE_HUNG"),
        (3, "raised", "host", "ORPHAN_GPU_MEMORY"),
        (4, "cleared", "engine", "ENGINE_HUNG"),
        (5, "cleared", "host", "ORPHAN_GPU_MEMORY"),
        (6, "raised", "engine", "ENGINE_HUNG"),
        (6, "active", "engine", "ENGINE_HUNG"),
    ]
    assert rows[0]["evidence"] == {"stalled_s": 5} and rows[2]["evidence"] == {
        "stalled_s": 6
    }  # first and last seen
    assert rows[0]["at"] == "2026-01-01T00:00:02.000Z" and rows[4]["since"] == HUNG2.since
    assert [r["code"] for r in alert_history(snaps, engine="other")] == [
        "ORPHAN_GPU_MEMORY"
    ] * 2  # host alerts stay


def test_probes_are_listed_once_each_with_timings() -> None:
    h1 = Health(http_ok=True, http_status=200, latency_s=0.01, checked_at="2026-01-01T00:00:01.000Z")
    h2 = Health(http_ok=False, checked_at="2026-01-01T00:00:02.500Z", error="no complete response within 2s")
    c1 = Canary(ok=True, ttft_s=0.05, at="2026-01-01T00:00:01.200Z")
    snaps = [_snap(1, health=h1, canary=c1), _snap(2, health=h1, canary=c1), _snap(3, health=h2, canary=c1)]
    rows = probe_history(snaps, "e1")
    assert [(r["probe"], r["ok"]) for r in rows] == [("health", True), ("canary", True), ("health", False)]
    assert (
        rows[1]["ttft_s"] == 0.05
        and rows[1]["prompt"] == "ping"
        and rows[2]["error"].startswith("no complete")
    )
    assert probe_history(snaps, "nope") == []
    facts = window_facts(snaps, 1800, 900)
    assert facts["snapshots"] == 3 and facts["from"].endswith("01.000Z") and "900 s" in facts["limited_by"]
    assert "limited_by" not in window_facts(snaps, 60, 900)


def test_env_is_allow_listed_and_secret_names_dropped() -> None:
    env = {
        "PATH": "/bin",
        "VLLM_API_KEY": "s",
        "HF_TOKEN": "t",
        "CUDA_VISIBLE_DEVICES": "0",
        "NCCL_DEBUG": "INFO",
        "MY_DB_PASSWORD": "p",
        "AWS_SECRET_ACCESS_KEY": "k",
        "SOME_CORP_THING": "x",
        "VLLM_AUTH_HEADER": "a",
    }
    kept, withheld = allowed_env(env)
    assert kept == {"PATH": "/bin", "CUDA_VISIBLE_DEVICES": "0", "NCCL_DEBUG": "INFO"}
    assert withheld == {"secret_like_names": 5, "not_allow_listed": 1}


def test_request_content_lines_are_removed_and_stats_kept() -> None:
    lines = [
        "INFO 06-01 [logger.py:43] Received request cmpl-1-0: prompt: 'tell me the launch codes', params: SamplingParams(n=1)",
        "INFO 06-01 [loggers.py:116] Avg prompt throughput: 12.0 tokens/s, Avg generation throughput: 3.0 tokens/s",
        "INFO Generated response cmpl-1-0: output: 'the codes are 0000', output_token_ids: [1, 2]",
        "[2026-01-01 00:00:00] Receive: obj=GenerateReqInput(text='secret question', sampling_params={})",
        '{"messages": [{"role": "user", "content": "hi"}]}',
        'INFO: 127.0.0.1:5000 - "POST /v1/completions HTTP/1.1" 200 OK',
    ]
    out, n = drop_content_lines(lines)
    assert n == 4 and out[1] == lines[1] and out[5] == lines[5]
    assert all("launch codes" not in x and "0000" not in x and "secret question" not in x for x in out)
    doc = json.dumps({"stderr_tail": [lines[0], "plain"], "x": 1}) + "\n" + json.dumps({"y": 2})
    cleaned, m = drop_content_strings(doc)
    assert m == 1 and "launch codes" not in cleaned
    first = json.loads(cleaned.split("\n")[0])
    assert first == {"stderr_tail": [CONTENT_PLACEHOLDER, "plain"], "x": 1}
    assert drop_content_strings('{"a": "nothing here"}') == ('{"a": "nothing here"}', 0)


def test_authorization_values_are_masked_in_text_and_json() -> None:
    assert (
        mask_auth_headers("curl -H 'Authorization: Basic dXNlcjpzM2NyZXQ=' x")
        == "curl -H 'Authorization: ***' x"
    )
    assert json.loads(
        mask_auth_headers(json.dumps({"Authorization": "Bearer abc.def", "x-api-key": "k1"}))
    ) == {"Authorization": "***", "x-api-key": "***"}
    assert mask_auth_headers("authorization failed for user") == "authorization failed for user"


def test_host_masking_is_consistent_and_keeps_loopback() -> None:
    m = HostMasker(["gpu01.dc1.example.com", "gpu02", "10.0.0.9"])
    a = m(
        "gpu01 listens on 10.0.0.5:8000 and 127.0.0.1:8001; gpu01.dc1.example.com talks to gpu02 at fd00::5"
    )
    b = m("again: gpu02 10.0.0.5 GPU01 [fd00::5]:9300 0.0.0.0 ::1")
    assert a == "host-1 listens on 192.0.2.1:8000 and 127.0.0.1:8001; host-1 talks to host-2 at 2001:db8::1"
    assert b == "again: host-2 192.0.2.1 host-1 [2001:db8::1]:9300 0.0.0.0 ::1"
    assert m.mapping == {
        "gpu01.dc1.example.com": "host-1",
        "gpu01": "host-1",
        "gpu02": "host-2",
        "10.0.0.5": "192.0.2.1",
        "fd00::5": "2001:db8::1",
    }
    assert m.path("hosts/gpu02/engines/e1/log-tail.txt") == "hosts/host-2/engines/e1/log-tail.txt"
    assert (
        m("gpu011 and my-gpu02 and 2026-01-01T17:10:18.000Z stay")
        == "gpu011 and my-gpu02 and 2026-01-01T17:10:18.000Z stay"
    )
